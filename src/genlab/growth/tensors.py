"""Per-tensor growth: how one source tensor becomes its grown counterpart.

``split_width`` is G_direct's width step (Net2Net/bert2BERT neuron splitting): every axis is
tiled; axes a layer *reads* along are divided by the copy count so the sum over copies equals
the old value, and the final norm is divided by the hidden factor so the language-model head
(tiled like the embedding it may be tied to) sums its copies back to the old logits. The
residual stream of the grown model is the old one repeated, so LayerNorm and RMSNorm see the
same mean and scale, and the function is preserved exactly.

Exact copies have a catch: swapping two copies is a symmetry of the grown network, so gradient
descent keeps them identical forever and the wide model trains like the narrow one. With
``noise > 0`` each read axis gets zero-sum noise across its copies (copy c reads
``W/g + E_c`` with ``Σ_c E_c = 0``): the copies' inputs are identical at the start, so the
function is still exact, but the copies now receive different gradients and drift apart.

``extend_width`` places the old tensor in the first copy and fills the rest at random; the
entries that would change the function (:func:`unsafe_entries`) are what G_zero zeroes and
G_random masks.
"""

from __future__ import annotations

import torch

from genlab.growth.architectures import Axis
from genlab.growth.plan import WidthPlan


def split_width(tensor: torch.Tensor, axes: tuple[Axis, ...], plan: WidthPlan, noise: float = 0.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """G_direct width: tile every axis, divide read axes by their copy count (see module doc).

    ``noise``: std of the symmetry-breaking zero-sum noise, relative to the tensor's std.
    """
    scale = noise * float(tensor.float().std()) if noise and tensor.dim() == 2 else 0.0
    for dim, axis in enumerate(axes):
        tensor = tensor.index_select(dim, plan.source_index(axis.kind, tensor.shape[dim]))
        if axis.role == "in":
            copies = round(plan.factor(axis.kind))
            tensor = tensor / copies
            if scale and copies > 1:
                tensor = tensor + zero_sum_noise(tensor.shape, dim, copies, scale / copies, generator).to(tensor.dtype)
        elif axis.role == "final_norm":
            tensor = tensor / plan.factor("hidden")
    return tensor


def zero_sum_noise(shape: torch.Size, dim: int, copies: int, std: float, generator: torch.Generator | None
                   ) -> torch.Tensor:
    """Gaussian noise of ``shape`` whose ``copies`` tiled blocks along ``dim`` sum to zero."""
    noise = torch.randn(shape, generator=generator) * std
    blocks = noise.unflatten(dim, (copies, -1))
    return (blocks - blocks.mean(dim, keepdim=True)).flatten(dim, dim + 1)


def _old_positions(plan: WidthPlan, axis: Axis, size: int) -> torch.Tensor:
    return torch.nonzero(~plan.is_new(axis.kind, plan.grown_size(axis.kind, size))).squeeze(1)


def unsafe_entries(axes: tuple[Axis, ...], shape: tuple[int, ...], plan: WidthPlan) -> torch.Tensor:
    """Bool mask over the grown tensor: entries whose value changes the old model's function.

    Two kinds: anything a layer writes into *new* residual channels (these must stay zero), and
    anything an *old* output reads from a new neuron/head that is itself active (new q/k/v/MLP
    neurons compute from the old residual, so their readers must ignore them). Reading from a new
    residual channel is harmless: that channel is zero.
    """
    new = [plan.is_new(axis.kind, size).view([-1 if d == i else 1 for d in range(len(shape))])
           for i, (axis, size) in enumerate(zip(axes, shape, strict=True))]
    unsafe = torch.zeros(shape, dtype=torch.bool)
    old_output = torch.ones(shape, dtype=torch.bool)
    for flag, axis in zip(new, axes, strict=True):
        if axis.role == "out":
            old_output = old_output & ~flag
            if axis.kind == "hidden":
                unsafe = unsafe | flag
    for flag, axis in zip(new, axes, strict=True):
        if axis.role == "in" and axis.kind != "hidden":
            unsafe = unsafe | (old_output & flag)
    return unsafe


def extend_width(tensor: torch.Tensor, axes: tuple[Axis, ...], plan: WidthPlan, init_std: float,
                 rms_norm: bool, is_bias: bool, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """G_zero/G_random width: ``(grown tensor with random new entries, unsafe-entry mask)``.

    With RMSNorm the zero new residual channels lower the root-mean-square by sqrt(hidden factor);
    norm weights are divided by that (and the caller divides eps by the factor), which is exact.
    """
    shape = tuple(plan.grown_size(axis.kind, size) for axis, size in zip(axes, tensor.shape, strict=True))
    is_norm = axes[0].role in ("norm", "final_norm")
    if is_norm and not is_bias:
        grown = torch.ones(shape, dtype=tensor.dtype)
    elif len(axes) == 1:
        grown = torch.zeros(shape, dtype=tensor.dtype)
    else:
        grown = torch.randn(shape, generator=generator).to(tensor.dtype) * init_std
    index = torch.meshgrid(*[_old_positions(plan, axis, size) for axis, size in zip(axes, tensor.shape, strict=True)],
                           indexing="ij")
    grown[index] = tensor
    if is_norm and rms_norm:
        grown = grown / plan.factor("hidden") ** 0.5
    return grown, unsafe_entries(axes, shape, plan)


def fresh_layer_tensor(like: torch.Tensor, axes: tuple[Axis, ...], init_std: float,
                       generator: torch.Generator, is_bias: bool) -> torch.Tensor:
    """A newly initialised layer tensor: normal(0, std) matrices, unit norm weights, zero biases."""
    if len(axes) == 1:
        return torch.zeros_like(like) if is_bias or axes[0].role != "norm" else torch.ones_like(like)
    return (torch.randn(like.shape, generator=generator) * init_std).to(like.dtype)
