"""End to end: `genlab align` on a saved model, the reproduction and its demo part, on toy sizes."""

import json

import pytest

from genlab.experiments import align

TOY = align.AlignPreset("toy", image_steps=3, video_clips=8, video_steps=3, video_resolution=16, seeds=2,
                        batch_size=2, sampling_steps=3, large_k=3, vader_updates=3, ddpo_updates=4, lr=1e-2,
                        video_lr=1e-2, ddpo_lr=1e-3, eval_samples=10,
                        arms=("digits-class3", "digits-brightness", "video-flow-left"))


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    from genlab.cli import main

    run = tmp_path_factory.mktemp("align") / "digits"
    main(["train", "image", "--data", "digits", "--steps", "2", "--batch-size", "4", "--checkpoint-every", "2",
          "--no-progress", "--run-dir", str(run)])
    return run


def test_align_cli_trains_an_adapter_and_resumes(digits_model, tmp_path, run_cli):
    run_dir = tmp_path / "run"
    common = ("align", "--model", str(digits_model), "--reward", "class", "--sampling-steps", "3",
              "--batch-size", "2", "--lora-rank", "2", "--labels", "1,2", "--checkpoint-every", "1",
              "--no-progress", "--run-dir", str(run_dir))
    code, out, err = run_cli(*common, "--steps", "2")
    assert code == 0, err
    assert "2 updates, 4 reward queries" in out
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file() and (run_dir / "reward.png").is_file()
    assert "`genlab sample image --adapter DIR`" in out
    code, out, err = run_cli(*common, "--steps", "3", "--resume")
    assert code == 0, err
    assert "3 updates, 6 reward queries" in out
    assert [json.loads(line)["queries"] for line in (run_dir / "log.jsonl").read_text().splitlines()] == [2, 4, 6]


def test_align_cli_bad_inputs_are_clear_errors(digits_model, tmp_path, run_cli):
    base = ("align", "--model", str(digits_model), "--sampling-steps", "3", "--no-progress",
            "--run-dir", str(tmp_path / "bad"))
    code, _, err = run_cli(*base, "--reward", "class", "--k", "4")
    assert code != 0 and "--k 4 must lie between 1 and --sampling-steps 3" in err
    code, _, err = run_cli(*base, "--reward", "class", "--lora-targets", "to_q,to_v")
    assert code != 0 and "LoRA target 'to_q' matches no layer of ImageUNet" in err
    code, _, err = run_cli(*base, "--reward", "class", "--lora-targets", "0")  # peft's raw ValueError before
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("genlab: error: LoRA target '0' matches down.0 (DownLevel) in ImageUNet, which LoRA "
                          "cannot adapt; targets are ends of Linear/Conv layer names, e.g. ") and "qkv" in err
    code, _, err = run_cli(*base, "--reward", "clip-score", "--reward-path", str(tmp_path / "missing"))
    assert code != 0 and "missing" in err
    code, _, err = run_cli(*base, "--reward", "no-such-reward")
    assert code != 0 and "unknown reward 'no-such-reward'" in err
    code, _, err = run_cli(*base, "--reward", "motion-left")
    assert code != 0 and "scores videos, but this model makes images" in err
    code, _, err = run_cli(*base, "--reward", "class", "--method", "ddpo", "--eta", "0")
    assert code != 0 and "DDPO needs a stochastic sampler" in err


def test_reproduce_writes_efficiency_tables_curves_and_reuses_finished_stages(tmp_path):
    results = align.run(tmp_path, TOY, workers=1)
    assert len(results["runs"]) == 3 * 3 * 2
    saved = json.loads((tmp_path / "results.json").read_text())  # the summary over seeds, as committed
    for arm in TOY.arms:
        summary = saved["efficiency"][arm]
        assert summary["seeds"] == 2 and summary["ddpo_queries"] == TOY.ddpo_updates * TOY.batch_size
        assert summary["ddpo_final"]["n"] == 2 and summary["vader-k1"]["reached"] in (0, 1, 2)
        assert set(saved["samples"][arm]) == {"base", *align.METHODS}
    assert saved["samples"]["digits-brightness"]["vader-k1"]["held_out_reward"]["n"] == 2
    assert "flow_x" in saved["samples"]["video-flow-left"]["ddpo"]
    brightness = next(r for r in results["runs"] if r["arm"] == "digits-brightness")
    assert set(brightness["eval"]) == {"train", "held_out"}
    report = (tmp_path / "report.md").read_text()
    assert "DDPO queries ÷ VADER K=1's" in report and "Held-out labels" in report
    assert align.report(saved) == report  # results.json alone renders the report
    assert len(json.loads((tmp_path / "records.json").read_text())["runs"]) == 3 * 3 * 2
    assert (tmp_path / "curves.png").is_file()
    assert (tmp_path / "runs" / "video-flow-left" / "ddpo-s0" / "samples.gif").is_file()
    (tmp_path / "report.md").unlink()
    again = align.run(tmp_path, TOY, workers=1)  # every stage is cached
    assert again["runs"] == results["runs"] and (tmp_path / "report.md").is_file()


def test_queries_to_reach_uses_the_smoothed_curve():
    log = [{"queries": 2 * (i + 1), "reward": value} for i, value in enumerate([0.0, 1.0, 0.0, 1.0, 1.0, 1.0])]
    assert align.queries_to_reach(log, 0.6) == 10  # the 5-update trailing mean first reaches 0.6 at update 5
    assert align.queries_to_reach(log, 0.4) == 10  # update 2's mean of 0.5 does not count: its window is not full
    assert align.queries_to_reach(log, 2.0) is None


def test_committed_results_render_and_skip_arms_where_ddpo_did_not_improve():
    from genlab.experiments.reporting import load_results

    results = load_results("align")
    report = align.report(results)
    assert "| digits-brightness | 0.720 ± 0.080 | 0.410 ± 0.080 | 2400 | 11.000 ± 1.600× |" in report
    assert "| video-temporal | -0.650 ± 0.180 | -0.620 ± 0.180 | 2400 | n/a | n/a | n/a | n/a |" in report
    assert "| vader-k1 | 0.861 ± 0.012 | 0.839 ± 0.013 |" in report  # held-out labels


def test_demo_part_writes_its_report_section(tmp_path, monkeypatch):
    from genlab import demo

    monkeypatch.setitem(align.PRESETS, "quick", TOY)
    report = demo.run_demo(tmp_path, only="align").read_text()
    assert "VADER reward gradients vs DDPO" in report and "curves.png" in report
