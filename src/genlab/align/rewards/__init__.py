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


def build_reward(name: str, path: str | None = None, revision: str | None = None) -> Reward:
    """The frozen reward called ``name``; ``path`` overrides where its pretrained weights come from and
    ``revision`` pins the hub revision (branch, tag or commit) they are read at (default: the
    repository's main branch, :data:`~genlab.align.rewards.clip_rewards.HUB_REVISION`)."""
    if name not in REWARDS:
        raise GenlabError(f"unknown reward {name!r}; choose one of {', '.join(REWARDS)}")
    entry = REWARDS[name]
    if revision is None:
        return entry.build(path)
    if entry.default_path is None:
        raise GenlabError(f"--reward-revision applies to rewards with pretrained hub weights; {name!r} ships with "
                          "genlab")
    if not revision.strip():
        raise GenlabError("--reward-revision must name a branch, tag or commit, got an empty string")
    return entry.build(path, revision=revision)


def describe_rewards() -> str:
    """One line per reward for ``--help``."""
    return "\n".join(f"{name}: {entry.summary}" for name, entry in REWARDS.items())


__all__ = ["REWARDS", "Reward", "RewardEntry", "build_reward", "describe_rewards"]
