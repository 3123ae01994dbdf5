"""``genlab train camera``: add a camera input to a trained video model.

``--variant controlnet`` (VD3D) trains only a camera branch on top of the frozen base;
``--variant encoder`` (CameraCtrl-style) trains only a camera encoder whose features are added
inside the frozen base's blocks; ``--variant concat`` (MotionCtrl-style) fine-tunes a copy of the
whole base with the Plücker frames concatenated to its input; ``--variant none`` fine-tunes a copy
of the whole base without any camera (the control that separates "kept training" from
"followed the camera"). All train with the EDM loss on scene clips whose cameras are known and
export ``<run_dir>/model`` (see :mod:`genlab.camera.model`).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor, nn

from genlab.base.video_model import clip_size, load_video_model, model_shape, model_videos, scene_clips
from genlab.camera.config import CameraModelConfig
from genlab.camera.controlnet import CameraControlNet, CameraEncoder
from genlab.camera.model import (
    VARIANTS,
    CameraBlindDenoiser,
    ConcatCameraDenoiser,
    ControlNetCameraDenoiser,
    EncoderCameraDenoiser,
    save_camera_model,
)
from genlab.camera.plucker import plucker_embedding
from genlab.core.edm import edm_loss
from genlab.core.train import Trainer, TrainResult, unwrap
from genlab.errors import GenlabError


def build_camera_denoiser(config: CameraModelConfig, base=None) -> nn.Module:
    """The camera model of ``config.variant`` around the base model (loaded from ``config.base`` if not given)."""
    base = base if base is not None else load_video_model(config.base)
    torch.manual_seed(config.seed)
    if config.variant == "concat":
        return ConcatCameraDenoiser.from_base(base)
    if config.variant == "none":
        return CameraBlindDenoiser(base)  # every weight of the base trains
    window = (config.window_start, config.window_end)
    if config.variant == "encoder":
        return EncoderCameraDenoiser(base, CameraEncoder.for_backbone(base.net, config.branch_hidden), window)
    if config.variant != "controlnet":
        raise GenlabError(f"--variant must be one of {', '.join(VARIANTS)}, got {config.variant!r}")
    branch = CameraControlNet.for_backbone(base.net, hidden_size=config.branch_hidden, depth=config.branch_depth,
                                           num_heads=base.net.config.num_heads)
    return ControlNetCameraDenoiser(base, branch, window)


def clip_plucker(camera_to_world: Tensor, intrinsics: Tensor, resolution: int, grid: int | None = None) -> Tensor:
    """Plücker frames ``[B, T, 6, grid, grid]`` (float32) of a batch of clips' cameras, relative to frame 0.

    ``intrinsics`` are in pixels of ``resolution × resolution`` frames; ``grid`` (default ``resolution``) cells a side
    each take the ray through their centre, e.g. one per latent cell of a latent video model.
    """
    grid = resolution if grid is None else grid
    scale = torch.tensor([grid / resolution, grid / resolution, 1.0], dtype=torch.float64, device=intrinsics.device)
    scaled = intrinsics.double() * scale[:, None]  # rows fx, cx and fy, cy scale with the grid; the last row is (0, 0, 1)
    return plucker_embedding(camera_to_world.double(), scaled, grid, grid).float()


def model_plucker(denoiser: nn.Module, camera_to_world: Tensor, intrinsics: Tensor, resolution: int) -> Tensor:
    """The Plücker frames a camera model takes for clips of ``resolution``-pixel frames: one ray per pixel, or per
    latent cell when its base is a latent video model."""
    grid = model_shape(denoiser, (1, 1, 3, resolution, resolution))[-1]
    return clip_plucker(camera_to_world, intrinsics, resolution, grid)


def camera_loss(denoiser: nn.Module, batch: tuple) -> Tensor:
    """EDM loss on ``(videos [B,T,3,H,W], camera_to_world [B,T,4,4], intrinsics [B,T,3,3], ...)`` batches (pixel clips;
    a latent model's loss is on their latents)."""
    videos, camera_to_world, intrinsics = batch[:3]
    model = unwrap(denoiser)
    first = model.first_frame_kwargs(videos[:, 0])
    plucker = model_plucker(model, camera_to_world, intrinsics, videos.shape[-1]).to(videos)
    return edm_loss(denoiser, model_videos(model, videos), plucker=plucker, **first).mean()


def train_camera_model(config: CameraModelConfig) -> TrainResult:
    """Train (or resume) a camera model on top of ``config.base``; export it to ``<run_dir>/model``."""
    config.validate()
    denoiser = build_camera_denoiser(config)
    frames, resolution = clip_size(denoiser)
    dataset = scene_clips(config.clips, frames, resolution, config.data_seed, config.progress)
    run_config = {**asdict(config), "method": "camera"}
    trainer = Trainer(denoiser, camera_loss, dataset, config.run_dir, config, run_config)
    result = trainer.fit(resume=config.resume)
    trainer.export(save_camera_model, result.ema_model, Path(config.run_dir) / "model")
    return result
