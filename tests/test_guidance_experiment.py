"""`genlab reproduce guidance` end to end at toy size, and guidance from the CLI."""

import json

import pytest

from genlab.cli import main
from genlab.experiments import guidance


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("guidance")
    config = guidance.ExperimentConfig(seeds=(0, 1), train_steps=4, num_images=20, sampler_steps=3,
                                       sweep_scales=(1.0, 2.0), sweep_images=20)
    return out, guidance.run(out, config)


def test_reproduction_writes_every_row_for_every_seed(tiny_run):
    out, results = tiny_run
    assert list(results["table"]) == [f"{m} {g}" for m, g in guidance.ROWS]
    for row, runs in results["table"].items():
        assert len(runs) == 2
        assert ("accuracy" in runs[0]) == (not row.startswith("C")), "accuracy only for conditional models"
    assert all(len(runs) == 2 and len(runs[0]) == 2 for runs in results["sweep"].values())
    saved = json.loads((out / "results.json").read_text())
    assert saved["table"].keys() == results["table"].keys()
    report = (out / "report.md").read_text()
    assert "| A icg+tsg |" in report and " ± " in report
    assert (out / "sweep.png").stat().st_size > 1000 and (out / "samples_A_icg.png").is_file()


def test_rerun_reuses_trained_models(tiny_run):
    out, _ = tiny_run
    model_file = out / "models" / "A-seed0" / "model" / "diffusion_pytorch_model.safetensors"
    before = model_file.stat().st_mtime_ns
    guidance.train_models(out, guidance.ExperimentConfig(train_steps=4), seed=0)
    assert model_file.stat().st_mtime_ns == before


def test_cli_samples_and_evaluates_with_guidance(tiny_run, capsys):
    out, _ = tiny_run
    run = out / "models" / "B-seed0"
    main(["sample", "image", "--model", str(run), "--guidance", "icg+tsg", "--guidance-scale", "2", "--num", "10",
          "--sampling-steps", "3", "--out", str(out / "guided.png")])
    assert (out / "guided.png").is_file()
    main(["evaluate", "--model", str(run), "--guidance", "cfg", "--num", "20", "--sampling-steps", "3",
          "--out", str(out / "guided.json")])
    assert json.loads((out / "guided.json").read_text())["guidance"] == "cfg w=1.5"
    with pytest.raises(SystemExit) as exit_:
        main(["sample", "image", "--model", str(run), "--guidance", "cfg", "--guidance-scale", "-1"])
    assert exit_.value.code == 2
    assert "scale must be a finite number >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sample", "image", "--model", str(out / "models" / "C-seed0"), "--guidance", "icg"])
    assert "icg guidance needs a class-conditional model" in capsys.readouterr().err
