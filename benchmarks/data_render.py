"""How fast the procedural shapes render: the shapes test split at 64 px against the shipped digits test split.

The shapes are drawn on the fly (vectorised over images), the digits read from the package; both
load a whole test split of images. Each round loads both, in a shuffled order, from a fresh data
set object; the table shows median seconds and the median over rounds of each round's ratio, which
resists other processes on a shared machine. Target: shapes at 64 px within TARGET × the digits'
load (it took about 0.5 s on an idle 2-core CPU when the renderer was vectorised; a per-image loop
takes many times that).

    python benchmarks/data_render.py [--rounds 5] [--json runs/data_render.json]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

from genlab.data import load_dataset

TARGET = 20.0
JOBS = {"digits test split (shipped)": ("digits", None), "shapes test split at 64 px (rendered)": ("shapes", 64)}


def load_seconds(name: str, resolution: int | None) -> float:
    start = time.perf_counter()
    load_dataset(name, "test", resolution=resolution).images()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    seconds: dict[str, list[float]] = {job: [] for job in JOBS}
    for _ in range(args.rounds):
        order = list(JOBS)
        random.shuffle(order)
        for job in order:
            seconds[job].append(load_seconds(*JOBS[job]))
    reference, rendered = (seconds[job] for job in JOBS)
    ratio = statistics.median(r / d for r, d in zip(rendered, reference, strict=True))
    result = {job: statistics.median(times) for job, times in seconds.items()}
    result.update({"ratio": ratio, "target": TARGET, "met": ratio <= TARGET})
    for job, value in result.items():
        print(f"{job}: {value:.3f}" if isinstance(value, float) else f"{job}: {value}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
