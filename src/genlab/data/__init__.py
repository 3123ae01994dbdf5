"""Small labelled image data sets for CPU-scale experiments.

``load_dataset(name, split, resolution, seed)`` returns an :class:`ImageDataset` whose items
are ``(image, label)`` with ``image`` float32 ``[C, H, W]`` in ``[-1, 1]``:

- ``"digits"``: scikit-learn's handwritten digits, 1 channel, 8/16/32 px (default 16), 10 classes,
  a fixed 1500/297 train/test split.
- ``"shapes"``: procedural coloured shapes, 3 channels, 16/32/64 px (default 32), 4 classes,
  20,000 train and 2,000 test images per seed, with factors shape/colour/position.

:mod:`genlab.data.scenes` renders procedural 3-D scenes (checkerboard ground, sky, coloured
spheres and boxes) with a vectorised ray caster; :class:`CameraVideoDataset` holds camera-controlled
video clips of them with their poses and intrinsics (``render``, ``random_scenes``,
``random_camera_paths`` and ``default_intrinsics`` build the parts).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from genlab.lazy import lazy_exports

if TYPE_CHECKING:
    from genlab.data.base import ImageDataset

DATASETS: tuple[str, ...] = ("digits", "shapes")

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".base": ("ImageDataset",),
    ".digits": ("DigitsDataset",),
    ".scenes": ("CameraVideoDataset", "default_intrinsics", "random_camera_paths", "random_scenes", "render"),
    ".shapes": ("ShapesDataset",),
})
__all__ = ["DATASETS", "load_dataset", *__all__]


def load_dataset(
    name: str, split: str = "train", resolution: int | None = None, seed: int = 0
) -> ImageDataset:
    """Load one split of a data set.

    ``resolution`` None picks the data set's default; ``seed`` selects the shapes random stream
    and is ignored by ``"digits"``, whose split is fixed. Raises GenlabError for an unknown
    ``name``, ``split`` or an unsupported ``resolution``.
    """
    from genlab.data.base import check_choice
    from genlab.data.digits import DigitsDataset
    from genlab.data.shapes import ShapesDataset

    check_choice("name", name, DATASETS)
    if name == "digits":
        return DigitsDataset(split, resolution)
    return ShapesDataset(split, resolution, seed)
