"""``genlab train enhance``: teach a frozen video model to enhance (VEnhancer), or train the L2 baseline.

Every training clip gets its own random degradation: a spatial factor from ``--space-factors``,
a temporal factor from ``--time-factors``, a random phase of its key frames (so chunks of a long
video, which start anywhere, look like training clips), and for the ControlNet a noise-augmentation
level ``σ_aug ~ U(0, --max-augment-sigma)`` added to the hint. ``--variant controlnet`` trains the
branch with the EDM loss while the base stays frozen; ``--variant regression`` trains a video DiT
of about the enhancer's total size with plain L2 from the trilinear up-sampling.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import torch
from torch import Tensor, nn

from genlab.core.edm import edm_loss
from genlab.core.train import LoopConfig, Trainer, TrainResult, option
from genlab.core.video_model import VIDEO_DATA, load_video_model, video_clips
from genlab.enhance.controlnet import EnhanceControlNet
from genlab.enhance.degradation import MAX_FACTOR, degrade, key_frame_hint, trilinear_upsample
from genlab.enhance.model import VARIANTS, ControlNetEnhancer, RegressionEnhancer, save_enhancer
from genlab.errors import GenlabError


def parse_factors(text: str, name: str) -> tuple[int, ...]:
    """``"1,2,4"`` -> ``(1, 2, 4)``, each checked to lie in ``1..8``."""
    try:
        factors = tuple(int(part) for part in text.split(","))
    except ValueError as error:
        raise GenlabError(f"--{name} must be comma-separated integers such as 1,2,4; got {text!r}") from error
    if not factors or any(not 1 <= factor <= MAX_FACTOR for factor in factors):
        raise GenlabError(f"--{name}: every factor must lie in 1..{MAX_FACTOR}, got {text!r}")
    return factors


@dataclass
class EnhanceConfig(LoopConfig):
    """Everything ``genlab train enhance`` needs; frames and resolution come from the base model."""

    steps: int = option(1500, "total optimiser steps")
    batch_size: int = option(16, "global batch size (split across processes)")
    lr: float = option(1e-3, "peak learning rate (Adam)")
    base: str = option("runs/train/video", "unconditional video model (run folder of `genlab train video "
                       "--no-first-frame`) to enhance with")
    variant: str = option("controlnet", "controlnet: VEnhancer branch, base frozen; regression: the L2 baseline",
                          choices=VARIANTS)
    branch_depth: int = option(2, "base blocks copied into the ControlNet (the regression net gets as many extra)")
    space_factors: str = option("1,2,4", "spatial factors to train on (each in 1..8)")
    time_factors: str = option("1,2,4", "temporal factors to train on (each in 1..8)")
    max_augment_sigma: float = option(0.3, "noise augmentation: hint noise σ ~ U(0, this) per clip (0: off)")
    data: str = option("mixed", "training clips: 3-D scenes, moving sprites, or mixed", choices=VIDEO_DATA)
    clips: int = option(2000, "number of training clips")
    data_seed: int = option(0, "seed of the training clips")
    run_dir: str = option("runs/train/enhance", "run folder: config, checkpoints, log, figures, model")
    resume: bool = option(False, "continue the run in --run-dir from its latest checkpoint")

    def validate(self) -> None:
        super().validate()
        parse_factors(self.space_factors, "space-factors")
        parse_factors(self.time_factors, "time-factors")
        if self.max_augment_sigma < 0:
            raise GenlabError(f"--max-augment-sigma must be >= 0, got {self.max_augment_sigma}")


def random_degradation(videos: Tensor, spaces: tuple[int, ...], times: tuple[int, ...],
                       max_augment_sigma: float) -> dict[str, Tensor]:
    """A random degradation per clip of ``videos [B, T, 3, R, R]`` (global torch RNG).

    Returns ``hint [B, T, 3, R, R]`` (noise-augmented), ``key_frames [B, T]``, ``space [B]``,
    ``augment_sigma [B]`` and ``trilinear [B, T, 3, R, R]``.
    """
    batch, frames = videos.shape[:2]
    size = tuple(videos.shape[-2:])
    space = torch.tensor(spaces)[torch.randint(len(spaces), (batch,))]
    time = torch.tensor(times)[torch.randint(len(times), (batch,))]
    hints, masks, trilinears = [], [], []
    for clip, s, k in zip(videos, space.tolist(), time.tolist(), strict=True):
        offset = int(torch.randint(min(k, frames), ()))
        low = degrade(clip[None], s, k, offset)
        hint, mask = key_frame_hint(low, k, size, frames, offset)
        hints.append(hint)
        masks.append(mask)
        trilinears.append(trilinear_upsample(low, k, size, frames, offset))
    key_frames = torch.cat(masks).to(videos.device)
    augment_sigma = torch.rand(batch, device=videos.device) * max_augment_sigma
    noise = torch.randn_like(videos) * (augment_sigma[:, None] * key_frames)[:, :, None, None, None]
    return {"hint": torch.cat(hints) + noise, "key_frames": key_frames, "space": space.to(videos.device),
            "augment_sigma": augment_sigma, "trilinear": torch.cat(trilinears)}


def enhance_loss(model: nn.Module, batch: tuple, spaces: tuple[int, ...], times: tuple[int, ...],
                 max_augment_sigma: float) -> Tensor:
    """EDM loss of the ControlNet enhancer, or L2 of the regression baseline, on ``(videos, ...)`` batches."""
    videos = batch[0]
    condition = random_degradation(videos, spaces, times, max_augment_sigma)
    trilinear = condition.pop("trilinear")
    if model.variant == "regression":
        prediction = model(trilinear, condition["key_frames"], condition["space"])
        return (prediction - videos).pow(2).mean()
    return edm_loss(model, videos, **condition).mean()


def build_enhancer(config: EnhanceConfig, base=None) -> nn.Module:
    """A fresh enhancer of ``config.variant`` for the base (loaded from ``config.base`` if not given)."""
    base = base if base is not None else load_video_model(config.base)
    torch.manual_seed(config.seed)
    if config.variant == "regression":
        return RegressionEnhancer.from_base(base, config.branch_depth)
    return ControlNetEnhancer(base, EnhanceControlNet.for_base(base.net, config.branch_depth))


def train_enhancer(config: EnhanceConfig, base=None) -> TrainResult:
    """Train (or resume) an enhancer on top of ``config.base`` (or the given ``base`` denoiser); export it
    to ``<run_dir>/model``."""
    config.validate()
    model = build_enhancer(config, base)
    cfg = model.net_config
    dataset = video_clips(config.data, config.clips, cfg.frames, cfg.resolution, config.data_seed, config.progress)
    loss = partial(enhance_loss, spaces=parse_factors(config.space_factors, "space-factors"),
                   times=parse_factors(config.time_factors, "time-factors"),
                   max_augment_sigma=config.max_augment_sigma)
    trainer = Trainer(model, loss, dataset, config.run_dir, config, {**asdict(config), "method": "enhance"})
    result = trainer.fit(resume=config.resume)
    if trainer.accelerator.is_main_process:
        save_enhancer(result.ema_model, Path(config.run_dir) / "model")
    return result
