"""EDM diffusion math (Karras et al., 2022): preconditioning, training noise levels, loss, samplers.

The samplers share one signature, ``sampler(denoiser, noise, sigmas, ..., generator, progress,
callback, **cond)``: :func:`sample` solves the probability-flow ODE (Euler or Heun, optionally with
EDM's churn) and :func:`sample_ancestral` takes DDIM's stochastic (η) steps, optionally keeping the
graph of only the last K steps.

Conventions: data ``x0`` has standard deviation about ``sigma_data``; a noisy sample at noise
level ``sigma`` is ``x = x0 + sigma * n`` with ``n ~ N(0, I)``. A *denoiser* is any callable
``denoiser(x, sigma, **cond) -> x0_hat`` with ``sigma`` a tensor of shape ``[B]`` (see
:mod:`genlab.core.denoiser`). The probability-flow ODE is ``dx/dsigma = (x - D(x, sigma)) / sigma``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
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


def append_dims(values: Tensor, like: Tensor) -> Tensor:
    """Per-sample ``values [B]`` reshaped to ``[B, 1, 1, ...]``, to broadcast against ``like [B, ...]``."""
    return values.reshape(-1, *([1] * (like.dim() - 1)))


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
    denoised = denoiser(x0 + append_dims(sigma, x0) * noise, sigma, **cond)
    squared_error = (denoised.float() - x0.float()).pow(2).flatten(1).mean(1)
    return loss_weight(sigma, schedule.sigma_data) * squared_error


@torch.no_grad()
def held_out_loss(denoiser: Denoiser, x0: Tensor, sigmas: Sequence[float], seed: int = 0, batch_size: int = 64,
                  sigma_data: float = EDMSchedule().sigma_data, **cond: Tensor) -> Tensor:
    """The λ-weighted EDM loss of ``denoiser`` on held-out ``x0 [N, ...]`` at each fixed noise level:
    ``[len(sigmas)]``, the mean over the N samples.

    The noise comes from one generator seeded by ``seed``, so two models scored with the same
    arguments see exactly the same noisy inputs; per-sample conditions ``cond`` (``[N, ...]``)
    are batched with ``x0``. A validation loss for comparing models and training recipes.
    """
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for sigma in sigmas:
        total, noises = 0.0, torch.randn(x0.shape, generator=generator).to(x0)
        for start in range(0, len(x0), batch_size):
            clean, noise = x0[start : start + batch_size], noises[start : start + batch_size]
            level = torch.full((len(clean),), float(sigma), dtype=clean.dtype, device=clean.device)
            chunk = {key: value[start : start + batch_size] for key, value in cond.items()}
            denoised = denoiser(clean + sigma * noise, level, **chunk)
            total += float((denoised.float() - clean.float()).pow(2).flatten(1).mean(1).sum())
        losses.append(float(loss_weight(torch.tensor(float(sigma)), sigma_data)) * total / len(x0))
    return torch.tensor(losses)


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


def ancestral_scales(sigma: Tensor, sigma_next: Tensor, eta: float) -> tuple[Tensor, Tensor]:
    """``(σ_down, σ_up)`` of an ancestral step from ``sigma`` to ``sigma_next`` (0-d tensors).

    ``σ_up = η·sqrt(σ'²(σ² − σ'²)/σ²)`` and ``σ_down = sqrt(σ'² − σ_up²)``, so the step keeps the
    marginal noise level: ``σ_down² + σ_up² = σ'²``.
    """
    variance_up = sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2
    sigma_up = eta * variance_up.clamp_min(0).sqrt()
    sigma_down = (sigma_next**2 - sigma_up**2).clamp_min(0).sqrt()
    return sigma_down, sigma_up


def ancestral_mean(x: Tensor, denoised: Tensor, sigma: Tensor, sigma_down: Tensor) -> Tensor:
    """Mean of an ancestral step's Gaussian, the Euler step to ``σ_down``: ``x + (σ_down − σ)·(x − D)/σ``."""
    return x + (sigma_down - sigma) * (x - denoised) / sigma


@dataclass
class AncestralStep:
    """Step ``index`` (``σ_i → σ_{i+1}``) of :func:`ancestral_steps`: ``x_next = mean + σ_up·z``, ``z ~ N(0, I)``.

    ``x``, ``mean`` and ``x_next`` are ``[B, ...]`` float32; ``sigma_up`` is 0-d (0: a deterministic step).
    """

    index: int
    x: Tensor
    mean: Tensor
    sigma_up: Tensor
    x_next: Tensor


def ancestral_steps(
    denoiser: Denoiser, noise: Tensor, sigmas: Tensor, eta: float = 1.0, generator: torch.Generator | None = None,
    progress: bool = False, step_noise: Tensor | None = None, grad_steps: int | None = None, **cond,
) -> Iterator[AncestralStep]:
    """The steps of :func:`sample_ancestral` (same arguments), one :class:`AncestralStep` each, in order."""
    num_steps = len(sigmas) - 1
    if grad_steps is not None and not 0 <= grad_steps <= num_steps:
        raise GenlabError(f"K = {grad_steps} back-propagated steps is more than the {num_steps} sampling steps; "
                          f"use --k between 1 and {num_steps}, or more --sampling-steps")
    first_with_graph = 0 if grad_steps is None else num_steps - grad_steps
    sigmas = sigmas.to(device=noise.device, dtype=torch.float32)
    x = noise.to(torch.float32) * sigmas[0]
    if step_noise is None:
        step_noise = torch.randn((num_steps, *noise.shape), generator=generator, dtype=torch.float32)
    step_noise = step_noise.to(device=noise.device, dtype=torch.float32)
    for i in tqdm(range(num_steps), desc=f"ancestral sampling (eta {eta})", disable=not progress, leave=False):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        sigma_down, sigma_up = ancestral_scales(sigma, sigma_next, eta)
        with torch.set_grad_enabled(i >= first_with_graph and torch.is_grad_enabled()):
            denoised = denoiser(x, sigma.expand(x.shape[0]), **cond).to(torch.float32)
            mean = ancestral_mean(x, denoised, sigma, sigma_down)
            x_next = mean + sigma_up * step_noise[i]
        yield AncestralStep(i, x, mean, sigma_up, x_next)
        x = x_next


def sample_ancestral(
    denoiser: Denoiser, noise: Tensor, sigmas: Tensor, eta: float = 1.0, generator: torch.Generator | None = None,
    progress: bool = False, callback: Callable[[int, Tensor], None] | None = None, step_noise: Tensor | None = None,
    grad_steps: int | None = None, **cond,
) -> Tensor:
    """Ancestral sampling: DDIM with stochasticity ``η`` written in EDM form, in float32.

    Each step from ``σ`` to ``σ'`` draws ``x' ~ N(ancestral_mean(x, D(x, σ), σ, σ_down), σ_up²·I)``
    (:func:`ancestral_scales`); ``η = 0`` is the deterministic Euler (DDIM) step and ``η = 1`` the
    DDPM posterior step.

    Args:
        denoiser: ``denoiser(x, sigma [B], **cond) -> x0_hat``.
        noise: unit Gaussian noise ``[B, ...]``; the start is ``noise * sigmas[0]``.
        sigmas: decreasing noise levels ``[N + 1]`` ending in 0 (``N >= 1``).
        eta: the stochasticity η of every step.
        generator: RNG of the per-step noise ``z`` (drawn at the start, ``[N, B, ...]``, on the CPU).
        progress: show a progress bar.
        callback: called as ``callback(i, x)`` with the state at ``sigmas[i]`` for every level, ``i = 0 … N``.
        step_noise: the per-step noise ``z [N, B, ...]``; None draws it from ``generator``.
        grad_steps: K: only the last K steps record a graph for back-propagation (VADER's truncation;
            the earlier ones run without, so memory does not grow with N); None: every step, as the
            grad mode allows.
        cond: passed to every denoiser call.

    Returns:
        The samples ``[B, ...]``, float32.
    """
    x = noise
    for step in ancestral_steps(denoiser, noise, sigmas, eta, generator, progress, step_noise, grad_steps, **cond):
        if callback is not None:
            callback(step.index, step.x)
        x = step.x_next
    if callback is not None:
        callback(len(sigmas) - 1, x)
    return x


def network_evaluations(num_steps: int, method: str) -> int:
    """Number of denoiser calls (NFE) of :func:`sample` with ``num_steps`` noise levels."""
    return 2 * num_steps - 1 if method == "heun" else num_steps

