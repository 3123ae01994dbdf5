"""Growth operators on tiny LLaMA and GPT-2 causal LMs: function preservation, copies, round trips."""

import warnings

import pytest
import torch
from transformers import (
    BertConfig,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
)

from genlab.errors import GenlabError
from genlab.growth import GrowthRamp, grow
from genlab.growth.architectures import architecture_of

VOCAB = 61


def perturbed(model):
    """Non-trivial norms and biases, so a wrong scale or a dropped bias shows in the logits."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 1:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return model.eval()


def tiny_llama(**overrides):
    torch.manual_seed(0)
    config = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, attention_bias=True, mlp_bias=True,
                  max_position_embeddings=64)
    return perturbed(LlamaForCausalLM(LlamaConfig(**{**config, **overrides})))


def tiny_gpt2(**overrides):
    torch.manual_seed(0)
    config = dict(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=0, eos_token_id=0)
    return perturbed(GPT2LMHeadModel(GPT2Config(**{**config, **overrides})))


MODELS = {"llama": tiny_llama, "gpt2": tiny_gpt2}


@pytest.fixture(scope="module")
def token_ids():
    return torch.randint(0, VOCAB, (3, 20), generator=torch.Generator().manual_seed(2))


def logits(model, ids):
    with torch.no_grad():
        return model.eval()(ids).logits


def grown_model(source, operator, direction, factor, ids, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return grow(source, operator, direction, factor, learn_batches=[ids], learn_steps=0, **kwargs)


PRESERVING = [("llama", "zero", "depth", 2), ("gpt2", "zero", "depth", 3), ("llama", "zero", "width", 2),
              ("llama", "zero", "width", 1.5), ("llama", "direct", "width", 2), ("gpt2", "direct", "width", 2),
              ("llama", "direct", "width", 3), ("llama", "learn", "width", 2), ("gpt2", "learn", "width", 2),
              ("llama", "random", "depth", 2), ("llama", "random", "width", 2), ("gpt2", "random", "depth", 2)]


@pytest.mark.parametrize(("arch", "operator", "direction", "factor"), PRESERVING)
def test_function_preserving_operators_keep_the_logits(arch, operator, direction, factor, token_ids):
    source = MODELS[arch]()
    grown = grown_model(source, operator, direction, factor, token_ids)
    error = (logits(grown.model, token_ids) - logits(source, token_ids)).abs().max().item()
    assert error <= 1e-4
    bigger = sum(p.numel() for p in grown.model.parameters()) > sum(p.numel() for p in source.parameters())
    assert bigger


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("operator", ["direct", "learn"])
def test_split_noise_breaks_the_copies_symmetry_and_keeps_the_function(arch, operator, token_ids):
    source = MODELS[arch](tie_word_embeddings=False)  # the input embedding's gradient is then the input side only

    def copy_gradient_gap(noise):
        model = grown_model(source, operator, "width", 2, token_ids, split_noise=noise).model.eval()
        model(token_ids, labels=token_ids).loss.backward()
        gradient = model.get_input_embeddings().weight.grad  # (vocab, 2 × hidden): two copies side by side
        gap = (gradient[:, :32] - gradient[:, 32:]).abs().max() / gradient.abs().max()
        return model, gap.item()

    exact_copies, gap = copy_gradient_gap(0.0)
    assert gap == 0.0  # identical copies get identical updates: the wide model trains like the narrow one
    noisy, gap = copy_gradient_gap(0.1)
    assert gap > 0.01
    assert (logits(noisy, token_ids) - logits(source, token_ids)).abs().max() <= 1e-4


def test_random_growth_ramps_in_new_parts_and_ends_as_an_ordinary_model(token_ids, tmp_path):
    source = tiny_llama()
    grown = grow(source, "random", "width", 2, ramp_steps=4)
    assert grown.ramp is not None and grown.ramp.active
    before = logits(grown.model, token_ids)
    grown.ramp.save(tmp_path)
    for _ in range(3):
        grown.ramp.step()
    assert grown.ramp.active and float(grown.ramp.level) == 0.75
    assert grown.ramp.step() == 1.0 and not grown.ramp.active
    after = logits(grown.model, token_ids)
    assert (after - before).abs().max() > 1e-3  # the random parts are now fully in
    assert not any("parametrizations" in name for name, _ in grown.model.named_parameters())
    # A saved ramp re-attaches at its saved progress (0 of 4): the new parts are masked again.
    reloaded = GrowthRamp.load(grown.model, tmp_path)
    assert reloaded.active and torch.allclose(logits(grown.model, token_ids), before, atol=1e-5)


def test_random_growth_keeps_gpt2_embeddings_tied(token_ids):
    grown = grow(tiny_gpt2(), "random", "width", 2, ramp_steps=1)
    grown.ramp.step()
    model = grown.model
    assert model.lm_head.weight is model.transformer.wte.weight


@pytest.mark.parametrize("order", ["repeat", "interleave"])
@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_stack_depth_copies_every_source_tensor_to_its_places(arch, order):
    source = MODELS[arch](n_layer=3) if arch == "gpt2" else MODELS[arch](num_hidden_layers=3)
    spec = architecture_of(source)
    grown = grow(source, "stack", "depth", 4, order=order).model
    expected_sources = [i % 3 for i in range(12)] if order == "repeat" else [i // 4 for i in range(12)]
    source_tensors = source.state_dict()
    for name, tensor in grown.state_dict().items():
        layer, inner = spec.split_layer_name(name)
        origin = name if layer is None else spec.layer_name(expected_sources[layer], inner)
        assert torch.equal(tensor, source_tensors[origin]), name
    assert spec.num_layers(grown.config) == 12


def test_learned_operators_lower_the_loss_they_train_on(token_ids):
    source = tiny_llama()
    for direction in ("depth", "width"):
        start = grow(source, "learn", direction, 2, learn_batches=[token_ids], learn_steps=0).model
        trained = grow(source, "learn", direction, 2, learn_batches=[token_ids], learn_steps=15, learn_lr=1e-2).model
        with torch.no_grad():
            before = start(token_ids, labels=token_ids).loss.item()
            after = trained(token_ids, labels=token_ids).loss.item()
        assert after < before - 0.01, direction
    # G_learn at initialisation is G_stack.
    learned_at_start = grow(source, "learn", "depth", 2, learn_batches=[token_ids], learn_steps=0).model
    stacked = grow(source, "stack", "depth", 2).model
    assert torch.allclose(logits(learned_at_start, token_ids), logits(stacked, token_ids), atol=1e-5)


def test_zero_width_on_layernorm_models_warns_that_it_is_approximate():
    with pytest.warns(UserWarning, match="LayerNorm"):
        grow(tiny_gpt2(), "zero", "width", 2)


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(operator="stack", direction="depth", factor=0.5), r"factor \(--factor\) must be a number >= 1"),
    (dict(operator="stack", direction="depth", factor=2.5), "whole-number"),
    (dict(operator="direct", direction="width", factor=1.5), "whole-number"),
    (dict(operator="zero", direction="width", factor=1.1), "not divisible by the head dimension"),
    (dict(operator="bigger", direction="depth", factor=2), "unknown growth operator"),
    (dict(operator="stack", direction="sideways", factor=2), "direction must be one of"),
    (dict(operator="learn", direction="depth", factor=2), "learn_batches"),
    (dict(operator="stack", direction="depth", factor=2, order="shuffled"), "stacking order"),
])
def test_bad_growth_requests_raise_clear_errors(kwargs, message):
    with pytest.raises(GenlabError, match=message):
        grow(tiny_llama(), **kwargs)


def test_unsupported_architectures_are_named():
    model = BertModel(BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=32))
    with pytest.raises(GenlabError, match="growth supports"):
        grow(model, "stack", "depth", 2)
    with pytest.raises(GenlabError, match="not divisible by the head count"):
        architecture_of(GPT2Config(n_embd=30, n_head=4))
