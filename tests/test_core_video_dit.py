"""The video DiT backbone: shapes, zero init, conditioning, factorised attention, save/load, bad input."""

import pytest
import torch

from genlab.core.nets import VideoDiT
from genlab.core.nets.video_dit import first_frame_condition
from genlab.errors import GenlabError

TINY = {"frames": 4, "resolution": 8, "patch_size": 2, "hidden_size": 16, "depth": 2, "num_heads": 2}


def randomised(net: VideoDiT) -> VideoDiT:
    """Give every weight (zero-initialised ones too) random values, so outputs depend on all inputs."""
    torch.manual_seed(1)
    for parameter in net.parameters():
        torch.nn.init.normal_(parameter, std=0.2)
    return net


@pytest.mark.parametrize("attention", ["full", "factorised"])
@pytest.mark.parametrize("temporal_patch_size", [1, 2])
def test_output_shape_and_zero_init(attention, temporal_patch_size):
    net = VideoDiT(attention=attention, temporal_patch_size=temporal_patch_size, **TINY)
    x = torch.randn(3, 4, 3, 8, 8)
    assert net.tokens_per_clip == (4 // temporal_patch_size) * 16
    assert torch.equal(net(x, torch.zeros(3)), torch.zeros_like(x))
    out = randomised(net)(x, torch.zeros(3))
    assert out.shape == x.shape and out.dtype == torch.float32 and out.abs().sum() > 0


def test_factorised_attention_mixes_frames_only_through_temporal_attention():
    """Changing frame 0 changes frame 3's output through the temporal attention; with it zeroed, it does not."""
    net = randomised(VideoDiT(attention="factorised", **TINY))
    x = torch.randn(1, 4, 3, 8, 8)
    changed = x.clone()
    changed[:, 0] += 1.0
    sigma = torch.zeros(1)
    assert not torch.allclose(net(x, sigma)[:, 3], net(changed, sigma)[:, 3])
    for block in net.blocks:
        torch.nn.init.zeros_(block.temporal_attn.proj.weight)
        torch.nn.init.zeros_(block.temporal_attn.proj.bias)
    torch.testing.assert_close(net(x, sigma)[:, 3], net(changed, sigma)[:, 3])


def test_condition_channels_and_classes_change_the_output():
    net = randomised(VideoDiT(num_classes=3, condition_channels=3, **TINY))
    x = torch.randn(2, 4, 3, 8, 8)
    first = first_frame_condition(torch.randn(2, 3, 8, 8), 4)
    assert first.shape == (2, 4, 3, 8, 8) and torch.equal(first[:, 0], first[:, 3])
    sigma = torch.zeros(2)
    out = net(x, sigma, torch.tensor([0, 1]), condition=first)
    assert not torch.allclose(out, net(x, sigma, torch.tensor([0, 1]), condition=first + 1))
    assert not torch.allclose(out, net(x, sigma, torch.tensor([2, 1]), condition=first))


def test_save_load_round_trip(tmp_path):
    net = randomised(VideoDiT(attention="factorised", **TINY))
    net.save_pretrained(tmp_path)
    loaded = VideoDiT.from_pretrained(tmp_path)
    x = torch.randn(2, 4, 3, 8, 8)
    torch.testing.assert_close(net(x, torch.ones(2)), loaded(x, torch.ones(2)), rtol=0, atol=0)


def test_bad_input():
    net = VideoDiT(condition_channels=3, **TINY)
    with pytest.raises(GenlabError, match="x must be a clip"):
        net(torch.randn(2, 5, 3, 8, 8), torch.zeros(2))
    with pytest.raises(GenlabError, match="condition must have shape"):
        net(torch.randn(2, 4, 3, 8, 8), torch.zeros(2))
    with pytest.raises(GenlabError, match="frames must be a positive multiple"):
        VideoDiT(temporal_patch_size=3, **TINY)
    with pytest.raises(GenlabError, match="attention must be one of"):
        VideoDiT(attention="axial", **TINY)
