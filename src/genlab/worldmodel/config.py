"""Settings of ``genlab train tokenizer`` and ``genlab train worldmodel``, importable without torch
(``genlab --help`` reads them)."""

from __future__ import annotations

from dataclasses import dataclass

from genlab.core.config import LoopConfig, option
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
