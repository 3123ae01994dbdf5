"""`genlab train video|camera`, `genlab sample camera` and `genlab reproduce camera` end to end at toy scale,
and the camera training's promise: the base model stays frozen."""

import json
from dataclasses import replace

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from genlab.base.video_model import load_video_model
from genlab.camera.model import ControlNetCameraDenoiser, load_camera_model
from genlab.experiments import camera

TOY = replace(camera.PRESETS["quick"], clips=8, camera_steps=3, batch_size=4, branch_hidden=32, eval_scenes=2,
              sampler_steps=2, seeds=(0, 1))
LOOP = ["--steps", "4", "--batch-size", "4", "--checkpoint-every", "2", "--no-progress", "--warmup-steps", "1"]
DATA = ["--clips", "8"]


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    from genlab.cli import main

    run = tmp_path_factory.mktemp("camera") / "base"
    main(["train", "video", *LOOP, *DATA, "--frames", "4", "--resolution", "16", "--run-dir", str(run)])
    return run


@pytest.fixture(scope="module")
def toy(base_run):
    """The toy preset on the module's tiny base, with a tiny pose estimator for its 16×16 frames."""
    from genlab.data import CameraVideoDataset
    from genlab.metrics import train_pose_estimator

    data = CameraVideoDataset(8, 4, 16, seed=0)
    train_pose_estimator(data.videos, data.camera_to_world, steps=3).save_pretrained(base_run.parent / "estimator")
    return replace(TOY, base=str(base_run), estimator=str(base_run.parent / "estimator"))


def test_controlnet_training_leaves_the_base_frozen(run_cli, base_run, tmp_path):
    code, out, err = run_cli("train", "camera", "--base", str(base_run), *LOOP, *DATA, "--branch-hidden", "32",
                             "--run-dir", str(tmp_path / "cn"))
    assert code == 0, err
    base = load_video_model(base_run)
    trained = load_camera_model(tmp_path / "cn")
    assert isinstance(trained, ControlNetCameraDenoiser)
    for name, value in base.net.state_dict().items():
        torch.testing.assert_close(trained.base.net.state_dict()[name], value, rtol=0, atol=0, msg=name)
    moved = [not torch.equal(p, torch.zeros_like(p)) for p in (o.weight for o in trained.controlnet.outputs)]
    assert all(moved)  # the zero-initialised output projections were trained


def test_concat_baseline_trains_the_whole_model(run_cli, base_run, tmp_path):
    code, out, err = run_cli("train", "camera", "--base", str(base_run), "--variant", "concat", *LOOP, *DATA,
                             "--run-dir", str(tmp_path / "concat"))
    assert code == 0, err
    base, trained = load_video_model(base_run), load_camera_model(tmp_path / "concat")
    assert not torch.equal(trained.net.blocks[0].attn.qkv.weight, base.net.blocks[0].attn.qkv.weight)
    assert trained.net.patch_embed.weight[:, 3:].abs().sum() > 0  # the Plücker input weights left zero


def test_sample_camera_writes_a_side_by_side_video_and_rejects_bad_trajectories(run_cli, base_run, tmp_path):
    run_cli("train", "camera", "--base", str(base_run), *LOOP, *DATA, "--branch-hidden", "32",
            "--run-dir", str(tmp_path / "cn"))
    out = tmp_path / "orbit.gif"
    code, stdout, err = run_cli("sample", "camera", "--model", str(tmp_path / "cn"), "--trajectory", "orbit",
                                "--sampling-steps", "2", "--out", str(out))
    assert code == 0, err
    frames = iio.imread(out)
    assert frames.shape[0] == 4 and frames.shape[2] > frames.shape[1]  # 4 frames, two clips side by side
    np.save(tmp_path / "short.npy", np.tile(np.eye(4), (3, 1, 1)))
    code, _, err = run_cli("sample", "camera", "--model", str(tmp_path / "cn"), "--poses", str(tmp_path / "short.npy"))
    assert code != 0 and "one camera-to-world matrix per frame of the clip, [4, 4, 4]" in err
    mirrored = np.tile(np.diag([1.0, 1.0, -1.0, 1.0]), (4, 1, 1))
    np.save(tmp_path / "mirror.npy", mirrored)
    code, _, err = run_cli("sample", "camera", "--model", str(tmp_path / "cn"), "--poses", str(tmp_path / "mirror.npy"))
    assert code != 0 and "rotation" in err
    code, _, err = run_cli("sample", "camera", "--model", str(tmp_path / "cn"), "--trajectory", "spiral")
    assert code != 0 and "spiral" in err
    code, _, err = run_cli("sample", "camera", "--model", str(base_run))
    assert code != 0 and "holds a video model, not a camera model; add cameras with `genlab train camera" in err


def test_reproduce_writes_tables_and_a_video_and_reuses_finished_stages(tmp_path, toy):
    results = camera.run(tmp_path, toy, workers=1)
    evaluation = results["evaluation"]
    for name in (camera.BASE, *camera.ARMS):
        assert set(evaluation[name]["per_trajectory"]) == {"orbit", "pan", "tilt", "dolly", "random"}
        assert evaluation[name]["rotation_deg"]["n"] == 2  # both seeds
        assert np.isfinite(evaluation[name]["rotation_deg"]["mean"]) and np.isfinite(evaluation[name]["clip_fd"]["mean"])
    training = results["training"]
    assert len(training["VD3D ControlNet"]) == 2
    params = {name: training[name][0]["trainable_parameters"] for name in camera.ARMS}
    assert params["VD3D ControlNet"] < params["MotionCtrl-style concat"] and params["CameraCtrl-style encoder"] < params["fine-tuned, no camera"]
    assert params["fine-tuned, no camera"] == results["base_parameters"]
    assert evaluation["ground truth"]["psnr"] > 90  # the true clip against itself
    assert evaluation["true-vs-true floor"]["clip_fd"] > 0
    assert set(results["goals"]) and all(isinstance(met, bool) for met in results["goals"].values())
    report = (tmp_path / "report.md").read_text()
    assert "VD3D ControlNet" in report and "Discrimination accuracy" in report
    assert iio.imread(tmp_path / "trajectories.gif").shape[0] == 4
    saved = json.loads((tmp_path / "results.json").read_text())
    stamp = (tmp_path / "controlnet_seed0" / "record.json").stat().st_mtime
    again = camera.run(tmp_path, toy, workers=1)
    assert (tmp_path / "controlnet_seed0" / "record.json").stat().st_mtime == stamp
    assert again["evaluation"]["VD3D ControlNet"] == saved["evaluation"]["VD3D ControlNet"]


def test_demo_part_writes_its_report_section(tmp_path, monkeypatch, toy):
    from genlab import demo

    monkeypatch.setitem(camera.PRESETS, "quick", replace(toy, seeds=(0,)))
    report = demo.run_demo(tmp_path, only="camera").read_text()
    assert "Camera control: VD3D ControlNet on a video DiT" in report and "camera/trajectories.gif" in report
    assert "VD3D ControlNet" in report and (tmp_path / "camera" / "trajectories.gif").exists()
