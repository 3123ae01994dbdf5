"""Settings of ``genlab train enhance`` and ``genlab enhance`` and their checks, importable without
torch (``genlab --help`` reads them)."""

from __future__ import annotations

from dataclasses import dataclass

from genlab.base.config import VIDEO_DATA
from genlab.core.config import MAX_SEED, LoopConfig, check_fields, option
from genlab.errors import GenlabError

MAX_FACTOR = 8
VARIANTS = ("controlnet", "regression")


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

    steps: int = option(1500, "total optimiser steps", min=1)
    batch_size: int = option(16, "global batch size (split across processes)", min=1)
    lr: float = option(1e-3, "peak learning rate (Adam)", above=0)
    base: str = option("runs/train/video", "unconditional video model (run folder of `genlab train video "
                       "--no-first-frame`) to enhance with")
    variant: str = option("controlnet", "controlnet: VEnhancer branch, base frozen; regression: the L2 baseline",
                          choices=VARIANTS)
    branch_depth: int = option(2, "base blocks copied into the ControlNet (the regression net gets as many extra)", min=1)
    space_factors: str = option("1,2,4", "spatial factors to train on (each in 1..8)")
    time_factors: str = option("1,2,4", "temporal factors to train on (each in 1..8)")
    max_augment_sigma: float = option(0.3, "noise augmentation: hint noise σ ~ U(0, this) per clip (0: off)", min=0)
    data: str = option("mixed", "training clips: 3-D scenes, moving sprites, or mixed", choices=VIDEO_DATA)
    clips: int = option(2000, "number of training clips", min=1)
    data_seed: int = option(0, "seed of the training clips", min=0, max=MAX_SEED)
    run_dir: str = option("runs/train/enhance", "run folder: config, checkpoints, log, figures, model")
    resume: bool = option(False, "continue the run in --run-dir from its latest checkpoint")

    def validate(self) -> None:
        super().validate()
        parse_factors(self.space_factors, "space-factors")
        parse_factors(self.time_factors, "time-factors")


@dataclass
class EnhanceSettings:
    """How to enhance (each a ``genlab enhance`` flag)."""

    sampling_steps: int = option(15, "Heun noise levels from the SDEdit start down to 0 (ControlNet enhancer)",
                                 renamed_from="--steps", min=1)
    start_sigma: float = option(1.0, "SDEdit start: noise level of the trilinear up-sampling sampling starts from", above=0)
    augment_sigma: float = option(0.1, "noise added to the key-frame hint (the model's noise augmentation)", min=0)
    frame_overlap: int = option(-1, "frames shared by neighbouring chunks (-1: half the model's clip)", min=-1)
    tile_overlap: int = option(-1, "pixels shared by neighbouring tiles (-1: a quarter of the model's resolution)", min=-1)
    memory_budget: float = option(1.0, "GiB of activations one model call may use (bounds windows per call; "
                                  "0: all windows in one call)", min=0)
    seed: int = option(0, "seed of the sampling and augmentation noise", min=0, max=MAX_SEED)

    def validate(self) -> None:
        """Raise GenlabError naming the first setting outside its declared bounds."""
        check_fields(self)


@dataclass
class EnhanceVideoConfig:
    """Which enhancer ``genlab enhance`` runs, by how much, and where the video goes (each a flag; how to
    enhance is :class:`EnhanceSettings`)."""

    model: str = option("runs/train/enhance", "enhancer (run folder of `genlab train enhance`)")
    space: int = option(4, "spatial up-scaling factor s (1-8): frames become s·h × s·w", min=1, max=MAX_FACTOR)
    time: int = option(1, "temporal factor k (1-8): n frames become (n-1)·k + 1, the input at every k-th frame",
                       min=1, max=MAX_FACTOR)
    out: str = option("runs/enhance/out.mp4", "video to write (.mp4 or .gif)")
    fps: float | None = option(None, "frame rate of the output (default: the input's × --time)", type=float, above=0)
