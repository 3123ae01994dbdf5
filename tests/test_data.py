"""Tests for genlab.data: determinism, ranges, splits, factors and argument errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from genlab.data import DATASETS, ImageDataset, load_dataset
from genlab.data.digits import _raw_digits, split_indices
from genlab.errors import GenlabError


@pytest.mark.parametrize(
    ("name", "resolution", "channels", "classes"),
    [
        ("digits", 8, 1, 10),
        ("digits", 16, 1, 10),
        ("digits", 32, 1, 10),
        ("shapes", 16, 3, 4),
        ("shapes", 64, 3, 4),
    ],
)
def test_images_have_documented_shape_dtype_and_range(name, resolution, channels, classes):
    ds = load_dataset(name, "test", resolution=resolution)
    assert isinstance(ds, ImageDataset)
    assert (ds.name, ds.split, ds.resolution, ds.channels, ds.num_classes) == (
        name,
        "test",
        resolution,
        channels,
        classes,
    )
    assert len(ds.class_names) == classes
    images, labels = ds.images(), ds.labels()
    assert images.shape == (len(ds), channels, resolution, resolution)
    assert images.dtype == torch.float32 and labels.dtype == torch.int64
    assert images.min() >= -1.0 and images.max() <= 1.0
    assert images.min() < -0.8 and images.max() > 0.9
    assert set(labels.tolist()) == set(range(classes))


def test_defaults_and_item_access_match_batch_access():
    for name, default in [("digits", 16), ("shapes", 32)]:
        ds = load_dataset(name)
        assert ds.split == "train" and ds.resolution == default
        image, label = ds[7]
        assert isinstance(label, int)
        assert torch.equal(image, ds.images([7])[0]) and label == ds.labels([7]).item()
        assert torch.equal(ds[-1][0], ds.images([len(ds) - 1])[0])
        with pytest.raises(IndexError):
            ds[len(ds)]


def test_works_with_a_dataloader():
    images, labels = next(iter(DataLoader(load_dataset("shapes", "test"), batch_size=8)))
    assert images.shape == (8, 3, 32, 32) and labels.shape == (8,)


def test_digits_background_is_minus_one_and_resolution_8_is_the_raw_data():
    ds = load_dataset("digits", "test", resolution=8)
    raw = torch.from_numpy(_raw_digits()[0][split_indices("test")])
    assert torch.allclose(ds.images()[:, 0], raw * 2 - 1, atol=1e-6)
    corners = load_dataset("digits", "train", resolution=32).images()[:, 0, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners < -0.95).float().mean() > 0.95


def test_digits_split_is_fixed_disjoint_complete_and_stratified():
    train, test = split_indices("train"), split_indices("test")
    assert len(test) == 297 and len(train) == 1500
    assert len(np.intersect1d(train, test)) == 0
    assert len(np.union1d(train, test)) == 1797
    counts = np.bincount(_raw_digits()[1][test], minlength=10)
    assert counts.min() >= 29 and counts.max() <= 30
    same = load_dataset("digits", "test", seed=5).images()
    assert torch.equal(load_dataset("digits", "test", seed=0).images(), same)


def test_shapes_same_seed_split_index_gives_the_same_image():
    first = load_dataset("shapes", "train", seed=3)
    second = load_dataset("shapes", "train", seed=3)
    indices = [0, 5, 19_999]
    assert torch.equal(first.images(indices), second.images(indices))
    assert torch.equal(first[123][0], second.images([123])[0])
    assert torch.equal(first.images([5, 0]), first.images([0, 5]).flip(0))


def test_shapes_seed_and_split_change_the_images():
    base = load_dataset("shapes", "test", seed=0).images(range(64))
    other_seed = load_dataset("shapes", "test", seed=1).images(range(64))
    train = load_dataset("shapes", "train", seed=0).images(range(64))
    assert not torch.equal(base, other_seed)
    assert not torch.equal(base, train)
    assert (base - other_seed).abs().amax(dim=(1, 2, 3)).gt(0.5).float().mean() > 0.9
    # Train and test come from different random streams, not from one stream cut at different lengths.
    test_shapes = load_dataset("shapes", "test").factors(range(200))["shape"]
    assert not torch.equal(test_shapes, load_dataset("shapes", "train").factors(range(200))["shape"])


def test_shapes_factors_cover_all_values_and_match_labels():
    ds = load_dataset("shapes", "test")
    factors = ds.factors()
    assert set(factors) == {"shape", "colour", "position"}
    assert all(values.dtype == torch.int64 and values.shape == (2000,) for values in factors.values())
    assert torch.equal(factors["shape"], ds.labels())
    assert [int(factors[key].max()) + 1 for key in ("shape", "colour", "position")] == [4, 6, 9]
    assert ds.class_names == ["circle", "square", "triangle", "cross"]
    assert torch.equal(ds.factors([3, 4])["colour"], factors["colour"][[3, 4]])


def test_shapes_factors_are_visible_in_the_pixels():
    ds = load_dataset("shapes", "test")
    images, factors = ds.images(range(200)), ds.factors(range(200))
    background = images[:, :, 0, 0]
    assert torch.allclose(background, torch.full_like(background, -0.84), atol=1e-5)
    # The brightest pixel sits in the 3×3 grid cell given by the position factor.
    flat = images.sum(dim=1).flatten(1).argmax(dim=1)
    rows, cols = flat // 32, flat % 32
    assert torch.equal((rows * 3 // 32) * 3 + cols * 3 // 32, factors["position"])
    # The colour factor picks the colour: same colour index -> same dominant channel pattern.
    peak = images.flatten(2).amax(dim=2)
    for colour in range(6):
        members = peak[factors["colour"] == colour]
        assert (members.amax(dim=0) - members.amin(dim=0)).max() < 0.5


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"name": "mnist"}, "name"),
        ({"name": "digits", "split": "val"}, "split"),
        ({"name": "shapes", "split": "valid"}, "split"),
        ({"name": "digits", "resolution": 64}, "resolution"),
        ({"name": "shapes", "resolution": 8}, "resolution"),
        ({"name": "shapes", "seed": -1}, "seed"),
        ({"name": "shapes", "seed": 1.5}, "seed"),
    ],
)
def test_bad_arguments_raise_genlab_error_naming_them(kwargs, argument):
    with pytest.raises(GenlabError, match=argument):
        load_dataset(**kwargs)


def test_bad_arguments_list_the_allowed_values():
    with pytest.raises(GenlabError, match="'digits', 'shapes'"):
        load_dataset("cifar")
    with pytest.raises(GenlabError, match="16, 32, 64"):
        load_dataset("shapes", resolution=48)


@pytest.mark.parametrize("indices", [[0, 297], [-1], [[0, 1]], [0.5]])
def test_bad_indices_raise_genlab_error(indices):
    with pytest.raises(GenlabError, match="indices"):
        load_dataset("digits", "test").images(indices)


def test_datasets_constant_lists_every_loadable_name():
    assert DATASETS == ("digits", "shapes")
    for name in DATASETS:
        assert load_dataset(name, "test").name == name
