"""The frame autoencoder of genlab's latent video models, end to end.

``train_autoencoder(config)`` trains a :class:`~genlab.core.nets.autoencoder.FrameAutoencoder` to reconstruct
the frames of the procedural clips (L1 loss, the shared loop), sets its ``scaling_factor`` and
``shift_factor`` so that latents have mean 0 and the spread of the data the EDM schedule expects
(``sigma_data``), and exports the EMA weights to ``<run_dir>/model``. ``load_autoencoder(path)``
reads them back; :func:`encode_videos` and :func:`decode_videos` map clips ``[B, T, C, H, W]``.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from genlab.base.config import AutoencoderConfig
from genlab.core.edm import EDMSchedule
from genlab.core.loading import load_pretrained
from genlab.core.nets.autoencoder import FrameAutoencoder
from genlab.core.train import Trainer, TrainResult
from genlab.errors import GenlabError

LATENT_STATISTICS_FRAMES = 2048  # frames whose latents set the scaling and shift factors


class ClipFrames(Dataset):
    """Every frame of uint8 clips ``[N, T, 3, R, R]``; item ``i`` is ``(frame,)``, float32 ``[3, R, R]`` in ``[-1, 1]``."""

    def __init__(self, videos: Tensor) -> None:
        self.frames = videos.flatten(0, 1)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> tuple[Tensor]:
        return (self.frames[index].float() / 127.5 - 1,)


def reconstruction_loss(autoencoder: FrameAutoencoder, batch: tuple) -> Tensor:
    """Mean absolute error of the reconstruction of a batch of frames ``([N, 3, H, W],)``."""
    frames = batch[0]
    return (autoencoder(frames) - frames).abs().mean()


def build_autoencoder(config: AutoencoderConfig) -> FrameAutoencoder:
    """A freshly initialised (seeded) autoencoder for ``config``."""
    torch.manual_seed(config.seed)
    return FrameAutoencoder(latent_channels=config.latent_channels, width=config.width,
                            downsamples=config.downsamples)


@torch.no_grad()
def set_latent_statistics(autoencoder: FrameAutoencoder, frames: Tensor, sigma_data: float) -> None:
    """Set ``shift_factor`` to the mean raw latent of ``frames [N, 3, H, W]`` and ``scaling_factor`` so that the
    normalised latents' standard deviation is ``sigma_data``."""
    latents = torch.cat([autoencoder.encode(chunk) for chunk in frames.split(256)])
    autoencoder.register_to_config(shift_factor=float(latents.mean()), scaling_factor=float(sigma_data / latents.std()))


def train_autoencoder(config: AutoencoderConfig) -> TrainResult:
    """Train (or resume) a frame autoencoder on the clips of ``config.data``; export it to ``<run_dir>/model``."""
    from genlab.base.video_model import video_clips

    config.validate()
    clips = video_clips(config.data, config.clips, config.frames, config.resolution, config.data_seed, config.progress)
    dataset = ClipFrames(clips.videos)
    autoencoder = build_autoencoder(config)
    trainer = Trainer(autoencoder, reconstruction_loss, dataset, config.run_dir, config,
                      {**asdict(config), "method": "autoencoder"})
    result = trainer.fit(resume=config.resume)
    model = result.ema_model.eval()
    chosen = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(config.seed))
    frames = torch.stack([dataset[int(i)][0] for i in chosen[:LATENT_STATISTICS_FRAMES]])
    set_latent_statistics(model, frames, EDMSchedule().sigma_data)
    trainer.export(model.save_pretrained, Path(config.run_dir) / "model")
    return result


def load_autoencoder(path: Path | str) -> FrameAutoencoder:
    """A frame autoencoder from its ``save_pretrained`` folder or a run folder holding it in ``model/`` (eval mode)."""
    folder = Path(path)
    if (folder / "model" / "config.json").is_file():
        folder = folder / "model"
    return load_pretrained(FrameAutoencoder, folder, "frame autoencoder").eval()


@torch.no_grad()
def encode_videos(autoencoder: FrameAutoencoder, videos: Tensor, batch_size: int = 256) -> Tensor:
    """Normalised latents ``[B, T, c, h, w]`` of clips ``videos [B, T, C, H, W]`` in ``[-1, 1]``."""
    if videos.ndim != 5:
        raise GenlabError(f"videos must be [B, T, C, H, W], got {list(videos.shape)}")
    frames = videos.flatten(0, 1)
    latents = torch.cat([autoencoder.encode_latents(chunk) for chunk in frames.split(batch_size)])
    return latents.unflatten(0, videos.shape[:2])


@torch.no_grad()
def decode_videos(autoencoder: FrameAutoencoder, latents: Tensor, batch_size: int = 256) -> Tensor:
    """Clips ``[B, T, C, H, W]`` (clamped to ``[-1, 1]``) from normalised latents ``[B, T, c, h, w]``."""
    frames = latents.flatten(0, 1)
    decoded = torch.cat([autoencoder.decode_latents(chunk) for chunk in frames.split(batch_size)])
    return decoded.unflatten(0, latents.shape[:2]).clamp(-1, 1)
