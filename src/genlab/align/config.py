"""Settings of an alignment run (VADER or DDPO); every field is a ``genlab align`` flag."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from genlab.core.config import option
from genlab.errors import GenlabError

METHODS = ("vader", "ddpo")
PRECISIONS = ("no", "bf16")
FRAME_MODES = "all | random | every-N"


@dataclass
class AlignConfig:
    """Everything ``genlab align`` needs besides the model and the reward."""

    method: str = option("vader", "vader: back-propagate the reward; ddpo: PPO on the sampler's log-probabilities",
                         choices=METHODS)
    steps: int = option(100, "optimiser updates")
    batch_size: int = option(8, "samples per micro-batch (split across processes under accelerate launch)")
    accumulate: int = option(1, "micro-batches per update (gradient accumulation)")
    lr: float = option(1e-3, "learning rate (AdamW)")
    grad_clip: float = option(1.0, "clip the gradient norm to this (0 = off)")
    sampling_steps: int = option(20, "sampler steps per sample")
    eta: float = option(1.0, "sampler stochasticity: 0 = DDIM (deterministic), 1 = DDPM; DDPO needs > 0")
    k: int = option(1, "VADER: back-propagate through the last K sampler steps")
    random_k: bool = option(False, "VADER: draw K uniformly from 1..--k for every micro-batch")
    lora_rank: int = option(16, "LoRA rank (0 = train all weights)")
    lora_alpha: float = option(0.0, "LoRA alpha (0 = the rank, i.e. scale 1)")
    lora_targets: str = option("", "comma-separated ends of the names of the Linear/Conv layers that get LoRA, "
                                   "e.g. to_q,to_out.0 (default: the model's attention projections)")
    mixed_precision: str = option("no", "autocast precision of the model's forward passes", choices=PRECISIONS,
                                  renamed_from="--precision")
    gradient_checkpointing: bool = option(False, "recompute activations in the backward pass (saves memory)")
    score_frames: str = option("all", f"video models: frames the reward sees ({FRAME_MODES})")
    labels: str = option("", "class-conditional models: comma-separated labels to train on (default: all)")
    prompts: str = option("", "text models: a file with one prompt per line, or prompts separated by '|'")
    ddpo_clip: float = option(1e-4, "DDPO: PPO clip range of the probability ratio")
    ddpo_epochs: int = option(1, "DDPO: optimisation passes over each batch of trajectories")
    seed: int = option(0, "seed for conditions, noise and frame choice")
    run_dir: str = option("runs/align/default", "run folder: config, checkpoints, log, curves, adapter")
    checkpoint_every: int = option(25, "save a checkpoint every N updates (and at the end)")
    keep_checkpoints: int = option(2, "how many checkpoints to keep")
    resume: bool = option(False, "continue the run in --run-dir from its latest checkpoint")
    progress: bool = option(True, "show a progress bar")

    def validate(self) -> None:
        positive = {"steps": self.steps, "batch_size": self.batch_size, "accumulate": self.accumulate,
                    "sampling_steps": self.sampling_steps, "ddpo_epochs": self.ddpo_epochs,
                    "checkpoint_every": self.checkpoint_every, "keep_checkpoints": self.keep_checkpoints}
        for name, value in positive.items():
            if value < 1:
                raise GenlabError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise GenlabError(f"--lr must be a positive number, got {self.lr}")
        if not 0 <= self.eta <= 1:
            raise GenlabError(f"--eta must be in [0, 1], got {self.eta}")
        if self.method == "ddpo" and self.eta == 0:
            raise GenlabError("DDPO needs a stochastic sampler: use --eta > 0")
        if self.method == "vader" and not 1 <= self.k <= self.sampling_steps:
            raise GenlabError(f"--k {self.k} must lie between 1 and --sampling-steps {self.sampling_steps} "
                              "(K is how many final sampler steps the reward gradient flows through)")
        if self.lora_rank < 0:
            raise GenlabError(f"--lora-rank must be >= 0, got {self.lora_rank}")
        frame_mode(self.score_frames)
        label_list(self.labels)

    @property
    def lora(self) -> bool:
        return self.lora_rank > 0

    def lora_target_names(self, default: tuple[str, ...]) -> tuple[str, ...]:
        names = tuple(n.strip() for n in self.lora_targets.split(",") if n.strip())
        return names or default


def frame_mode(text: str) -> tuple[str, int]:
    """Parse ``--score-frames``: ``("all", 0)``, ``("random", 1)`` or ``("every", N)``."""
    if text in ("all", "random"):
        return text, 1
    match = re.fullmatch(r"every-(\d+)", text)
    if match and int(match.group(1)) >= 1:
        return "every", int(match.group(1))
    raise GenlabError(f"--score-frames must be one of {FRAME_MODES}, got {text!r}")


def label_list(text: str) -> list[int] | None:
    """Parse ``--labels "0,3,5"``; None when empty."""
    if not text.strip():
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise GenlabError(f"--labels must be comma-separated integers, got {text!r}") from error


def prompt_list(text: str) -> list[str] | None:
    """Parse ``--prompts``: a file with one prompt per line, or prompts separated by ``|``; None when empty."""
    if not text.strip():
        return None
    path = Path(text)
    prompts = path.read_text().splitlines() if path.is_file() else text.split("|")
    prompts = [p.strip() for p in prompts if p.strip()]
    if not prompts:
        raise GenlabError(f"--prompts {text!r} holds no prompts")
    return prompts
