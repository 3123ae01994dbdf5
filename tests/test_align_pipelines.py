"""Diffusers pipelines as alignment targets, on tiny random Stable Diffusion and text-to-video pipelines.

The pipelines are saved with ``save_pretrained`` and loaded through :func:`load_pipeline_target`, as
real checkpoints would be. The key check: an Euler step on the target's σ grid is a DDIM (η = 0)
step of the scheduler, and the whole guided sampler matches diffusers' DDIM loop with CFG on ε.
"""

import copy
import json
from functools import partial

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    FlowMatchEulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    TextToVideoSDPipeline,
    UNet2DConditionModel,
    UNet3DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel

from genlab.align.config import AlignConfig
from genlab.align.lora import add_lora
from genlab.align.pipelines import (
    StableDiffusionTarget,
    TextToVideoTarget,
    is_pipeline_folder,
    load_pipeline_target,
)
from genlab.align.rewards.base import Reward
from genlab.align.sampling import sample_for_reward
from genlab.align.targets import load_target
from genlab.align.trainer import AlignmentRun
from genlab.core.edm import ancestral_mean, ancestral_scales
from genlab.errors import GenlabError
from test_align import adapted_layers
from test_guidance_pipelines import tiny_scheduler, tiny_tokenizer, tiny_vae

STEPS = 4
FRAMES = 3
PROMPTS = ["a cat", "dog"]
UNET = dict(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
            cross_attention_dim=16, attention_head_dim=2, norm_num_groups=4)


def tiny_text_encoder(tokenizer) -> CLIPTextModel:
    return CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=8, bos_token_id=0, eos_token_id=1, pad_token_id=1))


def save_tiny_sd(folder):
    """A tiny random StableDiffusionPipeline saved in ``folder/pipeline``; returns that folder."""
    torch.manual_seed(0)
    tokenizer = tiny_tokenizer(folder)
    unet = UNet2DConditionModel(**UNET, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    StableDiffusionPipeline(vae=tiny_vae(), text_encoder=tiny_text_encoder(tokenizer), tokenizer=tokenizer, unet=unet,
                            scheduler=tiny_scheduler(), safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(folder / "pipeline")
    return folder / "pipeline"


def save_tiny_video(folder):
    """A tiny random TextToVideoSDPipeline saved in ``folder/pipeline``; returns that folder."""
    torch.manual_seed(1)
    tokenizer = tiny_tokenizer(folder)
    unet = UNet3DConditionModel(**UNET, down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
                                up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"))
    TextToVideoSDPipeline(vae=tiny_vae(), text_encoder=tiny_text_encoder(tokenizer), tokenizer=tokenizer, unet=unet,
                          scheduler=tiny_scheduler()).save_pretrained(folder / "pipeline")
    return folder / "pipeline"


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    return save_tiny_sd(tmp_path_factory.mktemp("sd"))


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory):
    return save_tiny_video(tmp_path_factory.mktemp("video"))


@pytest.fixture(scope="module")
def sd_target(sd_folder) -> StableDiffusionTarget:
    return load_pipeline_target(sd_folder, guidance_scale=3.0, device="cpu")


@pytest.fixture(scope="module")
def video_target(video_folder) -> TextToVideoTarget:
    return load_pipeline_target(video_folder, guidance_scale=3.0, num_frames=FRAMES, device="cpu")


def target_of(request, which: str, guidance_scale: float | None = None):
    """The loaded target, or one with another guidance scale on the same pipeline."""
    target = request.getfixturevalue(f"{which}_target")
    if guidance_scale is None:
        return target
    if isinstance(target, TextToVideoTarget):
        return TextToVideoTarget(target.pipe, guidance_scale, num_frames=FRAMES)
    return StableDiffusionTarget(target.pipe, guidance_scale)


def unet_epsilon(target, x_t: torch.Tensor, timestep, embeddings: torch.Tensor) -> torch.Tensor:
    """The UNet's ε for VP latents in the sampler's layout (frames second for videos)."""
    video = target.modality == "video"
    batch = x_t.shape[0]
    x_t = x_t.transpose(1, 2) if video else x_t
    repeat = embeddings.shape[0] // batch
    eps = target.pipe.unet(x_t.repeat(repeat, *[1] * (x_t.ndim - 1)), timestep,
                           encoder_hidden_states=embeddings).sample
    return eps.transpose(1, 2) if video else eps


def plain_denoise(target, x: torch.Tensor, sigma: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
    """One unguided DiffusersDenoiser pass in the sampler's layout."""
    video = target.modality == "video"
    out = target.denoiser(x.transpose(1, 2) if video else x, sigma, encoder_hidden_states=embeddings)
    return out.transpose(1, 2) if video else out


def noise_like(target, batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(target.state_shape(batch), generator=torch.Generator().manual_seed(seed))


# --- shapes and noise levels ---------------------------------------------------------------------


def test_state_shapes(sd_target, video_target):
    assert isinstance(sd_target, StableDiffusionTarget) and isinstance(video_target, TextToVideoTarget)
    assert (sd_target.modality, sd_target.condition) == ("image", "prompts")
    assert (video_target.modality, video_target.condition) == ("video", "prompts")
    assert sd_target.state_shape(2) == (2, 4, 8, 8)
    assert video_target.state_shape(2) == (2, FRAMES, 4, 8, 8)
    assert StableDiffusionTarget(sd_target.pipe, height=32, width=24).state_shape(1) == (1, 4, 16, 12)


def test_image_size_must_fit_the_vae(sd_target):
    with pytest.raises(GenlabError, match="multiple of 2"):
        StableDiffusionTarget(sd_target.pipe, height=15)


@pytest.mark.parametrize("which", ["sd", "video"])
def test_sigmas_are_the_ddim_timesteps_then_zero(request, which):
    target = target_of(request, which)
    sigmas = target.sigmas(STEPS)
    assert sigmas.dtype == torch.float64 and sigmas.shape == (STEPS + 1,)
    assert (sigmas[1:] < sigmas[:-1]).all() and sigmas[-1] == 0
    scheduler = DDIMScheduler.from_config(target.pipe.scheduler.config)
    scheduler.set_timesteps(STEPS)
    alpha = scheduler.alphas_cumprod[scheduler.timesteps].double()
    torch.testing.assert_close(sigmas[:-1], ((1 - alpha) / alpha).sqrt())
    with pytest.raises(GenlabError, match="steps"):
        target.sigmas(0)


def test_sigmas_follow_ddim_whatever_the_pipeline_scheduler(sd_target):
    """PNDM's own grid repeats a timestep; the target's grid is DDIM's for the same noise schedule."""
    pipe = sd_target.pipe
    components = {**pipe.components, "scheduler": PNDMScheduler.from_config(pipe.scheduler.config)}
    target = StableDiffusionTarget(StableDiffusionPipeline(**components, requires_safety_checker=False))
    torch.testing.assert_close(target.sigmas(STEPS), sd_target.sigmas(STEPS))


def test_a_scheduler_without_alphas_is_replaced_by_ddim(sd_target):
    components = {**sd_target.pipe.components, "scheduler": FlowMatchEulerDiscreteScheduler()}
    target = StableDiffusionTarget(StableDiffusionPipeline(**components, requires_safety_checker=False))
    assert isinstance(target.pipe.scheduler, DDIMScheduler)


# --- the Euler step on these σ is a DDIM step -----------------------------------------------------


@pytest.mark.parametrize("which", ["sd", "video"])
def test_euler_steps_on_the_sigmas_are_ddim_steps(request, which):
    target = target_of(request, which, guidance_scale=1.0)
    sigmas = target.sigmas(STEPS).to(torch.float32)
    scheduler = DDIMScheduler.from_config(target.pipe.scheduler.config)
    scheduler.set_timesteps(STEPS)
    cond = target.encode_condition(PROMPTS, None)
    for i, timestep in enumerate(scheduler.timesteps):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        x = noise_like(target, seed=i) * sigma + 0.5 * noise_like(target, seed=10 + i)
        with torch.no_grad():
            denoised = target.denoise(x, sigma.expand(2), cond)
            euler = ancestral_mean(x, denoised, sigma, ancestral_scales(sigma, sigma_next, 0.0)[0])
            x_t = x / (1 + sigma**2).sqrt()
            eps = unet_epsilon(target, x_t, timestep, cond["encoder_hidden_states"])
            ddim = scheduler.step(eps, timestep, x_t, eta=0.0)
        if i < STEPS - 1:  # EDM → VP scaling of the next state
            torch.testing.assert_close(euler / (1 + sigma_next**2).sqrt(), ddim.prev_sample, atol=1e-4, rtol=1e-4)
        else:  # the last step goes to σ = 0: DDIM's x0 prediction
            torch.testing.assert_close(euler, ddim.pred_original_sample, atol=1e-4, rtol=1e-4)


def test_guided_sampling_matches_the_diffusers_ddim_loop(sd_target):
    """The whole η = 0 sampler with CFG on x0 equals DDIM with CFG on ε (diffusers' pipeline loop)."""
    sigmas = sd_target.sigmas(STEPS)
    cond = sd_target.encode_condition(PROMPTS, None)
    noise = noise_like(sd_target)
    with torch.no_grad():
        x0, _ = sample_for_reward(partial(sd_target.denoise, cond=cond), noise, sigmas, eta=0.0, grad_steps=0)
        scheduler = DDIMScheduler.from_config(sd_target.pipe.scheduler.config)
        scheduler.set_timesteps(STEPS)
        latents = noise * float(sigmas[0] / (1 + sigmas[0] ** 2).sqrt())
        both = torch.cat([cond["null_hidden_states"], cond["encoder_hidden_states"]])
        for timestep in scheduler.timesteps:
            unconditional, conditional = unet_epsilon(sd_target, latents, timestep, both).chunk(2)
            eps = unconditional + sd_target.guidance_scale * (conditional - unconditional)
            step = scheduler.step(eps, timestep, latents, eta=0.0)
            latents = step.prev_sample
    torch.testing.assert_close(x0, step.pred_original_sample, atol=1e-4, rtol=1e-4)


# --- conditions and guidance -----------------------------------------------------------------------


@pytest.mark.parametrize("which", ["sd", "video"])
def test_guidance_one_is_the_conditional_pass(request, which):
    target = target_of(request, which, guidance_scale=1.0)
    cond = target.encode_condition(PROMPTS, None)
    assert set(cond) == {"encoder_hidden_states"} and not cond["encoder_hidden_states"].requires_grad
    x, sigma = noise_like(target) * 3, torch.tensor([3.0, 0.5])
    with torch.no_grad():
        out = target.denoise(x, sigma, cond)
        expected = plain_denoise(target, x, sigma, cond["encoder_hidden_states"])
    assert out.shape == x.shape
    assert torch.equal(out, expected)


@pytest.mark.parametrize("which", ["sd", "video"])
def test_guidance_combines_both_passes_in_one_unet_call(request, which):
    target = target_of(request, which)
    cond = target.encode_condition(PROMPTS, None)
    x, sigma = noise_like(target) * 3, torch.tensor([3.0, 0.5])
    calls = []
    handle = target.pipe.unet.register_forward_hook(lambda *_: calls.append(1))
    try:
        with torch.no_grad():
            out = target.denoise(x, sigma, cond)
    finally:
        handle.remove()
    assert len(calls) == 1 and out.shape == x.shape
    with torch.no_grad():
        unconditional = plain_denoise(target, x, sigma, cond["null_hidden_states"])
        conditional = plain_denoise(target, x, sigma, cond["encoder_hidden_states"])
    torch.testing.assert_close(out, unconditional + 3.0 * (conditional - unconditional), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out, conditional, atol=1e-3)


def test_conditions_must_be_prompts(sd_target):
    with pytest.raises(GenlabError, match="takes prompts, not class labels"):
        sd_target.encode_condition(None, torch.tensor([1, 2]))
    for prompts in (None, [], "a cat"):
        with pytest.raises(GenlabError, match="text prompts"):
            sd_target.encode_condition(prompts, None)
    cond = sd_target.encode_condition(["a cat"], None)
    with pytest.raises(GenlabError, match="1 prompt embeddings for a batch of 2"):
        sd_target.denoise(noise_like(sd_target), torch.ones(2), cond)


# --- decoding ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["sd", "video"])
def test_decode_is_differentiable_and_in_range(request, which):
    target = target_of(request, which)
    x0 = noise_like(target).requires_grad_(True)
    samples = target.decode(x0)
    expected = (2, 3, 16, 16) if which == "sd" else (2, FRAMES, 3, 16, 16)
    assert samples.shape == expected
    assert samples.min() >= -1 and samples.max() <= 1
    samples.sum().backward()
    assert x0.grad.abs().sum() > 0
    assert all(p.grad is None for p in target.pipe.vae.parameters())
    assert not any(p.requires_grad for p in target.pipe.text_encoder.parameters())


def test_video_decode_only_the_chosen_frames(video_target):
    x0 = noise_like(video_target)
    with torch.no_grad():
        full = video_target.decode(x0)
        chosen = video_target.decode(x0, torch.tensor([0, 2]))
    assert chosen.shape == (2, 2, 3, 16, 16)
    torch.testing.assert_close(chosen, full[:, [0, 2]], atol=1e-5, rtol=1e-5)


# --- LoRA targets --------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["sd", "video"])
def test_lora_targets_name_linear_layers_of_the_unet(request, which):
    target = target_of(request, which)
    assert target.module is target.pipe.unet
    modules = dict(target.module.named_modules())
    for name in target.lora_targets:
        matches = [m for full, m in modules.items() if full.endswith("." + name)]
        assert matches and all(isinstance(m, torch.nn.Linear) for m in matches), name
    unet = copy.deepcopy(target.module)
    add_lora(unet, 2, target.lora_targets)
    adapted = adapted_layers(unet)
    for name in target.lora_targets:
        assert any(layer.endswith("." + name) for layer in adapted), name
    if which == "video":  # the temporal attentions are adapted too
        assert any("temp_attentions" in name for name in adapted)


# --- loading -------------------------------------------------------------------------------------------


def test_is_pipeline_folder(sd_folder, tmp_path):
    assert is_pipeline_folder(sd_folder) and is_pipeline_folder(str(sd_folder))
    assert not is_pipeline_folder(tmp_path) and not is_pipeline_folder(tmp_path / "missing")


def test_load_target_dispatches_pipeline_folders(sd_folder, video_folder):
    image = load_target(str(sd_folder), guidance_scale=2.0)
    assert isinstance(image, StableDiffusionTarget) and image.guidance_scale == 2.0
    video = load_target(str(video_folder), num_frames=2)
    assert isinstance(video, TextToVideoTarget) and video.guidance_scale == 9.0
    assert video.state_shape(1) == (1, 2, 4, 8, 8)


def test_loading_errors_name_the_path(sd_folder, tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(GenlabError, match=str(missing)):
        load_pipeline_target(missing)
    with pytest.raises(GenlabError, match="no model_index.json"):
        load_pipeline_target(tmp_path)
    other = tmp_path / "ddpm"
    other.mkdir()
    (other / "model_index.json").write_text(json.dumps({"_class_name": "DDPMPipeline"}))
    with pytest.raises(GenlabError, match=rf"{other} holds a DDPMPipeline"):
        load_pipeline_target(other)
    with pytest.raises(GenlabError, match="makes images, not videos"):
        load_pipeline_target(sd_folder, kind="video")
    with pytest.raises(GenlabError, match="num_frames applies to text-to-video"):
        load_pipeline_target(sd_folder, num_frames=4)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline", "unet": 3}))
    with pytest.raises(GenlabError, match=f"cannot load the StableDiffusionPipeline in {broken}"):
        load_pipeline_target(broken)



@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("which", ["sd", "video"])
def test_cuda_reward_gradient_reaches_the_lora_adapters(request, which, precision):
    """A VADER step on the GPU: the pipeline loads onto CUDA, K = 1 back-propagated step, LoRA grads."""
    target = load_pipeline_target(request.getfixturevalue(f"{which}_folder"), guidance_scale=3.0,
                                  **({"num_frames": FRAMES} if which == "video" else {}))
    assert target.device.type == "cuda" and target.pipe.vae.device.type == "cuda"
    add_lora(target.module, 2, target.lora_targets)
    cond = target.encode_condition(PROMPTS, None)
    noise = noise_like(target).cuda()
    autocast = partial(torch.autocast, "cuda", dtype=torch.bfloat16, enabled=precision == "bf16")
    x0, _ = sample_for_reward(partial(target.denoise, cond=cond), noise, target.sigmas(STEPS), eta=1.0,
                              grad_steps=1, generator=torch.Generator().manual_seed(0), autocast=autocast)
    samples = target.decode(x0, torch.tensor([0, 2]) if which == "video" else None)
    assert samples.is_cuda and torch.isfinite(samples).all()
    samples.mean().backward()
    grads = [p.grad for name, p in target.module.named_parameters() if "lora_B" in name]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


# --- the trainer on pipelines (CPU) ------------------------------------------------------------------------
class PromptLength(Reward):
    """A text-dependent toy reward: mean pixel value times the prompt's length."""

    name = "prompt-length"
    needs = "prompts"

    def score(self, samples, prompts, labels):
        lengths = torch.tensor([len(p) for p in prompts], dtype=samples.dtype, device=samples.device)
        return samples.mean((1, 2, 3)) * lengths


@pytest.mark.parametrize("method", ["vader", "ddpo"])
def test_alignment_runs_train_lora_in_a_stable_diffusion_pipeline(sd_folder, tmp_path, method):
    target = load_pipeline_target(sd_folder, guidance_scale=2.0, device="cpu")
    config = AlignConfig(method=method, steps=2, batch_size=2, sampling_steps=STEPS, lora_rank=2,
                         prompts="a cat|a dog on a mat", run_dir=str(tmp_path / method), progress=False)
    result = AlignmentRun(target, PromptLength(), config).fit()
    assert result.queries == 4 and (result.run_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert any(p.abs().sum() > 0 for name, p in target.module.named_parameters() if "lora_B" in name)


def test_cli_aligns_a_text_to_video_pipeline_scoring_one_random_frame(video_folder, tmp_path, run_cli):
    code, out, err = run_cli("align", "--model", str(video_folder), "--reward", "brightness", "--frames", "3",
                             "--prompts", "a cat|a dog", "--score-frames", "random", "--steps", "1",
                             "--batch-size", "2", "--sampling-steps", "3", "--lora-rank", "2", "--no-progress",
                             "--run-dir", str(tmp_path / "run"))
    assert code == 0, err
    assert "1 updates, 2 reward queries" in out
    assert "PeftModel.from_pretrained(pipe.unet, DIR) (peft format only: diffusers has no LoRA loader" in out
    code, _, err = run_cli("align", "--model", str(video_folder), "--reward", "brightness", "--frames", "3",
                           "--labels", "1,2", "--no-progress", "--run-dir", str(tmp_path / "bad"))
    assert code != 0 and "--labels was given but this run uses text prompts" in err
