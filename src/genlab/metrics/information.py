"""Information between discrete variables (e.g. learned codes and a data set's known factors)."""

from __future__ import annotations

import torch

from genlab.errors import GenlabError


def entropy(values: torch.Tensor) -> float:
    """Plug-in entropy in bits of the integer samples ``values [N]``."""
    counts = torch.unique(values, return_counts=True)[1].double()
    p = counts / counts.sum()
    return float(-(p * p.log2()).sum())


def mutual_information(a: torch.Tensor, b: torch.Tensor) -> float:
    """Plug-in estimate of I(a; b) in bits from paired integer samples ``a [N]``, ``b [N]``.

    ``I = H(a) + H(b) − H(a, b)``; the estimate is biased upwards by about
    ``(|a|−1)(|b|−1) / (2 N ln 2)`` bits, so use N much larger than the number of value pairs.
    """
    if a.shape != b.shape or a.ndim != 1 or a.is_floating_point() or b.is_floating_point() or not len(a):
        raise GenlabError(f"mutual_information needs two non-empty integer tensors [N] of equal length, "
                          f"got {a.dtype} {list(a.shape)} and {b.dtype} {list(b.shape)}")
    a, b = a.long().cpu(), b.long().cpu()
    joint = (a - a.min()) * (int(b.max() - b.min()) + 1) + (b - b.min())
    return max(0.0, entropy(a) + entropy(b) - entropy(joint))
