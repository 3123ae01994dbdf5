"""ICG's independent conditions for the guidance branch (CFG's null conditions are in :mod:`genlab.core.cfg`).

Each maker is a :data:`~genlab.core.cfg.ConditionMaker`, ``make(condition) -> condition``, that returns
a tensor shaped like the batch's real condition (class ids ``[B]`` or embeddings ``[B, L, D]``). They draw afresh
on every call, i.e. at every sampling step, from the ``generator=`` they are called with
(:class:`~genlab.guidance.GuidedDenoiser` and the diffusers guiders pass their seeded one;
None uses torch's global RNG). A maker of your own may take ``generator=`` too, and is then
given the guidance generator (see :func:`genlab.guidance.rng.call_maker`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from genlab.core.cfg import ConditionMaker
from genlab.guidance.rng import randint, randn


def random_class(num_classes: int) -> ConditionMaker:
    """ICG for class models: labels drawn uniformly from ``[0, num_classes)``, independent of the real ones."""

    def make(labels: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return randint(num_classes, tuple(labels.shape), generator, labels.device, labels.dtype)

    return make


def gaussian_embedding() -> ConditionMaker:
    """ICG for embedding conditions: ``randn_like(emb) * emb.std()`` (the paper's generic choice)."""

    def make(embedding: Tensor, generator: torch.Generator | None = None) -> Tensor:
        noise = randn(tuple(embedding.shape), generator, embedding.device).to(embedding.dtype)
        return noise * embedding.float().std().to(embedding.dtype)

    return make


def random_tokens(encode: Callable[[Tensor], Tensor], vocab_size: int, sequence_length: int,
                  special_ids: tuple[int, ...] = ()) -> ConditionMaker:
    """ICG for text models: uniformly random token ids ``[B, sequence_length]`` through ``encode``.

    ``encode(ids) -> [B, L, D]`` is the text encoder; ids in ``special_ids`` (BOS/EOS/padding)
    are not drawn.
    """
    allowed = torch.tensor([i for i in range(vocab_size) if i not in set(special_ids)])

    def make(condition: Tensor, generator: torch.Generator | None = None) -> Tensor:
        picks = randint(len(allowed), (condition.shape[0], sequence_length), generator, torch.device("cpu"))
        with torch.no_grad():
            return encode(allowed[picks].to(condition.device)).to(condition.dtype)

    return make
