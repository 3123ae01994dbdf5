"""``genlab train enhance``: teach a frozen video model to enhance (VEnhancer), or train the L2 baseline.

Every training clip gets its own random degradation: a spatial factor from ``--space-factors``,
a temporal factor from ``--time-factors``, a random phase of its key frames (so chunks of a long
video, which start anywhere, look like training clips), and for the ControlNet a noise-augmentation
level ``σ_aug ~ U(0, --max-augment-sigma)`` added to the hint. ``--variant controlnet`` trains the
branch with the EDM loss while the base stays frozen; ``--variant regression`` trains a video DiT
of about the enhancer's total size with plain L2 from the trilinear up-sampling.
"""

from __future__ import annotations

from dataclasses import asdict
from functools import partial
from pathlib import Path

import torch
from torch import Tensor, nn

from genlab.base.video_model import load_video_model, video_clips
from genlab.core.edm import edm_loss
from genlab.core.train import Trainer, TrainResult, unwrap
from genlab.enhance.config import EnhanceConfig, parse_factors
from genlab.enhance.controlnet import EnhanceControlNet
from genlab.enhance.degradation import degrade, key_frame_hint, trilinear_upsample
from genlab.enhance.model import ControlNetEnhancer, RegressionEnhancer, save_enhancer


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
    if unwrap(model).variant == "regression":
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
    trainer.export(save_enhancer, result.ema_model, Path(config.run_dir) / "model")
    return result
