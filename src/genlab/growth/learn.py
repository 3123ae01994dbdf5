"""G_learn: LiGO-style learned growth operators (Wang et al., 2023), trained briefly, then materialised.

Depth: every target layer's tensor ``p`` is a learned mixture of the source layers' ``p``,
``W'_l = Σ_j D_p[l, j] W_j``, one ``(L', L)`` matrix per tensor name, started at the stacking
map (so G_learn starts as G_stack). Width: every growable kind has a learned expansion matrix per
role — ``out``/norm axes use ``A_k`` (new × old), ``in`` axes ``B_k`` — shared by all layers and
started at neuron splitting (so G_learn starts as G_direct, function-preserving); the final norm
has one extra learned scale. Only the operators train (the small model's weights are fixed), on
the language-modelling loss of the grown model; the result is written into plain weights.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import cycle, islice

import torch
from torch import nn
from torch.func import functional_call
from tqdm.auto import tqdm
from transformers import PretrainedConfig, PreTrainedModel

from genlab.growth.architectures import Architecture, Axis
from genlab.growth.build import build_grown
from genlab.growth.plan import DepthPlan, WidthPlan, width_plan
from genlab.growth.tensors import zero_sum_noise


def _one_hot(index: torch.Tensor, columns: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(index, columns).float()


class DepthMixing(nn.Module):
    """``D_p`` for every layer tensor name ``p``: target layer ← mixture of source layers."""

    def __init__(self, arch: Architecture, plan: DepthPlan, num_source_layers: int):
        super().__init__()
        self.arch = arch
        start = _one_hot(torch.tensor(plan.source_layers), num_source_layers)
        self.mixing = nn.ParameterDict({inner.replace(".", "__"): nn.Parameter(start.clone())
                                        for inner in arch.layer_params})

    def expand(self, source: dict[str, torch.Tensor], names: list[str]) -> dict[str, torch.Tensor]:
        grown = {}
        for name in names:
            layer, inner = self.arch.split_layer_name(name)
            if layer is None:
                grown[name] = source[name]
                continue
            weights = self.mixing[inner.replace(".", "__")][layer]
            stacked = torch.stack([source[self.arch.layer_name(j, inner)] for j in range(len(weights))])
            grown[name] = torch.tensordot(weights.to(stacked.dtype), stacked, dims=1)
        return grown


class WidthExpansion(nn.Module):
    """``A_k`` and ``B_k`` for every growable kind, started at G_direct's neuron splitting."""

    def __init__(self, arch: Architecture, plan: WidthPlan, noise: float = 0.0, generator: torch.Generator | None = None):
        super().__init__()
        self.arch, self.plan = arch, plan
        self.maps = nn.ParameterDict()
        for kind in plan.old:
            if kind == "qkv":
                continue
            copy = _one_hot(torch.arange(plan.new[kind]) % plan.old[kind], plan.old[kind])
            self.maps[f"{kind}_out"] = nn.Parameter(copy.clone())
            copies = round(plan.factor(kind))
            split = copy / copies
            if noise and copies > 1:  # symmetry breaking, function-preserving (see genlab.growth.tensors)
                split = split + zero_sum_noise(split.shape, 0, copies, noise / (copies * plan.old[kind] ** 0.5),
                                               generator)
            self.maps[f"{kind}_in"] = nn.Parameter(split)
        self.final_scale = nn.Parameter(torch.tensor(1.0 / plan.factor("hidden")))

    def _matrix(self, axis: Axis) -> torch.Tensor | None:
        if axis.kind == "fixed":
            return None
        kind = "q" if axis.kind == "qkv" else axis.kind
        return self.maps[f"{kind}_{'in' if axis.role == 'in' else 'out'}"]

    def expand_tensor(self, tensor: torch.Tensor, axes: tuple[Axis, ...]) -> torch.Tensor:
        for dim, axis in enumerate(axes):
            matrix = self._matrix(axis)
            if matrix is None:
                continue
            blocks = self.plan.blocks(axis.kind)
            moved = tensor.movedim(dim, -1).unflatten(-1, (blocks, -1))
            tensor = (moved @ matrix.T.to(tensor.dtype)).flatten(-2).movedim(-1, dim)
            if axis.role == "final_norm":
                tensor = tensor * self.final_scale
        return tensor

    def expand(self, source: dict[str, torch.Tensor], names: list[str]) -> dict[str, torch.Tensor]:
        return {name: self.expand_tensor(source[name], self.arch.axes(name)) for name in names}


def grow_learned(model: PreTrainedModel, arch: Architecture, target_config: PretrainedConfig, direction: str,
                 factor: int, order: str, batches: Iterable[torch.Tensor], steps: int, lr: float,
                 split_noise: float = 0.0, generator: torch.Generator | None = None) -> PreTrainedModel:
    """Train the expansion operators for ``steps`` Adam steps on ``batches`` (cycled), then materialise.

    ``split_noise`` starts the width maps at symmetry-broken splitting (see :func:`~genlab.growth.grow`).
    """
    source = {name: p.detach() for name, p in model.named_parameters()}
    if direction == "depth":
        plan = DepthPlan.build(arch.num_layers(model.config), factor, order)
        operator = DepthMixing(arch, plan, arch.num_layers(model.config))
        source_layer_of = plan.source_layers.__getitem__
    else:
        operator = WidthExpansion(arch, width_plan(arch, model.config, target_config), split_noise, generator)
        source_layer_of = int
    with torch.no_grad():
        grown = build_grown(model, target_config, lambda name: operator.expand(source, [name])[name],
                            source_layer_of)
    names = [name for name, _ in grown.named_parameters()]
    optimizer = torch.optim.Adam(operator.parameters(), lr=lr)
    was_training = model.training
    grown.train()
    batches = list(islice(cycle(batches), steps)) if steps else []
    for ids in tqdm(batches, desc="G_learn operators", leave=False):
        loss = functional_call(grown, operator.expand(source, names), (ids,), {"labels": ids}).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        values = operator.expand(source, names)
        for name, parameter in grown.named_parameters():
            parameter.copy_(values[name])
    return grown.train(was_training)
