"""Procedural coloured shapes on a dark background.

Each image shows one shape (the class: circle, square, triangle or cross) in one of six
saturated colours, centred on one of the 3×3 grid cells with a little jitter in position and
size, so each class has 6 × 9 modes. The factors of a split are drawn once from a random stream
keyed by ``(seed, split)``; the images are rendered from them on demand with anti-aliased
signed distance functions, so ``(seed, split, index)`` always gives the same image and the
geometry is the same at every resolution.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from genlab.data.base import ImageDataset, check_choice
from genlab.errors import GenlabError

RESOLUTIONS = (16, 32, 64)
DEFAULT_RESOLUTION = 32
SPLIT_SIZES = {"train": 20_000, "test": 2_000}
SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = {
    "red": (0.95, 0.15, 0.15),
    "green": (0.15, 0.85, 0.20),
    "blue": (0.20, 0.35, 1.00),
    "yellow": (0.95, 0.90, 0.15),
    "cyan": (0.15, 0.90, 0.95),
    "magenta": (0.90, 0.20, 0.90),
}
GRID = 3
BACKGROUND = 0.08
BASE_RADIUS = 0.12
SIZE_JITTER = 0.15
POSITION_JITTER = 0.02

_PALETTE = np.array(list(COLOURS.values()), dtype=np.float32)
_STREAMS = {"train": 0, "test": 1}
_STREAM_SALT = 0x5A3E5
_CHUNK = 1024

SignedDistance = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _circle(dx: np.ndarray, dy: np.ndarray, r: np.ndarray) -> np.ndarray:
    return np.sqrt(dx * dx + dy * dy) - r


def _square(dx: np.ndarray, dy: np.ndarray, r: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(dx), np.abs(dy)) - 0.85 * r


def _triangle(dx: np.ndarray, dy: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Upward equilateral triangle of circumradius 1.2 r, its bounding box centred on the centre."""
    circumradius = 1.2 * r
    y = dy - 0.25 * circumradius
    base = y - 0.5 * circumradius
    sides = 0.8660254 * np.abs(dx) - 0.5 * y - 0.5 * circumradius
    return np.maximum(base, sides)


def _cross(dx: np.ndarray, dy: np.ndarray, r: np.ndarray) -> np.ndarray:
    ax, ay, half_width = np.abs(dx), np.abs(dy), 0.35 * r
    return np.minimum(np.maximum(ax - r, ay - half_width), np.maximum(ax - half_width, ay - r))


_SIGNED_DISTANCES: tuple[SignedDistance, ...] = (_circle, _square, _triangle, _cross)


@dataclass(frozen=True)
class ShapeFactors:
    """Factors of N images.

    ``shape`` ``[N]`` in ``[0, 4)``, ``colour`` ``[N]`` in ``[0, 6)``, ``position`` ``[N]`` in
    ``[0, 9)`` (row-major grid cell), all int64; ``offset`` float32 ``[N, 2]`` (x, y) in
    ``±POSITION_JITTER`` image widths; ``scale`` float32 ``[N]`` in ``1 ± SIZE_JITTER``.
    """

    shape: np.ndarray
    colour: np.ndarray
    position: np.ndarray
    offset: np.ndarray
    scale: np.ndarray

    def take(self, positions: np.ndarray) -> ShapeFactors:
        """The factors of the images at ``positions`` (int64 ``[M]``)."""
        chosen = (self.shape, self.colour, self.position, self.offset, self.scale)
        return ShapeFactors(*(field[positions] for field in chosen))


def draw_factors(seed: int, split: str, count: int) -> ShapeFactors:
    """Draw the factors of ``count`` images from the stream keyed by ``(seed, split)``."""
    rng = np.random.default_rng([seed, _STREAMS[split], _STREAM_SALT])
    return ShapeFactors(
        shape=rng.integers(0, len(SHAPES), count),
        colour=rng.integers(0, len(COLOURS), count),
        position=rng.integers(0, GRID * GRID, count),
        offset=rng.uniform(-POSITION_JITTER, POSITION_JITTER, (count, 2)).astype(np.float32),
        scale=rng.uniform(1 - SIZE_JITTER, 1 + SIZE_JITTER, count).astype(np.float32),
    )


def render(factors: ShapeFactors, resolution: int) -> np.ndarray:
    """Render images from ``factors``: float32 ``[N, 3, R, R]`` in ``[-1, 1]``."""
    count = len(factors.shape)
    out = np.empty((count, 3, resolution, resolution), dtype=np.float32)
    for start in range(0, count, _CHUNK):
        chunk = factors.take(np.arange(start, min(start + _CHUNK, count)))
        out[start : start + len(chunk.shape)] = _render_chunk(chunk, resolution)
    return out


def _render_chunk(factors: ShapeFactors, resolution: int) -> np.ndarray:
    centres = (np.arange(resolution, dtype=np.float32) + 0.5) / resolution
    cell_x = (factors.position % GRID + 0.5) / GRID + factors.offset[:, 0]
    cell_y = (factors.position // GRID + 0.5) / GRID + factors.offset[:, 1]
    dx = centres[None, None, :] - cell_x[:, None, None].astype(np.float32)
    dy = centres[None, :, None] - cell_y[:, None, None].astype(np.float32)
    radius = BASE_RADIUS * factors.scale[:, None, None]
    distance = np.empty((len(factors.shape), resolution, resolution), dtype=np.float32)
    for kind, signed_distance in enumerate(_SIGNED_DISTANCES):
        members = factors.shape == kind
        if members.any():
            distance[members] = signed_distance(dx[members], dy[members], radius[members])
    coverage = np.clip(0.5 - distance * resolution, 0.0, 1.0)[:, None]
    colour = _PALETTE[factors.colour][:, :, None, None]
    rgb = BACKGROUND + coverage * (colour - BACKGROUND)
    return np.clip(rgb * 2.0 - 1.0, -1.0, 1.0)


class ShapesDataset(ImageDataset):
    """One split of the shapes: 3×R×R images in ``[-1, 1]``, 4 classes, factors shape/colour/position."""

    def __init__(self, split: str = "train", resolution: int | None = None, seed: int = 0) -> None:
        check_choice("split", split, tuple(SPLIT_SIZES))
        resolution = DEFAULT_RESOLUTION if resolution is None else resolution
        check_choice("resolution for 'shapes'", resolution, RESOLUTIONS)
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise GenlabError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = int(seed)
        self._table = draw_factors(self.seed, split, SPLIT_SIZES[split])
        super().__init__("shapes", split, resolution, 3, SHAPES, SPLIT_SIZES[split])

    def _images(self, positions: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(render(self._table.take(positions), self.resolution))

    def _labels(self, positions: np.ndarray) -> np.ndarray:
        return self._table.shape[positions]

    def _factors(self, positions: np.ndarray) -> dict[str, np.ndarray]:
        chosen = self._table.take(positions)
        return {"shape": chosen.shape, "colour": chosen.colour, "position": chosen.position}
