"""The base class shared by genlab's image data sets, and argument checks they share."""

from __future__ import annotations

import operator
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from genlab.errors import GenlabError

IndexLike = Sequence[int] | np.ndarray | torch.Tensor | range | None


def check_choice(argument: str, value: object, allowed: Sequence[object]) -> None:
    """Raise :class:`GenlabError` unless ``value`` is one of ``allowed``."""
    if isinstance(value, bool) or value not in allowed:
        choices = ", ".join(repr(choice) for choice in allowed)
        raise GenlabError(f"{argument} must be one of {choices}; got {value!r}")


class ImageDataset(Dataset, ABC):
    """A map-style data set of labelled images.

    ``ds[i]`` is ``(image, label)``: ``image`` a float32 tensor ``[C, H, W]`` with values in
    ``[-1, 1]``, ``label`` an int in ``[0, num_classes)``. :meth:`images`, :meth:`labels` and
    :meth:`factors` fetch many items at once and are much faster than indexing one by one.
    """

    def __init__(
        self, name: str, split: str, resolution: int, channels: int, class_names: Sequence[str], length: int
    ) -> None:
        self.name = name
        self.split = split
        self.resolution = resolution
        self.channels = channels
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self._length = length

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        index = operator.index(index)
        if not -self._length <= index < self._length:
            raise IndexError(f"index {index} is out of range for a data set of {self._length} items")
        position = np.array([index % self._length])
        return self._images(position)[0], int(self._labels(position)[0])

    def images(self, indices: IndexLike = None) -> torch.Tensor:
        """Images at ``indices`` (all when None): float32 ``[N, C, H, W]`` in ``[-1, 1]``."""
        return self._images(self._resolve(indices))

    def labels(self, indices: IndexLike = None) -> torch.Tensor:
        """Class indices at ``indices`` (all when None): int64 ``[N]`` in ``[0, num_classes)``."""
        return torch.from_numpy(self._labels(self._resolve(indices)))

    def factors(self, indices: IndexLike = None) -> dict[str, torch.Tensor]:
        """Known generative factors at ``indices`` (all when None): name -> int64 ``[N]``."""
        position = self._resolve(indices)
        return {key: torch.from_numpy(values) for key, values in self._factors(position).items()}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, len={self._length}, "
            f"shape={self.channels}×{self.resolution}×{self.resolution}, classes={self.num_classes})"
        )

    def _resolve(self, indices: IndexLike) -> np.ndarray:
        """Turn ``indices`` into a 1-D int64 array of valid positions, or raise GenlabError."""
        if indices is None:
            return np.arange(self._length)
        if isinstance(indices, torch.Tensor):
            indices = indices.detach().cpu().numpy()
        array = np.asarray(indices)
        if array.size == 0:
            return np.zeros(0, dtype=np.int64)
        if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
            raise GenlabError(
                f"indices must be a 1-D sequence of integers, got shape {array.shape} of {array.dtype}"
            )
        if array.min() < 0 or array.max() >= self._length:
            raise GenlabError(
                f"indices must lie in [0, {self._length}) for the {self.name!r} {self.split!r} split, "
                f"got values from {array.min()} to {array.max()}"
            )
        return array.astype(np.int64)

    @abstractmethod
    def _images(self, positions: np.ndarray) -> torch.Tensor:
        """Images at valid ``positions`` (int64 ``[N]``): float32 ``[N, C, H, W]`` in ``[-1, 1]``."""

    @abstractmethod
    def _labels(self, positions: np.ndarray) -> np.ndarray:
        """Class indices at valid ``positions``: int64 ``[N]``."""

    @abstractmethod
    def _factors(self, positions: np.ndarray) -> dict[str, np.ndarray]:
        """Known factors at valid ``positions``: name -> int64 ``[N]``."""
