"""Vector quantisation with a straight-through estimator (VQ-VAE, van den Oord et al. 2017).

Codes are looked up by cosine similarity (inputs and codebook rows are L2-normalised), which
keeps more of the codebook in use than plain Euclidean lookup (Yu et al. 2022, ViT-VQGAN).
In training, codes that have gone unused (their moving-average usage falls below
``restart_below`` of a uniform share) are restarted at random encoder outputs of the batch, the
usual remedy for codebook collapse (Dhariwal et al. 2020, Jukebox). The restart is applied at the
start of the next training forward, after this step's backward has used the old codebook.
Data-parallel training (a ``torch.distributed`` group, as under ``accelerate launch``) keeps the
codebooks identical: usage is averaged over the processes and the restart vectors come from rank 0.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn


class VectorQuantizer(nn.Module):
    """``z [B, N, D]`` -> ``(z_q [B, N, D] with straight-through gradients, ids [B, N], losses)``.

    ``losses`` has ``codebook`` (pulls codes to the encoder outputs) and ``commitment``
    (``beta`` × pull of the encoder outputs to their codes).
    """

    def __init__(self, num_codes: int, dim: int, beta: float = 0.25, restart_below: float = 0.03,
                 usage_decay: float = 0.99):
        super().__init__()
        self.beta, self.restart_below, self.usage_decay = beta, restart_below, usage_decay
        self.codebook = nn.Embedding(num_codes, dim)
        nn.init.normal_(self.codebook.weight)
        self.register_buffer("usage", torch.full((num_codes,), 1.0 / num_codes))
        self._pending_restart: tuple[Tensor, Tensor] | None = None

    @property
    def num_codes(self) -> int:
        return self.codebook.num_embeddings

    def lookup(self, ids: Tensor) -> Tensor:
        """Code vectors of ``ids [...]`` -> ``[..., D]`` (unit length)."""
        return F.normalize(self.codebook(ids), dim=-1)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        if self.training and self._pending_restart is not None:
            dead, replacements = self._pending_restart
            with torch.no_grad():
                self.codebook.weight[dead] = replacements.to(self.codebook.weight.dtype)
        self._pending_restart = None
        z = F.normalize(z, dim=-1)
        codes = F.normalize(self.codebook.weight, dim=-1)
        ids = (z @ codes.T).argmax(dim=-1)
        quantized = codes[ids]
        if self.training and self.restart_below > 0:
            self._find_dead_codes(z.detach().reshape(-1, z.shape[-1]), ids.reshape(-1))
        losses = {"codebook": F.mse_loss(quantized, z.detach()),
                  "commitment": self.beta * F.mse_loss(z, quantized.detach())}
        return z + (quantized - z).detach(), ids, losses

    @torch.no_grad()
    def _find_dead_codes(self, inputs: Tensor, ids: Tensor) -> None:
        share = torch.bincount(ids, minlength=self.num_codes).float() / len(ids)
        distributed = dist.is_available() and dist.is_initialized()
        if distributed:
            dist.all_reduce(share)
            share /= dist.get_world_size()
        self.usage.mul_(self.usage_decay).add_(share, alpha=1 - self.usage_decay)
        dead = torch.nonzero(self.usage < self.restart_below / self.num_codes).squeeze(1)
        if len(dead):
            picks = torch.randint(0, len(inputs), (len(dead),), device=inputs.device)
            replacements = inputs[picks].contiguous()
            if distributed:
                dist.broadcast(replacements, src=0)
            self._pending_restart = (dead, replacements)
            self.usage[dead] = 1.0 / self.num_codes
