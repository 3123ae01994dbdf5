"""Guided sampling is reproducible from the seed alone; bad guidance settings and CFG without dropout are flagged."""

import math

import pytest
import torch
from torch import nn

from genlab.base.image_model import balanced_labels, generate_images, save_image_model
from genlab.base.info import ImageModelInfo
from genlab.core.denoiser import EDMDenoiser
from genlab.core.nets import ImageUNet
from genlab.errors import GenlabError
from genlab.guidance import (
    GuidanceTerm,
    cfg_warning,
    gaussian_embedding,
    guide_class_model,
    parse_guidance,
    perturbed_time_embedding,
    random_class,
    random_tokens,
    time_embedding_modules,
)
from genlab.guidance.guiders import ICGGuidance, ICGTSGGuidance, TSGGuidance
from genlab.guidance.rng import guidance_seed

NUM_CLASSES = 10
METHODS = ("icg", "tsg", "icg+tsg")


def tiny_net(num_classes: int = NUM_CLASSES) -> ImageUNet:
    """A tiny U-Net with random (not zero-initialised) weights, so outputs depend on class and time."""
    net = ImageUNet(in_channels=1, resolution=8, num_classes=num_classes, base_channels=8, channel_mults=(1, 2),
                    num_res_blocks=1, attention_levels=(1,))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return net.eval()


@pytest.fixture(scope="module")
def denoiser():
    return EDMDenoiser(tiny_net()).eval()


def guided_images(denoiser, method: str, seed: int, churn: float = 0.0) -> torch.Tensor:
    """What `genlab sample image --guidance METHOD --seed SEED` computes: a fresh wrapper, then generate_images."""
    wrapper = guide_class_model(denoiser, NUM_CLASSES, parse_guidance(method, 2.0))
    return generate_images(denoiser, 6, balanced_labels(6, NUM_CLASSES), steps=3, churn=churn, seed=seed,
                           wrapped=wrapper)


# --- the guided wrapper through generate_images ---------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_gives_identical_guided_images_despite_global_rng_use(denoiser, method):
    torch.manual_seed(1)
    first = guided_images(denoiser, method, seed=3)
    torch.rand(1000)  # unrelated use of the global RNG in between
    torch.manual_seed(12345)
    torch.rand(7)
    second = guided_images(denoiser, method, seed=3)
    assert torch.equal(first, second)


@pytest.mark.parametrize("method", METHODS)
def test_different_seeds_give_different_guided_images(denoiser, method):
    assert not torch.allclose(guided_images(denoiser, method, seed=3), guided_images(denoiser, method, seed=4))


def test_a_reused_wrapper_is_reseeded_by_generate_images(denoiser):
    wrapper = guide_class_model(denoiser, NUM_CLASSES, parse_guidance("icg+tsg", 2.0))
    labels = balanced_labels(4, NUM_CLASSES)
    first = generate_images(denoiser, 4, labels, steps=3, churn=0.5, seed=5, wrapped=wrapper)
    torch.rand(10)
    second = generate_images(denoiser, 4, labels, steps=3, churn=0.5, seed=5, wrapped=wrapper)
    assert torch.equal(first, second)


@torch.no_grad()
@pytest.mark.parametrize("method", METHODS)
def test_guidance_draws_follow_the_wrapper_seed_not_the_global_rng(denoiser, method):
    """Same inputs: the same guidance seed gives the same output, another seed another one."""
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    sigma, labels = torch.full((4,), 2.0), torch.tensor([0, 3, 5, 9])
    wrapper = guide_class_model(denoiser, NUM_CLASSES, parse_guidance(method, 2.0))
    first = wrapper.manual_seed(7)(x, sigma, class_labels=labels)
    torch.rand(100)
    again = wrapper.manual_seed(7)(x, sigma, class_labels=labels)
    other = wrapper.manual_seed(8)(x, sigma, class_labels=labels)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)
    fresh = guide_class_model(denoiser, NUM_CLASSES, parse_guidance(method, 2.0), seed=7)
    assert torch.equal(fresh(x, sigma, class_labels=labels), first)


def test_the_guidance_seed_differs_from_the_noise_seed():
    assert {guidance_seed(seed) for seed in range(100)}.isdisjoint(range(100))
    assert len({guidance_seed(seed) for seed in range(1000)}) == 1000
    assert all(0 <= guidance_seed(seed) < 2**64 for seed in (0, 1, 2**62))


# --- the makers and the TSG hook ----------------------------------------------------------------


def test_makers_draw_from_the_generator_they_are_given():
    labels, embedding = torch.tensor([1, 2, 3]), torch.randn(3, 4, 8)
    encode = lambda ids: ids[..., None].float().expand(*ids.shape, 8)  # noqa: E731
    for make, condition in ((random_class(NUM_CLASSES), labels), (gaussian_embedding(), embedding),
                            (random_tokens(encode, 20, 4, special_ids=(0, 1)), embedding)):
        first = make(condition, generator=torch.Generator().manual_seed(1))
        torch.rand(10)
        second = make(condition, generator=torch.Generator().manual_seed(1))
        assert torch.equal(first, second)
        assert first.dtype == condition.dtype
        assert not torch.equal(first, make(condition, generator=torch.Generator().manual_seed(2)))


def test_tsg_noise_comes_from_the_generator():
    module = nn.Linear(4, 16)
    x = torch.randn(3, 4)

    def perturbed(seed: int) -> torch.Tensor:
        with torch.no_grad(), perturbed_time_embedding([module], slice(1, 3), torch.ones(2),
                                                       torch.Generator().manual_seed(seed)):
            return module(x)

    first = perturbed(0)
    torch.rand(10)
    assert torch.equal(first, perturbed(0))
    assert not torch.equal(first, perturbed(1))
    assert torch.equal(first[0], module(x)[0].detach()), "rows outside the TSG branch stay as they are"


# --- the diffusers guiders ----------------------------------------------------------------------


def icg_draws(guider, condition: torch.Tensor, steps: int = 2) -> list[torch.Tensor]:
    """The independent condition of each step of one run (``set_state`` from step 0)."""
    draws = []
    for step in range(steps):
        guider.set_state(step=step, num_inference_steps=steps, timestep=torch.tensor(900 - 400 * step))
        draws.append(guider.prepare_inputs({"prompt_embeds": (condition, None)})[1].prompt_embeds)
    return draws


@pytest.mark.parametrize("guider_class", [ICGGuidance, ICGTSGGuidance])
def test_icg_guiders_repeat_their_draws_run_to_run(guider_class):
    condition = torch.randn(2, 4, 8, generator=torch.Generator().manual_seed(0))
    guider = guider_class()
    first = icg_draws(guider, condition)
    torch.rand(10)
    second = icg_draws(guider, condition)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not torch.equal(first[0], first[1]), "fresh draws at every step"
    assert torch.equal(icg_draws(guider_class(), condition)[0], first[0]), "a new guider draws alike"
    other = guider.new(seed=3)
    assert other.config.seed == 3 and not torch.equal(icg_draws(other, condition)[0], first[0])


def test_guider_passes_its_generator_to_a_class_maker():
    labels = torch.arange(8) % NUM_CLASSES
    guider = ICGGuidance(condition_fields=("class_labels",), independent_condition=random_class(NUM_CLASSES))

    def draw():
        guider.set_state(step=0, num_inference_steps=2, timestep=torch.tensor(900))
        return guider.prepare_inputs({"class_labels": labels})[1].class_labels

    first = draw()
    torch.rand(10)
    assert torch.equal(first, draw())


@torch.no_grad()
@pytest.mark.parametrize("guider_class", [TSGGuidance, ICGTSGGuidance])
def test_tsg_guiders_repeat_their_noise_run_to_run(denoiser, guider_class):
    """The guidance batch's prediction (noisy time embedding) is the same in every run with the same seed."""
    x, sigma, labels = torch.randn(2, 1, 8, 8), torch.full((2,), 2.0), torch.tensor([1, 2])

    def perturbed_prediction(guider) -> torch.Tensor:
        guider.set_state(step=0, num_inference_steps=2, timestep=torch.tensor(900))
        batches = guider.prepare_inputs({"class_labels": labels})
        outputs = []
        for batch in batches:
            guider.prepare_models(denoiser)
            outputs.append(denoiser(x, sigma, class_labels=batch.class_labels))
            guider.cleanup_models(denoiser)
        return outputs[-1]

    kwargs = {"noise_scale": 2.0} | ({"condition_fields": ()} if guider_class is ICGTSGGuidance else {})
    guider = guider_class(**kwargs)
    first = perturbed_prediction(guider)
    torch.rand(10)
    assert torch.equal(first, perturbed_prediction(guider))
    assert not torch.equal(first, perturbed_prediction(guider_class(seed=1, **kwargs)))
    assert not time_embedding_modules(denoiser)[0]._forward_hooks


def test_guider_seed_is_saved_and_checked(tmp_path):
    TSGGuidance(seed=9).save_pretrained(tmp_path)
    assert TSGGuidance.from_pretrained(tmp_path).seed == 9
    with pytest.raises(GenlabError, match="seed must be an integer >= 0"):
        ICGGuidance(seed=-1)


# --- parse_guidance's checks --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"interval": (5.0, 9.0)}, "0 <= t_min <= t_max <= 1"),
        ({"interval": (0.8, 0.2)}, "0 <= t_min <= t_max <= 1"),
        ({"interval": (-0.1, 0.5)}, "0 <= t_min <= t_max <= 1"),
        ({"interval": (0.0, math.nan)}, "0 <= t_min <= t_max <= 1"),
        ({"interval": (0.0, 1.5)}, "--guidance-t-max"),
        ({"scale": math.nan}, "scale must be a finite number >= 0"),
        ({"scale": math.inf}, "scale must be a finite number >= 0"),
        ({"scale": -1.0}, "scale must be a finite number >= 0"),
        ({"tsg_noise": -1.0}, "--tsg-noise"),
        ({"tsg_noise": math.inf}, "--tsg-noise"),
        ({"tsg_alpha": -0.5}, "--tsg-alpha"),
        ({"tsg_noise": 0.0}, "TSG would not perturb anything"),
    ],
)
def test_parse_guidance_refuses_settings_that_never_guide(kwargs, message):
    arguments = {"name": "icg+tsg", "scale": 2.0, **kwargs}
    with pytest.raises(GenlabError, match=message.replace("[", r"\[").replace("+", r"\+")):
        parse_guidance(**arguments)


def test_parse_guidance_accepts_the_edges_of_its_ranges():
    terms = parse_guidance("icg+tsg", 0.5, tsg_noise=0.5, tsg_alpha=0.0, interval=(0.0, 0.0))
    assert [term.method for term in terms] == ["icg", "tsg"]
    assert terms[0] == GuidanceTerm("icg", 0.5, (0.0, 0.0), noise_scale=0.5, noise_exponent=0.0)
    assert parse_guidance("icg", 1.0, interval=(1.0, 1.0))[0].interval == (1.0, 1.0)
    assert parse_guidance("icg", 2.0, tsg_noise=0.0)  # s = 0 matters only for TSG
    assert parse_guidance("none", 1.5) == []


# --- CFG on a model without label dropout -------------------------------------------------------


def model_info(num_classes: int, label_dropout: float | None = None) -> ImageModelInfo:
    return ImageModelInfo("digits", "ImageUNet", label_dropout=label_dropout, num_classes=num_classes)


def test_cfg_warning_for_models_without_label_dropout():
    warning = cfg_warning("cfg", model_info(10, 0.0))
    assert warning.startswith("genlab: warning:") and "\n" not in warning and "label dropout is 0" in warning
    assert "unknown" in cfg_warning("cfg", model_info(10))
    assert cfg_warning("cfg", model_info(10, 0.1)) is None
    for guidance in ("none", "icg", "tsg", "icg+tsg"):
        assert cfg_warning(guidance, model_info(10, 0.0)) is None
    assert cfg_warning("cfg", model_info(0)) is None  # refused elsewhere: needs a conditional model


# --- the command line ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A tiny class-conditional model saved as `genlab train image` does, without label dropout."""
    folder = tmp_path_factory.mktemp("seeded") / "model"
    save_image_model(EDMDenoiser(tiny_net()), folder, data="digits", label_dropout=0.0)
    return folder


def test_cli_guided_sample_is_byte_identical_for_the_same_seed(run_cli, saved_model, tmp_path):
    pngs = {}
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        torch.rand(100)  # the global RNG moves on between runs
        out = tmp_path / f"{name}.png"
        code, _, err = run_cli("sample", "image", "--model", str(saved_model), "--guidance", "icg", "--seed", seed,
                               "--num", "10", "--sampling-steps", "3", "--out", str(out))
        assert code == 0, err
        pngs[name] = out.read_bytes()
    assert pngs["a"] == pngs["b"]
    assert pngs["a"] != pngs["c"]


def test_cli_warns_once_about_cfg_without_label_dropout(run_cli, saved_model, tmp_path):
    """Needs the CLI hook: ``SamplingConfig.guided`` echoing :func:`cfg_warning` to stderr."""
    code, _, err = run_cli("sample", "image", "--model", str(saved_model), "--guidance", "cfg", "--num", "10",
                           "--sampling-steps", "2", "--out", str(tmp_path / "cfg.png"))
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("genlab: warning:")]
    assert len(warnings) == 1 and "label dropout is 0" in warnings[0]
    code, _, err = run_cli("sample", "image", "--model", str(saved_model), "--guidance", "icg", "--num", "10",
                           "--sampling-steps", "2", "--out", str(tmp_path / "icg.png"))
    assert code == 0 and "genlab: warning:" not in err
