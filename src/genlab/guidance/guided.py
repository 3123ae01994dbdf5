"""CFG, ICG and TSG as a denoiser that wraps a denoiser (combinable, one batched model call).

With the conditional output ``D_c = D(x, σ, y)`` and one guidance output ``D_g`` per term,

    D̂ = D_c + Σ_terms (w_term(t) − 1) · (D_c − D_g)

which for a single term is the familiar ``D_g + w·(D_c − D_g)``: ``w = 1`` gives ``D_c`` and
``w = 0`` gives ``D_g``. The guidance branches are

* ``cfg``: the null condition (needs a model trained with condition dropout);
* ``icg``: an independent condition ŷ (random class, random tokens, or Gaussian), fresh each step;
* ``tsg``: the real condition, with the time-step embedding perturbed (see :mod:`.tsg`).

A term is active only inside its interval (in diffusion time ``t ∈ [0, 1]`` or in σ); its
strength follows a constant or power schedule ``(w − 1)·t^p``. All active branches and the
conditional one go through the model as one batch.
"""

from __future__ import annotations

import math
from contextlib import ExitStack
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from genlab.errors import GenlabError
from genlab.guidance import GUIDANCE_CHOICES
from genlab.guidance.conditions import ConditionMaker, null_class, random_class
from genlab.guidance.tsg import perturbed_time_embedding, time_embedding_modules

METHODS = ("cfg", "icg", "tsg")
SCHEDULES = ("constant", "power")
INTERVAL_UNITS = ("t", "sigma")


@dataclass(frozen=True)
class GuidanceTerm:
    """One guidance method and its settings.

    Attributes:
        method: ``"cfg"``, ``"icg"`` or ``"tsg"``.
        scale: the guidance scale w ≥ 0 (1 = no guidance).
        interval: active range ``(low, high)`` in ``interval_unit``.
        interval_unit: ``"t"`` (diffusion time in [0, 1]) or ``"sigma"``.
        schedule: ``"constant"`` or ``"power"`` (strength ``(w − 1)·t^schedule_exponent``).
        schedule_exponent: exponent of the power schedule.
        noise_scale: TSG's s (noise added to the time embedding, in units of its std).
        noise_exponent: TSG's α: the noise is ``s·t^α`` (α = 0: constant).
        first_blocks: TSG only in the first N blocks (models with per-block time embeddings).
    """

    method: str
    scale: float
    interval: tuple[float, float] = (0.0, math.inf)
    interval_unit: str = "t"
    schedule: str = "constant"
    schedule_exponent: float = 1.0
    noise_scale: float = 1.0
    noise_exponent: float = 0.0
    first_blocks: int | None = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise GenlabError(f"unknown guidance method {self.method!r}; choose from {', '.join(METHODS)}")
        for name in ("scale", "noise_scale", "schedule_exponent", "noise_exponent"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise GenlabError(f"{self.method} {name} must be a finite number >= 0, got {value}")
        if self.schedule not in SCHEDULES:
            raise GenlabError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.interval_unit not in INTERVAL_UNITS:
            raise GenlabError(f"interval_unit must be one of {INTERVAL_UNITS}, got {self.interval_unit!r}")
        low, high = self.interval
        if not (low <= high) or math.isnan(low) or math.isnan(high):
            raise GenlabError(f"guidance interval must be (low, high) with low <= high, got {self.interval}")

    def strength(self, t: Tensor, sigma: Tensor) -> Tensor:
        """``w(t) − 1`` per row; 0 outside the interval."""
        where = t if self.interval_unit == "t" else sigma.to(t.dtype)
        inside = (where >= self.interval[0]) & (where <= self.interval[1])
        shape = t.pow(self.schedule_exponent) if self.schedule == "power" else torch.ones_like(t)
        return torch.where(inside, (self.scale - 1) * shape, torch.zeros_like(t))

    def tsg_noise(self, t: Tensor) -> Tensor:
        """TSG's noise scale ``s·t^α`` per row."""
        return self.noise_scale * t.pow(self.noise_exponent)


class GuidedDenoiser(nn.Module):
    """A guided denoiser ``D̂(x, σ, **cond)`` around ``denoiser`` (genlab or diffusers-adapted).

    Args:
        denoiser: ``denoiser(x, sigma, **cond) -> x0`` with a ``time_fraction(sigma)`` method.
        terms: the guidance terms (e.g. ICG and TSG together).
        condition_key: the keyword that carries the condition (``class_labels`` for class models,
            ``encoder_hidden_states`` for text models).
        null_condition: CFG's maker (see :mod:`.conditions`); needed for ``cfg`` terms.
        independent_condition: ICG's maker; needed for ``icg`` terms.
        num_classes: if given, real class ids must lie in ``[0, num_classes)``.
    """

    def __init__(self, denoiser: nn.Module, terms: list[GuidanceTerm], condition_key: str = "class_labels",
                 null_condition: ConditionMaker | None = None, independent_condition: ConditionMaker | None = None,
                 num_classes: int | None = None):
        super().__init__()
        self.denoiser, self.terms, self.condition_key = denoiser, list(terms), condition_key
        self.makers = {"cfg": null_condition, "icg": independent_condition}
        self.num_classes = num_classes
        for term in self.terms:
            if term.method in self.makers and self.makers[term.method] is None:
                what = "null_condition" if term.method == "cfg" else "independent_condition"
                raise GenlabError(f"{term.method} guidance needs a {what}")
        self.tsg_modules = {
            i: time_embedding_modules(denoiser, term.first_blocks)
            for i, term in enumerate(self.terms) if term.method == "tsg"
        }
        self.sigma_min = getattr(denoiser, "sigma_min", None)
        self.sigma_max = getattr(denoiser, "sigma_max", None)

    def time_fraction(self, sigma: Tensor) -> Tensor:
        return self.denoiser.time_fraction(sigma)

    def _check_condition(self, cond: dict) -> Tensor | None:
        condition = cond.get(self.condition_key)
        if condition is None and any(t.method in ("cfg", "icg") for t in self.terms):
            raise GenlabError(f"CFG and ICG need a condition, but the model was called without {self.condition_key}")
        if condition is not None and self.num_classes is not None and condition.numel():
            low, high = int(condition.min()), int(condition.max())
            if low < 0 or high >= self.num_classes:
                raise GenlabError(f"class id out of range: got {low if low < 0 else high}, "
                                  f"expected 0..{self.num_classes - 1}")
        return condition

    def forward(self, x: Tensor, sigma: Tensor, **cond) -> Tensor:
        condition = self._check_condition(cond)
        t = self.time_fraction(sigma).to(torch.float32)
        strengths = [term.strength(t, sigma) for term in self.terms]
        active = [i for i, s in enumerate(strengths) if bool((s != 0).any())]
        if not active:
            return self.denoiser(x, sigma, **cond)
        branches = [condition]
        for i in active:
            method = self.terms[i].method
            branches.append(self.makers[method](condition) if method in self.makers else condition)
        batch, count = x.shape[0], len(branches)
        call = {k: _repeat(v, count) for k, v in cond.items() if k != self.condition_key}
        if condition is not None:
            call[self.condition_key] = torch.cat(branches)
        with ExitStack() as hooks:
            for branch, i in enumerate(active, start=1):
                if self.terms[i].method == "tsg":
                    rows = slice(branch * batch, (branch + 1) * batch)
                    hooks.enter_context(perturbed_time_embedding(self.tsg_modules[i], rows, self.terms[i].tsg_noise(t)))
            outputs = self.denoiser(_repeat(x, count), _repeat(sigma, count), **call).chunk(count)
        guided = outputs[0]
        for i, output in zip(active, outputs[1:], strict=True):
            weight = strengths[i].to(guided.dtype).reshape(-1, *([1] * (guided.dim() - 1)))
            guided = guided + weight * (outputs[0] - output)
        return guided


def _repeat(value, count: int):
    """Stack ``count`` copies of a batch tensor along dim 0 (non-tensors pass through)."""
    return torch.cat([value] * count) if isinstance(value, Tensor) and value.dim() > 0 else value


def guide_class_model(denoiser: nn.Module, num_classes: int, terms: list[GuidanceTerm],
                      null_id: int | None = None) -> GuidedDenoiser:
    """Guidance for a class-conditional model (genlab's, or a diffusers DiT through the adapter).

    CFG's null label is ``null_id`` (default ``num_classes``, genlab's convention); ICG draws
    uniformly random classes. An unconditional model (``num_classes = 0``) accepts TSG only.
    """
    needs_classes = sorted({t.method for t in terms if t.method in ("cfg", "icg")})
    if needs_classes and not num_classes:
        raise GenlabError(f"{'/'.join(needs_classes)} guidance needs a class-conditional model; "
                          "this model is unconditional (use tsg)")
    return GuidedDenoiser(
        denoiser, terms, "class_labels",
        null_condition=null_class(num_classes if null_id is None else null_id) if num_classes else None,
        independent_condition=random_class(num_classes) if num_classes else None,
        num_classes=num_classes or None,
    )


def parse_guidance(name: str, scale: float, tsg_noise: float = 2.0, tsg_alpha: float = 1.0,
                   interval: tuple[float, float] = (0.0, 1.0)) -> list[GuidanceTerm]:
    """Terms for a CLI choice such as ``"icg+tsg"`` (every term gets ``scale`` and ``interval`` in t)."""
    if name not in GUIDANCE_CHOICES:
        raise GenlabError(f"--guidance must be one of {', '.join(GUIDANCE_CHOICES)}, got {name!r}")
    if name == "none":
        return []
    return [GuidanceTerm(method, scale, interval, noise_scale=tsg_noise, noise_exponent=tsg_alpha)
            for method in name.split("+")]
