"""Guided sampling of real diffusers pipelines with genlab's EDM samplers and guidance terms.

:func:`guided_pipeline_sample` takes a loaded ``StableDiffusionPipeline`` (text-to-image) or
``DiTPipeline`` (class-to-image), wraps its denoising network with
:class:`~genlab.core.denoiser.DiffusersDenoiser` and :class:`~genlab.guidance.GuidedDenoiser`,
samples latents with :func:`genlab.core.edm.sample` on a Karras σ schedule spanning the model's
noise range, and decodes them with the pipeline's VAE. Any mix of CFG, ICG and TSG terms costs
one batched network call per denoiser evaluation.

Conditions:

* Stable Diffusion: the prompt is encoded by the pipeline's tokenizer and text encoder into
  ``encoder_hidden_states [N, L, D]``. CFG's null condition is the encoded ``negative_prompt``;
  ICG's independent condition is either uniformly random tokens (BOS/EOS/padding excluded, length
  ``tokenizer.model_max_length``) through the text encoder, or ``randn_like(emb) · emb.std()``.
* DiT: ``class_labels [N]`` in ``[0, num_classes)`` with ``num_classes =
  transformer.config.num_embeds_ada_norm``; CFG's null label is ``num_classes`` (the extra row of
  diffusers' ``LabelEmbedding``), ICG draws uniformly random classes.

TSG perturbs the UNet's ``time_embedding`` or each DiT block's ``norm1.emb.timestep_embedder``
(see :func:`~genlab.guidance.time_embedding_modules`); the hooks exist only during each call.
The initial noise comes from ``generator``; ICG's and TSG's fresh draws come from a generator
seeded by a number drawn from ``generator`` right after the noise, so one seeded ``generator``
makes the whole guided sample reproducible (without ``generator``, that number comes from
torch's global RNG, as the noise does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers import DiTPipeline, StableDiffusionPipeline
from diffusers.utils.torch_utils import randn_tensor
from torch import Tensor

from genlab.core.cfg import ConditionMaker, fixed_embedding
from genlab.core.denoiser import DiffusersDenoiser
from genlab.core.edm import karras_sigmas, sample
from genlab.core.pipelines import latent_side, vae_decode, vae_scale_factor
from genlab.errors import GenlabError
from genlab.guidance.conditions import gaussian_embedding, random_tokens
from genlab.guidance.guided import GuidanceTerm, GuidedDenoiser, guide_class_model

SUPPORTED_PIPELINES = (StableDiffusionPipeline, DiTPipeline)
ICG_CONDITIONS = ("tokens", "gaussian")
OUTPUT_TYPES = ("pt", "latent")


@dataclass
class _Plan:
    """What one pipeline type contributes: the guided denoiser, its condition and the latent shape."""

    denoiser: GuidedDenoiser
    condition: dict[str, Tensor]
    latent_shape: tuple[int, ...]


@torch.no_grad()
def guided_pipeline_sample(
    pipeline, terms: list[GuidanceTerm], *, prompt: str | list[str] | None = None,
    negative_prompt: str | list[str] = "", class_labels: list[int] | Tensor | None = None,
    num_images: int = 1, steps: int = 18, sampler: str = "heun", height: int | None = None,
    width: int | None = None, icg_condition: str | None = None, generator: torch.Generator | None = None,
    output_type: str = "pt",
) -> Tensor:
    """Sample a diffusers pipeline's model with genlab's sampler and guidance terms.

    Args:
        pipeline: a ``StableDiffusionPipeline`` or ``DiTPipeline`` (or a subclass).
        terms: guidance terms (CFG, ICG, TSG, combinable); ``[]`` samples the plain conditional model.
        prompt: text prompt(s), Stable Diffusion only.
        negative_prompt: CFG's null condition, one for all prompts or one per prompt (Stable Diffusion).
        class_labels: class ids, DiT only.
        num_images: images per prompt or class label.
        steps: number of noise levels (Heun makes ``2·steps − 1`` model calls, Euler ``steps``).
        sampler: ``"heun"`` or ``"euler"``.
        height, width: image size in pixels (default: the model's native size).
        icg_condition: Stable Diffusion's ICG condition, ``"tokens"`` (default) or ``"gaussian"``.
        generator: RNG for the initial noise and the seed of the guidance draws (ICG, TSG).
        output_type: ``"pt"`` for images, ``"latent"`` for the sampled latents.

    Returns:
        Images ``[N, 3, height, width]`` in ``[-1, 1]`` with ``N = len(prompts or labels) · num_images``
        (``output_type="pt"``), or latents ``[N, C, height / f, width / f]`` (``"latent"``).
    """
    if num_images < 1:
        raise GenlabError(f"num_images must be at least 1, got {num_images}")
    if output_type not in OUTPUT_TYPES:
        raise GenlabError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
    if isinstance(pipeline, StableDiffusionPipeline):
        _reject(class_labels, "class_labels", pipeline)
        plan = _text_plan(pipeline, terms, prompt, negative_prompt, num_images, height, width, icg_condition)
    elif isinstance(pipeline, DiTPipeline):
        _reject(prompt, "prompt", pipeline)
        _reject(icg_condition, "icg_condition", pipeline)
        plan = _class_plan(pipeline, terms, class_labels, num_images, height, width)
    else:
        supported = ", ".join(kind.__name__ for kind in SUPPORTED_PIPELINES)
        raise GenlabError(f"pipeline: {type(pipeline).__name__} is not supported; use one of {supported}")
    latents = _sample_latents(plan, steps, sampler, generator, pipeline.device)
    return latents if output_type == "latent" else vae_decode(pipeline.vae, latents)


def _reject(value, name: str, pipeline) -> None:
    """GenlabError if an argument that ``pipeline``'s type does not use was given."""
    if value is not None:
        raise GenlabError(f"{name} does not apply to a {type(pipeline).__name__}")


def _uses(terms: list[GuidanceTerm], method: str) -> bool:
    return any(term.method == method for term in terms)


def _text_plan(pipeline: StableDiffusionPipeline, terms: list[GuidanceTerm], prompt, negative_prompt,
               num_images: int, height: int | None, width: int | None, icg_condition: str | None) -> _Plan:
    """Encode the prompts, build the makers and the guided UNet for a Stable Diffusion pipeline."""
    prompts = _texts(prompt, "prompt")
    if prompts is None:
        raise GenlabError("prompt: a StableDiffusionPipeline needs a prompt")
    icg_condition = icg_condition or "tokens"
    if icg_condition not in ICG_CONDITIONS:
        raise GenlabError(f"icg_condition must be one of {ICG_CONDITIONS}, got {icg_condition!r}")
    encode = _text_encoder(pipeline)
    embeddings = encode(_tokenize(pipeline.tokenizer, prompts)).repeat_interleave(num_images, dim=0)
    null = None
    if _uses(terms, "cfg"):
        negatives = _texts(negative_prompt, "negative_prompt") or [""]
        if len(negatives) not in (1, len(prompts)):
            raise GenlabError(f"negative_prompt: give one, or one per prompt ({len(prompts)}), got {len(negatives)}")
        negative = encode(_tokenize(pipeline.tokenizer, negatives))
        null = fixed_embedding(negative if len(negatives) == 1 else negative.repeat_interleave(num_images, dim=0))
    independent = _text_icg(pipeline, encode, icg_condition) if _uses(terms, "icg") else None
    denoiser = GuidedDenoiser(DiffusersDenoiser(pipeline.unet, pipeline.scheduler), terms, "encoder_hidden_states",
                              null_condition=null, independent_condition=independent)
    factor, config = vae_scale_factor(pipeline.vae.config.block_out_channels), pipeline.unet.config
    shape = (len(embeddings), config.in_channels, latent_side(height, "height", config.sample_size, factor),
             latent_side(width, "width", config.sample_size, factor))
    return _Plan(denoiser, {"encoder_hidden_states": embeddings}, shape)


def _texts(value: str | list[str] | None, name: str) -> list[str] | None:
    """``value`` as a non-empty list of strings (``None`` stays ``None``)."""
    if value is None:
        return None
    texts = [value] if isinstance(value, str) else list(value)
    if not texts or not all(isinstance(text, str) for text in texts):
        raise GenlabError(f"{name} must be a string or a non-empty list of strings")
    return texts


def _tokenize(tokenizer, texts: list[str]) -> Tensor:
    """Token ids ``[len(texts), model_max_length]``, padded and truncated like diffusers does."""
    return tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


def _text_encoder(pipeline: StableDiffusionPipeline) -> Callable[[Tensor], Tensor]:
    """``encode(ids [B, L]) -> [B, L, D]``: the text encoder's last hidden state in the UNet's dtype."""

    def encode(ids: Tensor) -> Tensor:
        hidden = pipeline.text_encoder(ids.to(pipeline.device))[0]
        return hidden.to(pipeline.unet.dtype)

    return encode


def _text_icg(pipeline: StableDiffusionPipeline, encode: Callable[[Tensor], Tensor], kind: str) -> ConditionMaker:
    """ICG's maker for text: random tokens through the encoder, or Gaussian embeddings."""
    if kind == "gaussian":
        return gaussian_embedding()
    tokenizer = pipeline.tokenizer
    vocab_size = min(len(tokenizer), pipeline.text_encoder.get_input_embeddings().num_embeddings)
    special = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id} - {None}
    return random_tokens(encode, vocab_size, tokenizer.model_max_length, tuple(sorted(special)))


def _class_plan(pipeline: DiTPipeline, terms: list[GuidanceTerm], class_labels, num_images: int,
                height: int | None, width: int | None) -> _Plan:
    """Check the labels and build the guided transformer for a DiT pipeline."""
    config = pipeline.transformer.config
    num_classes = config.num_embeds_ada_norm
    labels = _class_ids(class_labels, num_classes, pipeline.device).repeat_interleave(num_images)
    if _uses(terms, "cfg") and not _has_null_label(pipeline.transformer, num_classes):
        raise GenlabError("terms: this DiT has no null-class embedding (class_dropout_prob = 0), so CFG is unavailable")
    denoiser = guide_class_model(DiffusersDenoiser(pipeline.transformer, pipeline.scheduler), num_classes, terms,
                                 null_id=num_classes)
    factor = vae_scale_factor(pipeline.vae.config.block_out_channels)
    for name, size in (("height", height), ("width", width)):
        if size is not None and size != config.sample_size * factor:
            raise GenlabError(f"{name}: this DiT makes {config.sample_size * factor}-pixel images, got {size}")
    shape = (len(labels), config.in_channels, config.sample_size, config.sample_size)
    return _Plan(denoiser, {"class_labels": labels}, shape)


def _class_ids(class_labels, num_classes: int, device: torch.device) -> Tensor:
    """``class_labels`` as a long tensor ``[B]``; GenlabError if missing, empty or out of range."""
    if class_labels is None:
        raise GenlabError("class_labels: a DiTPipeline needs class labels")
    try:
        labels = torch.as_tensor(class_labels, device=device).reshape(-1)
    except (TypeError, ValueError, RuntimeError) as error:
        raise GenlabError(f"class_labels must be a list of integer class ids ({error})") from None
    if labels.numel() == 0 or labels.is_floating_point() or labels.dtype == torch.bool:
        raise GenlabError("class_labels must be a non-empty list of integer class ids")
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.numel():
        raise GenlabError(f"class_labels: class id {int(bad[0])} is out of range 0..{num_classes - 1}")
    return labels.long()


def _has_null_label(transformer, num_classes: int) -> bool:
    """Whether the DiT's label table has the extra null row (it has one iff trained with label dropout)."""
    table = transformer.transformer_blocks[0].norm1.emb.class_embedder.embedding_table
    return table.num_embeddings > num_classes


def _sample_latents(plan: _Plan, steps: int, sampler: str, generator: torch.Generator | None,
                    device: torch.device) -> Tensor:
    """Run genlab's sampler from Gaussian noise; returns latents shaped ``plan.latent_shape``."""
    sigmas = karras_sigmas(steps, plan.denoiser.sigma_min, plan.denoiser.sigma_max)
    noise = randn_tensor(plan.latent_shape, generator=generator, device=device, dtype=torch.float32)
    plan.denoiser.manual_seed(_draw_seed(generator))
    return sample(plan.denoiser, noise, sigmas, method=sampler, **plan.condition)


def _draw_seed(generator: torch.Generator | list[torch.Generator] | None) -> int:
    """A seed for the guidance draws, drawn from ``generator`` (the first, if a list; on its device)
    or from torch's global RNG."""
    if isinstance(generator, list):
        generator = generator[0] if generator else None
    where = generator.device if generator is not None else torch.device("cpu")
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=where))
