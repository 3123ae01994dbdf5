"""Steering a frozen transformer backbone with a trainable branch through forward hooks.

A branch (a ControlNet) reads the backbone's tokens and conditioning vector at the input of its
first block and returns one residual per block it feeds; :func:`residual_control` adds residual
``i`` to the output of block ``i`` while the context is open, leaving the backbone's code
untouched, and a :class:`FrozenBase` keeps the frozen base denoiser in eval mode while the branch
trains. A :class:`BackboneTaps` says where a backbone keeps its blocks and how to read the tokens
and conditioning from a block call: :class:`VideoDiTTaps` for genlab's
:class:`~genlab.core.nets.VideoDiT`, :class:`CogVideoXTaps` for diffusers'
``CogVideoXTransformer3DModel``. Used by camera control (VD3D) and video enhancement (VEnhancer).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from genlab.core.edm import append_dims
from genlab.errors import GenlabError

Branch = Callable[[Tensor, Tensor], list[Tensor]]


class FrozenBase(nn.Module):
    """A module that steers a frozen ``self.base`` (whose ``requires_grad`` its subclass turns off).

    :meth:`train` switches the module's own parts and keeps the base in eval mode (no dropout, fixed
    normalisation statistics), whichever mode is asked for.
    """

    base: nn.Module

    def train(self, mode: bool = True) -> FrozenBase:
        super().train(mode)
        self.base.eval()
        return self


class BackboneTaps(ABC):
    """Where a control branch attaches to a video transformer.

    ``blocks`` are the base blocks, in order; ``hidden_size`` their token width; ``emb_dim`` the
    width of the conditioning vector the branch's blocks take; ``patch_size`` /
    ``temporal_patch_size`` the base's patchification of its input grid.
    """

    def __init__(self, blocks: nn.ModuleList, hidden_size: int, emb_dim: int, patch_size: int,
                 temporal_patch_size: int) -> None:
        self.blocks, self.hidden_size, self.emb_dim = blocks, hidden_size, emb_dim
        self.patch_size, self.temporal_patch_size = patch_size, temporal_patch_size

    @abstractmethod
    def tokens_and_embedding(self, args: tuple, kwargs: dict) -> tuple[Tensor, Tensor]:
        """``(tokens [B, N, hidden_size], emb [B, emb_dim])`` from the arguments of a call of ``blocks[0]``."""

    @abstractmethod
    def add_to_output(self, output, residual: Tensor):
        """A block's output with ``residual [B, N, hidden_size]`` added to its video tokens."""


class VideoDiTTaps(BackboneTaps):
    """Taps of genlab's :class:`~genlab.core.nets.VideoDiT`: blocks are called as ``block(tokens, emb)``."""

    def __init__(self, net: nn.Module) -> None:
        cfg = net.config
        super().__init__(net.blocks, cfg.hidden_size, net.emb_dim, cfg.patch_size, cfg.temporal_patch_size)

    def tokens_and_embedding(self, args: tuple, kwargs: dict) -> tuple[Tensor, Tensor]:
        return args[0], args[1]

    def add_to_output(self, output: Tensor, residual: Tensor) -> Tensor:
        return output + residual


class CogVideoXTaps(BackboneTaps):
    """Taps of diffusers' ``CogVideoXTransformer3DModel``.

    Its blocks take ``(hidden_states, encoder_hidden_states, temb, ...)`` (by keyword, or by position
    under gradient checkpointing), return ``(hidden_states, encoder_hidden_states)``, and apply
    SiLU to ``temb`` inside their norms; ``hidden_states`` are the video tokens alone, frame-major.
    """

    def __init__(self, transformer: nn.Module) -> None:
        cfg = transformer.config
        super().__init__(transformer.transformer_blocks, cfg.num_attention_heads * cfg.attention_head_dim,
                         cfg.time_embed_dim, cfg.patch_size, cfg.patch_size_t or 1)

    def tokens_and_embedding(self, args: tuple, kwargs: dict) -> tuple[Tensor, Tensor]:
        tokens = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        temb = kwargs["temb"] if "temb" in kwargs else args[2]
        return tokens, torch.nn.functional.silu(temb)

    def add_to_output(self, output: tuple[Tensor, Tensor], residual: Tensor) -> tuple[Tensor, Tensor]:
        hidden_states, encoder_hidden_states = output
        return hidden_states + residual.to(hidden_states.dtype), encoder_hidden_states


def taps_for(model: nn.Module) -> BackboneTaps:
    """The taps of a supported backbone (genlab ``VideoDiT`` or diffusers ``CogVideoXTransformer3DModel``)."""
    name = type(model).__name__
    if name == "VideoDiT":
        return VideoDiTTaps(model)
    if name == "CogVideoXTransformer3DModel":
        return CogVideoXTaps(model)
    raise GenlabError(f"control branches support genlab's VideoDiT and diffusers' CogVideoXTransformer3DModel, "
                      f"not {name}")


@contextmanager
def residual_control(taps: BackboneTaps, branch: Branch, depth: int, weight: Tensor | None = None) -> Iterator[None]:
    """Within the block, calls of the backbone add ``branch``'s residuals to its first ``depth`` blocks.

    ``branch(tokens [B, N, C], emb [B, emb_dim]) -> depth residuals [B, N, C]`` runs once per backbone
    call, on the input of ``taps.blocks[0]``; ``weight [B]`` (optional) multiplies each sample's
    residuals (0 switches the branch off for that sample). The hooks are removed on exit, even after
    an error.
    """
    if not 1 <= depth <= len(taps.blocks):
        raise GenlabError(f"a branch can feed 1 to {len(taps.blocks)} blocks of this backbone, not {depth}")
    residuals: list[Tensor] = []

    def run_branch(module, args, kwargs):
        tokens, emb = taps.tokens_and_embedding(args, kwargs)
        outputs = [r.to(tokens.dtype) for r in branch(tokens, emb)]
        if weight is not None:
            outputs = [append_dims(weight.to(tokens), r) * r for r in outputs]
        residuals[:] = outputs

    def add_residual(index: int):
        return lambda module, args, output: taps.add_to_output(output, residuals[index])

    handles = [taps.blocks[0].register_forward_pre_hook(run_branch, with_kwargs=True)]
    handles += [taps.blocks[i].register_forward_hook(add_residual(i)) for i in range(depth)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
