"""A run's ``log.jsonl`` (one JSON object per logged step) and its loss-curve figure."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_log(path: Path) -> list[dict]:
    """All records of a ``log.jsonl``; a torn last line (from a kill) is skipped."""
    records = []
    if Path(path).is_file():
        for line in Path(path).read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def truncate_log(path: Path, last_step: int) -> None:
    """Drop records after ``last_step`` (used when resuming from an earlier checkpoint)."""
    kept = [r for r in read_log(path) if r.get("step", 0) <= last_step]
    Path(path).write_text("".join(json.dumps(r) + "\n" for r in kept))


def append_log(path: Path, record: dict) -> None:
    """Append one record as a line of JSON."""
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")


def plot_curve(log_path: Path, png_path: Path, x: str, y: str, title: str, log_y: bool = False,
               x_label: str | None = None, y_label: str | None = None) -> Path:
    """Plot field ``y`` against field ``x`` of a ``log.jsonl`` into ``png_path`` (log-scaled y if asked
    and every value is positive)."""
    records = [r for r in read_log(log_path) if x in r and y in r]
    figure, axis = plt.subplots(figsize=(5, 3.2), dpi=110)
    if records:
        axis.plot([r[x] for r in records], [r[y] for r in records], lw=1.2)
        if log_y and all(r[y] > 0 for r in records):
            axis.set_yscale("log")
    axis.set_xlabel(x_label or x)
    axis.set_ylabel(y_label or y)
    axis.set_title(title)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(png_path)
    plt.close(figure)
    return Path(png_path)


def plot_loss_curve(log_path: Path, png_path: Path, title: str = "training loss") -> Path:
    """Plot ``loss`` against ``step`` from a ``log.jsonl`` (log-scaled y) into ``png_path``."""
    return plot_curve(log_path, png_path, "step", "loss", title, log_y=True)
