"""Enhancing whole videos: any length, any frame size (a multiple of the patch), bounded memory.

:func:`enhance_video` turns low-resolution, low-frame-rate clips ``[B, n, 3, h, w]`` in ``[-1, 1]``
into ``[B, (n - 1) * time + 1, 3, h * space, w * space]``:

* the ControlNet enhancer samples with Heun's method from an SDEdit start, the trilinear
  up-sampling noised to ``start_sigma``, over ``steps`` levels down to 0; the key-frame hint is
  noised to ``augment_sigma`` (noise augmentation, the level the model is told);
* the regression baseline is one forward pass.

Videos longer than the model's clip, or frames larger than its resolution, run in overlapping
windows blended at every step (:mod:`genlab.enhance.windows`); shorter or smaller ones are padded
(frames carrying no key frame, replicated borders) and cropped back. ``memory_budget`` (GiB) caps
how many windows share one call, so the model's activation memory does not grow with the video's
length; what does grow is a few float tensors the size of the whole output (the sampler's state
and the blend accumulators), about 30 bytes per output pixel and channel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.core.edm import karras_sigmas, sample
from genlab.enhance.config import EnhanceSettings
from genlab.enhance.degradation import check_factors, enhanced_length, key_frame_hint, trilinear_upsample
from genlab.enhance.windows import WindowedDenoiser, apply_in_windows
from genlab.errors import GenlabError

GIB = 1024**3


def estimated_window_bytes(net_config, clips: int) -> int:
    """Rough peak activation bytes of one no-grad model call on one window of ``clips`` clips (float32):
    the widest block tensors (MLP hidden, attention in/out, the branch's residuals) plus the attention
    scores."""
    frames = net_config.frames // net_config.temporal_patch_size
    grid = net_config.resolution // net_config.patch_size
    tokens = frames * grid**2
    width = net_config.hidden_size * (net_config.mlp_ratio + 8 + 2)  # + 2: residuals of a depth-2 branch
    attended = tokens if net_config.attention == "full" else grid**2 + frames
    return 4 * clips * (tokens * width + net_config.num_heads * tokens * attended)


def windows_per_call(net_config, clips: int, memory_budget: float) -> int:
    """How many windows fit in ``memory_budget`` GiB (0 = no limit), at least 1."""
    if memory_budget == 0:
        return 2**31
    return max(1, int(memory_budget * GIB // estimated_window_bytes(net_config, clips)))


def check_low_resolution(low: Tensor, space: int, time: int, size: tuple[int, int], patch_size: int) -> None:
    """Clear errors for input clips ``low [B, n, 3, h, w]`` the enhancer cannot take to frames of ``size``."""
    check_factors(space, time)
    if low.ndim != 5 or low.shape[2] != 3 or low.shape[1] == 0:
        raise GenlabError(f"expected RGB clips [B, n, 3, h, w] with n >= 1 frames, got {list(low.shape)}")
    if time > 1 and low.shape[1] < 2:
        raise GenlabError(f"--time {time} interpolates between frames: the video needs at least 2 frames "
                          f"(one key-frame interval), it has {low.shape[1]}")
    height, width = size
    if height % patch_size or width % patch_size:
        raise GenlabError(f"the enhanced frames would be {height}×{width}, not a multiple of the model's patch size "
                          f"{patch_size}; crop or resize the input so that {space}·h and {space}·w are multiples "
                          f"of {patch_size}")


def _padded(video: Tensor, frames: int, size: int) -> Tensor:
    """``video [B, L, C, H, W]`` padded at the end to at least ``frames`` frames (zeros) and ``size`` pixels
    (replicated borders)."""
    extra_frames = max(0, frames - video.shape[1])
    extra_rows, extra_cols = max(0, size - video.shape[-2]), max(0, size - video.shape[-1])
    if extra_rows or extra_cols:
        flat = F.pad(video.flatten(0, 1), (0, extra_cols, 0, extra_rows), mode="replicate")
        video = flat.reshape(*video.shape[:2], *flat.shape[-3:])
    if extra_frames:
        video = torch.cat([video, video.new_zeros(video.shape[0], extra_frames, *video.shape[2:])], dim=1)
    return video


def _overlaps(settings: EnhanceSettings, net_config) -> tuple[int, int, int]:
    frames, resolution = net_config.frames, net_config.resolution
    frame_overlap = frames // 2 if settings.frame_overlap < 0 else settings.frame_overlap
    tile_overlap = resolution // 4 if settings.tile_overlap < 0 else settings.tile_overlap
    return frame_overlap, tile_overlap, tile_overlap


@torch.no_grad()
def enhance_video(model: nn.Module, low: Tensor, space: int, time: int, settings: EnhanceSettings = EnhanceSettings(),
                  size: tuple[int, int] | None = None, progress: bool = False) -> Tensor:
    """Enhance ``low [B, n, 3, h, w]`` (``[-1, 1]``) by ``space`` and ``time``: ``[B, (n-1)·time+1, 3, H, W]``.

    ``model`` is a :class:`~genlab.enhance.model.ControlNetEnhancer` or a
    :class:`~genlab.enhance.model.RegressionEnhancer`. The output frame size ``(H, W)`` defaults to
    ``(h·space, w·space)``; pass ``size`` when the input was shrunk to a rounded size (e.g. 32 / 3).
    """
    settings.validate()
    cfg = model.net_config
    size = (low.shape[-2] * space, low.shape[-1] * space) if size is None else tuple(size)
    check_low_resolution(low, space, time, size, cfg.patch_size)
    batch, count = low.shape[:2]
    length = enhanced_length(count, time)
    hint, key_frames = key_frame_hint(low.float(), time, size)
    trilinear = trilinear_upsample(low.float(), time, size)
    hint, trilinear = _padded(hint, cfg.frames, cfg.resolution), _padded(trilinear, cfg.frames, cfg.resolution)
    key_frames = F.pad(key_frames, (0, hint.shape[1] - length))
    space_tensor = torch.full((batch,), space, device=low.device)
    window = (cfg.frames, cfg.resolution, cfg.resolution)
    overlap = _overlaps(settings, cfg)
    per_call = windows_per_call(cfg, batch, settings.memory_budget)

    if model.variant == "regression":
        enhanced = apply_in_windows(model, trilinear, window, overlap, per_call, key_frames=key_frames,
                                    space=space_tensor)
    else:
        generator = torch.Generator().manual_seed(settings.seed)  # CPU noise: the same on every device
        augmentation = torch.randn(hint.shape, generator=generator).to(hint)
        hint = hint + settings.augment_sigma * augmentation * key_frames[:, :, None, None, None]
        noise = trilinear / settings.start_sigma + torch.randn(trilinear.shape, generator=generator).to(trilinear)
        sigmas = karras_sigmas(settings.sampling_steps, model.sigma_min, settings.start_sigma)
        windowed = WindowedDenoiser(model, window, overlap, per_call)
        enhanced = sample(windowed, noise, sigmas, "heun", generator=generator, progress=progress, hint=hint,
                          key_frames=key_frames, space=space_tensor,
                          augment_sigma=torch.full((batch,), settings.augment_sigma, device=low.device))
    return enhanced[:, :length, :, : size[0], : size[1]].clamp(-1, 1)
