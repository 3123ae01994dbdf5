"""Video denoisers with a camera input, all called as ``denoiser(x, sigma, plucker=..., **first_frame_kwargs)``.

* :class:`ControlNetCameraDenoiser`: VD3D, a frozen base denoiser steered by a
  :class:`~genlab.camera.controlnet.CameraControlNet` (optionally only inside a window of
  diffusion times).
* :class:`EncoderCameraDenoiser`: the CameraCtrl-style baseline, a frozen base plus a camera encoder
  (:class:`~genlab.camera.controlnet.CameraEncoder`) whose features are added inside its blocks.
* :class:`ConcatCameraDenoiser`: the MotionCtrl-style baseline, the Plücker frames concatenated to the
  input of a video DiT whose weights are all fine-tuned (initialised from the base, new input weights 0).
* :class:`CameraBlindDenoiser`: the base model, which ignores the camera (the reference row; trained
  with all weights free it is the control "fine-tuned without any camera").

``x [B, T, C, H, W]``, ``sigma [B]``, ``plucker [B, T, 6, H, W]`` from
:func:`~genlab.camera.plucker.plucker_embedding` at the model's input resolution.
:func:`save_camera_model` / :func:`load_camera_model` write and read them as folders; a CogVideoX
base (:class:`~genlab.camera.cogvideox.CogVideoXDenoiser`) is saved as a reference to its folder.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from genlab.base.info import ModelInfo
from genlab.base.video_model import (
    MODEL_INFO_FILE,
    autoencoder_of,
    first_frame_kwargs,
    load_video_model,
    model_frames,
    read_model_info,
    save_video_model,
)
from genlab.camera.cogvideox import CogVideoXDenoiser
from genlab.camera.controlnet import (
    PLUCKER_CHANNELS,
    CameraControlNet,
    CameraEncoder,
    camera_control,
    taps_for,
)
from genlab.core.checkpoint import json_field
from genlab.core.denoiser import EDMDenoiser
from genlab.core.edm import EDMSchedule
from genlab.core.loading import load_pretrained
from genlab.core.nets import VideoDiT
from genlab.core.nets.autoencoder import FrameAutoencoder
from genlab.core.nets.control import FrozenBase
from genlab.core.nets.video_dit import first_frame_condition
from genlab.errors import GenlabError

VARIANTS = ("controlnet", "encoder", "concat", "none")
BRANCHES = {"controlnet": CameraControlNet, "encoder": CameraEncoder}  # the branch class of each frozen-base variant


class CameraBlindDenoiser(nn.Module):
    """The base video denoiser, called like the camera models but ignoring ``plucker``."""

    variant = "none"

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base
        self.schedule = getattr(base, "schedule", None)
        self.sigma_min, self.sigma_max = base.sigma_min, base.sigma_max

    def time_fraction(self, sigma: Tensor) -> Tensor:
        return self.base.time_fraction(sigma)

    @property
    def backbone(self) -> nn.Module:
        """The base network (a genlab ``VideoDiT``, or a diffusers model for a diffusers denoiser)."""
        return self.base.net if isinstance(self.base, EDMDenoiser) else self.base.model

    @property
    def autoencoder(self):
        """The base's frame autoencoder when it is a latent video model (else None)."""
        return autoencoder_of(self.base)

    def first_frame_kwargs(self, first_frames: Tensor) -> dict[str, Tensor]:
        """Conditioning keywords for clips starting with ``first_frames [B, C, H, W]`` (pixels; genlab nets)."""
        return first_frame_kwargs(self.backbone, model_frames(self.base, first_frames))

    def forward(self, x: Tensor, sigma: Tensor, plucker: Tensor | None = None, **cond) -> Tensor:
        return self.base(x, sigma, **cond)


class ControlNetCameraDenoiser(FrozenBase, CameraBlindDenoiser):
    """VD3D: ``base`` (frozen: ``requires_grad`` off) plus a trainable camera branch.

    Args:
        base: a denoiser over a supported backbone: an :class:`EDMDenoiser` of a genlab ``VideoDiT``,
            or a :class:`~genlab.core.denoiser.DiffusersDenoiser` of a CogVideoX transformer (a
            :class:`~genlab.camera.cogvideox.CogVideoXDenoiser` to be saved).
        controlnet: the camera branch, sized for the backbone (:meth:`CameraControlNet.for_backbone`), or any
            module called the same way (``(base_tokens, plucker, emb) -> residuals``, with ``blocks``).
        window: ``(start, end)`` diffusion times in ``[0, 1]`` (0 = clean, 1 = pure noise, as
            ``base.time_fraction``) where the branch runs; elsewhere the base runs alone.
    """

    variant = "controlnet"

    def __init__(self, base: nn.Module, controlnet: CameraControlNet, window: tuple[float, float] = (0.0, 1.0)) -> None:
        super().__init__(base)
        start, end = window
        if not 0 <= start < end <= 1:
            raise GenlabError(f"the ControlNet window must satisfy 0 <= start < end <= 1, got {window}")
        self.controlnet, self.window = controlnet, (float(start), float(end))
        self.taps = taps_for(self.backbone)
        base.requires_grad_(False)

    def active(self, sigma: Tensor) -> Tensor:
        """``[B]`` bool: whether the branch runs at each sample's noise level."""
        fraction = self.base.time_fraction(sigma)
        return (fraction >= self.window[0]) & (fraction <= self.window[1])

    def forward(self, x: Tensor, sigma: Tensor, plucker: Tensor | None = None, **cond) -> Tensor:
        if plucker is None:
            raise GenlabError("this camera model needs plucker [B, T, 6, H, W] (the requested cameras)")
        with camera_control(self.taps, self.controlnet, plucker, self.active(sigma).to(x.device)):
            return self.base(x, sigma, **cond)


class EncoderCameraDenoiser(ControlNetCameraDenoiser):
    """The CameraCtrl-style baseline: ``base`` (frozen) steered by a :class:`~genlab.camera.controlnet.CameraEncoder`
    that sees only the cameras."""

    variant = "encoder"


class ConcatCameraDenoiser(EDMDenoiser):
    """The naive baseline: an EDM video DiT whose last 6 condition channels are the Plücker frames."""

    variant = "concat"

    def __init__(self, net: VideoDiT, schedule: EDMSchedule, autoencoder: FrameAutoencoder | None = None) -> None:
        super().__init__(net, schedule)
        if autoencoder is not None:  # the base is a latent video model: the net denoises its latents
            self.autoencoder = autoencoder.requires_grad_(False).eval()

    @classmethod
    def from_base(cls, base: EDMDenoiser) -> ConcatCameraDenoiser:
        """Copy ``base`` and widen its input by 6 zero-weighted channels (so it starts as the base); a latent base's
        frame autoencoder is shared, frozen."""
        config = dict(base.net.config)
        config["condition_channels"] += PLUCKER_CHANNELS
        net = VideoDiT(**config)
        state = copy.deepcopy(base.net.state_dict())
        weight = state["patch_embed.weight"]  # [hidden, C_in, pt, p, p]
        extra = weight.new_zeros(weight.shape[0], PLUCKER_CHANNELS, *weight.shape[2:])
        state["patch_embed.weight"] = torch.cat([weight, extra], dim=1)
        net.load_state_dict(state)
        return cls(net, base.schedule, autoencoder_of(base))

    @property
    def backbone(self) -> VideoDiT:
        return self.net

    def first_frame_kwargs(self, first_frames: Tensor) -> dict[str, Tensor]:
        """``condition`` holds the first frame when the base was image-to-video; the Plücker channels follow."""
        if self.net.config.condition_channels == PLUCKER_CHANNELS:
            return {}
        return {"condition": first_frame_condition(model_frames(self, first_frames), self.net.config.frames)}

    def forward(self, x: Tensor, sigma: Tensor, plucker: Tensor | None = None, condition: Tensor | None = None,
                **cond) -> Tensor:
        if plucker is None:
            raise GenlabError("this camera model needs plucker [B, T, 6, H, W] (the requested cameras)")
        condition = plucker if condition is None else torch.cat([condition, plucker.to(condition)], dim=2)
        return super().forward(x, sigma, condition=condition, **cond)


@dataclass(frozen=True)
class CameraModelInfo(ModelInfo):
    """A camera model's ``genlab.json``: its variant (one of :data:`VARIANTS`), the CogVideoX base it steers when
    that is saved as a reference (:meth:`CogVideoXDenoiser.reference`; its fields are checked when it loads) and,
    for the ControlNet, its window of diffusion times ``(start, end)``."""

    variant: str
    cogvideox: dict | None = None
    window: tuple[float, float] | None = None

    @classmethod
    def from_json(cls, info: Mapping, source: Path | str) -> CameraModelInfo:
        """The info in a camera model's ``genlab.json`` object ``info`` read from ``source``; GenlabError naming
        ``source`` for an unknown variant or a missing or mistyped field."""
        variant = json_field(info, "variant", str, source)
        if variant not in VARIANTS:
            raise GenlabError(f"{source}: unknown camera model variant {variant!r}")
        if variant == "concat":
            return cls(variant)
        cogvideox = json_field(info, "cogvideox", dict, source) if "cogvideox" in info else None
        if variant == "none":
            return cls(variant, cogvideox)
        window = json_field(info, "window", list, source)
        if len(window) != 2 or not all(type(time) in (int, float) for time in window) or not 0 <= window[0] < window[1] <= 1:
            raise GenlabError(f"{source} is corrupt: 'window' should be [start, end] with 0 <= start < end <= 1, "
                              f"got {window!r}")
        return cls(variant, cogvideox, tuple(window))

    def to_json(self) -> dict[str, Any]:
        info: dict[str, Any] = {"method": "camera", "variant": self.variant}
        if self.cogvideox is not None:
            info["cogvideox"] = self.cogvideox
        if self.window is not None:
            info["window"] = list(self.window)
        return info


def save_camera_model(denoiser: nn.Module, folder: Path | str) -> None:
    """Write a camera denoiser (any of the three variants) to ``folder``.

    A genlab VideoDiT base (or the concat model's net) is copied in; a CogVideoX base is recorded
    as a reference to its CogVideoX folder (``"cogvideox"`` in ``genlab.json``), so only the
    camera branch is written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cogvideox = window = None
    if isinstance(denoiser, ConcatCameraDenoiser):
        save_video_model(denoiser, folder / "net")
    elif isinstance(denoiser.base, CogVideoXDenoiser):
        cogvideox = denoiser.base.reference()
    elif isinstance(denoiser.base, EDMDenoiser):
        save_video_model(denoiser.base, folder / "base")
    else:
        raise GenlabError(f"cannot save a camera model on a {type(denoiser.base).__name__}: a diffusers base is saved "
                          "as a reference to its local CogVideoX folder, so load it with "
                          "genlab.camera.cogvideox.CogVideoXDenoiser.from_folder(FOLDER)")
    if isinstance(denoiser, ControlNetCameraDenoiser):
        denoiser.controlnet.save_pretrained(folder / denoiser.variant)
        window = tuple(denoiser.window)
    CameraModelInfo(denoiser.variant, cogvideox, window).save(folder)


def load_camera_model(path: Path | str) -> nn.Module:
    """Load a model written by :func:`save_camera_model` (a run folder or its ``model/``), in eval mode."""
    folder, saved = read_model_info(path, "camera", "add cameras with `genlab train camera --base VIDEO_MODEL`")
    source = folder / MODEL_INFO_FILE
    info = CameraModelInfo.from_json(saved, source)
    if info.variant == "concat":
        net_denoiser = load_video_model(folder / "net")
        return ConcatCameraDenoiser(net_denoiser.net, net_denoiser.schedule, autoencoder_of(net_denoiser)).eval()
    if info.cogvideox is not None:
        base = CogVideoXDenoiser.from_reference(info.cogvideox, source)
    else:
        base = load_video_model(folder / "base")
    if info.variant == "none":
        return CameraBlindDenoiser(base).eval()
    branch = load_pretrained(BRANCHES[info.variant], folder / info.variant, f"camera {info.variant}")
    wrapper = EncoderCameraDenoiser if info.variant == "encoder" else ControlNetCameraDenoiser
    return wrapper(base, branch, info.window).eval()


def trainable_parameters(denoiser: nn.Module) -> int:
    """Number of parameters that training updates (``requires_grad``)."""
    return sum(p.numel() for p in denoiser.parameters() if p.requires_grad)
