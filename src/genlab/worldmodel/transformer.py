"""iVideoGPT's transformer: a transformers ``LlamaForCausalLM`` over video tokens, with actions and rewards.

One clip is the token sequence ``[context tokens, (slot, future tokens) × T]``: the ``Tc·Nc``
context-frame tokens, then for each future frame a *slot* token followed by its ``Nf`` tokens.

* **Vocabulary**: context codes ``[0, Kc)``, future codes ``[Kc, Kc + Kf)`` (with a per-frame
  tokenizer future frames use the context codebook, ``shared_codebook=True``), then the slot token.
* **Actions** (``action_dim > 0``): the action that leads to future frame ``t`` goes through a
  zero-initialised linear projection and is added to the embedding of frame ``t``'s slot token,
  so an untrained action-conditioned model computes exactly what the action-free model computes.
  ``action_dim=0`` is the action-free mode.
* **Loss**: next-token cross-entropy on the future tokens only (the context is given).
* **Reward head**: a linear layer on the last hidden state of each future frame's last token
  predicts the reward received on reaching that frame, trained by MSE in symlog space.
* **Generation**: :meth:`WorldModelTransformer.prefill` reads the context into a KV cache;
  :meth:`WorldModelTransformer.generate_frame` then draws one frame's tokens one at a time
  (top-k sampling) and returns its predicted reward.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import Tensor, nn
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM, LlamaModel

from genlab.core.loading import load_pretrained
from genlab.errors import GenlabError

# transformers 5 renamed ``past_key_values`` to ``cache``; pass whichever this version takes
_CACHE_ARGUMENT = "cache" if "cache" in inspect.signature(LlamaModel.forward).parameters else "past_key_values"


@dataclass
class TokenCache:
    """The KV cache of ``batch`` sequences being generated (see :meth:`WorldModelTransformer.prefill`)."""

    cache: DynamicCache
    batch: int


def symlog(x: Tensor) -> Tensor:
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: Tensor) -> Tensor:
    return torch.sign(x) * torch.expm1(x.abs())


def sample_top_k(logits: Tensor, top_k: int, temperature: float, generator: torch.Generator | None) -> Tensor:
    """One id per row of ``logits [B, V]``: among the ``top_k`` largest (``top_k=1`` is greedy)."""
    if top_k == 1 or temperature == 0:
        return logits.argmax(dim=-1)
    values, indices = logits.float().topk(min(top_k, logits.shape[-1]), dim=-1)
    probabilities = F.softmax(values / temperature, dim=-1)
    picks = torch.multinomial(probabilities.cpu(), 1, generator=generator).to(indices.device)
    return indices.gather(-1, picks).squeeze(-1)


class WorldModelTransformer(ModelMixin, ConfigMixin):
    """See the module docstring. ``future_frames`` is the training length T (longer rollouts slide)."""

    @classmethod
    def from_pretrained(cls, folder: Path | str, **kwargs) -> WorldModelTransformer:
        """diffusers' ``from_pretrained`` of a local folder, with one GenlabError naming it when it is missing,
        corrupt or does not fit (:func:`~genlab.base.video_model.load_pretrained`)."""
        return load_pretrained(cls, folder, "world-model transformer", super().from_pretrained, **kwargs)

    @register_to_config
    def __init__(self, context_frames: int = 1, context_tokens: int = 256, future_tokens: int = 16,
                 future_frames: int = 3, context_codes: int = 512, future_codes: int = 512,
                 shared_codebook: bool = False, action_dim: int = 2, hidden_size: int = 128,
                 num_layers: int = 4, num_heads: int = 4):
        super().__init__()
        if action_dim < 0:
            raise GenlabError(f"action_dim must be >= 0 (0 = action-free), got {action_dim}")
        self.future_offset = 0 if shared_codebook else context_codes
        self.future_vocab = context_codes if shared_codebook else future_codes
        self.slot_id = self.future_offset + self.future_vocab
        self.lm = LlamaForCausalLM(LlamaConfig(
            vocab_size=self.slot_id + 1, hidden_size=hidden_size, intermediate_size=4 * hidden_size,
            num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_heads,
            max_position_embeddings=self.sequence_length, tie_word_embeddings=False,
            bos_token_id=None, eos_token_id=None, pad_token_id=None))
        self.action_projection = nn.Linear(action_dim, hidden_size) if action_dim else None
        if self.action_projection is not None:
            nn.init.zeros_(self.action_projection.weight)
            nn.init.zeros_(self.action_projection.bias)
        self.reward_head = nn.Linear(hidden_size, 1)

    @property
    def sequence_length(self) -> int:
        c = self.config
        return c.context_frames * c.context_tokens + c.future_frames * (c.future_tokens + 1)

    @property
    def action_conditioned(self) -> bool:
        return self.action_projection is not None

    def _slot_positions(self, frames: int) -> Tensor:
        c = self.config
        return c.context_frames * c.context_tokens + torch.arange(frames) * (c.future_tokens + 1)

    def check_actions(self, actions: Tensor | None, shape: tuple[int, ...]) -> None:
        """``actions`` must be ``[*shape, action_dim]`` for an action-conditioned model (ignored otherwise)."""
        if not self.action_conditioned:
            return
        expected = (*shape, self.config.action_dim)
        if actions is None or tuple(actions.shape) != expected:
            got = None if actions is None else list(actions.shape)
            raise GenlabError(f"actions must have shape {list(expected)} (action dimension "
                              f"{self.config.action_dim}), got {got}")

    def _embed(self, ids: Tensor, actions: Tensor | None, slots: Tensor) -> Tensor:
        """Token embeddings ``[B, L, H]``, with ``actions [B, len(slots), A]`` added at positions ``slots``."""
        embeddings = self.lm.model.embed_tokens(ids)
        if self.action_conditioned:
            action_embeddings = self.action_projection(actions.to(embeddings.dtype))
            embeddings = embeddings.index_add(1, slots.to(ids.device), action_embeddings)
        return embeddings

    def sequence(self, context_ids: Tensor, future_ids: Tensor) -> Tensor:
        """``context_ids [B, Tc, Nc]`` and ``future_ids [B, T, Nf]`` (codebook ids) -> input ids ``[B, L]``."""
        b, t = future_ids.shape[:2]
        slots = torch.full((b, t, 1), self.slot_id, dtype=torch.long, device=future_ids.device)
        future = torch.cat([slots, future_ids.long() + self.future_offset], dim=2)
        return torch.cat([context_ids.long().flatten(1), future.flatten(1)], dim=1)

    def _check_tokens(self, context_ids: Tensor, future_ids: Tensor) -> None:
        c = self.config
        if context_ids.shape[1:] != (c.context_frames, c.context_tokens):
            raise GenlabError(f"context ids must be [B, {c.context_frames}, {c.context_tokens}], "
                              f"got {list(context_ids.shape)}")
        if future_ids.dim() != 3 or future_ids.shape[2] != c.future_tokens or not 1 <= future_ids.shape[1] <= c.future_frames:
            raise GenlabError(f"future ids must be [B, 1..{c.future_frames}, {c.future_tokens}], "
                              f"got {list(future_ids.shape)}")

    def forward(self, context_ids: Tensor, future_ids: Tensor, actions: Tensor | None = None,
                rewards: Tensor | None = None) -> dict[str, Tensor]:
        """Teacher-forced pass over whole clips.

        ``actions [B, T, A]``, ``rewards [B, T]`` (optional). Returns ``logits [B, T, Nf, Kf]``
        (each future token's distribution over the future codes), ``reward [B, T]`` (predicted),
        ``token_loss`` (nats per future token), ``reward_loss`` (symlog MSE, when rewards are given)
        and ``loss`` (their sum).
        """
        self._check_tokens(context_ids, future_ids)
        b, t, n = future_ids.shape
        self.check_actions(actions, (b, t))
        slots = self._slot_positions(t)
        ids = self.sequence(context_ids, future_ids)
        hidden = self.lm.model(inputs_embeds=self._embed(ids, actions, slots)).last_hidden_state
        # positions slot .. slot + Nf - 1 predict the frame's tokens; slot + Nf is its last token
        predicting = (slots[:, None] + torch.arange(n)).to(ids.device)  # [T, Nf]
        logits = self.lm.lm_head(hidden[:, predicting])[..., self.future_offset: self.slot_id].float()
        reward = self.reward_head(hidden[:, (slots + n).to(ids.device)]).squeeze(-1).float()
        out = {"logits": logits, "reward": symexp(reward),
               "token_loss": F.cross_entropy(logits.flatten(0, 2), future_ids.long().flatten())}
        out["loss"] = out["token_loss"]
        if rewards is not None:
            out["reward_loss"] = F.mse_loss(reward, symlog(rewards.float()))
            out["loss"] = out["loss"] + out["reward_loss"]
        return out

    def _extend(self, cache: TokenCache, **inputs) -> Tensor:
        """Run new tokens (``input_ids`` or ``inputs_embeds``) after ``cache`` -> last hidden states."""
        out = self.lm.model(**inputs, use_cache=True, **{_CACHE_ARGUMENT: cache.cache})
        return out.last_hidden_state

    @torch.no_grad()
    def prefill(self, context_ids: Tensor) -> TokenCache:
        """Read ``context_ids [B, Tc, Nc]`` into a fresh KV cache."""
        c = self.config
        if context_ids.shape[1:] != (c.context_frames, c.context_tokens):
            raise GenlabError(f"context ids must be [B, {c.context_frames}, {c.context_tokens}], "
                              f"got {list(context_ids.shape)}")
        cache = TokenCache(DynamicCache(), context_ids.shape[0])
        self._extend(cache, input_ids=context_ids.long().flatten(1).to(self.device))
        return cache

    @torch.no_grad()
    def generate_frame(self, cache: TokenCache, actions: Tensor | None = None, top_k: int = 50,
                       temperature: float = 1.0, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Draw the next frame's tokens after the sequence in ``cache`` (which is extended in place).

        ``actions [B, A]`` is the action leading to this frame. Returns ``(future ids [B, Nf],
        predicted reward [B])``. The caller keeps the sequence within ``future_frames`` frames.
        """
        b = cache.batch
        self.check_actions(actions, (b,))
        device = self.device
        slot = torch.full((b, 1), self.slot_id, dtype=torch.long, device=device)
        step_input = self._embed(slot, None if actions is None else actions[:, None].to(device),
                                 torch.zeros(1, dtype=torch.long))
        drawn = []
        for _ in range(self.config.future_tokens + 1):
            hidden = self._extend(cache, inputs_embeds=step_input)
            if len(drawn) == self.config.future_tokens:
                break
            logits = self.lm.lm_head(hidden[:, -1])[:, self.future_offset: self.slot_id]
            ids = sample_top_k(logits, top_k, temperature, generator)
            drawn.append(ids)
            step_input = self.lm.model.embed_tokens(ids[:, None] + self.future_offset)
        reward = symexp(self.reward_head(hidden[:, -1]).squeeze(-1).float())
        return torch.stack(drawn, dim=1), reward
