"""Diffusers text-to-image and text-to-video pipelines as alignment targets (VADER's models).

:class:`StableDiffusionTarget` wraps a ``StableDiffusionPipeline`` and :class:`TextToVideoTarget` a
``TextToVideoSDPipeline`` (ModelScope / Zeroscope). Both train the UNet (LoRA adapters on the
attention projections ``to_q``, ``to_k``, ``to_v``, ``to_out.0``, as VADER does) and keep the VAE
and the text encoder frozen.

Noise levels. The sampler state is the latent in EDM form ``x = x0 + σ·n``; the UNet sees the VP
latent ``x_t = x / sqrt(1 + σ²)`` through :class:`~genlab.core.denoiser.DiffusersDenoiser`.
:meth:`sigmas` are the σ of the DDIM timesteps of the pipeline's noise schedule followed by 0.
A deterministic Euler step on them is exactly a DDIM (η = 0) step: with ``D = x − σ·ε̂``,

    x' = x + (σ' − σ)·(x − D)/σ = D + σ'·ε̂,    i.e.    x'_t = sqrt(ᾱ')·x0̂ + sqrt(1 − ᾱ')·ε̂,

which is DDIM's update from timestep ``t`` to the next one ``t'`` after scaling by ``sqrt(ᾱ')``.
Only the last step differs: it goes to σ = 0 (the clean ``x0̂``) where DDIM stops at its final
``ᾱ`` (``alphas_cumprod[0]`` unless ``set_alpha_to_one``), a residual noise of σ ≈ 0.03 for Stable
Diffusion that is invisible after decoding. The stochastic steps (η > 0) of
:func:`genlab.core.edm.sample_ancestral` are likewise DDIM's η-steps.

Classifier-free guidance (:func:`genlab.core.cfg.cfg_denoise`) is applied to ``x0̂``: for a fixed
``x`` and σ, ``x0̂ = x − σ·ε̂`` is affine in ``ε̂``, so ``x0̂_u + w·(x0̂_c − x0̂_u)`` equals the ``x0̂``
of the guided ``ε̂_u + w·(ε̂_c − ε̂_u)`` that diffusers' pipelines use.

Videos. The sampler state of a video is ``[B, T, C, h, w]`` (frames second, as for genlab's video
models and the trainer's frame choice); the UNet3D's ``[B, C, T, h, w]`` layout stays inside
:meth:`TextToVideoTarget.denoise`. :meth:`TextToVideoTarget.decode` decodes only the frames the
reward scores, VADER's memory saver.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from genlab.align.targets import AlignTarget
from genlab.core.cfg import cfg_denoise
from genlab.core.denoiser import DiffusersDenoiser
from genlab.core.pipelines import latent_side, vae_decode, vae_scale_factor
from genlab.errors import GenlabError

ATTENTION_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
PIPELINE_INDEX_FILE = "model_index.json"
PIPELINE_KINDS = ("image", "video")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def _vp_scheduler(scheduler):
    """The pipeline's scheduler, or a DDIM scheduler of the same config if it has no ``alphas_cumprod``."""
    if hasattr(scheduler, "alphas_cumprod"):
        return scheduler
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config(scheduler.config)


class _TextPipelineTarget(AlignTarget):
    """What the Stable Diffusion and text-to-video targets share: prompts, CFG, σ grid, VAE decode.

    Subclasses give ``modality`` and :meth:`state_shape`, and map the sampler state to the UNet's
    layout with :meth:`_to_unet` / :meth:`_from_unet`.
    """

    condition = "prompts"
    lora_targets = ATTENTION_LORA_TARGETS

    def __init__(self, pipe, guidance_scale: float, height: int | None, width: int | None) -> None:
        from diffusers import DDIMScheduler

        self.pipe = pipe
        self.module = pipe.unet
        self.guidance_scale = float(guidance_scale)
        pipe.scheduler = _vp_scheduler(pipe.scheduler)
        self.denoiser = DiffusersDenoiser(pipe.unet, pipe.scheduler).to(self.device)
        # The σ grid always follows DDIM's timesteps of the same noise schedule (a private copy, so
        # sampling leaves the pipeline's scheduler alone; PNDM's grid would repeat a timestep).
        self.timetable = DDIMScheduler.from_config(pipe.scheduler.config)
        pipe.vae.requires_grad_(False)
        pipe.text_encoder.requires_grad_(False)
        factor = vae_scale_factor(pipe.vae.config.block_out_channels)
        sample_size = pipe.unet.config.sample_size or 64
        native = sample_size if isinstance(sample_size, (tuple, list)) else (sample_size, sample_size)
        self.latent_size = (latent_side(height, "height", native[0], factor),
                            latent_side(width, "width", native[1], factor))
        self.latent_channels = pipe.unet.config.in_channels

    @property
    def guided(self) -> bool:
        """Whether classifier-free guidance runs (diffusers' rule: scale > 1)."""
        return self.guidance_scale > 1

    def sigmas(self, steps: int) -> Tensor:
        if steps < 1:
            raise GenlabError(f"the number of sampling steps must be >= 1, got {steps}")
        train_steps = self.timetable.config.num_train_timesteps
        if steps > train_steps:
            raise GenlabError(f"{steps} sampling steps is more than the {train_steps} steps the model was trained on")
        self.timetable.set_timesteps(steps)
        timesteps = torch.as_tensor(self.timetable.timesteps).to(self.denoiser.log_sigmas.device)
        sigmas = self.denoiser.timestep_to_sigma(timesteps).cpu()
        return torch.cat([sigmas, sigmas.new_zeros(1)])

    def encode_condition(self, prompts: Sequence[str] | None, labels: Tensor | None) -> dict:
        """Text embeddings of ``prompts`` (and of the empty prompt when guided), without a graph."""
        if labels is not None:
            raise GenlabError("this pipeline is text-conditional; it takes prompts, not class labels")
        if (prompts is None or isinstance(prompts, str) or len(prompts) == 0
                or not all(isinstance(prompt, str) for prompt in prompts)):
            raise GenlabError("this pipeline is text-conditional and needs a non-empty list of text prompts")
        with torch.no_grad():
            text, null = self.pipe.encode_prompt(list(prompts), device=self.device, num_images_per_prompt=1,
                                                 do_classifier_free_guidance=self.guided)
        cond = {"encoder_hidden_states": text}
        if self.guided:
            cond["null_hidden_states"] = null
        return cond

    def _to_unet(self, x: Tensor) -> Tensor:
        return x

    def _from_unet(self, x: Tensor) -> Tensor:
        return x

    def denoise(self, x: Tensor, sigma: Tensor, cond: dict) -> Tensor:
        """``x0̂``; with guidance one batched UNet call over [conditional, unconditional]."""
        text = cond["encoder_hidden_states"]
        if text.shape[0] != x.shape[0]:
            raise GenlabError(f"{text.shape[0]} prompt embeddings for a batch of {x.shape[0]} samples")
        x_unet = self._to_unet(x)
        if not self.guided:
            return self._from_unet(self.denoiser(x_unet, sigma, encoder_hidden_states=text))
        return self._from_unet(cfg_denoise(self.denoiser, x_unet, sigma, self.guidance_scale, "encoder_hidden_states",
                                           cond["null_hidden_states"], encoder_hidden_states=text))


class StableDiffusionTarget(_TextPipelineTarget):
    """A ``StableDiffusionPipeline``: latents ``[B, C, h, w]``, images ``[B, 3, H, W]``.

    Args:
        pipe: the pipeline; its UNet is trained, its VAE and text encoder are frozen.
        guidance_scale: classifier-free guidance weight; ``<= 1`` runs the conditional model only.
        height, width: image size in pixels (default: the UNet's native size), multiples of the
            VAE's downscaling factor.
    """

    modality = "image"

    def __init__(self, pipe, guidance_scale: float = 7.5, height: int | None = None,
                 width: int | None = None) -> None:
        super().__init__(pipe, guidance_scale, height, width)

    def state_shape(self, batch_size: int) -> tuple[int, ...]:
        return (batch_size, self.latent_channels, *self.latent_size)

    def decode(self, x0: Tensor, frames: Tensor | None = None) -> Tensor:
        """Images ``[B, 3, H, W]`` in ``[-1, 1]``, differentiable in ``x0``."""
        return vae_decode(self.pipe.vae, x0)


class TextToVideoTarget(_TextPipelineTarget):
    """A ``TextToVideoSDPipeline`` (UNet3D): state ``[B, T, C, h, w]``, videos ``[B, T, 3, H, W]``.

    Args:
        pipe: the pipeline; its UNet is trained, its VAE and text encoder are frozen.
        guidance_scale: classifier-free guidance weight; ``<= 1`` runs the conditional model only.
        num_frames: frames per video.
        height, width: frame size in pixels (default: the UNet's native size).
    """

    modality = "video"

    def __init__(self, pipe, guidance_scale: float = 9.0, num_frames: int = 16, height: int | None = None,
                 width: int | None = None) -> None:
        if num_frames < 1:
            raise GenlabError(f"num_frames must be >= 1, got {num_frames}")
        super().__init__(pipe, guidance_scale, height, width)
        self.num_frames = num_frames

    def state_shape(self, batch_size: int) -> tuple[int, ...]:
        return (batch_size, self.num_frames, self.latent_channels, *self.latent_size)

    def _to_unet(self, x: Tensor) -> Tensor:
        return x.transpose(1, 2)

    def _from_unet(self, x: Tensor) -> Tensor:
        return x.transpose(1, 2)

    def decode(self, x0: Tensor, frames: Tensor | None = None) -> Tensor:
        """Videos ``[B, T', 3, H, W]`` in ``[-1, 1]`` of the frame indices ``frames`` (all if None);
        only those frames go through the VAE. Differentiable in ``x0``."""
        if frames is not None:
            x0 = x0[:, torch.as_tensor(frames, dtype=torch.long, device=x0.device)]
        batch, count = x0.shape[:2]
        return vae_decode(self.pipe.vae, x0.flatten(0, 1)).unflatten(0, (batch, count))


PIPELINE_TARGETS = {"StableDiffusionPipeline": StableDiffusionTarget, "TextToVideoSDPipeline": TextToVideoTarget}


def is_pipeline_folder(path: str | Path) -> bool:
    """Whether ``path`` is a saved diffusers pipeline (a folder with ``model_index.json``)."""
    return (Path(path) / PIPELINE_INDEX_FILE).is_file()


def _pipeline_class_name(path: str) -> str:
    """``_class_name`` of the pipeline at ``path`` (a local folder or a hub id), read before any weights."""
    from diffusers import DiffusionPipeline

    folder = Path(path).expanduser()
    if folder.exists():
        if not is_pipeline_folder(folder):
            raise GenlabError(f"{path} is not a diffusers pipeline folder (it has no {PIPELINE_INDEX_FILE})")
        try:
            return json.loads((folder / PIPELINE_INDEX_FILE).read_text())["_class_name"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise GenlabError(f"{path}: unreadable {PIPELINE_INDEX_FILE} ({error})") from error
    if folder.is_absolute() or path.startswith((".", "~")) or not _HUB_ID.fullmatch(path):
        raise GenlabError(f"{path} does not exist (expected a diffusers pipeline folder or a hub id)")
    try:
        return DiffusionPipeline.load_config(path)["_class_name"]
    except Exception as error:  # hub and network errors come in many types
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise GenlabError(f"cannot read a diffusers pipeline from {path}: {message}") from error


def load_pipeline_target(path: str | Path, kind: str | None = None, device: str | torch.device | None = None,
                         **options) -> AlignTarget:
    """The alignment target of the diffusers pipeline at ``path`` (a saved folder or a hub id).

    Args:
        path: a folder with ``model_index.json``, or a hub id.
        kind: ``"image"`` or ``"video"`` to insist on that modality; None accepts either.
        device: where the pipeline runs (default: CUDA when available, else the CPU).
        **options: keyword arguments of the target class (``guidance_scale``, ``height``, ``width``;
            ``num_frames`` for text-to-video pipelines).

    A ``StableDiffusionPipeline`` gives a :class:`StableDiffusionTarget`, a ``TextToVideoSDPipeline``
    a :class:`TextToVideoTarget`; other pipeline classes are a GenlabError. A scheduler without
    ``alphas_cumprod`` is replaced by a DDIM scheduler of the same config.
    """
    from diffusers import DiffusionPipeline

    path = str(path)
    if kind not in (None, *PIPELINE_KINDS):
        raise GenlabError(f"kind must be one of {PIPELINE_KINDS} or None, got {kind!r}")
    class_name = _pipeline_class_name(path)
    target_class = PIPELINE_TARGETS.get(class_name)
    if target_class is None:
        raise GenlabError(f"{path} holds a {class_name}; alignment takes diffusers "
                          f"{' or '.join(PIPELINE_TARGETS)} pipelines (or genlab image / video models)")
    if kind is not None and target_class.modality != kind:
        raise GenlabError(f"{path} holds a {class_name}, which makes {target_class.modality}s, not {kind}s")
    if "num_frames" in options and target_class is not TextToVideoTarget:
        raise GenlabError(f"num_frames applies to text-to-video pipelines; {path} holds a {class_name}")
    extra = {"safety_checker": None, "requires_safety_checker": False} if target_class is StableDiffusionTarget else {}
    try:
        pipe = DiffusionPipeline.from_pretrained(path, **extra)
    except Exception as error:  # loading errors come in many types (OSError, ValueError, safetensors, ...)
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise GenlabError(f"cannot load the {class_name} in {path}: {message}") from error
    pipe.scheduler = _vp_scheduler(pipe.scheduler)
    pipe.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return target_class(pipe, **options)
