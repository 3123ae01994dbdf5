"""Guided sampling of tiny random diffusers pipelines, and the ICG / TSG diffusers guiders.

The pipelines (a Stable Diffusion one with a CLIP tokenizer built from a tiny local vocabulary,
and a DiT one) are saved with ``save_pretrained`` and reloaded with ``from_pretrained``, as real
checkpoints would be. The guiders are driven through diffusers' guider protocol by hand.
"""

import json
import math

import pytest
import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DiTPipeline,
    DiTTransformer2DModel,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from diffusers.modular_pipelines.modular_pipeline import BlockState
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from genlab.core.denoiser import DiffusersDenoiser
from genlab.core.edm import karras_sigmas, sample
from genlab.errors import GenlabError
from genlab.guidance import GuidanceTerm, random_class, time_embedding_modules
from genlab.guidance.guiders import ICGGuidance, TSGGuidance
from genlab.guidance.pipelines import guided_pipeline_sample

NUM_CLASSES = 10
STEPS = 2


def tiny_vae() -> AutoencoderKL:
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8),
                         layers_per_block=1, down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=4, sample_size=16)


def tiny_scheduler() -> DDIMScheduler:
    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                         set_alpha_to_one=False, steps_offset=1)


def tiny_tokenizer(folder) -> CLIPTokenizer:
    """A CLIP BPE tokenizer over single letters (no merges), built offline."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    tokens = ["<|startoftext|>", "<|endoftext|>", *letters, *(f"{c}</w>" for c in letters)]
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=8)


@pytest.fixture(scope="module")
def sd_pipeline(tmp_path_factory) -> StableDiffusionPipeline:
    folder = tmp_path_factory.mktemp("sd")
    torch.manual_seed(0)
    tokenizer = tiny_tokenizer(folder)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=8, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, attention_head_dim=2, norm_num_groups=4)
    pipeline = StableDiffusionPipeline(vae=tiny_vae(), text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                       scheduler=tiny_scheduler(), safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    pipeline.save_pretrained(folder / "pipeline")
    return StableDiffusionPipeline.from_pretrained(folder / "pipeline")


@pytest.fixture(scope="module")
def dit_pipeline(tmp_path_factory) -> DiTPipeline:
    folder = tmp_path_factory.mktemp("dit")
    torch.manual_seed(0)
    transformer = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                                        num_layers=2, sample_size=4, patch_size=2, num_embeds_ada_norm=NUM_CLASSES)
    DiTPipeline(transformer=transformer, vae=tiny_vae(), scheduler=tiny_scheduler()).save_pretrained(folder)
    return DiTPipeline.from_pretrained(folder)


def run(pipeline, terms, seed: int = 0, **kwargs) -> torch.Tensor:
    """Guided latents with the conditioning argument that fits the pipeline, fixed seeds."""
    torch.manual_seed(seed)
    condition = {"class_labels": [1, 7]} if isinstance(pipeline, DiTPipeline) else {"prompt": ["a cat", "dog"]}
    arguments = {"steps": STEPS, "output_type": "latent", "generator": torch.Generator().manual_seed(seed)}
    return guided_pipeline_sample(pipeline, terms, **{**condition, **arguments, **kwargs})


def model_of(pipeline) -> torch.nn.Module:
    return pipeline.transformer if isinstance(pipeline, DiTPipeline) else pipeline.unet


def model_output(pipeline) -> torch.Tensor:
    """One raw network call on fixed inputs."""
    generator = torch.Generator().manual_seed(3)
    if isinstance(pipeline, DiTPipeline):
        x = torch.randn(2, 4, 4, 4, generator=generator)
        return pipeline.transformer(x, torch.tensor([500, 500]), class_labels=torch.tensor([1, 2])).sample
    x = torch.randn(2, 4, 8, 8, generator=generator)
    embedding = torch.randn(2, 8, 16, generator=generator)
    return pipeline.unet(x, torch.tensor([500, 500]), encoder_hidden_states=embedding).sample


TERM_SETS = {
    "none": [],
    "cfg": [GuidanceTerm("cfg", 3.0)],
    "icg": [GuidanceTerm("icg", 3.0)],
    "tsg": [GuidanceTerm("tsg", 3.0, noise_scale=2.0)],
    "icg+tsg": [GuidanceTerm("icg", 2.0), GuidanceTerm("tsg", 2.0, noise_scale=2.0, noise_exponent=1.0)],
}


# --- guided_pipeline_sample ----------------------------------------------------------------------


@pytest.mark.parametrize("name", TERM_SETS)
@pytest.mark.parametrize("which", ["sd", "dit"])
def test_every_method_samples_finite_latents(request, which, name):
    pipeline = request.getfixturevalue(f"{which}_pipeline")
    latents = run(pipeline, TERM_SETS[name], num_images=2, sampler="euler" if name == "none" else "heun")
    side = 8 if which == "sd" else 4
    assert latents.shape == (4, 4, side, side)
    assert torch.isfinite(latents).all()


@pytest.mark.parametrize("which", ["sd", "dit"])
def test_guided_latents_repeat_with_the_generator_whatever_the_global_rng(request, which):
    pipeline = request.getfixturevalue(f"{which}_pipeline")
    condition = {"class_labels": [1, 7]} if which == "dit" else {"prompt": ["a cat", "dog"]}

    def latents(seed: int) -> torch.Tensor:
        return guided_pipeline_sample(pipeline, TERM_SETS["icg+tsg"], steps=STEPS, output_type="latent",
                                      generator=torch.Generator().manual_seed(seed), **condition)

    torch.manual_seed(1)
    first = latents(0)
    torch.manual_seed(2)
    torch.rand(10)
    assert torch.equal(first, latents(0))
    assert not torch.allclose(first, latents(1))


@pytest.mark.parametrize("which", ["sd", "dit"])
def test_images_are_decoded_in_range(request, which):
    pipeline = request.getfixturevalue(f"{which}_pipeline")
    images = run(pipeline, TERM_SETS["icg+tsg"], output_type="pt")
    side = 16 if which == "sd" else 8
    assert images.shape == (2, 3, side, side)
    assert images.min() >= -1 and images.max() <= 1


def test_gaussian_icg_condition_samples(sd_pipeline):
    latents = run(sd_pipeline, TERM_SETS["icg"], icg_condition="gaussian")
    assert torch.isfinite(latents).all()
    assert not torch.allclose(latents, run(sd_pipeline, TERM_SETS["icg"]))


def test_plain_sd_sampling_matches_diffusers_prompt_encoding(sd_pipeline):
    embeddings, _ = sd_pipeline.encode_prompt(["a cat", "dog"], "cpu", 1, False)
    denoiser = DiffusersDenoiser(sd_pipeline.unet, sd_pipeline.scheduler)
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    sigmas = karras_sigmas(STEPS, denoiser.sigma_min, denoiser.sigma_max)
    with torch.no_grad():
        expected = sample(denoiser, noise, sigmas, encoder_hidden_states=embeddings)
    torch.testing.assert_close(run(sd_pipeline, []), expected)


@pytest.mark.parametrize("which", ["sd", "dit"])
def test_icg_scale_one_is_the_conditional_model(request, which):
    pipeline = request.getfixturevalue(f"{which}_pipeline")
    assert torch.equal(run(pipeline, [GuidanceTerm("icg", 1.0)]), run(pipeline, []))


@pytest.mark.parametrize("which", ["sd", "dit"])
def test_tsg_without_noise_is_the_conditional_model(request, which):
    pipeline = request.getfixturevalue(f"{which}_pipeline")
    plain = run(pipeline, [])
    torch.testing.assert_close(run(pipeline, [GuidanceTerm("tsg", 3.0, noise_scale=0.0)]), plain,
                               atol=1e-4, rtol=1e-4)
    assert not torch.allclose(run(pipeline, TERM_SETS["tsg"]), plain, atol=1e-4)


def test_sd_cfg_scale_zero_is_the_negative_prompt_model(sd_pipeline):
    guided = run(sd_pipeline, [GuidanceTerm("cfg", 0.0)], negative_prompt=["xyz", "q"], num_images=2)
    unconditional = run(sd_pipeline, [], prompt=["xyz", "q"], num_images=2)
    torch.testing.assert_close(guided, unconditional, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(guided, run(sd_pipeline, [], num_images=2), atol=1e-4)


def test_dit_cfg_scale_zero_is_the_null_class_model(dit_pipeline):
    denoiser = DiffusersDenoiser(dit_pipeline.transformer, dit_pipeline.scheduler)
    noise = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    sigmas = karras_sigmas(STEPS, denoiser.sigma_min, denoiser.sigma_max)
    with torch.no_grad():
        null = sample(denoiser, noise, sigmas, class_labels=torch.full((2,), NUM_CLASSES))
    torch.testing.assert_close(run(dit_pipeline, [GuidanceTerm("cfg", 0.0)]), null, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("which", ["sd", "dit"])
def test_guided_sampling_leaves_the_model_unchanged(request, which):
    pipeline = request.getfixturevalue(f"{which}_pipeline")
    with torch.no_grad():
        before = model_output(pipeline)
        run(pipeline, TERM_SETS["icg+tsg"])
        after = model_output(pipeline)
    assert torch.equal(before, after)
    assert all(not module._forward_hooks for module in time_embedding_modules(model_of(pipeline)))


@pytest.mark.parametrize(("arguments", "message"), [
    ({"class_labels": [0, NUM_CLASSES]}, "class id 10 is out of range 0..9"),
    ({"class_labels": [-1]}, "class id -1 is out of range"),
    ({"class_labels": []}, "class_labels"),
    ({"class_labels": None}, "class_labels"),
    ({"prompt": "a cat"}, "prompt"),
    ({"height": 32}, "height"),
    ({"icg_condition": "tokens"}, "icg_condition"),
])
def test_dit_argument_errors(dit_pipeline, arguments, message):
    with pytest.raises(GenlabError, match=message):
        run(dit_pipeline, TERM_SETS["cfg"], **arguments)


@pytest.mark.parametrize(("arguments", "message"), [
    ({"prompt": None}, "needs a prompt"),
    ({"class_labels": [1]}, "class_labels"),
    ({"negative_prompt": ["a", "b", "c"]}, "negative_prompt"),
    ({"height": 15}, "height must be a positive multiple of 2"),
    ({"icg_condition": "noise"}, "icg_condition"),
    ({"num_images": 0}, "num_images"),
    ({"output_type": "pil"}, "output_type"),
    ({"sampler": "dpm"}, "sampler"),
])
def test_sd_argument_errors(sd_pipeline, arguments, message):
    with pytest.raises(GenlabError, match=message):
        run(sd_pipeline, TERM_SETS["cfg"], **arguments)


def test_unsupported_pipeline_type_is_named():
    class ImageToVideoPipeline:
        pass

    with pytest.raises(GenlabError, match="ImageToVideoPipeline is not supported.*StableDiffusionPipeline, DiTPipeline"):
        guided_pipeline_sample(ImageToVideoPipeline(), [], prompt="a cat")


# --- diffusers guiders -----------------------------------------------------------------------------


def guider_step(guider, model, x, timestep, inputs: dict, step: int = 0, num_steps: int = 4):
    """One denoising step of diffusers' guider protocol; returns (batches, guided prediction)."""
    guider.set_state(step=step, num_inference_steps=num_steps, timestep=timestep)
    batches = guider.prepare_inputs(inputs)
    for batch in batches:
        guider.prepare_models(model)
        fields = {key: getattr(batch, key) for key in inputs}
        batch.noise_pred = model(x, timestep, **fields).sample
        guider.cleanup_models(model)
    return batches, guider(batches).pred


@pytest.fixture(scope="module")
def unet_inputs():
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(2, 4, 8, 8, generator=generator)
    condition = torch.randn(2, 8, 16, generator=generator)
    negative = torch.randn(2, 8, 16, generator=generator)
    return x, {"encoder_hidden_states": (condition, negative)}


def unet_prediction(unet, x, embedding) -> torch.Tensor:
    return unet(x, torch.tensor(500), encoder_hidden_states=embedding).sample


@pytest.mark.parametrize("guider_class", [ICGGuidance, TSGGuidance])
def test_guider_scale_one_is_the_conditional_prediction(sd_pipeline, unet_inputs, guider_class):
    x, inputs = unet_inputs
    with torch.no_grad():
        batches, pred = guider_step(guider_class(guidance_scale=1.0), sd_pipeline.unet, x, torch.tensor(500), inputs)
        expected = unet_prediction(sd_pipeline.unet, x, inputs["encoder_hidden_states"][0])
    assert [b.__guidance_identifier__ for b in batches] == ["pred_cond"]
    assert torch.equal(pred, expected)


def test_icg_guider_draws_a_fresh_independent_condition_each_step(sd_pipeline, unet_inputs):
    x, inputs = unet_inputs
    condition, negative = inputs["encoder_hidden_states"]
    guider = ICGGuidance(guidance_scale=4.0)
    with torch.no_grad():
        first, pred = guider_step(guider, sd_pipeline.unet, x, torch.tensor(500), inputs, step=0)
        second, _ = guider_step(guider, sd_pipeline.unet, x, torch.tensor(400), inputs, step=1)
    assert [b.__guidance_identifier__ for b in first] == ["pred_cond", "pred_uncond"]
    assert torch.equal(first[0].encoder_hidden_states, condition)
    for batch in (first[1], second[1]):
        drawn = batch.encoder_hidden_states
        assert drawn.shape == condition.shape
        assert not torch.equal(drawn, condition) and not torch.equal(drawn, negative)
        assert math.isclose(drawn.std().item(), condition.std().item(), rel_tol=0.3)
    assert not torch.equal(first[1].encoder_hidden_states, second[1].encoder_hidden_states)
    cond, uncond = first[0].noise_pred, first[1].noise_pred
    torch.testing.assert_close(pred, uncond + 4.0 * (cond - uncond))


def test_icg_guider_with_a_class_maker_on_dit(dit_pipeline):
    labels, timestep = torch.tensor([1, 2, 3, 4]), torch.full((4,), 500)
    x = torch.randn(4, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    inputs = {"class_labels": labels}
    with torch.no_grad():
        batches, pred = guider_step(ICGGuidance(guidance_scale=2.0, condition_fields=("class_labels",),
                                                independent_condition=random_class(NUM_CLASSES)),
                                    dit_pipeline.transformer, x, timestep, inputs)
    drawn = batches[1].class_labels
    assert drawn.shape == labels.shape and drawn.dtype == labels.dtype
    assert drawn.min() >= 0 and drawn.max() < NUM_CLASSES
    assert torch.isfinite(pred).all()
    with pytest.raises(GenlabError, match="'class_labels' holds integer ids"):
        guider_step(ICGGuidance(condition_fields=("class_labels",)), dit_pipeline.transformer, x, timestep, inputs)


def test_tsg_guider_hook_is_active_only_for_the_guidance_batch(sd_pipeline, unet_inputs):
    x, inputs = unet_inputs
    unet, condition = sd_pipeline.unet, inputs["encoder_hidden_states"][0]
    guider = TSGGuidance(guidance_scale=3.0, noise_scale=2.0)
    with torch.no_grad():
        before = unet_prediction(unet, x, condition)
        batches, pred = guider_step(guider, unet, x, torch.tensor(500), inputs)
        after = unet_prediction(unet, x, condition)
    assert torch.equal(batches[0].encoder_hidden_states, condition)
    assert torch.equal(batches[1].encoder_hidden_states, condition)
    assert torch.equal(batches[0].noise_pred, before)
    assert not torch.allclose(batches[1].noise_pred, before, atol=1e-4)
    assert torch.equal(after, before)
    assert not unet.time_embedding._forward_hooks
    cond, perturbed = batches[0].noise_pred, batches[1].noise_pred
    torch.testing.assert_close(pred, perturbed + 3.0 * (cond - perturbed))


def test_tsg_guider_first_blocks_on_dit(dit_pipeline):
    transformer = dit_pipeline.transformer
    embedders = [block.norm1.emb.timestep_embedder for block in transformer.transformer_blocks]
    x = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    inputs = {"class_labels": torch.tensor([1, 2])}
    guider = TSGGuidance(noise_scale=1.0, first_blocks=1)
    guider.set_state(step=0, num_inference_steps=2, timestep=torch.tensor(500))
    batches = guider.prepare_inputs(inputs)
    with torch.no_grad():
        for batch in batches:
            guider.prepare_models(transformer)
            batch.hooks = [len(embedder._forward_hooks) for embedder in embedders]
            batch.noise_pred = transformer(x, torch.full((2,), 500), class_labels=batch.class_labels).sample
            guider.cleanup_models(transformer)
    assert [batch.hooks for batch in batches] == [[0, 0], [1, 0]]
    assert not torch.allclose(batches[0].noise_pred, batches[1].noise_pred, atol=1e-4)
    assert all(not embedder._forward_hooks for embedder in embedders)


@pytest.mark.parametrize("guider_class", [ICGGuidance, TSGGuidance])
def test_guiders_read_block_states(guider_class):
    condition, negative = torch.randn(2, 8, 16), torch.randn(2, 8, 16)
    state = BlockState(prompt_embeds=condition, negative_prompt_embeds=negative, latents=torch.zeros(2, 4, 8, 8))
    guider = guider_class(guidance_scale=2.0)
    guider.set_state(step=0, num_inference_steps=4, timestep=torch.tensor(500))
    fields = {"encoder_hidden_states": ("prompt_embeds", "negative_prompt_embeds"), "latents": "latents"}
    cond, other = guider.prepare_inputs_from_block_state(state, fields)
    assert torch.equal(cond.encoder_hidden_states, condition)
    assert other.latents is state.latents
    assert torch.equal(other.encoder_hidden_states, condition) == (guider_class is TSGGuidance)
    assert not torch.equal(other.encoder_hidden_states, negative)


@pytest.mark.parametrize("guider_class", [ICGGuidance, TSGGuidance])
def test_guiders_drive_a_diffusers_denoising_loop(sd_pipeline, unet_inputs, guider_class):
    x, inputs = unet_inputs
    scheduler = DDIMScheduler.from_config(sd_pipeline.scheduler.config)
    scheduler.set_timesteps(3)
    guider = guider_class(guidance_scale=3.0)
    with torch.no_grad():
        for step, timestep in enumerate(scheduler.timesteps):
            _, pred = guider_step(guider, sd_pipeline.unet, x, timestep, inputs, step=step, num_steps=3)
            x = scheduler.step(pred, timestep, x).prev_sample
    assert torch.isfinite(x).all()
    assert not sd_pipeline.unet.time_embedding._forward_hooks


@pytest.mark.parametrize("guider_class", [ICGGuidance, TSGGuidance])
def test_guiders_are_off_outside_start_stop(sd_pipeline, unet_inputs, guider_class):
    x, inputs = unet_inputs
    guider = guider_class(guidance_scale=5.0, start=0.25, stop=0.75)
    counts = []
    with torch.no_grad():
        for step in range(4):
            batches, pred = guider_step(guider, sd_pipeline.unet, x, torch.tensor(900 - 200 * step), inputs,
                                        step=step, num_steps=4)
            counts.append(len(batches))
            if len(batches) == 1:
                assert torch.equal(pred, batches[0].noise_pred)
    assert counts == [1, 2, 2, 1]
    assert not sd_pipeline.unet.time_embedding._forward_hooks


def test_guider_configs_round_trip(tmp_path):
    maker = random_class(NUM_CLASSES)
    icg = ICGGuidance(guidance_scale=2.5, condition_fields=("class_labels",), independent_condition=maker)
    tsg = TSGGuidance(guidance_scale=2.0, noise_scale=0.5, noise_exponent=1.0, first_blocks=2, stop=0.5)
    icg.save_pretrained(tmp_path / "icg")
    tsg.save_pretrained(tmp_path / "tsg")
    icg_loaded = ICGGuidance.from_pretrained(tmp_path / "icg")
    tsg_loaded = TSGGuidance.from_pretrained(tmp_path / "tsg")
    assert icg_loaded.guidance_scale == 2.5 and icg_loaded.condition_fields == ("class_labels",)
    assert icg_loaded.independent_condition is None
    assert (tsg_loaded.noise_scale, tsg_loaded.noise_exponent, tsg_loaded.first_blocks) == (0.5, 1.0, 2)
    assert tsg_loaded.config.stop == 0.5
    copy = icg.new(guidance_scale=4.0)
    assert copy.guidance_scale == 4.0 and copy.independent_condition is maker
    with pytest.raises(GenlabError, match="noise_scale"):
        TSGGuidance(noise_scale=-1.0)
