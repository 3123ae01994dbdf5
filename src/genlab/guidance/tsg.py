"""Time-step guidance (TSG) machinery: find a model's time-embedding modules and perturb them.

TSG replaces the guidance branch's time-step embedding by ``t_emb + s·t^α·n·std(t_emb)``
(``n ~ N(0, I)``, fresh at every call). It is implemented as a forward hook on the model's
time-embedding module(s), so it works on any model that has one, and only rows of the batch
that belong to the TSG branch are perturbed, so the conditional and guidance outputs come from
one batched call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from genlab.errors import GenlabError

# Attribute paths, tried in order: genlab nets, diffusers UNets / video transformers.
SHARED_EMBEDDING_NAMES = ("time_embed", "time_embedding")


def _unwrap(model: nn.Module) -> nn.Module:
    """The network inside denoiser wrappers (``.denoiser`` / ``.net`` / ``.model``), else ``model``."""
    for name in ("denoiser", "net", "model"):
        inner = getattr(model, name, None)
        if isinstance(inner, nn.Module):
            return _unwrap(inner)
    return model


def time_embedding_modules(model: nn.Module, first_blocks: int | None = None) -> list[nn.Module]:
    """The module(s) whose output is the time-step embedding of ``model``.

    * genlab nets: ``time_embed``; diffusers UNets and CogVideoX-style models: ``time_embedding``
      (one embedding shared by all blocks);
    * diffusers DiT: each block's ``norm1.emb.timestep_embedder`` (one per block), so
      ``first_blocks=N`` perturbs only the first N blocks. (diffusers' DiT also reuses block 0's
      embedder for its output layer, which therefore sees the perturbation whenever block 0 does.)

    Raises GenlabError if there is none, or if ``first_blocks`` is asked of a model whose blocks
    share one embedding.
    """
    net = _unwrap(model)
    blocks = getattr(net, "transformer_blocks", None)
    per_block = [getattr(getattr(getattr(b, "norm1", None), "emb", None), "timestep_embedder", None)
                 for b in (blocks or [])]
    if blocks and all(isinstance(m, nn.Module) for m in per_block):
        if first_blocks is not None and not 1 <= first_blocks <= len(per_block):
            raise GenlabError(f"first_blocks must be in [1, {len(per_block)}] for this model, got {first_blocks}")
        return per_block[:first_blocks]
    for name in SHARED_EMBEDDING_NAMES:
        module = getattr(net, name, None)
        if isinstance(module, nn.Module):
            if first_blocks is not None:
                raise GenlabError(
                    f"{type(net).__name__} computes one time embedding ({name}) shared by all blocks, so TSG "
                    "cannot be limited to the first blocks; leave first_blocks unset"
                )
            return [module]
    raise GenlabError(
        f"{type(net).__name__} has no time-embedding module (looked for {', '.join(SHARED_EMBEDDING_NAMES)} "
        "and per-block norm1.emb.timestep_embedder); TSG needs one"
    )


@contextmanager
def perturbed_time_embedding(modules: list[nn.Module], rows: slice, noise_scale: Tensor) -> Iterator[None]:
    """While active, add ``noise_scale[row] · n · std(emb[row])`` to ``emb[rows]`` of each module's output.

    Args:
        modules: time-embedding modules (see :func:`time_embedding_modules`).
        rows: the batch rows of the TSG branch.
        noise_scale: ``s·t^α`` per row of that branch, shape ``[rows]``.

    The hooks are removed on exit, even after an error, so the model is left unchanged.
    """

    def hook(module: nn.Module, inputs, output: Tensor) -> Tensor:
        branch = output[rows]
        spread = branch.float().std(dim=-1, keepdim=True)
        scale = noise_scale.to(output.device).reshape(-1, *([1] * (branch.dim() - 1)))
        noise = torch.randn_like(branch, dtype=torch.float32)
        perturbed = output.clone()
        perturbed[rows] = (branch.float() + scale * spread * noise).to(output.dtype)
        return perturbed

    handles = [module.register_forward_hook(hook) for module in modules]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
