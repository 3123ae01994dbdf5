"""Train the video rewards that ship with genlab.align (``motion-*`` and ``temporal``) and write their weights.

* Motion: 8-frame 16×16 clips whose content moves at 0.5-1.5 px per frame in one of four directions
  or not at all: half are sprites (discs and squares over a gradient, as in genlab's sprite clips)
  all moving that way, half are sprite frames panned by a moving window. A 3-D CNN learns the five
  classes. Held-out accuracy on clips from another seed.
* Temporal (V-JEPA-like prediction in a learnt feature space, in two stages so it cannot collapse):
  4000 real 8-frame clips, a quarter each of moving sprites and rendered 3-D scenes made at 32×32 and at
  16×16 (upsized to 32×32 as the reward does). Stage 1 trains a frame autoencoder (conv encoder -> a
  16×8×8 latent map; the decoder is dropped), whose latents must keep what is where. Stage 2 freezes the
  encoder, standardises its latents per channel and trains a conv predictor of each frame's latent from
  the two before it. Reported per data set and size on held-out clips (another seed): the mean error of
  real clips, of the same clips with shuffled frames, with independent noise per frame (flicker) and
  held still, and how often the real clip beats its shuffled / flickering version.

Deterministic for a seed on a given machine; one CPU thread. About 1 min for motion and 2 min for temporal.

    python scripts/train_align_rewards.py [--rewards motion temporal] [--seed 0] [--motion-steps 1500]
        [--temporal-steps 2000]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from genlab.align.rewards.small import (
    DIRECTIONS,
    MotionNet,
    MotionNetConfig,
    TemporalModel,
    TemporalNetConfig,
    resize_frames,
    save_net,
)
from genlab.base.video_model import video_clips
from genlab.data.sprites import VideoClips, moving_sprites

FRAMES, SIZE, TEMPORAL_SIZE = 8, 16, 32


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


def temporal_clips(count: int, seed: int) -> torch.Tensor:
    """``count`` real clips uint8 ``[count, 8, 3, 32, 32]``: a quarter each of moving sprites and rendered 3-D
    scenes, made at 32×32 and at 16×16 (upsized as the reward upsizes them)."""
    quarter = count // 4
    groups = []
    for data in ("sprites", "scenes"):
        for size in (TEMPORAL_SIZE, TEMPORAL_SIZE // 2):
            clips = video_clips(data, quarter, FRAMES, size, seed, progress=False).video_tensor()
            clips = resize_frames(clips, TEMPORAL_SIZE).clamp(-1, 1)
            groups.append(((clips + 1) * 127.5).round().to(torch.uint8))
    return torch.cat(groups)


def as_float(clips: torch.Tensor) -> torch.Tensor:
    return clips.float() / 127.5 - 1


def frame_decoder(config: TemporalNetConfig) -> nn.Module:
    """The autoencoder's decoder (training only): latent maps back to frames."""
    layers, channels = [], config.latent_channels
    for width in reversed(config.widths):
        layers += [nn.ConvTranspose2d(channels, width, 4, stride=2, padding=1), nn.SiLU()]
        channels = width
    return nn.Sequential(*layers, nn.Conv2d(channels, 3, 3, padding=1))


def corrupted(clips: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Real ``clips`` and three corruptions: frames in a random non-identity order per clip, independent noise
    (std 0.2) added to every frame, and the first frame held still."""
    frames = clips.shape[1]
    orders = torch.stack([torch.randperm(frames, generator=generator) for _ in clips])
    identity = (orders == torch.arange(frames)).all(1)
    orders[identity] = orders[identity].flip(1)
    noise = 0.2 * torch.randn(clips.shape, generator=generator)
    return {"real": clips, "shuffled": clips[torch.arange(len(clips))[:, None], orders],
            "flicker": (clips + noise).clamp(-1, 1), "still": clips[:, :1].expand_as(clips)}


@torch.no_grad()
def evaluate_temporal(model: TemporalModel, seed: int) -> dict:
    """Mean prediction error of held-out clips (another seed), real and corrupted, per data set and size, and
    the share of clips whose real version scores better than its shuffled one."""
    generator = torch.Generator().manual_seed(seed)
    results = {}
    for data in ("sprites", "scenes"):
        for size in (TEMPORAL_SIZE, TEMPORAL_SIZE // 2):
            clips = video_clips(data, 100, FRAMES, size, seed, progress=False).video_tensor()
            errors = {name: model.errors(videos) for name, videos in corrupted(clips, generator).items()}
            row = {name: round(error.mean().item(), 4) for name, error in errors.items()}
            row["real_beats_shuffled"] = (errors["real"] < errors["shuffled"]).float().mean().item()
            row["real_beats_flicker"] = (errors["real"] < errors["flicker"]).float().mean().item()
            results[f"{data}{size}"] = row
    return results


def fit_one_cycle(parameters: list, loss_fn, steps: int, name: str, what: str) -> None:
    """``steps`` AdamW updates (lr 2e-3 on a one-cycle schedule, weight decay 1e-4) of ``loss_fn()``,
    printing ``what`` every 250 steps and at the end."""
    optimizer = torch.optim.AdamW(parameters, lr=2e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps)
    for step in range(steps):
        loss = loss_fn()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 250 == 0 or step == steps - 1:
            print(f"{name} step {step}: {what} {loss.item():.4f}", flush=True)


def train_temporal(seed: int, steps: int) -> None:
    """Stage 1: a frame autoencoder on real frames (its latents must keep what is where, so they cannot
    collapse). Stage 2: the encoder frozen and its latents standardised, a predictor learns each frame's latent
    from the two before it."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    config = TemporalNetConfig(resolution=TEMPORAL_SIZE)
    model = TemporalModel(config)
    clips = temporal_clips(4000, seed)
    frames = clips.flatten(0, 1)
    decoder = frame_decoder(config)

    def reconstruction_loss() -> torch.Tensor:
        batch = as_float(frames[torch.randint(len(frames), (64,), generator=generator)])
        return (decoder(model.encoder(batch)) - batch).pow(2).mean()

    fit_one_cycle([*model.encoder.parameters(), *decoder.parameters()], reconstruction_loss, steps,
                  "temporal autoencoder", "reconstruction mse")
    model.encoder.requires_grad_(False)
    with torch.no_grad():
        latents = torch.cat([model.encoder(as_float(frames[i : i + 1024])) for i in range(0, len(frames), 1024)])
        model.latent_mean.copy_(latents.mean((0, 2, 3)))
        model.latent_std.copy_(latents.std((0, 2, 3)).clamp_min(1e-3))
        latents = (latents - model.latent_mean[:, None, None]) / model.latent_std[:, None, None]
        latents = latents.view(len(clips), FRAMES, *latents.shape[1:])
    context = config.context
    windows = latents.unfold(1, context + 1, 1).permute(0, 1, 5, 2, 3, 4).flatten(0, 1)  # [N·W, ctx+1, C, h, w]

    def prediction_loss() -> torch.Tensor:
        batch = windows[torch.randint(len(windows), (128,), generator=generator)]
        return (model.predict(batch[:, :context]) - batch[:, context]).pow(2).mean()

    fit_one_cycle(list(model.predictor.parameters()), prediction_loss, steps, "temporal predictor", "prediction mse")
    model.eval()
    results = evaluate_temporal(model, seed + 100)
    for name, row in results.items():
        print(f"temporal held-out {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()))
    save_net(model, "temporal", {"held_out_error": results, "seed": seed, "steps": steps})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rewards", nargs="+", choices=("motion", "temporal"), default=["motion", "temporal"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--motion-steps", type=int, default=1500, help="optimiser steps of the motion classifier")
    parser.add_argument("--temporal-steps", type=int, default=2000,
                        help="optimiser steps of each temporal stage (autoencoder, then predictor)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    for name in args.rewards:
        start = time.perf_counter()
        if name == "motion":
            train_motion(args.seed, args.motion_steps)
        else:
            train_temporal(args.seed, args.temporal_steps)
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
