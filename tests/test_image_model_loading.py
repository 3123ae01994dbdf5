"""load_image_model: a saved model round-trips; every broken model folder gives one GenlabError."""

import json
import shutil

import pytest
import torch

from genlab.base.image_model import MODEL_INFO_FILE, load_image_model, save_image_model
from genlab.core.denoiser import EDMDenoiser
from genlab.core.edm import EDMSchedule
from genlab.core.nets import ImageUNet
from genlab.errors import GenlabError

WEIGHTS = "diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny saved model (run folder layout: ``<run>/model``)."""
    run = tmp_path_factory.mktemp("loading") / "run"
    torch.manual_seed(0)
    net = ImageUNet(in_channels=1, resolution=8, num_classes=3, base_channels=8, channel_mults=(1, 2),
                    num_res_blocks=1, attention_levels=(1,))
    save_image_model(EDMDenoiser(net, EDMSchedule(sigma_max=40.0)), run / "model", data="digits", label_dropout=0.1)
    return run


@pytest.fixture
def copy(saved, tmp_path):
    """A fresh copy of the saved model folder to break."""
    folder = tmp_path / "model"
    shutil.copytree(saved / "model", folder)
    return folder


def test_saved_model_round_trips_with_its_label_dropout(saved):
    denoiser, info = load_image_model(saved)
    assert info.label_dropout == 0.1 and info.num_classes == 3 and info.resolution == 8 and info.channels == 1
    assert info.data == "digits" and info.schedule == denoiser.schedule
    assert denoiser.schedule.sigma_max == 40.0 and not denoiser.training
    _, same = load_image_model(saved / "model")
    assert same == info and same.architecture == "ImageUNet"


def test_a_file_is_not_a_model_folder(copy):
    with pytest.raises(GenlabError, match="is a file"):
        load_image_model(copy / MODEL_INFO_FILE)


def edit_info(folder, change) -> None:
    info = json.loads((folder / MODEL_INFO_FILE).read_text())
    (folder / MODEL_INFO_FILE).write_text(json.dumps(change(info)))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda info: [], "should hold a JSON object, not list"),
        (lambda info: [info], "should hold a JSON object, not list"),
        (lambda info: {}, "has no 'architecture'"),
        (lambda info: {k: v for k, v in info.items() if k != "architecture"}, "has no 'architecture'"),
        (lambda info: {**info, "architecture": 3}, "'architecture' should be str"),
        (lambda info: {**info, "architecture": "ResNet"}, "unknown architecture 'ResNet'"),
        (lambda info: {**info, "data": None}, "'data' should be str"),
        (lambda info: {**info, "sigma_data": "x"}, "'sigma_data' should be int or float"),
        (lambda info: {**info, "sigma_min": True}, "'sigma_min' should be int or float"),
        (lambda info: {**info, "rho": [7]}, "'rho' should be int or float"),
        (lambda info: {**info, "sigma_min": -1}, "'sigma_min' should be a positive number"),
        (lambda info: {**info, "sigma_min": 100}, "is not below sigma_max"),
        (lambda info: {**info, "label_dropout": "no"}, "'label_dropout' should be a number"),
        (lambda info: {**info, "method": 5}, "'method' should be str"),
        (lambda info: {**info, "method": "disco"}, "holds a disco model"),
    ],
)
def test_a_bad_info_file_is_one_error(copy, change, message):
    edit_info(copy, change)
    with pytest.raises(GenlabError, match=message):
        load_image_model(copy)


def test_invalid_json_and_missing_info_are_one_error(copy, tmp_path):
    (copy / MODEL_INFO_FILE).write_text("{not json")
    with pytest.raises(GenlabError, match="not valid JSON"):
        load_image_model(copy)
    (copy / MODEL_INFO_FILE).unlink()
    with pytest.raises(GenlabError, match="holds no genlab image model"):
        load_image_model(copy)


@pytest.mark.parametrize(
    "breakage",
    ["garbage", "truncated", "empty", "missing", "header_only"],
)
def test_corrupt_weights_are_one_error(copy, breakage):
    weights = copy / WEIGHTS
    data = weights.read_bytes()
    if breakage == "garbage":
        weights.write_bytes(b"not a safetensors file")
    elif breakage == "truncated":
        weights.write_bytes(data[: len(data) // 2])
    elif breakage == "empty":
        weights.write_bytes(b"")
    elif breakage == "missing":
        weights.unlink()
    else:  # the header's length prefix and JSON, but no tensor data
        header = int.from_bytes(data[:8], "little")
        weights.write_bytes(data[: 8 + header])
    with pytest.raises(GenlabError, match="is corrupt|holds no weights|cannot load|do not fit"):
        load_image_model(copy)


def test_a_broken_net_config_is_one_error(copy):
    (copy / "config.json").write_text("[1, 2")
    with pytest.raises(GenlabError, match="config.json is corrupt"):
        load_image_model(copy)
    (copy / "config.json").write_text(json.dumps({"_class_name": "ImageUNet", "resolution": "big"}))
    with pytest.raises(GenlabError):
        load_image_model(copy)
