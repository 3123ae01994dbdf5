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

import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm.auto import tqdm

from genlab.core.checkpoint import discard
from genlab.core.paths import existing_dir
from genlab.core.train import Trainer, TrainResult, main_process_first, open_run_dir, unwrap
from genlab.errors import GenlabError
from genlab.worldmodel.config import TokenizerConfig, TransformerConfig
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


def build_tokenizer(config: TokenizerConfig, frame_size: int) -> VideoTokenizer:
    """A fresh tokenizer of ``config``'s sizes for frames of ``frame_size`` pixels."""
    return VideoTokenizer(frame_size=frame_size, context_frames=config.context_frames,
                          compressive=config.compressive, context_grid=config.context_grid,
                          future_grid=config.future_grid, channels=config.channels, code_dim=config.code_dim,
                          context_codes=config.num_codes, future_codes=config.num_codes,
                          motion_weight=config.motion_weight)


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
    """The frozen perceptual net saved in ``folder``, trained and saved first if there is none (under
    several processes by the main one, while the others wait to load it).

    The net is written to a temporary folder and renamed into place, so a kill never leaves a half-saved
    one; one that is corrupt anyway (or does not fit) is a GenlabError naming the folder.
    """
    folder = Path(folder)
    with main_process_first():
        if (folder / "config.json").exists():
            return load_state_net(folder)
        frames = frames_to_model(episodes["frames"].reshape(-1, *episodes["frames"].shape[2:]))
        net = train_state_net(frames, torch.from_numpy(episodes["states"].reshape(-1, 6)), steps=steps, seed=seed)
        _save_state_net(net, folder)
        return net


def load_state_net(folder: Path) -> StateNet:
    """The frozen :class:`StateNet` saved in ``folder``; GenlabError if it is corrupt or incomplete."""
    try:
        return StateNet.from_pretrained(folder).eval().requires_grad_(False)
    except (OSError, ValueError, RuntimeError, SafetensorError) as error:
        reason = (str(error).splitlines() or [""])[0] or type(error).__name__
        raise GenlabError(f"the perceptual net in {folder} is corrupt or incomplete ({reason}); delete the folder "
                          "to train it again") from error


def _save_state_net(net: StateNet, folder: Path) -> None:
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        for leftover in folder.parent.glob(f".tmp-{folder.name}-*"):  # from a save that was killed
            shutil.rmtree(leftover, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".tmp-{folder.name}-"))
        try:
            net.save_pretrained(staging)
            if os.path.lexists(folder):  # an incomplete one (no config.json): ours, from a killed save
                discard(folder)
            os.rename(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except OSError as error:
        raise GenlabError(f"cannot save the perceptual net in {folder} ({error.strerror or error})") from error


def _power_of_two_divisor(grid: int, size: int) -> bool:
    """Whether ``size / grid`` is a power of two (1, 2, 4, ...)."""
    if grid < 1 or size % grid:
        return False
    ratio = size // grid
    return ratio & (ratio - 1) == 0


def check_tokenizer_config(config: TokenizerConfig, frame_size: int) -> None:
    """GenlabError naming the flags of the first setting that does not fit the others or the data's
    ``frame_size``-pixel frames (what :class:`VideoTokenizer` would otherwise fail on mid-training)."""
    if config.context_frames >= config.clip_frames:
        raise GenlabError(f"--context-frames {config.context_frames} must be less than --clip-frames "
                          f"{config.clip_frames}: a clip needs future frames to tokenize")
    if config.channels % 8:
        raise GenlabError(f"--channels must be a multiple of 8 (its group normalisation), got {config.channels}")
    grids = [("--context-grid", config.context_grid)]
    if config.compressive:
        grids.append(("--future-grid", config.future_grid))
    for flag, grid in grids:
        if not _power_of_two_divisor(grid, frame_size):
            fitting = [g for g in range(frame_size, 0, -1) if _power_of_two_divisor(g, frame_size)]
            raise GenlabError(f"{flag} {grid} must divide the {frame_size}-pixel frames of --data {config.data} "
                              f"by a power of two ({', '.join(map(str, fitting))})")
    if config.compressive and config.future_grid > config.context_grid:
        raise GenlabError(f"--future-grid {config.future_grid} must not exceed --context-grid {config.context_grid} "
                          "(future frames get fewer tokens)")
    processes = max(int(os.environ.get("WORLD_SIZE", "1")), 1)
    future_frames = (config.batch_size // processes) * (config.clip_frames - config.context_frames)
    if config.compressive and future_frames < 2:
        raise GenlabError(f"--batch-size {config.batch_size} gives each of {processes} process(es) only {future_frames} "
                          "future frame(s) per step; the compressive tokenizer normalises its future codes over at "
                          "least 2: raise --batch-size or --clip-frames")


def read_training_shards(data: str) -> dict[str, np.ndarray]:
    """The episodes of the shard folder ``data`` (``--data``), which must exist and hold shards."""
    episodes = read_shards(existing_dir(data, "--data", "folder of PushBlock shards"))
    frames = episodes["frames"]
    if frames.shape[2] != frames.shape[3]:
        raise GenlabError(f"--data {data}: frames must be square, got {frames.shape[2]}×{frames.shape[3]}")
    return episodes


def train_tokenizer(config: TokenizerConfig) -> TrainResult:
    """Train (or resume) a tokenizer on ``config.data``; EMA weights go to ``<run_dir>/model``.

    The settings, the data and the run folder are all checked before the perceptual net is trained.
    """
    config.validate()
    episodes = read_training_shards(config.data)
    check_tokenizer_config(config, episodes["frames"].shape[2])
    clips = ClipDataset(episodes, config.clip_frames)
    run_dir = Path(config.run_dir)
    run_config = {**asdict(config), "method": "tokenizer"}
    # the checks of the Trainer's run folder (writable, not another run's, resumable), writing nothing yet
    open_run_dir(run_dir, config.resume, run_config, Trainer.RESUMABLE_FIELDS, write=False,
                 overwrite=config.overwrite)
    state_net = load_or_train_state_net(episodes, run_dir / "state_net", config.state_net_steps, config.seed)
    torch.manual_seed(config.seed)  # the initial weights depend on the seed only, not on what ran before
    model = build_tokenizer(config, episodes["frames"].shape[2])
    trainer = Trainer(model, tokenizer_loss(state_net, config.perceptual_weight), clips, run_dir, config, run_config)
    result = trainer.fit(resume=config.resume)
    trainer.export(result.ema_model.save_pretrained, run_dir / "model")
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


def build_transformer(config: TransformerConfig, tokenizer: VideoTokenizer) -> WorldModelTransformer:
    """A fresh transformer of ``config``'s sizes over ``tokenizer``'s tokens."""
    tc = tokenizer.config
    return WorldModelTransformer(
        context_frames=tc.context_frames, context_tokens=tokenizer.context_tokens,
        future_tokens=tokenizer.future_tokens, future_frames=config.future_frames,
        context_codes=tc.context_codes, future_codes=tc.future_codes, shared_codebook=not tc.compressive,
        action_dim=2 if config.actions else 0, hidden_size=config.hidden_size, num_layers=config.layers,
        num_heads=config.heads)


def transformer_loss(model: WorldModelTransformer, batch) -> torch.Tensor:
    context, future, actions, rewards = batch
    return model(context, future, actions if unwrap(model).action_conditioned else None, rewards)["loss"]


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
    run_dir = Path(config.run_dir)
    run_config = {**asdict(config), "method": "worldmodel"}
    if tokens is None:
        clips = ClipDataset(read_training_shards(config.data), tokenizer.config.context_frames + config.future_frames)
        # the run folder's checks before the tokenizing (writing nothing yet)
        open_run_dir(run_dir, config.resume, run_config, Trainer.RESUMABLE_FIELDS, write=False,
                     overwrite=config.overwrite)
        tokens = tokenize_clips(tokenizer, clips, progress=config.progress)
    torch.manual_seed(config.seed)
    model = build_transformer(config, tokenizer)
    trainer = Trainer(model, transformer_loss, tokens, run_dir, config, run_config)
    result = trainer.fit(resume=config.resume)
    trainer.export(WorldModel(tokenizer, result.ema_model).save_pretrained, run_dir / "model")
    return result
