"""Train genlab's video feature net (frame FD and clip FD of scene and sprite clips) and write its weights.

Usage: python scripts/train_video_features.py [--clips 4000] [--steps 2000] [--seed 0] [--out DIR]

Training clips: ``--clips`` procedural 3-D scene clips (data seed 0, the video models' training
scenes) and as many moving-sprite clips, 8 frames at 32×32. Each batch mixes intact clips with
corrupted copies (frames shuffled, or the second half spliced from another clip), and the net
learns the clip kind, the camera path of intact scene clips, and the corruption. Accuracies are
measured on held-out clips (data seed 1) and stored in ``training.json`` beside the weights,
together with the true-vs-true FD floors (two disjoint held-out halves) that results pages quote
and, to show what the metrics see, the FD of held-out scene clips changed by generator-like
artefacts, shuffled frames or spliced halves.
Deterministic given the seed on a given machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from genlab.data import CameraVideoDataset
from genlab.data.sprites import moving_sprites
from genlab.metrics.artefacts import generator_artefacts
from genlab.metrics.video_features import CORRUPTIONS, VIDEO_FEATURES_DIR, VideoFeatureNet, video_fd

FRAMES, RESOLUTION = 8, 32
IGNORE = -100  # cross-entropy's ignore index: no camera-path label (sprites, corrupted clips)


def labelled_clips(clips: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``clips`` scene clips then ``clips`` sprite clips: uint8 videos ``[2·clips, T, 3, R, R]``, kind ``[2·clips]``
    (0 scene, 1 sprites) and camera path ``[2·clips]`` (the trajectory index; IGNORE for sprites)."""
    scenes = CameraVideoDataset(clips, FRAMES, RESOLUTION, seed, progress=False)
    videos = torch.cat([scenes.videos, moving_sprites(clips, FRAMES, RESOLUTION, seed)])
    kind = torch.cat([torch.zeros(clips, dtype=torch.long), torch.ones(clips, dtype=torch.long)])
    path = torch.cat([scenes.trajectory_index.long(), torch.full((clips,), IGNORE)])
    return videos, kind, path


def as_float(videos: torch.Tensor) -> torch.Tensor:
    return videos.float() / 127.5 - 1


def corrupt(videos: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Each clip of ``videos [B, T, ...]`` stays intact, has its frames shuffled (never in order) or its
    frames from a random cut on taken from the next clip of the batch; returns the clips and the
    corruption index ``[B]`` (a third each, on average)."""
    b, t = videos.shape[:2]
    label = torch.randint(len(CORRUPTIONS), (b,), generator=generator)
    out = videos.clone()
    for i in range(b):
        if label[i] == 1:
            order = torch.randperm(t, generator=generator)
            while bool((order == torch.arange(t)).all()):
                order = torch.randperm(t, generator=generator)
            out[i] = videos[i, order]
        elif label[i] == 2:
            cut = int(torch.randint(1, t, (1,), generator=generator))
            out[i, cut:] = videos[(i + 1) % b, cut:]
    return out, label


@torch.no_grad()
def accuracies(net: VideoFeatureNet, videos: torch.Tensor, kind: torch.Tensor, path: torch.Tensor,
               seed: int) -> dict[str, float]:
    generator = torch.Generator().manual_seed(seed)
    correct = {"kind": 0, "camera path": 0, "corruption": 0}
    paths = 0
    for start in range(0, len(videos), 128):
        clips, corruption = corrupt(as_float(videos[start:start + 128]), generator)
        kind_logits, path_logits, corruption_logits = net(clips)
        correct["kind"] += int((kind_logits.argmax(1) == kind[start:start + 128]).sum())
        correct["corruption"] += int((corruption_logits.argmax(1) == corruption).sum())
        labelled = (path[start:start + 128] != IGNORE) & (corruption == 0)
        correct["camera path"] += int((path_logits.argmax(1) == path[start:start + 128])[labelled].sum())
        paths += int(labelled.sum())
    return {"kind": correct["kind"] / len(videos), "corruption": correct["corruption"] / len(videos),
            "camera path": correct["camera path"] / max(paths, 1)}


def train(clips: int, steps: int, seed: int, batch_size: int = 32, lr: float = 2e-3) -> VideoFeatureNet:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    videos, kind, path = labelled_clips(clips, seed=0)
    net = VideoFeatureNet(resolution=RESOLUTION, frames=FRAMES)
    optimiser = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps)
    net.train()
    for step in range(steps):
        batch = torch.randint(len(videos), (batch_size,), generator=generator)
        clips_in, corruption = corrupt(as_float(videos[batch]), generator)
        target_path = torch.where(corruption == 0, path[batch], IGNORE)
        kind_logits, path_logits, corruption_logits = net(clips_in)
        loss = (F.cross_entropy(kind_logits, kind[batch]) + F.cross_entropy(corruption_logits, corruption)
                + F.cross_entropy(path_logits, target_path, ignore_index=IGNORE))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 200 == 0 or step == steps - 1:
            print(f"step {step}: loss {loss.item():.3f}", flush=True)
    return net.eval()


def floors(net: VideoFeatureNet, held_out: torch.Tensor, kind: torch.Tensor) -> dict[str, dict]:
    """True-vs-true FD between two disjoint halves of the held-out clips of each kind, and of both kinds
    (each half holding half of each kind)."""
    halves = {}
    for name, label in (("scenes", 0), ("sprites", 1)):
        videos = as_float(held_out[kind == label])
        half = len(videos) // 2
        halves[name] = (videos[:half], videos[half:2 * half])
    halves["mixed"] = tuple(torch.cat([halves["scenes"][i], halves["sprites"][i]]) for i in range(2))
    return {name: {"clips_per_half": len(a), **video_fd(a, b, net=net)} for name, (a, b) in halves.items()}


def sensitivity(net: VideoFeatureNet, held_out: torch.Tensor, kind: torch.Tensor, seed: int) -> dict[str, dict]:
    """FD between one half of the held-out scene clips and the other half changed: with generator-like
    artefacts on every frame, with their frames shuffled, and with their second halves spliced from other
    clips; beside the floor, these show what the metrics can see."""
    videos = as_float(held_out[kind == 0])
    half = len(videos) // 2
    reference, other = videos[:half], videos[half:2 * half]
    generator = torch.Generator().manual_seed(seed)
    frames = other.flatten(0, 1)
    changed = {"artefacts": generator_artefacts(frames, generator).view(other.shape),
               "shuffled frames": other[:, torch.randperm(other.shape[1], generator=generator)],
               "spliced halves": torch.cat([other[:, :other.shape[1] // 2], other.roll(1, 0)[:, other.shape[1] // 2:]], 1)}
    return {name: video_fd(reference, clips, net=net) for name, clips in changed.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=4000, help="scene clips, and as many sprite clips")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--held-out", type=int, default=1000, help="held-out clips of each kind (data seed 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=VIDEO_FEATURES_DIR)
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True)
    start = time.perf_counter()
    net = train(args.clips, args.steps, args.seed)
    seconds = time.perf_counter() - start
    held_out, kind, path = labelled_clips(args.held_out, seed=1)
    record = {"clips": args.clips, "steps": args.steps, "seed": args.seed, "train_seconds": round(seconds),
              "threads": torch.get_num_threads(), "held_out_accuracy": accuracies(net, held_out, kind, path, args.seed),
              "true_vs_true": floors(net, held_out, kind), "scenes_changed": sensitivity(net, held_out, kind, args.seed)}
    net.save_pretrained(args.out)
    (args.out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
