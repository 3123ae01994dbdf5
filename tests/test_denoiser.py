"""Denoiser adapters: EDM preconditioning wrapper and the diffusers ε/v-prediction adapter."""

import pytest
import torch
from diffusers import DDIMPipeline, DDIMScheduler, DDPMScheduler, UNet2DModel
from torch import nn

from genlab.core.denoiser import DiffusersDenoiser, EDMDenoiser
from genlab.core.edm import karras_sigmas, preconditioning, sample
from genlab.errors import GenlabError


class ZeroNet(nn.Module):
    def forward(self, x, noise_labels, **cond):
        return torch.zeros_like(x)


def test_edm_denoiser_with_zero_network_is_c_skip_times_input():
    x = torch.randn(3, 1, 4, 4)
    sigma = torch.tensor([0.01, 1.0, 50.0])
    c_skip = preconditioning(sigma, 0.5)[0]
    torch.testing.assert_close(EDMDenoiser(ZeroNet())(x, sigma), c_skip[:, None, None, None] * x)


def tiny_unet() -> UNet2DModel:
    torch.manual_seed(0)
    return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
                       block_out_channels=(8, 16), down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4)


@pytest.fixture(scope="module")
def saved_pipeline(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddpm")
    tiny_unet().save_pretrained(folder / "unet")
    DDPMScheduler(num_train_timesteps=1000).save_pretrained(folder / "scheduler")
    return folder


def test_sigma_timestep_mapping_matches_scheduler_alphas(saved_pipeline):
    scheduler = DDPMScheduler.from_pretrained(saved_pipeline / "scheduler")
    denoiser = DiffusersDenoiser(UNet2DModel.from_pretrained(saved_pipeline / "unet"), scheduler)
    alphas = scheduler.alphas_cumprod.double()
    timesteps = torch.arange(1000)
    torch.testing.assert_close(denoiser.timestep_to_sigma(timesteps), ((1 - alphas) / alphas).sqrt())
    fractional = torch.tensor([0.0, 0.25, 10.5, 500.7, 998.9, 999.0], dtype=torch.float64)
    torch.testing.assert_close(denoiser.sigma_to_timestep(denoiser.timestep_to_sigma(fractional)), fractional)
    assert denoiser.sigma_min == pytest.approx(((1 - alphas[0]) / alphas[0]).sqrt().item())
    assert denoiser.sigma_max == pytest.approx(((1 - alphas[-1]) / alphas[-1]).sqrt().item())


class OracleModel(nn.Module):
    """Predicts ε, v or x0 exactly for data that is a single point ``target`` (integer timesteps)."""

    def __init__(self, alphas_cumprod, target, prediction_type):
        super().__init__()
        self.alphas_cumprod, self.target, self.prediction_type = alphas_cumprod, target, prediction_type

    def forward(self, x_t, timestep):
        alpha = self.alphas_cumprod[timestep.round().long()].float()[:, None, None, None]
        eps = (x_t - alpha.sqrt() * self.target) / (1 - alpha).sqrt()
        if self.prediction_type == "epsilon":
            return eps
        if self.prediction_type == "v_prediction":
            return alpha.sqrt() * eps - (1 - alpha).sqrt() * self.target
        return self.target.expand_as(x_t)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_adapter_recovers_clean_image_from_exact_predictions(prediction_type):
    scheduler = DDPMScheduler(num_train_timesteps=1000, prediction_type=prediction_type)
    target = torch.randn(1, 1, 4, 4)
    oracle = OracleModel(scheduler.alphas_cumprod, target, prediction_type)
    denoiser = DiffusersDenoiser(oracle, scheduler)
    sigma = denoiser.timestep_to_sigma(torch.tensor([3, 250, 900])).float()
    x = target + sigma[:, None, None, None] * torch.randn(3, 1, 4, 4)
    torch.testing.assert_close(denoiser(x, sigma), target.expand(3, -1, -1, -1), atol=2e-4, rtol=1e-4)


def test_reloaded_diffusers_model_samples_with_genlab_heun_and_with_ddim(saved_pipeline):
    unet = UNet2DModel.from_pretrained(saved_pipeline / "unet")
    scheduler = DDPMScheduler.from_pretrained(saved_pipeline / "scheduler")
    denoiser = DiffusersDenoiser(unet, scheduler)
    sigmas = karras_sigmas(5, denoiser.sigma_min, denoiser.sigma_max)
    with torch.no_grad():
        ours = sample(denoiser, torch.randn(2, 1, 8, 8), sigmas, "heun")
    assert ours.shape == (2, 1, 8, 8) and torch.isfinite(ours).all()
    pipeline = DDIMPipeline(unet=unet, scheduler=DDIMScheduler.from_config(scheduler.config))
    pipeline.set_progress_bar_config(disable=True)
    theirs = pipeline(batch_size=2, num_inference_steps=5, output_type="np",
                      generator=torch.Generator().manual_seed(0)).images
    assert theirs.shape == (2, 8, 8, 1)


def test_adapter_rejects_unknown_prediction_type_and_scheduler():
    with pytest.raises(GenlabError, match="prediction_type"):
        DiffusersDenoiser(ZeroNet(), DDPMScheduler(), prediction_type="flow")
    with pytest.raises(GenlabError, match="alphas_cumprod"):
        DiffusersDenoiser(ZeroNet(), object())
