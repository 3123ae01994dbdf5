"""Which video DiT size learns fastest per CPU second: the pilot behind the shipped video base's recipe.

Each size trains on the shipped recipe's data (scene and sprite clips, first frame hidden in 10%)
for about the same wall-clock time on one thread (``--steps`` per size, chosen from the sizes'
step times: ``small`` takes about twice as long per step as ``tiny``), one at a time or side by
side; then its EMA model's λ-weighted EDM loss is measured at fixed noise levels on 128 held-out
clips (data seed 7, the same noise for every size). Lower is better.

    python benchmarks/video_base_sizes.py --out runs/video_base_sizes   # about 12 minutes per size
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from genlab.base.config import VideoModelConfig
from genlab.base.video_model import first_frame_kwargs, load_video_model, train_video_model, video_clips
from genlab.core.edm import held_out_loss

SIGMAS = (0.05, 0.2, 0.5, 1.0, 2.0, 5.0)


def pilot(size: str, steps: int, out: Path) -> dict:
    config = VideoModelConfig(clips=4000, data="mixed", size=size, steps=steps, batch_size=16, lr=1e-3,
                              first_frame_dropout=0.1, checkpoint_every=steps, run_dir=str(out / size), overwrite=True,
                              progress=False)
    started = time.perf_counter()
    train_video_model(config)
    seconds = time.perf_counter() - started
    model = load_video_model(out / size)
    videos = video_clips("mixed", 128, 8, 32, seed=7, progress=False).video_tensor()
    loss = held_out_loss(model, videos, SIGMAS, **first_frame_kwargs(model.net, videos[:, 0]))
    return {"size": size, "steps": steps, "train_s": seconds, "sigmas": list(SIGMAS), "loss": loss.tolist(),
            "mean": float(loss.mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny:800", "small:400"], help="SIZE:STEPS pairs")
    parser.add_argument("--out", type=Path, default=Path("runs/video_base_sizes"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    for pair in args.sizes:
        size, steps = pair.split(":")
        print(json.dumps(pilot(size, int(steps), args.out)), flush=True)


if __name__ == "__main__":
    main()
