"""The interactive world model: a video tokenizer and a transformer behind a reset/step API.

>>> wm = WorldModel.from_pretrained("runs/worldmodel/model")
>>> wm.reset(context_frames)            # uint8 [Tc, H, W, 3] (or a batch [B, Tc, H, W, 3])
>>> frame, reward = wm.step(action)     # uint8 [H, W, 3], float (or [B, H, W, 3], [B])

Rollouts may run past the transformer's training length T: after T imagined frames the
newest ``Tc`` frames are decoded, tokenized again as context, and generation restarts from them
(a sliding context). :meth:`WorldModel.imagine` predicts the rewards of many action sequences from
the current state without decoding frames or moving the state on, which is what a planner needs.
"""

from __future__ import annotations

import copy
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from genlab.core.paths import existing_dir
from genlab.errors import GenlabError
from genlab.worldmodel.tokenizer import ContextDecoding, VideoTokenizer
from genlab.worldmodel.transformer import TokenCache, WorldModelTransformer

TOKENIZER, TRANSFORMER = "tokenizer", "transformer"


def frames_to_model(frames: np.ndarray | Tensor) -> Tensor:
    """uint8 ``[..., H, W, 3]`` -> float ``[..., 3, H, W]`` in [-1, 1]."""
    tensor = torch.as_tensor(np.ascontiguousarray(frames) if isinstance(frames, np.ndarray) else frames)
    if tensor.dtype != torch.uint8:
        raise GenlabError(f"frames must be uint8 RGB arrays [..., H, W, 3], got dtype {tensor.dtype}")
    return (tensor.float() / 127.5 - 1).movedim(-1, -3)


def frames_from_model(frames: Tensor) -> np.ndarray:
    """float ``[..., 3, H, W]`` in [-1, 1] -> uint8 ``[..., H, W, 3]``."""
    return ((frames.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().byte().movedim(-3, -1).numpy()


class WorldModel:
    """Tokenizer + transformer with the interactive API of the module docstring.

    ``top_k`` and ``temperature`` control sampling (``top_k=1``: greedy); ``seed`` makes rollouts
    repeatable.
    """

    def __init__(self, tokenizer: VideoTokenizer, transformer: WorldModelTransformer, top_k: int = 50,
                 temperature: float = 1.0, seed: int | None = None):
        expected = (tokenizer.config.context_frames, tokenizer.context_tokens, tokenizer.future_tokens)
        got = (transformer.config.context_frames, transformer.config.context_tokens, transformer.config.future_tokens)
        if expected != got:
            raise GenlabError(f"tokenizer and transformer disagree on (context frames, context tokens, "
                              f"future tokens): {expected} vs {got}")
        self.tokenizer, self.transformer = tokenizer.eval(), transformer.eval()
        self.top_k, self.temperature = top_k, temperature
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self._rollout: Rollout | None = None

    @classmethod
    def from_pretrained(cls, folder: Path | str, device: str | torch.device = "cpu", **sampling) -> WorldModel:
        folder = existing_dir(folder, "world model", "folder of a saved world model")
        if not (folder / TOKENIZER).is_dir() or not (folder / TRANSFORMER).is_dir():
            raise GenlabError(f"{folder} is not a genlab world model (it needs {TOKENIZER}/ and {TRANSFORMER}/)")
        return cls(VideoTokenizer.from_pretrained(folder / TOKENIZER).to(device),
                   WorldModelTransformer.from_pretrained(folder / TRANSFORMER).to(device), **sampling)

    def save_pretrained(self, folder: Path | str) -> None:
        self.tokenizer.save_pretrained(Path(folder) / TOKENIZER)
        self.transformer.save_pretrained(Path(folder) / TRANSFORMER)

    @property
    def device(self) -> torch.device:
        return self.transformer.device

    @property
    def context_frames(self) -> int:
        return self.tokenizer.config.context_frames

    @property
    def action_dim(self) -> int:
        return self.transformer.config.action_dim

    def reset(self, context_frames: np.ndarray | Tensor) -> None:
        """Start a rollout from uint8 ``[Tc, H, W, 3]`` (one rollout) or ``[B, Tc, H, W, 3]`` frames."""
        frames = frames_to_model(context_frames)
        self._batched = frames.dim() == 5
        frames = frames if self._batched else frames[None]
        size, count = self.tokenizer.config.frame_size, self.context_frames
        if frames.dim() != 5 or frames.shape[1:] != (count, 3, size, size):
            raise GenlabError(f"context frames must be uint8 [{count}, {size}, {size}, 3] or "
                              f"[B, {count}, {size}, {size}, 3], got {list(np.shape(context_frames))}")
        self._rollout = self._start(frames.to(self.device))

    def _start(self, frames: Tensor) -> Rollout:
        """A rollout that starts from context frames ``[B, Tc, 3, H, W]``."""
        context_ids = self.tokenizer.encode_context(frames)
        return Rollout(self.transformer.prefill(context_ids), self.tokenizer.decode_context(context_ids), 0,
                       deque((lambda frame=frame: frame for frame in frames.unbind(1)), maxlen=self.context_frames))

    def _advance(self, rollout: Rollout, actions: Tensor | None) -> tuple[Rollout, Tensor]:
        """Imagine one more frame of every sequence (``actions [B, A]``) -> (rollout, predicted rewards ``[B]``)."""
        if rollout.generated == self.transformer.config.future_frames:  # slide the context
            rollout = self._start(torch.stack([frame() for frame in rollout.recent], dim=1))
        ids, reward = self.transformer.generate_frame(rollout.cache, actions, self.top_k, self.temperature,
                                                      self.generator)
        context = rollout.context
        rollout.recent.append(lambda: self.tokenizer.decode_future(context, ids[:, None])[:, 0])
        rollout.generated += 1
        return rollout, reward

    def _require_rollout(self) -> Rollout:
        if self._rollout is None:
            raise GenlabError("call reset(context_frames) before step() or imagine()")
        return self._rollout

    def _actions(self, action, leading: tuple[int, ...]) -> Tensor | None:
        if not self.transformer.action_conditioned:
            return None
        tensor = None if action is None else torch.as_tensor(np.asarray(action, dtype=np.float32))
        self.transformer.check_actions(tensor, leading)
        return tensor.to(self.device)

    def step(self, action=None) -> tuple[np.ndarray, float | np.ndarray]:
        """Imagine the next frame: ``action [A]`` (or ``[B, A]`` after a batched reset; ``None`` for an
        action-free model) -> (uint8 frame ``[H, W, 3]`` or ``[B, H, W, 3]``, reward float or ``[B]``)."""
        rollout = self._require_rollout()
        if action is not None and not self._batched:
            action = np.asarray(action)[None]
        self._rollout, reward = self._advance(rollout, self._actions(action, (rollout.cache.batch,)))
        frame = frames_from_model(self._rollout.recent[-1]())
        reward = reward.cpu().numpy()
        return (frame, reward) if self._batched else (frame[0], float(reward[0]))

    def imagine(self, actions, frames: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Predicted rewards ``[N, H]`` of action sequences ``[N, H, A]`` from the current state, which
        is left as it was. After a single reset the N sequences share its state; after a batched reset
        N must be B. Frames are only decoded if the context slides, or with ``frames=True``, which
        also returns the imagined frames, uint8 ``[N, H, height, width, 3]``."""
        rollout = self._require_rollout()
        actions = np.asarray(actions, dtype=np.float32)
        if actions.ndim != 3 or rollout.cache.batch not in (1, actions.shape[0]):
            raise GenlabError(f"actions must be [N, H, A] with N = {rollout.cache.batch} (or any N after a "
                              f"single reset), got {list(actions.shape)}")
        rollout, rewards, imagined = rollout.broadcast(actions.shape[0]), [], []
        for t in range(actions.shape[1]):
            rollout, reward = self._advance(rollout, self._actions(actions[:, t], (actions.shape[0],)))
            rewards.append(reward)
            if frames:
                imagined.append(frames_from_model(rollout.recent[-1]()))
        rewards = torch.stack(rewards, dim=1).cpu().numpy()
        return (rewards, np.stack(imagined, axis=1)) if frames else rewards


@dataclass
class Rollout:
    """Generation state: the KV cache, the decoded context, frames since the context, the newest frames."""

    cache: TokenCache
    context: ContextDecoding
    generated: int
    recent: deque  # of zero-argument callables returning frames [B, 3, H, W]

    def broadcast(self, batch: int) -> Rollout:
        """A copy for ``batch`` sequences (a single sequence is repeated); this rollout is left untouched."""
        cache = copy.deepcopy(self.cache.cache)
        if self.cache.batch != batch:
            cache.batch_repeat_interleave(batch)
        context = ContextDecoding(*(t.expand(batch, *t.shape[1:]) for t in (self.context.frames, self.context.hidden)))
        recent = deque((lambda frame=frame: frame().expand(batch, -1, -1, -1) for frame in self.recent),
                       maxlen=self.recent.maxlen)
        return Rollout(TokenCache(cache, batch), context, self.generated, recent)
