"""Discrete latents: Gumbel-softmax relaxation of categorical codes (DisCo-Diff's encoder output)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.errors import GenlabError


def gumbel_softmax_codes(logits: Tensor, temperature: float = 1.0, straight_through: bool = False) -> Tensor:
    """Relaxed one-hot codes from ``logits [B, m, k]`` (m latents, k codes each); returns ``[B, m, k]``.

    Soft: ``softmax((logits + g) / τ)`` with Gumbel noise g. Straight-through: the forward value
    is the exact one-hot of the argmax, the gradient that of the soft sample.
    """
    if not temperature > 0:
        raise GenlabError(f"Gumbel-softmax temperature must be > 0, got {temperature}")
    gumbel = -torch.empty_like(logits).exponential_().log()
    soft = F.softmax((logits + gumbel) / temperature, dim=-1)
    if not straight_through:
        return soft
    hard = F.one_hot(soft.argmax(-1), logits.shape[-1]).to(soft.dtype)
    return hard + (soft - soft.detach())  # exactly one-hot forward, soft gradient backward


def code_usage(indices: Tensor, num_codes: int) -> Tensor:
    """Share of the ``num_codes`` codes used at least once, per latent: ``indices [N, m]`` -> ``[m]``."""
    used = torch.zeros(indices.shape[1], num_codes, dtype=torch.bool)
    used.scatter_(1, indices.T.cpu(), True)
    return used.float().mean(1)
