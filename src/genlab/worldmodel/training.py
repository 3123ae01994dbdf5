"""Training the video tokenizers on PushBlock shards with genlab's shared training loop.

The loss is iVideoGPT's: L1 reconstruction + VQ codebook/commitment + ``perceptual_weight`` ×
the perceptual distance in the features of a :class:`~genlab.worldmodel.perceptual.StateNet`,
which is trained first on the same shards and kept in ``<run_dir>/state_net``. The tokenizer's
EMA weights are exported to ``<run_dir>/model``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from genlab.core.train import LoopConfig, Trainer, TrainResult, option
from genlab.errors import GenlabError
from genlab.worldmodel.dataset import read_shards
from genlab.worldmodel.perceptual import StateNet, perceptual_distance, train_state_net
from genlab.worldmodel.tokenizer import VideoTokenizer


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``[..., H, W, 3]`` -> float ``[..., 3, H, W]`` in [-1, 1]."""
    tensor = torch.from_numpy(np.ascontiguousarray(frames)).float() / 127.5 - 1
    return tensor.movedim(-1, -3)


class ClipDataset(Dataset):
    """Every window of ``clip_frames`` consecutive frames of every episode: ``(frames [T, 3, H, W], actions [T-1, 2])``."""

    def __init__(self, episodes: dict[str, np.ndarray], clip_frames: int):
        length = episodes["frames"].shape[1]
        if not 2 <= clip_frames <= length:
            raise GenlabError(f"clip length must be in [2, {length}] (episode frames), got {clip_frames}")
        self.episodes, self.clip_frames = episodes, clip_frames
        self.starts = length - clip_frames + 1

    def __len__(self) -> int:
        return len(self.episodes["frames"]) * self.starts

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        episode, start = divmod(index, self.starts)
        window = slice(start, start + self.clip_frames)
        frames = frames_to_tensor(self.episodes["frames"][episode, window])
        actions = torch.from_numpy(self.episodes["actions"][episode, start:start + self.clip_frames - 1])
        return frames, actions


@dataclass
class TokenizerConfig(LoopConfig):
    """Everything ``train_tokenizer`` needs (the loop settings plus the tokenizer's)."""

    data: str = option("data/pushblock", "folder of PushBlock shards (genlab.worldmodel.dataset.write_shards)")
    clip_frames: int = option(4, "frames per training clip (context + future)")
    context_frames: int = option(1, "context frames per clip")
    compressive: bool = option(True, "iVideoGPT's compressive tokenizer (else one token grid per frame)")
    context_grid: int = option(16, "context tokens per side")
    future_grid: int = option(4, "future tokens per side (compressive only)")
    channels: int = option(64, "convolution width")
    code_dim: int = option(32, "code vector size")
    codes: int = option(512, "entries per codebook")
    perceptual_weight: float = option(0.5, "weight of the perceptual (StateNet feature) loss")
    state_net_steps: int = option(800, "training steps of the perceptual feature net")
    run_dir: str = option("runs/tokenizer/default", "run folder")
    resume: bool = option(False, "continue the run in --run-dir")

    def tokenizer(self, frame_size: int) -> VideoTokenizer:
        return VideoTokenizer(frame_size=frame_size, context_frames=self.context_frames,
                              compressive=self.compressive, context_grid=self.context_grid,
                              future_grid=self.future_grid, channels=self.channels, code_dim=self.code_dim,
                              context_codes=self.codes, future_codes=self.codes)


def tokenizer_loss(state_net: StateNet, weight: float):
    """``loss_fn(model, (frames, actions))`` for :class:`~genlab.core.train.Trainer`."""

    def loss_fn(model: VideoTokenizer, batch) -> torch.Tensor:
        frames = batch[0]
        recon, _, losses = model(frames)
        if not weight:
            return losses["loss"]
        return losses["loss"] + weight * perceptual_distance(state_net, recon.flatten(0, 1), frames.flatten(0, 1))

    return loss_fn


def load_or_train_state_net(episodes: dict[str, np.ndarray], folder: Path, steps: int, seed: int) -> StateNet:
    if (folder / "config.json").exists():
        return StateNet.from_pretrained(folder).eval().requires_grad_(False)
    frames = frames_to_tensor(episodes["frames"].reshape(-1, *episodes["frames"].shape[2:]))
    net = train_state_net(frames, torch.from_numpy(episodes["states"].reshape(-1, 6)), steps=steps, seed=seed)
    net.save_pretrained(folder)
    return net


def train_tokenizer(config: TokenizerConfig) -> TrainResult:
    """Train (or resume) a tokenizer on ``config.data``; EMA weights go to ``<run_dir>/model``."""
    episodes = read_shards(config.data)
    run_dir = Path(config.run_dir)
    state_net = load_or_train_state_net(episodes, run_dir / "state_net", config.state_net_steps, config.seed)
    model = config.tokenizer(episodes["frames"].shape[2])
    trainer = Trainer(model, tokenizer_loss(state_net, config.perceptual_weight),
                      ClipDataset(episodes, config.clip_frames), run_dir, config,
                      {**asdict(config), "method": "tokenizer"})
    result = trainer.fit(resume=config.resume)
    if trainer.accelerator.is_main_process:
        result.ema_model.save_pretrained(run_dir / "model")
    return result
