"""scikit-learn's 8×8 handwritten digits, upsampled to 8, 16 or 32 pixels.

The 1797 images (grey levels 0..16, classes 0..9) are split once, independently of any seed:
a stratified "test" split of 297 images and a "train" split of the other 1500.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from genlab.data.base import ImageDataset, check_choice

RESOLUTIONS = (8, 16, 32)
DEFAULT_RESOLUTION = 16
SPLITS = ("train", "test")
TEST_SIZE = 297
_SPLIT_SEED = 1797


@lru_cache(maxsize=1)
def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    """All digits: images float32 ``[1797, 8, 8]`` in ``[0, 1]`` and labels int64 ``[1797]``."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)
    labels = bunch.target.astype(np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def split_indices(split: str) -> np.ndarray:
    """Sorted positions (int64 ``[N]``) in ``load_digits()`` that make up ``split``.

    A fixed permutation is reordered so that the classes take turns; its first
    :data:`TEST_SIZE` entries are the test split (29 or 30 per class), the rest are train.
    """
    check_choice("split", split, SPLITS)
    labels = _raw_digits()[1]
    permutation = np.random.default_rng(_SPLIT_SEED).permutation(len(labels))
    rank = np.empty(len(labels), dtype=np.int64)
    for digit in range(10):
        members = permutation[labels[permutation] == digit]
        rank[members] = np.arange(len(members))
    interleaved = permutation[np.argsort(rank[permutation], kind="stable")]
    chosen = interleaved[:TEST_SIZE] if split == "test" else interleaved[TEST_SIZE:]
    return np.sort(chosen)


class DigitsDataset(ImageDataset):
    """One split of the digits: 1×R×R images in ``[-1, 1]`` with background at -1, 10 classes."""

    def __init__(self, split: str = "train", resolution: int | None = None) -> None:
        check_choice("split", split, SPLITS)
        resolution = DEFAULT_RESOLUTION if resolution is None else resolution
        check_choice("resolution for 'digits'", resolution, RESOLUTIONS)
        raw_images, raw_labels = _raw_digits()
        chosen = split_indices(split)
        small = torch.from_numpy(raw_images[chosen]).unsqueeze(1)
        upsampled = F.interpolate(small, size=(resolution, resolution), mode="bicubic", antialias=True)
        self._data = upsampled.clamp(0.0, 1.0).mul(2.0).sub(1.0).contiguous()
        self._targets = raw_labels[chosen]
        super().__init__("digits", split, resolution, 1, [str(d) for d in range(10)], len(chosen))

    def _images(self, positions: np.ndarray) -> torch.Tensor:
        return self._data[torch.from_numpy(positions)]

    def _labels(self, positions: np.ndarray) -> np.ndarray:
        return self._targets[positions]

    def _factors(self, positions: np.ndarray) -> dict[str, np.ndarray]:
        return {"digit": self._targets[positions]}
