"""The typed model infos: each saved model's ``genlab.json`` (and an alignment run's ``align.json``) round-trips
(save -> load -> the same info, and the same JSON, byte for byte, as genlab has always written)."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import pytest
import torch

from genlab.align.export import AdapterInfo
from genlab.base.image_model import load_image_model, save_image_model
from genlab.base.info import MODEL_INFO_FILE, ImageModelInfo, VideoModelInfo
from genlab.base.video_model import load_video_model, save_video_model
from genlab.camera.controlnet import CameraControlNet
from genlab.camera.model import (
    CameraBlindDenoiser,
    CameraModelInfo,
    ConcatCameraDenoiser,
    ControlNetCameraDenoiser,
    load_camera_model,
    save_camera_model,
)
from genlab.core.denoiser import EDMDenoiser
from genlab.core.edm import EDMSchedule
from genlab.core.nets import ImageUNet, VideoDiT
from genlab.disco.config import DisCoConfig
from genlab.disco.model import DisCoDiff, DisCoInfo
from genlab.disco.training import build_disco
from genlab.errors import GenlabError

TINY_VIDEO = {"frames": 2, "resolution": 8, "patch_size": 4, "hidden_size": 16, "depth": 1, "num_heads": 2}


def saved_text(folder, name: str = MODEL_INFO_FILE) -> str:
    return (folder / name).read_text()


def written(info: dict) -> str:
    """A JSON object as genlab writes its info files."""
    return json.dumps(info, indent=2)


def image_denoiser() -> EDMDenoiser:
    torch.manual_seed(0)
    net = ImageUNet(in_channels=1, resolution=8, num_classes=3, base_channels=8, channel_mults=(1, 2),
                    num_res_blocks=1, attention_levels=(1,))
    return EDMDenoiser(net, EDMSchedule(sigma_max=40.0))


def video_denoiser(**overrides) -> EDMDenoiser:
    torch.manual_seed(0)
    return EDMDenoiser(VideoDiT(**{**TINY_VIDEO, **overrides})).eval()


# -- image models ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("label_dropout", [0.1, None])
def test_image_model_info_round_trips_in_the_old_format(tmp_path, label_dropout):
    denoiser = image_denoiser()
    save_image_model(denoiser, tmp_path, data="digits", label_dropout=label_dropout)
    old = {"data": "digits", "architecture": "ImageUNet", **asdict(EDMSchedule(sigma_max=40.0))}
    if label_dropout is not None:
        old["label_dropout"] = label_dropout
    assert saved_text(tmp_path) == written(old)  # what save_image_model wrote before the typed info
    loaded, info = load_image_model(tmp_path)
    assert info == ImageModelInfo("digits", "ImageUNet", EDMSchedule(sigma_max=40.0), label_dropout, 3, 1, 8)
    assert info == ImageModelInfo.of(denoiser, "digits", label_dropout) and loaded.schedule == info.schedule
    assert written(info.to_json()) == saved_text(tmp_path)
    assert ImageModelInfo.from_json(json.loads(saved_text(tmp_path)), "x") == replace(info, num_classes=0,
                                                                                    channels=0, resolution=0)


def test_image_model_info_is_frozen():
    info = ImageModelInfo("digits", "ImageUNet")
    with pytest.raises(AttributeError):
        info.num_classes = 3  # type: ignore[misc]


def test_an_old_image_model_with_integer_settings_loads(tmp_path):
    save_image_model(image_denoiser(), tmp_path, data="digits")
    (tmp_path / MODEL_INFO_FILE).write_text(written({"data": "digits", "architecture": "ImageUNet", "rho": 7,
                                                     "label_dropout": 0}))
    _, info = load_image_model(tmp_path)
    assert info.schedule == EDMSchedule() and info.label_dropout == 0.0


# -- video and camera models -------------------------------------------------------------------------------------
def test_video_model_info_round_trips_in_the_old_format(tmp_path):
    save_video_model(video_denoiser(), tmp_path)
    text = saved_text(tmp_path)
    assert text == written({"method": "video", "architecture": "VideoDiT", **asdict(EDMSchedule())})
    info = VideoModelInfo.from_json(json.loads(text), tmp_path / MODEL_INFO_FILE)
    assert info == VideoModelInfo("VideoDiT") and written(info.to_json()) == text
    assert load_video_model(tmp_path).schedule == EDMSchedule()


def camera_models():
    base = video_denoiser(condition_channels=3)
    branch = CameraControlNet.for_backbone(base.net, hidden_size=16, depth=1, num_heads=2)
    return {"controlnet": ControlNetCameraDenoiser(base, branch, (0.2, 1.0)),
            "none": CameraBlindDenoiser(video_denoiser()),
            "concat": ConcatCameraDenoiser.from_base(video_denoiser())}


@pytest.mark.parametrize("variant", ["controlnet", "none", "concat"])
def test_camera_model_info_round_trips_in_the_old_format(tmp_path, variant):
    save_camera_model(camera_models()[variant], tmp_path)
    text = saved_text(tmp_path)
    old = {"method": "camera", "variant": variant, **({"window": [0.2, 1.0]} if variant == "controlnet" else {})}
    assert text == written(old)
    info = CameraModelInfo.from_json(json.loads(text), tmp_path / MODEL_INFO_FILE)
    assert info == CameraModelInfo(variant, window=(0.2, 1.0) if variant == "controlnet" else None)
    assert written(info.to_json()) == text
    loaded = load_camera_model(tmp_path)
    assert loaded.variant == variant and getattr(loaded, "window", None) == info.window


def test_camera_model_info_keeps_a_cogvideox_reference():
    reference = {"folder": "/models/cogvideox", "prediction_type": "v_prediction", "torch_dtype": "float32"}
    text = written({"method": "camera", "variant": "controlnet", "cogvideox": reference, "window": [0, 1]})
    info = CameraModelInfo.from_json(json.loads(text), "genlab.json")
    assert info.cogvideox == reference and info.window == (0, 1) and written(info.to_json()) == text


@pytest.mark.parametrize(("change", "message"), [
    ({"variant": "sideways"}, "unknown camera model variant 'sideways'"),
    ({"variant": 3}, "'variant' should be str"),
    ({"window": [0.5, 0.2]}, "'window' should be \\[start, end\\]"),
    ({"window": None}, "'window' should be list"),
    ({"cogvideox": "elsewhere"}, "'cogvideox' should be dict"),
])
def test_a_bad_camera_model_info_is_one_error(change, message):
    info = {"method": "camera", "variant": "controlnet", "window": [0.2, 1.0], **change}
    with pytest.raises(GenlabError, match=f"^genlab.json.*{message}"):
        CameraModelInfo.from_json(info, "genlab.json")


# -- DisCo-Diff ----------------------------------------------------------------------------------------------------
def test_disco_info_round_trips_in_the_old_format(tmp_path):
    model = build_disco(DisCoConfig(data="shapes", resolution=16, num_latents=2, num_codes=4, size="tiny",
                                    progress=False), channels=3, resolution=16, num_classes=2)
    assert model.info == DisCoInfo("shapes", 2, 3, 16)
    model.info = replace(model.info, code_usage=(0.5, 0.75))
    model.save_pretrained(tmp_path)
    text = saved_text(tmp_path)
    saved = json.loads(text)
    assert list(saved) == ["data", "num_classes", "channels", "resolution", "code_usage", "method", "temperature",
                           "straight_through", "latent_dropout", "has_prior", *asdict(EDMSchedule())]
    assert saved["code_usage"] == [0.5, 0.75] and saved["num_classes"] == 2
    loaded = DisCoDiff.from_pretrained(tmp_path)
    assert loaded.info == model.info
    loaded.save_pretrained(tmp_path / "again")
    assert saved_text(tmp_path / "again") == text


def test_disco_info_keeps_only_the_recorded_facts():
    info = DisCoInfo.from_json({"data": "shapes", "method": "disco", "temperature": 1.0}, "genlab.json")
    assert info == DisCoInfo(data="shapes") and info.to_json() == {"data": "shapes"} and not info.num_classes
    with pytest.raises(GenlabError, match="'num_classes' should be int"):
        DisCoInfo.from_json({"num_classes": 1.5}, "genlab.json")
    with pytest.raises(GenlabError, match="'code_usage' should be a list of numbers"):
        DisCoInfo.from_json({"code_usage": [0.5, "half"]}, "genlab.json")


# -- alignment adapters --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [4.0, 16])
def test_adapter_info_round_trips_in_the_old_format(alpha):
    old = {"lora_rank": 16, "lora_alpha": alpha, "lora_targets": ["qkv", "proj"], "reward": "brightness",
           "model": "runs/train/digits"}
    info = AdapterInfo.from_json(json.loads(written(old)), "align.json")
    assert info == AdapterInfo(16, alpha, ("qkv", "proj"), "brightness", "runs/train/digits")
    assert written(info.to_json()) == written(old)


@pytest.mark.parametrize(("change", "message"), [
    ({"lora_rank": "16"}, "'lora_rank' should be int"),
    ({"lora_alpha": None}, "'lora_alpha' should be int or float"),
    ({"lora_targets": ["qkv", 3]}, "'lora_targets' should be a list of layer names"),
    ({"model": 5}, "'model' should be str or NoneType"),
])
def test_a_bad_adapter_info_is_one_error(change, message):
    info = {"lora_rank": 16, "lora_alpha": 16, "lora_targets": ["qkv"], "reward": "r", "model": None, **change}
    with pytest.raises(GenlabError, match=f"^align.json is corrupt: {message}"):
        AdapterInfo.from_json(info, "align.json")
