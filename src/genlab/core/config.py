"""Settings of the core models, importable without torch (``genlab --help`` reads them).

:func:`option` declares a dataclass field together with its ``genlab`` flag (help text, choices,
an old spelling): :func:`genlab.cli_options.options_from` turns each field into ``--field-name``.
:class:`LoopConfig` holds the shared training loop's settings; :class:`ImageModelConfig` and
:class:`VideoModelConfig` add those of ``genlab train image`` and ``genlab train video``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from genlab.data import DATASETS
from genlab.errors import GenlabError

MIXED_PRECISION = ("no", "bf16", "fp16")
SAMPLERS = ("heun", "euler")
ATTENTION_MODES = ("full", "factorised")
MODEL_SIZES = {
    "unet": {
        "tiny": {"base_channels": 32, "channel_mults": (1, 2), "num_res_blocks": 1, "attention_levels": (1,)},
        "small": {"base_channels": 64, "channel_mults": (1, 2, 2), "num_res_blocks": 2, "attention_levels": (1, 2)},
    },
    "dit": {
        "tiny": {"patch_size": 2, "hidden_size": 128, "depth": 4, "num_heads": 4},
        "small": {"patch_size": 2, "hidden_size": 256, "depth": 8, "num_heads": 8},
    },
}
VIDEO_SIZES = {
    "tiny": {"patch_size": 4, "hidden_size": 96, "depth": 4, "num_heads": 4},
    "small": {"patch_size": 4, "hidden_size": 128, "depth": 6, "num_heads": 4},
}
VIDEO_DATA = ("scenes", "sprites", "mixed")


def option(default, help: str, **metadata):
    """A dataclass field carrying its CLI help text and, in ``metadata``, ``type``, ``choices`` or
    ``renamed_from`` (a deprecated spelling of the flag; see :mod:`genlab.cli_options`)."""
    return field(default=default, metadata={"help": help, **metadata})


@dataclass
class LoopConfig:
    """Settings of the shared training loop (each is a ``genlab train`` flag)."""

    steps: int = option(2000, "total optimiser steps")
    batch_size: int = option(64, "global batch size (split across processes)")
    lr: float = option(2e-3, "peak learning rate (Adam)")
    warmup_steps: int = option(100, "linear learning-rate warm-up steps")
    ema_decay: float = option(0.999, "EMA decay per step (warmed up as (1+s)/(10+s))")
    grad_clip: float = option(1.0, "clip the gradient norm to this (0 = off)")
    mixed_precision: str = option("no", "autocast precision", choices=MIXED_PRECISION)
    checkpoint_every: int = option(500, "save a checkpoint every N steps (and at the end)")
    keep_checkpoints: int = option(2, "how many checkpoints to keep")
    log_every: int = option(25, "write a log.jsonl record every N steps")
    seed: int = option(0, "seed for data order, noise and initialisation")
    num_workers: int = option(0, "DataLoader worker processes")
    progress: bool = option(True, "show a progress bar")

    def validate(self) -> None:
        """Raise GenlabError naming the first bad field."""
        positive = ("steps", "batch_size", "checkpoint_every", "log_every", "keep_checkpoints")
        for name in positive:
            if getattr(self, name) < 1:
                raise GenlabError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise GenlabError(f"--lr must be a positive number, got {self.lr}")
        if not 0 <= self.ema_decay < 1:
            raise GenlabError(f"--ema-decay must be in [0, 1), got {self.ema_decay}")
        if self.grad_clip < 0 or self.warmup_steps < 0 or self.num_workers < 0:
            raise GenlabError("--grad-clip, --warmup-steps and --num-workers must be >= 0")
        if self.mixed_precision not in MIXED_PRECISION:
            raise GenlabError(f"--mixed-precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}")


@dataclass
class ImageModelConfig(LoopConfig):
    """Everything ``genlab train`` needs for an image diffusion model."""

    data: str = option("digits", "data set", choices=DATASETS)
    resolution: int | None = option(None, "image size in pixels (default: the data set's)", type=int)
    arch: str = option("unet", "backbone", choices=tuple(MODEL_SIZES))
    size: str = option("tiny", "backbone size preset", choices=("tiny", "small"))
    conditional: bool = option(True, "class-conditional model (else unconditional)")
    label_dropout: float = option(0.0, "probability of replacing the label by the null label (for CFG)")
    run_dir: str = option("runs/train/default", "run folder: config, checkpoints, log, figures, model")
    resume: bool = option(False, "continue the run in --run-dir from its latest checkpoint")

    def validate(self) -> None:
        super().validate()
        if not 0 <= self.label_dropout < 1:
            raise GenlabError(f"--label-dropout must be in [0, 1), got {self.label_dropout}")
        if self.label_dropout > 0 and not self.conditional:
            raise GenlabError("--label-dropout needs a --conditional model")


@dataclass
class SceneClipsConfig:
    """Which procedural scene clips to train on (shared by ``genlab train video`` and ``train camera``)."""

    clips: int = option(2000, "number of training clips (3-D scenes under random camera paths)")
    data_seed: int = option(0, "seed of the scenes and camera paths")


@dataclass
class VideoModelConfig(SceneClipsConfig, LoopConfig):
    """Everything ``genlab train video`` needs."""

    steps: int = option(3000, "total optimiser steps")
    batch_size: int = option(16, "global batch size (split across processes)")
    lr: float = option(1e-3, "peak learning rate (Adam)")
    frames: int = option(8, "frames per clip")
    resolution: int = option(32, "frame size in pixels")
    size: str = option("tiny", "backbone size preset", choices=tuple(VIDEO_SIZES))
    attention: str = option("full", "space-time attention: full, or factorised (space, then time)",
                            choices=ATTENTION_MODES)
    first_frame: bool = option(True, "condition on the clip's first frame (image-to-video)")
    data: str = option("scenes", "training clips: 3-D scenes under camera paths, moving sprites, or mixed (half "
                       "each)", choices=VIDEO_DATA)
    run_dir: str = option("runs/train/video", "run folder: config, checkpoints, log, figures, model")
    resume: bool = option(False, "continue the run in --run-dir from its latest checkpoint")

    def validate(self) -> None:
        super().validate()
        patch = VIDEO_SIZES[self.size]["patch_size"]
        if self.resolution % patch:
            raise GenlabError(f"--resolution must be a multiple of the patch size {patch}, got {self.resolution}")
