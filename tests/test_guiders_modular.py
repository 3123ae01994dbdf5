"""ICG / TSG / ICG+TSG guiders inside a real diffusers modular pipeline, and TSG on transformer denoisers.

The SDXL modular pipeline (``StableDiffusionXLAutoBlocks``) gets tiny random components: a UNet
with SDXL's ``text_time`` added conditioning, two CLIP text encoders (the second with the pooled
projection) sharing a CLIP tokenizer built offline from a letters-only vocabulary, a tiny VAE and an
Euler scheduler; images are 16 px after 2 steps.
"""


import pytest
import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    FluxTransformer2DModel,
    SD3Transformer2DModel,
    UNet2DConditionModel,
    WanTransformer3DModel,
)
from diffusers.guiders import ClassifierFreeGuidance
from diffusers.modular_pipelines import StableDiffusionXLAutoBlocks
from diffusers.modular_pipelines.modular_pipeline import BlockState
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from genlab.errors import GenlabError
from genlab.guidance import time_embedding_modules
from genlab.guidance.guiders import ICGGuidance, ICGTSGGuidance, TSGGuidance
from test_guidance_pipelines import tiny_tokenizer

TEXT_WIDTH = 16  # each CLIP encoder's width; the UNet sees both concatenated
TIME_ID_WIDTH = 4  # SDXL's addition_time_embed_dim; 6 time ids
# name -> (guider, whether the UNet's time embedding is hooked in each call of a step)
GUIDERS = {
    "icg": (lambda: ICGGuidance(guidance_scale=7.5), [False, False]),
    "tsg": (lambda: TSGGuidance(guidance_scale=3.0, noise_scale=2.0), [False, True]),
    "icg+tsg": (lambda: ICGTSGGuidance(icg_scale=4.0, tsg_scale=2.0, noise_scale=2.0), [False, False, True]),
}


def tiny_sdxl_components(folder) -> dict:
    tokenizer = tiny_tokenizer(folder)
    text_config = CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=TEXT_WIDTH,
                                 intermediate_size=TEXT_WIDTH, num_attention_heads=2, num_hidden_layers=2,
                                 vocab_size=len(tokenizer), max_position_embeddings=8, projection_dim=TEXT_WIDTH)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=2, norm_num_groups=4, cross_attention_dim=2 * TEXT_WIDTH,
        addition_embed_type="text_time", addition_time_embed_dim=TIME_ID_WIDTH,
        projection_class_embeddings_input_dim=6 * TIME_ID_WIDTH + TEXT_WIDTH,
    )
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8),
                        layers_per_block=1, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=4, sample_size=16)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1)
    return dict(unet=unet, vae=vae, scheduler=scheduler, tokenizer=tokenizer, tokenizer_2=tokenizer,
                text_encoder=CLIPTextModel(text_config), text_encoder_2=CLIPTextModelWithProjection(text_config))


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    """The SDXL modular pipeline with tiny random components."""
    torch.manual_seed(0)
    pipe = StableDiffusionXLAutoBlocks().init_pipeline()
    pipe.update_components(**tiny_sdxl_components(tmp_path_factory.mktemp("sdxl")))
    return pipe


def generate(pipe, guider) -> torch.Tensor:
    """Images ``[1, 3, 16, 16]`` in [0, 1] from ``pipe`` with ``guider``, seed 0, 2 steps."""
    pipe.update_components(guider=guider)
    return pipe(prompt="a cat", height=16, width=16, num_inference_steps=2,
                generator=torch.Generator().manual_seed(0), output="images", output_type="pt")


def generate_recording(pipe, guider) -> tuple[torch.Tensor, list[dict]]:
    """:func:`generate`, and per UNet call its text / added-condition inputs and whether TSG's hook was on."""
    calls = []

    def record(unet, args, kwargs):
        calls.append({"prompt": kwargs["encoder_hidden_states"], **kwargs["added_cond_kwargs"],
                      "hooked": bool(unet.time_embedding._forward_hooks)})

    handle = pipe.unet.register_forward_pre_hook(record, with_kwargs=True)
    try:
        return generate(pipe, guider), calls
    finally:
        handle.remove()


def hooked_modules(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if module._forward_hooks or module._forward_pre_hooks]


@pytest.fixture(scope="module")
def cfg_images(sdxl):
    return generate(sdxl, ClassifierFreeGuidance(guidance_scale=7.5))


def test_icg_guider_in_the_sdxl_modular_pipeline(sdxl):
    """The README's 'Use with diffusers' example, with tiny components instead of load_components."""
    sdxl.update_components(guider=ICGGuidance(guidance_scale=7.5))
    images = sdxl(prompt="a cat", height=16, width=16, num_inference_steps=2, output="images")
    assert len(images) == 1 and images[0].size == (16, 16)


@pytest.mark.parametrize("name", GUIDERS)
def test_guiders_run_the_sdxl_modular_pipeline_to_images(sdxl, cfg_images, name):
    make, hooked_per_step = GUIDERS[name]
    images, calls = generate_recording(sdxl, make())
    assert [call["hooked"] for call in calls] == hooked_per_step * 2
    assert images.shape == cfg_images.shape == (1, 3, 16, 16)
    assert torch.isfinite(images).all()
    assert not torch.allclose(images, cfg_images, atol=1e-4)
    assert hooked_modules(sdxl.unet) == []
    assert sdxl.guider._hooks is None


@pytest.mark.parametrize("name", GUIDERS)
def test_guided_sdxl_images_repeat_with_the_seed_whatever_the_global_rng(sdxl, name):
    make, _ = GUIDERS[name]
    guider = make()
    first = generate(sdxl, guider)
    torch.rand(10)
    assert torch.equal(first, generate(sdxl, guider)), "the guider's draws restart at step 0 of every run"
    torch.manual_seed(123)
    assert torch.equal(first, generate(sdxl, make())), "a new guider with the same seed draws alike"
    assert not torch.allclose(first, generate(sdxl, guider.new(seed=1)), atol=1e-6)


def test_icg_batch_redraws_text_and_pooled_text_but_not_time_ids_in_sdxl(sdxl):
    _, calls = generate_recording(sdxl, ICGGuidance(guidance_scale=7.5))
    cond, independent = calls[0], calls[1]
    assert cond["image_embeds"] is None and independent["image_embeds"] is None
    assert torch.equal(cond["time_ids"], independent["time_ids"])
    for field in ("prompt", "text_embeds"):
        assert independent[field].shape == cond[field].shape
        assert not torch.allclose(independent[field], cond[field])
    assert not torch.equal(calls[3]["prompt"], independent["prompt"])  # redrawn every step


@pytest.mark.parametrize("guider", [ICGGuidance(), TSGGuidance(), ICGTSGGuidance()],
                         ids=lambda guider: type(guider).__name__)
def test_none_pairs_stay_as_in_diffusers(guider):
    condition = torch.randn(2, 4, 8)
    data = {"prompt_embeds": (condition, None), "image_embeds": (None, None), "time_ids": torch.ones(2, 6)}
    state = BlockState(prompt_embeds=condition, ip_adapter_embeds=None)
    fields = {"prompt_embeds": ("prompt_embeds", "negative_prompt_embeds"),
              "image_embeds": ("ip_adapter_embeds", "negative_ip_adapter_embeds"), "mask": "missing"}
    guider.set_state(step=0, num_inference_steps=2, timestep=torch.tensor(500))
    for batches in (guider.prepare_inputs(data), guider.prepare_inputs_from_block_state(state, fields)):
        assert len(batches) == guider.num_conditions > 1
        assert all(batch.image_embeds is None and not hasattr(batch, "mask") for batch in batches)
        assert torch.equal(batches[0].prompt_embeds, condition)


def test_icg_default_fields_cover_sd3_flux_and_ip_adapter_inputs():
    latents, text, pooled, image = torch.randn(2, 4, 8, 8), torch.randn(2, 5, 16), torch.randn(2, 8), torch.randn(2, 1, 8)
    data = {"hidden_states": (latents, latents), "encoder_hidden_states": (text, -text),
            "text_embeds": (pooled, -pooled), "pooled_projections": pooled, "image_embeds": ([image], [0 * image])}
    cond, independent = ICGGuidance().prepare_inputs(data)
    assert independent.hidden_states is latents
    assert cond.image_embeds[0] is image and independent.image_embeds[0].shape == image.shape
    assert not torch.allclose(independent.image_embeds[0], image)
    for field, real in (("encoder_hidden_states", text), ("text_embeds", pooled), ("pooled_projections", pooled)):
        assert getattr(cond, field) is real
        drawn = getattr(independent, field)
        assert drawn.shape == real.shape and not torch.allclose(drawn, real)


def test_icg_tsg_guider_combines_both_terms(tmp_path):
    guider = ICGTSGGuidance(icg_scale=3.0, tsg_scale=2.0, time_embedding="time_embedding")
    guider.save_pretrained(tmp_path)
    loaded = ICGTSGGuidance.from_pretrained(tmp_path)
    assert (loaded.icg_scale, loaded.tsg_scale, loaded.time_embedding) == (3.0, 2.0, "time_embedding")
    pred_cond, pred_icg, pred_tsg = torch.randn(3, 2, 4, 4, 4).unbind()
    expected = pred_cond + 2.0 * (pred_cond - pred_icg) + 1.0 * (pred_cond - pred_tsg)
    torch.testing.assert_close(guider.forward(pred_cond, pred_icg, pred_tsg).pred, expected)
    assert guider.new(tsg_scale=1.0)._active_predictions() == ["pred_cond", "pred_icg"]
    assert guider.new(icg_scale=1.0)._active_predictions() == ["pred_cond", "pred_tsg"]
    assert guider.new(noise_scale=0.0, icg_scale=1.0).num_conditions == 1


def tiny_sd3() -> tuple[nn.Module, dict]:
    model = SD3Transformer2DModel(sample_size=8, patch_size=1, in_channels=4, out_channels=4, num_layers=1,
                                  attention_head_dim=8, num_attention_heads=2, caption_projection_dim=16,
                                  joint_attention_dim=16, pooled_projection_dim=8)
    inputs = dict(hidden_states=torch.randn(1, 4, 8, 8), encoder_hidden_states=torch.randn(1, 5, 16),
                  pooled_projections=torch.randn(1, 8))
    return model, inputs


def tiny_flux() -> tuple[nn.Module, dict]:
    model = FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1,
                                   attention_head_dim=8, num_attention_heads=2, joint_attention_dim=16,
                                   pooled_projection_dim=8, axes_dims_rope=(4, 2, 2))
    inputs = dict(hidden_states=torch.randn(1, 16, 4), encoder_hidden_states=torch.randn(1, 5, 16),
                  pooled_projections=torch.randn(1, 8), img_ids=torch.zeros(16, 3), txt_ids=torch.zeros(5, 3))
    return model, inputs


def tiny_wan() -> tuple[nn.Module, dict]:
    model = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4,
                                  out_channels=4, text_dim=16, freq_dim=32, ffn_dim=16, num_layers=1,
                                  cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32)
    inputs = dict(hidden_states=torch.randn(1, 4, 2, 8, 8), encoder_hidden_states=torch.randn(1, 5, 16))
    return model, inputs


TRANSFORMERS = {
    "sd3": (tiny_sd3, "time_text_embed.timestep_embedder"),
    "flux": (tiny_flux, "time_text_embed.timestep_embedder"),
    "wan": (tiny_wan, "condition_embedder.time_embedder"),
}


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_tsg_perturbs_the_timestep_embedder_of_transformers(name):
    build, path = TRANSFORMERS[name]
    torch.manual_seed(0)
    model, inputs = build()
    assert time_embedding_modules(model) == [model.get_submodule(path)]
    timestep = torch.tensor([0.5 if name == "flux" else 500.0])  # Flux takes t / 1000
    guider = TSGGuidance(noise_scale=2.0)
    guider.set_state(step=0, num_inference_steps=2, timestep=torch.tensor(500))
    batches = guider.prepare_inputs({"encoder_hidden_states": (inputs.pop("encoder_hidden_states"), None)})
    with torch.no_grad():
        for batch in batches:
            guider.prepare_models(model)
            batch.noise_pred = model(timestep=timestep, encoder_hidden_states=batch.encoder_hidden_states,
                                     **inputs).sample
            guider.cleanup_models(model)
        plain = model(timestep=timestep, encoder_hidden_states=batches[0].encoder_hidden_states, **inputs).sample
    assert torch.equal(batches[0].noise_pred, plain)
    assert not torch.allclose(batches[1].noise_pred, plain, atol=1e-4)
    assert torch.isfinite(guider(batches).pred).all()
    assert hooked_modules(model) == []


def test_tsg_on_an_unknown_model_names_the_time_embedding_argument():
    model = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(GenlabError, match="time_embedding='dotted.name'"):
        time_embedding_modules(model)
    assert time_embedding_modules(model, path="0") == [model[0]]
    with pytest.raises(GenlabError, match="no module named 'missing'"):
        time_embedding_modules(model, path="missing")


def test_tsg_time_embedding_argument_picks_the_module():
    torch.manual_seed(0)
    model, _ = tiny_sd3()
    guider = TSGGuidance(time_embedding="time_text_embed.text_embedder")
    guider.set_state(step=0, num_inference_steps=2, timestep=torch.tensor(500))
    guider.prepare_models(model)
    guider.prepare_models(model)
    assert hooked_modules(model) == ["time_text_embed.text_embedder"]
    guider.cleanup_models(model)
    assert hooked_modules(model) == []
    assert TSGGuidance.from_config(guider.config).time_embedding == "time_text_embed.text_embedder"
