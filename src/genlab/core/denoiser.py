"""The denoiser interface, ``denoiser(x, sigma, **cond) -> x0_hat``, and its two main makers.

* :class:`EDMDenoiser` turns a raw network ``F(x_in, noise_labels, **cond)`` (genlab's nets) into
  a denoiser with EDM preconditioning.
* :class:`DiffusersDenoiser` turns a diffusers ε-, v- or x0-prediction model plus its discrete
  variance-preserving scheduler into a denoiser, so genlab's samplers and guidance run on real
  diffusers models. In VP form ``x_t = sqrt(ᾱ_t)·x0 + sqrt(1−ᾱ_t)·ε``, which is the EDM sample
  ``x = x0 + σ·ε`` scaled by ``sqrt(ᾱ_t)``, with ``σ_t = sqrt((1 − ᾱ_t) / ᾱ_t)``
  (:func:`vp_sigmas`, the one place genlab turns a scheduler's ᾱ into σ).

All denoisers take ``x [B, ...]`` and ``sigma [B]`` (float) and return ``x0_hat`` shaped like ``x``;
each exposes ``sigma_min`` / ``sigma_max``, the noise-level range it was trained on, and
``time_fraction(sigma)``, the diffusion time in ``[0, 1]`` (0 = clean, 1 = pure noise) used by
guidance intervals and schedules.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from genlab.core.edm import EDMSchedule, append_dims, preconditioning
from genlab.errors import GenlabError


class EDMDenoiser(nn.Module):
    """EDM-preconditioned wrapper: ``D(x, σ) = c_skip·x + c_out·F(c_in·x, ln(σ)/4, **cond)``.

    Args:
        net: raw network called as ``net(x_in [B,...], noise_labels [B], **cond)``.
        schedule: noise settings; ``sigma_data`` sets the preconditioning.
    """

    def __init__(self, net: nn.Module, schedule: EDMSchedule = EDMSchedule()):
        super().__init__()
        self.net = net
        self.schedule = schedule
        self.sigma_min = schedule.sigma_min
        self.sigma_max = schedule.sigma_max

    def time_fraction(self, sigma: Tensor) -> Tensor:
        """Diffusion time in [0, 1]: ``ln σ`` placed linearly between ``ln σ_min`` and ``ln σ_max``."""
        low, high = torch.tensor([self.sigma_min, self.sigma_max], dtype=torch.float64).log()
        return ((sigma.to(torch.float64).log() - low) / (high - low)).clamp(0, 1)

    def forward(self, x: Tensor, sigma: Tensor, **cond) -> Tensor:
        c_skip, c_out, c_in, c_noise = preconditioning(sigma.to(torch.float32), self.schedule.sigma_data)
        raw = self.net(append_dims(c_in, x).to(x.dtype) * x, c_noise, **cond)
        return append_dims(c_skip, x) * x + append_dims(c_out, x) * raw.to(torch.float32)


PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
ALPHA_CUMPROD_FLOOR = 2.0**-24


def vp_sigmas(alphas_cumprod) -> Tensor:
    """EDM noise levels ``σ_t = sqrt((1 − ᾱ_t) / ᾱ_t)`` of a VP schedule's ``alphas_cumprod [T]``; float64 ``[T]``.

    A zero-terminal-SNR schedule (``rescale_betas_zero_snr=True``, CogVideoX's) ends in ``ᾱ = 0``,
    i.e. ``σ = ∞``. Like diffusers' Euler and DPM-Solver schedulers, which set that last ``ᾱ`` to
    2⁻²⁴ (fp16's smallest subnormal), ``ᾱ`` is floored at :data:`ALPHA_CUMPROD_FLOOR`, so the
    largest σ is ``sqrt(2²⁴ − 1) ≈ 4096``. Any earlier ``ᾱ`` below the floor (the last few of a
    rescaled 1000-step schedule) is raised to it too, which keeps σ non-decreasing in ``t``.
    """
    alphas = torch.as_tensor(alphas_cumprod, dtype=torch.float64).clamp(min=ALPHA_CUMPROD_FLOOR)
    return ((1 - alphas) / alphas).sqrt()


class DiffusersDenoiser(nn.Module):
    """A diffusers model + discrete VP scheduler as an EDM denoiser (σ ↔ timestep by interpolation).

    Args:
        model: a diffusers model called as ``model(x_t, timestep=[B], **cond)``; its output (or
            ``.sample``) is ε, v or x0 per ``prediction_type``. Outputs with twice the input's
            channels (learned variance, as in DiT) keep the first half.
        scheduler: any diffusers scheduler with ``alphas_cumprod`` (DDPM, DDIM, Euler, ...).
        prediction_type: defaults to ``scheduler.config.prediction_type``.
        integer_timesteps: round timesteps to integers (for models with learned timestep tables).
    """

    def __init__(self, model: nn.Module, scheduler, prediction_type: str | None = None,
                 integer_timesteps: bool = False):
        super().__init__()
        if not hasattr(scheduler, "alphas_cumprod"):
            raise GenlabError(
                f"scheduler {type(scheduler).__name__} has no alphas_cumprod; "
                "DiffusersDenoiser needs a discrete variance-preserving scheduler (DDPM, DDIM, Euler, ...)"
            )
        self.model = model
        self.prediction_type = prediction_type or scheduler.config.prediction_type
        if self.prediction_type not in PREDICTION_TYPES:
            raise GenlabError(
                f"prediction_type {self.prediction_type!r} is not supported; expected one of {PREDICTION_TYPES}"
            )
        self.integer_timesteps = integer_timesteps
        self.register_buffer("log_sigmas", vp_sigmas(scheduler.alphas_cumprod).log(), persistent=False)
        # σ → t inverts the table through the last timestep of each run of equal σ (the floored tail
        # of a zero-terminal-SNR schedule is such a run): sigma_max maps to the last timestep, as in diffusers.
        log_sigmas = self.log_sigmas
        last_of_run = torch.cat([log_sigmas[1:] > log_sigmas[:-1], log_sigmas.new_ones(1, dtype=torch.bool)])
        timesteps = torch.arange(len(log_sigmas), dtype=torch.float64, device=log_sigmas.device)
        self.register_buffer("knot_log_sigmas", log_sigmas[last_of_run], persistent=False)
        self.register_buffer("knot_timesteps", timesteps[last_of_run], persistent=False)
        self.sigma_min = float(self.log_sigmas[0].exp())
        self.sigma_max = float(self.log_sigmas[-1].exp())

    def timestep_to_sigma(self, timestep: Tensor) -> Tensor:
        """σ for (possibly fractional) timesteps, interpolating ``log σ`` linearly."""
        t = timestep.to(torch.float64).clamp(0, len(self.log_sigmas) - 1)
        low = t.floor().long().clamp(max=len(self.log_sigmas) - 2)
        frac = t - low
        log_sigma = (1 - frac) * self.log_sigmas[low] + frac * self.log_sigmas[low + 1]
        return log_sigma.exp()

    def sigma_to_timestep(self, sigma: Tensor) -> Tensor:
        """Fractional timestep whose σ is ``sigma`` (inverse of :meth:`timestep_to_sigma`; ``sigma_max``
        gives the last timestep)."""
        knots, timesteps = self.knot_log_sigmas, self.knot_timesteps
        log_sigma = sigma.to(torch.float64).log().clamp(knots[0], knots[-1])
        high = torch.searchsorted(knots, log_sigma).clamp(1, len(knots) - 1)
        low = high - 1
        fraction = (log_sigma - knots[low]) / (knots[high] - knots[low])
        t = timesteps[low] + fraction * (timesteps[high] - timesteps[low])
        return t.round() if self.integer_timesteps else t

    def time_fraction(self, sigma: Tensor) -> Tensor:
        """Diffusion time in [0, 1]: the (fractional) timestep divided by the last timestep."""
        return self.sigma_to_timestep(sigma) / (len(self.log_sigmas) - 1)

    def forward(self, x: Tensor, sigma: Tensor, **cond) -> Tensor:
        sigma = sigma.to(torch.float32).to(x.device)
        scale = append_dims(1 / (1 + sigma**2).sqrt(), x)
        x_t = (x * scale).to(self.model.dtype if hasattr(self.model, "dtype") else x.dtype)
        timestep = self.sigma_to_timestep(sigma).to(torch.float32)
        output = self.model(x_t, timestep=timestep, **cond)
        output = getattr(output, "sample", output)
        output = (output[0] if isinstance(output, tuple) else output).to(torch.float32)
        if output.shape[1] == 2 * x.shape[1]:
            output = output[:, : x.shape[1]]
        if self.prediction_type == "epsilon":
            return x - append_dims(sigma, x) * output
        if self.prediction_type == "v_prediction":
            return scale * (x * scale - append_dims(sigma, x) * output)
        return output
