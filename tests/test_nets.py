"""Tests for the image backbones ``ImageUNet`` and ``ImageDiT``."""

import json

import pytest
import torch
from torch import nn

from genlab.core.nets import ImageDiT, ImageUNet
from genlab.errors import GenlabError

NUM_CLASSES = 5
NETS = [ImageUNet, ImageDiT]
# (in_channels, resolution, extra config) per net; 32x32 uses three UNet levels and 4x4 DiT patches.
SHAPES = {
    ImageUNet: [(1, 16, {}), (3, 32, {"channel_mults": (1, 2, 2), "attention_levels": (1, 2)})],
    ImageDiT: [(1, 16, {}), (3, 32, {"patch_size": 4})],
}


def make(cls: type, num_classes: int = NUM_CLASSES, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return cls(num_classes=num_classes, **kwargs)


def inputs(model: nn.Module, batch: int = 4, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ``x [B, C, H, W]`` and noise labels ``[B]`` in the EDM range of ``ln(sigma) / 4``."""
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    x = torch.randn(batch, cfg.in_channels, cfg.resolution, cfg.resolution, generator=g)
    noise = torch.empty(batch).uniform_(-1.5, 1.2, generator=g)
    return x, noise


def perturb(model: nn.Module, scale: float = 0.05) -> nn.Module:
    """Add Gaussian noise to every parameter, so that the zero-initialised layers become nonzero."""
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return model


@pytest.mark.parametrize("num_classes", [0, NUM_CLASSES])
@pytest.mark.parametrize("cls", NETS)
def test_output_shape_and_dtype(cls: type, num_classes: int) -> None:
    for in_channels, resolution, extra in SHAPES[cls]:
        model = perturb(make(cls, num_classes, in_channels=in_channels, resolution=resolution, **extra))
        x, noise = inputs(model)
        labels = torch.tensor([0, 1, NUM_CLASSES, 2]) if num_classes else None
        out = model(x, noise, labels)
        assert out.shape == x.shape
        assert out.dtype == torch.float32
        assert torch.isfinite(out).all()
        out64 = model.double()(x.double(), noise.double(), labels)
        assert out64.dtype == torch.float64
        torch.testing.assert_close(out64.float(), out, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("cls", NETS)
def test_zero_output_at_construction(cls: type) -> None:
    model = make(cls)
    x, noise = inputs(model)
    assert torch.equal(model(x, noise, torch.tensor([0, 1, 2, NUM_CLASSES])), torch.zeros_like(x))


@pytest.mark.parametrize("cls", NETS)
def test_save_and_load_round_trip(cls: type, tmp_path) -> None:
    model = perturb(make(cls, in_channels=3, resolution=8)).eval()
    model.save_pretrained(tmp_path)
    loaded = cls.from_pretrained(tmp_path).eval()

    def public(m: nn.Module) -> dict:
        config = json.loads(m.to_json_string())
        config.pop("_name_or_path", None)
        return config

    assert public(loaded) == public(model)
    assert public(model)["num_classes"] == NUM_CLASSES and public(model)["resolution"] == 8
    x, noise = inputs(model)
    labels = torch.tensor([3, 0, NUM_CLASSES, 1])
    with torch.no_grad():
        assert torch.equal(loaded(x, noise, labels), model(x, noise, labels))


@pytest.mark.parametrize("cls", NETS)
def test_training_steps_make_output_depend_on_class_and_noise(cls: type) -> None:
    model = make(cls)
    x, noise = inputs(model)
    target = torch.randn_like(x)
    labels = torch.tensor([0, 1, 2, NUM_CLASSES])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(3):  # adaLN-Zero needs more than one step before the gates open
        opt.zero_grad()
        (model(x, noise, labels) - target).square().mean().backward()
        opt.step()

    with torch.no_grad():
        base = model(x, noise, labels)
        other_class = model(x, noise, (labels + 1) % (NUM_CLASSES + 1))
        other_noise = model(x, noise + 0.5, labels)
    assert base.abs().amax(dim=(1, 2, 3)).min() > 0
    assert (base - other_class).abs().amax(dim=(1, 2, 3)).min() > 1e-6
    assert (base - other_noise).abs().amax(dim=(1, 2, 3)).min() > 1e-6


@pytest.mark.parametrize("cls", NETS)
def test_perturbed_output_depends_on_each_sample_condition(cls: type) -> None:
    model = perturb(make(cls)).eval()
    x, noise = inputs(model)
    labels = torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        base = model(x, noise, labels)
        changed = model(x, noise, torch.tensor([0, 4, 2, 3]))
        changed_noise = model(x, noise * torch.tensor([1.0, 1.0, 0.0, 1.0]), labels)
    # Conditioning is per sample: only the sample whose label / noise level changed moves.
    assert torch.equal(changed[[0, 2, 3]], base[[0, 2, 3]]) and not torch.allclose(changed[1], base[1])
    assert torch.equal(changed_noise[[0, 1, 3]], base[[0, 1, 3]])
    assert not torch.allclose(changed_noise[2], base[2])


@pytest.mark.parametrize("cls", NETS)
def test_null_label_equals_none(cls: type) -> None:
    model = perturb(make(cls)).eval()
    x, noise = inputs(model)
    with torch.no_grad():
        none = model(x, noise)
        null = model(x, noise, torch.full((4,), NUM_CLASSES))
        real = model(x, noise, torch.zeros(4, dtype=torch.long))
    assert torch.equal(none, null)
    assert not torch.allclose(none, real)


@pytest.mark.parametrize("num_classes", [0, NUM_CLASSES])
@pytest.mark.parametrize("cls", NETS)
def test_gradients_reach_every_parameter(cls: type, num_classes: int) -> None:
    model = perturb(make(cls, num_classes))
    x, noise = inputs(model)
    labels = torch.tensor([0, 1, 2, NUM_CLASSES]) if num_classes else None
    model(x, noise, labels).square().sum().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


@pytest.mark.parametrize("cls", NETS)
def test_time_embed_hook_changes_output(cls: type) -> None:
    model = perturb(make(cls)).eval()
    x, noise = inputs(model)
    assert isinstance(model.time_embed, nn.Module)
    assert model.time_embed(noise).shape == (4, model.emb_dim)
    with torch.no_grad():
        base = model(x, noise)
        handle = model.time_embed.register_forward_hook(lambda _m, _args, out: out + 1.0)
        hooked = model(x, noise)
        handle.remove()
        again = model(x, noise)
    assert not torch.allclose(base, hooked)
    assert torch.equal(base, again)


def test_dit_blocks_start_as_identity() -> None:
    model = make(ImageDiT, depth=3)
    assert isinstance(model.blocks, nn.ModuleList) and len(model.blocks) == 3
    assert "pos_embed" not in model.state_dict()
    tokens, emb = torch.randn(2, 64, 128), torch.randn(2, model.emb_dim)
    for block in model.blocks:  # adaLN-Zero: every residual branch is gated by zero at construction
        assert torch.equal(block(tokens, emb), tokens)


def test_unet_decoder_concatenates_encoder_skips() -> None:
    model = perturb(make(ImageUNet, num_classes=0)).eval()
    x, noise = inputs(model)
    seen = {}
    model.down[0].stages[0].register_forward_hook(lambda _m, _a, out: seen.update(skip=out))
    model.up[-1].stages[0].register_forward_pre_hook(lambda _m, args: seen.update(decoder_in=args[0]))
    with torch.no_grad():
        model(x, noise)
    assert seen["decoder_in"].shape[1] == 2 * seen["skip"].shape[1]
    assert torch.equal(seen["decoder_in"][:, seen["skip"].shape[1] :], seen["skip"])


@pytest.mark.parametrize("cls", NETS)
@pytest.mark.parametrize(
    ("num_classes", "change", "message"),
    [
        (NUM_CLASSES, {"x": torch.zeros(4, 3, 16, 16)}, "x must have shape [B, 1, 16, 16]"),
        (NUM_CLASSES, {"x": torch.zeros(4, 1, 8, 8)}, "x must have shape [B, 1, 16, 16]"),
        (NUM_CLASSES, {"x": torch.zeros(1, 16, 16)}, "x must have shape"),
        (NUM_CLASSES, {"noise": torch.zeros(4, 1)}, "noise_labels must be a float tensor of shape [4]"),
        (NUM_CLASSES, {"noise": torch.zeros(4, dtype=torch.long)}, "noise_labels must be a float"),
        (NUM_CLASSES, {"labels": torch.tensor([0, 1, 2, NUM_CLASSES + 1])}, "in [0, 5]"),
        (NUM_CLASSES, {"labels": torch.tensor([0, -1, 2, 3])}, "in [0, 5]"),
        (NUM_CLASSES, {"labels": torch.zeros(4)}, "class_labels must be an integer tensor"),
        (NUM_CLASSES, {"labels": torch.zeros(3, dtype=torch.long)}, "of shape [4]"),
        (0, {"labels": torch.zeros(4, dtype=torch.long)}, "class_labels must be None"),
    ],
)
def test_bad_inputs_raise(cls: type, num_classes: int, change: dict, message: str) -> None:
    model = make(cls, num_classes)
    x, noise = inputs(model)
    call = {"x": x, "noise": noise, "labels": None, **change}
    with pytest.raises(GenlabError) as info:
        model(call["x"], call["noise"], call["labels"])
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (ImageUNet, {"resolution": 18, "channel_mults": (1, 2, 2)}, "positive multiple of 4"),
        (ImageUNet, {"attention_levels": (2,)}, "attention_levels must lie in [0, 1]"),
        (ImageUNet, {"num_heads": 5}, "num_heads must divide"),
        (ImageUNet, {"channel_mults": ()}, "channel_mults must be a non-empty list"),
        (ImageUNet, {"dropout": 1.0}, "dropout must be in [0, 1)"),
        (ImageDiT, {"resolution": 15}, "resolution must be a positive multiple of patch_size=2"),
        (ImageDiT, {"hidden_size": 96, "num_heads": 5}, "num_heads must divide hidden_size=96"),
        (ImageDiT, {"hidden_size": 66, "num_heads": 2}, "hidden_size must be a positive multiple of 4"),
        (ImageDiT, {"num_classes": -1}, "num_classes must be >= 0"),
    ],
)
def test_bad_config_raises(cls: type, kwargs: dict, message: str) -> None:
    with pytest.raises(GenlabError) as info:
        cls(**kwargs)
    assert message in str(info.value)
