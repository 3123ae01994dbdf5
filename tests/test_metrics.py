"""Tests for genlab.metrics: FD, precision/recall, the committed feature nets and evaluate_samples."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import linalg

from genlab.data import load_dataset
from genlab.errors import GenlabError
from genlab.metrics import (
    class_accuracy,
    evaluate_samples,
    frechet_distance,
    load_feature_net,
    precision_recall,
)
from genlab.metrics import feature_net as feature_net_module
from genlab.metrics.feature_net import WEIGHTS_DIR, save_feature_net


def gaussian(count: int, dim: int, seed: int, mean: float | np.ndarray = 0.0, std: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, dim)) * std + mean


def scipy_fd(a: np.ndarray, b: np.ndarray) -> float:
    """Reference FD with scipy's general matrix square root."""
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    gap = a.mean(axis=0) - b.mean(axis=0)
    return float(gap @ gap + np.trace(cov_a + cov_b) - 2 * np.trace(linalg.sqrtm(cov_a @ cov_b).real))


# --- Fréchet distance -------------------------------------------------------------------------


def test_fd_of_two_samples_of_one_gaussian_is_near_zero():
    assert frechet_distance(gaussian(20_000, 8, 0), gaussian(20_000, 8, 1)) < 0.01


def test_fd_between_shifted_unit_gaussians_is_the_squared_mean_gap():
    mu = np.array([1.5, -2.0, 0.5, 0.0, 1.0])
    fd = frechet_distance(gaussian(20_000, 5, 0), gaussian(20_000, 5, 1, mean=mu))
    assert fd == pytest.approx(mu @ mu, abs=0.05)


def test_fd_between_scaled_gaussians_matches_closed_form():
    # N(0, I) vs N(0, 4 I) in D dims: D (1 - 2)^2 = D.
    fd = frechet_distance(gaussian(20_000, 4, 0), gaussian(20_000, 4, 1, std=2.0))
    assert fd == pytest.approx(4.0, abs=0.1)


def test_fd_matches_scipy_sqrtm_on_correlated_features_and_is_symmetric():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6)) + 0.3
    assert frechet_distance(a, b) == pytest.approx(scipy_fd(a, b), rel=1e-6)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)
    assert frechet_distance(torch.from_numpy(a).float(), b) == pytest.approx(scipy_fd(a, b), rel=1e-4)


def test_fd_of_a_set_with_itself_is_zero_even_when_rank_deficient():
    low_rank = gaussian(50, 3, 0) @ gaussian(3, 10, 1)
    assert frechet_distance(low_rank, low_rank) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        (np.zeros((10, 3)), np.zeros((10, 4)), "feature dimension"),
        (np.zeros(10), np.zeros((10, 4)), "feats_a"),
        (np.zeros((10, 3)), np.zeros((1, 3)), "feats_b"),
        (np.full((10, 3), np.nan), np.zeros((10, 3)), "feats_a must be finite"),
        ([[0.0], [1.0]], np.zeros((10, 1)), "feats_a"),
    ],
)
def test_fd_rejects_bad_features(a, b, message):
    with pytest.raises(GenlabError, match=message):
        frechet_distance(a, b)


# --- precision / recall -----------------------------------------------------------------------


def test_precision_recall_of_identical_sets_is_one():
    feats = gaussian(300, 16, 0)
    assert precision_recall(feats, feats) == (1.0, 1.0)


def test_precision_recall_of_far_apart_sets_is_zero():
    assert precision_recall(gaussian(300, 16, 0), gaussian(300, 16, 1, mean=100.0)) == (0.0, 0.0)


def test_precision_recall_of_samples_from_one_distribution_are_high():
    precision, recall = precision_recall(gaussian(1000, 4, 0), gaussian(1000, 4, 1))
    assert precision > 0.85 and recall > 0.85


def test_mode_collapse_keeps_precision_and_loses_recall():
    real = np.concatenate([gaussian(500, 4, 0), gaussian(500, 4, 1, mean=50.0)])
    precision, recall = precision_recall(real, gaussian(500, 4, 2))
    assert precision > 0.85
    assert 0.35 < recall < 0.55


def test_half_bad_samples_halve_precision():
    fake = np.concatenate([gaussian(500, 4, 1), gaussian(500, 4, 2, mean=50.0)])
    precision, recall = precision_recall(gaussian(1000, 4, 0), fake)
    assert 0.4 < precision < 0.55
    assert recall > 0.85


@pytest.mark.parametrize(
    ("k", "rows", "message"), [(0, 10, "k must"), (3, 3, "real_feats"), (True, 10, "k must")]
)
def test_precision_recall_rejects_bad_arguments(k, rows, message):
    with pytest.raises(GenlabError, match=message):
        precision_recall(np.zeros((rows, 2)), np.zeros((10, 2)), k=k)


# --- feature nets ------------------------------------------------------------------------------


@pytest.mark.parametrize(("dataset", "minimum"), [("digits", 0.95), ("shapes", 0.97)])
def test_committed_feature_nets_classify_the_test_split(dataset, minimum):
    net = load_feature_net(dataset)
    test_set = load_dataset(dataset, "test", resolution=net.config.resolution)
    assert class_accuracy(test_set.images(), test_set.labels(), dataset) >= minimum


@pytest.mark.parametrize("dataset", ["digits", "shapes"])
def test_committed_weights_are_small_and_described(dataset):
    meta = json.loads((WEIGHTS_DIR / f"{dataset}.json").read_text())
    assert meta["dataset"] == dataset and 64 <= meta["feature_dim"] <= 128
    assert {"channels", "resolution", "num_classes", "test_accuracy", "seed"} <= set(meta)
    assert (WEIGHTS_DIR / f"{dataset}.safetensors").stat().st_size < 300_000


def test_feature_net_is_cached_frozen_and_gives_features_and_logits():
    net = load_feature_net("digits")
    assert load_feature_net("digits") is net and not net.training
    assert not any(p.requires_grad for p in net.parameters())
    images = load_dataset("digits", "test").images(range(5))
    features = net.features(images)
    assert features.shape == (5, net.config.feature_dim) and features.min() >= 0
    assert net(images).shape == (5, 10)


def test_feature_net_rejects_images_of_the_wrong_size():
    with pytest.raises(GenlabError, match="the 'digits' feature net expects 1×16×16 images, got 3×32×32"):
        load_feature_net("digits").features(torch.zeros(2, 3, 32, 32))
    with pytest.raises(GenlabError, match="expects 3×32×32"):
        load_feature_net("shapes")(torch.zeros(3, 32, 32))


def test_missing_weights_tell_the_user_to_run_the_training_script(tmp_path, monkeypatch):
    monkeypatch.setattr(feature_net_module, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(GenlabError, match="scripts/train_feature_nets.py"):
        load_feature_net.__wrapped__("digits")
    with pytest.raises(GenlabError, match="dataset"):
        load_feature_net("mnist")


def test_saved_weights_load_back_identically(tmp_path, monkeypatch):
    net = load_feature_net("digits")
    save_feature_net(net, tmp_path, test_accuracy=0.5, seed=7)
    monkeypatch.setattr(feature_net_module, "WEIGHTS_DIR", tmp_path)
    reloaded = load_feature_net.__wrapped__("digits")
    images = load_dataset("digits", "test").images(range(8))
    assert torch.equal(reloaded(images), net(images))
    assert json.loads((tmp_path / "digits.json").read_text())["seed"] == 7


# --- evaluate_samples --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_scores():
    train = load_dataset("digits", "train")
    images, labels = train.images(), train.labels()
    noise = torch.rand(images.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return {
        "train": evaluate_samples(images, labels, "digits"),
        "noise": evaluate_samples(noise, None, "digits"),
        "wrong_labels": evaluate_samples(images, (labels + 1) % 10, "digits"),
    }


def test_train_images_score_well_against_the_test_split(digits_scores):
    scores = digits_scores["train"]
    assert set(scores) == {"fd", "precision", "recall", "accuracy"}
    assert scores["precision"] > 0.8 and scores["recall"] > 0.8 and scores["accuracy"] > 0.97


def test_noise_scores_badly(digits_scores):
    noise, train = digits_scores["noise"], digits_scores["train"]
    assert set(noise) == {"fd", "precision", "recall"}
    assert noise["fd"] > 20 * train["fd"]
    assert noise["precision"] < 0.05


def test_wrong_labels_give_low_accuracy_but_the_same_distances(digits_scores):
    wrong, train = digits_scores["wrong_labels"], digits_scores["train"]
    assert wrong["accuracy"] < 0.05
    assert wrong["fd"] == train["fd"] and wrong["precision"] == train["precision"]


def test_shapes_train_images_score_well_and_noise_badly():
    train = load_dataset("shapes", "train")
    images, labels = train.images(range(1000)), train.labels(range(1000))
    good = evaluate_samples(images, labels, "shapes", num_reference=1000)
    noise = evaluate_samples(torch.rand_like(images) * 2 - 1, None, "shapes", num_reference=1000)
    assert good["precision"] > 0.8 and good["recall"] > 0.8 and good["accuracy"] > 0.97
    assert noise["fd"] > 20 * good["fd"] and noise["precision"] < 0.05


def test_evaluate_samples_is_deterministic_and_batch_size_independent():
    images = load_dataset("digits", "train").images(range(100))
    first = evaluate_samples(images, None, "digits")
    assert evaluate_samples(images, None, "digits") == first
    assert evaluate_samples(images, None, "digits", batch_size=7)["fd"] == pytest.approx(
        first["fd"], rel=1e-5
    )


def test_collapsed_shapes_lose_recall():
    train = load_dataset("shapes", "train")
    factors = train.factors(range(4000))
    red_circles = torch.nonzero((factors["shape"] == 0) & (factors["colour"] == 0)).flatten()
    scores = evaluate_samples(train.images(red_circles), None, "shapes", num_reference=1000)
    assert scores["precision"] > 0.8 and scores["recall"] < 0.15


@pytest.mark.parametrize(
    ("images", "labels", "kwargs", "message"),
    [
        (torch.full((8, 1, 16, 16), float("nan")), None, {}, "images must be finite"),
        (torch.zeros(8, 16, 16), None, {}, "images must be a float tensor"),
        (torch.zeros(2, 1, 16, 16), None, {}, "at least 4"),
        (torch.zeros(8, 3, 32, 32), None, {}, "expects 1×16×16 images, got 3×32×32"),
        (torch.zeros(8, 1, 16, 16), torch.zeros(7, dtype=torch.long), {}, "labels"),
        (torch.zeros(8, 1, 16, 16), torch.full((8,), 10), {}, "labels must lie in"),
        (torch.zeros(8, 1, 16, 16), None, {"num_reference": 298}, "num_reference"),
        (torch.zeros(8, 1, 16, 16), None, {"batch_size": 0}, "batch_size"),
        (torch.zeros(8, 1, 16, 16), None, {"dataset": "mnist"}, "dataset"),
    ],
)
def test_evaluate_samples_rejects_bad_inputs(images, labels, kwargs, message):
    arguments = {"dataset": "digits"} | kwargs
    with pytest.raises(GenlabError, match=message):
        evaluate_samples(images, labels, **arguments)
