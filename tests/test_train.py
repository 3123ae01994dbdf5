"""The shared training loop: exact resume, data order, NaN, signals, multi-process, bad folders."""

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from genlab.base.image_model import ImageModelConfig, train_image_model
from genlab.core.checkpoint import latest_checkpoint, load_checkpoint
from genlab.core.train import LoopConfig, StepBatchSampler, Trainer
from genlab.errors import GenlabError

GENLAB = [sys.executable, "-m", "genlab.cli"]


def tiny_config(run_dir: Path, **overrides) -> ImageModelConfig:
    settings = dict(data="digits", resolution=8, steps=8, batch_size=16, checkpoint_every=4, log_every=2,
                    warmup_steps=2, run_dir=str(run_dir), progress=False)
    return ImageModelConfig(**{**settings, **overrides})


def final_state(run_dir: Path) -> dict:
    tensors, state = load_checkpoint(latest_checkpoint(run_dir / "checkpoints"))
    return {"step": state["step"], **{f"{k}.{n}": t for k, named in tensors.items() for n, t in named.items()}}


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    train_image_model(tiny_config(tmp_path / "straight", steps=8, label_dropout=0.1))
    train_image_model(tiny_config(tmp_path / "split", steps=4, label_dropout=0.1))
    train_image_model(tiny_config(tmp_path / "split", steps=8, label_dropout=0.1, resume=True))
    straight, split = final_state(tmp_path / "straight"), final_state(tmp_path / "split")
    assert straight.keys() == split.keys() and straight["step"] == split["step"] == 8
    for name in straight:
        if name != "step":
            torch.testing.assert_close(split[name], straight[name], atol=1e-6, rtol=1e-5, msg=name)
    logged = [json.loads(line)["step"] for line in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    assert logged == [2, 4, 6, 8]
    assert (tmp_path / "split" / "loss.png").stat().st_size > 1000
    assert (tmp_path / "split" / "model" / "genlab.json").is_file()


def test_training_changes_weights_and_lowers_loss(tmp_path):
    train_image_model(tiny_config(tmp_path, steps=40, checkpoint_every=40, log_every=10, lr=3e-3))
    losses = [json.loads(line)["loss"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0]


def test_existing_run_needs_resume_and_resume_needs_same_settings(tmp_path):
    train_image_model(tiny_config(tmp_path, steps=2, checkpoint_every=2))
    with pytest.raises(GenlabError, match=r"already holds a run \(config.json, .*checkpoints/\); pass --resume"):
        train_image_model(tiny_config(tmp_path, steps=4))
    with pytest.raises(GenlabError, match="lr"):
        train_image_model(tiny_config(tmp_path, steps=4, lr=0.5, resume=True))
    with pytest.raises(GenlabError, match="no checkpoint"):
        train_image_model(tiny_config(tmp_path / "empty", resume=True))


def test_run_folder_that_cannot_be_created_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(GenlabError, match="not writable"):
        train_image_model(tiny_config(blocker / "run"))


def test_nan_loss_stops_with_a_clear_error(tmp_path):
    data = TensorDataset(torch.randn(8, 2), torch.zeros(8))
    model = torch.nn.Linear(2, 1)

    def loss_fn(model, batch):
        return model(batch[0]).mean() * math.nan

    trainer = Trainer(model, loss_fn, data, tmp_path, LoopConfig(steps=3, batch_size=4, progress=False))
    with pytest.raises(GenlabError, match="loss became nan at step 1"):
        trainer.fit()


@pytest.mark.parametrize("world", [1, 2, 4])
def test_step_batch_sampler_shards_cover_the_global_batch(world):
    shards = [list(StepBatchSampler(10, 4, seed=3, start_step=0, end_step=5, rank=r, world=world))
              for r in range(world)]
    single = list(StepBatchSampler(10, 4, seed=3, start_step=0, end_step=5))
    for step in range(5):
        assert sorted(i for shard in shards for i in shard[step]) == sorted(single[step])
    first_epoch = [i for batch in single[:2] for i in batch] + single[2][:2]
    assert sorted(first_epoch) == list(range(10)), "each epoch visits every item once"
    resumed = list(StepBatchSampler(10, 4, seed=3, start_step=3, end_step=5))
    assert resumed == single[3:]


def _wait_for(path: Path, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.is_file() and path.read_text().strip():
            return
        time.sleep(0.2)
    raise AssertionError(f"{path} did not appear")


def test_sigterm_saves_a_checkpoint_that_resumes(tmp_path):
    run = tmp_path / "run"
    args = ["train", "image", "--resolution", "8", "--batch-size", "8", "--log-every", "1", "--checkpoint-every", "100000",
            "--run-dir", str(run), "--no-progress"]
    process = subprocess.Popen([*GENLAB, *args, "--steps", "100000"], stderr=subprocess.PIPE, text=True)
    _wait_for(run / "log.jsonl", 120)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "SIGTERM" in stderr and "--resume" in stderr and "Traceback" not in stderr
    saved_step = load_checkpoint(latest_checkpoint(run / "checkpoints"))[1]["step"]
    assert saved_step >= 1
    done = subprocess.run([*GENLAB, *args, "--steps", str(saved_step + 2), "--resume"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert load_checkpoint(latest_checkpoint(run / "checkpoints"))[1]["step"] == saved_step + 2


def test_bf16_autocast_trains_and_fp16_without_gpu_is_refused(tmp_path):
    train_image_model(tiny_config(tmp_path / "bf16", steps=4, mixed_precision="bf16"))
    losses = [json.loads(line)["loss"] for line in (tmp_path / "bf16" / "log.jsonl").read_text().splitlines()]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    if not torch.cuda.is_available():
        with pytest.raises(GenlabError, match="fp16 needs a GPU"):
            train_image_model(tiny_config(tmp_path / "fp16", mixed_precision="fp16"))


def test_dit_on_shapes_trains_and_exports(tmp_path):
    train_image_model(tiny_config(tmp_path, data="shapes", resolution=16, arch="dit", steps=2, checkpoint_every=2))
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["_class_name"] == "ImageDiT" and config["in_channels"] == 3 and config["num_classes"] == 4
