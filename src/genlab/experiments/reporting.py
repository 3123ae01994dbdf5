"""Small helpers shared by the reproductions' reports."""

from __future__ import annotations

import statistics


def mean_std(values: list[float]) -> str:
    """``mean ± std`` over seeds, or just the value when there is one seed."""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"
