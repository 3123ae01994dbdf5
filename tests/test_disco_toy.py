"""DisCo-Diff pieces so far: Gumbel codes, null-latent dropout, the 2-D toy and its metrics."""

import pytest
import torch

from genlab.disco.codes import code_usage, gumbel_softmax_codes
from genlab.disco.toy import ToyDisCo, ring_of_gaussians
from genlab.errors import GenlabError
from genlab.experiments.disco import toy as disco
from genlab.metrics import wasserstein2


def test_straight_through_codes_are_one_hot_forward_with_gradients():
    logits = torch.randn(5, 3, 8, requires_grad=True)
    codes = gumbel_softmax_codes(logits, temperature=1.0, straight_through=True)
    assert torch.equal(codes.detach().sum(-1), torch.ones(5, 3))
    assert set(codes.detach().unique().tolist()) <= {0.0, 1.0}
    (codes * torch.randn_like(codes)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_soft_codes_are_distributions_and_temperature_is_checked():
    codes = gumbel_softmax_codes(torch.randn(4, 2, 5), temperature=0.5)
    torch.testing.assert_close(codes.sum(-1), torch.ones(4, 2))
    assert ((codes > 0) & (codes < 1)).any()
    with pytest.raises(GenlabError, match="temperature"):
        gumbel_softmax_codes(torch.randn(1, 1, 2), temperature=0.0)


def test_code_usage_counts_used_codes_per_latent():
    indices = torch.tensor([[0, 1], [1, 1], [3, 1]])
    torch.testing.assert_close(code_usage(indices, 4), torch.tensor([0.75, 0.25]))


def test_dropout_one_makes_the_denoiser_ignore_the_encoder():
    torch.manual_seed(0)
    model = ToyDisCo(num_latents=1, latent_dropout=1.0, hidden=32)
    model(ring_of_gaussians(64)).backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.encoder.parameters())
    torch.manual_seed(0)
    kept = ToyDisCo(num_latents=1, latent_dropout=0.0, hidden=32)
    kept(ring_of_gaussians(64)).backward()
    assert any(p.grad.abs().sum() > 0 for p in kept.encoder.parameters())


def test_bad_toy_settings_are_rejected():
    with pytest.raises(GenlabError, match="num_codes"):
        ToyDisCo(num_latents=1, num_codes=0)
    with pytest.raises(GenlabError, match="latent_dropout"):
        ToyDisCo(latent_dropout=1.5)


def test_w2_and_straightness_metrics():
    points = torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
    assert wasserstein2(points, points) == pytest.approx(0.0, abs=1e-6)  # sqrt of cdist's rounding
    assert wasserstein2(points, points + torch.tensor([3.0, 4.0])) == pytest.approx(5.0, rel=1e-6)
    line = torch.linspace(0, 1, 11)[:, None, None] * torch.tensor([[1.0, 2.0]])
    assert disco.straightness(line) == pytest.approx(1.0)
    zigzag = torch.tensor([[[0.0, 0.0]], [[1.0, 1.0]], [[2.0, 0.0]]])
    assert disco.straightness(zigzag) == pytest.approx(2 ** 0.5)


def test_toy_reproduction_runs_end_to_end_and_reports_code_usage(tmp_path):
    config = disco.ToyConfig(seeds=(0,), train_steps=200, train_points=2000, eval_points=300, sampler_steps=10)
    results = disco.run_toy(tmp_path, config)["results"]
    for name in ("EDM", "DisCo-Diff"):
        record = results[name][0]
        assert 0 < record["w2"] < 2 and 0 <= record["off_mode"] <= 1 and record["straightness"] >= 1
    assert 0 < results["DisCo-Diff"][0]["code_usage"] <= 1 and "code_usage" not in results["EDM"][0]
    assert (tmp_path / "trajectories.png").stat().st_size > 1000
    assert "| DisCo-Diff |" in (tmp_path / "report.md").read_text()
