"""End to end: `genlab train enhance`, `genlab enhance`, the reproduction and its demo part, on toy sizes."""

import json

import imageio.v3 as iio
import numpy as np
import pytest

from genlab.data.sprites import moving_sprites
from genlab.experiments import enhance

TOY = enhance.EnhancePreset("toy", clips=12, frames=4, resolution=8, base_steps=3, enhance_steps=3,
                            generator_steps=2, batch_size=4, branch_depth=1, eval_clips=4, eval_frames=5,
                            sampler_steps=2, trained=((2, 1),), unseen=((4, 2),), ablation=(1, 1))
LOOP = ("--steps", "3", "--batch-size", "4", "--checkpoint-every", "3", "--no-progress")


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    from genlab.cli import main

    run = tmp_path_factory.mktemp("enhance") / "base"
    main(["train", "video", "--no-first-frame", "--data", "mixed", "--clips", "8", "--frames", "4",
          "--resolution", "8", *LOOP, "--run-dir", str(run)])
    return run


@pytest.fixture(scope="module")
def input_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "low.mp4"
    iio.imwrite(path, moving_sprites(1, 3, 4, seed=2)[0].permute(0, 2, 3, 1).numpy(), fps=4, macro_block_size=1)
    return path


def test_train_and_enhance_a_video_file(base_run, input_video, tmp_path, run_cli):
    code, out, err = run_cli("train", "enhance", "--base", str(base_run), "--clips", "8", *LOOP,
                             "--run-dir", str(tmp_path / "cn"))
    assert code == 0, err
    assert "enhancer in" in out and (tmp_path / "cn" / "model" / "genlab.json").exists()
    code, out, err = run_cli("enhance", str(input_video), "--model", str(tmp_path / "cn"), "--space", "2",
                             "--time", "2", "--sampling-steps", "2", "--out", str(tmp_path / "high.mp4"))
    assert code == 0, err
    frames = iio.imread(tmp_path / "high.mp4")
    assert frames.shape == (5, 8, 8, 3)  # (3 - 1) * 2 + 1 frames of 2 x 4 pixels
    assert "3 frames of 4×4 -> 5 frames of 8×8" in out


def test_enhance_bad_inputs_are_clear_errors(base_run, input_video, tmp_path, run_cli):
    run_cli("train", "enhance", "--base", str(base_run), "--variant", "regression", "--clips", "8", *LOOP,
            "--run-dir", str(tmp_path / "reg"))
    model = str(tmp_path / "reg")
    code, _, err = run_cli("enhance", str(input_video), "--model", model, "--space", "9")
    assert code != 0 and "'--space': must be <= 8" in err
    code, _, err = run_cli("enhance", str(input_video), "--model", model, "--time", "0")
    assert code != 0 and "'--time': must be >= 1" in err
    odd = tmp_path / "odd.gif"
    iio.imwrite(odd, np.zeros((2, 5, 5, 3), np.uint8))
    code, _, err = run_cli("enhance", str(odd), "--model", model, "--space", "2")
    assert code != 0 and "10×10, not a multiple of the model's patch size 4" in err
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    code, _, err = run_cli("enhance", str(tmp_path / "broken.mp4"), "--model", model)
    assert code != 0 and "cannot read a video" in err
    single = tmp_path / "single.gif"
    iio.imwrite(single, np.zeros((1, 4, 4, 3), np.uint8))
    code, _, err = run_cli("enhance", str(single), "--model", model, "--space", "2", "--time", "2")
    assert code != 0 and "at least 2 frames" in err
    code, _, err = run_cli("enhance", str(input_video), "--model", str(base_run))
    assert code != 0 and "holds a video model, not an enhance model" in err
    code, _, err = run_cli("train", "enhance", "--base", str(base_run), "--space-factors", "0,2", *LOOP,
                           "--run-dir", str(tmp_path / "bad"))
    assert code != 0 and "--space-factors" in err


def test_reproduce_writes_tables_and_videos_and_reuses_finished_stages(tmp_path):
    results = enhance.run(tmp_path, TOY, workers=1)
    assert [(s["space"], s["time"], s["trained"]) for s in results["settings"]] == [(2, 1, True), (4, 2, False)]
    for setting in results["settings"]:
        assert set(setting["methods"]) == set(enhance.METHODS)
        for row in setting["methods"].values():
            assert all(np.isfinite(row[key]) for key in ("psnr", "ssim", "fd", "temporal_error"))
    training = results["training"]
    assert training["controlnet"]["trainable_parameters"] < training["base"]["trainable_parameters"]
    assert set(results["long_video"]["rows"]) == {"blended (overlap = half a window)", "hard chunk borders"}
    sweep = results["start_sigma"]
    assert len(results["ablation"]["rows"]) == 3 and len(sweep["rows"]) == len(enhance.START_SIGMAS)
    assert sweep["chosen"] == min(sweep["rows"], key=lambda row: row["fd"])["start_sigma"]
    assert all(setting["start_sigma"] == sweep["chosen"] for setting in results["settings"])
    report = (tmp_path / "report.md").read_text()
    assert "ControlNet (VEnhancer)" in report and "chunk borders" in report and "Noise augmentation" in report
    assert iio.imread(tmp_path / "side_by_side.gif").shape[0] == TOY.eval_frames
    saved = json.loads((tmp_path / "results.json").read_text())
    stamp = (tmp_path / "base" / "record.json").stat().st_mtime
    again = enhance.run(tmp_path, TOY, workers=1)
    assert (tmp_path / "base" / "record.json").stat().st_mtime == stamp
    assert again["settings"][0]["methods"] == saved["settings"][0]["methods"]


def test_temporal_error_sees_flicker_and_not_a_constant_offset():
    import torch

    truth = torch.rand(2, 6, 3, 4, 4) * 2 - 1
    assert torch.allclose(enhance.temporal_error(truth + 0.1, truth), torch.zeros(5), atol=1e-6)
    flicker = truth + 0.2 * (torch.arange(6) % 2).float()[None, :, None, None, None]
    assert torch.allclose(enhance.temporal_error(flicker, truth), torch.full((5,), 0.2), atol=1e-5)


def test_demo_part_writes_its_report_section(tmp_path, monkeypatch):
    from genlab import demo

    monkeypatch.setitem(enhance.PRESETS, "quick", TOY)
    report = demo.run_demo(tmp_path, only="enhance").read_text()
    assert "Video enhancement: VEnhancer space-time ControlNet" in report and "enhance/side_by_side.gif" in report
    assert "ControlNet (VEnhancer)" in report and (tmp_path / "enhance" / "side_by_side.gif").exists()
