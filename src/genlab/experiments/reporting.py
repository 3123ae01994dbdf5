"""Small helpers shared by the reproductions: cached timed stages, training speed, frame features, mean ± std."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from genlab.metrics import load_feature_net
from genlab.metrics.evaluate import to_feature_resolution


def mean_std(values: list[float]) -> str:
    """``mean ± std`` over seeds, or just the value when there is one seed."""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def timed_record(folder: Path, compute: Callable[[], dict]) -> dict:
    """Run ``compute()`` unless ``folder/record.json`` exists; store and return its record plus seconds."""
    record_file = folder / "record.json"
    if record_file.exists():
        return json.loads(record_file.read_text())
    started = time.perf_counter()
    record = compute()
    record["seconds"] = time.perf_counter() - started
    folder.mkdir(parents=True, exist_ok=True)
    record_file.write_text(json.dumps(record, indent=2))
    return record


def seconds_per_step(run_dir: Path) -> float:
    """Training time per step from a run's ``log.jsonl`` (data building and start-up excluded)."""
    last = json.loads((run_dir / "log.jsonl").read_text().splitlines()[-1])
    return last["seconds"] / last["step"]


class FrameFeatures:
    """Features of video frames in genlab's shapes classifier (for FD): ``videos [N, T, 3, H, W]`` -> ``[N·T, D]``."""

    def __init__(self) -> None:
        self.net = load_feature_net("shapes")

    @torch.no_grad()
    def __call__(self, videos: torch.Tensor) -> torch.Tensor:
        frames = videos.flatten(0, 1)
        return self.net.features(to_feature_resolution(frames, self.net.config.resolution))
