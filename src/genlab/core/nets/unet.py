"""A small convolutional U-Net backbone for EDM preconditioning.

The embedding ``emb = time_embed(noise_labels) + class_embed(class_labels)`` of width
``emb_dim = 4 * base_channels`` modulates every residual block as a scale/shift after its
second GroupNorm. Levels are counted from 0 at full resolution and use
``base_channels * channel_mults[level]`` channels. Every level but the deepest has an encoder
half (``num_res_blocks`` stages whose outputs are kept as skips, then 2x average pooling) and a
decoder half (nearest 2x upsampling + conv, then ``num_res_blocks`` stages that each concatenate
one skip). The deepest level is the bottleneck: ``2 * num_res_blocks`` stages back to back, with
no skips (there a skip would only concatenate a tensor with itself).

With ``cross_attention_dim > 0`` every self-attention is followed by a residual cross-attention
from the pixels to context tokens ``[B, M, cross_attention_dim]``. With ``context_groups = G``
the tokens are cut into G groups spread over the attention levels: group 0 feeds the deepest
(coarsest) ones and group G−1 the finest (DisCo-Diff's grouped latents).
"""

import math

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import Tensor, nn

from genlab.core.nets.attention import ContextAttention, SelfAttention, context_group
from genlab.core.nets.embeddings import (
    ClassEmbedding,
    TimeEmbedding,
    check_config,
    check_context_config,
    conditioning,
)


def _group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 8 groups, always a divisor of ``channels``."""
    return nn.GroupNorm(math.gcd(channels, 8), channels)


class ResBlock(nn.Module):
    """Residual block with adaptive GroupNorm: ``x [B, in, H, W]``, ``emb [B, D]`` -> ``[B, out, H, W]``.

    ``emb`` is expected already passed through SiLU.
    """

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm_1 = _group_norm(in_channels)
        self.conv_1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, 2 * out_channels)
        self.norm_2 = _group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv_2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv_1(F.silu(self.norm_1(x)))
        scale, shift = self.emb_proj(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm_2(h) * (1 + scale) + shift
        h = self.conv_2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Residual multi-head self-attention over the ``H*W`` positions: ``[B, C, H, W]`` -> ``[B, C, H, W]``."""

    def __init__(self, channels: int, num_heads: int) -> None:
        super().__init__()
        self.norm = _group_norm(channels)
        self.attn = SelfAttention(channels, num_heads)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # [B, HW, C]
        return x + self.attn(tokens).transpose(1, 2).reshape(b, c, h, w)


class Stage(nn.Module):
    """A residual block, optionally followed by self-attention and then cross-attention to context
    tokens: ``[B, in, H, W]`` -> ``[B, out, H, W]``.

    ``context`` is ``(context_dim, group, groups)`` for the cross-attention (which uses
    ``num_heads`` heads), or None.
    """

    def __init__(
        self, in_channels: int, out_channels: int, emb_dim: int, dropout: float, num_heads: int | None,
        context: tuple[int, int, int] | None = None,
    ) -> None:
        super().__init__()
        self.res = ResBlock(in_channels, out_channels, emb_dim, dropout)
        self.attn = nn.Identity() if num_heads is None else AttentionBlock(out_channels, num_heads)
        self.context_attention = None
        if context is not None:
            context_dim, group, groups = context
            self.context_attention = ContextAttention(out_channels, context_dim, num_heads, group, groups)

    def forward(self, x: Tensor, emb: Tensor, context: Tensor | None = None) -> Tensor:
        h = self.attn(self.res(x, emb))
        if self.context_attention is None:
            return h
        b, c, height, width = h.shape
        tokens = self.context_attention(h.flatten(2).transpose(1, 2), context)  # [B, HW, C]
        return tokens.transpose(1, 2).reshape(b, c, height, width)


class DownLevel(nn.Module):
    """Encoder half of a level: ``[B, in, H, W]`` -> ``[B, out, H/2, W/2]``, pushing each stage output
    (``[B, out, H, W]``) onto ``skips``."""

    def __init__(self, in_channels: int, out_channels: int, num_stages: int, **stage_kwargs) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            Stage(in_channels if i == 0 else out_channels, out_channels, **stage_kwargs)
            for i in range(num_stages)
        )

    def forward(self, h: Tensor, emb: Tensor, skips: list[Tensor], context: Tensor | None) -> Tensor:
        for stage in self.stages:
            h = stage(h, emb, context)
            skips.append(h)
        return F.avg_pool2d(h, 2)


class UpLevel(nn.Module):
    """Decoder half of a level: ``[B, in, H/2, W/2]`` -> ``[B, out, H, W]``, popping one ``[B, out, H, W]``
    skip per stage."""

    def __init__(self, in_channels: int, out_channels: int, num_stages: int, **stage_kwargs) -> None:
        super().__init__()
        self.upsample = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.stages = nn.ModuleList(
            Stage(2 * out_channels, out_channels, **stage_kwargs) for _ in range(num_stages)
        )

    def forward(self, h: Tensor, emb: Tensor, skips: list[Tensor], context: Tensor | None) -> Tensor:
        h = self.upsample(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        for stage in self.stages:
            h = stage(torch.cat([h, skips.pop()], dim=1), emb, context)
        return h


class ImageUNet(ModelMixin, ConfigMixin):
    """U-Net backbone ``F(x, noise_labels, class_labels)`` for square images.

    ``forward(x [B, in_channels, resolution, resolution], noise_labels [B] float,
    class_labels [B] long | None, context [B, M, cross_attention_dim] | None)
    -> [B, in_channels, resolution, resolution]``.

    The conditioning width is ``self.emb_dim = 4 * base_channels``; ``self.time_embed`` maps
    ``noise_labels [B] -> [B, emb_dim]``. With ``num_classes > 0`` the label table has a null row
    at index ``num_classes``, used when ``class_labels`` is ``None``. The output conv is
    zero-initialised, so a fresh network returns zeros.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 1,
        resolution: int = 16,
        base_channels: int = 32,
        channel_mults: tuple[int, ...] = (1, 2),
        num_res_blocks: int = 1,
        attention_levels: tuple[int, ...] = (1,),
        num_heads: int = 4,
        dropout: float = 0.0,
        num_classes: int = 0,
        cross_attention_dim: int = 0,
        context_groups: int = 1,
    ) -> None:
        super().__init__()
        levels = len(channel_mults)
        widths = [base_channels * m for m in channel_mults]
        check_config(in_channels >= 1, f"in_channels must be >= 1, got {in_channels}")
        check_config(base_channels >= 1, f"base_channels must be >= 1, got {base_channels}")
        check_config(
            levels >= 1 and all(m >= 1 for m in channel_mults),
            f"channel_mults must be a non-empty list of positive integers, got {list(channel_mults)}",
        )
        check_config(
            resolution >= 1 and resolution % 2 ** (levels - 1) == 0,
            f"resolution must be a positive multiple of {2 ** (levels - 1)} for {levels} levels, got {resolution}",
        )
        check_config(num_res_blocks >= 1, f"num_res_blocks must be >= 1, got {num_res_blocks}")
        check_config(
            all(0 <= lvl < levels for lvl in attention_levels),
            f"attention_levels must lie in [0, {levels - 1}], got {list(attention_levels)}",
        )
        check_config(
            num_heads >= 1 and all(widths[lvl] % num_heads == 0 for lvl in attention_levels),
            f"num_heads must divide the channel count of every attention level {[widths[lvl] for lvl in attention_levels]}, got {num_heads}",
        )
        check_config(0.0 <= dropout < 1.0, f"dropout must be in [0, 1), got {dropout}")
        check_config(num_classes >= 0, f"num_classes must be >= 0, got {num_classes}")
        check_context_config(cross_attention_dim, context_groups, len(attention_levels), "attention levels")

        self.emb_dim = 4 * base_channels
        self.time_embed = TimeEmbedding(self.emb_dim, self.emb_dim)
        self.class_embed = ClassEmbedding(num_classes, self.emb_dim) if num_classes > 0 else None

        def stage_kwargs(level: int) -> dict:
            if level not in attention_levels:
                return {"emb_dim": self.emb_dim, "dropout": dropout, "num_heads": None}
            deepest_first = sorted(attention_levels, reverse=True)
            group = context_group(deepest_first.index(level), len(deepest_first), context_groups)
            return {
                "emb_dim": self.emb_dim,
                "dropout": dropout,
                "num_heads": num_heads,
                "context": (cross_attention_dim, group, context_groups) if cross_attention_dim else None,
            }

        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        inputs = [base_channels, *widths]  # channels entering each level from above
        self.down = nn.ModuleList(
            DownLevel(inputs[level], widths[level], num_res_blocks, **stage_kwargs(level))
            for level in range(levels - 1)
        )
        self.bottleneck = nn.ModuleList(
            Stage(inputs[levels - 1] if i == 0 else widths[-1], widths[-1], **stage_kwargs(levels - 1))
            for i in range(2 * num_res_blocks)
        )
        self.up = nn.ModuleList(
            UpLevel(widths[level + 1], widths[level], num_res_blocks, **stage_kwargs(level))
            for level in reversed(range(levels - 1))
        )

        self.norm_out = _group_norm(widths[0])
        self.conv_out = nn.Conv2d(widths[0], in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: Tensor, noise_labels: Tensor, class_labels: Tensor | None = None,
                context: Tensor | None = None) -> Tensor:
        """``x [B, C, H, W]``, ``noise_labels [B]``, ``class_labels [B] | None``, ``context [B, M, D] | None``
        -> ``[B, C, H, W]``."""
        emb = conditioning(self, x, noise_labels, class_labels, context)

        h = self.conv_in(x)
        skips: list[Tensor] = []
        for level in self.down:
            h = level(h, emb, skips, context)
        for stage in self.bottleneck:
            h = stage(h, emb, context)
        for level in self.up:
            h = level(h, emb, skips, context)
        return self.conv_out(F.silu(self.norm_out(h)))
