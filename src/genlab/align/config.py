"""Settings of an alignment run (VADER or DDPO) and of what it aligns; every field is a ``genlab align`` flag."""

from __future__ import annotations

import re
from dataclasses import MISSING, dataclass
from pathlib import Path

from genlab.core.config import RunConfig, check_fields, option
from genlab.errors import GenlabError

METHODS = ("vader", "ddpo")
PRECISIONS = ("no", "bf16")
FRAME_MODES = "all | random | every-N"
REWARD_HELP = ("reward to maximise: class, brightness, colourfulness, motion-left/right/up/down, "
               "flow-left/right/up/down, temporal "
               "(ship with genlab); aesthetic, clip-score, pickscore, hps, videomae-action, vjepa-temporal, "
               "object-removal (pretrained; weights from --reward-path or the hub)")


@dataclass
class AlignTargetConfig:
    """What ``genlab align`` aligns, and to which reward: the model and how its pipeline samples, the reward
    and where its weights are. Kept apart from :class:`AlignConfig`, the run's own settings."""

    model: str = option(MISSING, "genlab image/video model folder, or a diffusers StableDiffusion / TextToVideoSD "
                        "pipeline (folder or hub id)", type=str)
    reward: str = option(MISSING, REWARD_HELP, type=str)
    reward_path: str | None = option(None, "where the reward's pretrained weights are (folder or hub id); for "
                                     "`class`, the data set (digits or shapes); for `aesthetic`, a CLIP ViT-L/14 "
                                     "folder that may also hold sac+logos+ava1-l14-linearMSE.pth (else that file is "
                                     "downloaded and SHA-256 checked)", type=str)
    reward_revision: str | None = option(None, "pretrained rewards: the hub revision (commit, tag or branch) of "
                                         "their weights (default: main)", type=str)
    guidance_scale: float | None = option(None, "diffusers pipelines only: classifier-free guidance scale",
                                          type=float, min=0)
    frames: int | None = option(None, "text-to-video pipelines only: frames per video", type=int, min=1,
                                renamed_from="--num-frames")


@dataclass
class AlignConfig(RunConfig):
    """Everything ``genlab align`` needs besides the model and the reward (the run settings shared with
    ``genlab train`` come from :class:`~genlab.core.config.RunConfig`)."""

    method: str = option("vader", "vader: back-propagate the reward; ddpo: PPO on the sampler's log-probabilities",
                         choices=METHODS)
    steps: int = option(100, "optimiser updates", min=1)
    batch_size: int = option(8, "samples per micro-batch (split across processes under accelerate launch)",
                             min=1)
    accumulate: int = option(1, "micro-batches per update (gradient accumulation)", min=1)
    lr: float = option(1e-3, "learning rate (AdamW)", above=0)
    sampling_steps: int = option(20, "sampler steps per sample", min=1)
    eta: float = option(1.0, "sampler stochasticity: 0 = DDIM (deterministic), 1 = DDPM; DDPO needs > 0",
                       min=0, max=1)
    k: int = option(1, "VADER: back-propagate through the last K sampler steps", min=1)
    random_k: bool = option(False, "VADER: draw K uniformly from 1..--k for every micro-batch")
    lora_rank: int = option(16, "LoRA rank (0 = train all weights)", min=0)
    lora_alpha: float = option(0.0, "LoRA alpha (0 = the rank, i.e. scale 1)", min=0)
    lora_targets: str = option("", "comma-separated ends of the names of the Linear/Conv layers that get LoRA, "
                                   "e.g. to_q,to_out.0 (default: the model's attention projections)")
    mixed_precision: str = option("no", "autocast precision of the model's forward passes", choices=PRECISIONS,
                                  renamed_from="--precision")
    gradient_checkpointing: bool = option(False, "recompute activations in the backward pass (saves memory)")
    score_frames: str = option("all", f"video models: frames the reward sees ({FRAME_MODES})")
    labels: str = option("", "class-conditional models: comma-separated labels to train on (default: all)")
    prompts: str = option("", "text models: a file with one prompt per line, or prompts separated by '|'")
    ddpo_clip: float = option(1e-4, "DDPO: PPO clip range of the probability ratio", above=0)
    ddpo_epochs: int = option(1, "DDPO: optimisation passes over each batch of trajectories", min=1)
    run_dir: str = option("runs/align/default", "run folder: config, checkpoints, log, curves, adapter")
    checkpoint_every: int = option(25, "save a checkpoint every N updates (and at the end)", min=1)
    resume: bool = option(False, "continue the run in --run-dir from its latest checkpoint")

    def validate(self) -> None:
        """Raise GenlabError naming the first bad setting: the declared bounds of every number (finite
        floats), then what depends on several fields."""
        check_fields(self)
        if self.method not in METHODS:
            raise GenlabError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.mixed_precision not in PRECISIONS:
            raise GenlabError(f"--mixed-precision must be one of {', '.join(PRECISIONS)}, got {self.mixed_precision!r}")
        if self.method == "ddpo" and self.eta == 0:
            raise GenlabError("DDPO needs a stochastic sampler: use --eta > 0")
        if self.method == "vader" and not 1 <= self.k <= self.sampling_steps:
            raise GenlabError(f"--k {self.k} must lie between 1 and --sampling-steps {self.sampling_steps} "
                              "(K is how many final sampler steps the reward gradient flows through)")
        frame_mode(self.score_frames)
        label_list(self.labels)
        prompt_list(self.prompts)
        run_dir = Path(self.run_dir)
        for folder in (run_dir, *run_dir.parents):
            if folder.exists() and not folder.is_dir():
                raise GenlabError(f"--run-dir {run_dir}: {folder} is a file, not a folder")

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
    """Parse ``--labels "0,3,5"``; None when empty. (Whether they exist is the model's to say: see
    :meth:`genlab.align.trainer.ConditionSampler`.)"""
    if not text.strip():
        return None
    try:
        labels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise GenlabError(f"--labels must be comma-separated integers, got {text!r}") from error
    if not labels or min(labels) < 0:
        raise GenlabError(f"--labels must be comma-separated class indices >= 0, got {text!r}")
    return labels


PROMPT_FILE_SUFFIXES = (".txt",)


def prompt_list(text: str) -> list[str] | None:
    """Parse ``--prompts``: a file with one prompt per line, or prompts separated by ``|``; None when empty.

    A folder, an unreadable file, or a name ending in ``.txt`` that does not exist is a GenlabError
    (rather than being taken for a prompt)."""
    if not text.strip():
        return None
    path = Path(text)
    if path.is_dir():
        raise GenlabError(f"--prompts {text} is a folder; give a text file with one prompt per line, or prompts "
                          "separated by '|'")
    if path.is_file():
        try:
            prompts = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as error:
            raise GenlabError(f"--prompts {text} is not a UTF-8 text file ({error.reason})") from error
        except OSError as error:
            raise GenlabError(f"--prompts {text}: cannot read the file ({error.strerror})") from error
    elif "|" not in text and path.suffix.lower() in PROMPT_FILE_SUFFIXES:
        raise GenlabError(f"--prompts {text} does not exist (to give a prompt itself, write it without the "
                          f"{path.suffix} ending, or separate prompts with '|')")
    else:
        prompts = text.split("|")
    prompts = [p.strip() for p in prompts if p.strip()]
    if not prompts:
        raise GenlabError(f"--prompts {text!r} holds no prompts")
    return prompts
