"""Distances between two sets of feature vectors: Fréchet distance (FD) and k-NN precision/recall."""

from __future__ import annotations

import numpy as np
import torch

from genlab.errors import GenlabError

_ROWS_PER_CHUNK = 1024


def _as_features(argument: str, feats: torch.Tensor | np.ndarray, min_rows: int) -> torch.Tensor:
    """Check ``feats`` is a finite ``[N, D]`` array with N ≥ ``min_rows``; return it as float64."""
    if not isinstance(feats, torch.Tensor | np.ndarray):
        raise GenlabError(f"{argument} must be a tensor or array [N, D], got {type(feats).__name__}")
    tensor = torch.as_tensor(feats).detach().cpu().to(torch.float64)
    if tensor.ndim != 2:
        raise GenlabError(f"{argument} must have shape [N, D], got {tuple(tensor.shape)}")
    if tensor.shape[0] < min_rows:
        raise GenlabError(f"{argument} must have at least {min_rows} rows, got {tensor.shape[0]}")
    if not torch.isfinite(tensor).all():
        raise GenlabError(f"{argument} must be finite, got NaN or inf values")
    return tensor


def _check_same_dim(dims: tuple[int, int], names: tuple[str, str]) -> None:
    if dims[0] != dims[1]:
        raise GenlabError(
            f"{names[0]} and {names[1]} must have the same feature dimension, got {dims[0]} and {dims[1]}"
        )


def frechet_distance(feats_a: torch.Tensor | np.ndarray, feats_b: torch.Tensor | np.ndarray) -> float:
    """Fréchet distance (FD) between Gaussians fitted to two feature sets ``[N, D]`` and ``[M, D]``.

    ``FD = |μa − μb|² + tr(Σa) + tr(Σb) − 2 tr((Σa Σb)^½)``, computed in float64; ≥ 0 and
    symmetric. ``tr((Σa Σb)^½)`` is the sum of the square roots of the eigenvalues of the
    symmetric matrix ``Σa^½ Σb Σa^½``, which avoids complex matrix square roots.
    """
    a = _as_features("feats_a", feats_a, min_rows=2).numpy()
    b = _as_features("feats_b", feats_b, min_rows=2).numpy()
    _check_same_dim((a.shape[1], b.shape[1]), ("feats_a", "feats_b"))
    mean_gap = a.mean(axis=0) - b.mean(axis=0)
    cov_a = np.atleast_2d(np.cov(a, rowvar=False))
    cov_b = np.atleast_2d(np.cov(b, rowvar=False))
    eigvals, eigvecs = np.linalg.eigh(cov_a)
    sqrt_a = (eigvecs * np.sqrt(np.clip(eigvals, 0.0, None))) @ eigvecs.T
    product = sqrt_a @ cov_b @ sqrt_a
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((product + product.T) / 2.0), 0.0, None)).sum()
    distance = mean_gap @ mean_gap + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt
    return float(max(distance, 0.0))


def _kth_neighbour_radii(feats: torch.Tensor, k: int) -> torch.Tensor:
    """Distance ``[N]`` from each row of ``feats`` ``[N, D]`` to its k-th nearest other row."""
    radii = []
    for start in range(0, len(feats), _ROWS_PER_CHUNK):
        block = torch.cdist(feats[start : start + _ROWS_PER_CHUNK], feats)
        radii.append(block.topk(k + 1, dim=1, largest=False).values[:, -1])
    return torch.cat(radii)


def _inside_manifold(queries: torch.Tensor, support: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """Whether each query row lies in a ball of ``radii`` around some ``support`` row: bool ``[N]``."""
    inside = []
    for start in range(0, len(queries), _ROWS_PER_CHUNK):
        block = torch.cdist(queries[start : start + _ROWS_PER_CHUNK], support)
        inside.append((block <= radii[None, :]).any(dim=1))
    return torch.cat(inside)


def precision_recall(
    real_feats: torch.Tensor | np.ndarray, fake_feats: torch.Tensor | np.ndarray, k: int = 3
) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al., 2019) of features ``[N, D]`` and ``[M, D]``.

    Each set's manifold is the union of balls around its points with radius the distance to the
    point's k-th nearest neighbour in the same set. Precision is the share of fake points inside
    the real manifold, recall the share of real points inside the fake manifold; both in [0, 1].
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise GenlabError(f"k must be a positive integer, got {k!r}")
    real = _as_features("real_feats", real_feats, min_rows=k + 1)
    fake = _as_features("fake_feats", fake_feats, min_rows=k + 1)
    _check_same_dim((real.shape[1], fake.shape[1]), ("real_feats", "fake_feats"))
    precision = _inside_manifold(fake, real, _kth_neighbour_radii(real, k)).double().mean().item()
    recall = _inside_manifold(real, fake, _kth_neighbour_radii(fake, k)).double().mean().item()
    return precision, recall


def wasserstein2(points_a: torch.Tensor, points_b: torch.Tensor) -> float:
    """Exact W2 distance between two equal-size point clouds ``[N, D]`` (optimal matching).

    ``sqrt(min over permutations π of mean ‖a_i − b_π(i)‖²)``, solved with the Hungarian
    algorithm (scipy); O(N³), so keep N at a few thousand.
    """
    from scipy.optimize import linear_sum_assignment

    a = _as_features("points_a", points_a, 1)
    b = _as_features("points_b", points_b, 1)
    if a.shape != b.shape:
        raise GenlabError(f"wasserstein2 needs point clouds of the same shape, got {list(a.shape)} and {list(b.shape)}")
    cost = torch.cdist(a, b).pow(2).numpy()
    rows, cols = linear_sum_assignment(cost)
    return float(np.sqrt(cost[rows, cols].mean()))
