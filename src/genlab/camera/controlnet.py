"""VD3D's camera ControlNet: a trainable branch that reads Plücker frames and steers a frozen video
transformer through zero-initialised projections added to its first blocks' hidden states.

The branch (:class:`CameraControlNet`) patchifies the Plücker frames ``[B, T, 6, H, W]`` like the
video (same space-time patch, same frame-major token order), adds a projection of the base model's
tokens at the input of its first block, runs a few adaLN-Zero transformer blocks conditioned on
the base's time embedding, and maps the output of branch block ``i`` through the zero-initialised
linear ``outputs[i]`` to a residual added to the output of base block ``i`` (as AC3D does on
CogVideoX). A fresh branch therefore leaves the base model's output unchanged.

The branch reaches the base through forward hooks, so the base model's code is untouched. A
:class:`BackboneTaps` says where a backbone keeps its blocks and how to read the tokens and time
embedding from a block call: :class:`VideoDiTTaps` for genlab's :class:`~genlab.core.nets.VideoDiT`,
:class:`CogVideoXTaps` for diffusers' ``CogVideoXTransformer3DModel``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import Tensor, nn

from genlab.core.nets.dit import DiTBlock
from genlab.core.nets.video_dit import video_position_embedding
from genlab.errors import GenlabError

PLUCKER_CHANNELS = 6


class BackboneTaps:
    """Where a camera branch attaches to a video transformer.

    ``blocks`` are the base blocks, in order; ``hidden_size`` their token width; ``emb_dim`` the
    width of the conditioning vector the branch's blocks take; ``patch_size`` /
    ``temporal_patch_size`` the base's patchification of its input grid.
    """

    def __init__(self, blocks: nn.ModuleList, hidden_size: int, emb_dim: int, patch_size: int,
                 temporal_patch_size: int) -> None:
        self.blocks, self.hidden_size, self.emb_dim = blocks, hidden_size, emb_dim
        self.patch_size, self.temporal_patch_size = patch_size, temporal_patch_size

    def tokens_and_embedding(self, args: tuple, kwargs: dict) -> tuple[Tensor, Tensor]:
        """``(tokens [B, N, hidden_size], emb [B, emb_dim])`` from the arguments of a call of ``blocks[0]``."""
        raise NotImplementedError

    def add_to_output(self, output, residual: Tensor):
        """A block's output with ``residual [B, N, hidden_size]`` added to its video tokens."""
        raise NotImplementedError


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
    raise GenlabError(f"camera control supports genlab's VideoDiT and diffusers' CogVideoXTransformer3DModel, "
                      f"not {name}")


class CameraControlNet(ModelMixin, ConfigMixin):
    """The trainable camera branch: ``(base tokens, Plücker frames, emb) -> residuals for the first blocks``.

    Args:
        base_hidden_size: token width of the base model (``C_base``).
        emb_dim: width of the base's conditioning vector, given to the branch blocks' adaLN.
        patch_size, temporal_patch_size: the base's patchification, applied to the Plücker frames.
        hidden_size, depth, num_heads, mlp_ratio: the branch's own transformer; ``depth`` is also the
            number of base blocks that receive a residual (the first ``depth``).
    """

    @register_to_config
    def __init__(self, base_hidden_size: int, emb_dim: int, patch_size: int, temporal_patch_size: int = 1,
                 hidden_size: int = 128, depth: int = 2, num_heads: int = 4, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if depth < 1 or hidden_size % 4 or hidden_size % num_heads:
            raise GenlabError(f"the camera branch needs depth >= 1 and hidden_size a multiple of 4 and of "
                              f"num_heads={num_heads}; got depth={depth}, hidden_size={hidden_size}")
        patch = (temporal_patch_size, patch_size, patch_size)
        self.camera_embed = nn.Conv3d(PLUCKER_CHANNELS, hidden_size, patch, stride=patch)
        self.video_proj = nn.Linear(base_hidden_size, hidden_size)
        self.blocks = nn.ModuleList(DiTBlock(hidden_size, num_heads, mlp_ratio, emb_dim) for _ in range(depth))
        self.outputs = nn.ModuleList(nn.Linear(hidden_size, base_hidden_size) for _ in range(depth))
        for layer in self.outputs:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    @classmethod
    def for_backbone(cls, model: nn.Module, hidden_size: int = 128, depth: int = 2, num_heads: int = 4,
                     mlp_ratio: float = 4.0) -> CameraControlNet:
        """A fresh branch sized for ``model`` (a genlab ``VideoDiT`` or a diffusers CogVideoX transformer)."""
        taps = taps_for(model)
        if depth > len(taps.blocks):
            raise GenlabError(f"the camera branch has {depth} blocks but the base model only {len(taps.blocks)}")
        return cls(taps.hidden_size, taps.emb_dim, taps.patch_size, taps.temporal_patch_size, hidden_size, depth,
                   num_heads, mlp_ratio)

    def camera_tokens(self, plucker: Tensor) -> Tensor:
        """Patchified Plücker frames ``[B, T, 6, H, W]`` -> ``[B, N, hidden_size]`` (frame-major, with positions)."""
        if plucker.ndim != 5 or plucker.shape[2] != PLUCKER_CHANNELS:
            raise GenlabError(f"plucker must be [B, T, {PLUCKER_CHANNELS}, H, W], got {list(plucker.shape)}")
        tokens = self.camera_embed(plucker.to(self.dtype).transpose(1, 2))  # [B, hidden, T', H', W']
        frames, grid = tokens.shape[2], tokens.shape[3]
        positions = video_position_embedding(frames, grid, tokens.shape[1]).to(tokens)
        return tokens.flatten(2).transpose(1, 2) + positions

    def forward(self, base_tokens: Tensor, plucker: Tensor, emb: Tensor) -> list[Tensor]:
        """``base_tokens [B, N, C_base]``, ``plucker [B, T, 6, H, W]``, ``emb [B, emb_dim]`` (after SiLU)
        -> ``depth`` residuals ``[B, N, C_base]``, one per first base block."""
        camera = self.camera_tokens(plucker)
        if camera.shape[:2] != base_tokens.shape[:2]:
            raise GenlabError(
                f"the Plücker frames give {camera.shape[1]} tokens per clip but the video has {base_tokens.shape[1]}: "
                "pass one camera per frame at the model's input resolution (a trajectory as long as the clip)")
        hidden = self.video_proj(base_tokens.to(self.dtype)) + camera
        residuals = []
        for block, output in zip(self.blocks, self.outputs, strict=True):
            hidden = block(hidden, emb.to(self.dtype))
            residuals.append(output(hidden))
        return residuals


@contextmanager
def camera_control(taps: BackboneTaps, controlnet: CameraControlNet, plucker: Tensor,
                   active: Tensor | None = None, scale: float = 1.0) -> Iterator[None]:
    """Within the block, calls of the base model are steered by ``controlnet`` with ``plucker [B, T, 6, H, W]``.

    ``active [B]`` (bool) switches the branch off per sample (its residuals are multiplied by 0);
    ``scale`` multiplies the residuals. The hooks are removed on exit, even after an error.
    """
    residuals: list[Tensor] = []

    def run_branch(module, args, kwargs):
        tokens, emb = taps.tokens_and_embedding(args, kwargs)
        weight = torch.full((tokens.shape[0], 1, 1), scale, device=tokens.device, dtype=tokens.dtype)
        if active is not None:
            weight = weight * active.to(weight).reshape(-1, 1, 1)
        residuals[:] = [weight * r.to(tokens.dtype) for r in controlnet(tokens, plucker, emb)]

    def add_residual(index: int):
        return lambda module, args, output: taps.add_to_output(output, residuals[index])

    handles = [taps.blocks[0].register_forward_pre_hook(run_branch, with_kwargs=True)]
    handles += [taps.blocks[i].register_forward_hook(add_residual(i)) for i in range(len(controlnet.blocks))]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
