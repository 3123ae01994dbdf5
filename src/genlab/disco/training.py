"""Training a DisCo-Diff image model in two stages, in one run folder.

``<run_dir>/stage1/`` holds the encoder + denoiser run (checkpoints, log, loss curve),
``<run_dir>/prior/`` the prior run, ``<run_dir>/model/`` the exported whole model
(:meth:`DisCoDiff.from_pretrained`). ``--resume`` continues whichever stage was interrupted.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from genlab.base.image_model import drop_labels
from genlab.core.checkpoint import discard, latest_checkpoint
from genlab.core.config import MODEL_SIZES
from genlab.core.denoiser import EDMDenoiser
from genlab.core.edm import EDMSchedule
from genlab.core.train import Trainer
from genlab.data import load_dataset
from genlab.disco.config import DisCoConfig
from genlab.disco.encoder import LatentEncoder
from genlab.disco.model import DisCoDiff, DisCoInfo
from genlab.disco.network import DisCoNet
from genlab.disco.prior import LatentPrior, build_prior_lm
from genlab.errors import GenlabError

ENCODER_SIZES = {"tiny": {"hidden_size": 64, "depth": 2, "num_heads": 4},
                 "small": {"hidden_size": 192, "depth": 4, "num_heads": 4}}
LATENT_SIZES = {"tiny": {"latent_dim": 64, "latent_depth": 1}, "small": {"latent_dim": 192, "latent_depth": 2}}
PRIOR_SIZES = {"tiny": {"hidden_size": 128, "num_layers": 3}, "small": {"hidden_size": 192, "num_layers": 4}}
COLLAPSE_WARNING = 0.5  # warn when a latent uses fewer than this share of its codes


def build_disco(config: DisCoConfig, channels: int, resolution: int, num_classes: int) -> DisCoDiff:
    """A freshly initialised (seeded) DisCo-Diff model without prior."""
    torch.manual_seed(config.seed)
    num_classes = num_classes if config.conditional else 0
    encoder = LatentEncoder(in_channels=channels, resolution=resolution, patch_size=max(1, resolution // 4),
                            num_latents=config.num_latents, num_codes=config.num_codes,
                            batch_norm_head=config.encoder_batch_norm, **ENCODER_SIZES[config.size])
    backbone = {"in_channels": channels, "resolution": resolution, "num_classes": num_classes,
                **MODEL_SIZES[config.arch][config.size]}
    net = DisCoNet(config.arch, backbone, config.num_latents, config.num_codes, latent_groups=config.latent_groups,
                   **LATENT_SIZES[config.size])
    info = DisCoInfo(data=config.data, num_classes=num_classes, channels=channels, resolution=resolution)
    return DisCoDiff(encoder, EDMDenoiser(net, EDMSchedule()), temperature=config.temperature,
                     straight_through=config.straight_through, latent_dropout=config.latent_dropout, info=info)


def stage1_loss(num_classes: int, label_dropout: float):
    """Stage-1 loss on ``(images, labels)`` batches; labels dropped to the null label with some probability."""

    def loss_fn(model, batch):
        images, labels = batch
        if not num_classes:
            return model(images)
        return model(images, drop_labels(labels, num_classes, label_dropout))

    return loss_fn


def _resume_stage(run_dir: Path, resume: bool) -> bool:
    """Resume a stage when asked and it has a checkpoint (a stage not yet started starts fresh)."""
    return resume and latest_checkpoint(run_dir / "checkpoints") is not None


def train_disco(config: DisCoConfig) -> DisCoDiff:
    """Train (or resume) both stages; export the whole model to ``<run_dir>/model``; return it (eval mode)."""
    config.validate()
    run_dir = Path(config.run_dir)
    if config.resume and latest_checkpoint(run_dir / "stage1" / "checkpoints") is None:
        raise GenlabError(f"--resume: no stage-1 checkpoint in {run_dir / 'stage1'}")
    if not config.resume and (run_dir / "model").exists():
        if not config.overwrite:
            raise GenlabError(f"run folder {run_dir} already holds a model/; pass --resume to continue its run, "
                              "--overwrite to replace it, or choose another --run-dir")
        discard(run_dir / "model")
    dataset = load_dataset(config.data, "train", config.resolution, config.seed)
    images, labels = dataset.images(), dataset.labels()
    model = build_disco(config, dataset.channels, dataset.resolution, dataset.num_classes)
    num_classes = model.info.num_classes
    run_config = {**asdict(config), "resolution": dataset.resolution, "method": "disco"}

    stage1 = Trainer(model, stage1_loss(num_classes, config.label_dropout), TensorDataset(images, labels),
                     run_dir / "stage1", config, {**run_config, "stage": 1})
    model = stage1.fit(resume=_resume_stage(run_dir / "stage1", config.resume)).ema_model.eval()
    model.calibrate_encoder(images)
    usage = model.code_usage(images)
    model.info = replace(model.info, code_usage=tuple(usage.tolist()))
    if stage1.accelerator.is_main_process:  # every process encodes the data for stage 2; one warns
        warn_collapse(usage)

    generator = torch.Generator().manual_seed(config.seed)
    codes = model.encode(images, stochastic=True, generator=generator)
    torch.manual_seed(config.seed)
    prior = LatentPrior(build_prior_lm(config.num_latents, config.num_codes, num_classes,
                                       **PRIOR_SIZES[config.size]))
    prior_loop = config.prior_loop()
    stage2 = Trainer(prior, lambda p, batch: p(batch[0], batch[1] if num_classes else None),
                     TensorDataset(codes, labels), run_dir / "prior", prior_loop,
                     {**run_config, "stage": 2, **asdict(prior_loop)})
    model.prior = stage2.fit(resume=_resume_stage(run_dir / "prior", config.resume)).ema_model.eval()
    stage2.export(model.save_pretrained, run_dir / "model")
    return model


def warn_collapse(usage: torch.Tensor) -> None:
    """Warn (codebook collapse) when any latent uses fewer than half of its codes."""
    low = [f"latent {i}: {share:.0%}" for i, share in enumerate(usage.tolist()) if share < COLLAPSE_WARNING]
    if low:
        warnings.warn(f"codebook collapse: some latents use few of their codes ({', '.join(low)}); "
                      "try more training, --straight-through or fewer codes", stacklevel=2)
