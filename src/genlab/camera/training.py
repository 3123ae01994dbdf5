"""``genlab train camera``: add a camera input to a trained video model.

``--variant controlnet`` (VD3D) trains only a camera branch on top of the frozen base;
``--variant concat`` (the naive baseline) fine-tunes a copy of the whole base with the Plücker
frames concatenated to its input. Both train with the EDM loss on scene clips whose cameras are
known, and export ``<run_dir>/model`` (see :mod:`genlab.camera.model`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from genlab.camera.controlnet import CameraControlNet
from genlab.camera.model import (
    ConcatCameraDenoiser,
    ControlNetCameraDenoiser,
    save_camera_model,
)
from genlab.camera.plucker import plucker_embedding
from genlab.core.edm import edm_loss
from genlab.core.train import LoopConfig, Trainer, TrainResult, option
from genlab.core.video_model import SceneClipsConfig, load_video_model, scene_clips
from genlab.errors import GenlabError


@dataclass
class CameraModelConfig(SceneClipsConfig, LoopConfig):
    """Everything ``genlab train camera`` needs; frames and resolution come from the base model."""

    steps: int = option(1500, "total optimiser steps")
    batch_size: int = option(16, "global batch size (split across processes)")
    lr: float = option(1e-3, "peak learning rate (Adam)")
    base: str = option("runs/train/video", "trained video model (run folder or its model/) to add cameras to")
    variant: str = option("controlnet", "controlnet: VD3D branch, base frozen; concat: Plücker concatenated to "
                          "the input, whole model fine-tuned", choices=("controlnet", "concat"))
    branch_hidden: int = option(96, "width of the ControlNet branch")
    branch_depth: int = option(2, "blocks of the ControlNet branch (= base blocks it feeds)")
    window_start: float = option(0.0, "the branch runs for diffusion times in [window-start, window-end] "
                                 "(0 = clean, 1 = pure noise)")
    window_end: float = option(1.0, "end of the branch's activity window")
    run_dir: str = option("runs/train/camera", "run folder: config, checkpoints, log, figures, model")
    resume: bool = option(False, "continue the run in --run-dir from its latest checkpoint")


def build_camera_denoiser(config: CameraModelConfig, base=None) -> nn.Module:
    """The camera model of ``config.variant`` around the base model (loaded from ``config.base`` if not given)."""
    base = base if base is not None else load_video_model(config.base)
    torch.manual_seed(config.seed)
    if config.variant == "concat":
        return ConcatCameraDenoiser.from_base(base)
    if config.variant != "controlnet":
        raise GenlabError(f"--variant must be controlnet or concat, got {config.variant!r}")
    branch = CameraControlNet.for_backbone(base.net, hidden_size=config.branch_hidden, depth=config.branch_depth,
                                           num_heads=base.net.config.num_heads)
    return ControlNetCameraDenoiser(base, branch, (config.window_start, config.window_end))


def clip_plucker(camera_to_world: Tensor, intrinsics: Tensor, resolution: int) -> Tensor:
    """Plücker frames ``[B, T, 6, H, W]`` (float32) of a batch of clips' cameras, relative to frame 0."""
    return plucker_embedding(camera_to_world.double(), intrinsics.double(), resolution, resolution).float()


def camera_loss(denoiser: nn.Module, batch: tuple) -> Tensor:
    """EDM loss on ``(videos [B,T,3,H,W], camera_to_world [B,T,4,4], intrinsics [B,T,3,3], ...)`` batches."""
    videos, camera_to_world, intrinsics = batch[:3]
    first = denoiser.first_frame_kwargs(videos[:, 0])
    plucker = clip_plucker(camera_to_world, intrinsics, videos.shape[-1]).to(videos)
    return edm_loss(denoiser, videos, plucker=plucker, **first).mean()


def train_camera_model(config: CameraModelConfig) -> TrainResult:
    """Train (or resume) a camera model on top of ``config.base``; export it to ``<run_dir>/model``."""
    config.validate()
    denoiser = build_camera_denoiser(config)
    net_config = denoiser.backbone.config
    dataset = scene_clips(config.clips, net_config.frames, net_config.resolution, config.data_seed, config.progress)
    run_config = {**asdict(config), "method": "camera"}
    trainer = Trainer(denoiser, camera_loss, dataset, config.run_dir, config, run_config)
    result = trainer.fit(resume=config.resume)
    if trainer.accelerator.is_main_process:
        save_camera_model(result.ema_model, Path(config.run_dir) / "model")
    return result
