"""The reward zoo: ``build_reward(name, path=None)`` and the names it knows (``REWARDS``).

Rewards on pretrained models (CLIP aesthetic, CLIP score, PickScore, HPS, VideoMAE, YOLOS,
V-JEPA 2) load real checkpoints from a local folder or the Hugging Face hub; the small rewards
(class probability, brightness, colourfulness, motion direction, temporal consistency) ship
with genlab and fit its small models.
"""

from __future__ import annotations

from genlab.align.rewards.base import Reward, RewardEntry
from genlab.align.rewards.clip_rewards import ZOO as CLIP_ZOO
from genlab.align.rewards.detection import ZOO as DETECTION_ZOO
from genlab.align.rewards.small import SMALL_REWARDS
from genlab.align.rewards.video_rewards import ZOO as VIDEO_ZOO
from genlab.errors import GenlabError

REWARDS: dict[str, RewardEntry] = {**SMALL_REWARDS, **CLIP_ZOO, **VIDEO_ZOO, **DETECTION_ZOO}


def build_reward(name: str, path: str | None = None) -> Reward:
    """The frozen reward called ``name``; ``path`` overrides where its pretrained weights come from."""
    if name not in REWARDS:
        raise GenlabError(f"unknown reward {name!r}; choose one of {', '.join(REWARDS)}")
    return REWARDS[name].build(path)


def describe_rewards() -> str:
    """One line per reward for ``--help``."""
    return "\n".join(f"{name}: {entry.summary}" for name, entry in REWARDS.items())


__all__ = ["REWARDS", "Reward", "RewardEntry", "build_reward", "describe_rewards"]
