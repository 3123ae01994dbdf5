"""The rewards that ship with genlab.align: class probability, brightness, colourfulness, motion, flow, temporal."""

import pytest
import torch

from genlab.align.rewards import REWARDS, build_reward, describe_rewards
from genlab.align.rewards.small import ClassProbabilityReward, global_flow
from genlab.data import load_dataset
from genlab.data.sprites import VideoClips, moving_sprites
from genlab.errors import GenlabError

VIDEO_REWARDS = ("motion-left", "motion-right", "motion-up", "motion-down", "flow-left", "flow-up", "temporal")


def sprite_videos(count: int = 6, seed: int = 11) -> torch.Tensor:
    return VideoClips(moving_sprites(count, 8, 16, seed)).video_tensor()


def panned(direction: str, count: int = 6) -> torch.Tensor:
    """Clips whose content moves 1 px per frame: windows of a 32-px sprite frame shifted by whole pixels."""
    canvas = VideoClips(moving_sprites(count, 1, 32, seed=21)).video_tensor()[:, 0]
    step = {"left": (0, 1), "right": (0, -1), "up": (1, 0), "down": (-1, 0)}[direction]  # window move (y, x)
    frames = []
    for t in range(8):
        y, x = 8 + step[0] * t - 4 * step[0], 8 + step[1] * t - 4 * step[1]
        frames.append(canvas[..., y : y + 16, x : x + 16])
    return torch.stack(frames, 1)


@pytest.mark.parametrize("name", ["class", "brightness", "colourfulness", *VIDEO_REWARDS])
def test_small_rewards_are_frozen_float_scores_differentiable_in_the_pixels(name):
    reward = build_reward(name)
    video = reward.modality == "video"
    samples = (sprite_videos(3) if video else torch.rand(3, 1 if name in ("class", "brightness") else 3, 16, 16) * 2 - 1)
    samples.requires_grad_(True)
    labels = torch.tensor([0, 1, 2]) if reward.needs == "labels" else None
    scores = reward(samples, labels=labels)
    assert scores.shape == (3,) and scores.dtype == torch.float32 and torch.isfinite(scores).all()
    scores.sum().backward()
    assert torch.isfinite(samples.grad).all() and samples.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in reward.parameters())


def test_class_reward_prefers_the_true_label_and_needs_labels():
    test_set = load_dataset("digits", "test")
    images, labels = test_set.images(range(40)), test_set.labels(range(40))
    reward = build_reward("class")
    right = reward(images, labels=labels).mean()
    wrong = reward(images, labels=(labels + 1) % 10).mean()
    assert right > 0.9 > 0.1 > wrong
    with pytest.raises(GenlabError, match="needs one class label per sample"):
        reward(images)
    with pytest.raises(GenlabError, match="but was given text prompts"):
        reward(images, prompts=["a digit"] * 40)
    fixed = ClassProbabilityReward("digits", target=3)
    assert fixed.needs is None and fixed.name == "class3"
    torch.testing.assert_close(fixed(images), reward(images, labels=torch.full((40,), 3)))
    with pytest.raises(GenlabError, match="classes 0..9, got target 12"):
        ClassProbabilityReward("digits", target=12)


def test_brightness_and_colourfulness_order_simple_images():
    white, black = torch.ones(1, 3, 8, 8), -torch.ones(1, 3, 8, 8)
    assert build_reward("brightness")(white) == 1 and build_reward("brightness")(black) == 0
    colourfulness = build_reward("colourfulness")
    grey = torch.zeros(1, 3, 8, 8)
    saturated = torch.stack([torch.ones(8, 8), -torch.ones(8, 8), -torch.ones(8, 8)])[None]
    assert colourfulness(grey).item() < 1e-3 < 0.2 < colourfulness(saturated).item()
    with pytest.raises(GenlabError, match="needs RGB images"):
        colourfulness(torch.zeros(1, 1, 8, 8))


@pytest.mark.parametrize("direction", ["left", "right", "up", "down"])
def test_motion_classifier_and_flow_recognise_the_direction_of_panned_clips(direction):
    clips = panned(direction)
    opposite = {"left": "right", "right": "left", "up": "down", "down": "up"}[direction]
    with torch.no_grad():
        assert build_reward(f"motion-{direction}")(clips).mean() > 0.6
        assert build_reward(f"motion-{direction}")(panned(opposite)).mean() < 0.2
        assert build_reward(f"flow-{direction}")(clips).mean() > 0.5
        assert build_reward(f"flow-{direction}")(panned(opposite)).mean() < -0.5


def test_motion_reward_swaps_left_and_right_under_mirroring():
    clips = sprite_videos(8)
    with torch.no_grad():
        torch.testing.assert_close(build_reward("motion-left")(clips.flip(-1)), build_reward("motion-right")(clips))


def test_global_flow_is_exact_for_a_smooth_pattern_shifted_by_a_fraction_of_a_pixel():
    x = torch.arange(32, dtype=torch.float32)
    frames = torch.stack([torch.sin((x[None, :] - 0.3 * t) / 3).expand(32, 32) for t in range(4)])
    video = frames[None, :, None].expand(1, 4, 3, 32, 32)
    flow = global_flow(video)[0]
    assert flow[0].item() == pytest.approx(0.3, abs=0.02) and abs(flow[1].item()) < 1e-3


def test_temporal_reward_prefers_real_clips_to_shuffled_or_flickering_ones():
    clips = sprite_videos(12)
    shuffled = clips[:, torch.randperm(8, generator=torch.Generator().manual_seed(0))]
    flicker = (clips + 0.3 * torch.randn(clips.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    temporal = build_reward("temporal")
    with torch.no_grad():
        real = temporal(clips).mean()
        assert real > temporal(shuffled).mean() and real > temporal(flicker).mean()
    with pytest.raises(GenlabError, match="needs more than 2 frames"):
        temporal(clips[:, :2])


def test_the_zoo_lists_every_reward_and_rejects_unknown_names():
    assert {"class", "temporal", "motion-left", "aesthetic", "hps", "vjepa-temporal", "object-removal"} <= set(REWARDS)
    assert "motion-left:" in describe_rewards()
    with pytest.raises(GenlabError, match="unknown reward 'nope'"):
        build_reward("nope")
    with pytest.raises(GenlabError, match="motion direction must be one of"):
        from genlab.align.rewards.small import MotionDirectionReward

        MotionDirectionReward("sideways")
