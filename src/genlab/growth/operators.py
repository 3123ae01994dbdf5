"""The four growth operators of "Stacking Your Transformers" on Hugging Face causal LMs.

``grow(model, operator, direction, factor)`` returns a :class:`Grown` holding an ordinary model of
the same class (``save_pretrained``/``from_pretrained`` work; ``Grown.save_pretrained`` and
``Grown.from_pretrained`` also keep G_random's ramp) with ``factor`` × the layers (depth) or × the
hidden size, heads and MLP width (width):

============  =====================================  ==========================================
operator      depth                                  width
============  =====================================  ==========================================
``direct``    stack copies (``repeat`` 1..L,1..L or   split neurons (Net2Net); function preserved
              ``interleave`` 1,1,2,2) — G_stack
``zero``      add fresh layers whose attention-out    zero the new weights that would change the
              and MLP-down are zero: identity         function; function preserved
``random``    fresh layers, their residual writes     new weights random, the function-changing
              blended in by a ramp (``Grown.ramp``)   ones blended in by a ramp
``learn``     LiGO: learned mixing of layers, started LiGO: learned expansion matrices, started
              at stacking (:mod:`.learn`)             at neuron splitting (:mod:`.learn`)
============  =====================================  ==========================================

The target model is built on the meta device and filled one tensor at a time
(:func:`~genlab.growth.build.build_grown`), so growing needs the source plus the target, not a
second copy of either.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedModel

from genlab.errors import GenlabError
from genlab.growth.architectures import Architecture, architecture_of
from genlab.growth.build import build_grown
from genlab.growth.checkpoints import load_causal_lm
from genlab.growth.learn import grow_learned
from genlab.growth.plan import DepthPlan, check_factor, grown_config, width_plan
from genlab.growth.ramp import GrowthRamp, remove_saved_ramp
from genlab.growth.tensors import extend_width, fresh_layer_tensor, split_width

OPERATORS = ("direct", "learn", "zero", "random")
OPERATOR_ALIASES = {"stack": "direct", "g_stack": "direct", "g_direct": "direct", "g_learn": "learn",
                    "ligo": "learn", "g_zero": "zero", "g_random": "random"}


@dataclass
class Grown:
    """A grown model; ``ramp`` is G_random's blending mask (call ``ramp.step()`` every optimiser step)."""

    model: PreTrainedModel
    ramp: GrowthRamp | None = None

    def save_pretrained(self, directory: Path | str) -> None:
        """``model.save_pretrained`` (the weights as the model computes now) plus, mid-ramp, the ramp's state.

        The folder loads as an ordinary model with ``from_pretrained``; :meth:`from_pretrained`
        also restores the ramp, so training continues it.
        """
        self.model.save_pretrained(directory)
        if self.ramp is None:
            remove_saved_ramp(directory)
        else:
            self.ramp.save(directory)

    @classmethod
    def from_pretrained(cls, directory: Path | str) -> Grown:
        """Load a folder written by :meth:`save_pretrained`, with its ramp re-attached where it stopped."""
        model = load_causal_lm(directory)
        return cls(model, GrowthRamp.load(model, directory))


def canonical_operator(name: str) -> str:
    key = name.lower().replace("-", "_")
    key = OPERATOR_ALIASES.get(key, key)
    if key not in OPERATORS:
        raise GenlabError(f"unknown growth operator {name!r}; choose from {OPERATORS} (or 'stack' = direct)")
    return key


def check_growth(operator: str, direction: str, factor: float) -> str:
    """Check a growth request before any model is loaded; returns the operator's canonical name. Depth,
    neuron splitting (direct) and G_learn need a whole-number factor."""
    operator = canonical_operator(operator)
    check_factor(factor, integer=direction == "depth" or operator in ("direct", "learn"))
    return operator


def grow(model: PreTrainedModel, operator: str, direction: str, factor: float, *, order: str = "repeat",
         ramp_steps: int = 100, seed: int = 0, split_noise: float = 0.0,
         learn_batches: Iterable[torch.Tensor] | None = None, learn_steps: int = 100,
         learn_lr: float = 1e-3) -> Grown:
    """Grow ``model`` (LLaMA or GPT-2 causal LM) by ``factor`` in ``direction`` with ``operator``.

    ``order`` is the stacking order for depth; ``ramp_steps`` G_random's blend length; ``seed``
    the seed of any new random weights; ``split_noise`` (width, direct and learn) the relative
    std of zero-sum noise that breaks the symmetry between split copies without changing the
    function — with 0 the copies stay identical in training; ``learn_batches`` (token-id tensors ``(B, T)``),
    ``learn_steps`` and ``learn_lr`` train G_learn's expansion operators.
    """
    operator = check_growth(operator, direction, factor)
    arch = architecture_of(model)
    target_config = grown_config(arch, model.config, direction, factor)
    generator = torch.Generator().manual_seed(seed)
    if operator == "learn":
        if learn_batches is None:
            raise GenlabError("G_learn trains its expansion operators: pass learn_batches (token ids)")
        return Grown(grow_learned(model, arch, target_config, direction, int(factor), order,
                                  learn_batches, learn_steps, learn_lr, split_noise, generator))
    if direction == "depth":
        plan = DepthPlan.build(arch.num_layers(model.config), int(factor), order)
        return _grow_depth(model, arch, target_config, plan, operator, ramp_steps, generator)
    return _grow_width(model, arch, target_config, operator, ramp_steps, split_noise, generator)


def _grow_depth(model, arch: Architecture, target_config, plan: DepthPlan, operator: str, ramp_steps: int,
                generator: torch.Generator) -> Grown:
    source = dict(model.named_parameters())
    std = model.config.initializer_range
    masks = {}

    def tensor_for(name: str) -> torch.Tensor:
        layer, inner = arch.split_layer_name(name)
        if layer is None:
            return source[name]
        copied = source[arch.layer_name(plan.source_layers[layer], inner)]
        if operator == "direct" or layer not in plan.new_layers:
            return copied
        writer = arch.is_residual_writer(inner)
        if operator == "zero" and writer:
            return torch.zeros_like(copied)
        if operator == "random" and writer:
            masks[name] = torch.ones_like(copied, dtype=torch.bool)
        return fresh_layer_tensor(copied, arch.axes(name), std, generator, inner.endswith("bias"))

    grown = build_grown(model, target_config, tensor_for, lambda layer: plan.source_layers[layer])
    return Grown(grown, GrowthRamp(grown, masks, ramp_steps) if masks else None)


def _grow_width(model, arch: Architecture, target_config, operator: str, ramp_steps: int, split_noise: float,
                generator: torch.Generator) -> Grown:
    plan = width_plan(arch, model.config, target_config)
    source = dict(model.named_parameters())
    masks = {}
    if operator in ("zero", "random"):
        if arch.norm == "layer":
            warnings.warn("LayerNorm centres over all channels, so adding zero channels shifts its mean: "
                          f"G_{operator} width on {arch.model_type} is close to, not exactly, function-"
                          "preserving (G_direct width is exact)", stacklevel=3)
        elif arch.eps_field:
            eps = getattr(model.config, arch.eps_field) / plan.factor("hidden")
            setattr(target_config, arch.eps_field, eps)

    def tensor_for(name: str) -> torch.Tensor:
        axes = arch.axes(name)
        if operator == "direct":
            return split_width(source[name], axes, plan, split_noise, generator)
        grown, unsafe = extend_width(source[name], axes, plan, model.config.initializer_range,
                                     arch.norm == "rms", name.endswith("bias"), generator)
        if operator == "zero":
            return grown.masked_fill(unsafe, 0.0)
        if unsafe.any():
            masks[name] = unsafe
        return grown

    grown = build_grown(model, target_config, tensor_for, lambda layer: layer)
    return Grown(grown, GrowthRamp(grown, masks, ramp_steps) if masks else None)
