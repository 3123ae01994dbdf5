"""Run folders and checkpoints under failures: a full disk, a kill while pruning, a corrupt or escaping
``latest`` pointer, a second Ctrl-C during a save, incomplete checkpoints, a fresh run into a used folder,
and the tokenizer's checks before its perceptual net is trained."""

import errno
import json
import os
import shutil
import signal
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from genlab.core import checkpoint as ckpt
from genlab.core import train as train_module
from genlab.core.checkpoint import latest_checkpoint, load_checkpoint
from genlab.core.train import LoopConfig, StopFlag, Trainer, TrainingInterrupted
from genlab.errors import GenlabError

NO_SPACE = os.strerror(errno.ENOSPC)


def tensors(value: float) -> dict:
    return {"model": {"w": torch.full((3, 2), value)}, "ema": {"w": torch.ones(2) * value}}


def linear_trainer(run_dir, steps: int = 2, extra: dict | None = None, **loop) -> Trainer:
    """A tiny regression Trainer (a run of a few steps takes well under a second)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(16, 3, generator=generator), torch.randn(16, 1, generator=generator))
    config = LoopConfig(**{"steps": steps, "batch_size": 4, "checkpoint_every": 2, "log_every": 1,
                           "warmup_steps": 1, "progress": False, **loop})
    return Trainer(model, lambda m, batch: F.mse_loss(m(batch[0]), batch[1]), data, run_dir, config,
                   {**asdict(config), **(extra or {})})


def step_names(root: Path) -> list[str]:
    return sorted(p.name for p in Path(root).glob("step_*"))


# -- 1. a full disk during a save --------------------------------------------------------------------
@pytest.mark.parametrize("fails", ["save_file", "fsync"])
def test_a_full_disk_during_a_save_is_one_clear_error_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch,
                                                                                         fails):
    ckpt.save_checkpoint(tmp_path, 1, tensors(1.0), {"config": {}})

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, NO_SPACE)

    if fails == "save_file":
        monkeypatch.setattr(ckpt, "save_file", disk_full)
    else:
        monkeypatch.setattr(ckpt.os, "fsync", disk_full)
    with pytest.raises(GenlabError) as caught:
        ckpt.save_checkpoint(tmp_path, 2, tensors(2.0), {"config": {}})
    monkeypatch.undo()
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path) in message and NO_SPACE in message
    assert "step_00000001 is kept" in message
    assert latest_checkpoint(tmp_path).name == "step_00000001"
    loaded, state = load_checkpoint(latest_checkpoint(tmp_path))
    assert state["step"] == 1 and loaded["model"]["w"][0, 0] == 1.0
    assert step_names(tmp_path) == ["step_00000001"]
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")], "staging folder removed"


def test_a_full_disk_stops_training_with_the_last_checkpoint_which_resumes(tmp_path, monkeypatch):
    real = ckpt.save_file
    saves = []

    def full_on_the_second_save(named, path):
        if "step_00000004" in path:
            raise OSError(errno.ENOSPC, NO_SPACE)
        saves.append(path)
        real(named, path)

    monkeypatch.setattr(ckpt, "save_file", full_on_the_second_save)
    with pytest.raises(GenlabError, match=f"cannot save checkpoint step_00000004 .*{NO_SPACE}"):
        linear_trainer(tmp_path, steps=4).fit()
    monkeypatch.undo()
    assert latest_checkpoint(tmp_path / "checkpoints").name == "step_00000002"
    linear_trainer(tmp_path, steps=4).fit(resume=True)
    assert load_checkpoint(latest_checkpoint(tmp_path / "checkpoints"))[1]["step"] == 4


# -- 2. pruning -----------------------------------------------------------------------------------------
def test_a_kill_while_pruning_leaves_no_half_deleted_checkpoint(tmp_path, monkeypatch):
    for step in (1, 2):
        ckpt.save_checkpoint(tmp_path, step, tensors(step), {}, keep=2)
    real_rmtree = shutil.rmtree

    def killed_halfway(path, *args, **kwargs):
        if Path(path).name.startswith(".trash-step_"):
            next(Path(path).glob("*.safetensors")).unlink()  # one file deleted, then the process dies
            raise KeyboardInterrupt
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(ckpt.shutil, "rmtree", killed_halfway)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(tmp_path, 3, tensors(3.0), {}, keep=2)
    monkeypatch.undo()
    assert step_names(tmp_path) == ["step_00000002", "step_00000003"]
    for name in step_names(tmp_path):  # every folder that looks like a checkpoint is a whole one
        loaded, state = load_checkpoint(tmp_path / name)
        assert set(loaded) == {"model", "ema"} and state["step"] == int(name[5:])
    assert len(list(tmp_path.glob(".trash-step_00000001-*"))) == 1
    assert latest_checkpoint(tmp_path).name == "step_00000003"
    ckpt.save_checkpoint(tmp_path, 4, tensors(4.0), {}, keep=2)
    assert not list(tmp_path.glob(".trash-*")) and not list(tmp_path.glob(".tmp-*"))
    assert step_names(tmp_path) == ["step_00000003", "step_00000004"]


def test_pruning_keeps_the_newest_complete_checkpoints_and_clears_leftovers(tmp_path):
    (tmp_path / ".tmp-step_00000009-abc").mkdir()  # a save and a prune that were killed
    (tmp_path / ".trash-step_00000001-abc").mkdir()
    for step in range(1, 7):
        ckpt.save_checkpoint(tmp_path, step, tensors(step), {}, keep=3)
    assert step_names(tmp_path) == ["step_00000004", "step_00000005", "step_00000006"]
    assert all(len(list((tmp_path / name).iterdir())) == 3 for name in step_names(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*step_names(tmp_path), "latest"])


# -- 3. the latest pointer ------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["../../other/checkpoints/step_00000001", "absolute", "step_00000007", "",
                                    "step_00000001/../step_00000001"])
def test_a_latest_pointer_outside_the_checkpoints_is_corrupt_and_not_followed(tmp_path, target):
    other = tmp_path / "other" / "checkpoints"
    ckpt.save_checkpoint(other, 1, tensors(9.0), {})
    linear_trainer(tmp_path / "run").fit()
    root = tmp_path / "run" / "checkpoints"
    pointer = str(other / "step_00000001") if target == "absolute" else target
    (root / "latest").write_text(pointer + "\n")
    with pytest.raises(GenlabError, match="checkpoint pointer .*latest is corrupt"):
        latest_checkpoint(root)
    with pytest.raises(GenlabError, match="is corrupt"):
        linear_trainer(tmp_path / "run", steps=4).fit(resume=True)


# -- 4. a second Ctrl-C during a save -----------------------------------------------------------------
def test_the_stop_flag_defers_a_second_ctrl_c_while_shielded():
    flag = StopFlag()
    flag._handle(signal.SIGINT, None)
    assert flag.signal_name == "SIGINT"
    with flag.shielded():
        flag._handle(signal.SIGINT, None)  # would abort the save: only noted
        flag._handle(signal.SIGINT, None)
    assert flag.deferred
    with pytest.raises(KeyboardInterrupt):  # outside a save, a second Ctrl-C still aborts
        flag._handle(signal.SIGINT, None)
    fresh = StopFlag()
    with fresh.shielded():
        fresh._handle(signal.SIGTERM, None)
    assert fresh.signal_name == "SIGTERM" and not fresh.deferred


@pytest.mark.parametrize("first_during_save", [False, True])
def test_ctrl_c_twice_stops_as_interrupted_with_the_checkpoint(tmp_path, monkeypatch, first_during_save):
    flags = []

    class Recording(StopFlag):
        def __enter__(self):
            flags.append(self)
            return super().__enter__()

    real_save = train_module.save_checkpoint

    def save_with_ctrl_c(*args, **kwargs):
        if first_during_save:
            flags[-1]._handle(signal.SIGINT, None)
        flags[-1]._handle(signal.SIGINT, None)  # the impatient second one, in the middle of the save
        return real_save(*args, **kwargs)

    monkeypatch.setattr(train_module, "StopFlag", Recording)
    monkeypatch.setattr(train_module, "save_checkpoint", save_with_ctrl_c)
    trainer = linear_trainer(tmp_path, steps=50, checkpoint_every=4)
    if not first_during_save:  # the first Ctrl-C comes during step 3, the second during its save
        loss_fn, calls = trainer.loss_fn, []

        def first_ctrl_c_in_step_3(model, batch):
            calls.append(1)
            if len(calls) == 3:
                flags[-1]._handle(signal.SIGINT, None)
            return loss_fn(model, batch)

        trainer.loss_fn = first_ctrl_c_in_step_3
    step = 4 if first_during_save else 3  # both during the periodic save of step 4: stops right after it
    with pytest.raises(TrainingInterrupted, match=f"SIGINT at step {step}: checkpoint saved"):
        trainer.fit()
    assert flags[-1].deferred
    assert latest_checkpoint(tmp_path / "checkpoints").name == f"step_{step:08d}"
    assert load_checkpoint(latest_checkpoint(tmp_path / "checkpoints"))[1]["step"] == step


# -- 5. incomplete checkpoints --------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["optimizer file", "optimizer field", "ema file"])
def test_a_checkpoint_without_its_optimizer_state_is_refused(tmp_path, damage):
    linear_trainer(tmp_path).fit()
    folder = latest_checkpoint(tmp_path / "checkpoints")
    if damage == "optimizer file":
        (folder / "optimizer.safetensors").unlink()
    elif damage == "ema file":
        (folder / "ema.safetensors").unlink()
    else:
        state = json.loads((folder / "state.json").read_text())
        del state["optimizer"]
        (folder / "state.json").write_text(json.dumps(state))
    with pytest.raises(GenlabError, match=f"checkpoint {folder} is incomplete"):
        linear_trainer(tmp_path, steps=4).fit(resume=True)


@pytest.mark.parametrize(("content", "message"), [("{}", "has no 'step'"), ("[]", "should hold a JSON object"),
                                                   ('{"step": "2"}', "'step' should be int"),
                                                   ('{"step": 2, "config": []}', "'config' should be")])
def test_a_state_file_without_a_step_is_one_clear_error(tmp_path, content, message):
    linear_trainer(tmp_path).fit()
    (latest_checkpoint(tmp_path / "checkpoints") / "state.json").write_text(content)
    with pytest.raises(GenlabError, match=message):
        linear_trainer(tmp_path, steps=4).fit(resume=True)


# -- 6. the same data folder, spelt differently --------------------------------------------------------
def test_resume_accepts_the_data_folder_given_as_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shards").mkdir()
    (tmp_path / "elsewhere").mkdir()
    linear_trainer("run", extra={"data": "shards"}).fit()
    with pytest.raises(GenlabError, match="differ from the checkpoint.*data"):
        linear_trainer("run", steps=4, extra={"data": str(tmp_path / "elsewhere")}).fit(resume=True)
    linear_trainer(tmp_path / "run", steps=4, extra={"data": str(tmp_path / "shards")}).fit(resume=True)
    assert load_checkpoint(latest_checkpoint(tmp_path / "run" / "checkpoints"))[1]["step"] == 4


# -- 7. a fresh run into a used folder ------------------------------------------------------------------
@pytest.mark.parametrize("left", ["config.json", "log.jsonl", "loss.png", "model/", "checkpoints/"])
def test_a_fresh_run_into_a_folder_holding_a_run_is_refused(tmp_path, left):
    if left == "checkpoints/":
        ckpt.save_checkpoint(tmp_path / "checkpoints", 1, tensors(1.0), {})
    elif left.endswith("/"):
        (tmp_path / left).mkdir()
    else:
        (tmp_path / left).write_text("")
    with pytest.raises(GenlabError, match=rf"run folder {tmp_path} already holds a run \({left}\); pass --resume "
                                          "to continue it, --overwrite to replace it, or choose another --run-dir"):
        linear_trainer(tmp_path).fit()


def test_overwrite_replaces_the_previous_run_and_leaves_no_stale_model(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "checkpoints").mkdir()  # empty: no run yet
    linear_trainer(tmp_path, steps=4).fit()  # other files and empty folders do not count as a run
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.safetensors").write_text("the old run's model")
    with pytest.raises(GenlabError, match=r"already holds a run \(config.json, log.jsonl, loss.png, model/, "
                                          r"checkpoints/\)"):
        linear_trainer(tmp_path, steps=3).fit()
    assert json.loads((tmp_path / "config.json").read_text())["steps"] == 4, "nothing was touched"
    linear_trainer(tmp_path, steps=3, overwrite=True).fit()
    assert not (tmp_path / "model").exists() and (tmp_path / "notes.txt").read_text() == "mine"
    assert step_names(tmp_path / "checkpoints") == ["step_00000002", "step_00000003"]
    assert json.loads((tmp_path / "config.json").read_text())["steps"] == 3
    logged = [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3]
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    linear_trainer(tmp_path, steps=4).fit(resume=True)  # --overwrite is not a setting that --resume checks


# -- 8. the tokenizer checks everything before training its perceptual net ---------------------------
@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    from genlab.worldmodel.dataset import write_shards

    folder = tmp_path_factory.mktemp("pushblock") / "data"
    write_shards(folder, episodes=2, steps=3, size=16, progress=False)
    return folder


def tokenizer_config(data, run_dir, **changes):
    from genlab.worldmodel.config import TokenizerConfig

    settings = dict(data=str(data), run_dir=str(run_dir), clip_frames=2, context_grid=4, future_grid=2, channels=8,
                    code_dim=4, num_codes=8, state_net_steps=2, steps=2, batch_size=2, checkpoint_every=2,
                    log_every=1, progress=False)
    return TokenizerConfig(**{**settings, **changes})


@pytest.mark.parametrize(("case", "message"), [
    ("previous run", "already holds a run"),
    ("no data", "does not exist"),
    ("empty data", "no shard-"),
    ("run dir is a file", "not writable"),
    ("resume without a run", "no checkpoint found"),
    ("grid", "--context-grid 6 must divide the 16-pixel frames"),
    ("future grid", "--future-grid 8 must not exceed --context-grid 4"),
    ("context frames", "--context-frames 2 must be less than --clip-frames 2"),
    ("channels", "--channels must be a multiple of 8"),
    ("batch", "only 1 future frame"),
])
def test_the_tokenizer_checks_its_run_before_training_the_perceptual_net(tmp_path, monkeypatch, shards, case,
                                                                        message):
    from genlab.worldmodel import training

    def must_not_train(*args, **kwargs):
        raise AssertionError("the perceptual net was trained before the checks")

    monkeypatch.setattr(training, "train_state_net", must_not_train)
    run, data, changes = tmp_path / "run", shards, {}
    if case == "previous run":
        run.mkdir()
        (run / "config.json").write_text("{}")
    elif case == "no data":
        data = tmp_path / "missing"
    elif case == "empty data":
        data = tmp_path / "empty"
        data.mkdir()
    elif case == "run dir is a file":
        run.write_text("")
    elif case == "resume without a run":
        changes = {"resume": True}
    else:
        changes = {"grid": {"context_grid": 6}, "future grid": {"future_grid": 8},
                   "context frames": {"context_frames": 2}, "channels": {"channels": 12},
                   "batch": {"batch_size": 1}}[case]
    with pytest.raises(GenlabError, match=message):
        training.train_tokenizer(tokenizer_config(data, run, **changes))
    assert not (run / "state_net").exists()


def test_a_corrupt_perceptual_net_is_a_clear_error(tmp_path, shards):
    from genlab.worldmodel.perceptual import StateNet
    from genlab.worldmodel.training import train_tokenizer

    folder = tmp_path / "run" / "state_net"
    StateNet().save_pretrained(folder)
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(b"truncated")
    with pytest.raises(GenlabError) as caught:
        train_tokenizer(tokenizer_config(shards, tmp_path / "run"))
    assert str(folder) in str(caught.value) and "Traceback" not in str(caught.value)


def test_the_tokenizer_resumes_with_its_data_folder_given_as_an_absolute_path(tmp_path, monkeypatch, shards):
    from genlab.worldmodel.training import train_tokenizer

    monkeypatch.chdir(shards.parent)
    train_tokenizer(tokenizer_config("data", tmp_path / "run"))
    assert (tmp_path / "run" / "state_net" / "config.json").is_file()
    result = train_tokenizer(tokenizer_config(shards.resolve(), tmp_path / "run", steps=3, resume=True))
    assert result.steps == 3
