"""The genlab command line: help, end-to-end train → sample → evaluate, and bad input."""

import json
import shutil

import imageio.v3 as iio
import pytest

from genlab.cli import main


def test_help_lists_every_command(run_cli):
    code, out, _ = run_cli("--help")
    assert code == 0
    for command in ("train", "sample", "evaluate", "demo", "play", "reproduce"):
        assert command in out
    code, out, _ = run_cli("play", "--help")
    assert code == 0 and "w/a/s/d" in out and "--actions" in out
    code, out, _ = run_cli("reproduce", "worldmodel", "--help")
    assert code == 0 and "--quick" in out and "PSNR/SSIM" in out
    code, out, _ = run_cli("reproduce", "camera", "--help")
    assert code == 0 and "--quick" in out and "Plücker" in out
    code, out, _ = run_cli("train", "image", "--help")
    assert code == 0 and "--label-dropout" in out and "--resume" in out and "global batch size" in out


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("cli") / "run"
    main(["train", "image", "--steps", "20", "--batch-size", "16", "--checkpoint-every", "10", "--run-dir", str(run),
          "--no-progress"])
    return run


def test_sample_writes_a_grid_with_one_column_per_class(run_cli, trained_run):
    code, out, err = run_cli("sample", "image", "--model", str(trained_run), "--num", "20", "--sampling-steps", "3")
    assert code == 0, err
    grid = iio.imread(trained_run / "samples.png")
    assert grid.shape[2] == 3 and grid.shape[1] > grid.shape[0], "10 columns by 2 rows"


def test_evaluate_writes_metrics_json(run_cli, trained_run):
    out_json = trained_run / "eval.json"
    code, out, err = run_cli("evaluate", "--model", str(trained_run), "--num", "40", "--sampling-steps", "3",
                             "--out", str(out_json))
    assert code == 0, err
    results = json.loads(out_json.read_text())
    assert {"fd", "precision", "recall", "accuracy", "nfe"} <= results.keys()
    assert results["nfe"] == 5 and results["fd"] > 0 and "fd" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "image", "--data", "cifar"], "'cifar' is not one of"),
        (["train", "image", "--resolution", "12", "--steps", "1"], "resolution"),
        (["train", "image", "--steps", "0"], "'--steps': must be >= 1"),
        (["train", "image", "--no-such-option"], "No such option"),
        (["sample", "image", "--model", "/nonexistent/run"], "/nonexistent/run does not exist"),
        (["demo", "--only", "nothing"], "Invalid value for '--only'"),
        (["train", "tokenizer", "--data", "/nonexistent/shards"], "/nonexistent/shards"),
        (["train", "worldmodel", "--tokenizer", "/nonexistent/tok"], "/nonexistent/tok"),
        (["train", "worldmodel", "--hidden-size", "30", "--heads", "4"], "multiple of --heads"),
        (["play", "--model", "/nonexistent/wm"], "/nonexistent/wm does not exist"),
        (["reproduce", "worldmodel", "--num-workers", "0"], "'--num-workers': must be >= 1"),
        (["sample", "image", "--sampling-steps", "0"], "'--sampling-steps': must be >= 1"),
    ],
)
def test_bad_input_is_one_clear_line(run_cli, tmp_path, args, message):
    code, _, err = run_cli(*args, *(["--run-dir", str(tmp_path / "r")] if args[0] == "train" else []))
    assert code == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_corrupt_model_weights_are_reported(run_cli, trained_run, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(trained_run / "model", broken)
    (broken / "diffusion_pytorch_model.safetensors").write_bytes(b"not a safetensors file")
    code, _, err = run_cli("sample", "image", "--model", str(broken))
    assert code == 2 and "is corrupt or unreadable" in err and "Traceback" not in err


def test_class_label_out_of_range_is_rejected(run_cli, trained_run):
    code, _, err = run_cli("sample", "image", "--model", str(trained_run), "--class-label", "10")
    assert code == 2 and "--class-label must be in [0, 9]" in err
