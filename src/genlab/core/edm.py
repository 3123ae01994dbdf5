"""EDM diffusion math (Karras et al., 2022): preconditioning, training noise levels, loss, samplers.

Conventions: data ``x0`` has standard deviation about ``sigma_data``; a noisy sample at noise
level ``sigma`` is ``x = x0 + sigma * n`` with ``n ~ N(0, I)``. A *denoiser* is any callable
``denoiser(x, sigma, **cond) -> x0_hat`` with ``sigma`` a tensor of shape ``[B]`` (see
:mod:`genlab.core.denoiser`). The probability-flow ODE is ``dx/dsigma = (x - D(x, sigma)) / sigma``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from genlab.core.config import SAMPLERS
from genlab.errors import GenlabError

Denoiser = Callable[..., Tensor]


@dataclass(frozen=True)
class EDMSchedule:
    """EDM's noise-level settings (defaults are the paper's)."""

    sigma_data: float = 0.5
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    p_mean: float = -1.2
    p_std: float = 1.2


def preconditioning(sigma: Tensor, sigma_data: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """EDM's scalings for ``D(x, σ) = c_skip·x + c_out·F(c_in·x, c_noise)``.

    Args:
        sigma: noise levels, any shape.
        sigma_data: standard deviation of the data.

    Returns:
        ``(c_skip, c_out, c_in, c_noise)``, each shaped like ``sigma``.
    """
    total = sigma**2 + sigma_data**2
    c_skip = sigma_data**2 / total
    c_out = sigma * sigma_data / total.sqrt()
    c_in = 1 / total.sqrt()
    c_noise = sigma.log() / 4
    return c_skip, c_out, c_in, c_noise


def sample_training_sigmas(
    batch_size: int, schedule: EDMSchedule = EDMSchedule(), device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Log-normal training noise levels, ``ln σ ~ N(p_mean, p_std²)``; shape ``[batch_size]``."""
    normal = torch.randn(batch_size, generator=generator, device=device)
    return (normal * schedule.p_std + schedule.p_mean).exp()


def loss_weight(sigma: Tensor, sigma_data: float) -> Tensor:
    """EDM's λ(σ) = (σ² + σ_data²) / (σ·σ_data)², which gives the network output unit variance."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def edm_loss(
    denoiser: Denoiser, x0: Tensor, schedule: EDMSchedule = EDMSchedule(),
    generator: torch.Generator | None = None, **cond,
) -> Tensor:
    """Per-sample EDM loss ``λ(σ)·mean‖D(x0 + σn, σ) − x0‖²``; returns shape ``[B]``."""
    sigma = sample_training_sigmas(x0.shape[0], schedule, x0.device, generator)
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    denoised = denoiser(x0 + _expand(sigma, x0) * noise, sigma, **cond)
    squared_error = (denoised.float() - x0.float()).pow(2).flatten(1).mean(1)
    return loss_weight(sigma, schedule.sigma_data) * squared_error


def karras_sigmas(
    num_steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
) -> Tensor:
    """Karras σ schedule: ``num_steps`` levels from ``sigma_max`` down to ``sigma_min``, then 0.

    Returns a float64 tensor of shape ``[num_steps + 1]``.
    """
    if num_steps < 1:
        raise GenlabError(f"--sampling-steps must be at least 1, got {num_steps}")
    if not (math.isfinite(sigma_min) and math.isfinite(sigma_max) and 0 < sigma_min < sigma_max):
        raise GenlabError(f"need finite noise levels 0 < sigma_min < sigma_max, got {sigma_min} and {sigma_max}")
    ramp = torch.linspace(0, 1, num_steps, dtype=torch.float64) if num_steps > 1 else torch.zeros(1, dtype=torch.float64)
    inv_rho = 1 / rho
    sigmas = (sigma_max**inv_rho + ramp * (sigma_min**inv_rho - sigma_max**inv_rho)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def sample(
    denoiser: Denoiser, noise: Tensor, sigmas: Tensor, method: str = "heun", churn: float = 0.0,
    churn_sigma_range: tuple[float, float] = (0.0, math.inf), churn_noise: float = 1.0,
    generator: torch.Generator | None = None, progress: bool = False,
    callback: Callable[[int, Tensor], None] | None = None, **cond,
) -> Tensor:
    """Solve the probability-flow ODE (optionally with EDM's stochastic churn).

    Args:
        denoiser: ``denoiser(x, sigma [B], **cond) -> x0_hat``.
        noise: unit Gaussian noise ``[B, ...]``; the start is ``noise * sigmas[0]``.
        sigmas: decreasing noise levels ending in 0, e.g. :func:`karras_sigmas`.
        method: ``"heun"`` (2nd order; 2N−1 network calls for N levels) or ``"euler"`` (N calls).
        churn: EDM's S_churn; 0 gives the deterministic ODE sampler.
        churn_sigma_range: (S_tmin, S_tmax), the σ range where churn is applied.
        churn_noise: EDM's S_noise.
        generator: RNG for the churn noise.
        progress: show a progress bar.
        callback: called as ``callback(i, x)`` with the state at ``sigmas[i]`` for every level,
            ``i = 0 … N`` (float64; e.g. to record trajectories).
        cond: passed to every denoiser call (e.g. ``class_labels``).

    Returns:
        The samples, shaped like ``noise``.
    """
    if method not in SAMPLERS:
        raise GenlabError(f"unknown sampler {method!r}; choose one of {', '.join(SAMPLERS)}")
    if churn < 0 or not math.isfinite(churn):
        raise GenlabError(f"churn must be a finite number >= 0, got {churn}")
    sigmas = sigmas.to(torch.float64)
    num_steps = len(sigmas) - 1
    x = noise.to(torch.float64) * sigmas[0]
    gamma_max = min(churn / num_steps, math.sqrt(2) - 1)

    def evaluate(x_now: Tensor, sigma: Tensor) -> Tensor:
        sigma_batch = sigma.to(torch.float32).expand(x_now.shape[0]).to(noise.device)
        return denoiser(x_now.to(noise.dtype), sigma_batch, **cond).to(torch.float64)

    for i in tqdm(range(num_steps), desc=f"{method} sampling", disable=not progress, leave=False):
        if callback is not None:
            callback(i, x)
        sigma_cur, sigma_next = sigmas[i], sigmas[i + 1]
        in_range = churn_sigma_range[0] <= sigma_cur <= churn_sigma_range[1]
        gamma = gamma_max if (churn > 0 and in_range) else 0.0
        sigma_hat = sigma_cur * (1 + gamma)
        if gamma > 0:
            extra = torch.randn(x.shape, generator=generator, device=x.device, dtype=torch.float32)
            x = x + (sigma_hat**2 - sigma_cur**2).sqrt() * churn_noise * extra.to(torch.float64)
        slope = (x - evaluate(x, sigma_hat)) / sigma_hat
        x_next = x + (sigma_next - sigma_hat) * slope
        if method == "heun" and sigma_next > 0:
            slope_next = (x_next - evaluate(x_next, sigma_next)) / sigma_next
            x_next = x + (sigma_next - sigma_hat) * (slope + slope_next) / 2
        x = x_next
    if callback is not None:
        callback(num_steps, x)
    return x.to(noise.dtype)


def network_evaluations(num_steps: int, method: str) -> int:
    """Number of denoiser calls (NFE) of :func:`sample` with ``num_steps`` noise levels."""
    return 2 * num_steps - 1 if method == "heun" else num_steps


def _expand(sigma: Tensor, like: Tensor) -> Tensor:
    """Reshape ``sigma [B]`` to ``[B, 1, 1, ...]`` to broadcast against ``like``."""
    return sigma.reshape(-1, *([1] * (like.dim() - 1)))
