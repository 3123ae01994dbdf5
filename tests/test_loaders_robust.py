"""Every model loader answers a broken model with one GenlabError naming the path, never a traceback.

Each tiny model is saved once per module; each test copies the pristine folder, breaks one thing in it
(the folder is a file or missing; a JSON file is ``[]``, ``{}``, not JSON or mistyped; a safetensors file
is truncated, garbage, empty or missing; a tensor has another shape or name) and loads it again.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import TINY_TOKENIZER, TINY_TRANSFORMER
from genlab.base.video_model import load_video_model, save_video_model
from genlab.camera.controlnet import CameraControlNet
from genlab.camera.model import ControlNetCameraDenoiser, load_camera_model, save_camera_model
from genlab.core.denoiser import EDMDenoiser
from genlab.core.nets import VideoDiT
from genlab.disco.config import DisCoConfig
from genlab.disco.model import DisCoDiff
from genlab.disco.prior import LatentPrior, build_prior_lm
from genlab.disco.training import build_disco
from genlab.enhance.controlnet import EnhanceControlNet
from genlab.enhance.model import ControlNetEnhancer, RegressionEnhancer, load_enhancer, save_enhancer
from genlab.errors import GenlabError
from genlab.worldmodel.model import WorldModel
from genlab.worldmodel.perceptual import StateNet
from genlab.worldmodel.tokenizer import VideoTokenizer
from genlab.worldmodel.transformer import WorldModelTransformer

TINY_VIDEO = {"frames": 2, "resolution": 8, "patch_size": 4, "hidden_size": 16, "depth": 1, "num_heads": 2}
DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"


# -- corruptions: each takes the file to break ------------------------------------------------------------------
def json_list(path: Path) -> None:
    path.write_text("[]")


def json_empty(path: Path) -> None:
    path.write_text("{}")


def json_garbage(path: Path) -> None:
    path.write_text('{"method": ')


def json_set(key: str, value):
    def corrupt(path: Path) -> None:
        path.write_text(json.dumps({**json.loads(path.read_text()), key: value}))

    corrupt.__name__ = f"json_{key}_{value}"
    return corrupt


def truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def garbage(path: Path) -> None:
    path.write_bytes(b"\x07not a safetensors file" * 20)


def emptied(path: Path) -> None:
    path.write_bytes(b"")


def removed(path: Path) -> None:
    path.unlink()


def _rewrite(path: Path, change) -> None:
    tensors = load_file(str(path))
    change(tensors, sorted(tensors, key=lambda name: -tensors[name].numel())[0])
    save_file(tensors, str(path), metadata={"format": "pt"})


def reshaped(path: Path) -> None:
    _rewrite(path, lambda tensors, name: tensors.__setitem__(name, torch.zeros(3, 5)))


def renamed(path: Path) -> None:
    _rewrite(path, lambda tensors, name: tensors.__setitem__("not_in_the_model.weight", tensors.pop(name)))


def extra(path: Path) -> None:
    _rewrite(path, lambda tensors, name: tensors.__setitem__("not_in_the_model.weight", torch.zeros(2)))


JSON_BREAKS = (json_list, json_empty, json_garbage, removed)
WEIGHT_BREAKS = (truncated, garbage, emptied, removed, reshaped, renamed)


def cases(folder: str, config_key: str | None = None, weights: str = DIFFUSERS_WEIGHTS, config: str = "config.json",
          strict: bool = True):
    """(file, corruption) params for a ``save_pretrained`` folder ``folder`` (relative to the saved model)."""
    prefix = f"{folder}/" if folder else ""
    breaks = [(config, fn) for fn in JSON_BREAKS]
    if config_key:
        breaks += [(config, json_set(config_key, "sixteen")), (config, json_set(config_key, None))]
    breaks += [(weights, fn) for fn in WEIGHT_BREAKS + ((extra,) if strict else ())]
    return [pytest.param(prefix + file, fn, id=f"{prefix}{file}-{fn.__name__}") for file, fn in breaks]


def broken_copy(pristine: Path, tmp_path: Path, file: str, corrupt) -> Path:
    """A copy of the saved model ``pristine`` whose ``file`` is broken by ``corrupt``."""
    copy = tmp_path / "model"
    shutil.copytree(pristine, copy)
    corrupt(copy / file)
    return copy


def assert_clear_error(load, path: Path, names: Path | None = None) -> GenlabError:
    """``load(path)`` raises one GenlabError, one line long, that names ``names`` (default ``path``)."""
    with pytest.raises(GenlabError) as caught:
        load(path)
    message = str(caught.value)
    assert str(names or path) in message, message
    assert "\n" not in message, message
    return caught.value


def folder_cases(load, pristine: Path, tmp_path: Path) -> None:
    """A missing folder, and a file where the folder should be."""
    assert_clear_error(load, tmp_path / "absent")
    file = tmp_path / "a_file"
    file.write_text("not a folder")
    assert_clear_error(load, file)


# -- tiny saved models -------------------------------------------------------------------------------------------
def video_denoiser(**overrides) -> EDMDenoiser:
    torch.manual_seed(0)
    return EDMDenoiser(VideoDiT(**{**TINY_VIDEO, **overrides})).eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Folders of every tiny model, by name (each made once for the module)."""
    root = tmp_path_factory.mktemp("saved")
    folders = {}

    folders["video"] = root / "video"
    save_video_model(video_denoiser(), folders["video"])

    base = video_denoiser(condition_channels=3)
    branch = CameraControlNet.for_backbone(base.net, hidden_size=16, depth=1, num_heads=2)
    folders["camera"] = root / "camera"
    save_camera_model(ControlNetCameraDenoiser(base, branch, (0.2, 1.0)), folders["camera"])

    plain = video_denoiser()
    folders["enhance"] = root / "enhance"
    save_enhancer(ControlNetEnhancer(plain, EnhanceControlNet.for_base(plain.net, depth=1)), folders["enhance"])
    folders["regression"] = root / "regression"
    save_enhancer(RegressionEnhancer.from_base(plain, 0), folders["regression"])

    disco = build_disco(DisCoConfig(data="shapes", resolution=16, num_latents=2, num_codes=4, size="tiny",
                                    progress=False), channels=3, resolution=16, num_classes=2)
    disco.prior = LatentPrior(build_prior_lm(2, 4, 2, hidden_size=16, num_layers=1, num_heads=2))
    folders["disco"] = root / "disco"
    disco.save_pretrained(folders["disco"])

    torch.manual_seed(0)
    folders["world"] = root / "world"
    WorldModel(VideoTokenizer(**TINY_TOKENIZER), WorldModelTransformer(**TINY_TRANSFORMER)).save_pretrained(
        folders["world"])
    folders["state_net"] = root / "state_net"
    StateNet(channels=8).save_pretrained(folders["state_net"])
    return folders


# -- video, camera, enhance --------------------------------------------------------------------------------------
VIDEO_CASES = [pytest.param("genlab.json", fn, id=f"genlab.json-{fn.__name__}")
               for fn in (json_list, json_garbage, removed, json_set("method", 7), json_set("sigma_max", "big"))]
VIDEO_CASES += cases("", "resolution") + [pytest.param("config.json", json_set("frames", None), id="frames-null"),
                                          pytest.param("config.json", json_set("_class_name", "ImageDiT"),
                                                       id="other-class")]


@pytest.mark.parametrize("file, corrupt", VIDEO_CASES)
def test_video_model(saved, tmp_path, file, corrupt):
    assert_clear_error(load_video_model, broken_copy(saved["video"], tmp_path, file, corrupt))


def test_video_model_folder(saved, tmp_path):
    folder_cases(load_video_model, saved["video"], tmp_path)
    assert isinstance(load_video_model(saved["video"]).net, VideoDiT)


CAMERA_CASES = [pytest.param("genlab.json", fn, id=f"genlab.json-{fn.__name__}")
                for fn in (*JSON_BREAKS, json_set("variant", ["controlnet"]), json_set("window", "all"),
                           json_set("window", [0.5, 0.2]), json_set("cogvideox", "elsewhere"))]
CAMERA_CASES += cases("base", "frames") + cases("controlnet", "hidden_size")


@pytest.mark.parametrize("file, corrupt", CAMERA_CASES)
def test_camera_model(saved, tmp_path, file, corrupt):
    assert_clear_error(load_camera_model, broken_copy(saved["camera"], tmp_path, file, corrupt))


def test_camera_model_folder(saved, tmp_path):
    folder_cases(load_camera_model, saved["camera"], tmp_path)
    assert load_camera_model(saved["camera"]).variant == "controlnet"


ENHANCE_CASES = [pytest.param("genlab.json", fn, id=f"genlab.json-{fn.__name__}")
                 for fn in (*JSON_BREAKS, json_set("variant", None))]
ENHANCE_CASES += cases("base", "resolution") + cases("controlnet", "depth")


@pytest.mark.parametrize("file, corrupt", ENHANCE_CASES)
def test_enhancer(saved, tmp_path, file, corrupt):
    assert_clear_error(load_enhancer, broken_copy(saved["enhance"], tmp_path, file, corrupt))


@pytest.mark.parametrize("file, corrupt", cases("net", "depth")[4:])
def test_regression_enhancer(saved, tmp_path, file, corrupt):
    assert_clear_error(load_enhancer, broken_copy(saved["regression"], tmp_path, file, corrupt))


def test_enhancer_folder(saved, tmp_path):
    folder_cases(load_enhancer, saved["enhance"], tmp_path)
    assert load_enhancer(saved["enhance"]).variant == "controlnet"
    assert load_enhancer(saved["regression"]).variant == "regression"


# -- DisCo-Diff ------------------------------------------------------------------------------------------------
DISCO_CASES = [pytest.param("genlab.json", fn, id=f"genlab.json-{fn.__name__}")
               for fn in (*JSON_BREAKS, json_set("temperature", "hot"), json_set("has_prior", "yes"),
                          json_set("num_classes", 1.5))]
DISCO_CASES += cases("encoder", "num_codes") + cases("denoiser", "num_latents")
DISCO_CASES += cases("prior", "hidden_size", weights="model.safetensors")
DISCO_CASES += [pytest.param("prior/config.json", json_set("genlab_prior", None), id="prior-not-genlab")]


@pytest.mark.parametrize("file, corrupt", DISCO_CASES)
def test_disco(saved, tmp_path, file, corrupt):
    assert_clear_error(DisCoDiff.from_pretrained, broken_copy(saved["disco"], tmp_path, file, corrupt))


def test_disco_folder(saved, tmp_path):
    folder_cases(DisCoDiff.from_pretrained, saved["disco"], tmp_path)
    assert DisCoDiff.from_pretrained(saved["disco"]).prior is not None


# -- world model -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("file, corrupt", cases("tokenizer", "frame_size") + cases("transformer", "hidden_size"))
def test_world_model(saved, tmp_path, file, corrupt):
    assert_clear_error(WorldModel.from_pretrained, broken_copy(saved["world"], tmp_path, file, corrupt))


@pytest.mark.parametrize("file, corrupt", cases("", "channels"))
def test_state_net(saved, tmp_path, file, corrupt):
    assert_clear_error(StateNet.from_pretrained, broken_copy(saved["state_net"], tmp_path, file, corrupt))


def test_world_model_folders(saved, tmp_path):
    folder_cases(WorldModel.from_pretrained, saved["world"], tmp_path)
    for load in (VideoTokenizer.from_pretrained, WorldModelTransformer.from_pretrained, StateNet.from_pretrained):
        folder_cases(load, saved["world"], tmp_path)
    loaded = WorldModel.from_pretrained(saved["world"])
    assert loaded.tokenizer.config.frame_size == TINY_TOKENIZER["frame_size"]
    assert StateNet.from_pretrained(saved["state_net"]).config.channels == 8
    # the tokenizer is not the transformer's class
    assert_clear_error(VideoTokenizer.from_pretrained, saved["world"] / "transformer")


def test_world_model_loads_its_weights_exactly(saved):
    loaded = WorldModel.from_pretrained(saved["world"]).transformer
    stored = load_file(str(saved["world"] / "transformer" / DIFFUSERS_WEIGHTS))
    state = loaded.state_dict()
    assert all(torch.equal(state[name], tensor) for name, tensor in stored.items())


# -- camera model on a CogVideoX folder --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cogvideox_camera(tmp_path_factory):
    """``(camera model folder, CogVideoX folder it refers to)``: a tiny pixel-space CogVideoX (no VAE, no T5)."""
    from test_camera_cogvideox import camera_model, make_cogvideox_folder

    root = tmp_path_factory.mktemp("cogvideox")
    base = make_cogvideox_folder(root / "cogvideox", vae=False)
    save_camera_model(camera_model(base), root / "camera")
    return root / "camera", base


def test_camera_model_whose_cogvideox_folder_moved(cogvideox_camera, tmp_path):
    camera, base = cogvideox_camera
    moved = tmp_path / "moved"
    shutil.copytree(base, moved)
    info = json.loads((camera / "genlab.json").read_text())
    copy = tmp_path / "camera"
    shutil.copytree(camera, copy)
    (copy / "genlab.json").write_text(json.dumps({**info, "cogvideox": {**info["cogvideox"], "folder": str(tmp_path / "gone")}}))
    error = assert_clear_error(load_camera_model, copy, copy / "genlab.json")
    assert str(tmp_path / "gone") in str(error) and "does not exist" in str(error)
    (copy / "genlab.json").write_text(json.dumps({**info, "cogvideox": {**info["cogvideox"], "folder": str(moved)}}))
    assert load_camera_model(copy).variant == "controlnet"  # found again where it was moved to


@pytest.mark.parametrize("file, corrupt", [
    *cases("transformer", "num_layers", strict=False),
    pytest.param("scheduler/scheduler_config.json", json_list, id="scheduler-json_list"),
    pytest.param("scheduler/scheduler_config.json", json_set("_class_name", "NoSuchScheduler"), id="scheduler-class"),
    pytest.param("scheduler/scheduler_config.json", json_set("num_train_timesteps", "many"), id="scheduler-type"),
    pytest.param("transformer", shutil.rmtree, id="no-transformer"),
])
def test_camera_model_on_a_broken_cogvideox_folder(cogvideox_camera, tmp_path, file, corrupt):
    from genlab.camera.cogvideox import CogVideoXDenoiser

    _, base = cogvideox_camera
    broken = broken_copy(base, tmp_path, file, corrupt)
    assert_clear_error(CogVideoXDenoiser.from_folder, broken)
    reference = {"folder": str(broken), "torch_dtype": "float32", "prediction_type": None}
    assert_clear_error(CogVideoXDenoiser.from_reference, reference, broken)


def test_corrupt_cogvideox_references(cogvideox_camera, tmp_path):
    camera, _ = cogvideox_camera
    info = json.loads((camera / "genlab.json").read_text())
    for reference in ({"torch_dtype": "float32"}, {**info["cogvideox"], "torch_dtype": "nn"},
                      {**info["cogvideox"], "folder": 3}, {**info["cogvideox"], "prediction_type": 1}):
        copy = tmp_path / f"camera{len(list(tmp_path.iterdir()))}"
        shutil.copytree(camera, copy)
        (copy / "genlab.json").write_text(json.dumps({**info, "cogvideox": reference}))
        assert_clear_error(load_camera_model, copy, copy / "genlab.json")


# -- growth: causal LMs, ramps, operator-training text -----------------------------------------------------------
@pytest.fixture(scope="module")
def saved_lms(tmp_path_factory):
    """``(tiny LLaMA folder, G_random-grown folder with its ramp files)``."""
    from genlab.growth import grow
    from test_growth import tiny_llama

    root = tmp_path_factory.mktemp("lms")
    tiny_llama().save_pretrained(root / "llama")
    grow(tiny_llama(), "random", "depth", 2).save_pretrained(root / "grown")
    return root / "llama", root / "grown"


@pytest.mark.parametrize("file, corrupt", cases("", "hidden_size", weights="model.safetensors")
                         + [pytest.param("config.json", json_set("model_type", 3), id="model_type-int"),
                            pytest.param("config.json", json_set("architectures", ["LlamaModel"]), id="not-causal")])
def test_causal_lm(saved_lms, tmp_path, file, corrupt):
    from genlab.growth.checkpoints import load_causal_lm

    assert_clear_error(load_causal_lm, broken_copy(saved_lms[0], tmp_path, file, corrupt))


def test_causal_lm_folder_and_other_models(saved_lms, tmp_path):
    from transformers import BertConfig, BertModel

    from genlab.growth.checkpoints import load_causal_lm

    folder_cases(load_causal_lm, saved_lms[0], tmp_path)
    BertModel(BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(tmp_path / "bert")
    with pytest.raises(GenlabError, match="growth supports"):
        load_causal_lm(tmp_path / "bert")
    assert load_causal_lm(saved_lms[0]).config.num_hidden_layers == 2


RAMP_CASES = [pytest.param("growth_ramp.json", fn, id=f"ramp.json-{fn.__name__}")
              for fn in (json_list, json_empty, json_garbage, json_set("steps", "many"), json_set("done", -1))]
RAMP_CASES += [pytest.param(file, fn, id=f"{file}-{fn.__name__}")
               for file in ("growth_ramp_masks.safetensors", "growth_ramp_values.safetensors")
               for fn in (truncated, garbage, emptied, reshaped, renamed)]
RAMP_CASES += [pytest.param("growth_ramp_masks.safetensors", removed, id="masks-removed")]


@pytest.mark.parametrize("file, corrupt", RAMP_CASES)
def test_grown_model_ramp(saved_lms, tmp_path, file, corrupt):
    from genlab.growth import Grown

    assert_clear_error(Grown.from_pretrained, broken_copy(saved_lms[1], tmp_path, file, corrupt))


def test_grown_model_loads_with_its_ramp(saved_lms, tmp_path):
    from genlab.growth import Grown

    assert Grown.from_pretrained(saved_lms[1]).ramp is not None
    folder_cases(Grown.from_pretrained, saved_lms[1], tmp_path)


@pytest.mark.parametrize("content", [None, "folder", b"", b"   \n", b"\xff\xfe\x00bad", b"too short"],
                         ids=["missing", "folder", "empty", "blank", "not-utf8", "short"])
def test_operator_training_text(tmp_path, content):
    from genlab.growth.checkpoints import operator_training_batches

    text = tmp_path / "learn.txt"
    if content == "folder":
        text.mkdir()
    elif content is not None:
        text.write_bytes(content)
    model_dir = tmp_path / "model"  # no tokenizer: byte tokens
    model_dir.mkdir()
    assert_clear_error(lambda path: operator_training_batches(model_dir, 300, path, 1, 1, 128, 0), text)
    text2 = tmp_path / "long.txt"
    text2.write_text("x" * 200)
    assert len(operator_training_batches(model_dir, 300, text2, 2, 1, 128, 0)) == 2


# -- shipped feature nets ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("file, corrupt", [
    *[pytest.param("shapes.json", fn, id=f"json-{fn.__name__}")
      for fn in (json_list, json_empty, json_garbage, json_set("resolution", "sixteen"), json_set("widths", None),
                 json_set("widths", [24, "wide", 96]))],
    *[pytest.param("shapes.safetensors", fn, id=f"weights-{fn.__name__}")
      for fn in (truncated, garbage, emptied, reshaped, renamed, extra)],
])
def test_feature_net(tmp_path, monkeypatch, file, corrupt):
    from genlab.metrics import feature_net

    broken = broken_copy(feature_net.WEIGHTS_DIR, tmp_path, file, corrupt)
    monkeypatch.setattr(feature_net, "WEIGHTS_DIR", broken)
    assert_clear_error(feature_net.load_feature_net.__wrapped__, "shapes", broken / file)


def test_shipped_feature_net_still_loads():
    from genlab.metrics.feature_net import load_feature_net

    assert load_feature_net("shapes").config.dataset == "shapes"


# -- PushBlock shards and action files ---------------------------------------------------------------------------
def flipped(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    path.write_bytes(bytes(data))


def one_array(path: Path) -> None:
    with open(path, "wb") as handle:
        np.save(handle, np.zeros(3))


def bad_frames(path: Path) -> None:
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    np.savez(path, **{**arrays, "frames": arrays["frames"].astype(np.float32)})


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    from genlab.worldmodel.dataset import write_shards

    folder = tmp_path_factory.mktemp("shards")
    write_shards(folder, episodes=2, steps=2, size=16, shard_size=1, progress=False)
    return folder


@pytest.mark.parametrize("corrupt", [emptied, garbage, truncated, flipped, one_array, bad_frames])
def test_corrupt_shard(shards, tmp_path, corrupt):
    from genlab.worldmodel.dataset import read_shards

    copy = broken_copy(shards, tmp_path, "shard-00001.npz", corrupt)
    assert_clear_error(read_shards, copy, copy / "shard-00001.npz")


def test_shard_folders(shards, tmp_path):
    from genlab.worldmodel.dataset import read_shards

    assert read_shards(shards)["actions"].shape == (2, 2, 2)
    folder_cases(read_shards, shards, tmp_path)
    (tmp_path / "empty").mkdir()
    assert_clear_error(read_shards, tmp_path / "empty")


@pytest.mark.parametrize("name, content", [
    ("nan.txt", "0 1\nnan 0\n"), ("inf.txt", "1 inf\n"), ("huge.txt", "1e999 0\n"), ("columns.txt", "1 0\n1 2 3\n"),
    ("empty.txt", ""), ("comments.txt", "# dx dy\n\n"), ("words.txt", "left right\n"), ("binary.txt", b"\xff\xfe\x00"),
    ("nan.npy", np.array([[0.0, np.nan]])), ("flat.npy", np.zeros(4)), ("text.npy", np.array([["a", "b"]])),
    ("empty.npy", np.zeros((0, 2))), ("garbage.npy", b"\x93NUMPY garbage"),
])
def test_bad_action_files(tmp_path, name, content):
    from genlab.worldmodel.play import read_actions

    path = tmp_path / name
    if isinstance(content, np.ndarray):
        np.save(path, content)
    else:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert_clear_error(read_actions, path)


def test_action_file_paths(tmp_path):
    from genlab.worldmodel.play import read_actions

    folder_cases(read_actions, tmp_path, tmp_path)
    good = tmp_path / "good.txt"
    good.write_text("1 0  # right\n0,-1\n")
    assert read_actions(good).tolist() == [[1.0, 0.0], [0.0, -1.0]]


# -- the CLI: one `genlab: error:` line, exit status 2 -----------------------------------------------------------
def assert_one_line_error(result, names: Path) -> None:
    code, _, err = result
    lines = [line for line in err.strip().splitlines() if "Loading weights" not in line]  # transformers' progress
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("genlab: error:"), err
    assert "Traceback" not in err and str(names) in err, err


def test_cli_reports_broken_models_in_one_line(run_cli, saved, saved_lms, tmp_path):
    camera = broken_copy(saved["camera"], tmp_path / "c", "controlnet/" + DIFFUSERS_WEIGHTS, renamed)
    assert_one_line_error(run_cli("sample", "camera", "--model", str(camera), "--out", str(tmp_path / "c.gif")), camera)
    world = broken_copy(saved["world"], tmp_path / "w", "transformer/config.json", json_set("hidden_size", "x"))
    actions = tmp_path / "actions.txt"
    actions.write_text("1 0\n")
    assert_one_line_error(run_cli("play", "--model", str(world), "--actions", str(actions), "--out",
                                  str(tmp_path / "w.gif")), world)
    actions.write_text("nan 0\n")
    assert_one_line_error(run_cli("play", "--model", str(saved["world"]), "--actions", str(actions), "--out",
                                  str(tmp_path / "w.gif")), actions)
    llama = broken_copy(saved_lms[0], tmp_path / "l", "model.safetensors", truncated)
    assert_one_line_error(run_cli("grow", "--model", str(llama), "--out", str(tmp_path / "g1")), llama)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert_one_line_error(run_cli("grow", "--model", str(saved_lms[0]), "--operator", "learn", "--learn-data",
                                  str(empty), "--out", str(tmp_path / "g2")), empty)
