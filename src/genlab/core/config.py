"""Settings of the core models, importable without torch (``genlab --help`` reads them).

:func:`option` declares a dataclass field together with its ``genlab`` flag (help text, choices,
an old spelling): :func:`genlab.cli.options.options_from` turns each field into ``--field-name``.
:class:`LoopConfig` holds the shared training loop's settings; the base models' settings extend it in
:mod:`genlab.base.config`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

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
MAX_SEED = 2**32 - 1  # seeds are mixed with step numbers into 64-bit generator seeds


def option(default, help: str, **metadata):
    """A dataclass field carrying its CLI help text and, in ``metadata``, ``type``, ``choices``,
    ``renamed_from`` (a deprecated spelling of the flag; see :mod:`genlab.cli.options`) and bounds:
    ``min`` / ``max`` (inclusive) and ``above`` (exclusive lower bound); a bool field with ``flag=True`` is a
    plain ``--name`` flag rather than a ``--name/--no-name`` switch, and ``default=dataclasses.MISSING`` makes
    the flag required. Float fields must be finite."""
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
class RunConfig:
    """Settings every genlab training run shares, whichever loop runs it: the shared
    :class:`~genlab.core.train.Trainer` (:class:`LoopConfig`) or the alignment trainer (``AlignConfig``).
    A subclass re-declares a field only to give it another default or help."""

    steps: int = option(2000, "total optimiser steps", min=1)
    batch_size: int = option(64, "global batch size (split across processes)", min=1)
    lr: float = option(2e-3, "peak learning rate (Adam)", above=0)
    grad_clip: float = option(1.0, "clip the gradient norm to this (0 = off)", min=0)
    checkpoint_every: int = option(500, "save a checkpoint every N steps (and at the end)", min=1)
    keep_checkpoints: int = option(2, "how many checkpoints to keep", min=1)
    seed: int = option(0, "seed of the run's random draws (data order or conditions, noise, initialisation)",
                       min=0, max=MAX_SEED)
    progress: bool = option(True, "show a progress bar")
    overwrite: bool = option(False, "start afresh in a run folder that already holds a run's files (config, log, "
                             "checkpoints, model or adapter), replacing them")


@dataclass
class LoopConfig(RunConfig):
    """Settings of the shared training loop (each is a ``genlab train`` flag)."""

    warmup_steps: int = option(100, "linear learning-rate warm-up steps", min=0)
    ema_decay: float = option(0.999, "EMA decay per step (warmed up as (1+s)/(10+s))", min=0)
    mixed_precision: str = option("no", "autocast precision", choices=MIXED_PRECISION)
    log_every: int = option(25, "write a log.jsonl record every N steps", min=1)
    num_workers: int = option(0, "DataLoader worker processes", min=0)

    def validate(self) -> None:
        """Raise GenlabError naming the first bad field."""
        check_fields(self)
        if not self.ema_decay < 1:
            raise GenlabError(f"--ema-decay must be in [0, 1), got {self.ema_decay}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise GenlabError(f"--mixed-precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}")


@dataclass
class SamplingConfig:
    """Settings shared by the commands that sample a trained model (``genlab sample image|disco``,
    ``genlab evaluate``)."""

    model: str = option("runs/train/default", "image model: a run folder of `genlab train image` or its model/ "
                        "folder", renamed_from="--run")
    sampling_steps: int = option(18, "noise levels of the sampler (Heun uses 2*steps-1 network calls)",
                                 renamed_from="--steps", min=1)
    sampler: str = option("heun", "ODE solver", choices=SAMPLERS)
    seed: int = option(0, "noise seed", min=0, max=MAX_SEED)
