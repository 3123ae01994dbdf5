"""CFG / ICG / TSG identities, batching, hook hygiene and bad input on a genlab U-Net."""

import math

import pytest
import torch
from torch import nn

from genlab.core.denoiser import EDMDenoiser
from genlab.core.edm import karras_sigmas, sample
from genlab.core.nets import ImageUNet
from genlab.errors import GenlabError
from genlab.guidance import GuidanceTerm, GuidedDenoiser, guide_class_model, time_embedding_modules

NUM_CLASSES = 10


def randomised(net: nn.Module) -> nn.Module:
    """Give zero-initialised layers random weights so outputs depend on class and time."""
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return net.eval()


@pytest.fixture(scope="module")
def denoiser():
    return EDMDenoiser(randomised(ImageUNet(in_channels=1, resolution=8, channel_mults=(1, 2),
                                            num_classes=NUM_CLASSES)))


@pytest.fixture(scope="module")
def unconditional():
    return EDMDenoiser(randomised(ImageUNet(in_channels=1, resolution=8, channel_mults=(1, 2))))


def batch(seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 1, 8, 8, generator=generator) * 2
    return x, torch.full((4,), 2.0), torch.tensor([0, 3, 5, 9])


@torch.no_grad()
def test_icg_with_scale_one_equals_conditional_output(denoiser):
    x, sigma, labels = batch()
    guided = guide_class_model(denoiser, NUM_CLASSES, [GuidanceTerm("icg", 1.0)])
    torch.testing.assert_close(guided(x, sigma, class_labels=labels), denoiser(x, sigma, class_labels=labels))


@torch.no_grad()
def test_cfg_with_scale_zero_equals_unconditional_output(denoiser):
    x, sigma, labels = batch()
    guided = guide_class_model(denoiser, NUM_CLASSES, [GuidanceTerm("cfg", 0.0)])
    null = torch.full_like(labels, NUM_CLASSES)
    torch.testing.assert_close(guided(x, sigma, class_labels=labels), denoiser(x, sigma, class_labels=null),
                               atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_cfg_is_extrapolation_from_unconditional_to_conditional(denoiser):
    x, sigma, labels = batch()
    cond = denoiser(x, sigma, class_labels=labels)
    uncond = denoiser(x, sigma, class_labels=torch.full_like(labels, NUM_CLASSES))
    guided = guide_class_model(denoiser, NUM_CLASSES, [GuidanceTerm("cfg", 3.0)])
    torch.testing.assert_close(guided(x, sigma, class_labels=labels), uncond + 3.0 * (cond - uncond),
                               atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_tsg_with_zero_noise_equals_plain_output(denoiser, unconditional):
    x, sigma, labels = batch()
    tsg = [GuidanceTerm("tsg", 4.0, noise_scale=0.0)]
    torch.testing.assert_close(guide_class_model(denoiser, NUM_CLASSES, tsg)(x, sigma, class_labels=labels),
                               denoiser(x, sigma, class_labels=labels), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(guide_class_model(unconditional, 0, tsg)(x, sigma), unconditional(x, sigma),
                               atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_tsg_and_icg_change_the_output_and_redraw_each_call(denoiser):
    x, sigma, labels = batch()
    plain = denoiser(x, sigma, class_labels=labels)
    for method in ("icg", "tsg"):
        guided = guide_class_model(denoiser, NUM_CLASSES, [GuidanceTerm(method, 2.0, noise_scale=2.0)])
        first, second = guided(x, sigma, class_labels=labels), guided(x, sigma, class_labels=labels)
        assert (first - plain).abs().max() > 1e-3, method
        assert (first - second).abs().max() > 1e-4, f"{method} must draw afresh at every call"


class CountingDenoiser(nn.Module):
    """Counts calls and batch sizes of the wrapped denoiser."""

    def __init__(self, inner):
        super().__init__()
        self.model, self.batches = inner, []

    def time_fraction(self, sigma):
        return self.model.time_fraction(sigma)

    def forward(self, x, sigma, **cond):
        self.batches.append(x.shape[0])
        return self.model(x, sigma, **cond)


@torch.no_grad()
@pytest.mark.parametrize(("methods", "branches"), [(["cfg"], 2), (["icg"], 2), (["tsg"], 2), (["icg", "tsg"], 3)])
def test_all_branches_go_through_the_model_as_one_batch(denoiser, methods, branches):
    counting = CountingDenoiser(denoiser)
    guided = guide_class_model(counting, NUM_CLASSES, [GuidanceTerm(m, 2.0) for m in methods])
    x, sigma, labels = batch()
    guided(x, sigma, class_labels=labels)
    assert counting.batches == [4 * branches]


@torch.no_grad()
def test_interval_and_power_schedule(denoiser):
    x, _, labels = batch()
    counting = CountingDenoiser(denoiser)
    guided = guide_class_model(counting, NUM_CLASSES, [GuidanceTerm("cfg", 3.0, interval=(0.2, 0.8))])
    low_sigma = torch.full((4,), 0.003)  # t close to 0: outside the interval
    torch.testing.assert_close(guided(x, low_sigma, class_labels=labels), denoiser(x, low_sigma, class_labels=labels))
    assert counting.batches == [4], "an inactive term costs no extra model rows"
    term = GuidanceTerm("cfg", 3.0, schedule="power", schedule_exponent=2.0)
    t = torch.tensor([0.0, 0.5, 1.0])
    torch.testing.assert_close(term.strength(t, t), torch.tensor([0.0, 0.5, 2.0]))
    sigma_term = GuidanceTerm("cfg", 3.0, interval=(1.0, 10.0), interval_unit="sigma")
    torch.testing.assert_close(sigma_term.strength(t, torch.tensor([0.5, 5.0, 20.0])), torch.tensor([0.0, 2.0, 0.0]))


def test_tsg_hook_is_removed_after_sampling(denoiser):
    module = time_embedding_modules(denoiser)[0]
    x, _, labels = batch()
    sigma = torch.full((4,), 1.0)
    with torch.no_grad():
        before = denoiser(x, sigma, class_labels=labels)
        guided = guide_class_model(denoiser, NUM_CLASSES, [GuidanceTerm("icg", 2.0), GuidanceTerm("tsg", 2.0)])
        sample(guided, torch.randn(4, 1, 8, 8), karras_sigmas(3), class_labels=labels)
        after = denoiser(x, sigma, class_labels=labels)
    assert not module._forward_hooks
    torch.testing.assert_close(after, before)


def test_hook_is_removed_even_when_the_model_fails(denoiser):
    guided = guide_class_model(denoiser, NUM_CLASSES, [GuidanceTerm("tsg", 2.0)])
    with pytest.raises(GenlabError):
        guided(torch.randn(2, 3, 8, 8), torch.ones(2), class_labels=torch.tensor([0, 1]))  # wrong channels
    assert not time_embedding_modules(denoiser)[0]._forward_hooks


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "cfg", "scale": -1.0}, "scale must be a finite number >= 0"),
        ({"method": "icg", "scale": math.nan}, "scale must be a finite number >= 0"),
        ({"method": "tsg", "scale": 2.0, "noise_scale": -0.5}, "noise_scale"),
        ({"method": "pag", "scale": 2.0}, "unknown guidance method"),
        ({"method": "cfg", "scale": 2.0, "interval": (0.8, 0.2)}, "low <= high"),
    ],
)
def test_bad_terms_are_rejected(kwargs, message):
    with pytest.raises(GenlabError, match=message):
        GuidanceTerm(**kwargs)


def test_bad_models_and_labels_are_rejected(denoiser, unconditional):
    plain = nn.Linear(2, 2)
    plain.time_fraction = lambda sigma: sigma
    with pytest.raises(GenlabError, match="no time-embedding module"):
        GuidedDenoiser(plain, [GuidanceTerm("tsg", 2.0)])
    with pytest.raises(GenlabError, match="shared by all blocks"):
        GuidedDenoiser(denoiser, [GuidanceTerm("tsg", 2.0, first_blocks=1)])
    x, sigma, labels = batch()
    guided = guide_class_model(denoiser, NUM_CLASSES, [GuidanceTerm("icg", 2.0)])
    with pytest.raises(GenlabError, match="class id out of range: got 10"):
        guided(x, sigma, class_labels=torch.tensor([0, 1, 2, 10]))
    with pytest.raises(GenlabError, match="cfg guidance needs a class-conditional model"):
        guide_class_model(unconditional, 0, [GuidanceTerm("cfg", 2.0)])
    with pytest.raises(GenlabError, match="needs a null_condition"):
        GuidedDenoiser(denoiser, [GuidanceTerm("cfg", 2.0)], independent_condition=lambda c: c)
