"""Vector quantisation with a straight-through estimator (VQ-VAE, van den Oord et al. 2017).

Codes are looked up by cosine similarity (inputs and codebook rows are L2-normalised), which
keeps more of the codebook in use than plain Euclidean lookup (Yu et al. 2022, ViT-VQGAN).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class VectorQuantizer(nn.Module):
    """``z [B, N, D]`` -> ``(z_q [B, N, D] with straight-through gradients, ids [B, N], losses)``.

    ``losses`` has ``codebook`` (pulls codes to the encoder outputs) and ``commitment``
    (``beta`` × pull of the encoder outputs to their codes).
    """

    def __init__(self, num_codes: int, dim: int, beta: float = 0.25):
        super().__init__()
        self.beta = beta
        self.codebook = nn.Embedding(num_codes, dim)
        nn.init.normal_(self.codebook.weight)

    @property
    def num_codes(self) -> int:
        return self.codebook.num_embeddings

    def lookup(self, ids: Tensor) -> Tensor:
        """Code vectors of ``ids [...]`` -> ``[..., D]`` (unit length)."""
        return F.normalize(self.codebook(ids), dim=-1)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        z = F.normalize(z, dim=-1)
        codes = F.normalize(self.codebook.weight, dim=-1)
        ids = (z @ codes.T).argmax(dim=-1)
        quantized = codes[ids]
        losses = {"codebook": F.mse_loss(quantized, z.detach()),
                  "commitment": self.beta * F.mse_loss(z, quantized.detach())}
        return z + (quantized - z).detach(), ids, losses
