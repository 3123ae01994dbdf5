"""DisCo-Diff's two small transformers around the denoiser.

* :class:`LatentEncoder`: a ViT over the clean image with ``m`` extra class tokens, each giving
  logits over ``k`` codes.
* :class:`LatentConditioner`: codes -> per-latent code embeddings -> a small transformer ->
  context tokens that the denoiser cross-attends to; a learned null embedding stands in for
  dropped latents.
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import Tensor, nn

from genlab.core.nets.attention import TransformerBlock
from genlab.core.nets.dit import sincos_position_embedding
from genlab.disco.config import check_latent_shape
from genlab.errors import GenlabError


class LatentEncoder(ModelMixin, ConfigMixin):
    """ViT encoder ``images [B, C, H, W]`` in ``[-1, 1]`` -> code logits ``[B, m, k]``.

    Patches (``patch_size``) get a fixed 2-D sin-cos position embedding; ``m`` learned class tokens
    are prepended; after ``depth`` pre-LN blocks a shared linear head maps each class token to ``k``
    logits (the tokens differ by their learned initial values).

    ``batch_norm_head`` (default) standardises the class tokens' features over the batch
    (BatchNorm without affine terms) and drops the head's bias, so no code can be preferred for
    every image. Without it, a freshly initialised ViT gives nearly the same logits for every
    image (their spread across images is ~0.02 at init), the codes carry no information, and
    end-to-end training settles on one code per latent (measured in docs/results/disco.md).
    """

    @register_to_config
    def __init__(self, in_channels: int = 3, resolution: int = 16, patch_size: int = 4, hidden_size: int = 128,
                 depth: int = 3, num_heads: int = 4, num_latents: int = 4, num_codes: int = 16,
                 batch_norm_head: bool = True) -> None:
        super().__init__()
        check_latent_shape(num_latents, num_codes)
        if resolution % patch_size or hidden_size % 4 or hidden_size % num_heads:
            raise GenlabError(f"encoder: resolution {resolution} must be a multiple of patch_size {patch_size} and "
                              f"hidden_size {hidden_size} a multiple of 4 and of num_heads {num_heads}")
        self.patch_embed = nn.Conv2d(in_channels, hidden_size, patch_size, stride=patch_size)
        self.register_buffer("pos_embed", sincos_position_embedding(resolution // patch_size, hidden_size)[None],
                             persistent=False)
        self.class_tokens = nn.Parameter(torch.randn(1, num_latents, hidden_size) * 0.02)
        self.blocks = nn.ModuleList(TransformerBlock(hidden_size, num_heads) for _ in range(depth))
        self.norm = nn.LayerNorm(hidden_size)
        self.batch_norm = nn.BatchNorm1d(num_latents * hidden_size, affine=False) if batch_norm_head else None
        self.head = nn.Linear(hidden_size, num_codes, bias=not batch_norm_head)

    def forward(self, images: Tensor) -> Tensor:
        """``images [B, C, H, W]`` -> logits ``[B, m, k]``."""
        cfg = self.config
        expected = (cfg.in_channels, cfg.resolution, cfg.resolution)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise GenlabError(f"the DisCo-Diff encoder takes images [B, {', '.join(map(str, expected))}], "
                              f"got {list(images.shape)}")
        patches = self.patch_embed(images).flatten(2).transpose(1, 2) + self.pos_embed  # [B, N, hidden]
        tokens = torch.cat([self.class_tokens.expand(images.shape[0], -1, -1), patches], dim=1)
        for block in self.blocks:
            tokens = block(tokens)
        features = self.norm(tokens[:, : cfg.num_latents])  # [B, m, hidden]
        if self.batch_norm is not None:
            features = self.batch_norm(features.flatten(1)).view_as(features)
        return self.head(features)


class LatentConditioner(nn.Module):
    """Codes -> context tokens ``[B, m, dim]`` for the denoiser's cross-attention.

    ``codes`` is either relaxed one-hot ``[B, m, k]`` floats (training, from Gumbel-softmax) or code
    ids ``[B, m]`` (integers in ``[0, k]``, where ``k`` is the null code); ``None`` means all latents
    dropped. ``keep [B]`` (0/1) replaces a whole row's latents by the null code where 0. Each latent
    has its own table of ``k + 1`` embeddings (row ``k`` = its null embedding), plus a learned
    position; ``depth`` transformer blocks then mix the latents.
    """

    def __init__(self, num_latents: int, num_codes: int, dim: int = 128, depth: int = 2, num_heads: int = 4):
        super().__init__()
        check_latent_shape(num_latents, num_codes)
        self.num_latents, self.num_codes = num_latents, num_codes
        self.code_embeddings = nn.Parameter(torch.randn(num_latents, num_codes + 1, dim) * 0.02)
        self.positions = nn.Parameter(torch.randn(1, num_latents, dim) * 0.02)
        self.blocks = nn.ModuleList(TransformerBlock(dim, num_heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def one_hot(self, codes: Tensor | None, batch: int, keep: Tensor | None = None) -> Tensor:
        """Codes (any accepted form) as weights over each latent's ``k + 1`` embeddings: ``[B, m, k + 1]``."""
        m, k = self.num_latents, self.num_codes
        device, dtype = self.code_embeddings.device, self.code_embeddings.dtype
        null = torch.zeros(batch, m, k + 1, device=device, dtype=dtype)
        null[..., k] = 1
        if codes is None:
            return null
        if codes.is_floating_point():
            if tuple(codes.shape) != (batch, m, k):
                raise GenlabError(f"relaxed codes must have shape [{batch}, {m}, {k}], got {list(codes.shape)}")
            weights = torch.cat([codes.to(dtype), torch.zeros(batch, m, 1, device=device, dtype=dtype)], dim=2)
        else:
            if tuple(codes.shape) != (batch, m):
                raise GenlabError(f"code ids must have shape [{batch}, {m}], got {list(codes.shape)}")
            if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) > k):
                raise GenlabError(f"code ids must lie in [0, {k}] ({k} = null), got values in "
                                  f"[{int(codes.min())}, {int(codes.max())}]")
            weights = nn.functional.one_hot(codes.long(), k + 1).to(dtype)
        if keep is not None:
            keep = keep.to(dtype).view(batch, 1, 1)
            weights = keep * weights + (1 - keep) * null
        return weights

    def forward(self, codes: Tensor | None, batch: int, keep: Tensor | None = None) -> Tensor:
        """-> context tokens ``[B, m, dim]``."""
        weights = self.one_hot(codes, batch, keep)
        tokens = torch.einsum("bmk,mkd->bmd", weights, self.code_embeddings) + self.positions
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)
