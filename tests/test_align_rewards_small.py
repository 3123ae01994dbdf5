"""The rewards that ship with genlab.align: class probability, brightness, colourfulness, motion, flow, temporal."""

import pytest
import torch

from genlab.align.rewards import REWARDS, build_reward, describe_rewards, small
from genlab.align.rewards.small import ClassProbabilityReward, MotionNet, TemporalModel, global_flow, load_net
from genlab.base.video_model import video_clips
from genlab.data import load_dataset
from genlab.data.sprites import VideoClips, moving_sprites
from genlab.errors import GenlabError

VIDEO_REWARDS = ("motion-left", "motion-right", "motion-up", "motion-down", "flow-left", "flow-up", "temporal")


def sprite_videos(count: int = 6, seed: int = 11) -> torch.Tensor:
    return VideoClips(moving_sprites(count, 8, 16, seed)).video_tensor()


def panned(direction: str, count: int = 6, size: int = 16, speed: int = 1) -> torch.Tensor:
    """Clips ``[count, 8, 3, size, size]`` whose content moves ``speed`` px per frame: windows of a sprite frame
    twice as large (not a training seed) shifted by whole pixels."""
    canvas = VideoClips(moving_sprites(count, 1, 2 * size, seed=21)).video_tensor()[:, 0]
    step = {"left": (0, speed), "right": (0, -speed), "up": (speed, 0), "down": (-speed, 0)}[direction]  # window (y, x)
    frames = []
    for t in range(8):
        y, x = size // 2 + step[0] * (t - 4), size // 2 + step[1] * (t - 4)
        frames.append(canvas[..., y : y + size, x : x + size])
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


@pytest.mark.parametrize("direction", ["left", "up"])
def test_motion_reward_reads_the_direction_of_32_pixel_clips_like_the_video_models(direction):
    opposite = {"left": "right", "up": "down"}[direction]
    reward = build_reward(f"motion-{direction}")
    with torch.no_grad():
        for speed in (1, 2):
            toward = reward(panned(direction, 8, size=32, speed=speed))
            away = reward(panned(opposite, 8, size=32, speed=speed))
            assert toward.mean() > 0.6 > 0.2 > away.mean() and (toward > away).all()


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


def shuffled_and_flickering(clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    shuffled = clips[:, torch.tensor([3, 0, 6, 1, 7, 2, 5, 4])]
    flicker = (clips + 0.2 * torch.randn(clips.shape, generator=generator)).clamp(-1, 1)
    return shuffled, flicker


@pytest.mark.parametrize(("data", "size"), [("sprites", 16), ("sprites", 32), ("scenes", 32)])
def test_temporal_reward_prefers_real_clips_to_shuffled_or_flickering_ones(data, size):
    clips = video_clips(data, 12, 8, size, seed=11, progress=False).video_tensor()
    shuffled, flicker = shuffled_and_flickering(clips)
    temporal = build_reward("temporal")
    with torch.no_grad():
        real = temporal(clips)
        assert real.mean() > temporal(shuffled).mean() and real.mean() > temporal(flicker).mean()
        assert (real > temporal(shuffled)).float().mean() > 0.9
    with pytest.raises(GenlabError, match="needs more than 2 frames"):
        temporal(clips[:, :2])


def test_class_reward_path_selects_the_shapes_classifier():
    test_set = load_dataset("shapes", "test")
    images, labels = test_set.images(range(24)), test_set.labels(range(24))
    reward = build_reward("class", "shapes")
    assert reward.classifier.config.dataset == "shapes"
    assert reward(images, labels=labels).mean() > 0.9 > 0.1 > reward(images, labels=(labels + 1) % 4).mean()


def test_shipped_weights_load_frozen_and_missing_ones_name_the_training_script(tmp_path, monkeypatch):
    motion, temporal = load_net("motion"), load_net("temporal")
    assert isinstance(motion, MotionNet) and isinstance(temporal, TemporalModel)
    for net in (motion, temporal):
        assert not net.training and not any(p.requires_grad for p in net.parameters())
    assert (temporal.latent_std != 1).any()  # the training statistics were loaded, not the defaults
    assert all(path.stat().st_size < 300_000 for path in small.WEIGHTS_DIR.iterdir())
    monkeypatch.setattr(small, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(GenlabError, match="no temporal reward weights .* run scripts/train_align_rewards.py"):
        load_net.__wrapped__("temporal")
    with pytest.raises(GenlabError, match="no shipped reward net called 'nope'"):
        (tmp_path / "nope.safetensors").touch()
        (tmp_path / "nope.json").write_text("{}")
        load_net.__wrapped__("nope")


def test_the_zoo_lists_every_reward_and_rejects_unknown_names():
    assert {"class", "temporal", "motion-left", "aesthetic", "hps", "vjepa-temporal", "object-removal"} <= set(REWARDS)
    assert "motion-left:" in describe_rewards()
    with pytest.raises(GenlabError, match="unknown reward 'nope'"):
        build_reward("nope")
    with pytest.raises(GenlabError, match="motion direction must be one of"):
        from genlab.align.rewards.small import MotionDirectionReward

        MotionDirectionReward("sideways")
