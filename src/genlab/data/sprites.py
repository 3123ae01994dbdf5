"""Procedural moving-sprite clips and a plain video-clip data set.

``moving_sprites(clips, frames, resolution, seed)`` draws 2-4 coloured discs and squares gliding at
constant velocity (bouncing off the borders) over a two-colour gradient background, with
anti-aliased edges; the clips are deterministic for a given ``(clips, seed)``. :class:`VideoClips` wraps uint8
videos (these, rendered 3-D scenes, or both) as a data set of float clips.
"""

from __future__ import annotations

import operator

import torch
from torch import Tensor
from torch.utils.data import Dataset

from genlab.errors import GenlabError

_CLIPS_PER_CHUNK = 128
MAX_SPRITES = 4


class VideoClips(Dataset):
    """Clips ``videos`` uint8 ``[N, T, 3, R, R]``; item ``i`` is ``(video,)``, float32 ``[T, 3, R, R]`` in ``[-1, 1]``."""

    def __init__(self, videos: Tensor) -> None:
        if videos.dtype != torch.uint8 or videos.ndim != 5 or videos.shape[2] != 3:
            raise GenlabError(f"videos must be uint8 [N, T, 3, H, W], got {videos.dtype} {list(videos.shape)}")
        self.videos = videos

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> tuple[Tensor]:
        return (self.video_tensor([operator.index(index)])[0],)

    def video_tensor(self, indices=None) -> Tensor:
        """Videos at ``indices`` (all when None): float32 ``[M, T, 3, R, R]`` in ``[-1, 1]``."""
        chosen = self.videos if indices is None else self.videos[indices]
        return chosen.float() / 127.5 - 1


def _bounce(position: Tensor, low: Tensor, high: Tensor) -> Tensor:
    """``position`` folded back into ``[low, high]`` as a ball bouncing between two walls."""
    span = (high - low).clamp_min(1e-6)
    phase = torch.remainder(position - low, 2 * span)
    return low + span - (phase - span).abs()


def _sprite_clips(generator: torch.Generator, count: int, frames: int, resolution: int) -> Tensor:
    """``count`` clips float ``[count, frames, 3, R, R]`` in ``[0, 1]``."""
    r = float(resolution)
    low, high = torch.rand(count, 2, 3, generator=generator).unbind(1)
    vertical = torch.linspace(0, 1, resolution)[None, :, None, None]  # [1, H, 1, 1]
    background = low[:, None, None] * (1 - vertical) + high[:, None, None] * vertical  # [count, H, 1, 3]
    canvas = background.permute(0, 3, 1, 2)[:, None].expand(count, frames, 3, resolution, resolution).clone()

    present = torch.arange(MAX_SPRITES)[None] < torch.randint(2, MAX_SPRITES + 1, (count, 1), generator=generator)
    size = r * (0.08 + 0.14 * torch.rand(count, MAX_SPRITES, generator=generator))  # half-width / radius, px
    square = torch.rand(count, MAX_SPRITES, generator=generator) < 0.5
    colour = torch.rand(count, MAX_SPRITES, 3, generator=generator)
    start = r * torch.rand(count, MAX_SPRITES, 2, generator=generator)
    velocity = r * 0.09 * (2 * torch.rand(count, MAX_SPRITES, 2, generator=generator) - 1)  # px per frame
    time = torch.arange(frames, dtype=torch.float32)[None, :, None, None]
    centre = _bounce(start[:, None] + velocity[:, None] * time, size[:, None, :, None],
                     r - size[:, None, :, None])  # [count, T, S, 2] as (x, y)

    pixel = torch.arange(resolution, dtype=torch.float32) + 0.5
    for s in range(MAX_SPRITES):
        dx = (pixel[None, None, None, :] - centre[:, :, s, 0, None, None]).abs()  # [count, T, 1, W]
        dy = (pixel[None, None, :, None] - centre[:, :, s, 1, None, None]).abs()  # [count, T, H, 1]
        distance = torch.where(square[:, s, None, None, None], torch.maximum(dx, dy), (dx**2 + dy**2).sqrt())
        alpha = (size[:, s, None, None, None] - distance + 0.5).clamp(0, 1) * present[:, s, None, None, None]
        alpha = alpha[:, :, None]  # [count, T, 1, H, W]
        canvas = canvas * (1 - alpha) + colour[:, s, None, :, None, None] * alpha
    return canvas


def moving_sprites(clips: int, frames: int = 8, resolution: int = 32, seed: int = 0) -> Tensor:
    """``clips`` moving-sprite videos, uint8 ``[clips, frames, 3, resolution, resolution]``."""
    for name, value, least in (("clips", clips, 1), ("frames", frames, 1), ("resolution", resolution, 4)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise GenlabError(f"{name} must be an integer of at least {least}, got {value!r}")
    videos = torch.empty(clips, frames, 3, resolution, resolution, dtype=torch.uint8)
    for start in range(0, clips, _CLIPS_PER_CHUNK):
        count = min(_CLIPS_PER_CHUNK, clips - start)
        generator = torch.Generator().manual_seed(seed * 1_000_003 + start // _CLIPS_PER_CHUNK)
        videos[start : start + count] = (_sprite_clips(generator, count, frames, resolution) * 255).round().to(torch.uint8)
    return videos
