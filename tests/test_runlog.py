"""``genlab.core.runlog``: figures drawn on their own Agg canvas, matplotlib's backend left alone."""

from __future__ import annotations

import json
import subprocess
import sys

from genlab.core.runlog import append_log, plot_loss_curve, read_log

CHECK_BACKEND = """
import sys
import matplotlib
matplotlib.use("svg")                           # a user's choice (a notebook: the inline backend)
before = matplotlib.get_backend()
from genlab.core.runlog import append_log, plot_loss_curve
import genlab.core.train, genlab.experiments.align, genlab.experiments.growth  # everything that draws
log = sys.argv[1] + "/log.jsonl"
for step in (1, 2, 3):
    append_log(log, {"step": step, "loss": 1.0 / step})
plot_loss_curve(log, sys.argv[1] + "/loss.png")
print(before, matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
"""


def test_drawing_leaves_the_backend_and_pyplot_alone(tmp_path):
    shown = subprocess.run([sys.executable, "-c", CHECK_BACKEND, str(tmp_path)], capture_output=True, text=True,
                           check=True).stdout.split()
    assert shown == ["svg", "svg", "False"]
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_loss_curve_of_a_log(tmp_path):
    log = tmp_path / "log.jsonl"
    for step in (1, 2):
        append_log(log, {"step": step, "loss": 0.5 / step})
    log.write_text(log.read_text() + '{"step": 3, "lo')   # a torn last line (a kill) is skipped
    assert [r["step"] for r in read_log(log)] == [1, 2]
    assert json.loads(log.read_text().splitlines()[0]) == {"step": 1, "loss": 0.5}
    assert plot_loss_curve(log, tmp_path / "loss.png").stat().st_size > 1000
