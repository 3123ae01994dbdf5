"""Diffusion models prepared for alignment: one interface for genlab's models and diffusers pipelines.

An :class:`AlignTarget` tells the trainer everything it needs about a model: the shape of its
sampler state (pixels or latents), its noise levels, how to condition it (class labels, text
prompts or nothing), which module receives the LoRA adapters, and how to turn a final sampler
state into samples in ``[-1, 1]`` (a VAE decode for latent models). All sampling happens in
EDM form, ``x = x0 + σ·n`` (see :mod:`genlab.core.denoiser`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from genlab.core.denoiser import EDMDenoiser
from genlab.core.edm import karras_sigmas
from genlab.errors import GenlabError

if TYPE_CHECKING:
    from genlab.base.info import ImageModelInfo

GENLAB_LORA_TARGETS = ("qkv", "proj")


class AlignTarget(ABC):
    """A model to align.

    Attributes:
        modality: ``"image"`` (samples ``[B, C, H, W]``) or ``"video"`` (``[B, T, C, H, W]``).
        condition: ``None``, ``"labels"`` or ``"prompts"``: what :meth:`encode_condition` takes.
        module: the network whose weights are trained (LoRA adapters go into it).
        lora_targets: default names of the linear layers that get LoRA adapters.
    """

    modality: str
    condition: str | None
    module: nn.Module
    lora_targets: tuple[str, ...]

    @abstractmethod
    def state_shape(self, batch_size: int) -> tuple[int, ...]:
        """Shape of the sampler state for ``batch_size`` samples (pixels or latents)."""

    @abstractmethod
    def sigmas(self, steps: int) -> Tensor:
        """Decreasing noise levels ``[steps + 1]`` (float64) ending in 0."""

    @abstractmethod
    def denoise(self, x: Tensor, sigma: Tensor, cond: dict) -> Tensor:
        """``x0_hat`` of the state ``x`` at noise levels ``sigma [B]`` under ``cond``."""

    def encode_condition(self, prompts: Sequence[str] | None, labels: Tensor | None) -> dict:
        """Keyword conditions for :meth:`denoise`; models without conditions take nothing."""
        if prompts is not None or labels is not None:
            raise GenlabError("this model is unconditional; give neither --labels nor --prompts")
        return {}

    def decode(self, x0: Tensor, frames: Tensor | None = None) -> Tensor:
        """Samples in ``[-1, 1]`` from final states ``x0``; for videos only the frame indices ``frames``.

        Pixel-space models return the state itself (clamped with gradient inside the range).
        """
        samples = x0 if frames is None else x0[:, frames]
        return samples.clamp(-1, 1)

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device


class _GenlabTarget(AlignTarget):
    """Shared by genlab's own models: an :class:`EDMDenoiser` sampled on its Karras σ schedule."""

    lora_targets = GENLAB_LORA_TARGETS
    denoiser: EDMDenoiser

    def sigmas(self, steps: int) -> Tensor:
        schedule = self.denoiser.schedule
        return karras_sigmas(steps, schedule.sigma_min, schedule.sigma_max, schedule.rho)

    def denoise(self, x: Tensor, sigma: Tensor, cond: dict) -> Tensor:
        return self.denoiser(x, sigma, **cond)


class GenlabImageTarget(_GenlabTarget):
    """A genlab image model (:func:`genlab.base.image_model.load_image_model`)."""

    modality = "image"

    def __init__(self, denoiser: EDMDenoiser, info: ImageModelInfo) -> None:
        self.denoiser = denoiser
        self.module = denoiser.net
        self.num_classes = info.num_classes
        self.condition = "labels" if self.num_classes else None
        self.image_shape = (info.channels, info.resolution, info.resolution)

    def state_shape(self, batch_size: int) -> tuple[int, ...]:
        return (batch_size, *self.image_shape)

    def encode_condition(self, prompts: Sequence[str] | None, labels: Tensor | None) -> dict:
        if not self.num_classes:
            return super().encode_condition(prompts, labels)
        if prompts is not None:
            raise GenlabError("this image model is class-conditional: it takes --labels, not text prompts")
        if labels is None:
            raise GenlabError("this image model is class-conditional and needs class labels")
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise GenlabError(f"labels must lie in 0..{self.num_classes - 1}, got {labels.tolist()}")
        return {"class_labels": labels.to(self.device)}


class GenlabVideoTarget(_GenlabTarget):
    """A genlab unconditional video DiT (:func:`genlab.base.video_model.load_video_model`)."""

    modality = "video"
    condition = None

    def __init__(self, denoiser: EDMDenoiser) -> None:
        self.denoiser = denoiser
        self.module = denoiser.net
        config = denoiser.net.config
        if getattr(config, "condition_channels", 0):
            raise GenlabError("aligning first-frame-conditioned video models is not supported; "
                              "use an unconditional `genlab train video` model")
        self.video_shape = (config.frames, config.in_channels, config.resolution, config.resolution)

    def state_shape(self, batch_size: int) -> tuple[int, ...]:
        return (batch_size, *self.video_shape)


def load_target(path: str, guidance_scale: float | None = None, num_frames: int | None = None,
                device: str | torch.device | None = None) -> AlignTarget:
    """The model in ``path``: a diffusers pipeline folder (``model_index.json``) or hub id, or a genlab
    image or video model folder, on ``device`` (default: CUDA when available). ``guidance_scale`` and
    ``num_frames`` apply to pipelines only."""
    from pathlib import Path

    from genlab.base.image_model import MODEL_INFO_FILE, load_image_model
    from genlab.base.video_model import load_video_model
    from genlab.core.checkpoint import read_json

    folder = Path(path).expanduser()
    if folder.is_file():
        raise GenlabError(f"--model {path} is a file; give a genlab model folder (a `genlab train image/video` run "
                          "or its model/), or a diffusers pipeline folder or hub id")
    genlab_folder = next((f for f in (folder, folder / "model") if (f / MODEL_INFO_FILE).exists()), None)
    pipeline_options = {"guidance_scale": guidance_scale, "num_frames": num_frames}
    if genlab_folder is None:
        from genlab.align.pipelines import load_pipeline_target

        options = {k: v for k, v in pipeline_options.items() if v is not None}
        return load_pipeline_target(path, device=device, **options)
    given = [flag for flag, value in zip(("--guidance-scale", "--frames"), pipeline_options.values(), strict=True)
             if value is not None]
    if given:
        raise GenlabError(f"{' and '.join(given)} {'apply' if len(given) > 1 else 'applies'} only to diffusers "
                          f"pipelines; {path} holds a genlab model "
                          "(its frames and conditioning are fixed by how it was trained)")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    method = read_json(genlab_folder / MODEL_INFO_FILE, f"{path} holds no model").get("method", "image")
    if method == "image":
        denoiser, info = load_image_model(genlab_folder)
        return GenlabImageTarget(denoiser.to(device), info)
    if method == "video":
        return GenlabVideoTarget(load_video_model(genlab_folder).to(device))
    raise GenlabError(f"{path} holds a {method} model; alignment takes genlab image or video models "
                      "or diffusers StableDiffusion / TextToVideoSD pipelines")
