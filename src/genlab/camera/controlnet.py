"""VD3D's camera ControlNet: a trainable branch that reads Plücker frames and steers a frozen video
transformer through zero-initialised projections added to its first blocks' hidden states.

The branch (:class:`CameraControlNet`) patchifies the Plücker frames ``[B, T, 6, H, W]`` like the
video (same space-time patch, same frame-major token order), adds a projection of the base model's
tokens at the input of its first block, runs a few adaLN-Zero transformer blocks conditioned on
the base's time embedding, and maps the output of branch block ``i`` through the zero-initialised
linear ``outputs[i]`` to a residual added to the output of base block ``i`` (as AC3D does on
CogVideoX). A fresh branch therefore leaves the base model's output unchanged.

The branch reaches the base through the forward hooks of :mod:`genlab.core.nets.control`
(``taps_for`` knows genlab's ``VideoDiT`` and diffusers' ``CogVideoXTransformer3DModel``), so the
base model's code is untouched.
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import Tensor, nn

from genlab.core.nets.control import BackboneTaps, residual_control, taps_for
from genlab.core.nets.dit import DiTBlock
from genlab.core.nets.video_dit import video_position_embedding
from genlab.errors import GenlabError

PLUCKER_CHANNELS = 6


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
            raise GenlabError(f"--branch-depth {depth}: the camera branch cannot have more blocks than the base model, "
                              f"which has {len(taps.blocks)}")
        return cls(taps.hidden_size, taps.emb_dim, taps.patch_size, taps.temporal_patch_size, hidden_size, depth,
                   num_heads, mlp_ratio)

    def forward(self, base_tokens: Tensor, plucker: Tensor, emb: Tensor) -> list[Tensor]:
        """``base_tokens [B, N, C_base]``, ``plucker [B, T, 6, H, W]``, ``emb [B, emb_dim]`` (after SiLU)
        -> ``depth`` residuals ``[B, N, C_base]``, one per first base block."""
        camera = camera_tokens(self.camera_embed, plucker, base_tokens)
        hidden = self.video_proj(base_tokens.to(self.dtype)) + camera
        residuals = []
        for block, output in zip(self.blocks, self.outputs, strict=True):
            hidden = block(hidden, emb.to(self.dtype))
            residuals.append(output(hidden))
        return residuals


def camera_tokens(embed: nn.Conv3d, plucker: Tensor, base_tokens: Tensor) -> Tensor:
    """Plücker frames ``[B, T, 6, H, W]`` patchified by ``embed`` like the video: ``[B, N, hidden]``
    (frame-major, with sin-cos positions), checked against the base's ``base_tokens [B, N, C_base]``."""
    if plucker.ndim != 5 or plucker.shape[2] != PLUCKER_CHANNELS:
        raise GenlabError(f"plucker must be [B, T, {PLUCKER_CHANNELS}, H, W], got {list(plucker.shape)}")
    tokens = embed(plucker.to(embed.weight.dtype).transpose(1, 2))  # [B, hidden, T', H', W']
    frames, grid = tokens.shape[2], tokens.shape[3]
    positions = video_position_embedding(frames, grid, tokens.shape[1]).to(tokens)
    tokens = tokens.flatten(2).transpose(1, 2) + positions
    if tokens.shape[:2] != base_tokens.shape[:2]:
        raise GenlabError(
            f"the Plücker frames give {tokens.shape[1]} tokens per clip but the video has {base_tokens.shape[1]}: "
            "pass one camera per frame at the model's input resolution (a trajectory as long as the clip)")
    return tokens


class CameraEncoder(ModelMixin, ConfigMixin):
    """The CameraCtrl-style baseline: a camera encoder whose features are added inside the frozen base.

    Unlike :class:`CameraControlNet` it never sees the video: the Plücker frames are patchified like
    the video, passed through ``depth`` residual MLP stages, and stage ``i``'s features go through
    the zero-initialised linear ``outputs[i]`` into the output of base block ``i`` (the input of
    block ``i + 1``), as CameraCtrl adds its encoder's multi-scale features to the base's temporal
    layers. Called like the ControlNet, ``(base_tokens, plucker, emb) -> depth residuals``; the
    tokens only fix the shape and ``emb`` is unused (CameraCtrl's encoder does not see the noise level).
    """

    @register_to_config
    def __init__(self, base_hidden_size: int, patch_size: int, temporal_patch_size: int = 1, hidden_size: int = 128,
                 depth: int = 4, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if depth < 1 or hidden_size < 1:
            raise GenlabError(f"the camera encoder needs depth >= 1 and hidden_size >= 1; got {depth}, {hidden_size}")
        patch = (temporal_patch_size, patch_size, patch_size)
        self.camera_embed = nn.Conv3d(PLUCKER_CHANNELS, hidden_size, patch, stride=patch)
        width = int(hidden_size * mlp_ratio)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(hidden_size), nn.Linear(hidden_size, width), nn.SiLU(), nn.Linear(width, hidden_size))
            for _ in range(depth))
        self.outputs = nn.ModuleList(nn.Linear(hidden_size, base_hidden_size) for _ in range(depth))
        for layer in self.outputs:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    @classmethod
    def for_backbone(cls, model: nn.Module, hidden_size: int = 128, depth: int | None = None) -> CameraEncoder:
        """A fresh encoder sized for ``model``, feeding its first ``depth`` blocks (default: all of them)."""
        taps = taps_for(model)
        depth = len(taps.blocks) if depth is None else depth
        if not 1 <= depth <= len(taps.blocks):
            raise GenlabError(f"--branch-depth {depth}: the camera encoder feeds 1 to {len(taps.blocks)} blocks of "
                              "this base")
        return cls(taps.hidden_size, taps.patch_size, taps.temporal_patch_size, hidden_size, depth)

    def forward(self, base_tokens: Tensor, plucker: Tensor, emb: Tensor | None = None) -> list[Tensor]:
        """``plucker [B, T, 6, H, W]`` -> ``depth`` residuals ``[B, N, C_base]`` (``base_tokens [B, N, C_base]``
        fixes ``N``)."""
        hidden = camera_tokens(self.camera_embed, plucker, base_tokens)
        residuals = []
        for block, output in zip(self.blocks, self.outputs, strict=True):
            hidden = hidden + block(hidden)
            residuals.append(output(hidden))
        return residuals


def camera_control(taps: BackboneTaps, controlnet: CameraControlNet | CameraEncoder, plucker: Tensor,
                   active: Tensor | None = None, scale: float = 1.0):
    """A context in which calls of the base model are steered by ``controlnet`` with ``plucker [B, T, 6, H, W]``.

    ``active [B]`` (bool) switches the branch off per sample (its residuals are multiplied by 0);
    ``scale`` multiplies the residuals. The hooks are removed on exit, even after an error.
    """
    weight = torch.full((plucker.shape[0],), float(scale)) if active is None else active.float() * scale
    return residual_control(taps, lambda tokens, emb: controlnet(tokens, plucker, emb), len(controlnet.blocks),
                            weight)
