"""The VAE side of a diffusers pipeline: its downscaling factor, latent sizes and decoding.

Used where genlab runs a diffusers pipeline's denoising network itself (guided sampling, alignment,
CogVideoX camera control) and so does the pipeline's latent bookkeeping too.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from genlab.errors import GenlabError


def vae_scale_factor(block_out_channels: Sequence[int]) -> int:
    """The VAE's spatial downscaling ``f = 2^(levels − 1)``, from its config's ``block_out_channels``."""
    return 2 ** (len(block_out_channels) - 1)


def latent_side(size: int | None, name: str, native: int, factor: int) -> int:
    """The latent side for an image side of ``size`` pixels (default ``native · factor``, i.e. ``native``).

    GenlabError naming ``name`` (``"height"``, ``"width"``) unless ``size`` is a positive multiple of ``factor``.
    """
    size = native * factor if size is None else size
    if size < factor or size % factor:
        raise GenlabError(f"{name} must be a positive multiple of {factor} (the VAE's downscaling), got {size}")
    return size // factor


def vae_decode(vae: nn.Module, latents: Tensor) -> Tensor:
    """Decode ``latents / scaling_factor + shift_factor`` in the VAE's dtype; float32 in ``[-1, 1]``.

    ``latents [N, C, h, w]`` give images ``[N, 3, H, W]``; a video VAE's ``[N, C, T, h, w]`` give
    ``[N, 3, T', H, W]``. Differentiable in ``latents``.
    """
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    decoded = vae.decode((latents / vae.config.scaling_factor + shift).to(vae.dtype)).sample
    return decoded.float().clamp(-1, 1)
