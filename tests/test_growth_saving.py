"""Saving grown models: every operator and direction reloads with the logits it had in memory, and a
G_random model saved mid-ramp continues its ramp after reloading as it would have in memory."""

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, LlamaForCausalLM

from genlab.errors import GenlabError
from genlab.growth import Grown, grow
from genlab.growth.ramp import MASK_FILE, RAMP_FILE, VALUES_FILE
from test_growth import MODELS, VOCAB, grown_model, logits, tiny_llama

IDS = torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(3))


def reload(folder):
    """Plain ``from_pretrained``, and every key its loading report lists as missing, unexpected or mismatched."""
    model, info = AutoModelForCausalLM.from_pretrained(folder, output_loading_info=True)
    return model, [key for kind in ("missing_keys", "unexpected_keys", "mismatched_keys") for key in info[kind]]


def gap(model, other):
    return (logits(model, IDS) - logits(other, IDS)).abs().max().item()


def train_then_ramp(grown):
    """One SGD step on the LM loss (dropout off), then one ramp step, as a training loop does them."""
    optimizer = torch.optim.SGD(grown.model.parameters(), lr=0.5)
    grown.model.eval()(IDS, labels=IDS).loss.backward()
    optimizer.step()
    grown.ramp.step()


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("operator", ["direct", "learn", "zero", "random"])
@pytest.mark.parametrize("direction", ["depth", "width"])
def test_saved_grown_models_reload_with_their_in_memory_logits(arch, operator, direction, tmp_path):
    source = MODELS[arch]()
    grown = grown_model(source, operator, direction, 2, IDS, ramp_steps=4)
    if grown.ramp is not None:
        grown.ramp.step()  # mid-ramp, m = 1/4
        assert grown.ramp.active
    grown.model.save_pretrained(tmp_path)  # the plain Hugging Face call, no ramp files
    with safe_open(tmp_path / "model.safetensors", "pt") as saved:
        assert not [key for key in saved.keys() if "parametrizations" in key]
    loaded, problems = reload(tmp_path)
    assert problems == []
    assert type(loaded) is type(source)
    assert gap(loaded, grown.model) <= 1e-6
    fresh = type(source)(loaded.config)
    assert {k: v.shape for k, v in grown.model.state_dict().items()} == {k: v.shape for k, v in fresh.state_dict().items()}


@pytest.mark.parametrize(("arch", "direction", "done"), [("llama", "depth", 0), ("llama", "width", 0),
                                                          ("llama", "depth", 2), ("llama", "width", 2),
                                                          ("gpt2", "depth", 2), ("gpt2", "width", 2)])
def test_a_reloaded_random_ramp_continues_like_the_one_in_memory(arch, direction, done, tmp_path):
    grown = grown_model(MODELS[arch](), "random", direction, 2, IDS, ramp_steps=4)
    for _ in range(done):
        grown.ramp.step()
    grown.save_pretrained(tmp_path)
    restored = Grown.from_pretrained(tmp_path)
    assert (restored.ramp.done, restored.ramp.steps) == (done, 4)
    assert gap(restored.model, grown.model) == 0.0
    while grown.ramp.active:
        train_then_ramp(grown)
        train_then_ramp(restored)
        assert gap(restored.model, grown.model) <= 1e-5
    assert not restored.ramp.active


def test_a_random_model_saved_at_ramp_step_0_computes_what_the_small_model_did(tmp_path):
    source = tiny_llama()
    grow(source, "random", "width", 2, ramp_steps=500).save_pretrained(tmp_path)
    loaded, problems = reload(tmp_path)
    assert problems == [] and gap(loaded, source) <= 1e-4


def test_a_finished_ramp_saves_an_ordinary_model_and_clears_a_stale_ramp(tmp_path):
    grown = grow(tiny_llama(), "random", "width", 2, ramp_steps=2)
    grown.save_pretrained(tmp_path)
    assert (tmp_path / RAMP_FILE).exists()
    grown.ramp.step()
    grown.ramp.step()
    grown.save_pretrained(tmp_path)
    assert not [file for file in (RAMP_FILE, MASK_FILE, VALUES_FILE) if (tmp_path / file).exists()]
    restored = Grown.from_pretrained(tmp_path)
    assert restored.ramp is None and gap(restored.model, grown.model) <= 1e-6


def test_load_state_dict_into_a_ramped_model_takes_the_effective_weights():
    grown = grow(tiny_llama(), "random", "width", 2, ramp_steps=4)
    grown.ramp.step()
    other = grow(tiny_llama(), "random", "width", 2, ramp_steps=4, seed=1)  # different new parts
    other.ramp.step()
    other.model.load_state_dict(grown.model.state_dict())
    assert gap(other.model, grown.model) <= 1e-6
    grown.ramp.step()
    other.ramp.step()
    assert gap(other.model, grown.model) <= 1e-5  # the new parts v themselves came across
    at_zero = grow(tiny_llama(), "random", "width", 2, ramp_steps=4)
    with pytest.raises(GenlabError, match="m = 0"):
        at_zero.model.load_state_dict(grown.model.state_dict())


def test_a_ramp_without_its_saved_values_is_refused(tmp_path):
    grow(tiny_llama(), "random", "depth", 2).save_pretrained(tmp_path)
    (tmp_path / VALUES_FILE).unlink()
    with pytest.raises(GenlabError, match="grow the model again"):
        Grown.from_pretrained(tmp_path)


@pytest.mark.parametrize("direction", ["depth", "width"])
def test_grow_command_random_output_reloads_with_the_grown_logits(run_cli, direction, tmp_path):
    source = tiny_llama()
    source.save_pretrained(tmp_path / "small")
    code, _, err = run_cli("grow", "--model", str(tmp_path / "small"), "--operator", "random", "--direction",
                           direction, "--factor", "2", "--ramp-steps", "3", "--out", str(tmp_path / "big"))
    assert code == 0, err
    loaded, problems = reload(tmp_path / "big")
    in_memory = grow(source, "random", direction, 2, ramp_steps=3)  # the command's default seed, 0
    assert problems == [] and gap(loaded, in_memory.model) <= 1e-6 and gap(loaded, source) <= 1e-4
    restored = Grown.from_pretrained(tmp_path / "big")
    while in_memory.ramp.active:
        train_then_ramp(in_memory)
        train_then_ramp(restored)
        assert gap(restored.model, in_memory.model) <= 1e-5


def test_readme_snippet_saves_and_reloads_a_random_grown_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    small = tiny_llama()
    grown = grow(small, "random", "depth", 4, ramp_steps=500)  # new layers blended in by grown.ramp
    grown.ramp.step()                                           # once per optimiser step
    grown.save_pretrained("big")                                # the weights as they compute now + the ramp's state
    big = LlamaForCausalLM.from_pretrained("big")               # an ordinary model with grown.model's logits
    resumed = Grown.from_pretrained("big")                      # or with the ramp re-attached, to train on

    assert gap(big, grown.model) == 0.0 and gap(resumed.model, grown.model) == 0.0
    assert resumed.ramp.done == 1 and resumed.ramp.step() == grown.ramp.step()
    assert gap(resumed.model, grown.model) == 0.0


def test_grow_command_over_a_random_output_leaves_no_stale_ramp(run_cli, tmp_path):
    tiny_llama().save_pretrained(tmp_path / "small")
    for operator in ("random", "stack"):
        code, _, err = run_cli("grow", "--model", str(tmp_path / "small"), "--operator", operator, "--factor", "2",
                               "--out", str(tmp_path / "big"), "--overwrite")
        assert code == 0, err
    assert not [file for file in (RAMP_FILE, MASK_FILE, VALUES_FILE) if (tmp_path / "big" / file).exists()]
    assert Grown.from_pretrained(tmp_path / "big").ramp is None
