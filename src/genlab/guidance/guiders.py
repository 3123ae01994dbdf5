"""ICG and TSG as ``diffusers.guiders`` guiders, for diffusers' modular pipelines.

A modular pipeline drives its guider once per denoising step::

    guider.set_state(step=i, num_inference_steps=n, timestep=t)
    batches = guider.prepare_inputs({"prompt_embeds": (cond, negative), "time_ids": (...), ...})
    for batch in batches:                 # guider.num_conditions batches
        guider.prepare_models(model)      # may add hooks for this batch
        batch.noise_pred = model(latents, t, **fields of batch)
        guider.cleanup_models(model)      # removes them
    noise_pred = guider(batches).pred     # -> guider.forward(pred_cond=..., pred_uncond=...)

Both guiders here plug into that loop exactly like ``ClassifierFreeGuidance``: two batches
(``pred_cond`` and ``pred_uncond``) while active, one (``pred_cond``) outside ``[start, stop)``
(fractions of the steps, as in diffusers), when disabled, or when the scale makes guidance a
no-op; ``forward`` then returns ``pred_uncond + w·(pred_cond − pred_uncond)`` (or diffusers'
``use_original_formulation`` variant, and the optional ``guidance_rescale``). They differ in how
the second batch is made:

* :class:`ICGGuidance` replaces the condition fields by an *independent* condition built from
  the conditional inputs (the negative inputs are ignored), drawn afresh in every
  ``prepare_inputs``, i.e. every step;
* :class:`TSGGuidance` keeps the conditional inputs and perturbs the model's time-step embedding
  with a forward hook that ``prepare_models`` adds for that batch only and ``cleanup_models``
  removes.

They are ``BaseGuidance`` subclasses with ``register_to_config``, so ``save_pretrained`` /
``from_pretrained`` / ``new`` work as for diffusers' guiders (ICG's maker is a Python callable
and is not saved; ``new`` carries it over).
"""

from __future__ import annotations

import math
from contextlib import ExitStack
from typing import TYPE_CHECKING

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.guiders.guider_utils import BaseGuidance, GuiderOutput, rescale_noise_cfg
from torch import Tensor, nn

from genlab.errors import GenlabError
from genlab.guidance.conditions import ConditionMaker, gaussian_embedding
from genlab.guidance.tsg import perturbed_time_embedding, time_embedding_modules

if TYPE_CHECKING:
    from diffusers.modular_pipelines.modular_pipeline import BlockState

PREDICTIONS = ["pred_cond", "pred_uncond"]


def _in_step_range(guider: BaseGuidance) -> bool:
    """Whether the current step lies in ``[start·n, stop·n)`` (True before any ``set_state``)."""
    if guider._num_inference_steps is None:
        return True
    first = int(guider._start * guider._num_inference_steps)
    last = int(guider._stop * guider._num_inference_steps)
    return first <= guider._step < last


def _scale_is_no_op(scale: float, original_formulation: bool) -> bool:
    """Scale 1 (diffusers' formula) or 0 (original formula) gives back the conditional prediction."""
    return math.isclose(scale, 0.0 if original_formulation else 1.0)


def _combine(guider: BaseGuidance, enabled: bool, pred_cond: Tensor, pred_uncond: Tensor | None) -> GuiderOutput:
    """The guided prediction ``[B, ...]`` from the two batches' predictions (``pred_cond`` if off)."""
    pred = pred_cond
    if enabled:
        base = pred_cond if guider.use_original_formulation else pred_uncond
        pred = base + guider.guidance_scale * (pred_cond - pred_uncond)
    if guider.guidance_rescale > 0.0:
        pred = rescale_noise_cfg(pred, pred_cond, guider.guidance_rescale)
    return GuiderOutput(pred=pred, pred_cond=pred_cond, pred_uncond=pred_uncond)


def _fields_of(data: BlockState, input_fields: dict[str, str | tuple[str, str]]) -> dict[str, Tensor]:
    """The conditional value of each input field present on ``data`` (block-state form of the protocol)."""
    values = {}
    for name, field in input_fields.items():
        value = getattr(data, field if isinstance(field, str) else field[0], None)
        if value is not None:
            values[name] = value
    return values


class ICGGuidance(BaseGuidance):
    """Independent condition guidance (ICG): CFG's formula with an independent condition as "unconditional".

    Reference: Sadat et al., "No Training, No Problem: Rethinking Classifier-Free Guidance for
    Diffusion Models" (2024). ICG needs no model trained with condition dropout: the guidance
    batch uses a condition ŷ drawn independently of the real one.

    Protocol mapping: ``num_conditions`` is 2 while ICG is enabled (step in ``[start, stop)``,
    ``enabled``, scale not a no-op: the same check as CFG's ``_is_cfg_enabled``), else 1.
    ``prepare_inputs(data)`` returns the batches: ``pred_cond`` takes the first element of every
    ``(cond, uncond)`` tuple as CFG does; ``pred_uncond`` also takes the *conditional* element, then
    every field named in ``condition_fields`` is replaced by ``independent_condition(value)``,
    fresh on every call, hence every step. Fields given as one tensor are shared by both batches.
    ``prepare_models`` / ``cleanup_models`` only count batches (no hooks); ``forward`` is CFG's.

    Args:
        guidance_scale: w; 1 means no guidance.
        condition_fields: input names that carry the condition (e.g. ``prompt_embeds`` for SDXL and
            SD3 blocks, ``encoder_hidden_states``, pooled ``text_embeds``, ``class_labels``).
        guidance_rescale: diffusers' rescale factor (0 = off).
        use_original_formulation: guide as ``cond + w·(cond − uncond)`` instead.
        start, stop: fractions of the denoising steps where guidance is on.
        enabled: switch guidance off entirely.
        independent_condition: ``make(cond [B, ...]) -> [B, ...]`` (default Gaussian
            ``randn_like(emb)·emb.std()``); integer fields such as class ids need one, e.g.
            :func:`genlab.guidance.random_class`, and for text :func:`genlab.guidance.random_tokens`.
            Not part of the saved config.
    """

    _input_predictions = PREDICTIONS
    ignore_for_config = ["independent_condition"]

    @register_to_config
    def __init__(self, guidance_scale: float = 7.5,
                 condition_fields: tuple[str, ...] = ("prompt_embeds", "encoder_hidden_states"),
                 guidance_rescale: float = 0.0, use_original_formulation: bool = False,
                 start: float = 0.0, stop: float = 1.0, enabled: bool = True,
                 independent_condition: ConditionMaker | None = None):
        super().__init__(start, stop, enabled)
        self.guidance_scale = guidance_scale
        self.condition_fields = tuple(condition_fields)
        self.guidance_rescale = guidance_rescale
        self.use_original_formulation = use_original_formulation
        self.independent_condition = independent_condition

    def new(self, **kwargs) -> ICGGuidance:
        """A copy with optional config overrides; keeps the maker unless ``independent_condition`` is given."""
        maker = kwargs.pop("independent_condition", self.independent_condition)
        guider = super().new(**kwargs)
        guider.independent_condition = maker
        return guider

    def prepare_inputs(self, data: dict[str, Tensor | tuple[Tensor | None, Tensor | None]]) -> list[BlockState]:
        """The ``pred_cond`` batch, plus the ``pred_uncond`` batch with a fresh independent condition."""
        batches = [self._prepare_batch(data, 0, PREDICTIONS[0])]
        if self.num_conditions == 2:
            batches.append(self._prepare_batch(self._independent(data), 0, PREDICTIONS[1]))
        return batches

    def prepare_inputs_from_block_state(self, data: BlockState,
                                        input_fields: dict[str, str | tuple[str, str]]) -> list[BlockState]:
        """Same as :meth:`prepare_inputs`, reading the conditional fields from a block state."""
        return self.prepare_inputs(_fields_of(data, input_fields))

    def _independent(self, data: dict) -> dict:
        """``data`` with tuples reduced to their conditional element and condition fields redrawn."""
        values = {key: value[0] if isinstance(value, tuple) else value for key, value in data.items()}
        for key in self.condition_fields:
            if isinstance(values.get(key), Tensor):
                values[key] = self._make(key, values[key])
        return values

    def _make(self, key: str, condition: Tensor) -> Tensor:
        """The independent condition for one field, shaped like ``condition``."""
        if self.independent_condition is not None:
            return self.independent_condition(condition)
        if not condition.is_floating_point():
            raise GenlabError(
                f"ICGGuidance: input {key!r} holds integer ids, which the default Gaussian condition cannot "
                "replace; pass independent_condition (e.g. genlab.guidance.random_class(num_classes))"
            )
        return gaussian_embedding()(condition)

    def forward(self, pred_cond: Tensor, pred_uncond: Tensor | None = None) -> GuiderOutput:
        """``pred_uncond + w·(pred_cond − pred_uncond)``, or ``pred_cond`` while ICG is off."""
        return _combine(self, self._is_icg_enabled(), pred_cond, pred_uncond)

    @property
    def is_conditional(self) -> bool:
        return self._count_prepared == 1

    @property
    def num_conditions(self) -> int:
        return 2 if self._is_icg_enabled() else 1

    def _is_icg_enabled(self) -> bool:
        return (self._enabled and _in_step_range(self)
                and not _scale_is_no_op(self.guidance_scale, self.use_original_formulation))


class TSGGuidance(BaseGuidance):
    """Time-step guidance (TSG): guide away from the model run with a noisy time-step embedding.

    Reference: Sadat et al. (2024), as :class:`ICGGuidance`. Both batches use the conditional
    inputs; in the second one the model's time-step embedding ``e`` becomes
    ``e + s·t^α·n·std(e)`` (``n ~ N(0, I)``, fresh each call, ``t = timestep /
    num_train_timesteps`` clamped to [0, 1], and 1 before any ``set_state``).

    Protocol mapping: ``num_conditions`` is 2 while TSG is enabled (step in ``[start, stop)``,
    ``enabled``, scale not a no-op, ``noise_scale > 0``), else 1. ``prepare_inputs`` gives both
    batches the conditional elements; the second is named ``pred_uncond`` so that ``forward`` has
    CFG's signature, though it is the *perturbed conditional* prediction (``is_conditional`` is
    True for both). ``prepare_models(model)``, on the second batch, adds forward hooks on the
    time-embedding module(s) found by :func:`genlab.guidance.time_embedding_modules` (a UNet's
    ``time_embedding``; each DiT block's ``norm1.emb.timestep_embedder``, of which
    ``first_blocks`` selects the first N); ``cleanup_models`` removes them, as
    ``SkipLayerGuidance`` does with its layer-skip hooks. Plain torch forward hooks are used (via
    :func:`genlab.guidance.perturbed_time_embedding`), so they compose with diffusers' hook registry.

    Args:
        guidance_scale: w; 1 means no guidance.
        noise_scale: s, the noise in units of the embedding's std (0 = off).
        noise_exponent: α; 0 gives a constant noise level.
        start, stop: fractions of the denoising steps where guidance is on.
        first_blocks: perturb only the first N blocks' embeddings (per-block models such as DiT).
        num_train_timesteps: the model's timestep range, to turn ``timestep`` into ``t``.
        guidance_rescale: diffusers' rescale factor (0 = off).
        use_original_formulation: guide as ``cond + w·(cond − perturbed)`` instead.
        enabled: switch guidance off entirely.
    """

    _input_predictions = PREDICTIONS

    @register_to_config
    def __init__(self, guidance_scale: float = 3.0, noise_scale: float = 1.0, noise_exponent: float = 0.0,
                 start: float = 0.0, stop: float = 1.0, first_blocks: int | None = None,
                 num_train_timesteps: int = 1000, guidance_rescale: float = 0.0,
                 use_original_formulation: bool = False, enabled: bool = True):
        super().__init__(start, stop, enabled)
        for name, value in (("noise_scale", noise_scale), ("noise_exponent", noise_exponent)):
            if not (math.isfinite(value) and value >= 0):
                raise GenlabError(f"TSGGuidance {name} must be a finite number >= 0, got {value}")
        if num_train_timesteps < 1:
            raise GenlabError(f"TSGGuidance num_train_timesteps must be at least 1, got {num_train_timesteps}")
        self.guidance_scale = guidance_scale
        self.noise_scale = noise_scale
        self.noise_exponent = noise_exponent
        self.first_blocks = first_blocks
        self.num_train_timesteps = num_train_timesteps
        self.guidance_rescale = guidance_rescale
        self.use_original_formulation = use_original_formulation
        self._hooks: ExitStack | None = None

    def set_state(self, step: int, num_inference_steps: int, timestep: Tensor) -> None:
        """Start a step (removing hooks left by a step that failed between prepare and cleanup)."""
        self._remove_hooks()
        super().set_state(step, num_inference_steps, timestep)

    def prepare_inputs(self, data: dict[str, Tensor | tuple[Tensor | None, Tensor | None]]) -> list[BlockState]:
        """``num_conditions`` batches, all with the conditional inputs."""
        return [self._prepare_batch(data, 0, name) for name in PREDICTIONS[: self.num_conditions]]

    def prepare_inputs_from_block_state(self, data: BlockState,
                                        input_fields: dict[str, str | tuple[str, str]]) -> list[BlockState]:
        """Same as :meth:`prepare_inputs`, reading the conditional fields from a block state."""
        return self.prepare_inputs(_fields_of(data, input_fields))

    def prepare_models(self, denoiser: nn.Module) -> None:
        """Count the batch; on the guidance batch, hook the time embedding(s) of ``denoiser``."""
        self._count_prepared += 1
        if self._count_prepared == 2 and self._is_tsg_enabled():
            modules = time_embedding_modules(denoiser, self.first_blocks)
            self._hooks = ExitStack()
            self._hooks.enter_context(perturbed_time_embedding(modules, slice(None), self._noise_level()))

    def cleanup_models(self, denoiser: nn.Module) -> None:
        """Remove the hooks added by :meth:`prepare_models` (no-op after the conditional batch)."""
        self._remove_hooks()

    def _remove_hooks(self) -> None:
        if self._hooks is not None:
            self._hooks.close()
            self._hooks = None

    def _noise_level(self) -> Tensor:
        """``s·t^α`` for the current step, shape ``[1]``."""
        timestep = torch.as_tensor(self._timestep if self._timestep is not None else self.num_train_timesteps)
        t = (timestep.float().flatten()[:1] / self.num_train_timesteps).clamp(0, 1)
        return self.noise_scale * t.pow(self.noise_exponent)

    def forward(self, pred_cond: Tensor, pred_uncond: Tensor | None = None) -> GuiderOutput:
        """``perturbed + w·(pred_cond − perturbed)`` (``pred_uncond`` is the perturbed prediction)."""
        return _combine(self, self._is_tsg_enabled(), pred_cond, pred_uncond)

    @property
    def is_conditional(self) -> bool:
        return True

    @property
    def num_conditions(self) -> int:
        return 2 if self._is_tsg_enabled() else 1

    def _is_tsg_enabled(self) -> bool:
        return (self._enabled and _in_step_range(self) and self.noise_scale > 0
                and not _scale_is_no_op(self.guidance_scale, self.use_original_formulation))
