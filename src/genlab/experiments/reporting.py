"""Small helpers shared by the reproductions: Markdown tables, mean ± std over seeds (raw or summarised),
the committed results of the full runs, cached timed stages, training speed, frame features.

Importing this module does not import torch (the README figures and ``genlab demo --help`` read it).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

RESULTS_DIR = Path(__file__).resolve().parents[3] / "docs" / "results"
"""The committed full runs, ``<method>/results.json`` (present in a clone or an editable install)."""


def row(cells: Iterable[object]) -> str:
    """One Markdown table row: ``| a | b |``."""
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def table(header: Sequence[str], rows: Iterable[Iterable[object]]) -> list[str]:
    """A Markdown table as lines: the header, the ``|---|`` rule, then one line per row of cells."""
    return [row(header), "|" + "---|" * len(header), *(row(cells) for cells in rows)]


def cells(values: dict, formats: Sequence[tuple[str, str]], missing: str = "–") -> list[str]:
    """``values[key]`` formatted by each ``(key, format spec)`` of ``formats``; ``missing`` where a key is absent."""
    return [format(values[key], spec) if key in values else missing for key, spec in formats]


def stat(values: Sequence[float]) -> dict:
    """A summary of ``values`` over seeds: ``{"mean", "std", "n"}`` (std 0 for one value)."""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.mean(values), "std": std, "n": len(values)}


def stat_text(summary: dict, digits: int = 3) -> str:
    """``mean ± std`` of a :func:`stat` summary, or just the mean when it covers one seed."""
    if summary["n"] == 1:
        return f"{summary['mean']:.{digits}f}"
    return f"{summary['mean']:.{digits}f} ± {summary['std']:.{digits}f}"


def mean_std(values: list[float]) -> str:
    """``mean ± std`` over seeds, or just the value when there is one seed."""
    return stat_text(stat(values))


def seed_cells(runs: Sequence[dict], keys: Sequence[str], missing: str = "–") -> list[str]:
    """Per key, :func:`mean_std` over the runs (one dict per seed); ``missing`` where the runs lack the key."""
    return [mean_std([run[key] for run in runs]) if key in runs[0] else missing for key in keys]


def load_results(method: str, results_dir: Path | None = None) -> dict | None:
    """The committed ``<method>/results.json`` of a full run, or None where it is not on disk (a wheel install)."""
    path = (results_dir or RESULTS_DIR) / method / "results.json"
    return json.loads(path.read_text()) if path.is_file() else None


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
        from genlab.metrics import load_feature_net

        self.net = load_feature_net("shapes")

    def __call__(self, videos: torch.Tensor) -> torch.Tensor:
        import torch

        from genlab.metrics.evaluate import to_feature_resolution

        with torch.no_grad():
            frames = videos.flatten(0, 1)
            return self.net.features(to_feature_resolution(frames, self.net.config.resolution))
