"""The shape of a growth step: the target config and how every new index maps to an old one.

A depth plan lists, for each target layer, the source layer it starts from (stacking orders
``repeat`` = 1..L,1..L,… and ``interleave`` = 1,1,2,2,…) and which target layers are *new*
(every copy after the first, for the operators that add fresh layers).

A width plan tiles every growable dimension: new index ``i`` copies old index ``i mod old``
(per q/k/v block for GPT-2's fused projection). The first copy keeps the old entries, the rest
are new.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from transformers import PretrainedConfig

from genlab.errors import GenlabError
from genlab.growth.architectures import Architecture

DIRECTIONS = ("depth", "width")
STACK_ORDERS = ("repeat", "interleave")


def check_factor(factor: float, integer: bool) -> None:
    """Factor >= 1, and a whole number where ``integer`` (layer counts, neuron splitting)."""
    if not isinstance(factor, (int, float)) or not math.isfinite(factor) or factor < 1:
        raise GenlabError(f"the growth factor (--factor) must be a number >= 1, got {factor!r}")
    if integer and float(factor) != int(factor):
        raise GenlabError(f"this operator and direction need a whole-number growth factor (--factor), got {factor}")


@dataclass(frozen=True)
class DepthPlan:
    source_layers: tuple[int, ...]
    new_layers: frozenset[int]

    @classmethod
    def build(cls, num_layers: int, factor: int, order: str) -> DepthPlan:
        if order not in STACK_ORDERS:
            raise GenlabError(f"stacking order must be one of {STACK_ORDERS}, got {order!r}")
        total = num_layers * int(factor)
        if order == "repeat":
            sources = tuple(i % num_layers for i in range(total))
            new = frozenset(range(num_layers, total))
        else:
            sources = tuple(i // int(factor) for i in range(total))
            new = frozenset(i for i in range(total) if i % int(factor))
        return cls(sources, new)


class WidthPlan:
    """Old and new size of every growable kind (``qkv`` per block) and the tiling between them."""

    def __init__(self, old: dict[str, int], new: dict[str, int]):
        self.old, self.new = old, new

    def factor(self, kind: str) -> float:
        return self.new[kind] / self.old[kind] if kind in self.old else 1.0

    def blocks(self, kind: str) -> int:
        return 3 if kind == "qkv" else 1

    def source_index(self, kind: str, size: int) -> torch.Tensor:
        """For an axis of ``kind`` (``size`` entries before growth): the old index each new entry copies."""
        if kind not in self.old:
            return torch.arange(size)
        old, new = self.old[kind], self.new[kind]
        return torch.cat([b * old + torch.arange(new) % old for b in range(self.blocks(kind))])

    def is_new(self, kind: str, size: int) -> torch.Tensor:
        """Bool per entry of the grown axis: True where the entry did not exist before."""
        if kind not in self.old:
            return torch.zeros(size, dtype=torch.bool)
        return (torch.arange(self.new[kind]) >= self.old[kind]).repeat(self.blocks(kind))

    def grown_size(self, kind: str, size: int) -> int:
        return self.new[kind] * self.blocks(kind) if kind in self.old else size


def grown_config(arch: Architecture, config: PretrainedConfig, direction: str, factor: float) -> PretrainedConfig:
    """The target config: ``factor`` × layers (depth) or × hidden/heads/MLP width (width).

    Width keeps head_dim fixed and multiplies the head count (and key/value heads alike, so the
    grouped-query ratio is unchanged); the new width must be a whole number of heads.
    """
    if direction not in DIRECTIONS:
        raise GenlabError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    target = copy.deepcopy(config)
    if direction == "depth":
        setattr(target, arch.layers_field, arch.num_layers(config) * int(factor))
        return target
    head_dim = arch.head_dim(config)
    hidden = round(getattr(config, arch.hidden_field) * factor)
    heads = getattr(config, arch.heads_field)
    if hidden % head_dim:
        raise GenlabError(f"grown width {hidden} is not divisible by the head dimension {head_dim} "
                          f"(heads must stay whole); pick a factor that gives a multiple of {head_dim}")
    new_heads = hidden // head_dim
    setattr(target, arch.hidden_field, hidden)
    setattr(target, arch.heads_field, new_heads)
    if arch.kv_heads_field:
        kv_heads = getattr(config, arch.kv_heads_field) or heads
        if (kv_heads * new_heads) % heads:
            raise GenlabError(f"{new_heads} heads cannot keep the grouped-query ratio {heads}:{kv_heads}")
        setattr(target, arch.kv_heads_field, kv_heads * new_heads // heads)
    if getattr(config, "head_dim", None) is not None:
        target.head_dim = head_dim
    if getattr(config, arch.inter_field) is not None:
        setattr(target, arch.inter_field, round(getattr(config, arch.inter_field) * factor))
    return target


def width_plan(arch: Architecture, source: PretrainedConfig, target: PretrainedConfig) -> WidthPlan:
    return WidthPlan(arch.dims(source), arch.dims(target))
