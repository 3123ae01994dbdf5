"""Turning image tensors into files a person can look at."""

from __future__ import annotations

import math
import os
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from torch import Tensor

from genlab.core.paths import IMAGE_SUFFIXES, VIDEO_SUFFIXES, output_file
from genlab.errors import GenlabError


def image_grid(images: Tensor, columns: int | None = None, scale: int = 1, padding: int = 1) -> np.ndarray:
    """Tile ``images [N, C, H, W]`` in ``[-1, 1]`` (C = 1 or 3) into a uint8 ``[rows·H', cols·W', 3]`` array.

    ``scale`` enlarges each pixel (nearest neighbour); ``padding`` pixels of grey separate tiles.
    """
    images = images.detach().float().cpu().clamp(-1, 1)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    if scale > 1:
        images = torch.nn.functional.interpolate(images, scale_factor=scale, mode="nearest")
    count, _, height, width = images.shape
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    grid = torch.full((3, rows * (height + padding) + padding, columns * (width + padding) + padding), 0.0)
    for index in range(count):
        top = padding + (index // columns) * (height + padding)
        left = padding + (index % columns) * (width + padding)
        grid[:, top : top + height, left : left + width] = images[index]
    return ((grid.permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)


def save_image_grid(images: Tensor, path: Path | str, columns: int | None = None, scale: int | None = None) -> Path:
    """Write :func:`image_grid` of ``images`` as a PNG; small images are enlarged to ≥ 64 px tiles."""
    scale = scale or max(1, 64 // images.shape[-1])
    path = output_file(path, IMAGE_SUFFIXES, "image")
    _write(path, image_grid(images, columns, scale))
    return path


def save_video(frames: np.ndarray, path: Path | str, fps: float = 5, scale: int = 1) -> Path:
    """Write uint8 frames ``[T, H, W, 3]`` as an MP4 (H.264 via imageio-ffmpeg; odd sizes padded by one
    pixel) or, for a ``.gif`` path, a looping GIF; ``scale`` enlarges each pixel (nearest neighbour).

    The file is written beside its target and moved into place once it reads back with all ``T``
    frames, so a failed write raises :class:`GenlabError` and never leaves a broken file.
    """
    path = output_file(path, VIDEO_SUFFIXES, "video")
    if not (math.isfinite(fps) and fps > 0):
        raise GenlabError(f"a video needs a frame rate > 0, got {fps}")
    frames = np.asarray(frames).repeat(scale, axis=1).repeat(scale, axis=2)
    if path.suffix.lower() == ".gif":
        # the GIF writer merges runs of identical frames into one longer frame
        changes = int((frames[1:] != frames[:-1]).reshape(len(frames) - 1, -1).any(axis=1).sum()) if len(frames) else -1
        _write(path, frames, duration=1000 / fps, loop=0, count=changes + 1)
    else:  # H.264 needs even sizes: pad odd ones with one black row/column
        height, width = frames.shape[1:3]
        frames = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)))
        _write(path, frames, fps=fps, macro_block_size=1, count=len(frames))
    return path


def _write(path: Path, array: np.ndarray, count: int | None = None, **options) -> None:
    """``iio.imwrite`` to a temporary file beside ``path``, checked (``count`` frames for a video), then
    renamed over ``path``; GenlabError if writing or the check fails."""
    temporary = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        iio.imwrite(temporary, array, **options)
        if count is not None:
            written = sum(1 for _ in iio.imiter(temporary))
            if written != count:
                raise GenlabError(f"writing {path} kept {written} of {count} frames")
        os.replace(temporary, path)
    except (OSError, ValueError, RuntimeError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise GenlabError(f"cannot write {path}: {reason}") from error
    finally:
        temporary.unlink(missing_ok=True)


def load_video(path: Path | str) -> tuple[Tensor, float | None]:
    """Read a video file (MP4, GIF, ...): ``(frames [T, 3, H, W] float32 in [-1, 1], fps or None)``.

    Grey frames become RGB and an alpha channel is dropped; an unreadable file or one without frames
    raises :class:`GenlabError`.
    """
    try:
        frames = np.asarray(iio.imread(path, index=None))
        meta = iio.immeta(path)
        fps = meta.get("fps") or (1000 / meta["duration"] if meta.get("duration") else None)
    except (OSError, ValueError, RuntimeError, SyntaxError) as error:  # Pillow reports a broken GIF as SyntaxError
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise GenlabError(f"cannot read a video from {path}: {reason}") from error
    if frames.ndim == 3:  # one grey frame per entry, or a single RGB image
        frames = frames[..., None] if frames.shape[-1] not in (3, 4) else frames[None]
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise GenlabError(f"{path} holds no video frames (array of shape {list(frames.shape)})")
    frames = np.broadcast_to(frames, (*frames.shape[:3], 3)) if frames.shape[-1] == 1 else frames[..., :3]
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1
    return video, float(fps) if fps else None


def video_grid(videos: Tensor, columns: int | None = None, scale: int = 1, padding: int = 1) -> np.ndarray:
    """Tile clips ``[N, T, C, H, W]`` in ``[-1, 1]`` side by side: uint8 frames ``[T, H', W', 3]`` for
    :func:`save_video` (one clip with ``padding=0`` gives its frames exactly)."""
    return np.stack([image_grid(videos[:, t], columns, scale, padding) for t in range(videos.shape[1])])
