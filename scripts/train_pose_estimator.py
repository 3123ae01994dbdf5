"""Train genlab's camera pose estimator (the camera-following metric of VD3D) and write its weights.

Usage: python scripts/train_pose_estimator.py [--clips 4000] [--steps 6000] [--seed 0] [--out DIR]

The estimator reads the pose of each frame relative to frame 0 (:class:`genlab.metrics.PoseEstimator`).
Generated frames are not clean renderings, so it is trained with generator-like artefacts
(:func:`genlab.metrics.artefacts.generator_artefacts`: patch blocks, fragments, blur, colour drift,
noise) on both frames of every pair. For comparison the same recipe is also trained on clean
clips only. Both are measured on held-out scene clips (data seed 1, camera paths of every type),
clean and with artefacts (fixed seed); the numbers go to
``training.json`` beside the shipped (artefact-trained) weights.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from genlab.data import CameraVideoDataset
from genlab.metrics import camera_errors, train_pose_estimator
from genlab.metrics.artefacts import Artefacts, generator_artefacts
from genlab.metrics.camera_error import POSE_ESTIMATOR_DIR, PoseEstimator

FRAMES, RESOLUTION = 8, 32


def degraded(videos: torch.Tensor, seed: int) -> torch.Tensor:
    """Every frame of ``videos [N, T, 3, R, R]`` with generator artefacts (one generator seeded by ``seed``)."""
    generator = torch.Generator().manual_seed(seed)
    return generator_artefacts(videos.flatten(0, 1), generator).view(videos.shape)


def errors(estimator: PoseEstimator, videos: torch.Tensor, poses: torch.Tensor) -> dict[str, float]:
    measured = camera_errors(estimator.estimate(videos), poses)
    return {"rotation_deg": float(measured["rotation_deg"].mean()), "translation": float(measured["translation"].mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=4000)
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--held-out", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=POSE_ESTIMATOR_DIR)
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True)
    data = CameraVideoDataset(args.clips, FRAMES, RESOLUTION, seed=0, progress=False)
    test = CameraVideoDataset(args.held_out, FRAMES, RESOLUTION, seed=1, progress=False)
    true_clips = test.video_tensor()
    record = {"clips": args.clips, "steps": args.steps, "seed": args.seed, "held_out_clips": args.held_out,
              "threads": torch.get_num_threads(), "artefacts": vars(Artefacts())}
    estimators = {}
    for name, artefacts in (("clean", None), ("with artefacts", Artefacts())):
        started = time.perf_counter()
        estimators[name] = train_pose_estimator(data.videos, data.camera_to_world, steps=args.steps, seed=args.seed,
                                                artefacts=artefacts, progress=True)
        record[f"trained {name}"] = {
            "train_seconds": round(time.perf_counter() - started),
            "true clips": errors(estimators[name], true_clips, test.camera_to_world),
            "clips with artefacts": errors(estimators[name], degraded(true_clips, seed=1), test.camera_to_world),
        }
        print(name, json.dumps(record[f"trained {name}"]), flush=True)
    estimators["with artefacts"].save_pretrained(args.out)
    (args.out / "training.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
