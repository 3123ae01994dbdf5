"""Space-time degradation and the enhancer's condition.

A high-resolution, high-frame-rate video ``[B, L, C, H, W]`` is degraded by a spatial factor ``s``
(frames shrunk to ``round(H / s) x round(W / s)`` with an antialiased bilinear filter) and a
temporal factor ``k`` (only every ``k``-th frame kept, the *key frames*). Enhancing inverts this:
``n`` low-resolution frames become ``(n - 1) * k + 1`` frames of ``s`` times the size, with the
input frames at the key frames ``0, k, 2k, ...``.

The condition VEnhancer gives its ControlNet: the low-resolution frames upsampled (bilinear) to
the target size and placed at their key frames, zeros elsewhere (the *hint*), and a boolean
key-frame mask ``[B, L]``. :func:`trilinear_upsample` is the classical baseline (and the SDEdit
start of sampling): bilinear in space, linear in time between key frames.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.enhance.config import MAX_FACTOR
from genlab.errors import GenlabError


def check_factors(space: int, time: int) -> None:
    """Raise :class:`GenlabError` unless both factors are integers in ``1..8``."""
    for name, value in (("space", space), ("time", time)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_FACTOR:
            raise GenlabError(f"--{name} must be an integer from 1 to {MAX_FACTOR}, got {value!r}")


def enhanced_length(frames: int, time: int) -> int:
    """Frames after temporal up-sampling of ``frames`` input frames by ``time``: ``(frames - 1) * time + 1``."""
    return (frames - 1) * time + 1


def key_frame_mask(frames: int, time: int, offset: int = 0) -> Tensor:
    """``[frames]`` bool, True at key frames ``offset, offset + time, ...`` (``0 <= offset < time``)."""
    if not 0 <= offset < time:
        raise GenlabError(f"the key-frame offset must lie in [0, {time}), got {offset}")
    index = torch.arange(frames)
    return (index >= offset) & ((index - offset) % time == 0)


def _resize(frames: Tensor, size: tuple[int, int], antialias: bool) -> Tensor:
    """Bilinear resize of ``[..., C, H, W]`` to ``size = (H', W')``."""
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    flat = frames.reshape(-1, *frames.shape[-3:])
    resized = F.interpolate(flat.float(), size=size, mode="bilinear", align_corners=False, antialias=antialias)
    return resized.reshape(*frames.shape[:-2], *size).to(frames.dtype)


def low_resolution_size(size: tuple[int, int], space: int) -> tuple[int, int]:
    """The frame size ``(h, w)`` after shrinking ``size = (H, W)`` by ``space``."""
    return max(1, round(size[0] / space)), max(1, round(size[1] / space))


def degrade(video: Tensor, space: int, time: int, offset: int = 0) -> Tensor:
    """``video [B, L, C, H, W]`` -> its key frames ``offset::time``, shrunk by ``space``: ``[B, n, C, h, w]``."""
    check_factors(space, time)
    key_frames = video[:, offset::time]
    return _resize(key_frames, low_resolution_size(tuple(video.shape[-2:]), space), antialias=True)


def key_frame_hint(low: Tensor, time: int, size: tuple[int, int], frames: int | None = None,
                   offset: int = 0) -> tuple[Tensor, Tensor]:
    """The enhancer's condition for ``low [B, n, C, h, w]`` at key frames ``offset, offset + time, ...``.

    Returns ``hint [B, frames, C, H, W]`` (the low-resolution frames upsampled to ``size`` at their
    key frames, zeros elsewhere) and ``key_frames [B, frames]`` bool. ``frames`` defaults to
    ``offset + (n - 1) * time + 1``; key frames past it are dropped.
    """
    batch, count = low.shape[:2]
    frames = offset + enhanced_length(count, time) if frames is None else frames
    mask = key_frame_mask(frames, time, offset)
    keys = int(mask.sum())
    if keys > count:
        raise GenlabError(f"{frames} frames with key frames every {time} from {offset} need {keys} input frames, "
                          f"got {count}")
    hint = low.new_zeros(batch, frames, low.shape[2], *size)
    hint[:, mask] = _resize(low[:, :keys], size, antialias=False)
    return hint, mask[None].expand(batch, frames).to(low.device)


def trilinear_upsample(low: Tensor, time: int, size: tuple[int, int], frames: int | None = None,
                       offset: int = 0) -> Tensor:
    """Classical space-time up-sampling of ``low [B, n, C, h, w]``: ``[B, frames, C, H, W]``.

    Bilinear in space to ``size``; linear in time between the key frames ``offset + i * time``
    (frames before the first or after the last key frame repeat it).
    """
    count = low.shape[1]
    frames = offset + enhanced_length(count, time) if frames is None else frames
    upsampled = _resize(low, size, antialias=False)
    position = ((torch.arange(frames, dtype=torch.float32) - offset) / time).clamp(0, count - 1)
    before = position.floor().long()
    after = (before + 1).clamp(max=count - 1)
    weight = (position - before).to(low)[None, :, None, None, None]
    return upsampled[:, before] * (1 - weight) + upsampled[:, after] * weight
