"""VEnhancer's video ControlNet on a genlab :class:`~genlab.core.nets.VideoDiT`.

The branch is a trainable copy of the base's first ``depth`` blocks. It starts from the base's own
tokens at the input of block 0, adds the patchified condition (the key-frame hint and the mask,
through a zero-initialised Conv3d, ControlNet's "zero convolution"), and returns, through
zero-initialised linears, one residual per copied block; :func:`~genlab.core.nets.control.residual_control`
adds residual ``i`` to the output of base block ``i``. A fresh branch therefore leaves the base
unchanged. The noise-augmentation level ``augment_sigma`` and the spatial factor ``space`` are
embedded and added to the blocks' conditioning vector on the tokens of key frames only.
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import Tensor, nn

from genlab.core.nets import VideoDiT
from genlab.core.nets.dit import DiTBlock
from genlab.core.nets.embeddings import TimeEmbedding
from genlab.core.nets.video_dit import FactorisedDiTBlock
from genlab.errors import GenlabError

HINT_CHANNELS = 3


def augment_label(augment_sigma: Tensor) -> Tensor:
    """The embedding input of a noise-augmentation level σ ≥ 0 (EDM-style ``ln(σ + 0.01) / 4``)."""
    return (augment_sigma.float() + 0.01).log() / 4


def space_label(space: Tensor) -> Tensor:
    """The embedding input of a spatial factor ``s`` in ``1..8``: ``ln s``."""
    return space.float().log()


class EnhanceControlNet(ModelMixin, ConfigMixin):
    """``(base tokens, emb, hint, key_frames, space, augment_sigma) -> depth residuals``.

    Args mirror the base ``VideoDiT`` (``hidden_size``, ``num_heads``, ``mlp_ratio``, ``attention``,
    ``frames``, ``patch_size``, ``temporal_patch_size``); ``depth`` is the number of copied blocks
    (= base blocks that receive a residual).
    """

    @register_to_config
    def __init__(self, hidden_size: int = 96, depth: int = 2, num_heads: int = 4, mlp_ratio: float = 4.0,
                 attention: str = "full", frames: int = 8, patch_size: int = 4, temporal_patch_size: int = 1) -> None:
        super().__init__()
        if depth < 1:
            raise GenlabError(f"the enhancer branch needs depth >= 1, got {depth}")
        patch = (temporal_patch_size, patch_size, patch_size)
        self.hint_embed = nn.Conv3d(HINT_CHANNELS + 1, hidden_size, patch, stride=patch)
        self.space_embed = TimeEmbedding(256, hidden_size)
        self.augment_embed = TimeEmbedding(256, hidden_size)
        token_frames = frames // temporal_patch_size
        if attention == "full":
            blocks = [DiTBlock(hidden_size, num_heads, mlp_ratio, hidden_size) for _ in range(depth)]
        else:
            blocks = [FactorisedDiTBlock(hidden_size, num_heads, mlp_ratio, hidden_size, token_frames)
                      for _ in range(depth)]
        self.blocks = nn.ModuleList(blocks)
        self.outputs = nn.ModuleList(nn.Linear(hidden_size, hidden_size) for _ in range(depth))
        for layer in (self.hint_embed, *self.outputs):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    @classmethod
    def for_base(cls, net: VideoDiT, depth: int = 2) -> EnhanceControlNet:
        """A fresh branch whose blocks copy ``net``'s first ``depth`` blocks."""
        if type(net).__name__ != "VideoDiT":
            raise GenlabError(f"the enhancer needs a genlab VideoDiT base, not {type(net).__name__}")
        if not 1 <= depth <= len(net.blocks):
            raise GenlabError(f"--branch-depth must be in 1..{len(net.blocks)} (the base's blocks), got {depth}")
        cfg = net.config
        branch = cls(cfg.hidden_size, depth, cfg.num_heads, cfg.mlp_ratio, cfg.attention, cfg.frames, cfg.patch_size,
                     cfg.temporal_patch_size)
        for copy, original in zip(branch.blocks, net.blocks, strict=False):
            copy.load_state_dict(original.state_dict())
        return branch

    def key_tokens(self, key_frames: Tensor, tokens_per_frame: int) -> Tensor:
        """``key_frames [B, T]`` bool -> ``[B, N, 1]`` float, 1 on tokens whose temporal patch holds a key frame."""
        step = self.config.temporal_patch_size
        per_patch = key_frames.reshape(key_frames.shape[0], -1, step).any(dim=2)  # [B, T']
        return per_patch.repeat_interleave(tokens_per_frame, dim=1)[..., None].float()

    def forward(self, base_tokens: Tensor, emb: Tensor, hint: Tensor, key_frames: Tensor, space: Tensor,
                augment_sigma: Tensor) -> list[Tensor]:
        """``base_tokens [B, N, C]``, ``emb [B, C]`` (after SiLU), ``hint [B, T, 3, H, W]``, ``key_frames [B, T]``
        bool, ``space [B]``, ``augment_sigma [B]`` -> ``depth`` residuals ``[B, N, C]``."""
        mask = key_frames.to(hint.dtype)[:, :, None, None, None].expand(-1, -1, 1, *hint.shape[-2:])
        condition = torch.cat([hint, mask], dim=2).to(self.dtype).transpose(1, 2)  # [B, 4, T, H, W]
        hint_tokens = self.hint_embed(condition).flatten(2).transpose(1, 2)  # [B, N, C]
        if hint_tokens.shape[:2] != base_tokens.shape[:2]:
            raise GenlabError(f"the hint gives {hint_tokens.shape[1]} tokens per clip but the video has "
                              f"{base_tokens.shape[1]}: pass it at the model's frames and resolution")
        tokens_per_frame = base_tokens.shape[1] * self.config.temporal_patch_size // key_frames.shape[1]
        extra = self.space_embed(space_label(space)) + self.augment_embed(augment_label(augment_sigma))
        token_emb = emb.to(self.dtype)[:, None] + self.key_tokens(key_frames, tokens_per_frame) * extra[:, None]
        hidden = base_tokens.to(self.dtype) + hint_tokens
        residuals = []
        for block, output in zip(self.blocks, self.outputs, strict=True):
            hidden = block(hidden, token_emb)
            residuals.append(output(hidden))
        return residuals

