"""The reward interface: ``reward(samples, prompts=None, labels=None) -> scores [B]``.

Samples are images ``[B, C, H, W]`` or videos ``[B, T, C, H, W]`` in ``[-1, 1]`` (DESIGN's
convention); scores are float32, higher is better, and differentiable with respect to the samples,
so a reward-gradient trainer can back-propagate through them. Rewards are frozen: their own
parameters never receive gradients.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from genlab.errors import GenlabError

MODALITIES = ("image", "video")
CONDITIONS = (None, "prompts", "labels")


class Reward(nn.Module, ABC):
    """Base class of all rewards.

    Subclasses set ``name``, ``modality`` (``"image"``: takes ``[B, C, H, W]``; ``"video"``: takes
    ``[B, T, C, H, W]``) and ``needs`` (``None``, ``"prompts"``: one text per sample, or
    ``"labels"``: a long tensor ``[B]``), and implement :meth:`score`. Calling the reward checks the
    inputs and returns ``score(...)`` as float32 ``[B]``.
    """

    name: str = "reward"
    modality: str = "image"
    needs: str | None = None

    def freeze(self) -> Reward:
        """Eval mode and no parameter gradients; returns ``self``."""
        return self.eval().requires_grad_(False)

    @abstractmethod
    def score(self, samples: Tensor, prompts: Sequence[str] | None, labels: Tensor | None) -> Tensor:
        """Scores ``[B]`` of already-checked ``samples`` (differentiable w.r.t. them)."""

    def forward(self, samples: Tensor, prompts: Sequence[str] | None = None, labels: Tensor | None = None) -> Tensor:
        self.check_inputs(samples, prompts, labels)
        scores = self.score(samples, prompts, labels)
        return scores.to(torch.float32).reshape(samples.shape[0])

    def check_inputs(self, samples: Tensor, prompts: Sequence[str] | None, labels: Tensor | None) -> None:
        """Clear errors for a wrong sample shape or a missing/wrong kind of condition."""
        rank = 4 if self.modality == "image" else 5
        layout = "[B, C, H, W]" if rank == 4 else "[B, T, C, H, W]"
        if not isinstance(samples, Tensor) or not samples.is_floating_point() or samples.ndim != rank:
            got = tuple(samples.shape) if isinstance(samples, Tensor) else type(samples).__name__
            raise GenlabError(f"the {self.name!r} reward scores {self.modality}s {layout} in [-1, 1], got {got}")
        batch = samples.shape[0]
        if self.needs == "prompts":
            if prompts is None:
                given = "class labels" if labels is not None else "nothing"
                raise GenlabError(f"the {self.name!r} reward compares samples with text and needs one prompt per "
                                  f"sample (--prompts), but was given {given}")
            if isinstance(prompts, str) or len(prompts) != batch:
                raise GenlabError(f"the {self.name!r} reward needs a list of {batch} prompts, one per sample")
        if self.needs == "labels":
            if labels is None:
                given = "text prompts" if prompts is not None else "nothing"
                raise GenlabError(f"the {self.name!r} reward needs one class label per sample (--labels), "
                                  f"but was given {given}")
            if not isinstance(labels, Tensor) or labels.dtype != torch.long or labels.shape != (batch,):
                raise GenlabError(f"the {self.name!r} reward needs labels as a long tensor [{batch}]")


def to_unit_range(samples: Tensor) -> Tensor:
    """Samples in ``[-1, 1]`` mapped to ``[0, 1]`` (clamped, with gradient inside the range)."""
    return ((samples + 1) / 2).clamp(0, 1)


@dataclass(frozen=True)
class RewardEntry:
    """One named reward of the zoo.

    ``build(path)`` returns a frozen :class:`Reward`; ``path`` is a local folder or Hugging Face hub
    id of the pretrained weights (``default_path`` when None), ignored by rewards that ship with
    genlab (``default_path`` None). Pretrained rewards also take ``build(path, revision=...)``: the
    hub revision (branch, tag or commit) to read. ``summary`` is the one-line help shown by
    ``genlab align --help``.
    """

    build: Callable[[str | None], Reward]
    summary: str
    default_path: str | None = None
