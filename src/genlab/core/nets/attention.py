"""Attention layers shared by the backbones and by method-specific networks.

* :class:`SelfAttention` and :class:`CrossAttention`: multi-head SDPA on tokens ``[B, N, C]``.
* :class:`TransformerBlock`: a plain pre-LayerNorm block (self-attention, then MLP), e.g. for a ViT
  encoder or for embedding a short sequence of condition tokens.
* :class:`ContextAttention`: a residual cross-attention from image tokens to a group of context
  tokens, zero-initialised (a fresh one is the identity), used by backbones built with
  ``cross_attention_dim > 0``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def _split_heads(x: Tensor, num_heads: int) -> Tensor:
    """``[B, N, C]`` -> ``[B, heads, N, C / heads]``."""
    b, n, c = x.shape
    return x.reshape(b, n, num_heads, c // num_heads).transpose(1, 2)


def _merge_heads(x: Tensor) -> Tensor:
    """``[B, heads, N, C / heads]`` -> ``[B, N, C]``."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


class SelfAttention(nn.Module):
    """Multi-head self-attention on tokens: ``[B, N, C]`` -> ``[B, N, C]`` (SDPA, no mask)."""

    def __init__(self, channels: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = (_split_heads(part, self.num_heads) for part in self.qkv(x).chunk(3, dim=-1))
        return self.proj(_merge_heads(F.scaled_dot_product_attention(q, k, v)))


class CrossAttention(nn.Module):
    """Multi-head cross-attention: queries ``x [B, N, C]``, keys/values ``context [B, M, D]`` -> ``[B, N, C]``."""

    def __init__(self, channels: int, context_dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.query = nn.Linear(channels, channels)
        self.key_value = nn.Linear(context_dim, 2 * channels)
        self.proj = nn.Linear(channels, channels)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        q = _split_heads(self.query(x), self.num_heads)
        k, v = (_split_heads(part, self.num_heads) for part in self.key_value(context).chunk(2, dim=-1))
        return self.proj(_merge_heads(F.scaled_dot_product_attention(q, k, v)))


class TransformerBlock(nn.Module):
    """Pre-LayerNorm transformer block: ``x [B, N, C]`` -> ``[B, N, C]`` (self-attention, then GELU MLP)."""

    def __init__(self, channels: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm_1 = nn.LayerNorm(channels)
        self.attn = SelfAttention(channels, num_heads)
        self.norm_2 = nn.LayerNorm(channels)
        hidden = int(channels * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.GELU(), nn.Linear(hidden, channels))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm_1(x))
        return x + self.mlp(self.norm_2(x))


class ContextAttention(nn.Module):
    """Residual cross-attention to one group of context tokens: ``x [B, N, C]`` -> ``x + attn(x, group)``.

    The context ``[B, M, D]`` is cut into ``groups`` consecutive groups (``torch.tensor_split``, so
    sizes differ by at most one) and this layer attends to group ``group`` only; with ``groups = 1``
    it sees every token. The output projection is zero-initialised, so a fresh layer is the identity.
    """

    def __init__(self, channels: int, context_dim: int, num_heads: int, group: int = 0, groups: int = 1) -> None:
        super().__init__()
        self.group, self.groups = group, groups
        self.norm = nn.LayerNorm(channels)
        self.attn = CrossAttention(channels, context_dim, num_heads)
        nn.init.zeros_(self.attn.proj.weight)
        nn.init.zeros_(self.attn.proj.bias)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        tokens = context.tensor_split(self.groups, dim=1)[self.group]
        return x + self.attn(self.norm(x), tokens)


def context_group(position: int, count: int, groups: int) -> int:
    """Group index of layer ``position`` of ``count`` when ``groups`` groups are spread over them in order
    (``position * groups // count``: the first layers get group 0, the last group ``groups - 1``)."""
    return position * groups // count
