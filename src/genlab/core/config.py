"""Settings of the core models, importable without torch (``genlab --help`` reads them).

:func:`option` declares a dataclass field together with its ``genlab`` flag (help text, choices,
an old spelling): :func:`genlab.cli_options.options_from` turns each field into ``--field-name``.
:class:`LoopConfig` holds the shared training loop's settings; :class:`ImageModelConfig` and
:class:`VideoModelConfig` add those of ``genlab train image`` and ``genlab train video``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

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
MAX_SEED = 2**32 - 1  # seeds are mixed with step numbers into 64-bit generator seeds


def option(default, help: str, **metadata):
    """A dataclass field carrying its CLI help text and, in ``metadata``, ``type``, ``choices``,
    ``renamed_from`` (a deprecated spelling of the flag; see :mod:`genlab.cli_options`) and bounds:
    ``min`` / ``max`` (inclusive) and ``above`` (exclusive lower bound). Float fields must be finite."""
    return field(default=default, metadata={"help": help, **metadata})


def flag_name(name: str) -> str:
    """The ``genlab`` flag of config field ``name``: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def check_value(flag: str, value, minimum=None, maximum=None, above=None) -> None:
    """Raise GenlabError unless number ``value`` is finite and within the bounds (None = unbounded)."""
    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise GenlabError(f"{flag} must be a finite number, got {value}")
    if minimum is not None and value < minimum:
        raise GenlabError(f"{flag} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise GenlabError(f"{flag} must be <= {maximum}, got {value}")
    if above is not None and not value > above:
        raise GenlabError(f"{flag} must be > {above}, got {value}")


def check_fields(config) -> None:
    """Check every numeric field of dataclass ``config`` against the bounds in its :func:`option` metadata
    (and that floats are finite); GenlabError naming the flag of the first bad one."""
    for config_field in fields(config):
        meta = config_field.metadata
        check_value(flag_name(config_field.name), getattr(config, config_field.name), meta.get("min"),
                    meta.get("max"), meta.get("above"))


@dataclass
class LoopConfig:
    """Settings of the shared training loop (each is a ``genlab train`` flag)."""

    steps: int = option(2000, "total optimiser steps", min=1)
    batch_size: int = option(64, "global batch size (split across processes)", min=1)
    lr: float = option(2e-3, "peak learning rate (Adam)", above=0)
    warmup_steps: int = option(100, "linear learning-rate warm-up steps", min=0)
    ema_decay: float = option(0.999, "EMA decay per step (warmed up as (1+s)/(10+s))", min=0)
    grad_clip: float = option(1.0, "clip the gradient norm to this (0 = off)", min=0)
    mixed_precision: str = option("no", "autocast precision", choices=MIXED_PRECISION)
    checkpoint_every: int = option(500, "save a checkpoint every N steps (and at the end)", min=1)
    keep_checkpoints: int = option(2, "how many checkpoints to keep", min=1)
    log_every: int = option(25, "write a log.jsonl record every N steps", min=1)
    seed: int = option(0, "seed for data order, noise and initialisation", min=0, max=MAX_SEED)
    num_workers: int = option(0, "DataLoader worker processes", min=0)
    progress: bool = option(True, "show a progress bar")
    overwrite: bool = option(False, "start afresh in a run folder that already holds a run's files (config, log, "
                             "model), replacing them")

    def validate(self) -> None:
        """Raise GenlabError naming the first bad field."""
        check_fields(self)
        if not self.ema_decay < 1:
            raise GenlabError(f"--ema-decay must be in [0, 1), got {self.ema_decay}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise GenlabError(f"--mixed-precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}")


@dataclass
class ImageModelConfig(LoopConfig):
    """Everything ``genlab train`` needs for an image diffusion model."""

    data: str = option("digits", "data set", choices=DATASETS)
    resolution: int | None = option(None, "image size in pixels (default: the data set's)", type=int, min=8)
    arch: str = option("unet", "backbone", choices=tuple(MODEL_SIZES))
    size: str = option("tiny", "backbone size preset", choices=("tiny", "small"))
    conditional: bool = option(True, "class-conditional model (else unconditional)")
    label_dropout: float = option(0.0, "probability of replacing the label by the null label (for CFG)", min=0, max=0.99)
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

    clips: int = option(2000, "number of training clips (3-D scenes under random camera paths)", min=1)
    data_seed: int = option(0, "seed of the scenes and camera paths", min=0, max=MAX_SEED)


@dataclass
class VideoModelConfig(SceneClipsConfig, LoopConfig):
    """Everything ``genlab train video`` needs."""

    steps: int = option(3000, "total optimiser steps", min=1)
    batch_size: int = option(16, "global batch size (split across processes)", min=1)
    lr: float = option(1e-3, "peak learning rate (Adam)", above=0)
    frames: int = option(8, "frames per clip", min=2)
    resolution: int = option(32, "frame size in pixels", min=4)
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
