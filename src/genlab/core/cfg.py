"""Classifier-free guidance (Ho & Salimans, 2022): the guided prediction, null conditions, a CFG denoiser.

With the conditional prediction ``D_c = D(x, σ, c)`` and guidance predictions ``D_g``, the guided
prediction is

    D̂ = D_c + Σ_g λ_g·(D_c − D_g)

CFG has one term, the null condition's ``D_∅ = D(x, σ, ∅)`` with ``λ = w − 1``: the familiar
``D_∅ + w·(D_c − D_∅)`` (``w = 1`` gives ``D_c``, ``w = 0`` gives ``D_∅``). :mod:`genlab.guidance`
adds other guidance predictions (ICG's, TSG's) to the same sum.

A *condition maker* ``make(condition) -> condition`` builds a guidance branch's condition from the
batch's real one (class ids ``[B]`` or embeddings ``[B, L, D]``), shaped like it; CFG's are
:func:`null_class` and :func:`fixed_embedding`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from genlab.core.edm import Denoiser, append_dims
from genlab.errors import GenlabError

ConditionMaker = Callable[[Tensor], Tensor]


def guided_prediction(d_cond: Tensor, terms: Iterable[tuple[float | Tensor, Tensor]]) -> Tensor:
    """``D_c + Σ λ·(D_c − D_g)`` over ``terms`` of ``(λ, D_g)``.

    ``D_c`` and every ``D_g`` are ``[B, ...]``; a weight ``λ`` is a number or per-sample ``[B]``.
    """
    guided = d_cond
    for weight, d_guidance in terms:
        if isinstance(weight, Tensor):
            weight = append_dims(weight.to(d_cond.dtype), d_cond)
        guided = guided + weight * (d_cond - d_guidance)
    return guided


def null_class(null_id: int) -> ConditionMaker:
    """CFG for class models: every label replaced by the null label ``null_id``."""

    def make(labels: Tensor) -> Tensor:
        return torch.full_like(labels, null_id)

    return make


def fixed_embedding(embedding: Tensor) -> ConditionMaker:
    """CFG for embedding conditions: the unconditional (empty/negative prompt) embedding ``[1 or B, L, D]``."""

    def make(condition: Tensor) -> Tensor:
        return embedding.to(condition.device, condition.dtype).expand_as(condition)

    return make


def repeat_batch(value, count: int):
    """``count`` copies of a batch tensor ``[B, ...]`` stacked along dim 0 (0-d tensors and non-tensors pass through)."""
    return torch.cat([value] * count) if isinstance(value, Tensor) and value.dim() > 0 else value


def cfg_denoise(denoiser: Denoiser, x: Tensor, sigma: Tensor, scale: float, condition_key: str,
                null_condition: Tensor, **cond) -> Tensor:
    """CFG's ``D̂`` with guidance scale ``w = scale``, from one batched ``denoiser`` call over ``[c, ∅]``.

    ``x [B, ...]``, ``sigma [B]``; the condition ``c`` is ``cond[condition_key]`` and ``null_condition``
    is ∅, shaped like it. The other batch tensors in ``cond`` are repeated for both halves.
    """
    call = {key: repeat_batch(value, 2) for key, value in cond.items() if key != condition_key}
    call[condition_key] = torch.cat([cond[condition_key], null_condition])
    d_cond, d_null = denoiser(repeat_batch(x, 2), repeat_batch(sigma, 2), **call).chunk(2)
    return guided_prediction(d_cond, [(scale - 1, d_null)])


class CFGDenoiser(nn.Module):
    """Classifier-free guidance around a denoiser: ``D̂(x, σ, **cond)`` by :func:`cfg_denoise`.

    Args:
        denoiser: ``denoiser(x, sigma, **cond) -> x0``, trained with condition dropout.
        scale: the guidance scale ``w >= 0`` (1: the conditional denoiser, 0: the null one).
        condition_key: the keyword that carries the condition (``class_labels``, ``codes``,
            ``encoder_hidden_states``).
        null_condition: the maker of ∅ from the real condition (:func:`null_class`, :func:`fixed_embedding`).
    """

    def __init__(self, denoiser: nn.Module, scale: float, condition_key: str, null_condition: ConditionMaker):
        super().__init__()
        if not (math.isfinite(scale) and scale >= 0):
            raise GenlabError(f"cfg scale must be a finite number >= 0, got {scale}")
        self.denoiser, self.scale, self.condition_key, self.null_condition = denoiser, scale, condition_key, null_condition
        self.sigma_min = getattr(denoiser, "sigma_min", None)
        self.sigma_max = getattr(denoiser, "sigma_max", None)

    def time_fraction(self, sigma: Tensor) -> Tensor:
        return self.denoiser.time_fraction(sigma)

    def forward(self, x: Tensor, sigma: Tensor, **cond) -> Tensor:
        condition = cond.get(self.condition_key)
        if condition is None:
            raise GenlabError(f"CFG needs a condition, but the model was called without {self.condition_key}")
        return cfg_denoise(self.denoiser, x, sigma, self.scale, self.condition_key, self.null_condition(condition),
                           **cond)
