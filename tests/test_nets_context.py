"""Cross-attention to context tokens in the image backbones (used by DisCo-Diff's latents)."""

import pytest
import torch

from genlab.core.nets import ImageDiT, ImageUNet
from genlab.core.nets.attention import ContextAttention
from genlab.errors import GenlabError

CONTEXT_DIM = 16
# Two places that cross-attend in each: the small U-Net's attention levels (1, 2), the DiT's 4 blocks.
CONFIGS = {
    ImageUNet: {"in_channels": 3, "resolution": 16, "channel_mults": (1, 2, 2), "attention_levels": (1, 2),
                "base_channels": 16},
    ImageDiT: {"in_channels": 3, "resolution": 16, "hidden_size": 32, "depth": 4, "num_heads": 4},
}


def make(cls, **extra):
    """A net whose zero-initialised layers (output, adaLN) are randomised, except the context projections."""
    torch.manual_seed(0)
    net = cls(num_classes=3, **CONFIGS[cls], **extra)
    with torch.no_grad():
        for name, param in net.named_parameters():
            if not param.any() and "context_attention" not in name:
                param.normal_(std=0.1)
    return net


def call(net, context, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 16, 16, generator=g)
    return net(x, torch.randn(2, generator=g) * 0.5, torch.tensor([0, 2]), context=context)


def context_layers(net):
    return [m for m in net.modules() if isinstance(m, ContextAttention)]


def randomise_outputs(layers):
    for layer in layers:
        torch.nn.init.normal_(layer.attn.proj.weight, std=0.2)


@pytest.mark.parametrize("cls", [ImageUNet, ImageDiT])
def test_fresh_cross_attention_is_the_identity(cls):
    plain = make(cls)
    with_context = make(cls, cross_attention_dim=CONTEXT_DIM)
    missing, unexpected = with_context.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all("context_attention" in name for name in missing)
    context = torch.randn(2, 3, CONTEXT_DIM)
    with torch.no_grad():
        assert call(plain, None).abs().mean() > 0.01
        torch.testing.assert_close(call(with_context, context), call(plain, None))
        randomise_outputs(context_layers(with_context))
        assert not torch.allclose(call(with_context, context), call(plain, None), atol=1e-4)


@pytest.mark.parametrize("cls", [ImageUNet, ImageDiT])
def test_grouped_context_reaches_only_its_layers(cls):
    net = make(cls, cross_attention_dim=CONTEXT_DIM, context_groups=2)
    layers = context_layers(net)
    assert {layer.group for layer in layers} == {0, 1}
    randomise_outputs([layer for layer in layers if layer.group == 1])  # group-0 layers stay the identity
    context = torch.randn(2, 4, CONTEXT_DIM)
    changed_group_0, changed_group_1 = context.clone(), context.clone()
    changed_group_0[:, :2] += 1.0
    changed_group_1[:, 2:] += 1.0
    with torch.no_grad():
        reference = call(net, context)
        torch.testing.assert_close(call(net, changed_group_0), reference)
        assert not torch.allclose(call(net, changed_group_1), reference, atol=1e-4)


def test_unet_gives_the_coarse_group_to_the_deepest_level():
    net = make(ImageUNet, cross_attention_dim=CONTEXT_DIM, context_groups=2)
    bottleneck_groups = {m.group for m in net.bottleneck.modules() if isinstance(m, ContextAttention)}
    assert bottleneck_groups == {0}


@pytest.mark.parametrize("cls", [ImageUNet, ImageDiT])
def test_bad_context_is_rejected(cls):
    net = make(cls, cross_attention_dim=CONTEXT_DIM)
    with pytest.raises(GenlabError, match="pass context"):
        call(net, None)
    with pytest.raises(GenlabError, match="context must be a float tensor"):
        call(net, torch.randn(2, 3, CONTEXT_DIM + 1))
    with pytest.raises(GenlabError, match="no cross-attention"):
        call(make(cls), torch.randn(2, 3, CONTEXT_DIM))
    with pytest.raises(GenlabError, match="context_groups"):
        make(cls, cross_attention_dim=CONTEXT_DIM, context_groups=5)
