"""``genlab demo``'s notes on the full runs quote docs/results/<method>/results.json, not literals."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest

from genlab import demo
from genlab.experiments.figures import FIGURES
from genlab.experiments.reporting import RESULTS_DIR


def note_templates() -> dict[str, str]:
    """``{method: template}`` of every ``full_run_note(method, template)`` call in demo.py."""
    tree = ast.parse(Path(demo.__file__).read_text())
    return {call.args[0].value: call.args[1].value for call in ast.walk(tree)
            if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "full_run_note"}


def test_every_part_but_none_quotes_its_full_run():
    assert set(note_templates()) == set(demo.PARTS) == set(FIGURES)


@pytest.mark.parametrize("method", sorted(FIGURES))
def test_notes_fill_every_figure_from_the_committed_json(method):
    note = demo.full_run_note(method, note_templates()[method])
    assert "{" not in note and "docs/results/" in note


def test_a_changed_result_changes_the_note_and_a_missing_one_points_to_the_page(tmp_path):
    shutil.copytree(RESULTS_DIR / "align", tmp_path / "align")
    results = json.loads((tmp_path / "align" / "results.json").read_text())
    results["efficiency"]["digits-brightness"]["vader-k1"]["ratio"]["mean"] = 12.9
    (tmp_path / "align" / "results.json").write_text(json.dumps(results))
    template = note_templates()["align"]
    assert "11× (brightness)" in demo.full_run_note("align", template)
    assert "12× (brightness)" in demo.full_run_note("align", template, tmp_path)  # "N× fewer" rounds down
    assert demo.full_run_note("camera", "{clips}", tmp_path) == "See docs/results/camera.md for the full run."
