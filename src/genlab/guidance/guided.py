"""CFG, ICG and TSG as a denoiser that wraps a denoiser (combinable, one batched model call).

With the conditional output ``D_c = D(x, σ, y)`` and one guidance output ``D_g`` per term,

    D̂ = D_c + Σ_terms (w_term(t) − 1) · (D_c − D_g)

(:func:`genlab.core.cfg.guided_prediction`), which for a single term is the familiar ``D_g + w·(D_c − D_g)``: ``w = 1`` gives ``D_c`` and
``w = 0`` gives ``D_g``. The guidance branches are

* ``cfg``: the null condition (needs a model trained with condition dropout);
* ``icg``: an independent condition ŷ (random class, random tokens, or Gaussian), fresh each step;
* ``tsg``: the real condition, with the time-step embedding perturbed (see :mod:`.tsg`).

A term is active only inside its interval (in diffusion time ``t ∈ [0, 1]`` or in σ); its
strength follows a constant or power schedule ``(w − 1)·t^p``. All active branches and the
conditional one go through the model as one batch.

ICG's and TSG's draws come from the wrapper's own generator (:attr:`GuidedDenoiser.generator`),
seeded from ``seed`` at construction and again by :meth:`GuidedDenoiser.manual_seed`, which
:func:`genlab.base.image_model.generate_images` calls with its sampling seed; so a seeded run
gives the same images every time, whatever used torch's global RNG before.
"""

from __future__ import annotations

import math
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from genlab.core.cfg import ConditionMaker, guided_prediction, null_class, repeat_batch
from genlab.errors import GenlabError
from genlab.guidance import GUIDANCE_CHOICES
from genlab.guidance.conditions import random_class
from genlab.guidance.rng import call_maker, guidance_generator, guidance_seed
from genlab.guidance.tsg import perturbed_time_embedding, time_embedding_modules

if TYPE_CHECKING:
    from genlab.base.info import ImageModelInfo

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
        seed: seeds :attr:`generator`, the RNG of ICG's conditions and TSG's noise (see
            :meth:`manual_seed`); makers that take ``generator=`` are called with it.
    """

    def __init__(self, denoiser: nn.Module, terms: list[GuidanceTerm], condition_key: str = "class_labels",
                 null_condition: ConditionMaker | None = None, independent_condition: ConditionMaker | None = None,
                 num_classes: int | None = None, seed: int = 0):
        super().__init__()
        self.denoiser, self.terms, self.condition_key = denoiser, list(terms), condition_key
        self.generator = guidance_generator(seed)
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

    def manual_seed(self, seed: int) -> GuidedDenoiser:
        """Restart the guidance draws from ``seed`` (the sampling seed; mixed by
        :func:`~genlab.guidance.rng.guidance_seed` so they differ from the initial noise)."""
        self.generator.manual_seed(guidance_seed(seed))
        return self

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
            branches.append(call_maker(self.makers[method], condition, self.generator)
                            if method in self.makers else condition)
        batch, count = x.shape[0], len(branches)
        call = {k: repeat_batch(v, count) for k, v in cond.items() if k != self.condition_key}
        if condition is not None:
            call[self.condition_key] = torch.cat(branches)
        with ExitStack() as hooks:
            for branch, i in enumerate(active, start=1):
                if self.terms[i].method == "tsg":
                    rows = slice(branch * batch, (branch + 1) * batch)
                    hooks.enter_context(perturbed_time_embedding(self.tsg_modules[i], rows, self.terms[i].tsg_noise(t),
                                                                 self.generator))
            outputs = self.denoiser(repeat_batch(x, count), repeat_batch(sigma, count), **call).chunk(count)
        terms = [(strengths[i], output) for i, output in zip(active, outputs[1:], strict=True)]
        return guided_prediction(outputs[0], terms)


def guide_class_model(denoiser: nn.Module, num_classes: int, terms: list[GuidanceTerm],
                      null_id: int | None = None, seed: int = 0) -> GuidedDenoiser:
    """Guidance for a class-conditional model (genlab's, or a diffusers DiT through the adapter).

    CFG's null label is ``null_id`` (default ``num_classes``, genlab's convention); ICG draws
    uniformly random classes. An unconditional model (``num_classes = 0``) accepts TSG only.
    ICG's and TSG's draws start from ``seed`` (``generate_images`` reseeds them with its own seed).
    """
    needs_classes = sorted({t.method for t in terms if t.method in ("cfg", "icg")})
    if needs_classes and not num_classes:
        raise GenlabError(f"{'/'.join(needs_classes)} guidance needs a class-conditional model; "
                          "this model is unconditional (use tsg)")
    return GuidedDenoiser(
        denoiser, terms, "class_labels",
        null_condition=null_class(num_classes if null_id is None else null_id) if num_classes else None,
        independent_condition=random_class(num_classes) if num_classes else None,
        num_classes=num_classes or None, seed=seed,
    )


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_guidance(name: str, scale: float, tsg_noise: float = 2.0, tsg_alpha: float = 1.0,
                   interval: tuple[float, float] = (0.0, 1.0)) -> list[GuidanceTerm]:
    """Terms for a CLI choice such as ``"icg+tsg"`` (every term gets ``scale`` and ``interval`` in t).

    Raises GenlabError for settings under which guidance would be meaningless or silently never
    act: a window ``interval = (t_min, t_max)`` outside ``0 <= t_min <= t_max <= 1`` (t is diffusion
    time: 0 = data, 1 = noise), a non-finite or negative ``scale`` (w < 1 is allowed: it guides
    towards the guidance branch), a negative or non-finite TSG noise ``s`` (``tsg_noise``, in units
    of the time embedding's std) or exponent ``α`` (``tsg_alpha``, noise ``s·t^α``), and
    ``tsg_noise = 0`` when TSG is chosen (no perturbation: TSG would change nothing).
    """
    if name not in GUIDANCE_CHOICES:
        raise GenlabError(f"--guidance must be one of {', '.join(GUIDANCE_CHOICES)}, got {name!r}")
    if not (_number(scale) and math.isfinite(scale) and scale >= 0):
        raise GenlabError(f"guidance scale must be a finite number >= 0 (1 = no guidance), got {scale!r}")
    for what, value in (("TSG noise s (--tsg-noise)", tsg_noise), ("TSG exponent alpha (--tsg-alpha)", tsg_alpha)):
        if not (_number(value) and math.isfinite(value) and value >= 0):
            raise GenlabError(f"{what} must be a finite number >= 0, got {value!r}")
    try:
        low, high = interval
    except (TypeError, ValueError):
        raise GenlabError(f"guidance window must be a pair (t_min, t_max), got {interval!r}") from None
    if not (_number(low) and _number(high) and 0 <= low <= high <= 1):
        raise GenlabError(
            f"guidance window t_min={low!r}, t_max={high!r} (--guidance-t-min/--guidance-t-max) must satisfy "
            "0 <= t_min <= t_max <= 1 (t is diffusion time in [0, 1], 1 = noise); otherwise guidance never acts")
    if name == "none":
        return []
    methods = name.split("+")
    if "tsg" in methods and tsg_noise == 0:
        raise GenlabError("TSG noise s (--tsg-noise) is 0: TSG would not perturb anything and so never guide; "
                          "use s > 0 (e.g. 2)")
    return [GuidanceTerm(method, float(scale), (float(low), float(high)), noise_scale=float(tsg_noise),
                         noise_exponent=float(tsg_alpha)) for method in methods]


def cfg_warning(guidance: str, info: ImageModelInfo) -> str | None:
    """The one-line warning (``genlab: warning: ...``) for CFG on a model without label dropout, else None.

    CFG's guidance branch is the null label, which a model learns only if trained with label dropout
    (``label_dropout`` in its ``genlab.json``); with ``label_dropout = 0`` the null label's embedding
    is untrained and CFG extrapolates away from an arbitrary prediction. Models saved before genlab
    recorded ``label_dropout`` have ``info.label_dropout`` None: their dropout is reported as unknown.
    """
    if "cfg" not in guidance.split("+") or not info.num_classes:
        return None
    dropout = info.label_dropout
    if dropout is not None and dropout > 0:
        return None
    known = "0" if dropout is not None else "unknown (not recorded in its genlab.json)"
    return (f"genlab: warning: CFG needs a model trained with label dropout (its null label is otherwise never "
            f"learned), but this model's label dropout is {known}; expect poor samples, or retrain with "
            "--label-dropout 0.1, or use --guidance icg or tsg (no dropout needed)")
