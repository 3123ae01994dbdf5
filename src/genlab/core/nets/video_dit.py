"""A small video diffusion transformer (video DiT) for EDM preconditioning.

A clip ``[B, T, C, H, W]`` is cut into space-time patches of ``temporal_patch_size x patch_size x
patch_size`` (a Conv3d), offset by fixed sin-cos embeddings of the frame index and of the 2-D
position, and processed by ``depth`` adaLN-Zero blocks. Attention is either *full* (every token
attends to every token of the clip) or *factorised* (within each frame, then across frames at each
spatial position, as in Latte/VDT). Tokens are ordered frame-major, then row-major within a frame:
``token = (t * grid + i) * grid + j``, the same order as diffusers' CogVideoX patch embedding, so
control branches that patchify a per-pixel condition the same way line up with either backbone.

Optional conditioning: a class (``num_classes``), and per-frame condition channels concatenated
to the input (``condition_channels``), e.g. the first frame repeated over time for image-to-video
(:func:`first_frame_condition`), or a Plücker map for a camera-conditioned baseline.
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from einops import rearrange
from torch import Tensor, nn

from genlab.core.config import ATTENTION_MODES
from genlab.core.nets.attention import SelfAttention
from genlab.core.nets.dit import DiTBlock, FinalLayer, modulate, per_token, sincos_position_embedding
from genlab.core.nets.embeddings import ClassEmbedding, TimeEmbedding, check_config, check_inputs
from genlab.errors import GenlabError


def sincos_1d(positions: int, dim: int) -> Tensor:
    """Fixed 1-D sin-cos embedding of ``positions`` indices: ``[positions, dim]`` (``dim`` even)."""
    half = dim // 2
    omega = 1.0 / 10000.0 ** (torch.arange(half, dtype=torch.float64) / half)
    angles = torch.arange(positions, dtype=torch.float64)[:, None] * omega[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1).to(torch.float32)


def video_position_embedding(frames: int, grid_size: int, dim: int) -> Tensor:
    """Frame embedding plus 2-D position embedding for frame-major tokens: ``[frames * grid_size**2, dim]``."""
    spatial = sincos_position_embedding(grid_size, dim)  # [grid², dim]
    temporal = sincos_1d(frames, dim)  # [frames, dim]
    return (temporal[:, None, :] + spatial[None, :, :]).reshape(frames * grid_size**2, dim)


def first_frame_condition(first_frame: Tensor, frames: int) -> Tensor:
    """The first frame ``[B, C, H, W]`` repeated over ``frames``: a condition ``[B, frames, C, H, W]``."""
    return first_frame[:, None].expand(-1, frames, -1, -1, -1)


class FactorisedDiTBlock(DiTBlock):
    """adaLN-Zero block with factorised attention: ``x [B, N, C]`` with ``N = frames * tokens_per_frame``.

    ``emb`` is ``[B, D]`` or per token ``[B, N, D]``. Spatial attention runs within each frame, then a temporal attention (its own zero-initialised
    adaLN shift/scale/gate) across frames at each spatial position, then the MLP. Fresh blocks are
    the identity.
    """

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float, emb_dim: int, frames: int) -> None:
        super().__init__(hidden_size, num_heads, mlp_ratio, emb_dim)
        self.frames = frames
        self.norm_time = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.temporal_attn = SelfAttention(hidden_size, num_heads)
        self.temporal_modulation = nn.Linear(emb_dim, 3 * hidden_size)
        nn.init.zeros_(self.temporal_modulation.weight)
        nn.init.zeros_(self.temporal_modulation.bias)

    def forward(self, x: Tensor, emb: Tensor, context: Tensor | None = None) -> Tensor:
        batch, frames = x.shape[0], self.frames
        shift_1, scale_1, gate_1, shift_2, scale_2, gate_2 = per_token(self.modulation(emb)).chunk(6, dim=-1)
        shift_t, scale_t, gate_t = per_token(self.temporal_modulation(emb)).chunk(3, dim=-1)

        per_frame = rearrange(modulate(self.norm_1(x), shift_1, scale_1), "b (t s) c -> (b t) s c", t=frames)
        x = x + gate_1 * rearrange(self.attn(per_frame), "(b t) s c -> b (t s) c", b=batch)
        per_place = rearrange(modulate(self.norm_time(x), shift_t, scale_t), "b (t s) c -> (b s) t c", t=frames)
        x = x + gate_t * rearrange(self.temporal_attn(per_place), "(b s) t c -> b (t s) c", b=batch)
        return x + gate_2 * self.mlp(modulate(self.norm_2(x), shift_2, scale_2))


class VideoDiT(ModelMixin, ConfigMixin):
    """Video diffusion transformer ``F(x, noise_labels, class_labels, condition)``.

    ``forward(x [B, frames, in_channels, resolution, resolution], noise_labels [B] float,
    class_labels [B] long | None, condition [B, frames, condition_channels, H, W] | None)
    -> [B, frames, in_channels, resolution, resolution]``.

    ``self.blocks`` holds the ``depth`` blocks, each ``(tokens [B, N, hidden_size], emb [B, emb_dim])
    -> [B, N, hidden_size]`` with ``N = (frames / temporal_patch_size) * (resolution / patch_size)**2``
    and ``emb = SiLU(time_embed(noise_labels) + class_embed(class_labels))``. The final layer is
    zero-initialised, so a fresh network returns zeros.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        frames: int = 8,
        resolution: int = 32,
        patch_size: int = 4,
        temporal_patch_size: int = 1,
        hidden_size: int = 128,
        depth: int = 6,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        attention: str = "factorised",
        num_classes: int = 0,
        condition_channels: int = 0,
    ) -> None:
        super().__init__()
        check_config(in_channels >= 1, f"in_channels must be >= 1, got {in_channels}")
        check_config(attention in ATTENTION_MODES, f"attention must be one of {ATTENTION_MODES}, got {attention!r}")
        check_config(patch_size >= 1 and resolution % patch_size == 0,
                     f"resolution must be a positive multiple of patch_size={patch_size}, got {resolution}")
        check_config(temporal_patch_size >= 1 and frames % temporal_patch_size == 0,
                     f"frames must be a positive multiple of temporal_patch_size={temporal_patch_size}, got {frames}")
        check_config(hidden_size % 4 == 0 and hidden_size % num_heads == 0,
                     f"hidden_size must be a multiple of 4 and of num_heads={num_heads}, got {hidden_size}")
        check_config(depth >= 1, f"depth must be >= 1, got {depth}")
        check_config(num_classes >= 0 and condition_channels >= 0,
                     "num_classes and condition_channels must be >= 0")

        self.emb_dim = hidden_size
        self.grid_size = resolution // patch_size
        self.token_frames = frames // temporal_patch_size
        self.time_embed = TimeEmbedding(256, self.emb_dim)
        self.class_embed = ClassEmbedding(num_classes, self.emb_dim) if num_classes > 0 else None
        self.patch_embed = nn.Conv3d(in_channels + condition_channels, hidden_size,
                                     (temporal_patch_size, patch_size, patch_size),
                                     stride=(temporal_patch_size, patch_size, patch_size))
        self.register_buffer("pos_embed", video_position_embedding(self.token_frames, self.grid_size, hidden_size)[None],
                             persistent=False)
        if attention == "full":
            blocks = (DiTBlock(hidden_size, num_heads, mlp_ratio, self.emb_dim) for _ in range(depth))
        else:
            blocks = (FactorisedDiTBlock(hidden_size, num_heads, mlp_ratio, self.emb_dim, self.token_frames)
                      for _ in range(depth))
        self.blocks = nn.ModuleList(blocks)
        self.final_layer = FinalLayer(hidden_size, patch_size, in_channels * temporal_patch_size, self.emb_dim)

    @property
    def tokens_per_clip(self) -> int:
        """``N``, the number of tokens of one clip."""
        return self.token_frames * self.grid_size**2

    def forward(self, x: Tensor, noise_labels: Tensor, class_labels: Tensor | None = None,
                condition: Tensor | None = None) -> Tensor:
        """``x [B, T, C, H, W]``, ``noise_labels [B]``, ``class_labels [B] | None``,
        ``condition [B, T, condition_channels, H, W] | None`` -> ``[B, T, C, H, W]``."""
        cfg = self.config
        self._check_call(x, noise_labels, class_labels, condition)
        emb = self.time_embed(noise_labels)
        if self.class_embed is not None:
            emb = emb + self.class_embed(class_labels, x.shape[0])
        emb = torch.nn.functional.silu(emb)

        if condition is not None:
            x_in = torch.cat([x, condition.to(x.dtype)], dim=2)
        else:
            x_in = x
        tokens = self.patch_embed(x_in.transpose(1, 2)).flatten(2).transpose(1, 2) + self.pos_embed
        for block in self.blocks:
            tokens = block(tokens, emb)
        patches = self.final_layer(tokens, emb)  # [B, N, pt * p * p * C]
        p = cfg.patch_size
        return rearrange(patches, "b (t gh gw) (pt p q c) -> b (t pt) c (gh p) (gw q)", t=self.token_frames,
                         gh=self.grid_size, pt=cfg.temporal_patch_size, p=p, q=p, c=cfg.in_channels)

    def _check_call(self, x: Tensor, noise_labels: Tensor, class_labels: Tensor | None,
                    condition: Tensor | None) -> None:
        cfg = self.config
        expected = (cfg.frames, cfg.in_channels, cfg.resolution, cfg.resolution)
        if x.ndim != 5 or tuple(x.shape[1:]) != expected:
            raise GenlabError(f"x must be a clip [B, {', '.join(map(str, expected))}], got {list(x.shape)}")
        check_inputs(x[:, 0], noise_labels, class_labels, in_channels=cfg.in_channels, resolution=cfg.resolution,
                     num_classes=cfg.num_classes)
        if cfg.condition_channels == 0:
            if condition is not None:
                raise GenlabError("condition must be None: the model has no condition channels")
            return
        expected_condition = (x.shape[0], cfg.frames, cfg.condition_channels, cfg.resolution, cfg.resolution)
        if condition is None or tuple(condition.shape) != expected_condition:
            got = "None" if condition is None else list(condition.shape)
            raise GenlabError(f"condition must have shape {list(expected_condition)}, got {got}")
