"""Zero-terminal-SNR schedules (last ᾱ = 0, σ = ∞): genlab floors ᾱ at 2⁻²⁴ as diffusers' Euler scheduler does,
so the σ range is finite and sampling stays finite, through DiffusersDenoiser, guided pipeline sampling and the
CogVideoX camera ControlNet (DDPMScheduler(rescale_betas_zero_snr=True) and CogVideoX's shipped scheduler)."""

import math

import pytest
import torch
from diffusers import (
    CogVideoXDDIMScheduler,
    DDIMScheduler,
    DDPMScheduler,
    DiTPipeline,
    DiTTransformer2DModel,
    EulerDiscreteScheduler,
    UNet2DModel,
)

from genlab.core.denoiser import ALPHA_CUMPROD_FLOOR, DiffusersDenoiser, vp_sigmas
from genlab.core.edm import karras_sigmas, sample
from genlab.errors import GenlabError
from genlab.guidance import GuidanceTerm
from genlab.guidance.pipelines import guided_pipeline_sample
from test_camera_cogvideox import COGVIDEOX_SCHEDULER, camera_model, make_cogvideox_folder
from test_denoiser import tiny_unet
from test_guidance_pipelines import tiny_vae

SCHEDULERS = {
    "ddpm": lambda: DDPMScheduler(rescale_betas_zero_snr=True, prediction_type="v_prediction"),
    "cogvideox": lambda: CogVideoXDDIMScheduler(**COGVIDEOX_SCHEDULER),
}


def test_floor_matches_diffusers_euler_zero_snr_scheduler():
    euler = EulerDiscreteScheduler(rescale_betas_zero_snr=True)
    assert ALPHA_CUMPROD_FLOOR == euler.alphas_cumprod[-1].item()
    sigmas = vp_sigmas(DDPMScheduler(rescale_betas_zero_snr=True).alphas_cumprod)
    assert sigmas[-1].item() == pytest.approx(euler.sigmas[0].item(), rel=1e-6)  # σ of timestep 999, ≈ 4096
    ordinary = DDPMScheduler().alphas_cumprod.double()  # nothing below the floor: unchanged
    torch.testing.assert_close(vp_sigmas(ordinary), ((1 - ordinary) / ordinary).sqrt(), rtol=0, atol=0)


@pytest.mark.parametrize("name", SCHEDULERS)
def test_zero_snr_denoiser_has_a_finite_range_ending_at_the_last_timestep(name):
    scheduler = SCHEDULERS[name]()
    assert scheduler.alphas_cumprod[-1] == 0  # the raw σ_max would be sqrt(1 / 0) = inf
    denoiser = DiffusersDenoiser(torch.nn.Identity(), scheduler)
    assert denoiser.sigma_max == pytest.approx(math.sqrt(2**24 - 1))
    assert 0 < denoiser.sigma_min < 0.1
    sigma = torch.tensor([denoiser.sigma_max, 1e6, 1.0], dtype=torch.float32)
    timesteps = denoiser.sigma_to_timestep(sigma)
    assert timesteps[:2].tolist() == pytest.approx([999, 999], abs=1e-4) and 0 < timesteps[2] < 999
    torch.testing.assert_close(denoiser.timestep_to_sigma(timesteps[2:]), sigma[2:].double())


def test_tiny_unet_samples_finite_on_a_zero_snr_schedule(tmp_path):
    """The README's "sampling a zero-SNR diffusers model" example, on a tiny saved UNet."""
    tiny_unet().save_pretrained(tmp_path / "unet")
    SCHEDULERS["ddpm"]().save_pretrained(tmp_path / "scheduler")
    unet = UNet2DModel.from_pretrained(tmp_path, subfolder="unet")
    scheduler = DDPMScheduler.from_pretrained(tmp_path, subfolder="scheduler")
    denoiser = DiffusersDenoiser(unet, scheduler)
    sigmas = karras_sigmas(2, denoiser.sigma_min, denoiser.sigma_max)
    with torch.no_grad():
        samples = sample(denoiser, torch.randn(2, 1, 8, 8), sigmas)
    assert torch.isfinite(samples).all()


def test_guided_pipeline_sampling_is_finite_on_a_zero_snr_schedule(tmp_path):
    torch.manual_seed(0)
    transformer = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                                        num_layers=2, sample_size=4, patch_size=2, num_embeds_ada_norm=10)
    scheduler = DDIMScheduler(rescale_betas_zero_snr=True, prediction_type="v_prediction",
                              timestep_spacing="trailing", clip_sample=False)
    DiTPipeline(transformer=transformer, vae=tiny_vae(), scheduler=scheduler).save_pretrained(tmp_path)
    pipeline = DiTPipeline.from_pretrained(tmp_path)
    torch.manual_seed(0)
    images = guided_pipeline_sample(pipeline, [GuidanceTerm("cfg", 3.0)], class_labels=[1, 7], steps=2,
                                    generator=torch.Generator().manual_seed(0))
    assert images.shape == (2, 3, 8, 8) and torch.isfinite(images).all()


def test_cogvideox_camera_controlnet_samples_finite_with_the_shipped_scheduler(tmp_path):
    model = camera_model(make_cogvideox_folder(tmp_path, vae=False)).eval()
    assert model.sigma_max == pytest.approx(4096, rel=1e-4)
    torch.manual_seed(0)
    noise, plucker, text = torch.randn(1, 3, 4, 8, 8), torch.randn(1, 3, 6, 8, 8), torch.randn(1, 5, 12)
    with torch.no_grad():
        latents = sample(model, noise, karras_sigmas(2, model.sigma_min, model.sigma_max), plucker=plucker,
                         encoder_hidden_states=text)
    assert torch.isfinite(latents).all()


@pytest.mark.parametrize("low, high", [(0.002, math.inf), (0.002, math.nan), (math.nan, 80.0), (0.0, 80.0),
                                       (-1.0, 80.0), (80.0, 0.002)])
def test_karras_sigmas_rejects_non_finite_or_non_positive_bounds(low, high):
    with pytest.raises(GenlabError, match="finite noise levels"):
        karras_sigmas(4, low, high)
