"""G_random's blending mask (MSG-style): new parts are scaled by ``m`` that ramps 0 → 1.

The masked entries are those G_zero would have zeroed (:func:`~genlab.growth.tensors.unsafe_entries`
and the residual writers of new layers); they hold random values ``v`` and enter the forward pass
as ``m · v`` through a ``torch.nn.utils.parametrize`` parametrization, so the model keeps its
class and optimisers see the ordinary parameters. At ``m = 0`` the grown model computes exactly
what the small one did; :meth:`GrowthRamp.step` advances ``m`` by ``1/steps`` per optimiser step
and removes the parametrizations once ``m`` reaches 1, leaving an ordinary model.

Saving: while the ramp is active the model's ``state_dict()`` holds the *effective* weights
(``m · v`` at masked entries) under the plain parameter names, so ``save_pretrained`` writes an
ordinary checkpoint that ``from_pretrained`` loads with the logits the model had in memory.
What that checkpoint cannot hold — ``v`` itself (at ``m = 0`` the effective entries are all
zero), the masks and the progress — :meth:`GrowthRamp.save` writes beside it, and
:meth:`GrowthRamp.load` puts back, so training continues the ramp where it stopped.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn
from torch.nn.utils import parametrize

from genlab.core.checkpoint import json_field, load_tensors, read_json
from genlab.errors import GenlabError

RAMP_FILE, MASK_FILE = "growth_ramp.json", "growth_ramp_masks.safetensors"
VALUES_FILE = "growth_ramp_values.safetensors"


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
        self.originals = {name: model.get_parameter(name) for name in masks}
        self.holders = {name: _holders(model, name) for name in masks}
        for name, holders in self.holders.items():
            mask = masks[name].to(self.originals[name].device)
            for path, attr in holders:
                parametrize.register_parametrization(model.get_submodule(path), attr, _Blend(mask, self.level),
                                                     unsafe=True)
        # partial: torch marks its hooks with an attribute, which a bound method cannot take
        self._hooks = [model.register_state_dict_post_hook(partial(self._effective_state)),
                       model.register_load_state_dict_pre_hook(partial(self._parametrized_state))]
        if self.done >= self.steps:
            self.finish()

    @property
    def active(self) -> bool:
        return bool(self._hooks)

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
        if not self.active:
            return
        self.level.fill_(1.0)
        for holders in self.holders.values():
            for path, attr in holders:
                parametrize.remove_parametrizations(self.model.get_submodule(path), attr, leave_parametrized=False)
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    def save(self, directory: Path | str) -> None:
        """Write masks, new values ``v`` and progress beside a ``save_pretrained`` folder (see :meth:`load`).

        ``v`` is stored per parameter as ``(masked entries,)`` in the mask's row-major order.

        A finished ramp has nothing left to continue: it removes any ramp files instead.
        """
        directory = Path(directory)
        if not self.active:
            remove_saved_ramp(directory)
            return
        save_file({name: mask.to(torch.uint8).contiguous() for name, mask in self.masks.items()},
                  str(directory / MASK_FILE))
        save_file({name: self.originals[name].detach()[self.masks[name].to(self.originals[name].device)].cpu()
                   for name in self.masks}, str(directory / VALUES_FILE))
        (directory / RAMP_FILE).write_text(json.dumps({"steps": self.steps, "done": self.done}))

    @classmethod
    def load(cls, model: nn.Module, directory: Path | str) -> GrowthRamp | None:
        """Re-attach the ramp saved in ``directory`` to the model loaded from it; None when there is none.

        The model holds the effective weights ``m · v``; the masked entries get ``v`` back, so
        the logits are unchanged and :meth:`step` continues where the saved ramp stopped.
        """
        directory = Path(directory)
        if not (directory / RAMP_FILE).exists():
            return None
        if not (directory / VALUES_FILE).exists():
            raise GenlabError(f"{directory} has a growth ramp but no {VALUES_FILE}: it was saved by an older genlab "
                              "that lost the new weights; grow the model again")
        masks, values, steps, done = _read_saved_ramp(model, directory)
        with torch.no_grad():
            for name, mask in masks.items():
                parameter = model.get_parameter(name)
                parameter[mask.to(parameter.device)] = values[name].to(parameter.device, parameter.dtype)
        return cls(model, masks, steps, done)

    def _effective_state(self, module: nn.Module, state: dict, prefix: str, metadata: dict) -> None:
        """state_dict post-hook: ``….parametrizations.weight.original`` → ``….weight`` = ``m · v`` where masked."""
        for holders in self.holders.values():
            path, attr = holders[0]
            effective = getattr(self.model.get_submodule(path), attr).detach()  # one tensor for tied holders
            for path, attr in holders:
                del state[prefix + _original_key(path, attr)]
                state[f"{prefix}{path}.{attr}"] = effective

    def _parametrized_state(self, module: nn.Module, state: dict, prefix: str, *_) -> None:
        """load_state_dict pre-hook, the inverse: plain effective weights → the parametrization's ``v``."""
        for name, holders in self.holders.items():
            keys = [f"{prefix}{path}.{attr}" for path, attr in holders]
            if not any(key in state for key in keys):
                continue
            effective = [state.pop(key) for key in keys if key in state][0]
            original = self._original_from(name, effective)
            for path, attr in holders:
                state[prefix + _original_key(path, attr)] = original

    def _original_from(self, name: str, effective: torch.Tensor) -> torch.Tensor:
        """The ``v`` that gives ``effective`` at the current level; at ``m = 0`` the kept ``v``."""
        original = self.originals[name].detach()
        mask = self.masks[name].to(effective.device)
        level = float(self.level)
        if level > 0:
            return torch.where(mask, effective / level, effective)
        if effective[mask].any():
            raise GenlabError(f"{name} has new-part values but this ramp is at m = 0; restore the saved ramp "
                              "(GrowthRamp.load / Grown.from_pretrained) instead of loading plain weights")
        return torch.where(mask, original.to(effective.device, effective.dtype), effective)


def _read_saved_ramp(model: nn.Module, directory: Path) -> tuple[dict, dict, int, int]:
    """``(masks, values, steps, done)`` of the ramp files in ``directory``, checked against ``model``; a
    GenlabError naming the file that is missing, corrupt or does not fit the model."""
    progress_file, mask_file, values_file = directory / RAMP_FILE, directory / MASK_FILE, directory / VALUES_FILE
    progress = read_json(progress_file, f"{progress_file} is missing")
    steps, done = json_field(progress, "steps", int, progress_file), json_field(progress, "done", int, progress_file)
    if steps < 1 or done < 0:
        raise GenlabError(f"{progress_file} is corrupt: need steps >= 1 and done >= 0, got {steps} and {done}")
    masks = {name: mask.bool() for name, mask in load_tensors(mask_file).items()}
    values = load_tensors(values_file)
    if set(values) != set(masks):
        raise GenlabError(f"{values_file} does not fit {mask_file}: they name other parameters")
    for name, mask in masks.items():
        try:
            parameter = model.get_parameter(name)
        except AttributeError as error:
            raise GenlabError(f"{mask_file} does not fit the model in {directory}: it has no parameter {name}") from error
        if mask.shape != parameter.shape:
            raise GenlabError(f"{mask_file} does not fit the model in {directory}: the mask of {name} is "
                              f"{list(mask.shape)}, the parameter {list(parameter.shape)}")
        if values[name].shape != (int(mask.sum()),):
            raise GenlabError(f"{values_file} does not fit {mask_file}: {name} has {list(values[name].shape)} values "
                              f"for {int(mask.sum())} masked entries")
    return masks, values, steps, done


def remove_saved_ramp(directory: Path | str) -> None:
    """Delete the ramp files in ``directory`` (a model saved without an active ramp must not get a stale one)."""
    for file in (RAMP_FILE, MASK_FILE, VALUES_FILE):
        (Path(directory) / file).unlink(missing_ok=True)


def _original_key(path: str, attr: str) -> str:
    return f"{path}.parametrizations.{attr}.original"


def _holders(model: nn.Module, name: str) -> list[tuple[str, str]]:
    """Every ``(module path, attribute)`` holding parameter ``name`` (two for tied embeddings)."""
    parameter = model.get_parameter(name)
    return [(path, attr) for path, module in model.named_modules()
            for attr, held in module._parameters.items() if held is parameter]
