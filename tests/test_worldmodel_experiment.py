"""`genlab train tokenizer|worldmodel` and `genlab reproduce worldmodel` end to end at toy scale."""

import json
from dataclasses import replace

import numpy as np

from genlab.experiments import worldmodel
from genlab.worldmodel.dataset import write_shards
from genlab.worldmodel.model import WorldModel

TOY = replace(worldmodel.PRESETS["quick"], train_episodes=6, test_episodes=2, episode_steps=6, channels=16,
              codes=32, state_net_steps=5, tokenizer_steps=4, transformer_steps=4, batch_size=4, transformer_batch=4,
              hidden_size=32, samples=2, windows_per_episode=2, control_episodes=1, control_steps=2, population=4)


def test_train_commands_build_a_playable_world_model(run_cli, tmp_path):
    write_shards(tmp_path / "data", episodes=4, steps=5, size=32, progress=False)
    small = ["--context-grid", "8", "--future-grid", "2", "--channels", "16", "--num-codes", "32"]
    loop = ["--steps", "3", "--batch-size", "4", "--no-progress"]
    code, out, err = run_cli("train", "tokenizer", "--data", str(tmp_path / "data"), *small, *loop,
                             "--state-net-steps", "3", "--run-dir", str(tmp_path / "tok"))
    assert code == 0, err
    code, out, err = run_cli("train", "worldmodel", "--data", str(tmp_path / "data"), "--tokenizer",
                             str(tmp_path / "tok" / "model"), "--future-frames", "2", "--hidden-size", "32",
                             "--layers", "1", "--heads", "2", *loop, "--run-dir", str(tmp_path / "wm"))
    assert code == 0, err
    world_model = WorldModel.from_pretrained(tmp_path / "wm" / "model")
    assert world_model.transformer.config.future_tokens == 4 and world_model.action_dim == 2
    frames = np.zeros((1, 32, 32, 3), np.uint8)
    world_model.reset(frames)
    assert world_model.step([0.0, 1.0])[0].shape == (32, 32, 3)


def test_reproduce_writes_tables_and_a_rollout_and_reuses_finished_stages(tmp_path):
    results = worldmodel.run(tmp_path, TOY, workers=1)
    assert set(results["prediction"]) == set(worldmodel.MODELS)
    compressive, per_frame = results["prediction"]["compressive"], results["prediction"]["per-frame"]
    assert (compressive["context_tokens"], compressive["future_tokens"], per_frame["future_tokens"]) == (64, 16, 64)
    assert compressive["psnr_best"] >= compressive["psnr"] - 1e-6 and 0 < compressive["ssim"] <= 1
    assert set(results["control"]) == set(worldmodel.POLICIES)
    report = (tmp_path / "report.md").read_text()
    assert "| compressive, action-free |" in report and "| simulator MPC |" in report
    assert (tmp_path / "rollout.gif").exists() and (tmp_path / "rollout.mp4").exists()
    assert json.loads((tmp_path / "results.json").read_text())["preset"]["name"] == "quick"
    weights = tmp_path / "wm-compressive" / "model" / "transformer" / "diffusion_pytorch_model.safetensors"
    stamp = weights.stat().st_mtime_ns
    worldmodel.run(tmp_path, TOY, workers=1)
    assert weights.stat().st_mtime_ns == stamp


def test_demo_part_writes_its_report_section(tmp_path, monkeypatch):
    from genlab import demo

    monkeypatch.setitem(worldmodel.PRESETS, "quick", TOY)
    report = demo.run_demo(tmp_path, only="worldmodel").read_text()
    assert "World model: iVideoGPT on PushBlock" in report and "worldmodel/rollout.gif" in report
    assert "simulator MPC" in report and (tmp_path / "worldmodel" / "rollout.gif").exists()
