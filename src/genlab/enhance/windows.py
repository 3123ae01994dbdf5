"""Running a fixed-size video model over longer and larger videos in overlapping windows.

A video model sees ``T`` frames of ``R x R`` pixels. :func:`apply_in_windows` cuts a video
``[B, L, C, H, W]`` into overlapping space-time windows (chunks in time, tiles in space), runs the
model on them (``windows_per_call`` windows per call, which bounds memory), and blends the
outputs with weights that ramp linearly across each overlap, so neighbouring windows fade into
each other instead of meeting at a seam. :class:`WindowedDenoiser` does this inside every call of
a denoiser, i.e. at every sampling step, as VEnhancer blends its 32-frame chunks.

Weights are normalised per pixel, so wherever all windows agree (e.g. a constant video through a
model that keeps it) the blend returns exactly their common value.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
from torch import Tensor, nn

from genlab.errors import GenlabError

Window = tuple[int, int, int]  # (frames, height, width)


def window_starts(length: int, window: int, overlap: int, axis: str = "frames") -> list[int]:
    """Start positions of windows of ``window`` covering ``length`` with at least ``overlap`` shared."""
    if length < window:
        raise GenlabError(f"the video has {length} {axis}, fewer than the model's window of {window}")
    if not 0 <= overlap < window:
        raise GenlabError(f"the {axis} overlap must lie in [0, {window}), got {overlap}")
    starts = list(range(0, length - window + 1, window - overlap))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


def blend_ramp(window: int, overlap: int, first: bool, last: bool) -> Tensor:
    """``[window]`` blend weights: rising over the first ``overlap`` positions unless ``first``, falling
    over the last ``overlap`` unless ``last``, 1 elsewhere (always > 0)."""
    weights = torch.ones(window)
    if overlap > 0:
        rise = torch.arange(1, overlap + 1, dtype=torch.float32) / (overlap + 1)
        if not first:
            weights[:overlap] = rise
        if not last:
            weights[-overlap:] = torch.minimum(weights[-overlap:], rise.flip(0))
    return weights


def _slice_condition(value, batch: int, length: int, size: tuple[int, int], where: tuple[slice, slice, slice]):
    """``value`` cut to one window: videos ``[B, L, ..., H, W]`` in space-time, per-frame ``[B, L]`` in time."""
    if not isinstance(value, Tensor):
        return value
    frames, rows, cols = where
    if value.ndim == 5 and value.shape[0] == batch and value.shape[1] == length and tuple(value.shape[-2:]) == size:
        return value[:, frames, :, rows, cols]
    if value.ndim == 2 and tuple(value.shape) == (batch, length):
        return value[:, frames]
    return value


def apply_in_windows(function: Callable[..., Tensor], x: Tensor, window: Window, overlap: Window,
                     windows_per_call: int = 1, **cond) -> Tensor:
    """``function(x_window, **cond_window) -> [B', T, C, R, R]`` applied to ``x [B, L, C, H, W]`` in windows.

    ``cond`` tensors shaped like the video (``[B, L, *, H, W]``) or per frame (``[B, L]``) are cut
    with each window; other tensors (per clip, ``[B, ...]``) are repeated for every window of a call.
    Returns the blended outputs, ``[B, L, C, H, W]`` (float32 accumulation, cast back to ``x.dtype``).
    """
    if x.ndim != 5:
        raise GenlabError(f"expected a video batch [B, L, C, H, W], got {list(x.shape)}")
    if windows_per_call < 1:
        raise GenlabError(f"windows per call must be >= 1, got {windows_per_call}")
    batch, length, _, height, width = x.shape
    axes = list(zip((length, height, width), window, overlap, ("frames", "rows", "columns"), strict=True))
    starts = [window_starts(n, w, o, axis) for n, w, o, axis in axes]
    ramps = [{s: blend_ramp(w, o, s == 0, s + w == n) for s in axis_starts}
             for axis_starts, (n, w, o, _) in zip(starts, axes, strict=True)]
    places = list(itertools.product(*starts))

    total = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    weight_sum = torch.zeros(1, length, 1, height, width, device=x.device)
    for first in range(0, len(places), windows_per_call):
        group = places[first : first + windows_per_call]
        slices = [tuple(slice(s, s + w) for s, w in zip(place, window, strict=True)) for place in group]
        inputs = torch.cat([x[:, f, :, r, c] for f, r, c in slices])
        window_cond = {}
        for key, value in cond.items():
            parts = [_slice_condition(value, batch, length, (height, width), where) for where in slices]
            window_cond[key] = torch.cat(parts) if isinstance(value, Tensor) else value
        outputs = function(inputs, **window_cond).float().split(batch)
        for (f, r, c), place, output in zip(slices, group, outputs, strict=True):
            t_ramp, y_ramp, x_ramp = (ramps[axis][place[axis]].to(x.device) for axis in range(3))
            weight = t_ramp[:, None, None, None] * y_ramp[None, None, :, None] * x_ramp[None, None, None, :]
            total[:, f, :, r, c] += weight * output
            weight_sum[:, f, :, r, c] += weight
    return (total / weight_sum).to(x.dtype)


class WindowedDenoiser(nn.Module):
    """``inner`` (a denoiser over ``window``-sized clips) applied in blended windows at every call.

    ``forward(x [B, L, C, H, W], sigma [B], **cond) -> [B, L, C, H, W]``; see :func:`apply_in_windows`.
    """

    def __init__(self, inner: nn.Module, window: Window, overlap: Window, windows_per_call: int = 1) -> None:
        super().__init__()
        self.inner, self.window, self.overlap, self.windows_per_call = inner, window, overlap, windows_per_call

    def forward(self, x: Tensor, sigma: Tensor, **cond) -> Tensor:
        return apply_in_windows(self.inner, x, self.window, self.overlap, self.windows_per_call, sigma=sigma, **cond)

