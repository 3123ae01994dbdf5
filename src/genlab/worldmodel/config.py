"""Settings of ``genlab train tokenizer``, ``genlab train worldmodel`` and ``genlab play``, importable without
torch (``genlab --help`` reads them)."""

from __future__ import annotations

from dataclasses import MISSING, dataclass

from genlab.core.config import MAX_SEED, LoopConfig, option
from genlab.errors import GenlabError


@dataclass
class TokenizerConfig(LoopConfig):
    """Everything ``train_tokenizer`` needs (the loop settings plus the tokenizer's)."""

    data: str = option("data/pushblock", "folder of PushBlock shards (genlab.worldmodel.dataset.write_shards)")
    clip_frames: int = option(4, "frames per training clip (context + future)", min=2)
    context_frames: int = option(1, "context frames per clip", min=1)
    compressive: bool = option(True, "iVideoGPT's compressive tokenizer (else one token grid per frame)")
    context_grid: int = option(16, "context tokens per side", min=1)
    future_grid: int = option(4, "future tokens per side (compressive only)", min=1)
    channels: int = option(64, "convolution width", min=1)
    code_dim: int = option(32, "code vector size", min=1)
    num_codes: int = option(512, "entries per codebook", renamed_from="--codes", min=2)
    perceptual_weight: float = option(0.5, "weight of the perceptual (StateNet feature) loss", min=0)
    motion_weight: float = option(10.0, "weight of the L1 on future pixels that changed since the context", min=0)
    state_net_steps: int = option(800, "training steps of the perceptual feature net", min=1)
    run_dir: str = option("runs/tokenizer/default", "run folder")
    resume: bool = option(False, "continue the run in --run-dir")


@dataclass
class TransformerConfig(LoopConfig):
    """Everything ``train_transformer`` needs (the loop settings plus the transformer's)."""

    data: str = option("data/pushblock", "folder of PushBlock shards (genlab.worldmodel.dataset.write_shards)")
    tokenizer: str = option("runs/tokenizer/default/model", "trained tokenizer folder (genlab train tokenizer)")
    future_frames: int = option(3, "future frames per training sequence (rollouts can be longer)", min=1)
    actions: bool = option(True, "condition on actions (else the action-free model)")
    hidden_size: int = option(128, "transformer width", min=1)
    layers: int = option(4, "transformer layers", min=1)
    heads: int = option(4, "attention heads", min=1)
    run_dir: str = option("runs/worldmodel/default", "run folder")
    resume: bool = option(False, "continue the run in --run-dir")

    def validate(self) -> None:
        super().validate()
        if self.hidden_size % self.heads:
            raise GenlabError(f"--hidden-size {self.hidden_size} must be a multiple of --heads {self.heads}")


@dataclass
class PlayConfig:
    """What ``genlab play`` rolls out: the world model, the first frame, the actions, the token sampling and
    the video it writes."""

    model: str = option(MISSING, "world model folder (tokenizer/ + transformer/)", type=str)
    seed: int = option(0, "PushBlock reset seed: the first frame", min=0, max=MAX_SEED)
    actions: str | None = option(None, "action file (.npy, or text: 'dx dy' per line); without it, keys typed in "
                                 "the terminal drive the rollout", type=str)
    rollout_steps: int = option(30, "most environment steps to play", renamed_from="--steps", min=1)
    compare: bool = option(True, "step the real environment with the same actions and show it beside the imagined "
                           "frames")
    top_k: int = option(16, "sample each token among the k most likely (1 = greedy)", min=1)
    sample_seed: int = option(0, "seed of the token sampling", min=0, max=MAX_SEED)
    out: str = option("runs/play/rollout.mp4", "video to write (.mp4 or .gif)")
