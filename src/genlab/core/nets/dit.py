"""A small diffusion transformer (DiT) backbone for EDM preconditioning.

The image is cut into ``patch_size x patch_size`` patches, embedded with a conv, offset by a fixed
2-D sin-cos position embedding and processed by ``depth`` transformer blocks whose LayerNorms are
modulated (adaLN-Zero) by ``emb = time_embed(noise_labels) + class_embed(class_labels)`` of width
``emb_dim = hidden_size``.
"""

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from einops import rearrange
from torch import Tensor, nn

from genlab.core.nets.attention import ContextAttention, SelfAttention, context_group
from genlab.core.nets.embeddings import (
    ClassEmbedding,
    TimeEmbedding,
    check_config,
    check_context_config,
    conditioning,
)


def sincos_position_embedding(grid_size: int, dim: int) -> Tensor:
    """Fixed 2-D sin-cos embedding of a ``grid_size x grid_size`` grid, row-major: ``[grid_size**2, dim]``.

    The first half of the channels encodes the row, the second half the column; ``dim % 4 == 0``.
    """
    quarter = dim // 4
    omega = 1.0 / 10000.0 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    coords = torch.arange(grid_size, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")
    parts = []
    for pos in (rows.flatten(), cols.flatten()):
        angles = pos[:, None] * omega[None, :]
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=1).to(torch.float32)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """``x [B, N, C] * (1 + scale [B, 1, C]) + shift [B, 1, C]``."""
    return x * (1 + scale) + shift


def per_token(modulation: Tensor) -> Tensor:
    """A modulation from a per-clip ``emb`` ``[B, K]`` as ``[B, 1, K]``; a per-token one ``[B, N, K]`` as is."""
    return modulation[:, None] if modulation.ndim == 2 else modulation


class DiTBlock(nn.Module):
    """Transformer block with adaLN-Zero: ``x [B, N, C]``, ``emb [B, D]`` (after SiLU) -> ``[B, N, C]``.

    ``emb`` may also be per token, ``[B, N, D]`` (e.g. a control branch that conditions key frames).

    The modulation linear is zero-initialised, so a fresh block is the identity. With
    ``context_attention`` (a :class:`ContextAttention`), the block cross-attends to context tokens
    ``[B, M, D_ctx]`` between self-attention and MLP.
    """

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float, emb_dim: int,
                 context_attention: ContextAttention | None = None) -> None:
        super().__init__()
        self.context_attention = context_attention
        mlp_hidden = int(hidden_size * mlp_ratio)
        self.norm_1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(hidden_size, num_heads)
        self.norm_2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, mlp_hidden),
            nn.GELU(approximate="tanh"),
            nn.Linear(mlp_hidden, hidden_size),
        )
        self.modulation = nn.Linear(emb_dim, 6 * hidden_size)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x: Tensor, emb: Tensor, context: Tensor | None = None) -> Tensor:
        shift_1, scale_1, gate_1, shift_2, scale_2, gate_2 = per_token(self.modulation(emb)).chunk(6, dim=-1)
        x = x + gate_1 * self.attn(modulate(self.norm_1(x), shift_1, scale_1))
        if self.context_attention is not None:
            x = self.context_attention(x, context)
        return x + gate_2 * self.mlp(modulate(self.norm_2(x), shift_2, scale_2))


class FinalLayer(nn.Module):
    """adaLN + linear to patch pixels: ``x [B, N, C]``, ``emb [B, D]`` -> ``[B, N, patch**2 * out]``.

    Both the modulation and the output linear are zero-initialised.
    """

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int, emb_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Linear(emb_dim, 2 * hidden_size)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        for layer in (self.modulation, self.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        shift, scale = self.modulation(emb)[:, None].chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


class ImageDiT(ModelMixin, ConfigMixin):
    """Diffusion-transformer backbone ``F(x, noise_labels, class_labels)`` for square images.

    ``forward(x [B, in_channels, resolution, resolution], noise_labels [B] float,
    class_labels [B] long | None, context [B, M, cross_attention_dim] | None) -> [B, in_channels, resolution, resolution]``.

    With ``cross_attention_dim > 0`` every block cross-attends to ``context`` tokens after its
    self-attention; with ``context_groups = G`` the blocks are split into G consecutive runs and
    run g sees only the g-th group of tokens (grouped latents). The conditioning width is
    ``self.emb_dim = hidden_size``; ``self.time_embed`` maps
    ``noise_labels [B] -> [B, emb_dim]`` and ``self.blocks`` holds the ``depth`` transformer blocks
    (each ``[B, N, hidden_size] -> [B, N, hidden_size]``, ``N = (resolution / patch_size)**2``).
    With ``num_classes > 0`` the label table has a null row at index ``num_classes``, used when
    ``class_labels`` is ``None``. The final layer is zero-initialised, so a fresh network returns zeros.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 1,
        resolution: int = 16,
        patch_size: int = 2,
        hidden_size: int = 128,
        depth: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        num_classes: int = 0,
        cross_attention_dim: int = 0,
        context_groups: int = 1,
    ) -> None:
        super().__init__()
        check_config(in_channels >= 1, f"in_channels must be >= 1, got {in_channels}")
        check_config(patch_size >= 1, f"patch_size must be >= 1, got {patch_size}")
        check_config(
            resolution >= 1 and resolution % patch_size == 0,
            f"resolution must be a positive multiple of patch_size={patch_size}, got {resolution}",
        )
        check_config(
            hidden_size >= 4 and hidden_size % 4 == 0,
            f"hidden_size must be a positive multiple of 4, got {hidden_size}",
        )
        check_config(
            num_heads >= 1 and hidden_size % num_heads == 0,
            f"num_heads must divide hidden_size={hidden_size}, got {num_heads}",
        )
        check_config(depth >= 1, f"depth must be >= 1, got {depth}")
        check_config(mlp_ratio > 0, f"mlp_ratio must be > 0, got {mlp_ratio}")
        check_config(num_classes >= 0, f"num_classes must be >= 0, got {num_classes}")
        check_context_config(cross_attention_dim, context_groups, depth, "blocks")

        self.emb_dim = hidden_size
        self.grid_size = resolution // patch_size
        self.time_embed = TimeEmbedding(256, self.emb_dim)
        self.class_embed = ClassEmbedding(num_classes, self.emb_dim) if num_classes > 0 else None
        self.patch_embed = nn.Conv2d(in_channels, hidden_size, patch_size, stride=patch_size)
        self.register_buffer(
            "pos_embed", sincos_position_embedding(self.grid_size, hidden_size)[None], persistent=False
        )
        def context_attention(block: int) -> ContextAttention | None:
            if not cross_attention_dim:
                return None
            group = context_group(block, depth, context_groups)
            return ContextAttention(hidden_size, cross_attention_dim, num_heads, group, context_groups)

        self.blocks = nn.ModuleList(
            DiTBlock(hidden_size, num_heads, mlp_ratio, self.emb_dim, context_attention(i)) for i in range(depth)
        )
        self.final_layer = FinalLayer(hidden_size, patch_size, in_channels, self.emb_dim)

    def forward(self, x: Tensor, noise_labels: Tensor, class_labels: Tensor | None = None,
                context: Tensor | None = None) -> Tensor:
        """``x [B, C, H, W]``, ``noise_labels [B]``, ``class_labels [B] | None``, ``context [B, M, D] | None``
        -> ``[B, C, H, W]``."""
        emb = conditioning(self, x, noise_labels, class_labels, context)
        cfg = self.config

        tokens = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed  # [B, N, hidden]
        for block in self.blocks:
            tokens = block(tokens, emb, context)
        patches = self.final_layer(tokens, emb)  # [B, N, p*p*C]
        p = cfg.patch_size
        return rearrange(
            patches, "b (gh gw) (p q c) -> b c (gh p) (gw q)", gh=self.grid_size, p=p, q=p, c=cfg.in_channels
        )
