"""Train the video rewards that ship with genlab.align (``motion-*`` and ``temporal``) and write their weights.

* Motion: 8-frame 16×16 clips whose content moves at 0.5-1.5 px per frame in one of four directions
  or not at all: half are sprites (discs and squares over a gradient, as in genlab's sprite clips)
  all moving that way, half are sprite frames panned by a moving window. A 3-D CNN learns the five
  classes. Held-out accuracy on clips from another seed.
* Temporal: next-frame prediction of standardised shapes-classifier features from the two previous
  frames, on moving-sprite clips (8 frames, 16×16). Reported: the mean error on held-out real clips,
  on the same clips with shuffled frames and with independent noise per frame.

    python scripts/train_align_rewards.py [--seed 0] [--steps 1500]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from genlab.align.rewards.small import (
    DIRECTIONS,
    MotionNet,
    MotionNetConfig,
    NextFeaturePredictor,
    TemporalNetConfig,
    frame_features,
    prediction_errors,
    save_net,
)
from genlab.data.sprites import VideoClips, moving_sprites

FRAMES, SIZE = 8, 16


DIRECTION_VECTORS = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0], [0.0, 0.0]])  # content (x, y)


def panned_clips(canvases: torch.Tensor, velocity: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A 16×16 window panned over ``canvases [N, 3, 32, 32]`` so the content moves at ``velocity [N, 2]`` px/frame."""
    count = len(canvases)
    window_velocity = -velocity
    travel = window_velocity * (FRAMES - 1)
    start = torch.rand(count, 2, generator=generator) * (SIZE - travel.abs()) + travel.clamp(max=0).neg()
    clips = []
    for t in range(FRAMES):
        offset = start + window_velocity * t  # top-left corner (x, y) in canvas pixels
        theta = torch.zeros(count, 2, 3)  # an affine grid sampling the window at offset from the canvas
        theta[:, 0, 0] = theta[:, 1, 1] = 0.5
        theta[:, :, 2] = (offset + SIZE / 2) / SIZE - 1
        grid = F.affine_grid(theta, (count, 3, SIZE, SIZE), align_corners=False)
        clips.append(F.grid_sample(canvases, grid, mode="bilinear", align_corners=False))
    return torch.stack(clips, 1)


def sprite_clips(count: int, velocity: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """2-4 anti-aliased discs/squares over a vertical two-colour gradient (as in genlab's sprite clips), all
    moving at ``velocity [N, 2]`` px/frame (each sprite at 0.7-1.3× that speed), placed so they stay in view."""
    pixel = torch.arange(SIZE, dtype=torch.float32) + 0.5
    low, high = torch.rand(count, 2, 3, generator=generator).unbind(1)
    ramp = torch.linspace(0, 1, SIZE)[None, :, None, None]
    canvas = (low[:, None, None] * (1 - ramp) + high[:, None, None] * ramp).permute(0, 3, 1, 2)
    canvas = canvas[:, None].expand(count, FRAMES, 3, SIZE, SIZE).clone()
    sprites = torch.randint(2, 5, (count,), generator=generator)
    time = torch.arange(FRAMES, dtype=torch.float32)[None, :, None]
    for s in range(4):
        size = 1.5 + 2.0 * torch.rand(count, generator=generator)
        own = velocity * (0.7 + 0.6 * torch.rand(count, 1, generator=generator))
        travel = own * (FRAMES - 1)
        room = (SIZE - 2 * size[:, None] - travel.abs()).clamp_min(0)
        start = size[:, None] + travel.clamp(max=0).neg() + torch.rand(count, 2, generator=generator) * room
        centre = start[:, None] + own[:, None] * time  # [N, T, 2]
        dx = (pixel[None, None, None, :] - centre[..., 0, None, None]).abs()
        dy = (pixel[None, None, :, None] - centre[..., 1, None, None]).abs()
        square = torch.rand(count, generator=generator)[:, None, None, None] < 0.5
        distance = torch.where(square, torch.maximum(dx, dy), (dx**2 + dy**2).sqrt())
        alpha = ((size[:, None, None, None] - distance + 0.5).clamp(0, 1) * (s < sprites)[:, None, None, None])[:, :, None]
        colour = torch.rand(count, 3, generator=generator)[:, None, :, None, None]
        canvas = canvas * (1 - alpha) + colour * alpha
    return canvas * 2 - 1


def motion_clips(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` clips ``[count, 8, 3, 16, 16]`` in [-1, 1] with direction labels ``[count]``: half moving
    sprites, half panned sprite frames, at 0.5-1.5 px per frame (or still)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(len(DIRECTIONS), (count,), generator=generator)
    velocity = DIRECTION_VECTORS[labels] * (0.5 + torch.rand(count, 1, generator=generator))
    half = count // 2
    canvases = VideoClips(moving_sprites(count - half, 1, 2 * SIZE, seed)).video_tensor()[:, 0]
    clips = torch.cat([sprite_clips(half, velocity[:half], generator),
                       panned_clips(canvases, velocity[half:], generator)])
    return clips, labels


def train_motion(seed: int, steps: int) -> None:
    torch.manual_seed(seed)
    net = MotionNet(MotionNetConfig(resolution=SIZE))
    optimizer = torch.optim.AdamW(net.parameters(), lr=2e-3)
    videos, labels = motion_clips(6000, seed)
    for step in range(steps):
        index = torch.randint(len(videos), (32,))
        loss = F.cross_entropy(net(videos[index]), labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 250 == 0:
            print(f"motion step {step}: loss {loss.item():.4f}")
    test_videos, test_labels = motion_clips(1000, seed + 100)
    with torch.no_grad():
        accuracy = (net.eval()(test_videos).argmax(1) == test_labels).float().mean().item()
    print(f"motion: held-out accuracy {accuracy:.3f}")
    save_net(net, "motion", {"held_out_accuracy": accuracy, "seed": seed, "steps": steps})


def train_temporal(seed: int, steps: int) -> None:
    torch.manual_seed(seed)
    predictor = NextFeaturePredictor(TemporalNetConfig())
    with torch.no_grad():
        features = frame_features(VideoClips(moving_sprites(3000, FRAMES, SIZE, seed)).video_tensor())
    flat = features.flatten(0, 1)
    predictor.feature_mean.copy_(flat.mean(0))
    predictor.feature_std.copy_(flat.std(0).clamp_min(1e-3))
    standardised = (features - predictor.feature_mean) / predictor.feature_std
    windows = standardised.unfold(1, 3, 1).permute(0, 1, 3, 2).flatten(0, 1)  # [N·W, 3, D]
    optimizer = torch.optim.AdamW(predictor.parameters(), lr=1e-3)
    for step in range(steps):
        index = torch.randint(len(windows), (256,))
        loss = (predictor(windows[index, :2].flatten(1)) - windows[index, 2]).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 500 == 0:
            print(f"temporal step {step}: loss {loss.item():.4f}")
    held_out = VideoClips(moving_sprites(200, FRAMES, SIZE, seed + 100)).video_tensor()
    shuffled = held_out[:, torch.randperm(FRAMES, generator=torch.Generator().manual_seed(seed))]
    flicker = (held_out + 0.3 * torch.randn(held_out.shape, generator=torch.Generator().manual_seed(seed))).clamp(-1, 1)
    with torch.no_grad():
        scores = {name: prediction_errors(predictor.eval(), clips).mean().item()
                  for name, clips in (("real", held_out), ("shuffled", shuffled), ("flicker", flicker))}
    print("temporal: held-out prediction error " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    save_net(predictor, "temporal", {"held_out_error": scores, "seed": seed, "steps": steps})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=1500)
    args = parser.parse_args()
    torch.set_num_threads(1)
    train_motion(args.seed, args.steps)
    train_temporal(args.seed, 2 * args.steps)


if __name__ == "__main__":
    main()
