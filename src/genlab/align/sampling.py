"""The sampler used for alignment: ancestral EDM steps with truncated back-propagation.

One step from noise level ``σ`` to ``σ'`` (a DDIM step with stochasticity ``η`` written in EDM form):

    D = denoiser(x, σ),   σ_up = η·sqrt(σ'²(σ² − σ'²)/σ²),   σ_down = sqrt(σ'² − σ_up²),
    mean = x + (σ_down − σ)·(x − D)/σ,   x' = mean + σ_up·z,  z ~ N(0, I).

``η = 0`` is the deterministic DDIM/Euler step; ``η = 1`` is the DDPM posterior step. The step is a
Gaussian ``N(mean, σ_up²)``, which gives DDPO its per-step log-probabilities (steps with
``σ_up = 0``, such as the last one into ``σ' = 0``, are deterministic and carry none).

VADER back-propagates the reward only through the last ``K`` steps: the earlier steps run without
a graph, so memory does not grow with the number of steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor

from genlab.errors import GenlabError

DenoiseFn = Callable[[Tensor, Tensor], Tensor]


def ancestral_scales(sigma: Tensor, sigma_next: Tensor, eta: float) -> tuple[Tensor, Tensor]:
    """``(σ_down, σ_up)`` of one step from ``sigma`` to ``sigma_next`` (0-d tensors)."""
    variance_up = sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2
    sigma_up = eta * variance_up.clamp_min(0).sqrt()
    sigma_down = (sigma_next**2 - sigma_up**2).clamp_min(0).sqrt()
    return sigma_down, sigma_up


def step_mean(x: Tensor, denoised: Tensor, sigma: Tensor, sigma_down: Tensor) -> Tensor:
    """Mean of the step's Gaussian: ``x + (σ_down − σ)·(x − D)/σ``."""
    return x + (sigma_down - sigma) * (x - denoised) / sigma


def gaussian_log_prob(value: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """``log N(value; mean, std² I)`` summed over all but the batch dimension: ``[B]``."""
    squared = ((value - mean) / std).pow(2).flatten(1).sum(1)
    dims = value[0].numel()
    return -0.5 * squared - dims * (std.log() + 0.5 * math.log(2 * math.pi))


@dataclass
class Trajectory:
    """What DDPO needs from a sampling run: the states before and after each stochastic step.

    ``states[j]`` and ``next_states[j]`` are ``[B, ...]`` (detached) at step ``step_indices[j]``;
    ``log_probs`` is ``[J, B]``, the log-probability of each transition under the sampler.
    """

    step_indices: list[int]
    states: list[Tensor]
    next_states: list[Tensor]
    log_probs: Tensor


def stochastic_steps(sigmas: Tensor, eta: float) -> list[int]:
    """Indices ``i`` of the steps ``σ_i → σ_{i+1}`` that add noise (``σ_up > 0``)."""
    return [i for i in range(len(sigmas) - 1)
            if float(ancestral_scales(sigmas[i], sigmas[i + 1], eta)[1]) > 0]


def step_log_prob(denoise: DenoiseFn, x: Tensor, x_next: Tensor, sigmas: Tensor, index: int, eta: float) -> Tensor:
    """Log-probability ``[B]`` of the transition ``x → x_next`` at step ``index`` under the current model."""
    sigma, sigma_next = sigmas[index], sigmas[index + 1]
    sigma_down, sigma_up = ancestral_scales(sigma, sigma_next, eta)
    if float(sigma_up) <= 0:
        raise GenlabError(f"step {index} is deterministic (σ_up = 0) and has no log-probability")
    denoised = denoise(x, sigma.to(torch.float32).expand(x.shape[0]))
    return gaussian_log_prob(x_next, step_mean(x, denoised.to(x.dtype), sigma, sigma_down), sigma_up)


def sample_for_reward(
    denoise: DenoiseFn, noise: Tensor, sigmas: Tensor, eta: float = 1.0, grad_steps: int = 1,
    generator: torch.Generator | None = None, record_trajectory: bool = False, autocast: Callable[[], object] = nullcontext,
    step_noise: Tensor | None = None,
) -> tuple[Tensor, Trajectory | None]:
    """Sample ``x0`` with a graph through only the last ``grad_steps`` steps.

    Args:
        denoise: ``denoise(x [B, ...], sigma [B]) -> x0_hat`` (conditions already bound).
        noise: unit Gaussian ``[B, ...]``; the start is ``noise · σ_0``.
        sigmas: decreasing levels ``[N + 1]`` ending in 0.
        eta: stochasticity of each step (0 = DDIM, 1 = DDPM).
        grad_steps: K, the number of final steps recorded for back-propagation (0: none, as in DDPO).
        generator: RNG for the per-step noise ``z``.
        record_trajectory: also return the :class:`Trajectory` of the stochastic steps.
        autocast: a context factory for the denoiser calls (mixed precision).
        step_noise: the per-step noise ``z`` ``[N, B, ...]``; None draws it from ``generator``.

    Returns:
        ``(x0 [B, ...] float32, trajectory or None)``. ``x0`` requires grad iff ``grad_steps > 0``
        and the denoiser has trainable parameters.
    """
    steps = len(sigmas) - 1
    if not 0 <= grad_steps <= steps:
        raise GenlabError(f"K = {grad_steps} back-propagated steps is more than the {steps} sampling steps; "
                          f"use --k between 1 and {steps}, or more --sampling-steps")
    sigmas = sigmas.to(device=noise.device, dtype=torch.float32)
    x = noise.to(torch.float32) * sigmas[0]
    if step_noise is None:
        step_noise = torch.randn((steps, *noise.shape), generator=generator, dtype=torch.float32)
    step_noise = step_noise.to(device=noise.device, dtype=torch.float32)
    recorded: list[tuple[int, Tensor, Tensor, Tensor]] = []

    def denoise_call(x_now: Tensor, sigma: Tensor) -> Tensor:
        with autocast():
            return denoise(x_now, sigma.expand(x_now.shape[0])).to(torch.float32)

    for i in range(steps):
        with_grad = i >= steps - grad_steps and torch.is_grad_enabled()
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        sigma_down, sigma_up = ancestral_scales(sigma, sigma_next, eta)
        with torch.set_grad_enabled(with_grad):
            denoised = denoise_call(x, sigma)
            mean = step_mean(x, denoised, sigma, sigma_down)
            x_next = mean + sigma_up * step_noise[i]
        if record_trajectory and float(sigma_up) > 0:
            log_prob = gaussian_log_prob(x_next.detach(), mean.detach(), sigma_up)
            recorded.append((i, x.detach(), x_next.detach(), log_prob))
        x = x_next
    trajectory = None
    if record_trajectory:
        trajectory = Trajectory(
            step_indices=[r[0] for r in recorded], states=[r[1] for r in recorded],
            next_states=[r[2] for r in recorded],
            log_probs=torch.stack([r[3] for r in recorded]) if recorded else noise.new_zeros(0, noise.shape[0]),
        )
    return x, trajectory
