"""Random image degradations that imitate a small generator's errors, for training robust metric nets.

A metric net trained on clean renderings alone misreads generated frames. :func:`generator_artefacts`
degrades frames the way genlab's patch-based video DiTs fail at small scale: patch-sized blocks
(the frame blended with its ``patch × patch`` means), fragments (patches copied from a
neighbouring patch position, as objects break up), blur, colour drift and noise, each drawn per
frame. :func:`blur` is the Gaussian blur it uses, shared with the image feature nets' training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


def blur(images: Tensor, max_sigma: float, generator: torch.Generator, share: float = 0.5) -> Tensor:
    """Blur a random ``share`` of ``images [B, C, H, H]`` with Gaussians of std up to ``max_sigma`` px; keep the rest.

    The separable blur (edges repeated) is one ``[H, H]`` matrix per image, applied to rows and columns.
    """
    b, _, h, _ = images.shape
    radius = max(1, math.ceil(2 * max_sigma))
    sigma = torch.rand(b, generator=generator) * max_sigma
    sigma = torch.where(torch.rand(b, generator=generator) < share, sigma, 0.0).clamp_min(1e-3)
    taps = torch.arange(-radius, radius + 1)
    weights = torch.exp(-0.5 * (taps[None, :] / sigma[:, None]) ** 2)
    weights = (weights / weights.sum(dim=1, keepdim=True)).unsqueeze(1).expand(b, h, -1)
    sources = (torch.arange(h)[:, None] + taps[None, :]).clamp(0, h - 1).expand(b, -1, -1)
    matrix = torch.zeros(b, h, h).scatter_add_(2, sources, weights).unsqueeze(1)
    return matrix @ images.float() @ matrix.transpose(2, 3)


@dataclass(frozen=True)
class Artefacts:
    """Strengths of :func:`generator_artefacts`; each frame draws its own amounts up to these.

    ``blocks``: largest blend weight of the patch-mean frame; ``fragments``: most patches per frame
    replaced by a neighbouring patch; ``blur``: largest blur std (px); ``colour``: largest per-channel
    gain change and offset (image units); ``noise``: largest noise std (image units); ``patch``: the
    generator's patch size (px).
    """

    patch: int = 4
    blocks: float = 0.6
    fragments: int = 8
    blur: float = 1.0
    colour: float = 0.08
    noise: float = 0.08


def generator_artefacts(frames: Tensor, generator: torch.Generator, artefacts: Artefacts = Artefacts()) -> Tensor:
    """``frames [B, 3, H, W]`` in ``[-1, 1]`` (``H, W`` multiples of ``artefacts.patch``) degraded, clamped to ``[-1, 1]``."""
    b, c, h, w = frames.shape
    p = artefacts.patch
    out = blur(frames.float(), artefacts.blur, generator)
    means = F.interpolate(F.avg_pool2d(out, p), scale_factor=p, mode="nearest")
    alpha = torch.rand(b, 1, 1, 1, generator=generator) * artefacts.blocks
    out = (1 - alpha) * out + alpha * means
    out = _fragments(out, generator, p, artefacts.fragments)
    gain = 1 + (2 * torch.rand(b, c, 1, 1, generator=generator) - 1) * artefacts.colour
    offset = (2 * torch.rand(b, c, 1, 1, generator=generator) - 1) * artefacts.colour
    noise = torch.rand(b, 1, 1, 1, generator=generator) * artefacts.noise * torch.randn(out.shape, generator=generator)
    return (gain * out + offset + noise).clamp(-1, 1)


def _fragments(frames: Tensor, generator: torch.Generator, patch: int, most: int) -> Tensor:
    """Replace up to ``most`` random patches of each frame by the patch one position away (a random
    one of the 8 neighbours, clamped at the border)."""
    b, _, h, w = frames.shape
    gh, gw = h // patch, w // patch
    grid = frames.unfold(2, patch, patch).unfold(3, patch, patch)  # [B, C, gh, gw, p, p]
    out = grid.clone()
    counts = torch.randint(0, most + 1, (b,), generator=generator)
    rows = torch.randint(gh, (b, most), generator=generator)
    cols = torch.randint(gw, (b, most), generator=generator)
    shift = torch.randint(3, (b, most, 2), generator=generator) - 1
    chosen = torch.arange(most)[None] < counts[:, None]  # [B, most]: the first counts[i] draws of frame i
    frame = torch.arange(b)[:, None].expand(b, most)[chosen]
    source_rows = (rows + shift[..., 0]).clamp(0, gh - 1)[chosen]
    source_cols = (cols + shift[..., 1]).clamp(0, gw - 1)[chosen]
    out[frame, :, rows[chosen], cols[chosen]] = grid[frame, :, source_rows, source_cols]
    return out.permute(0, 1, 2, 4, 3, 5).reshape(frames.shape)
