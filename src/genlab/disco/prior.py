"""DisCo-Diff's stage 2: an autoregressive prior over the m discrete latents.

A tiny transformers ``LlamaForCausalLM`` reads ``[class token, z_1, …, z_m]``. Token ids
``0 … k−1`` are codes; ``k + c`` is class ``c`` and ``k + C`` the null class (unconditional, and
what class dropout trains). Only the k code logits are used, at every position.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import LlamaConfig, LlamaForCausalLM

from genlab.disco.config import check_latent_shape
from genlab.errors import GenlabError


def build_prior_lm(num_latents: int, num_codes: int, num_classes: int, hidden_size: int = 128,
                   num_layers: int = 3, num_heads: int = 4) -> LlamaForCausalLM:
    """A freshly initialised tiny LLaMA whose config records the latent shape (``genlab_prior``)."""
    check_latent_shape(num_latents, num_codes)
    config = LlamaConfig(
        vocab_size=num_codes + num_classes + 1, hidden_size=hidden_size, intermediate_size=4 * hidden_size,
        num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_heads,
        max_position_embeddings=num_latents + 1, tie_word_embeddings=False,
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
        genlab_prior={"num_latents": num_latents, "num_codes": num_codes, "num_classes": num_classes},
    )
    return LlamaForCausalLM(config)


class LatentPrior(nn.Module):
    """``p(z_1 … z_m | class)`` as a causal LM.

    ``forward(codes [B, m] long, class_labels [B] | None)`` returns the mean negative log-likelihood
    per latent in nats (the training loss); in training mode labels are replaced by the null class
    with probability ``class_dropout``.
    """

    def __init__(self, lm: LlamaForCausalLM, class_dropout: float = 0.1):
        super().__init__()
        shape = getattr(lm.config, "genlab_prior", None)
        if not isinstance(shape, dict):
            raise GenlabError("this causal LM is not a genlab DisCo-Diff prior (its config has no genlab_prior)")
        self.lm = lm
        self.num_latents, self.num_codes = shape["num_latents"], shape["num_codes"]
        self.num_classes = shape["num_classes"]
        self.class_dropout = class_dropout

    @classmethod
    def from_pretrained(cls, folder: Path | str) -> LatentPrior:
        """Load a prior written by ``prior.lm.save_pretrained(folder)``."""
        return cls(LlamaForCausalLM.from_pretrained(folder)).eval()

    def class_tokens(self, class_labels: Tensor | None, batch: int) -> Tensor:
        """Class token ids ``[B, 1]`` (the null class for ``None``)."""
        device = self.lm.device
        if class_labels is None:
            return torch.full((batch, 1), self.num_codes + self.num_classes, device=device, dtype=torch.long)
        if class_labels.shape != (batch,):
            raise GenlabError(f"class_labels must have shape [{batch}], got {list(class_labels.shape)}")
        if class_labels.numel() and (int(class_labels.min()) < 0 or int(class_labels.max()) > self.num_classes):
            raise GenlabError(f"class labels must lie in [0, {self.num_classes}] ({self.num_classes} = null)")
        return (class_labels.long() + self.num_codes).view(batch, 1).to(device)

    def code_logits(self, codes: Tensor, class_labels: Tensor | None) -> Tensor:
        """Logits ``[B, m, k]`` of each latent given the class and the previous latents."""
        batch = codes.shape[0]
        if codes.ndim != 2 or codes.shape[1] != self.num_latents:
            raise GenlabError(f"codes must have shape [B, {self.num_latents}], got {list(codes.shape)}")
        tokens = torch.cat([self.class_tokens(class_labels, batch), codes.long().to(self.lm.device)], dim=1)
        logits = self.lm(input_ids=tokens[:, :-1]).logits  # [B, m, vocab]
        return logits[..., : self.num_codes].float()

    def log_likelihood(self, codes: Tensor, class_labels: Tensor | None = None) -> Tensor:
        """``log p(codes | class)`` per row, ``[B]`` in nats."""
        logits = self.code_logits(codes, class_labels)
        return -F.cross_entropy(logits.transpose(1, 2), codes.long().to(logits.device), reduction="none").sum(1)

    def forward(self, codes: Tensor, class_labels: Tensor | None = None) -> Tensor:
        if self.training and class_labels is not None and self.class_dropout > 0:
            drop = torch.rand(class_labels.shape, device=class_labels.device) < self.class_dropout
            class_labels = torch.where(drop, torch.full_like(class_labels, self.num_classes), class_labels)
        return -self.log_likelihood(codes, class_labels).mean() / self.num_latents

    @torch.no_grad()
    def sample(self, num: int, class_labels: Tensor | None = None, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> Tensor:
        """Draw ``num`` code sequences ``[num, m]`` (long, on the CPU), one latent at a time.

        ``temperature`` divides the logits (1 = the learned distribution, → 0 = greedy).
        """
        if not temperature > 0:
            raise GenlabError(f"prior temperature must be > 0, got {temperature}")
        tokens = self.class_tokens(class_labels, num)
        for _ in range(self.num_latents):  # m is small: re-reading the prefix costs less than a cache
            logits = self.lm(input_ids=tokens).logits[:, -1, : self.num_codes].float().cpu()
            drawn = torch.multinomial(F.softmax(logits / temperature, dim=-1), 1, generator=generator)  # [num, 1]
            tokens = torch.cat([tokens, drawn.to(tokens.device)], dim=1)
        return tokens[:, 1:].cpu()
