"""A run's ``log.jsonl`` (one JSON object per logged step) and its loss-curve figure.

Writes that fail (a full disk) raise :class:`GenlabError` naming the file; the log is rewritten and
the figure replaced through a temporary file, so a kill or a failed write never leaves them torn.
Figures are drawn on their own Agg canvas (:func:`agg_figure`), never through pyplot, so importing
genlab leaves matplotlib's global backend (a notebook's inline one, say) as it was.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from genlab.core.paths import write_text_atomic
from genlab.errors import GenlabError


def agg_figure(figsize: tuple[float, float], dpi: int = 110) -> Figure:
    """A figure on its own Agg canvas: draw with ``figure.subplots()``, write with ``figure.savefig``.

    Unlike ``pyplot.subplots`` it neither reads nor changes pyplot's backend and state, and it is
    freed like any object (no ``pyplot.close``).
    """
    figure = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(figure)
    return figure


def _write_failed(path: Path, error: OSError) -> GenlabError:
    return GenlabError(f"cannot write {path} ({error.strerror or error})")


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


def reset_log(path: Path) -> None:
    """Start an empty log at ``path`` (replacing any old one)."""
    write_text_atomic(path, "")


def truncate_log(path: Path, last_step: int) -> None:
    """Drop records after ``last_step`` (used when resuming from an earlier checkpoint)."""
    kept = [r for r in read_log(path) if isinstance(r, dict) and r.get("step", 0) <= last_step]
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))


def append_log(path: Path, record: dict) -> None:
    """Append one record as a line of JSON."""
    try:
        with open(path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
    except OSError as error:
        raise _write_failed(Path(path), error) from error


def plot_curve(log_path: Path, png_path: Path, x: str, y: str, title: str, log_y: bool = False,
               x_label: str | None = None, y_label: str | None = None) -> Path:
    """Plot field ``y`` against field ``x`` of a ``log.jsonl`` into ``png_path`` (log-scaled y if asked
    and every value is positive)."""
    png_path = Path(png_path)
    records = [r for r in read_log(log_path) if isinstance(r, dict) and x in r and y in r]
    figure = agg_figure((5, 3.2))
    axis = figure.subplots()
    temporary = png_path.with_name(f".{png_path.stem}.tmp{png_path.suffix}")
    try:
        if records:
            axis.plot([r[x] for r in records], [r[y] for r in records], lw=1.2)
            if log_y and all(r[y] > 0 for r in records):
                axis.set_yscale("log")
        axis.set_xlabel(x_label or x)
        axis.set_ylabel(y_label or y)
        axis.set_title(title)
        axis.grid(alpha=0.3)
        figure.tight_layout()
        figure.savefig(temporary)
        os.replace(temporary, png_path)
    except OSError as error:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise _write_failed(png_path, error) from error
    return png_path


def plot_loss_curve(log_path: Path, png_path: Path, title: str = "training loss") -> Path:
    """Plot ``loss`` against ``step`` from a ``log.jsonl`` (log-scaled y) into ``png_path``."""
    return plot_curve(log_path, png_path, "step", "loss", title, log_y=True)
