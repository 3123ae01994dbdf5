"""Checkpoints: round trip, atomicity under a failed save, pruning, clear errors when corrupt."""

import pytest
import torch

from genlab.core import checkpoint as ckpt
from genlab.errors import GenlabError


def tensors(value: float) -> dict:
    return {"model": {"w": torch.full((3, 2), value), "b": torch.arange(4.0)}, "ema": {"w": torch.ones(2)}}


def test_round_trip(tmp_path):
    folder = ckpt.save_checkpoint(tmp_path, 10, tensors(1.5), {"config": {"lr": 0.1}})
    assert folder.name == "step_00000010" and ckpt.latest_checkpoint(tmp_path) == folder
    loaded, state = ckpt.load_checkpoint(folder)
    torch.testing.assert_close(loaded["model"]["w"], torch.full((3, 2), 1.5))
    assert state == {"config": {"lr": 0.1}, "step": 10}


def test_failed_save_leaves_previous_checkpoint_latest_and_readable(tmp_path, monkeypatch):
    ckpt.save_checkpoint(tmp_path, 1, tensors(1.0), {})
    calls = []

    def dies_on_second_file(named, path):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed during save")
        torch.save({}, path)  # a partial write

    monkeypatch.setattr(ckpt, "save_file", dies_on_second_file)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(tmp_path, 2, tensors(2.0), {})
    latest = ckpt.latest_checkpoint(tmp_path)
    assert latest.name == "step_00000001"
    loaded, state = ckpt.load_checkpoint(latest)
    assert state["step"] == 1 and loaded["model"]["w"][0, 0] == 1.0
    monkeypatch.undo()
    ckpt.save_checkpoint(tmp_path, 3, tensors(3.0), {})
    assert not list(tmp_path.glob(".tmp-*")), "leftover staging folders are cleaned up"


def test_prunes_to_keep_newest(tmp_path):
    for step in range(1, 6):
        ckpt.save_checkpoint(tmp_path, step, tensors(step), {}, keep=2)
    assert sorted(p.name for p in tmp_path.glob("step_*")) == ["step_00000004", "step_00000005"]


def test_corrupt_files_raise_clear_errors(tmp_path):
    folder = ckpt.save_checkpoint(tmp_path, 1, tensors(1.0), {})
    (folder / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(GenlabError, match="model.safetensors is corrupt"):
        ckpt.load_checkpoint(folder)
    (folder / "state.json").write_text("{not json")
    with pytest.raises(GenlabError, match="state.json is corrupt"):
        ckpt.load_checkpoint(folder)
    with pytest.raises(GenlabError, match="does not exist"):
        ckpt.load_checkpoint(tmp_path / "missing")


def test_optimizer_state_flatten_round_trip():
    param = torch.nn.Parameter(torch.randn(5))
    optimizer = torch.optim.Adam([param], lr=0.01)
    param.grad = torch.randn(5)
    optimizer.step()
    flat, rest = ckpt.flatten_optimizer_state(optimizer.state_dict())
    restored = ckpt.unflatten_optimizer_state(flat, rest)
    fresh = torch.optim.Adam([torch.nn.Parameter(param.detach().clone())], lr=0.01)
    fresh.load_state_dict(restored)
    torch.testing.assert_close(fresh.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
