"""`genlab align` under stress: SIGTERM and resume, flags that do not apply, bounds, broken checkpoints and inputs,
and the verified download of reward weights (tiny random models, no network)."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from genlab.align.config import AlignConfig
from genlab.align.rewards import build_reward, clip_rewards
from genlab.align.rewards.clip_rewards import AestheticMLP, load_weights
from genlab.align.trainer import AlignmentRun
from genlab.base.image_model import save_image_model
from genlab.core.denoiser import EDMDenoiser
from genlab.core.nets import ImageUNet
from genlab.core.runlog import read_log
from genlab.core.train import TrainingInterrupted
from genlab.errors import GenlabError
from test_align import Brightness, image_target, randomised

STEPS = 80  # at about 15 ms an update, SIGTERM lands long before the end


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A saved 3-class genlab image model (8 px), as `genlab train image` writes it."""
    folder = tmp_path_factory.mktemp("robust") / "model"
    net = ImageUNet(in_channels=1, resolution=8, num_classes=3, base_channels=8, channel_mults=(1, 2),
                    num_res_blocks=1, attention_levels=(1,))
    save_image_model(EDMDenoiser(randomised(net)), folder, "digits")
    return folder


def align_args(model: Path, run_dir: Path, *extra: str) -> list[str]:
    return ["align", "--model", str(model), "--reward", "brightness", "--batch-size", "2", "--sampling-steps", "3",
            "--lora-rank", "2", "--lr", "1e-2", "--no-progress", "--run-dir", str(run_dir), *extra]


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("genlab: error: "), err
    return lines[0]


def records_without_time(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in record.items() if k != "seconds"} for record in read_log(run_dir / "log.jsonl")]


# -- 1. SIGTERM: finish the update, save, exit 130; --resume continues exactly ---------------------------------
def test_sigterm_saves_a_checkpoint_exits_130_and_resume_equals_an_uninterrupted_run(model_dir, tmp_path, run_cli):
    common = ["--steps", str(STEPS), "--checkpoint-every", "1000"]
    stopped, straight = tmp_path / "stopped", tmp_path / "straight"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "genlab.cli", *align_args(model_dir, stopped, *common)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    log, deadline = stopped / "log.jsonl", time.monotonic() + 120
    while not (log.is_file() and log.read_text().strip()):  # wait for the first finished update
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no update was logged"
        time.sleep(0.005)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert one_error_line(err).startswith("genlab: error: SIGTERM at update ")
    done = len(read_log(log))
    assert 1 <= done < STEPS and f"at update {done} of {STEPS}" in err
    assert (stopped / "checkpoints" / f"step_{done:08d}" / "optimizer.safetensors").is_file()
    assert not (stopped / "adapter").exists()

    code, _, err = run_cli(*align_args(model_dir, stopped, *common, "--resume"))
    assert code == 0, err
    code, _, err = run_cli(*align_args(model_dir, straight, *common))
    assert code == 0, err
    assert records_without_time(stopped) == records_without_time(straight)
    resumed, uninterrupted = (load_file(run / "adapter" / "adapter_model.safetensors") for run in (stopped, straight))
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[key], uninterrupted[key]) for key in resumed)  # bit for bit


class InterruptsAtCall(Brightness):
    """Brightness that sends this process SIGINT (Ctrl-C) during its ``call``-th call."""

    def __init__(self, call: int):
        super().__init__()
        self.calls, self.call = 0, call

    def score(self, samples, prompts, labels):
        self.calls += 1
        if self.calls == self.call:
            os.kill(os.getpid(), signal.SIGINT)
        return super().score(samples, prompts, labels)


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals need the main thread")
def test_ctrl_c_finishes_the_update_saves_and_resume_is_exact(tmp_path):
    def config(run: str, **overrides) -> AlignConfig:
        return AlignConfig(steps=4, batch_size=2, accumulate=2, sampling_steps=3, lora_rank=2, checkpoint_every=10,
                           progress=False, run_dir=str(tmp_path / run), **overrides)

    with pytest.raises(TrainingInterrupted, match=r"SIGINT at update 2 of 4: checkpoint saved") as stopped:
        AlignmentRun(image_target(), InterruptsAtCall(call=3), config("stopped")).fit()  # mid-way through update 2
    assert stopped.value.exit_code == 130
    assert [r["step"] for r in read_log(tmp_path / "stopped" / "log.jsonl")] == [1, 2]
    AlignmentRun(image_target(), Brightness(), config("stopped", resume=True)).fit()
    AlignmentRun(image_target(), Brightness(), config("straight")).fit()
    assert records_without_time(tmp_path / "stopped") == records_without_time(tmp_path / "straight")
    resumed, straight = (load_file(tmp_path / run / "adapter" / "adapter_model.safetensors")
                         for run in ("stopped", "straight"))
    assert all(torch.equal(resumed[key], straight[key]) for key in straight)


# -- 2. pipeline-only flags -------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags", [("--guidance-scale", "3"), ("--frames", "4"),
                                   ("--guidance-scale", "0", "--frames", "4")])
def test_pipeline_flags_are_refused_for_genlab_models(model_dir, tmp_path, run_cli, flags):
    code, _, err = run_cli(*align_args(model_dir, tmp_path / "run", "--steps", "1", *flags))
    assert code == 2 and "only to diffusers pipelines" in one_error_line(err)
    assert not (tmp_path / "run").exists()


# -- 3. reproduce align --num-workers ---------------------------------------------------------------------------
def test_reproduce_align_refuses_zero_workers(tmp_path, run_cli):
    from genlab.experiments import align

    code, _, err = run_cli("reproduce", "align", "--num-workers", "0", "--out", str(tmp_path / "out"))
    line = one_error_line(err)
    assert code == 2 and "--num-workers" in line and "must be >= 1" in line
    with pytest.raises(GenlabError, match="--num-workers must be >= 1"):
        align.run(tmp_path / "api", align.PRESETS["quick"], workers=0)


# -- 4. bounds --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("field", "value", "message"), [
    ("steps", 0, "--steps must be >= 1"), ("batch_size", 0, "--batch-size must be >= 1"),
    ("accumulate", 0, "--accumulate must be >= 1"), ("lr", 0.0, "--lr must be > 0"),
    ("lr", float("nan"), "--lr must be a finite number"), ("grad_clip", -1.0, "--grad-clip must be >= 0"),
    ("sampling_steps", 0, "--sampling-steps must be >= 1"), ("eta", 1.5, "--eta must be <= 1"),
    ("eta", -0.1, "--eta must be >= 0"), ("k", 0, "--k must be >= 1"), ("lora_rank", -1, "--lora-rank must be >= 0"),
    ("lora_alpha", -2.0, "--lora-alpha must be >= 0"), ("ddpo_clip", 0.0, "--ddpo-clip must be > 0"),
    ("ddpo_epochs", 0, "--ddpo-epochs must be >= 1"), ("seed", -1, "--seed must be >= 0"),
    ("checkpoint_every", 0, "--checkpoint-every must be >= 1"), ("keep_checkpoints", 0, "--keep-checkpoints must be >= 1"),
])
def test_every_number_has_declared_bounds(field, value, message):
    with pytest.raises(GenlabError, match=message):
        AlignConfig(**{field: value}).validate()


def test_bounds_are_usage_errors_on_the_command_line(model_dir, tmp_path, run_cli):
    code, _, err = run_cli(*align_args(model_dir, tmp_path / "run", "--ddpo-clip", "0"))
    assert code == 2 and "--ddpo-clip" in one_error_line(err)


# -- 5. checkpoints without optimiser state ---------------------------------------------------------------------
def finished_run(tmp_path: Path, steps: int = 2, **overrides) -> Path:
    config = AlignConfig(steps=steps, batch_size=2, sampling_steps=3, lora_rank=2, checkpoint_every=1, progress=False,
                         run_dir=str(tmp_path / "run"), **overrides)
    AlignmentRun(image_target(), Brightness(), config).fit()
    return tmp_path / "run"


def resume(run_dir: Path, steps: int = 3, **overrides) -> None:
    config = AlignConfig(steps=steps, batch_size=2, sampling_steps=3, lora_rank=2, checkpoint_every=1,
                         progress=False, run_dir=str(run_dir), resume=True, **overrides)
    AlignmentRun(image_target(), Brightness(), config).fit()


@pytest.mark.parametrize(("damage", "message"), [
    ("delete", r"optimizer\.safetensors is missing"),
    ("empty", "optimizer's tensors for every parameter are missing"),
    ("drop exp_avg", "optimizer's tensors for parameter 0 are missing"),
    ("state.json", r"state\.json lacks or mangles 'queries'"),
])
def test_a_checkpoint_without_its_optimizer_state_is_refused(tmp_path, damage, message):
    run_dir = finished_run(tmp_path)
    checkpoint = run_dir / "checkpoints" / "step_00000002"
    optimizer = checkpoint / "optimizer.safetensors"
    if damage == "delete":
        optimizer.unlink()
    elif damage == "empty":
        save_file({}, str(optimizer))
    elif damage == "drop exp_avg":
        save_file({k: v for k, v in load_file(optimizer).items() if k != "0.exp_avg"}, str(optimizer))
    else:
        state = json.loads((checkpoint / "state.json").read_text())
        del state["queries"]
        (checkpoint / "state.json").write_text(json.dumps(state))
    with pytest.raises(GenlabError, match=message):
        resume(run_dir)


def test_an_optimizer_state_of_another_shape_is_a_clear_error(tmp_path):
    run_dir = finished_run(tmp_path)
    optimizer = run_dir / "checkpoints" / "step_00000002" / "optimizer.safetensors"
    save_file({k: v[..., :1].contiguous() if k == "0.exp_avg" else v for k, v in load_file(optimizer).items()},
              str(optimizer))
    with pytest.raises(GenlabError, match=r"step_00000002 is incomplete or corrupt: the optimizer's exp_avg of "
                                          r"parameter 0 has shape \(\d+, 1\)"):
        resume(run_dir)


# -- overwrite ----------------------------------------------------------------------------------------------------
def test_overwrite_replaces_a_finished_run_and_is_resumable(tmp_path):
    run_dir = finished_run(tmp_path)
    with pytest.raises(GenlabError, match="--overwrite"):
        finished_run(tmp_path)
    before = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    finished_run(tmp_path, steps=1, overwrite=True, seed=1)
    assert [r["step"] for r in read_log(run_dir / "log.jsonl")] == [1]
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("step_*")) == ["step_00000001"]
    after = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    resume(run_dir, steps=2, seed=1)  # --overwrite may differ on resume
    assert [r["step"] for r in read_log(run_dir / "log.jsonl")] == [1, 2]


def test_a_folder_with_only_an_old_adapter_is_not_silently_reused(tmp_path):
    (tmp_path / "run" / "adapter").mkdir(parents=True)
    with pytest.raises(GenlabError, match="adapter; pass --overwrite"):
        finished_run(tmp_path)
    finished_run(tmp_path, steps=1, overwrite=True)
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()


# -- 7. inputs ------------------------------------------------------------------------------------------------
def test_bad_model_paths_are_one_line(model_dir, tmp_path, run_cli):
    broken = {name: tmp_path / name for name in ("json", "weights")}
    for folder in broken.values():
        folder.mkdir()
        for file in model_dir.iterdir():
            (folder / file.name).write_bytes(file.read_bytes())
    (broken["json"] / "genlab.json").write_text("{not json")
    (broken["weights"] / "diffusion_pytorch_model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{")
    a_file = tmp_path / "model.safetensors"
    a_file.write_bytes(b"")
    cases = {str(a_file): "is a file", str(tmp_path / "missing"): "does not exist",
             str(broken["json"]): "genlab.json is corrupt", str(broken["weights"]): "is corrupt or unreadable"}
    for model, message in cases.items():
        code, _, err = run_cli(*align_args(Path(model), tmp_path / "run", "--steps", "1"))
        assert code == 2 and message in one_error_line(err), (model, err)


def test_bad_prompts_labels_and_run_dir_are_one_line(model_dir, tmp_path, run_cli):
    binary = tmp_path / "prompts.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    a_file = tmp_path / "file"
    a_file.write_text("")
    cases = [
        (("--prompts", str(binary)), "not a UTF-8 text file"),
        (("--prompts", str(tmp_path)), "is a folder"),
        (("--prompts", str(tmp_path / "missing.txt")), "does not exist"),
        (("--labels", "1,5"), "this model has 3 classes (0..2), so 5 is not among them"),
        (("--labels", "-1"), "class indices >= 0"),
        (("--run-dir", str(a_file)), "is a file, not a folder"),
        (("--run-dir", str(a_file / "run")), "is a file, not a folder"),
    ]
    for flags, message in cases:
        code, _, err = run_cli(*align_args(model_dir, tmp_path / "run", "--steps", "1", *flags))
        assert code == 2 and message in one_error_line(err), (flags, err)
    assert not (tmp_path / "run").exists()


# -- 6. downloaded reward weights ---------------------------------------------------------------------------------
@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """torch's hub cache in a temporary folder, and no network: a download attempt fails at once."""
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))

    def offline(url, dst, hash_prefix=None, progress=True):
        raise OSError(f"no network in tests ({url})")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    yield tmp_path / "hub" / "checkpoints"
    torch.hub.set_dir(previous)


def test_the_aesthetic_head_comes_from_a_fixed_commit_with_a_known_sha256():
    url = clip_rewards.AESTHETIC_MLP_URL
    assert f"/raw/{clip_rewards.AESTHETIC_MLP_COMMIT}/" in url and "/main/" not in url
    assert clip_rewards.KNOWN_DOWNLOADS[url] == clip_rewards.AESTHETIC_MLP_SHA256
    assert len(clip_rewards.AESTHETIC_MLP_SHA256) == 64


def test_downloads_are_checked_against_their_sha256(hub_dir, tmp_path, monkeypatch):
    url = "https://example.org/fixed/mlp.pth"
    torch.save(AestheticMLP(8).state_dict(), tmp_path / "mlp.pth")
    digest = hashlib.sha256((tmp_path / "mlp.pth").read_bytes()).hexdigest()
    with pytest.raises(GenlabError, match="downloads only files whose SHA-256 it knows"):
        load_weights(url, "aesthetic MLP weights")
    monkeypatch.setitem(clip_rewards.KNOWN_DOWNLOADS, url, digest)
    with pytest.raises(GenlabError, match="could not download .*--reward-path"):
        load_weights(url, "aesthetic MLP weights")
    hub_dir.mkdir(parents=True, exist_ok=True)
    (hub_dir / "mlp.pth").write_bytes((tmp_path / "mlp.pth").read_bytes())
    assert set(load_weights(url, "aesthetic MLP weights")) == set(AestheticMLP(8).state_dict())
    (hub_dir / "mlp.pth").write_bytes((tmp_path / "mlp.pth").read_bytes() + b"tampered")
    with pytest.raises(GenlabError, match="cached aesthetic MLP weights .* has SHA-256 .*not the expected"):
        load_weights(url, "aesthetic MLP weights")


def test_reward_revision_applies_to_pretrained_rewards_only():
    with pytest.raises(GenlabError, match="--reward-revision applies to rewards with pretrained hub weights"):
        build_reward("brightness", revision="0123abc")
    assert build_reward("brightness").name == "brightness"


def test_reward_path_folder_supplies_verified_aesthetic_weights_without_a_download(hub_dir, tmp_path):
    from transformers import CLIPConfig, CLIPModel

    shared = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    config = CLIPConfig(text_config=dict(vocab_size=60, max_position_embeddings=8, **shared),
                        vision_config=dict(image_size=16, patch_size=8, **shared), projection_dim=8)
    folder = tmp_path / "clip-with-head"
    CLIPModel(config).save_pretrained(folder)
    with pytest.raises(GenlabError, match="could not download the aesthetic MLP weights"):  # no head there yet
        build_reward("aesthetic", str(folder))
    torch.save(AestheticMLP(8).state_dict(), folder / clip_rewards.AESTHETIC_MLP_FILE)
    reward = build_reward("aesthetic", str(folder), revision="main")
    assert reward(torch.zeros(2, 3, 16, 16)).shape == (2,)
