"""Score generated images against a data set's held-out test split with its feature net."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import torch
import torch.nn.functional as F

from genlab.data import load_dataset
from genlab.errors import GenlabError
from genlab.metrics.distances import frechet_distance, precision_recall
from genlab.metrics.feature_net import FeatureNet, load_feature_net

DEFAULT_NUM_REFERENCE = 2000
NEIGHBOURS = 3
REFERENCE_BATCH_SIZE = 256


def _check_positive_int(argument: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise GenlabError(f"{argument} must be a positive integer, got {value!r}")


def _check_images(images: torch.Tensor, min_count: int) -> None:
    """Raise GenlabError unless ``images`` is a finite float batch ``[N, C, H, W]`` with N ≥ ``min_count``."""
    if not isinstance(images, torch.Tensor) or not images.is_floating_point() or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise GenlabError(f"images must be a float tensor [N, C, H, W] in [-1, 1], got {shape}")
    if len(images) < min_count:
        raise GenlabError(f"images must hold at least {min_count} samples, got {len(images)}")
    if not torch.isfinite(images).all():
        raise GenlabError("images must be finite, got NaN or inf values")


def _check_labels(labels: torch.Tensor, count: int, num_classes: int) -> None:
    """Raise GenlabError unless ``labels`` is an integer tensor ``[count]`` in ``[0, num_classes)``."""
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or tuple(labels.shape) != (count,):
        got = (
            f"{labels.dtype} {tuple(labels.shape)}"
            if isinstance(labels, torch.Tensor)
            else type(labels).__name__
        )
        raise GenlabError(f"labels must be a LongTensor [{count}] matching images, got {got}")
    if count and (labels.min() < 0 or labels.max() >= num_classes):
        raise GenlabError(
            f"labels must lie in [0, {num_classes}), got values from {labels.min()} to {labels.max()}"
        )


def _batched(
    fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, batch_size: int
) -> torch.Tensor:
    """Apply ``fn`` to ``images`` ``[N, ...]`` in batches and concatenate the results ``[N, ...]``."""
    return torch.cat([fn(images[start : start + batch_size]) for start in range(0, len(images), batch_size)])


@torch.inference_mode()
def class_accuracy(images: torch.Tensor, labels: torch.Tensor, dataset: str, batch_size: int = 256) -> float:
    """Share in [0, 1] of ``images`` ``[N, C, H, W]`` in [-1, 1] that ``dataset``'s feature net
    classifies as their ``labels`` (LongTensor ``[N]``)."""
    net = load_feature_net(dataset)
    _check_images(images, min_count=1)
    _check_labels(labels, len(images), net.config.num_classes)
    _check_positive_int("batch_size", batch_size)
    predicted = _batched(net, to_feature_resolution(images.cpu(), net.config.resolution), batch_size).argmax(dim=1)
    return (predicted == labels.cpu()).double().mean().item()


def to_feature_resolution(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Bilinearly upsize square images ``[N, C, h, h]`` whose size divides the feature net's ``resolution``;
    anything else is returned unchanged (and the feature net's input check names the mismatch)."""
    size = images.shape[-1]
    if images.ndim != 4 or images.shape[-2] != size or size >= resolution or resolution % size:
        return images
    return F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False)


@lru_cache(maxsize=8)
@torch.inference_mode()
def reference_features(dataset: str, num_reference: int, resolution: int | None = None) -> torch.Tensor:
    """Features ``[num_reference, D]`` of the first ``num_reference`` images of ``dataset``'s test split
    (seed 0), rendered at ``resolution`` (default: the feature net's) and resized to the net's size."""
    net = load_feature_net(dataset)
    test_set = load_dataset(dataset, "test", resolution=resolution or net.config.resolution)
    images = to_feature_resolution(test_set.images(range(num_reference)), net.config.resolution)
    return _batched(net.features, images, REFERENCE_BATCH_SIZE)


def _resolve_num_reference(net: FeatureNet, num_reference: int | None) -> int:
    available = len(load_dataset(net.config.dataset, "test", resolution=net.config.resolution))
    if num_reference is None:
        return min(available, DEFAULT_NUM_REFERENCE)
    _check_positive_int("num_reference", num_reference)
    if not NEIGHBOURS < num_reference <= available:
        raise GenlabError(
            f"num_reference must lie in [{NEIGHBOURS + 1}, {available}] for {net.config.dataset!r}, got {num_reference}"
        )
    return num_reference


@torch.inference_mode()
def evaluate_samples(
    images: torch.Tensor,
    labels: torch.Tensor | None,
    dataset: str,
    num_reference: int | None = None,
    batch_size: int = 256,
) -> dict[str, float]:
    """Compare samples with ``dataset``'s held-out test split in feature-net space.

    ``images`` float ``[N, C, H, W]`` in [-1, 1] (N ≥ 4); images smaller than the feature net's size
    are resized to it bilinearly and compared with test images rendered at their size and resized
    alike (so FD measures the model, not the resizing); ``labels``
    LongTensor ``[N]`` of intended classes, or None. The reference is the first
    ``num_reference`` test images (default: min(test size, 2000), i.e. all 297 for digits).
    Returns ``"fd"`` (≥ 0, lower is better), ``"precision"`` and ``"recall"`` (k = 3, in [0, 1]),
    and ``"accuracy"`` (in [0, 1]) when labels are given. Deterministic.
    """
    net = load_feature_net(dataset)
    _check_images(images, min_count=NEIGHBOURS + 1)
    if labels is not None:
        _check_labels(labels, len(images), net.config.num_classes)
    _check_positive_int("batch_size", batch_size)
    count = _resolve_num_reference(net, num_reference)
    resolution = images.shape[-1]
    fake_features = _batched(net.features, to_feature_resolution(images.cpu(), net.config.resolution), batch_size)
    real_features = reference_features(dataset, count, resolution)
    precision, recall = precision_recall(real_features, fake_features, k=NEIGHBOURS)
    scores = {"fd": frechet_distance(real_features, fake_features), "precision": precision, "recall": recall}
    if labels is not None:
        predicted = net.classifier(fake_features).argmax(dim=1)
        scores["accuracy"] = (predicted == labels.cpu()).double().mean().item()
    return scores
