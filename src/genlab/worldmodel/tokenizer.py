"""Video tokenizers for world models: iVideoGPT's compressive tokenizer and a per-frame baseline.

Frames are float ``[B, T, 3, H, W]`` in [-1, 1]; the first ``context_frames`` are context.

* **Compressive** (``compressive=True``, iVideoGPT): context frames get a full token grid
  (``context_grid²`` tokens each, e.g. 16×16 at 64 px). Future frames get far fewer
  (``future_grid²``, e.g. 4×4). Their encoder cross-attends to the context frames' encoder
  features. Their decoder adds the decoded context features position by position and then
  cross-attends to them, so a future token only has to carry what changed. Each path has its
  own codebook.
* **Per-frame** (``compressive=False``): every frame goes through the context path
  independently (``context_grid²`` tokens per frame, one codebook).

``encode`` gives :class:`ClipTokens`, ``decode`` turns them back into frames, and ``forward``
returns the reconstruction and the losses: L1, VQ codebook + commitment, and ``motion_weight`` ×
an L1 on the future pixels that changed since the context (:func:`motion_l1`); the perceptual
term is added by the trainer.

What makes the compressive tokenizer work at small scale (measured on PushBlock, 400 steps):
the moving objects cover ~3% of a frame, so with a plain L1 the decoder learns to repeat the
context and ignores the future tokens (decoding another clip's tokens changed PSNR by 0.002 dB).
Three things fix it together: the future decoder outputs a *change* added to the last context
frame (so training starts from "nothing moved"), the future encoder sees the frame *and* its
difference from the last context frame, and the motion-weighted L1 makes the changed pixels count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import Tensor, nn

from genlab.core.loading import load_pretrained
from genlab.core.nets.attention import ContextAttention
from genlab.errors import GenlabError
from genlab.worldmodel.quantizer import VectorQuantizer


@dataclass
class ClipTokens:
    """Token ids: ``context [B, Tc, Nc]`` and ``future [B, Tf, Nf]`` (Nc = context_grid², Nf = future grid²)."""

    context: Tensor
    future: Tensor


@dataclass
class ContextDecoding:
    """Decoded context frames ``[B, Tc, 3, H, W]`` and the decoder features ``[B, Tc·Nc, C]`` future frames read."""

    frames: Tensor
    hidden: Tensor


def _halvings(size: int, grid: int) -> int:
    steps = math.log2(size / grid) if grid >= 1 else -1.0
    if steps != int(steps) or steps < 0:
        raise GenlabError(f"token grid {grid} must divide frame size {size} by a power of two")
    return int(steps)


def conv_block(ins: int, outs: int, scale: str) -> nn.Sequential:
    if scale == "down":
        conv = nn.Conv2d(ins, outs, 4, stride=2, padding=1)
    elif scale == "up":
        conv = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ins, outs, 3, padding=1))
    else:
        conv = nn.Conv2d(ins, outs, 3, padding=1)
    return nn.Sequential(conv, nn.GroupNorm(8, outs), nn.SiLU())


class ConvEncoder(nn.Sequential):
    """``[B, in_channels, H, W]`` -> ``[B, channels, H / 2^halvings, W / 2^halvings]``."""

    def __init__(self, channels: int, halvings: int, in_channels: int = 3):
        super().__init__(conv_block(in_channels, channels, "same"), *[conv_block(channels, channels, "down")
                                                             for _ in range(halvings)],
                         conv_block(channels, channels, "same"))


class ConvDecoder(nn.Sequential):
    """``[B, channels, g, g]`` -> ``[B, 3, g·2^doublings, g·2^doublings]``: frames in [-1, 1], or with
    ``residual=True`` an unbounded change that starts at zero (the last convolution is zero-initialised)."""

    def __init__(self, channels: int, doublings: int, residual: bool = False):
        out = nn.Conv2d(channels, 3, 3, padding=1)
        if residual:
            nn.init.zeros_(out.weight)
            nn.init.zeros_(out.bias)
        super().__init__(conv_block(channels, channels, "same"), *[conv_block(channels, channels, "up")
                                                                    for _ in range(doublings)],
                         out, *([] if residual else [nn.Tanh()]))


class _PositionBatchNorm(nn.BatchNorm1d):
    """Batch normalisation of ``[B, N, D]`` over the batch only, per token position and feature, no affine terms.

    Removes what every clip shares at a position (the static scene), so a code can only be
    chosen by what differs between clips; without it the future tokens collapsed to one code
    per position for every clip (the same failure DisCo-Diff's encoder showed, see
    docs/results/disco.md).
    """

    def __init__(self, tokens: int, dim: int):
        super().__init__(tokens * dim, affine=False)

    def forward(self, tokens: Tensor) -> Tensor:
        return super().forward(tokens.flatten(1)).unflatten(1, tokens.shape[1:])


def motion_l1(recon: Tensor, frames: Tensor, context_frames: int, threshold: float = 0.1) -> Tensor:
    """L1 error of the future frames ``[B, T, 3, H, W]`` on the pixels that changed since the last context
    frame (summed channel difference > ``threshold``), averaged over all future pixels."""
    future = frames[:, context_frames:]
    moved = (future - frames[:, context_frames - 1: context_frames]).abs().sum(dim=2, keepdim=True) > threshold
    return ((recon[:, context_frames:] - future).abs() * moved).mean()


def _tokens(feature_map: Tensor) -> Tensor:
    return feature_map.flatten(2).transpose(1, 2)


def _feature_map(tokens: Tensor) -> Tensor:
    side = math.isqrt(tokens.shape[1])
    return tokens.transpose(1, 2).unflatten(2, (side, side))


class VideoTokenizer(ModelMixin, ConfigMixin):
    """See the module docstring. Token counts: :attr:`context_tokens` and :attr:`future_tokens` per frame."""

    @classmethod
    def from_pretrained(cls, folder: Path | str, **kwargs) -> VideoTokenizer:
        """diffusers' ``from_pretrained`` of a local folder, with one GenlabError naming it when it is missing,
        corrupt or does not fit (:func:`~genlab.base.video_model.load_pretrained`)."""
        return load_pretrained(cls, folder, "world-model tokenizer", super().from_pretrained, **kwargs)

    @register_to_config
    def __init__(self, frame_size: int = 64, context_frames: int = 1, compressive: bool = True,
                 context_grid: int = 16, future_grid: int = 4, channels: int = 64, code_dim: int = 32,
                 context_codes: int = 512, future_codes: int = 512, num_heads: int = 4, beta: float = 0.25,
                 motion_weight: float = 10.0):
        super().__init__()
        context_halvings = _halvings(frame_size, context_grid)
        self.context_encoder = ConvEncoder(channels, context_halvings)
        self.context_to_code = nn.Linear(channels, code_dim)
        self.context_quantizer = VectorQuantizer(context_codes, code_dim, beta)
        self.context_from_code = nn.Linear(code_dim, channels)
        self.context_decoder = ConvDecoder(channels, context_halvings)
        if compressive:
            future_halvings = _halvings(frame_size, future_grid)
            self.future_encoder = ConvEncoder(channels, future_halvings, in_channels=6)
            self.future_reads_context = ContextAttention(channels, channels, num_heads)
            self.future_to_code = nn.Sequential(nn.Linear(channels, code_dim), _PositionBatchNorm(future_grid ** 2, code_dim))
            self.future_quantizer = VectorQuantizer(future_codes, code_dim, beta)
            self.future_from_code = nn.Linear(code_dim, channels)
            self.future_upsampler = nn.Sequential(*[conv_block(channels, channels, "up")
                                                    for _ in range(future_halvings - context_halvings)])
            self.future_decoder_reads_context = ContextAttention(channels, channels, num_heads)
            self.future_decoder = ConvDecoder(channels, context_halvings, residual=True)

    @property
    def context_tokens(self) -> int:
        return self.config.context_grid ** 2

    @property
    def future_tokens(self) -> int:
        grid = self.config.future_grid if self.config.compressive else self.config.context_grid
        return grid ** 2

    def _check(self, frames: Tensor) -> None:
        size, context = self.config.frame_size, self.config.context_frames
        if frames.dim() != 5 or frames.shape[2:] != (3, size, size):
            raise GenlabError(f"frames must be [B, T, 3, {size}, {size}], got {list(frames.shape)}")
        if frames.shape[1] <= context:
            raise GenlabError(f"a clip needs more than the {context} context frame(s), got {frames.shape[1]}")

    def _encode_context(self, frames: Tensor) -> tuple[Tensor, Tensor, Tensor, dict]:
        """``frames [B, T, 3, H, W]`` -> (features [B, T·Nc, C], quantized [B, T·Nc, D], ids [B, T, Nc], losses)."""
        b, t = frames.shape[:2]
        features = _tokens(self.context_encoder(frames.flatten(0, 1)))
        quantized, ids, losses = self.context_quantizer(self.context_to_code(features))
        return (features.reshape(b, -1, features.shape[-1]), quantized.reshape(b, -1, quantized.shape[-1]),
                ids.reshape(b, t, -1), losses)

    def _decode_context(self, quantized: Tensor, frames: int) -> tuple[Tensor, Tensor]:
        """``quantized [B, T·Nc, D]`` -> (frames [B, T, 3, H, W], decoder features [B, T·Nc, C])."""
        b = quantized.shape[0]
        hidden = self.context_from_code(quantized)
        per_frame = hidden.reshape(b * frames, -1, hidden.shape[-1])
        images = self.context_decoder(_feature_map(per_frame))
        return images.unflatten(0, (b, frames)), hidden

    def _encode_future(self, frames: Tensor, last_context: Tensor, context_features: Tensor) -> tuple[Tensor, Tensor, dict]:
        """``frames [B, Tf, 3, H, W]``, the last context frame ``[B, 3, H, W]`` and the context encoder
        features ``[B, Tc·Nc, C]`` -> (quantized [B, Tf, Nf, D], ids [B, Tf, Nf], losses)."""
        b, t = frames.shape[:2]
        change = frames - last_context.unsqueeze(1)
        features = _tokens(self.future_encoder(torch.cat([frames, change], dim=2).flatten(0, 1)))
        context = context_features.repeat_interleave(t, dim=0)
        features = self.future_reads_context(features, context)
        quantized, ids, losses = self.future_quantizer(self.future_to_code(features))
        return quantized.reshape(b, t, -1, quantized.shape[-1]), ids.reshape(b, t, -1), losses

    def _decode_future(self, quantized: Tensor, context_hidden: Tensor, last_context: Tensor) -> Tensor:
        """``quantized [B, Tf, Nf, D]``, ``context_hidden [B, Tc·Nc, C]``, ``last_context`` (the last decoded
        context frame, ``[B, 3, H, W]``) -> frames ``[B, Tf, 3, H, W]``: the last context frame plus the
        decoded change, so training starts from "nothing moved" and only the tokens can improve on it."""
        b, t = quantized.shape[:2]
        hidden = self.future_from_code(quantized.flatten(0, 1))
        upsampled = _tokens(self.future_upsampler(_feature_map(hidden)))
        # the context frames' decoder features, position by position, so "as in the context" is free
        # and the future tokens only have to say what changed; cross-attention then looks elsewhere
        same_place = context_hidden.unflatten(1, (self.config.context_frames, -1)).mean(dim=1)
        context = context_hidden.repeat_interleave(t, dim=0)
        upsampled = self.future_decoder_reads_context(upsampled + same_place.repeat_interleave(t, dim=0), context)
        change = self.future_decoder(_feature_map(upsampled)).unflatten(0, (b, t))
        return last_context.unsqueeze(1) + change

    def forward(self, frames: Tensor) -> tuple[Tensor, ClipTokens, dict[str, Tensor]]:
        """-> (reconstruction like ``frames``, tokens, losses ``l1``, ``codebook``, ``commitment``, ``loss``)."""
        self._check(frames)
        c = self.config.context_frames
        if not self.config.compressive:
            _, quantized, ids, vq = self._encode_context(frames)
            recon, _ = self._decode_context(quantized, frames.shape[1])
            tokens = ClipTokens(ids[:, :c], ids[:, c:])
        else:
            # in training the context path also learns from the future frames, with the per-frame
            # tokenizer's loss: trained on context frames alone its codebook collapsed (1 code in use)
            every = frames if self.training else frames[:, :c]
            features, quantized, ids, vq_context = self._encode_context(every)
            decoded, hidden = self._decode_context(quantized, every.shape[1])
            n = c * self.context_tokens
            # the future path reads the context path's features and reconstruction but does not train
            # them: its motion-weighted loss would otherwise pull them away from the context frames
            future_q, future_ids, vq_future = self._encode_future(frames[:, c:], frames[:, c - 1],
                                                                  features[:, :n].detach())
            future = self._decode_future(future_q, hidden[:, :n].detach(), decoded[:, c - 1].detach())
            recon = torch.cat([decoded[:, :c], future], dim=1)
            tokens = ClipTokens(ids[:, :c], future_ids)
            vq = {key: vq_context[key] + vq_future[key] for key in vq_context}
        losses = {"l1": F.l1_loss(recon, frames), "motion_l1": motion_l1(recon, frames, c), **vq}
        losses["loss"] = (losses["l1"] + self.config.motion_weight * losses["motion_l1"]
                          + losses["codebook"] + losses["commitment"])
        if self.config.compressive and self.training:
            # the context path's own reconstruction of every frame, weighted as the per-frame tokenizer's
            losses["context_path"] = (F.l1_loss(decoded, frames)
                                      + self.config.motion_weight * motion_l1(decoded, frames, c))
            losses["loss"] = losses["loss"] + losses["context_path"]
        return recon, tokens, losses

    @torch.no_grad()
    def encode(self, frames: Tensor) -> ClipTokens:
        """``frames [B, T, 3, H, W]`` in [-1, 1] -> token ids (nothing is decoded)."""
        self._check(frames)
        c = self.config.context_frames
        if not self.config.compressive:
            ids = self._encode_context(frames)[2]
            return ClipTokens(ids[:, :c], ids[:, c:])
        features, _, context_ids, _ = self._encode_context(frames[:, :c])
        return ClipTokens(context_ids, self._encode_future(frames[:, c:], frames[:, c - 1], features)[1])

    @torch.no_grad()
    def encode_context(self, frames: Tensor) -> Tensor:
        """Context frames ``[B, Tc, 3, H, W]`` in [-1, 1] -> token ids ``[B, Tc, Nc]``."""
        size = self.config.frame_size
        if frames.dim() != 5 or frames.shape[2:] != (3, size, size):
            raise GenlabError(f"frames must be [B, T, 3, {size}, {size}], got {list(frames.shape)}")
        return self._encode_context(frames)[2]

    @torch.no_grad()
    def decode_context(self, context_ids: Tensor) -> ContextDecoding:
        """Context ids ``[B, Tc, Nc]`` -> the decoded context, which :meth:`decode_future` reads."""
        frames, hidden = self._decode_context(self.context_quantizer.lookup(context_ids.flatten(1)), context_ids.shape[1])
        return ContextDecoding(frames, hidden)

    @torch.no_grad()
    def decode_future(self, context: ContextDecoding, future_ids: Tensor) -> Tensor:
        """Future ids ``[B, Tf, Nf]`` -> frames ``[B, Tf, 3, H, W]`` in [-1, 1] (roughly; the change is unbounded)."""
        if not self.config.compressive:
            return self._decode_context(self.context_quantizer.lookup(future_ids.flatten(1)), future_ids.shape[1])[0]
        return self._decode_future(self.future_quantizer.lookup(future_ids), context.hidden, context.frames[:, -1])

    @torch.no_grad()
    def decode(self, tokens: ClipTokens) -> Tensor:
        """Token ids -> frames ``[B, Tc + Tf, 3, H, W]`` in [-1, 1]."""
        context = self.decode_context(tokens.context)
        return torch.cat([context.frames, self.decode_future(context, tokens.future)], dim=1)
