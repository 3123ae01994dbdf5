"""ICG and TSG as ``diffusers.guiders`` guiders, for diffusers' modular pipelines.

A modular pipeline drives its guider once per denoising step::

    guider.set_state(step=i, num_inference_steps=n, timestep=t)
    batches = guider.prepare_inputs({"prompt_embeds": (cond, negative), "time_ids": (...), ...})
    for batch in batches:                 # guider.num_conditions batches
        guider.prepare_models(model)      # may add hooks for this batch
        batch.noise_pred = model(latents, t, **fields of batch)
        guider.cleanup_models(model)      # removes them
    noise_pred = guider(batches).pred     # -> guider.forward(pred_cond=..., pred_uncond=...)

The guiders here plug into that loop like ``ClassifierFreeGuidance``: ``pred_cond`` first, then
one batch per guidance term while it is active (step inside ``[start, stop)``, fractions of the
steps as in diffusers; enabled; scale not a no-op). Inputs keep diffusers' form: each
``(cond, uncond)`` pair gives a batch its ``cond`` (``(None, None)`` gives None, so the field stays
on the batch as the blocks expect), and a single value is shared by all batches. The guided
prediction is ``D_c + Σ (w − 1)·(D_c − D_g)``, i.e. CFG's ``D_g + w·(D_c − D_g)`` for one term
(diffusers' ``use_original_formulation`` and ``guidance_rescale`` are supported). The terms:

* :class:`ICGGuidance` (batch ``pred_uncond``): the condition fields (text, pooled text and
  image embeddings by default) replaced by an *independent* condition built from the conditional
  inputs (the negative inputs are ignored), drawn afresh in every ``prepare_inputs``, i.e. every step;
* :class:`TSGGuidance` (batch ``pred_uncond``): the conditional inputs, with the model's time-step
  embedding perturbed by a forward hook that ``prepare_models`` adds for that batch only and
  ``cleanup_models`` removes;
* :class:`ICGTSGGuidance`: both terms at once (batches ``pred_icg`` and ``pred_tsg``), since a
  modular pipeline runs one guider.

Random draws (ICG's independent conditions, TSG's embedding noise) come from a CPU generator that
each guider holds, seeded from its ``seed`` setting (default 0) and seeded again at step 0 of every
run (``set_state(step=0, ...)``), so the same pipeline call with the same pipeline ``generator``
gives the same images however often it runs and whatever used torch's global RNG before; use
``guider.new(seed=...)`` for other guidance draws. A user's ``independent_condition`` that takes
``generator=`` is given this generator.

They are ``BaseGuidance`` subclasses with ``register_to_config``, so ``save_pretrained`` /
``from_pretrained`` / ``new`` work as for diffusers' guiders (ICG's maker is a Python callable
and is not saved; ``new`` carries it over). In a modular pipeline::

    pipe = StableDiffusionXLAutoBlocks().init_pipeline("stabilityai/stable-diffusion-xl-base-1.0")
    pipe.load_components(torch_dtype=torch.float16)
    pipe.update_components(guider=ICGGuidance(guidance_scale=7.5))   # or TSGGuidance, ICGTSGGuidance
    image = pipe(prompt="a cat", output="images")[0]
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.guiders.guider_utils import BaseGuidance, GuiderOutput, rescale_noise_cfg
from torch import Tensor, nn

from genlab.core.cfg import ConditionMaker, guided_prediction
from genlab.errors import GenlabError
from genlab.guidance.conditions import gaussian_embedding
from genlab.guidance.rng import call_maker, guidance_generator, guidance_seed
from genlab.guidance.tsg import perturbed_time_embedding, time_embedding_modules

if TYPE_CHECKING:
    from diffusers.modular_pipelines.modular_pipeline import BlockState

PREDICTIONS = ["pred_cond", "pred_uncond"]
# Inputs that carry the condition in diffusers' denoise steps and models: the SDXL blocks'
# prompt_embeds, pooled text_embeds and IP-adapter image_embeds; the SD3 blocks' encoder_hidden_states
# and pooled text_embeds; the SD3 / Flux transformers' pooled_projections; encoder_hidden_states(_2)
# of the Flux2, Wan, QwenImage, HunyuanVideo blocks. Masks, ids and size conditioning (time_ids) are
# not conditions and keep their conditional values.
CONDITION_FIELDS = ("prompt_embeds", "encoder_hidden_states", "encoder_hidden_states_2", "text_embeds",
                    "pooled_projections", "image_embeds")

# prepare_inputs' argument: each field is one value shared by all batches or a (cond, uncond) pair.
Inputs = dict[str, Any]


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


def _guide(guider: BaseGuidance, pred_cond: Tensor, terms: list[tuple[float, Tensor | None]]) -> Tensor:
    """``D_c + Σ (w − 1)·(D_c − D_g)`` over the terms ``(w, D_g)`` that ran, then diffusers' rescale.

    All predictions are ``[B, ...]``; a term whose ``D_g`` is None (its batch did not run) adds
    nothing. One term gives CFG's ``D_g + w·(D_c − D_g)``; with ``use_original_formulation`` each
    weight is ``w`` instead, i.e. ``D_c + w·(D_c − D_g)``.
    """
    offset = 0.0 if guider.use_original_formulation else 1.0
    pred = guided_prediction(pred_cond, [(scale - offset, pred_guidance) for scale, pred_guidance in terms
                                         if pred_guidance is not None])
    if guider.guidance_rescale > 0.0:
        pred = rescale_noise_cfg(pred, pred_cond, guider.guidance_rescale)
    return pred


def _pairs_of(data: BlockState, input_fields: dict[str, str | tuple[str, str]]) -> Inputs:
    """``prepare_inputs``' argument read from a block state: each field's conditional attribute, paired.

    As in diffusers' ``_prepare_batch_from_block_state``, a field whose attribute ``data`` lacks
    is left out and one whose attribute is None stays None. Only the conditional attribute is
    read (``(cond, cond)``), since no batch of these guiders uses the unconditional one.
    """
    pairs = {}
    for name, field in input_fields.items():
        attribute = field if isinstance(field, str) else field[0]
        if hasattr(data, attribute):
            value = getattr(data, attribute)
            pairs[name] = (value, value)
    return pairs


class _GenlabGuidance(BaseGuidance, ABC):
    """The batch bookkeeping that genlab's guiders share.

    A subclass lists the predictions that run at the current step in ``_active_predictions``
    (``pred_cond`` first). The batch of ``_independent_prediction`` gets ICG's independent condition
    (``_independent``), every other batch the conditional inputs; while the batch of
    ``_perturbed_prediction`` runs, TSG's hooks (``_perturb``) noise the time-step embedding.
    """

    _input_predictions = PREDICTIONS
    _independent_prediction: str | None = None
    _perturbed_prediction: str | None = None
    _hooks: ExitStack | None = None
    _generator: torch.Generator | None = None

    def _seed_draws(self, seed: int) -> None:
        """Check ``seed`` and (re)start the guider's generator from it."""
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise GenlabError(f"{type(self).__name__} seed must be an integer >= 0, got {seed!r}")
        self.seed = seed
        self._generator = guidance_generator(seed)

    @property
    def generator(self) -> torch.Generator:
        """The RNG of this guider's draws (seeded from ``seed``; again at step 0 of every run)."""
        if self._generator is None:
            self._generator = guidance_generator(getattr(self, "seed", 0))
        return self._generator

    @abstractmethod
    def _active_predictions(self) -> list[str]:
        """The predictions whose batches run at the current step, ``pred_cond`` first."""

    def _term_on(self, scale: float) -> bool:
        """Whether a term of scale w runs now: enabled, step in ``[start, stop)``, w not a no-op."""
        return (self._enabled and _in_step_range(self)
                and not _scale_is_no_op(scale, self.use_original_formulation))

    def _current_prediction(self) -> str | None:
        """The prediction whose batch ``prepare_models`` was last called for (None before the first)."""
        active = self._active_predictions()
        return active[self._count_prepared - 1] if 0 < self._count_prepared <= len(active) else None

    def prepare_inputs(self, data: Inputs) -> list[BlockState]:
        """One batch per active prediction; a ``(cond, uncond)`` pair gives ``cond`` (or ICG's ŷ).

        Pairs keep diffusers' form: ``(None, None)`` gives the field None, as for CFG, so a model
        input such as SDXL's ``image_embeds`` stays present; a single value is shared by all batches.
        """
        return [self._prepare_batch(self._independent(data), 1, name) if name == self._independent_prediction
                else self._prepare_batch(data, 0, name) for name in self._active_predictions()]

    def prepare_inputs_from_block_state(self, data: BlockState,
                                        input_fields: dict[str, str | tuple[str, str]]) -> list[BlockState]:
        """Same as :meth:`prepare_inputs`, reading the conditional fields from a block state."""
        return self.prepare_inputs(_pairs_of(data, input_fields))

    def set_state(self, step: int, num_inference_steps: int, timestep: Tensor) -> None:
        """Start a step (removing hooks left by a step that failed between prepare and cleanup).

        Step 0 starts a run: the generator is seeded again from ``seed``, so every run draws alike.
        """
        self._remove_hooks()
        if step == 0:
            self.generator.manual_seed(guidance_seed(getattr(self, "seed", 0)))
        super().set_state(step, num_inference_steps, timestep)

    def prepare_models(self, denoiser: nn.Module) -> None:
        """Count the batch; before the TSG batch, hook the time embedding(s) of ``denoiser``."""
        self._count_prepared += 1
        current = self._current_prediction()
        if current is not None and current == self._perturbed_prediction:
            self._perturb(denoiser)

    def cleanup_models(self, denoiser: nn.Module) -> None:
        """Remove the hooks added by :meth:`prepare_models` (no-op after the other batches)."""
        self._remove_hooks()

    def _remove_hooks(self) -> None:
        if self._hooks is not None:
            self._hooks.close()
            self._hooks = None

    @property
    def is_conditional(self) -> bool:
        """False only for ICG's batch (the one with the independent condition)."""
        return self._current_prediction() != self._independent_prediction

    @property
    def num_conditions(self) -> int:
        return len(self._active_predictions())


class _IndependentCondition:
    """ICG's part of a guider: the batch's condition fields redrawn independently of the real ones.

    Needs ``condition_fields`` and ``independent_condition`` (a maker or None, not saved) on the guider.
    """

    ignore_for_config = ["independent_condition"]

    def new(self, **kwargs):
        """A copy with optional config overrides; keeps the maker unless ``independent_condition`` is given."""
        maker = kwargs.pop("independent_condition", self.independent_condition)
        guider = super().new(**kwargs)
        guider.independent_condition = maker
        return guider

    def _independent(self, data: Inputs) -> Inputs:
        """``data`` as ``(cond, ŷ)`` pairs for tuple index 1, with ŷ drawn now for the condition fields.

        Other pairs become ``(cond, cond)`` (so ``(None, None)`` stays), single values stay shared,
        and a condition field given as a single value gets ŷ all the same.
        """
        return {key: self._pair(key, value) for key, value in data.items()}

    def _pair(self, key: str, value: Any) -> Any:
        cond = value[0] if isinstance(value, tuple) else value
        if key in self.condition_fields and cond is not None:
            return cond, self._make(key, cond)
        return (cond, cond) if isinstance(value, tuple) else value

    def _make(self, key: str, condition: Tensor | list[Tensor]) -> Tensor | list[Tensor]:
        """ŷ for one field, shaped like ``condition`` (``[B, ...]``, or a list of them: IP-adapters)."""
        if isinstance(condition, list):
            return [self._make(key, item) for item in condition]
        if not isinstance(condition, Tensor):
            raise GenlabError(f"ICGGuidance: input {key!r} is a {type(condition).__name__}, not a tensor, so it "
                              "cannot be redrawn; leave it out of condition_fields")
        if self.independent_condition is not None:
            return call_maker(self.independent_condition, condition, self.generator)
        if not condition.is_floating_point():
            raise GenlabError(
                f"ICGGuidance: input {key!r} holds integer ids, which the default Gaussian condition cannot "
                "replace; pass independent_condition (e.g. genlab.guidance.random_class(num_classes))"
            )
        return gaussian_embedding()(condition, generator=self.generator)


class _TimeStepNoise:
    """TSG's part of a guider: hooks that noise the denoiser's time-step embedding.

    Its settings ``noise_scale``, ``noise_exponent``, ``first_blocks``, ``num_train_timesteps`` and
    ``time_embedding`` are kept by :meth:`_set_time_step_noise`.
    """

    def _set_time_step_noise(self, noise_scale: float, noise_exponent: float, first_blocks: int | None,
                             num_train_timesteps: int, time_embedding: str | None) -> None:
        """Keep TSG's settings; GenlabError unless s and α are finite and >= 0 and the timestep range is positive."""
        owner = type(self).__name__
        for name, value in (("noise_scale", noise_scale), ("noise_exponent", noise_exponent)):
            if not (math.isfinite(value) and value >= 0):
                raise GenlabError(f"{owner} {name} must be a finite number >= 0, got {value}")
        if num_train_timesteps < 1:
            raise GenlabError(f"{owner} num_train_timesteps must be at least 1, got {num_train_timesteps}")
        self.noise_scale, self.noise_exponent, self.first_blocks = noise_scale, noise_exponent, first_blocks
        self.num_train_timesteps, self.time_embedding = num_train_timesteps, time_embedding

    def _perturb(self, denoiser: nn.Module) -> None:
        """Hook the time embedding(s) of ``denoiser`` until ``_remove_hooks``."""
        modules = time_embedding_modules(denoiser, self.first_blocks, self.time_embedding)
        self._hooks = ExitStack()
        self._hooks.enter_context(perturbed_time_embedding(modules, slice(None), self._noise_level(), self.generator))

    def _noise_level(self) -> Tensor:
        """``s·t^α`` for the current step, shape ``[1]``."""
        timestep = torch.as_tensor(self._timestep if self._timestep is not None else self.num_train_timesteps)
        t = (timestep.float().flatten()[:1] / self.num_train_timesteps).clamp(0, 1)
        return self.noise_scale * t.pow(self.noise_exponent)


class ICGGuidance(_IndependentCondition, _GenlabGuidance):
    """Independent condition guidance (ICG): CFG's formula with an independent condition as "unconditional".

    Reference: Sadat et al., "No Training, No Problem: Rethinking Classifier-Free Guidance for
    Diffusion Models" (2024). ICG needs no model trained with condition dropout: the guidance
    batch uses a condition ŷ drawn independently of the real one.

    Protocol mapping: ``num_conditions`` is 2 while ICG is enabled (step in ``[start, stop)``,
    ``enabled``, scale not a no-op: the same check as CFG's ``_is_cfg_enabled``), else 1.
    ``prepare_inputs(data)`` returns the batches: ``pred_cond`` takes the first element of every
    ``(cond, uncond)`` tuple as CFG does; ``pred_uncond`` also takes the *conditional* element, then
    every field named in ``condition_fields`` is replaced by ``independent_condition(value)``,
    fresh on every call, hence every step. ``(None, None)`` fields stay None and fields given as one
    value are shared by both batches. ``prepare_models`` / ``cleanup_models`` only count batches (no
    hooks); ``forward`` is CFG's.

    Args:
        guidance_scale: w; 1 means no guidance.
        condition_fields: input names that carry the condition; the default
            :data:`CONDITION_FIELDS` covers diffusers' SDXL, SD3, Flux-style and Wan pipelines
            (text embeddings, pooled text embeddings, IP-adapter image embeddings). Add e.g.
            ``class_labels`` for class models.
        guidance_rescale: diffusers' rescale factor (0 = off).
        use_original_formulation: guide as ``cond + w·(cond − uncond)`` instead.
        start, stop: fractions of the denoising steps where guidance is on.
        enabled: switch guidance off entirely.
        independent_condition: ``make(cond [B, ...]) -> [B, ...]`` (default Gaussian
            ``randn_like(emb)·emb.std()``); integer fields such as class ids need one, e.g.
            :func:`genlab.guidance.random_class`, and for text :func:`genlab.guidance.random_tokens`.
            Not part of the saved config.
        seed: seed of the independent conditions' generator (seeded again at step 0 of every run).
    """

    _independent_prediction = "pred_uncond"

    @register_to_config
    def __init__(self, guidance_scale: float = 7.5, condition_fields: tuple[str, ...] = CONDITION_FIELDS,
                 guidance_rescale: float = 0.0, use_original_formulation: bool = False,
                 start: float = 0.0, stop: float = 1.0, enabled: bool = True,
                 independent_condition: ConditionMaker | None = None, seed: int = 0):
        super().__init__(start, stop, enabled)
        self._seed_draws(seed)
        self.guidance_scale = guidance_scale
        self.condition_fields = tuple(condition_fields)
        self.guidance_rescale = guidance_rescale
        self.use_original_formulation = use_original_formulation
        self.independent_condition = independent_condition

    def _active_predictions(self) -> list[str]:
        return PREDICTIONS[: 1 + self._term_on(self.guidance_scale)]

    def forward(self, pred_cond: Tensor, pred_uncond: Tensor | None = None) -> GuiderOutput:
        """``pred_uncond + w·(pred_cond − pred_uncond)``, or ``pred_cond`` while ICG is off."""
        pred = _guide(self, pred_cond, [(self.guidance_scale, pred_uncond)])
        return GuiderOutput(pred=pred, pred_cond=pred_cond, pred_uncond=pred_uncond)


class TSGGuidance(_TimeStepNoise, _GenlabGuidance):
    """Time-step guidance (TSG): guide away from the model run with a noisy time-step embedding.

    Reference: Sadat et al. (2024), as :class:`ICGGuidance`. Both batches use the conditional
    inputs; in the second one the model's time-step embedding ``e`` becomes
    ``e + s·t^α·n·std(e)`` (``n ~ N(0, I)``, fresh each call from the guider's generator, ``t = timestep /
    num_train_timesteps`` clamped to [0, 1], and 1 before any ``set_state``).

    Protocol mapping: ``num_conditions`` is 2 while TSG is enabled (step in ``[start, stop)``,
    ``enabled``, scale not a no-op, ``noise_scale > 0``), else 1. ``prepare_inputs`` gives both
    batches the conditional elements; the second is named ``pred_uncond`` so that ``forward`` has
    CFG's signature, though it is the *perturbed conditional* prediction (``is_conditional`` is
    True for both). ``prepare_models(model)``, on the second batch, adds forward hooks on the
    time-embedding module(s) found by :func:`genlab.guidance.time_embedding_modules` (a UNet's
    ``time_embedding``; SD3's and Flux's ``time_text_embed.timestep_embedder``; Wan's
    ``condition_embedder.time_embedder``; each DiT block's ``norm1.emb.timestep_embedder``, of which
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
        time_embedding: dotted name of the denoiser's module whose output is the time-step
            embedding (e.g. ``"time_text_embed.timestep_embedder"``), for models genlab does not
            find on its own; None searches the known names.
        seed: seed of the embedding noise's generator (seeded again at step 0 of every run).
    """

    _perturbed_prediction = "pred_uncond"

    @register_to_config
    def __init__(self, guidance_scale: float = 3.0, noise_scale: float = 1.0, noise_exponent: float = 0.0,
                 start: float = 0.0, stop: float = 1.0, first_blocks: int | None = None,
                 num_train_timesteps: int = 1000, guidance_rescale: float = 0.0,
                 use_original_formulation: bool = False, enabled: bool = True, time_embedding: str | None = None,
                 seed: int = 0):
        super().__init__(start, stop, enabled)
        self._set_time_step_noise(noise_scale, noise_exponent, first_blocks, num_train_timesteps, time_embedding)
        self._seed_draws(seed)
        self.guidance_scale = guidance_scale
        self.guidance_rescale = guidance_rescale
        self.use_original_formulation = use_original_formulation

    def _active_predictions(self) -> list[str]:
        return PREDICTIONS[: 1 + (self._term_on(self.guidance_scale) and self.noise_scale > 0)]

    def forward(self, pred_cond: Tensor, pred_uncond: Tensor | None = None) -> GuiderOutput:
        """``perturbed + w·(pred_cond − perturbed)`` (``pred_uncond`` is the perturbed prediction)."""
        pred = _guide(self, pred_cond, [(self.guidance_scale, pred_uncond)])
        return GuiderOutput(pred=pred, pred_cond=pred_cond, pred_uncond=pred_uncond)

    @property
    def is_conditional(self) -> bool:
        return True


class ICGTSGGuidance(_IndependentCondition, _TimeStepNoise, _GenlabGuidance):
    """ICG and TSG together, as one diffusers guider (a modular pipeline runs a single guider).

    With the conditional prediction ``D_c``, ICG's ``D_icg`` (independent condition) and TSG's
    ``D_tsg`` (conditional inputs, noisy time-step embedding),

        D̂ = D_c + (w_icg − 1)·(D_c − D_icg) + (w_tsg − 1)·(D_c − D_tsg)

    which is genlab's ``--guidance icg+tsg`` (:class:`genlab.guidance.GuidedDenoiser`); each term
    drops out (and its batch is not run) when its scale is a no-op, TSG's also when
    ``noise_scale`` is 0, both outside ``[start, stop)`` or when disabled. Batches, in order:
    ``pred_cond``, ``pred_icg``, ``pred_tsg``; the other settings mean what they mean for
    :class:`ICGGuidance` and :class:`TSGGuidance` (``use_original_formulation`` makes each weight
    ``w`` instead of ``w − 1``; ``seed`` seeds the one generator that both terms draw from).
    """

    _input_predictions = ["pred_cond", "pred_icg", "pred_tsg"]
    _independent_prediction = "pred_icg"
    _perturbed_prediction = "pred_tsg"

    @register_to_config
    def __init__(self, icg_scale: float = 7.5, tsg_scale: float = 3.0, noise_scale: float = 1.0,
                 noise_exponent: float = 0.0, condition_fields: tuple[str, ...] = CONDITION_FIELDS,
                 first_blocks: int | None = None, num_train_timesteps: int = 1000, guidance_rescale: float = 0.0,
                 use_original_formulation: bool = False, start: float = 0.0, stop: float = 1.0,
                 enabled: bool = True, time_embedding: str | None = None,
                 independent_condition: ConditionMaker | None = None, seed: int = 0):
        super().__init__(start, stop, enabled)
        self._set_time_step_noise(noise_scale, noise_exponent, first_blocks, num_train_timesteps, time_embedding)
        self._seed_draws(seed)
        self.icg_scale = icg_scale
        self.tsg_scale = tsg_scale
        self.condition_fields = tuple(condition_fields)
        self.guidance_rescale = guidance_rescale
        self.use_original_formulation = use_original_formulation
        self.independent_condition = independent_condition

    def _active_predictions(self) -> list[str]:
        icg = self._term_on(self.icg_scale)
        tsg = self._term_on(self.tsg_scale) and self.noise_scale > 0
        return ["pred_cond"] + ["pred_icg"] * icg + ["pred_tsg"] * tsg

    def forward(self, pred_cond: Tensor, pred_icg: Tensor | None = None,
                pred_tsg: Tensor | None = None) -> GuiderOutput:
        """``D̂`` from the predictions of the batches that ran (``pred_uncond`` of the output is None)."""
        pred = _guide(self, pred_cond, [(self.icg_scale, pred_icg), (self.tsg_scale, pred_tsg)])
        return GuiderOutput(pred=pred, pred_cond=pred_cond, pred_uncond=None)
