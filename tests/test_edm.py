"""EDM math: preconditioning identities, schedules, and samplers against closed-form denoisers."""

import math

import pytest
import torch

from genlab.core.edm import (
    EDMSchedule,
    ancestral_scales,
    ancestral_steps,
    append_dims,
    edm_loss,
    held_out_loss,
    karras_sigmas,
    loss_weight,
    network_evaluations,
    preconditioning,
    sample,
    sample_ancestral,
    sample_training_sigmas,
)
from genlab.errors import GenlabError


def gaussian_denoiser(mean: torch.Tensor, cov: torch.Tensor):
    """Ideal denoiser E[x0 | x] for data N(mean, cov): mean + cov (cov + σ²I)⁻¹ (x − mean)."""

    def denoise(x, sigma):
        eye = torch.eye(len(mean), dtype=torch.float64)
        gain = cov @ torch.linalg.inv(cov + sigma.double()[:, None, None] ** 2 * eye)  # [B, d, d]
        return (mean + torch.einsum("bij,bj->bi", gain, x.double() - mean)).to(x.dtype)

    return denoise


def mixture_denoiser(means: torch.Tensor, weights: torch.Tensor, std: float):
    """Ideal denoiser for an isotropic Gaussian mixture (component std ``std``)."""

    def denoise(x, sigma):
        x = x.double()
        total_var = std**2 + sigma.double()[:, None] ** 2
        log_resp = weights.log() - ((x[:, None] - means[None]) ** 2).sum(-1) / (2 * total_var)
        resp = log_resp.softmax(-1)
        shrink = std**2 / total_var
        per_component = means[None] + shrink[..., None] * (x[:, None] - means[None])
        return (resp[..., None] * per_component).sum(1).float()

    return denoise


def test_preconditioning_gives_unit_variance_inputs_and_targets():
    sigma_data = 0.5
    sigma = torch.logspace(-3, 2, 50, dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = preconditioning(sigma, sigma_data)
    torch.testing.assert_close(c_in**2 * (sigma**2 + sigma_data**2), torch.ones_like(sigma))
    target_var = ((1 - c_skip) ** 2 * sigma_data**2 + c_skip**2 * sigma**2) / c_out**2
    torch.testing.assert_close(target_var, torch.ones_like(sigma))
    torch.testing.assert_close(loss_weight(sigma, sigma_data), 1 / c_out**2)
    torch.testing.assert_close(c_noise, sigma.log() / 4)


def test_training_sigmas_are_log_normal():
    sigmas = sample_training_sigmas(200_000, EDMSchedule(), generator=torch.Generator().manual_seed(0))
    assert abs(sigmas.log().mean().item() - (-1.2)) < 0.01
    assert abs(sigmas.log().std().item() - 1.2) < 0.01


def test_karras_sigmas_endpoints_and_order():
    sigmas = karras_sigmas(18, 0.002, 80.0, 7.0)
    assert sigmas.shape == (19,)
    assert sigmas[0].item() == pytest.approx(80.0) and sigmas[-2].item() == pytest.approx(0.002)
    assert sigmas[-1].item() == 0 and bool((sigmas[1:] < sigmas[:-1]).all())
    assert network_evaluations(18, "heun") == 35 and network_evaluations(18, "euler") == 18
    with pytest.raises(GenlabError, match="steps"):
        karras_sigmas(0)


def test_loss_of_ideal_denoiser_is_lower_than_of_identity():
    torch.manual_seed(0)
    mean, cov = torch.tensor([0.3, -0.2], dtype=torch.float64), torch.tensor([[0.2, 0.05], [0.05, 0.1]], dtype=torch.float64)
    x0 = torch.distributions.MultivariateNormal(mean, cov).sample((4096,)).float()

    ideal_loss = edm_loss(gaussian_denoiser(mean, cov), x0[:512]).mean()
    identity_loss = edm_loss(lambda x, sigma: x, x0[:512]).mean()
    assert ideal_loss < 0.5 * identity_loss


# The deterministic sampler is accurate at 35 levels; with churn the discretisation error is
# larger (about 7% of the variance at 35 levels) and vanishes as levels are added.
@pytest.mark.parametrize(("churn", "levels"), [(0.0, 35), (10.0, 100)])
def test_heun_reproduces_gaussian_mean_and_covariance(churn, levels):
    mean = torch.tensor([0.5, -1.0], dtype=torch.float64)
    cov = torch.tensor([[0.6, 0.25], [0.25, 0.3]], dtype=torch.float64)
    generator = torch.Generator().manual_seed(1)
    noise = torch.randn(40_000, 2, generator=generator)
    samples = sample(gaussian_denoiser(mean, cov), noise, karras_sigmas(levels), "heun", churn=churn,
                     generator=generator).double()
    torch.testing.assert_close(samples.mean(0), mean, atol=0.02, rtol=0)
    torch.testing.assert_close(torch.cov(samples.T), cov, atol=0.02, rtol=0)


def test_heun_reproduces_mixture_weights_and_component_spread():
    means = torch.tensor([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]], dtype=torch.float64)
    weights = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    std = 0.3
    noise = torch.randn(30_000, 2, generator=torch.Generator().manual_seed(2))
    samples = sample(mixture_denoiser(means, weights, std), noise, karras_sigmas(35), "heun").double()
    nearest = torch.cdist(samples, means).argmin(1)
    shares = torch.bincount(nearest, minlength=3).double() / len(samples)
    torch.testing.assert_close(shares, weights, atol=0.015, rtol=0)
    for k in range(3):
        spread = (samples[nearest == k] - means[k]).std(0)
        torch.testing.assert_close(spread, torch.full((2,), std, dtype=torch.float64), atol=0.03, rtol=0)


def test_heun_is_more_accurate_than_euler_at_equal_levels():
    mean = torch.tensor([1.0, 1.0], dtype=torch.float64)
    cov = torch.eye(2, dtype=torch.float64) * 0.05
    noise = torch.randn(20_000, 2, generator=torch.Generator().manual_seed(3))
    denoise = gaussian_denoiser(mean, cov)
    errors = {}
    for method in ("euler", "heun"):
        out = sample(denoise, noise, karras_sigmas(20), method).double()
        errors[method] = (torch.cov(out.T) - cov).abs().max().item()
    assert errors["heun"] < 0.5 * errors["euler"]


def test_sample_rejects_bad_settings():
    noise = torch.zeros(2, 2)
    with pytest.raises(GenlabError, match="sampler"):
        sample(lambda x, s: x, noise, karras_sigmas(2), "rk4")
    with pytest.raises(GenlabError, match="churn"):
        sample(lambda x, s: x, noise, karras_sigmas(2), churn=math.nan)


def test_append_dims_broadcasts_per_sample_values():
    values, like = torch.tensor([1.0, 2.0]), torch.ones(2, 3, 4, 5)
    assert append_dims(values, like).shape == (2, 1, 1, 1)
    torch.testing.assert_close((append_dims(values, like) * like)[:, 2, 3, 4], values)


def test_ancestral_sampler_without_noise_is_the_euler_sampler():
    denoise = gaussian_denoiser(torch.tensor([0.5, -1.0], dtype=torch.float64), torch.eye(2, dtype=torch.float64) * 0.3)
    noise = torch.randn(200, 2, generator=torch.Generator().manual_seed(4))
    euler_states, ancestral_states = [], []
    sample(denoise, noise, karras_sigmas(10), "euler", callback=lambda i, x: euler_states.append(x))
    out = sample_ancestral(denoise, noise, karras_sigmas(10), eta=0.0,
                           callback=lambda i, x: ancestral_states.append(x))
    assert out.dtype == torch.float32 and len(ancestral_states) == len(euler_states) == 11
    for ancestral, euler in zip(ancestral_states, euler_states, strict=True):
        torch.testing.assert_close(ancestral.double(), euler, atol=1e-4, rtol=1e-4)


def test_ancestral_sampler_with_ddpm_noise_reproduces_gaussian_mean_and_covariance():
    mean = torch.tensor([0.5, -1.0], dtype=torch.float64)
    cov = torch.tensor([[0.6, 0.25], [0.25, 0.3]], dtype=torch.float64)
    noise = torch.randn(10_000, 2, generator=torch.Generator().manual_seed(1))
    samples = sample_ancestral(gaussian_denoiser(mean, cov), noise, karras_sigmas(100), eta=1.0,
                               generator=torch.Generator().manual_seed(2)).double()
    torch.testing.assert_close(samples.mean(0), mean, atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(samples.T), cov, atol=0.1, rtol=0)  # the stochastic steps' larger error


def test_ancestral_steps_are_gaussian_and_keep_the_marginal_noise_level():
    denoise = gaussian_denoiser(torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64))
    noise, sigmas = torch.randn(3, 2, generator=torch.Generator().manual_seed(5)), karras_sigmas(4)
    step_noise = torch.randn(4, 3, 2, generator=torch.Generator().manual_seed(6))
    steps = list(ancestral_steps(denoise, noise, sigmas, eta=0.7, step_noise=step_noise))
    assert [step.index for step in steps] == [0, 1, 2, 3] and float(steps[-1].sigma_up) == 0
    for step in steps:
        torch.testing.assert_close(step.x_next, step.mean + step.sigma_up * step_noise[step.index], rtol=0, atol=0)
        down, up = ancestral_scales(sigmas[step.index].float(), sigmas[step.index + 1].float(), 0.7)
        torch.testing.assert_close(down**2 + up**2, sigmas[step.index + 1].float() ** 2)
    assert torch.equal(sample_ancestral(denoise, noise, sigmas, eta=0.7, step_noise=step_noise), steps[-1].x_next)


def test_ancestral_sampler_keeps_the_graph_of_the_last_k_steps_only():
    weight = torch.tensor(0.5, requires_grad=True)
    graph = []

    def denoise(x, sigma):
        graph.append(torch.is_grad_enabled())
        return weight * x

    noise = torch.ones(2, 2)
    sample_ancestral(denoise, noise, karras_sigmas(5), grad_steps=2).sum().backward()
    assert graph == [False, False, False, True, True] and weight.grad is not None
    graph.clear()
    sample_ancestral(denoise, noise, karras_sigmas(3))
    assert graph == [True, True, True]
    with pytest.raises(GenlabError, match="more than the 3 sampling steps"):
        sample_ancestral(denoise, noise, karras_sigmas(3), grad_steps=4)


def test_held_out_loss_of_the_ideal_denoiser_is_one_at_every_level():
    # data N(0, σ_data² I): the ideal denoiser's squared error is σ_data²σ²/(σ_data² + σ²) per dimension,
    # which λ(σ) = (σ² + σ_data²)/(σ σ_data)² turns into exactly 1
    sigma_data = EDMSchedule().sigma_data
    x0 = sigma_data * torch.randn(6000, 4, generator=torch.Generator().manual_seed(0))
    denoiser = gaussian_denoiser(torch.zeros(4, dtype=torch.float64), sigma_data**2 * torch.eye(4, dtype=torch.float64))
    losses = held_out_loss(denoiser, x0, [0.05, 0.5, 5.0], seed=3)
    assert losses.shape == (3,)
    assert torch.allclose(losses, torch.ones(3), atol=0.05)
    identity = held_out_loss(lambda x, sigma: x, x0, [0.5, 5.0], seed=3)  # (σ² + σ_data²)/σ_data²: 2 and 101
    assert torch.allclose(identity, torch.tensor([2.0, 101.0]), rtol=0.05)


def test_held_out_loss_sees_the_same_noise_whatever_the_batch_size():
    x0 = torch.randn(50, 3)
    denoiser = gaussian_denoiser(torch.zeros(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64))
    a = held_out_loss(denoiser, x0, [0.3, 2.0], seed=1, batch_size=7)
    b = held_out_loss(denoiser, x0, [0.3, 2.0], seed=1, batch_size=64)
    assert torch.allclose(a, b, rtol=1e-5)
    assert not torch.allclose(a, held_out_loss(denoiser, x0, [0.3, 2.0], seed=2))
