"""Overhead of genlab's training loop over a minimal hand-written loop (CPU by default).

Both train the same tiny class-conditional digits U-Net on the same batch of 64 images with the
same EDM loss and Adam. The hand loop does forward, backward and the optimiser step, nothing
else. genlab's loop adds everything a run needs (DataLoader, accelerate, per-step seeding, LR
warm-up, gradient clipping, EMA, logging). Time per step comes from genlab's own log
(elapsed seconds at two logged steps, so the final checkpoint is not counted). The two are
measured alternately, several rounds, and the median ratio is reported; target ≤ 1.10.

    python benchmarks/train_step.py [--steps 60] [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from genlab.base.image_model import ImageModelConfig, build_denoiser
from genlab.core.edm import edm_loss
from genlab.core.train import LoopConfig, Trainer
from genlab.data import load_dataset

WARMUP = 10


def batch_of_digits(size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    data = load_dataset("digits", "train")
    indices = torch.arange(size)
    return data.images(indices), data.labels(indices)


def hand_loop_seconds_per_step(images, labels, steps: int) -> float:
    denoiser = build_denoiser(ImageModelConfig(), 1, 16, 10)
    optimizer = torch.optim.Adam(denoiser.parameters(), lr=2e-3)
    for step in range(WARMUP + steps):
        if step == WARMUP:
            started = time.perf_counter()
        loss = edm_loss(denoiser, images, class_labels=labels).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return (time.perf_counter() - started) / steps


def genlab_seconds_per_step(images, labels, steps: int) -> float:
    denoiser = build_denoiser(ImageModelConfig(), 1, 16, 10)

    def loss_fn(model, batch):
        return edm_loss(model, batch[0], class_labels=batch[1]).mean()

    config = LoopConfig(steps=WARMUP + steps, batch_size=len(images), log_every=WARMUP,
                        checkpoint_every=10**9, progress=False)
    with tempfile.TemporaryDirectory() as run_dir:
        Trainer(denoiser, loss_fn, TensorDataset(images, labels), run_dir, config).fit()
        records = [json.loads(line) for line in (Path(run_dir) / "log.jsonl").read_text().splitlines()]
    elapsed = {r["step"]: r["seconds"] for r in records}
    return (elapsed[WARMUP + steps] - elapsed[WARMUP]) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60, help="timed steps per measurement (a multiple of 10)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating measurement rounds")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images, labels = batch_of_digits()
    hand, ours = [], []
    for _ in range(args.rounds):
        hand.append(hand_loop_seconds_per_step(images, labels, args.steps))
        ours.append(genlab_seconds_per_step(images, labels, args.steps))
    ratios = [o / h for o, h in zip(ours, hand, strict=True)]
    print(f"{'loop':<28}{'ms/step (median)':>18}{'all rounds':>30}")
    print(f"{'hand loop (fwd/bwd/Adam)':<28}{statistics.median(hand) * 1e3:>18.1f}"
          f"{', '.join(f'{h * 1e3:.1f}' for h in hand):>30}")
    print(f"{'genlab Trainer':<28}{statistics.median(ours) * 1e3:>18.1f}"
          f"{', '.join(f'{o * 1e3:.1f}' for o in ours):>30}")
    median = statistics.median(ratios)
    print(f"overhead ratio genlab/hand: {median:.3f} (target <= 1.10) {'OK' if median <= 1.10 else 'OVER'}")


if __name__ == "__main__":
    main()
