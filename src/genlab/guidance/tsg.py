"""Time-step guidance (TSG) machinery: find a model's time-embedding modules and perturb them.

TSG replaces the guidance branch's time-step embedding by ``t_emb + s·t^α·n·std(t_emb)``
(``n ~ N(0, I)``, fresh at every call, drawn from the caller's generator). It is implemented
as a forward hook on the model's time-embedding module(s), so it works on any model that has
one, and only rows of the batch that belong to the TSG branch are perturbed, so the conditional
and guidance outputs come from one batched call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from genlab.core.edm import append_dims
from genlab.errors import GenlabError
from genlab.guidance.rng import randn

# Dotted paths of a time-step embedding shared by all blocks, tried in order (the first present wins).
# Deeper paths come first where a shallower one returns more than the embedding (AdaLayerNormSingle).
SHARED_EMBEDDING_PATHS = (
    "time_embed.emb.timestep_embedder",  # diffusers Sana, LTX-Video (AdaLayerNormSingle)
    "time_embed.timestep_embedder",  # diffusers Sana with guidance embeddings
    "time_embed",  # genlab nets
    "time_embedding",  # diffusers UNets, CogVideoX
    "time_text_embed.timestep_embedder",  # diffusers SD3, Flux, QwenImage, HunyuanVideo
    "time_guidance_embed.timestep_embedder",  # diffusers Flux2
    "condition_embedder.time_embedder",  # diffusers Wan
    "adaln_single.emb.timestep_embedder",  # diffusers PixArt
)
# Path, inside each of ``transformer_blocks``, of a per-block time-step embedding (diffusers DiT).
PER_BLOCK_PATH = "norm1.emb.timestep_embedder"


def _unwrap(model: nn.Module) -> nn.Module:
    """The network inside denoiser wrappers (``.denoiser`` / ``.net`` / ``.model``), else ``model``."""
    for name in ("denoiser", "net", "model"):
        inner = getattr(model, name, None)
        if isinstance(inner, nn.Module):
            return _unwrap(inner)
    return model


def _submodule(net: nn.Module, path: str) -> nn.Module | None:
    """``net``'s module at the dotted ``path``, or None if there is none."""
    try:
        return net.get_submodule(path)
    except AttributeError:
        return None


def time_embedding_modules(model: nn.Module, first_blocks: int | None = None,
                           path: str | None = None) -> list[nn.Module]:
    """The module(s) whose output is the time-step embedding ``[B, D]`` of ``model``.

    * ``path`` given: the module at that dotted name (e.g. ``"time_text_embed.timestep_embedder"``),
      for models not listed below;
    * diffusers DiT: each block's ``norm1.emb.timestep_embedder`` (one per block), so
      ``first_blocks=N`` perturbs only the first N blocks. (diffusers' DiT also reuses block 0's
      embedder for its output layer, which therefore sees the perturbation whenever block 0 does.)
    * one embedding shared by all blocks, at the first of :data:`SHARED_EMBEDDING_PATHS` present:
      genlab nets' ``time_embed``, diffusers UNets' and CogVideoX's ``time_embedding``, SD3's and
      Flux's ``time_text_embed.timestep_embedder`` (the timestep part only, not the pooled text or
      guidance embedding), Wan's ``condition_embedder.time_embedder``, PixArt's, Sana's, ...

    Paths are relative to the network inside genlab's denoiser wrappers. Raises GenlabError if
    there is none (naming ``time_embedding=`` as the way out), or if ``first_blocks`` is asked of
    a model whose blocks share one embedding.
    """
    net = _unwrap(model)
    if path is not None:
        module = _submodule(net, path)
        if module is None:
            raise GenlabError(f"{type(net).__name__} has no module named {path!r} to use as its time embedding")
        return _shared(net, path, module, first_blocks)
    blocks = getattr(net, "transformer_blocks", None) or []
    per_block = [_submodule(block, PER_BLOCK_PATH) for block in blocks]
    if per_block and all(module is not None for module in per_block):
        if first_blocks is not None and not 1 <= first_blocks <= len(per_block):
            raise GenlabError(f"first_blocks must be in [1, {len(per_block)}] for this model, got {first_blocks}")
        return per_block[:first_blocks]
    for name in SHARED_EMBEDDING_PATHS:
        module = _submodule(net, name)
        if module is not None:
            return _shared(net, name, module, first_blocks)
    raise GenlabError(
        f"{type(net).__name__} has no time-embedding module genlab knows (looked for per-block {PER_BLOCK_PATH} "
        f"and {', '.join(SHARED_EMBEDDING_PATHS)}); TSG needs one: name the module whose output is the "
        "time-step embedding with time_embedding='dotted.name' (TSGGuidance) or path= (time_embedding_modules)"
    )


def _shared(net: nn.Module, name: str, module: nn.Module, first_blocks: int | None) -> list[nn.Module]:
    """``[module]``, the one embedding ``name`` that all blocks of ``net`` share (so no ``first_blocks``)."""
    if first_blocks is not None:
        raise GenlabError(
            f"{type(net).__name__} computes one time embedding ({name}) shared by all blocks, so TSG "
            "cannot be limited to the first blocks; leave first_blocks unset"
        )
    return [module]


@contextmanager
def perturbed_time_embedding(modules: list[nn.Module], rows: slice, noise_scale: Tensor,
                             generator: torch.Generator | None = None) -> Iterator[None]:
    """While active, add ``noise_scale[row] · n · std(emb[row])`` to ``emb[rows]`` of each module's output.

    Args:
        modules: time-embedding modules (see :func:`time_embedding_modules`).
        rows: the batch rows of the TSG branch.
        noise_scale: ``s·t^α`` per row of that branch, shape ``[rows]``.
        generator: the RNG of the noise ``n`` (drawn on its device, then moved to the embedding's);
            None uses torch's global RNG.

    The hooks are removed on exit, even after an error, so the model is left unchanged.
    """

    def hook(module: nn.Module, inputs, output: Tensor) -> Tensor:
        if not isinstance(output, Tensor):
            raise GenlabError(f"TSG: the time-embedding module {type(module).__name__} returns a "
                              f"{type(output).__name__}, not the embedding tensor; pass the module that outputs it as time_embedding=")
        branch = output[rows]
        spread = branch.float().std(dim=-1, keepdim=True)
        scale = append_dims(noise_scale.to(output.device), branch)
        noise = randn(tuple(branch.shape), generator, branch.device)
        perturbed = output.clone()
        perturbed[rows] = (branch.float() + scale * spread * noise).to(output.dtype)
        return perturbed

    handles = [module.register_forward_hook(hook) for module in modules]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
