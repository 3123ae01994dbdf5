"""``genlab reproduce disco`` end to end at a tiny size: the toy, the image table, caching and the report."""

import json
import warnings

import pytest

from genlab.experiments import disco
from genlab.experiments.disco.images import ImageExperimentConfig
from genlab.experiments.disco.toy import ToyConfig

TINY = disco.DisCoPreset(
    ToyConfig(seeds=(0,), train_steps=30, train_points=400, eval_points=100, sampler_steps=4),
    ImageExperimentConfig(seeds=(0, 1), train_steps=4, prior_steps=3, num_images=20, sampler_steps=(2, 3),
                          cfg_scales=(1.0, 2.0), cfg_images=10, control_seeds=(0,)),
)


@pytest.fixture(scope="module")
def reproduction(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce-disco")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny runs collapse their codebooks
        results = disco.run(out, TINY)
    return out, results


def test_report_has_every_part_and_the_control_row(reproduction):
    out, results = reproduction
    report = (out / "report.md").read_text()
    for heading in ("2-D toy", "FD vs NFE", "Latent CFG", "What the latents learned"):
        assert heading in report
    assert "NFE 3 | NFE 5" in report and "latents always dropped (1 seed)" in report
    assert (out / "fd_vs_nfe.png").is_file() and (out / "images" / "latent_grid.png").is_file()
    record = results["images"]["seeds"]["1"]
    assert set(record["fd_table"]) == {"EDM", "DisCo-Diff (prior latents)", "DisCo-Diff (oracle latents)"}
    assert set(record["mutual_information_bits"]) == {"shape", "colour", "position"}
    assert json.loads((out / "results.json").read_text())["images"]["control"]["0"]["fd_table"].keys() == {"3", "5"}


def test_a_second_run_reuses_models_and_numbers(reproduction):
    out, results = reproduction
    models = sorted((out / "images" / "runs").glob("*/model/genlab.json"))
    stamps = [path.stat().st_mtime_ns for path in models]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = disco.run(out, TINY)
    assert [path.stat().st_mtime_ns for path in models] == stamps
    assert again["images"]["seeds"] == results["images"]["seeds"]


def test_demo_part_writes_its_report_section(tmp_path, monkeypatch):
    from dataclasses import replace

    from genlab import demo

    tiny = disco.DisCoPreset(TINY.toy, replace(TINY.images, seeds=(0,), sampler_steps=(3,), control_seeds=()))
    monkeypatch.setitem(disco.PRESETS, "demo", tiny)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = demo.run_demo(tmp_path, only="disco").read_text()
    assert "DisCo-Diff: discrete latents for diffusion" in report
    assert 'src="disco/images/latent_grid.png"' in report and "latent CFG w=2.0" in report
    assert (tmp_path / "disco" / "images" / "latent_grid.png").is_file()
