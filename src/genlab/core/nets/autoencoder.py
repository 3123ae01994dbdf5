"""A small convolutional frame autoencoder: the latent space a latent video DiT works in.

Latent video diffusion (Stable Video Diffusion, CogVideoX) does not denoise pixels: an autoencoder
maps each frame ``[3, H, W]`` to a latent ``[latent_channels, H / f, W / f]`` (here ``f = 2**downsamples``),
the transformer denoises clips of latents, and the decoder renders the result. The decoder then
carries the texture, so the transformer's tokens only decide *what* goes where. This one is
CPU-sized: a residual conv encoder and a mirrored decoder (nearest up-sampling), no attention.

As in diffusers' ``AutoencoderKL``, ``scaling_factor`` and ``shift_factor`` (kept in the config, set after
training from the latents' statistics) map raw latents to ones of roughly unit spread:
:meth:`encode_latents` returns ``(z - shift_factor) * scaling_factor`` and :meth:`decode_latents` undoes it.
"""

from __future__ import annotations

from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import Tensor, nn

from genlab.core.nets.embeddings import check_config


class ResidualBlock(nn.Module):
    """``x + conv(SiLU(conv(x)))`` at constant channels and size."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.SiLU(),
                                  nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class FrameAutoencoder(ModelMixin, ConfigMixin):
    """``encode: [N, in_channels, H, W] -> [N, latent_channels, H / 2**downsamples, W / 2**downsamples]`` and
    ``decode`` back; ``H`` and ``W`` must be multiples of ``2**downsamples``.

    Widths: ``width`` at full size, ``2 * width`` below it.
    """

    @register_to_config
    def __init__(self, in_channels: int = 3, latent_channels: int = 4, width: int = 32, downsamples: int = 2,
                 scaling_factor: float = 1.0, shift_factor: float = 0.0) -> None:
        super().__init__()
        check_config(in_channels >= 1 and latent_channels >= 1, "in_channels and latent_channels must be >= 1")
        check_config(width >= 1 and downsamples >= 1, f"width and downsamples must be >= 1, got {width}, {downsamples}")
        check_config(scaling_factor > 0, f"scaling_factor must be positive, got {scaling_factor}")
        encoder: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1), ResidualBlock(width)]
        channels = width
        for _ in range(downsamples):
            encoder += [nn.Conv2d(channels, 2 * width, 4, stride=2, padding=1), nn.SiLU(), ResidualBlock(2 * width)]
            channels = 2 * width
        encoder.append(nn.Conv2d(channels, latent_channels, 3, padding=1))
        decoder: list[nn.Module] = [nn.Conv2d(latent_channels, 2 * width, 3, padding=1), ResidualBlock(2 * width)]
        for level in range(downsamples):
            out = width if level == downsamples - 1 else 2 * width
            decoder += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(2 * width, out, 3, padding=1), nn.SiLU(),
                        ResidualBlock(out)]
        decoder.append(nn.Conv2d(width, in_channels, 3, padding=1))
        self.encoder, self.decoder = nn.Sequential(*encoder), nn.Sequential(*decoder)

    @property
    def factor(self) -> int:
        """Pixels per latent cell along each side."""
        return 2 ** self.config.downsamples

    def encode(self, x: Tensor) -> Tensor:
        """Raw latents of frames ``x [N, C, H, W]`` in ``[-1, 1]``."""
        check_config(x.ndim == 4 and x.shape[1] == self.config.in_channels and x.shape[-1] % self.factor == 0
                     and x.shape[-2] % self.factor == 0,
                     f"the autoencoder takes frames [N, {self.config.in_channels}, H, W] with H and W multiples of "
                     f"{self.factor}, got {list(x.shape)}")
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        """Frames ``[N, C, H, W]`` from raw latents ``z [N, latent_channels, h, w]``."""
        return self.decoder(z)

    def forward(self, x: Tensor) -> Tensor:
        """The reconstruction of ``x``."""
        return self.decode(self.encode(x))

    def encode_latents(self, x: Tensor) -> Tensor:
        """Normalised latents ``(encode(x) - shift_factor) * scaling_factor`` (what the video DiT denoises)."""
        return (self.encode(x) - self.config.shift_factor) * self.config.scaling_factor

    def decode_latents(self, latents: Tensor) -> Tensor:
        """Frames from normalised latents (the inverse map of :meth:`encode_latents`)."""
        return self.decode(latents / self.config.scaling_factor + self.config.shift_factor)
