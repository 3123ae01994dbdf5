"""Video rewards from pretrained video transformers: VideoMAE action recognition and V-JEPA 2
temporal consistency.

Both take videos ``[B, T, C, H, W]`` in ``[-1, 1]``, resize and normalise the frames in torch
(ImageNet statistics, as the models' video processors do) and are differentiable w.r.t. them.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import VideoMAEForVideoClassification, VJEPA2Model

from genlab.align.rewards.base import Reward, RewardEntry
from genlab.align.rewards.clip_rewards import (
    HUB_REVISION,
    IMAGENET_MEAN,
    IMAGENET_STD,
    clip_pixels,
    load_pretrained,
)
from genlab.errors import GenlabError


def resample_frames(videos: Tensor, num_frames: int) -> Tensor:
    """``[B, num_frames, C, H, W]``: frames of ``videos [B, T, C, H, W]`` at uniformly spaced indices
    (first and last kept; frames repeat when ``num_frames > T``)."""
    indices = torch.linspace(0, videos.shape[1] - 1, num_frames, device=videos.device).round().long()
    return videos[:, indices]


def video_pixels(videos: Tensor, num_frames: int, size: int) -> Tensor:
    """Model input ``[B, num_frames, 3, size, size]`` from videos ``[B, T, 3, H, W]`` in ``[-1, 1]``:
    resampled frames, shortest side resized to ``size``, centre crop, ImageNet normalisation."""
    frames = resample_frames(videos, num_frames)
    pixels = clip_pixels(frames.flatten(0, 1), size, IMAGENET_MEAN, IMAGENET_STD)
    return pixels.unflatten(0, frames.shape[:2])


def class_index(target: str | int | None, id2label: Mapping[int, str], what: str) -> int | None:
    """The class index of ``target`` (a label name, case-insensitive, or an index); None stays None.

    Unknown names and out-of-range indices raise a :class:`GenlabError` naming a few valid labels.
    """
    if target is None:
        return None
    if isinstance(target, int):
        if not 0 <= target < len(id2label):
            raise GenlabError(f"the {what} has {len(id2label)} classes; class index {target} is out of range")
        return target
    by_name = {label.lower(): index for index, label in id2label.items()}
    if target.lower() in by_name:
        return by_name[target.lower()]
    close = difflib.get_close_matches(target.lower(), list(by_name), n=3)
    examples = close or [id2label[index] for index in sorted(id2label)[:5]]
    hint = "did you mean" if close else "labels include"
    raise GenlabError(f"the {what} has no class {target!r} ({len(id2label)} classes; {hint} "
                      f"{', '.join(repr(name) for name in examples)})")


class VideoMAEActionReward(Reward):
    """Action recognition confidence of a VideoMAE video classifier (Kinetics-400 by default).

    The video ``[B, T, 3, H, W]`` is resampled to the model's ``num_frames`` (uniform indices) and
    resized to its ``image_size``; the score ``[B]`` is the softmax probability of the target class
    (``target``: a label name from ``config.id2label`` or an index), or, without a target, the
    probability of the most likely class.
    """

    name = "videomae-action"
    modality = "video"
    default_path = "MCG-NJU/videomae-base-finetuned-kinetics"

    def __init__(self, model: VideoMAEForVideoClassification, target: str | int | None = None):
        super().__init__()
        self.model = model
        self.target = class_index(target, model.config.id2label,
                                  f"VideoMAE classifier {model.name_or_path!r}")

    @classmethod
    def from_pretrained(cls, path: str | None = None, target: str | int | None = None,
                        revision: str = HUB_REVISION) -> VideoMAEActionReward:
        """A VideoMAEForVideoClassification from a folder or hub id (at ``revision``); frozen."""
        path = path or cls.default_path
        model = load_pretrained(lambda source: VideoMAEForVideoClassification.from_pretrained(source, revision=revision),
                                path, "VideoMAE classifier")
        return cls(model, target).freeze()

    def score(self, samples: Tensor, prompts: Sequence[str] | None, labels: Tensor | None) -> Tensor:
        config = self.model.config
        pixels = video_pixels(samples, config.num_frames, config.image_size)
        probabilities = self.model(pixel_values=pixels).logits.softmax(-1)
        if self.target is None:
            return probabilities.max(-1).values
        return probabilities[:, self.target]


class VJEPA2TemporalReward(Reward):
    """Temporal consistency as V-JEPA 2's own masked-feature prediction error on the video.

    Frames are resized to the model's ``crop_size`` and (uniformly) resampled to a whole number of
    tubelets (``num_frames`` if given, else ``T`` rounded up to a multiple of ``tubelet_size``); at
    least two tubelets are needed. The first half of the tubelets is the context, the rest the
    target, as V-JEPA's future-prediction masking:

    - context features: the encoder run on the context frames alone (exactly V-JEPA's masked
      context encoder, which drops the target tokens before the encoder; running the encoder on
      the whole video would let context tokens attend to the target frames);
    - target features: the encoder run on the whole video, then ``F.layer_norm`` without affine
      parameters over the feature dimension, as V-JEPA's training targets;
    - predictions: the predictor from the context features, with ``context_mask``/``target_mask``
      the token indices (lists of one ``[B, N]`` index tensor) of the two halves.

    Score ``[B]`` = minus the mean absolute error between predictions and targets (V-JEPA's L1
    training loss), so videos whose future the model finds predictable score higher. Unlike
    training, the targets are not detached: the gradient reaches the pixels through both branches.
    """

    name = "vjepa-temporal"
    modality = "video"
    default_path = "facebook/vjepa2-vitl-fpc64-256"

    def __init__(self, model: VJEPA2Model, num_frames: int | None = None):
        super().__init__()
        self.model = model
        self.num_frames = num_frames

    @classmethod
    def from_pretrained(cls, path: str | None = None, num_frames: int | None = None,
                        revision: str = HUB_REVISION) -> VJEPA2TemporalReward:
        """A VJEPA2Model (encoder and predictor) from a folder or hub id (at ``revision``); frozen."""
        path = path or cls.default_path
        model = load_pretrained(lambda source: VJEPA2Model.from_pretrained(source, revision=revision), path,
                                "V-JEPA 2 model")
        return cls(model, num_frames).freeze()

    def score(self, samples: Tensor, prompts: Sequence[str] | None, labels: Tensor | None) -> Tensor:
        config = self.model.config
        tubelet = config.tubelet_size
        num_frames = self.num_frames or samples.shape[1]
        tubelets = -(-num_frames // tubelet)
        if tubelets < 2:
            raise GenlabError(f"the {self.name!r} reward predicts later frames from earlier ones and needs "
                              f"more than {tubelet} frames, got {num_frames}")
        pixels = video_pixels(samples, tubelets * tubelet, config.crop_size)
        tokens_per_tubelet = (config.crop_size // config.patch_size) ** 2
        context_tubelets = tubelets // 2
        context_frames = pixels[:, :context_tubelets * tubelet]
        context = self.model.encoder(pixel_values_videos=context_frames).last_hidden_state
        features = self.model.encoder(pixel_values_videos=pixels).last_hidden_state
        split = context_tubelets * tokens_per_tubelet
        targets = F.layer_norm(features[:, split:], features.shape[-1:])
        positions = torch.arange(features.shape[1], device=samples.device).expand(samples.shape[0], -1)
        context_mask, target_mask = [positions[:, :split]], [positions[:, split:]]
        predictions = self.model.predictor(encoder_hidden_states=context, context_mask=context_mask,
                                           target_mask=target_mask).last_hidden_state
        return -(predictions - targets).abs().mean(dim=(1, 2))


ZOO: dict[str, RewardEntry] = {
    "videomae-action": RewardEntry(VideoMAEActionReward.from_pretrained,
                                   "VideoMAE Kinetics-400 action confidence (probability of the top class)",
                                   VideoMAEActionReward.default_path),
    "vjepa-temporal": RewardEntry(VJEPA2TemporalReward.from_pretrained,
                                  "V-JEPA 2 temporal consistency (minus its error predicting the second half "
                                  "of the clip from the first)",
                                  VJEPA2TemporalReward.default_path),
}
