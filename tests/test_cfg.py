"""Classifier-free guidance in core (the guided prediction, null conditions, the CFG denoiser) and the
diffusers VAE helpers, on closed-form toy denoisers."""

import math

import pytest
import torch

from genlab.core.cfg import CFGDenoiser, cfg_denoise, fixed_embedding, guided_prediction, null_class
from genlab.core.pipelines import latent_side, vae_scale_factor
from genlab.errors import GenlabError


class CountingDenoiser(torch.nn.Module):
    """``D(x, σ, class_labels, shift) = x·(1 + label) + shift``, counting its calls and batch sizes."""

    sigma_min, sigma_max = 0.002, 80.0

    def __init__(self):
        super().__init__()
        self.batches = []

    def time_fraction(self, sigma):
        return sigma / self.sigma_max

    def forward(self, x, sigma, class_labels, shift=0.0):
        self.batches.append(x.shape[0])
        return x * (1 + class_labels.float()[:, None]) + shift


def test_guided_prediction_sums_the_weighted_differences():
    d_cond, d_a, d_b = torch.tensor([[2.0, 4.0]]).repeat(2, 1), torch.ones(2, 2), torch.zeros(2, 2)
    torch.testing.assert_close(guided_prediction(d_cond, []), d_cond)
    torch.testing.assert_close(guided_prediction(d_cond, [(0.5, d_a), (torch.tensor([0.0, 1.0]), d_b)]),
                               torch.tensor([[2.5, 5.5], [4.5, 9.5]]))


def test_cfg_is_the_null_prediction_plus_w_times_the_difference_in_one_batched_call():
    denoiser = CountingDenoiser()
    x, sigma, labels = torch.randn(3, 2), torch.tensor([0.5, 1.0, 2.0]), torch.tensor([0, 1, 2])
    shift = torch.tensor([[1.0, -1.0]]).repeat(3, 1)
    cfg = CFGDenoiser(denoiser, 2.5, "class_labels", null_class(3))
    out = cfg(x, sigma, class_labels=labels, shift=shift)
    conditional, null = denoiser(x, sigma, labels, shift), denoiser(x, sigma, torch.full_like(labels, 3), shift)
    torch.testing.assert_close(out, null + 2.5 * (conditional - null))
    assert denoiser.batches[0] == 6  # [cond, null] in one call, the other batch tensors repeated
    assert torch.equal(CFGDenoiser(denoiser, 1.0, "class_labels", null_class(3))(x, sigma, class_labels=labels),
                       denoiser(x, sigma, labels))
    torch.testing.assert_close(cfg_denoise(denoiser, x, sigma, 0.0, "class_labels", torch.full_like(labels, 3),
                                           class_labels=labels), denoiser(x, sigma, torch.full_like(labels, 3)))
    assert (cfg.sigma_min, cfg.sigma_max) == (0.002, 80.0)
    torch.testing.assert_close(cfg.time_fraction(torch.tensor([40.0])), torch.tensor([0.5]))


def test_cfg_settings_and_calls_are_checked():
    for scale in (-1.0, math.nan, math.inf):
        with pytest.raises(GenlabError, match="cfg scale must be a finite number >= 0"):
            CFGDenoiser(CountingDenoiser(), scale, "class_labels", null_class(3))
    with pytest.raises(GenlabError, match="without class_labels"):
        CFGDenoiser(CountingDenoiser(), 2.0, "class_labels", null_class(3))(torch.zeros(1, 2), torch.ones(1))


def test_null_conditions_are_shaped_like_the_condition():
    labels = torch.tensor([0, 4, 2])
    assert torch.equal(null_class(9)(labels), torch.full_like(labels, 9))
    empty = torch.arange(6.0).reshape(1, 2, 3)
    made = fixed_embedding(empty)(torch.zeros(4, 2, 3, dtype=torch.float64))
    assert made.shape == (4, 2, 3) and made.dtype == torch.float64 and torch.equal(made[3], empty[0].double())


def test_latent_sides_follow_the_vae_downscaling():
    factor = vae_scale_factor([128, 256, 512, 512])
    assert factor == 8 and vae_scale_factor((8,)) == 1
    assert latent_side(None, "height", 64, factor) == 64 and latent_side(256, "width", 64, factor) == 32
    for size in (0, 12, 250):
        with pytest.raises(GenlabError, match="height must be a positive multiple of 8"):
            latent_side(size, "height", 64, factor)
