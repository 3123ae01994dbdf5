"""README.md quotes the committed full runs' figures (docs/results/<method>/results.json), not literals."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from genlab.experiments.figures import FIGURES
from genlab.experiments.reporting import RESULTS_DIR

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("readme_figures", ROOT / "scripts" / "readme_figures.py")
readme_figures = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(readme_figures)


def test_readme_figures_match_the_results_json():
    readme = (ROOT / "README.md").read_text()
    _, problems = readme_figures.regenerate(readme, readme_figures.all_figures())
    assert not problems, ("README.md disagrees with docs/results/*/results.json:\n  " + "\n  ".join(problems)
                          + "\nrun `python scripts/readme_figures.py` to write the figures (edit "
                            "scripts/readme_figures.md where the README's words changed)")


def test_every_results_page_has_a_results_json():
    pages = sorted(path.stem for path in RESULTS_DIR.glob("*.md"))
    assert pages and all((RESULTS_DIR / page / "results.json").is_file() for page in pages), pages


def test_a_changed_result_is_found_and_rewritten(tmp_path):
    results = tmp_path / "results"
    for method in FIGURES:
        shutil.copytree(RESULTS_DIR / method, results / method)
    camera = json.loads((results / "camera" / "results.json").read_text())
    camera["evaluation"]["ControlNet (VD3D)"]["rotation_deg"] = 9.04
    (results / "camera" / "results.json").write_text(json.dumps(camera))
    readme = (ROOT / "README.md").read_text()
    updated, problems = readme_figures.regenerate(readme, readme_figures.all_figures(results))
    assert problems == ["camera: figures differ from the results.json"]
    assert "base from 15.2° to 9.0° (ControlNet" in updated and updated.replace("9.0°", "12.5°", 1) == readme
    assert readme_figures.regenerate(updated, readme_figures.all_figures(results)) == (updated, [])


def test_changed_words_are_reported_not_guessed():
    readme = (ROOT / "README.md").read_text().replace("orbits did not", "orbits did not follow")
    updated, problems = readme_figures.regenerate(readme, readme_figures.all_figures())
    assert updated == readme and problems == ["camera: the template's text stands 0 times in README.md, not once"]


@pytest.mark.parametrize("method", sorted(FIGURES))
def test_figures_of_each_committed_run(method):
    values = readme_figures.all_figures()[method]
    assert values and all(isinstance(v, str) and v for v in values.values())
