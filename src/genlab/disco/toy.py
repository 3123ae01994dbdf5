"""DisCo-Diff's 2-D toy: an 8-Gaussian ring, MLP denoisers with and without one discrete latent.

The DisCo model encodes a clean point into ``m`` latents of ``k`` codes (Gumbel-softmax) and
conditions the denoiser on them; both are trained end to end with the plain EDM loss (no KL
term). Latents are dropped to a learned null embedding with probability ``latent_dropout``.
At sampling time the codes come from the prior, which for one latent is the categorical
distribution of the encoder's (low-temperature) codes on the training data.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from genlab.core.denoiser import EDMDenoiser
from genlab.core.edm import EDMSchedule, edm_loss
from genlab.disco.codes import gumbel_softmax_codes
from genlab.errors import GenlabError


def ring_of_gaussians(num_points: int, modes: int = 8, radius: float = 1.0, std: float = 0.08,
                      generator: torch.Generator | None = None) -> Tensor:
    """``num_points`` samples ``[N, 2]`` from ``modes`` equal Gaussians evenly spaced on a circle."""
    mode = torch.randint(0, modes, (num_points,), generator=generator)
    angle = 2 * math.pi * mode / modes
    centres = radius * torch.stack([angle.cos(), angle.sin()], dim=1)
    return centres + std * torch.randn(num_points, 2, generator=generator)


def _mlp(inputs: int, hidden: int, outputs: int, depth: int = 3) -> nn.Sequential:
    layers, width = [], inputs
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.SiLU()]
        width = hidden
    return nn.Sequential(*layers, nn.Linear(width, outputs))


class ToyDenoiserNet(nn.Module):
    """MLP ``F(x_in [B,2], noise_labels [B], codes [B,m,k] | None) -> [B,2]``.

    Codes enter through a linear embedding; ``codes=None`` (or dropped) uses a learned null
    embedding. ``num_latents = 0`` gives the plain EDM baseline.
    """

    def __init__(self, num_latents: int = 1, num_codes: int = 8, hidden: int = 256, code_dim: int = 16):
        super().__init__()
        self.num_latents, self.num_codes = num_latents, num_codes
        self.register_buffer("frequencies", torch.randn(16) * 4)
        self.code_embedding = nn.Linear(num_latents * num_codes, code_dim) if num_latents else None
        self.null_code = nn.Parameter(torch.zeros(code_dim)) if num_latents else None
        self.body = _mlp(2 + 32 + (code_dim if num_latents else 0), hidden, 2)

    def forward(self, x: Tensor, noise_labels: Tensor, codes: Tensor | None = None,
                keep: Tensor | None = None) -> Tensor:
        """``keep [B]`` (0/1) selects, per row, the codes' embedding (1) or the null embedding (0)."""
        angles = noise_labels[:, None] * self.frequencies
        features = [x, angles.sin(), angles.cos()]
        if self.num_latents:
            null = self.null_code.expand(x.shape[0], -1)
            if codes is None:
                features.append(null)
            else:
                embedded = self.code_embedding(codes.flatten(1))
                keep = torch.ones(x.shape[0], 1, device=x.device) if keep is None else keep.view(-1, 1)
                features.append(keep * embedded + (1 - keep) * null)
        return self.body(torch.cat(features, dim=1))


class ToyDisCo(nn.Module):
    """Encoder + EDM denoiser trained jointly; ``num_latents = 0`` is the EDM baseline.

    Calling the model on clean points gives its training loss, as :class:`~genlab.disco.model.DisCoDiff`
    does, so that a data-parallel wrapper's ``forward`` is what computes it.
    """

    def __init__(self, num_latents: int = 1, num_codes: int = 8, temperature: float = 1.0,
                 latent_dropout: float = 0.1, straight_through: bool = False, hidden: int = 256):
        super().__init__()
        if num_latents < 0 or (num_latents and num_codes < 1):
            raise GenlabError(f"need num_latents >= 0 and num_codes >= 1, got {num_latents} and {num_codes}")
        if not 0 <= latent_dropout <= 1:
            raise GenlabError(f"latent_dropout must be in [0, 1], got {latent_dropout}")
        self.num_latents, self.num_codes = num_latents, num_codes
        self.temperature, self.latent_dropout, self.straight_through = temperature, latent_dropout, straight_through
        self.encoder = _mlp(2, hidden, num_latents * num_codes) if num_latents else None
        schedule = EDMSchedule(sigma_data=0.75)
        self.denoiser = EDMDenoiser(ToyDenoiserNet(num_latents, num_codes, hidden), schedule)

    def logits(self, x0: Tensor) -> Tensor:
        """Encoder logits ``[B, m, k]`` of clean points ``x0 [B, 2]``."""
        return self.encoder(x0).view(-1, self.num_latents, self.num_codes)

    def forward(self, x0: Tensor) -> Tensor:
        """Training loss of clean points ``x0 [B, 2]``: the plain EDM loss with the encoder's relaxed codes
        (some dropped to the null embedding)."""
        if not self.num_latents:
            return edm_loss(self.denoiser, x0).mean()
        codes = gumbel_softmax_codes(self.logits(x0), self.temperature, self.straight_through)
        keep = (torch.rand(x0.shape[0], device=x0.device) >= self.latent_dropout).to(codes.dtype)
        return edm_loss(self.denoiser, x0, codes=codes, keep=keep).mean()

    @torch.no_grad()
    def code_indices(self, x0: Tensor) -> Tensor:
        """The encoder's most likely code per latent, ``[B, m]`` (the zero-temperature limit)."""
        return self.logits(x0).argmax(-1)
