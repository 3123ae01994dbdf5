"""Sampling for alignment: core's ancestral sampler, with DDPO's trajectories and log-probabilities.

Both methods sample with :func:`genlab.core.edm.sample_ancestral` (DDIM with stochasticity ``η`` in
EDM form): VADER back-propagates the reward only through the last ``K`` steps (``grad_steps``), so
memory does not grow with the number of steps. Each step is a Gaussian ``N(mean, σ_up²)``, which
gives DDPO its per-step log-probabilities (steps with ``σ_up = 0``, such as the last one into
``σ' = 0``, are deterministic and carry none).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor

from genlab.core.edm import ancestral_mean, ancestral_scales, ancestral_steps, sample_ancestral
from genlab.errors import GenlabError

DenoiseFn = Callable[[Tensor, Tensor], Tensor]


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
    return gaussian_log_prob(x_next, ancestral_mean(x, denoised.to(x.dtype), sigma, sigma_down), sigma_up)


def sample_for_reward(
    denoise: DenoiseFn, noise: Tensor, sigmas: Tensor, eta: float = 1.0, grad_steps: int = 1,
    generator: torch.Generator | None = None, record_trajectory: bool = False, autocast: Callable[[], object] = nullcontext,
    step_noise: Tensor | None = None,
) -> tuple[Tensor, Trajectory | None]:
    """Sample ``x0`` with :func:`~genlab.core.edm.sample_ancestral`, a graph through only the last ``grad_steps`` steps.

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

    def denoise_call(x: Tensor, sigma: Tensor) -> Tensor:
        with autocast():
            return denoise(x, sigma)

    options = {"generator": generator, "step_noise": step_noise, "grad_steps": grad_steps}
    if not record_trajectory:
        return sample_ancestral(denoise_call, noise, sigmas, eta, **options), None
    recorded = []
    for step in ancestral_steps(denoise_call, noise, sigmas, eta, **options):
        if float(step.sigma_up) > 0:
            x, x_next = step.x.detach(), step.x_next.detach()
            recorded.append((step.index, x, x_next, gaussian_log_prob(x_next, step.mean.detach(), step.sigma_up)))
    trajectory = Trajectory(
        step_indices=[r[0] for r in recorded], states=[r[1] for r in recorded],
        next_states=[r[2] for r in recorded],
        log_probs=torch.stack([r[3] for r in recorded]) if recorded else noise.new_zeros(0, noise.shape[0]),
    )
    return step.x_next, trajectory
