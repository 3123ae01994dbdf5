"""Training the world model on PushBlock shards with genlab's shared training loop, in two stages.

1. :func:`train_tokenizer`: iVideoGPT's loss, L1 reconstruction + VQ codebook/commitment +
   ``perceptual_weight`` × the perceptual distance in the features of a
   :class:`~genlab.worldmodel.perceptual.StateNet` (trained first on the same shards, kept in
   ``<run_dir>/state_net``) + the tokenizer's motion-weighted L1. EMA weights go to ``<run_dir>/model``.
2. :func:`train_transformer`: every window of ``1 + future_frames`` frames is tokenized once by the
   frozen tokenizer, then the transformer learns next-token prediction of the future tokens and
   the rewards. ``<run_dir>/model`` is then a whole world model (``tokenizer/`` + ``transformer/``)
   that :meth:`genlab.worldmodel.model.WorldModel.from_pretrained` loads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm.auto import tqdm

from genlab.core.train import LoopConfig, Trainer, TrainResult, option
from genlab.errors import GenlabError
from genlab.worldmodel.dataset import read_shards
from genlab.worldmodel.model import WorldModel, frames_to_model
from genlab.worldmodel.perceptual import StateNet, perceptual_distance, train_state_net
from genlab.worldmodel.tokenizer import VideoTokenizer
from genlab.worldmodel.transformer import WorldModelTransformer


class ClipDataset(Dataset):
    """Every window of ``clip_frames`` consecutive frames of every episode:
    ``(frames [T, 3, H, W], actions [T-1, 2], rewards [T-1])`` (action/reward t leads to frame t + 1)."""

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
        frames = frames_to_model(self.episodes["frames"][episode, window])
        steps = slice(start, start + self.clip_frames - 1)
        actions = torch.from_numpy(self.episodes["actions"][episode, steps])
        return frames, actions, torch.from_numpy(self.episodes["rewards"][episode, steps])


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
    motion_weight: float = option(10.0, "weight of the L1 on future pixels that changed since the context")
    state_net_steps: int = option(800, "training steps of the perceptual feature net")
    run_dir: str = option("runs/tokenizer/default", "run folder")
    resume: bool = option(False, "continue the run in --run-dir")

    def tokenizer(self, frame_size: int) -> VideoTokenizer:
        return VideoTokenizer(frame_size=frame_size, context_frames=self.context_frames,
                              compressive=self.compressive, context_grid=self.context_grid,
                              future_grid=self.future_grid, channels=self.channels, code_dim=self.code_dim,
                              context_codes=self.codes, future_codes=self.codes, motion_weight=self.motion_weight)


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
    frames = frames_to_model(episodes["frames"].reshape(-1, *episodes["frames"].shape[2:]))
    net = train_state_net(frames, torch.from_numpy(episodes["states"].reshape(-1, 6)), steps=steps, seed=seed)
    net.save_pretrained(folder)
    return net


def train_tokenizer(config: TokenizerConfig) -> TrainResult:
    """Train (or resume) a tokenizer on ``config.data``; EMA weights go to ``<run_dir>/model``."""
    episodes = read_shards(config.data)
    run_dir = Path(config.run_dir)
    state_net = load_or_train_state_net(episodes, run_dir / "state_net", config.state_net_steps, config.seed)
    torch.manual_seed(config.seed)  # the initial weights depend on the seed only, not on what ran before
    model = config.tokenizer(episodes["frames"].shape[2])
    trainer = Trainer(model, tokenizer_loss(state_net, config.perceptual_weight),
                      ClipDataset(episodes, config.clip_frames), run_dir, config,
                      {**asdict(config), "method": "tokenizer"})
    result = trainer.fit(resume=config.resume)
    if trainer.accelerator.is_main_process:
        result.ema_model.save_pretrained(run_dir / "model")
    return result


@torch.no_grad()
def tokenize_clips(tokenizer: VideoTokenizer, clips: Dataset, batch_size: int = 64,
                   progress: bool = True) -> TensorDataset:
    """Tokenize every clip once: ``(context ids [Tc, Nc], future ids [T, Nf], actions [T, 2], rewards [T])``.

    The actions and rewards are the ones leading to each future frame.
    """
    tokenizer.eval()
    context, future, actions, rewards = [], [], [], []
    c = tokenizer.config.context_frames
    loader = DataLoader(clips, batch_size=batch_size)
    for frames, clip_actions, clip_rewards in tqdm(loader, desc="tokenizing", disable=not progress, leave=False):
        tokens = tokenizer.encode(frames.to(tokenizer.device))
        context.append(tokens.context.cpu())
        future.append(tokens.future.cpu())
        actions.append(clip_actions[:, c - 1:])
        rewards.append(clip_rewards[:, c - 1:])
    return TensorDataset(*(torch.cat(parts) for parts in (context, future, actions, rewards)))


@dataclass
class TransformerConfig(LoopConfig):
    """Everything ``train_transformer`` needs (the loop settings plus the transformer's)."""

    data: str = option("data/pushblock", "folder of PushBlock shards (genlab.worldmodel.dataset.write_shards)")
    tokenizer: str = option("runs/tokenizer/default/model", "trained tokenizer folder (genlab train tokenizer)")
    future_frames: int = option(3, "future frames per training sequence (rollouts can be longer)")
    actions: bool = option(True, "condition on actions (else the action-free model)")
    hidden_size: int = option(128, "transformer width")
    layers: int = option(4, "transformer layers")
    heads: int = option(4, "attention heads")
    run_dir: str = option("runs/worldmodel/default", "run folder")
    resume: bool = option(False, "continue the run in --run-dir")

    def validate(self) -> None:
        super().validate()
        for name in ("future_frames", "hidden_size", "layers", "heads"):
            if getattr(self, name) < 1:
                raise GenlabError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.hidden_size % self.heads:
            raise GenlabError(f"--hidden-size {self.hidden_size} must be a multiple of --heads {self.heads}")

    def transformer(self, tokenizer: VideoTokenizer) -> WorldModelTransformer:
        tc = tokenizer.config
        return WorldModelTransformer(
            context_frames=tc.context_frames, context_tokens=tokenizer.context_tokens,
            future_tokens=tokenizer.future_tokens, future_frames=self.future_frames,
            context_codes=tc.context_codes, future_codes=tc.future_codes, shared_codebook=not tc.compressive,
            action_dim=2 if self.actions else 0, hidden_size=self.hidden_size, num_layers=self.layers,
            num_heads=self.heads)


def transformer_loss(model: WorldModelTransformer, batch) -> torch.Tensor:
    context, future, actions, rewards = batch
    return model(context, future, actions if model.action_conditioned else None, rewards)["loss"]


def train_transformer(config: TransformerConfig, tokens: TensorDataset | None = None) -> TrainResult:
    """Train (or resume) the transformer on ``config.data`` tokenized by ``config.tokenizer``.

    ``tokens`` (from :func:`tokenize_clips`) skips the tokenizing, e.g. to train several
    transformers on one tokenization. ``<run_dir>/model`` becomes a whole world model.
    """
    config.validate()
    if not (Path(config.tokenizer) / "config.json").is_file():
        raise GenlabError(f"--tokenizer {config.tokenizer} holds no trained tokenizer (no config.json); "
                          "make one with `genlab train tokenizer`")
    tokenizer = VideoTokenizer.from_pretrained(config.tokenizer).eval()
    if tokens is None:
        clips = ClipDataset(read_shards(config.data), tokenizer.config.context_frames + config.future_frames)
        tokens = tokenize_clips(tokenizer, clips, progress=config.progress)
    run_dir = Path(config.run_dir)
    torch.manual_seed(config.seed)
    model = config.transformer(tokenizer)
    trainer = Trainer(model, transformer_loss, tokens, run_dir, config, {**asdict(config), "method": "worldmodel"})
    result = trainer.fit(resume=config.resume)
    if trainer.accelerator.is_main_process:
        WorldModel(tokenizer, result.ema_model).save_pretrained(run_dir / "model")
    return result
