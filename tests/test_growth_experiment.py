"""Growth helpers (timing law, FLOPs, corpus), the testbed's bookkeeping, a tiny testbed run, and `genlab grow`."""

import json
import math
from dataclasses import replace

import pytest
import torch
from transformers import AutoModelForCausalLM, BertConfig, BertModel, LlamaConfig, LlamaForCausalLM

from genlab.errors import GenlabError
from genlab.experiments import growth as experiment
from genlab.growth.corpus import ByteCorpus
from genlab.growth.lm import LMSchedule
from genlab.growth.timing import matmul_parameters, recommended_growth_tokens, training_flops_per_token


def test_growth_timing_law_matches_the_papers_formula():
    n, c = 3e9, 6 * 3e9 * 300e9
    expected = 10 ** (0.88 * math.log10(n) + 163.27 / math.log10(c) - 5.74)
    assert recommended_growth_tokens(n, c) == pytest.approx(expected)
    assert recommended_growth_tokens(7e9, c) > recommended_growth_tokens(n, c)  # bigger model: grow later
    with pytest.raises(GenlabError):
        recommended_growth_tokens(0, c)


def test_flops_count_every_matmul_and_the_attention():
    config = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=172, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    per_layer = 64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 172
    assert matmul_parameters(config) == 2 * per_layer + 256 * 64
    assert training_flops_per_token(config, 128) == 3 * (2 * (2 * per_layer + 256 * 64) + 2 * 2 * 128 * 64)
    deeper = LlamaConfig(**{**config.to_dict(), "num_hidden_layers": 8})
    assert matmul_parameters(deeper) - matmul_parameters(config) == 6 * per_layer


def test_corpus_is_deterministic_and_holds_out_validation_text():
    docs = tuple(f"document number {i} " * 5 for i in range(40))
    corpus = ByteCorpus(docs)
    assert b"document number 0 " in bytes(corpus.valid[:40].tolist())
    assert b"number 1 " not in bytes(corpus.valid.tolist())  # doc 1 is a training document
    first = corpus.batch(4, 16, torch.Generator().manual_seed(0))
    again = corpus.batch(4, 16, torch.Generator().manual_seed(0))
    assert first.shape == (4, 17) and first.dtype == torch.long and torch.equal(first, again)


def test_reach_point_interpolates_and_speedup_uses_the_papers_definitions():
    curve = [{"tokens": 0, "flops": 0, "val_loss": 4.0}, {"tokens": 100, "flops": 10, "val_loss": 3.0},
             {"tokens": 200, "flops": 20, "val_loss": 2.0}]
    assert experiment.reach_point(curve, 2.5, "tokens") == pytest.approx(150)
    assert experiment.reach_point(curve, 1.0, "tokens") is None
    scratch = {"curve": [{"tokens": 0, "flops": 0, "val_loss": 4.0}, {"tokens": 300, "flops": 30, "val_loss": 2.5}]}
    result = experiment.speedup({"curve": curve}, scratch)
    assert result["saved_tokens"] == pytest.approx(0.5)  # 150 of 300 tokens
    assert result["speedup_tokens"] == pytest.approx(1.0)  # 300 / 150 - 1
    assert result["saved_flops"] == pytest.approx(0.5)


def test_operator_batches_are_different_windows():
    batches = experiment.operator_batches(ByteCorpus(tuple(f"doc {i} " * 30 for i in range(30))),
                                          LMSchedule(batch_size=2, seq_len=16), steps=5, seed=0)
    assert len(batches) == 5 and len({tuple(b.flatten().tolist()) for b in batches}) == 5


TINY = replace(experiment.PRESETS["quick"], layers=2, hidden=32, heads=2, intermediate=64, steps=12, small_steps=4,
               operators=("direct", "learn", "random"), directions=("depth", "width"), depth_factor=2,
               sweep_small_steps=(2,), sweep_factors=(), learn_steps=2, ramp_steps=3, long_steps=16,
               schedule=LMSchedule(batch_size=4, seq_len=32, warmup_steps=1, eval_every=4, eval_batches=1))


@pytest.fixture(scope="module")
def tiny_testbed(tmp_path_factory):
    out = tmp_path_factory.mktemp("growth")
    return out, experiment.run(out, TINY, workers=1)


def test_testbed_writes_curves_report_and_counts_the_small_models_tokens(tiny_testbed):
    out, results = tiny_testbed
    assert (out / "curves.png").stat().st_size > 0 and (out / "results.json").exists()
    report = (out / "report.md").read_text()
    assert "G_direct (G_stack)" in report and "width ×2" in report and "Growth timing" in report
    assert "G_direct (G_stack) + split noise 0.1" in report and "A longer budget" in report
    assert (out / "curves_long.png").stat().st_size > 0
    record = json.loads((out / "runs" / "direct-depth-g2-d4-s0.json").read_text())
    tokens_per_step = 4 * 32
    assert record["curve"][0]["tokens"] == 4 * tokens_per_step  # continues after the small model
    assert record["curve"][-1]["tokens"] == (4 + 12) * tokens_per_step
    learn = json.loads((out / "runs" / "learn-depth-g2-d4-s0.json").read_text())
    assert learn["curve"][0]["tokens"] == (4 + 2) * tokens_per_step  # operator training is counted too
    assert set(results["per_job"]) == {job.name for job in experiment.jobs(TINY) if job.operator}


def test_testbed_reuses_finished_runs(tiny_testbed):
    out, results = tiny_testbed
    again = experiment.run(out, TINY, workers=1)
    assert again["per_job"] == results["per_job"]


def test_grown_small_model_beats_scratch_at_equal_large_model_steps(tiny_testbed):
    """The effect behind the paper's claim, at toy scale: stacking keeps what the small model learned."""
    out, _ = tiny_testbed
    scratch = json.loads((out / "runs" / "scratch-s0.json").read_text())["curve"]
    record = json.loads((out / "runs" / "direct-depth-g2-d4-s0.json").read_text())
    small_loss, stacked = record["small_curve"][-1]["val_loss"], record["curve"]
    assert small_loss < scratch[0]["val_loss"] - 0.3
    assert stacked[0]["val_loss"] < small_loss + 0.1
    assert stacked[-1]["val_loss"] < scratch[-1]["val_loss"]


@pytest.fixture(scope="module")
def saved_llama(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llama")
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=4)).save_pretrained(folder)
    return folder


@pytest.mark.parametrize(("operator", "direction", "factor", "layers", "hidden"),
                         [("stack", "depth", "4", 8, 32), ("zero", "width", "2", 2, 64), ("stack", "width", "2", 2, 64),
                          ("learn", "depth", "2", 4, 32)])
def test_grow_command_writes_a_loadable_grown_model(run_cli, saved_llama, tmp_path, operator, direction, factor,
                                                    layers, hidden):
    out = tmp_path / "grown"
    code, stdout, err = run_cli("grow", "--model", str(saved_llama), "--operator", operator, "--direction",
                                direction, "--factor", factor, "--learn-steps", "2", "--split-noise", "0.1",
                                "--out", str(out))
    assert code == 0, err
    assert "saved to" in stdout
    grown = AutoModelForCausalLM.from_pretrained(out)
    assert grown.config.num_hidden_layers == layers and grown.config.hidden_size == hidden


def test_grow_command_saves_the_random_ramp(run_cli, saved_llama, tmp_path):
    code, _, err = run_cli("grow", "--model", str(saved_llama), "--operator", "random", "--factor", "2",
                           "--out", str(tmp_path))
    assert code == 0, err
    assert (tmp_path / "growth_ramp.json").exists() and (tmp_path / "growth_ramp_masks.safetensors").exists()


def test_grow_command_rejects_bad_input(run_cli, saved_llama, tmp_path):
    code, _, err = run_cli("grow", "--model", str(tmp_path), "--out", str(tmp_path / "x"))
    assert code == 2 and "not a Hugging Face model folder" in err
    bert = tmp_path / "bert"
    BertModel(BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(bert)
    code, _, err = run_cli("grow", "--model", str(bert), "--out", str(tmp_path / "y"))
    assert code == 2 and "growth supports" in err
    code, _, err = run_cli("grow", "--model", str(saved_llama), "--factor", "0.5", "--out", str(tmp_path / "z"))
    assert code == 2 and "'--factor': must be > 1" in err
    code, _, err = run_cli("grow", "--model", str(saved_llama), "--direction", "width", "--operator", "zero",
                           "--factor", "1.1", "--out", str(tmp_path / "w"))
    assert code == 2 and "not divisible" in err


def test_demo_part_writes_its_report_section(tmp_path, monkeypatch):
    from genlab import demo

    monkeypatch.setitem(experiment.PRESETS, "demo", replace(TINY, directions=("depth",), sweep_small_steps=(),
                                                            long_steps=0))
    report = demo.run_demo(tmp_path, only="growth").read_text()
    assert "Model growth: G_stack and the other operators" in report
    assert 'src="growth/curves.png"' in report and "G_learn" in report
