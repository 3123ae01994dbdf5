"""G_random's blending mask (MSG-style): new parts are scaled by ``m`` that ramps 0 → 1.

The masked entries are those G_zero would have zeroed (:func:`~genlab.growth.tensors.unsafe_entries`
and the residual writers of new layers); they hold random values and enter the forward pass as
``m · value`` through a ``torch.nn.utils.parametrize`` parametrization, so the model keeps its
class and optimisers see the ordinary parameters. At ``m = 0`` the grown model computes exactly
what the small one did; :meth:`GrowthRamp.step` advances ``m`` by ``1/steps`` per optimiser step
and removes the parametrizations once ``m`` reaches 1, leaving an ordinary model.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils import parametrize

from genlab.errors import GenlabError

RAMP_FILE, MASK_FILE = "growth_ramp.json", "growth_ramp_masks.safetensors"


class _Blend(nn.Module):
    def __init__(self, mask: torch.Tensor, level: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask, persistent=False)
        self.level = level

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return torch.where(self.mask, weight * self.level.to(weight.dtype), weight)


class GrowthRamp:
    """Attach masks ``{parameter name: bool tensor}`` to ``model``; ``step()`` once per optimiser step."""

    def __init__(self, model: nn.Module, masks: dict[str, torch.Tensor], steps: int, done: int = 0):
        if steps < 1:
            raise GenlabError(f"ramp steps must be >= 1, got {steps}")
        self.model, self.masks, self.steps, self.done = model, masks, steps, done
        self.level = torch.tensor(min(done / steps, 1.0))
        self._modules = [(module, attr, mask) for name, mask in masks.items()
                         for module, attr in _holders(model, name)]
        for module, attr, mask in self._modules:
            parametrize.register_parametrization(module, attr, _Blend(mask, self.level), unsafe=True)
        if self.done >= self.steps:
            self.finish()

    @property
    def active(self) -> bool:
        return bool(self._modules)

    def step(self) -> float:
        """Advance the ramp by one step; returns the new level ``m``."""
        if not self.active:
            return 1.0
        self.done += 1
        self.level.fill_(min(self.done / self.steps, 1.0))
        if self.done >= self.steps:
            self.finish()
        return float(self.level)

    def finish(self) -> None:
        """Set ``m = 1`` and remove the parametrizations: the model is an ordinary model again."""
        self.level.fill_(1.0)
        for module, attr, _ in self._modules:
            if parametrize.is_parametrized(module, attr):
                parametrize.remove_parametrizations(module, attr, leave_parametrized=False)
        self._modules = []

    def save(self, directory: Path | str) -> None:
        """Write the masks and progress next to a ``save_pretrained`` folder (see :meth:`load`)."""
        directory = Path(directory)
        save_file({name: mask.to(torch.uint8).contiguous() for name, mask in self.masks.items()},
                  str(directory / MASK_FILE))
        (directory / RAMP_FILE).write_text(json.dumps({"steps": self.steps, "done": self.done}))

    @classmethod
    def load(cls, model: nn.Module, directory: Path | str) -> GrowthRamp | None:
        """Re-attach a saved ramp to a model loaded from ``directory``; None when there is none."""
        directory = Path(directory)
        if not (directory / RAMP_FILE).exists():
            return None
        progress = json.loads((directory / RAMP_FILE).read_text())
        masks = {name: mask.bool() for name, mask in load_file(str(directory / MASK_FILE)).items()}
        return cls(model, masks, progress["steps"], progress["done"])


def _holders(model: nn.Module, name: str) -> list[tuple[nn.Module, str]]:
    """Every ``(module, attribute)`` holding parameter ``name`` (two for tied embeddings)."""
    parameter = model.get_parameter(name)
    return [(module, attr) for module in model.modules()
            for attr, held in module._parameters.items() if held is parameter]
