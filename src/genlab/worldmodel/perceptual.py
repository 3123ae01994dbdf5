"""A perceptual loss for PushBlock frames, from a feature net trained here (no download).

:class:`StateNet` is a small CNN trained to read the scene's state (agent, block and goal
positions) off a frame. Its convolutional features are therefore sensitive to what matters in
this world, where objects are and how big, and not to pixel noise. The perceptual distance
between two frames is the mean absolute difference of those features, over all layers.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import Tensor, nn
from tqdm.auto import tqdm

from genlab.core.loading import load_pretrained
from genlab.worldmodel.tokenizer import conv_block

STATE_DIM = 6


class StateNet(ModelMixin, ConfigMixin):
    """``frames [B, 3, H, W]`` in [-1, 1] -> state ``[B, 6]`` in [0, 1] (three 2-D positions)."""

    @classmethod
    def from_pretrained(cls, folder: Path | str, **kwargs) -> StateNet:
        """diffusers' ``from_pretrained`` of a local folder, with one GenlabError naming it when it is missing,
        corrupt or does not fit (:func:`~genlab.base.video_model.load_pretrained`)."""
        return load_pretrained(cls, folder, "state net", super().from_pretrained, **kwargs)

    @register_to_config
    def __init__(self, channels: int = 32):
        super().__init__()
        self.blocks = nn.ModuleList([conv_block(3, channels, "down"), conv_block(channels, 2 * channels, "down"),
                                     conv_block(2 * channels, 4 * channels, "down")])
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(64 * channels, STATE_DIM))

    def features(self, frames: Tensor) -> list[Tensor]:
        out = []
        for block in self.blocks:
            frames = block(frames)
            out.append(frames)
        return out

    def forward(self, frames: Tensor) -> Tensor:
        return self.head(self.features(frames)[-1])


def perceptual_distance(net: StateNet, a: Tensor, b: Tensor) -> Tensor:
    """Mean over layers of the mean absolute feature difference of frames ``a`` and ``b [N, 3, H, W]``."""
    return torch.stack([F.l1_loss(x, y) for x, y in zip(net.features(a), net.features(b), strict=True)]).mean()


def train_state_net(frames: Tensor, states: Tensor, steps: int = 800, batch_size: int = 64, lr: float = 2e-3,
                    seed: int = 0, progress: bool = True) -> StateNet:
    """Fit a :class:`StateNet` on ``frames [N, 3, H, W]`` in [-1, 1] and ``states [N, 6]``; returned frozen."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = StateNet()
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in tqdm(range(steps), desc="perceptual net", disable=not progress, leave=False):
        index = torch.randint(0, len(frames), (batch_size,), generator=generator)
        loss = F.mse_loss(net(frames[index]), states[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return net.eval().requires_grad_(False)
