"""Per-image fidelity against a reference: PSNR and SSIM, for images ``[N, C, H, W]`` in [-1, 1]."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.errors import GenlabError


def _check_pair(images: Tensor, reference: Tensor) -> tuple[Tensor, Tensor]:
    if images.shape != reference.shape or images.dim() != 4:
        raise GenlabError(f"images and reference must both be [N, C, H, W], got {list(images.shape)} "
                          f"and {list(reference.shape)}")
    return (images.detach().float().clamp(-1, 1) + 1) / 2, (reference.detach().float().clamp(-1, 1) + 1) / 2


def psnr(images: Tensor, reference: Tensor) -> Tensor:
    """Peak signal-to-noise ratio per image ``[N]`` in dB (pixel range [0, 1]; capped at 100 dB)."""
    a, b = _check_pair(images, reference)
    mse = (a - b).pow(2).flatten(1).mean(dim=1)
    return 10 * torch.log10(1 / mse.clamp_min(1e-10))


def _gaussian_window(size: int, sigma: float) -> Tensor:
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(images: Tensor, reference: Tensor, window: int = 7, sigma: float = 1.5) -> Tensor:
    """Structural similarity per image ``[N]`` (Wang et al. 2004: Gaussian window, K1 = 0.01, K2 = 0.03,
    pixel range [0, 1], averaged over channels and valid window positions)."""
    a, b = _check_pair(images, reference)
    channels = a.shape[1]
    kernel = _gaussian_window(window, sigma).to(a.device).expand(channels, 1, window, window)

    def blur(x: Tensor) -> Tensor:
        return F.conv2d(x, kernel, groups=channels)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return index.flatten(1).mean(dim=1)
