"""Object removal: reward images in which a YOLOS detector finds no object of a target class."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor
from transformers import YolosForObjectDetection

from genlab.align.rewards.base import Reward, RewardEntry, to_unit_range
from genlab.align.rewards.clip_rewards import (
    HUB_REVISION,
    IMAGENET_MEAN,
    IMAGENET_STD,
    load_pretrained,
    normalise,
    resize_shortest_side,
)
from genlab.align.rewards.video_rewards import class_index


class ObjectRemovalReward(Reward):
    """``1 - max over detection queries of P(target class)`` from a YOLOS detector (COCO by default).

    Images ``[B, 3, H, W]`` are resized so that their shortest side is ``size`` (aspect kept; YOLOS
    interpolates its position embeddings to any size) and ImageNet-normalised. ``target`` is a class
    name from ``config.id2label`` (case-insensitive) or an index; without one, the presence of a
    query is its largest probability over all object classes (everything but the trailing
    "no object" logit), so the reward favours images without any detectable object. Scores ``[B]``
    lie in ``[0, 1]``.
    """

    name = "object-removal"
    default_path = "hustvl/yolos-small"

    def __init__(self, model: YolosForObjectDetection, target: str | int | None = None, size: int = 512):
        super().__init__()
        self.model = model
        self.target = class_index(target, model.config.id2label, f"YOLOS detector {model.name_or_path!r}")
        self.size = size

    @classmethod
    def from_pretrained(cls, path: str | None = None, target: str | int | None = None, size: int = 512,
                        revision: str = HUB_REVISION) -> ObjectRemovalReward:
        """A YolosForObjectDetection from a folder or hub id (at ``revision``); frozen."""
        path = path or cls.default_path
        model = load_pretrained(lambda source: YolosForObjectDetection.from_pretrained(source, revision=revision),
                                path, "YOLOS detector")
        return cls(model, target, size).freeze()

    def score(self, samples: Tensor, prompts: Sequence[str] | None, labels: Tensor | None) -> Tensor:
        images = resize_shortest_side(to_unit_range(samples), self.size)
        logits = self.model(pixel_values=normalise(images, IMAGENET_MEAN, IMAGENET_STD)).logits
        object_probabilities = logits.softmax(-1)[..., :-1]  # [B, queries, classes]: "no object" dropped
        if self.target is None:
            presence = object_probabilities.max(-1).values
        else:
            presence = object_probabilities[..., self.target]
        return 1 - presence.max(-1).values


ZOO: dict[str, RewardEntry] = {
    "object-removal": RewardEntry(ObjectRemovalReward.from_pretrained,
                                  "YOLOS-small COCO detector: 1 - the most confident detection of any object",
                                  ObjectRemovalReward.default_path),
}
