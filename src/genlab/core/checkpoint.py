"""Checkpoints as folders of safetensors + JSON, written so that a kill never breaks the latest one.

Layout under a checkpoint root (``runs/.../checkpoints``)::

    step_00000500/   model.safetensors, ema.safetensors, optimizer.safetensors, state.json
    step_00001000/   ...
    latest           the name of the newest complete folder (one line)

A save writes a hidden temporary folder, flushes it, renames it into place and only then
replaces ``latest`` (rename and replace are atomic on POSIX). A kill at any moment therefore
leaves ``latest`` pointing at a complete checkpoint, the new one or the previous one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from genlab.errors import GenlabError

LATEST = "latest"
STATE_FILE = "state.json"


def write_json_atomic(path: Path, data: dict) -> None:
    """Write ``data`` as JSON to ``path`` via a temporary file and an atomic replace."""
    path = Path(path)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(handle.name, path)


def save_checkpoint(root: Path, step: int, tensors: dict[str, dict[str, torch.Tensor]], state: dict,
                    keep: int = 2) -> Path:
    """Save one checkpoint atomically and prune old ones.

    Args:
        root: the checkpoint root folder (created if missing).
        step: the training step; names the folder.
        tensors: file stem -> flat name->tensor dict, each written as ``<stem>.safetensors``.
        state: JSON-serialisable training state, written as ``state.json``.
        keep: how many complete checkpoints to keep (the newest ones).

    Returns:
        The folder of the new checkpoint.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".tmp-{final.name}-"))
    for stem, named in tensors.items():
        contiguous = {name: tensor.detach().contiguous().cpu() for name, tensor in named.items()}
        save_file(contiguous, str(staging / f"{stem}.safetensors"))
    with open(staging / STATE_FILE, "w") as handle:
        json.dump({**state, "step": step}, handle, indent=2, sort_keys=True)
    for file in staging.iterdir():
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.rename(staging, final)
    pointer = root / f".{LATEST}.tmp"
    pointer.write_text(final.name + "\n")
    os.replace(pointer, root / LATEST)
    _prune(root, keep)
    return final


def _prune(root: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints and any leftover temporary folders."""
    complete = sorted(p for p in root.glob("step_*") if p.is_dir())
    latest = (root / LATEST).read_text().strip()
    for old in complete[:-keep] if keep > 0 else []:
        if old.name != latest:
            shutil.rmtree(old, ignore_errors=True)
    for leftover in root.glob(".tmp-step_*"):
        shutil.rmtree(leftover, ignore_errors=True)


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint folder under ``root``, or None if there is none."""
    root = Path(root)
    pointer = root / LATEST
    if pointer.is_file():
        folder = root / pointer.read_text().strip()
        if not folder.is_dir():
            raise GenlabError(f"checkpoint pointer {pointer} names {folder.name}, which does not exist")
        return folder
    complete = sorted(p for p in root.glob("step_*") if (p / STATE_FILE).is_file())
    return complete[-1] if complete else None


def read_json(path: Path, missing: str) -> dict:
    """Parse a JSON file; GenlabError(``missing``) if it is absent, or naming it if it is corrupt."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError as error:
        raise GenlabError(missing) from error
    except json.JSONDecodeError as error:
        raise GenlabError(f"{path} is corrupt: not valid JSON ({error})") from error


def load_checkpoint(folder: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict]:
    """Read a checkpoint folder: ``(tensors by file stem, state dict)``; clear errors if corrupt."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GenlabError(f"checkpoint {folder} does not exist")
    state = read_json(folder / STATE_FILE, f"checkpoint {folder} is incomplete: {STATE_FILE} is missing")
    tensors = {}
    for file in sorted(folder.glob("*.safetensors")):
        try:
            tensors[file.stem] = load_file(str(file))
        except (SafetensorError, OSError, ValueError) as error:
            raise GenlabError(f"checkpoint file {file} is corrupt or unreadable ({error})") from error
    return tensors, state


def flatten_optimizer_state(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split a ``torch.optim`` state dict into safetensors-ready tensors and JSON-ready rest."""
    tensors, scalars = {}, {}
    for index, per_param in state_dict["state"].items():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], rest: dict) -> dict:
    """Inverse of :func:`flatten_optimizer_state`."""
    state: dict[int, dict] = {}
    for flat, value in [*tensors.items(), *rest["scalars"].items()]:
        index, key = flat.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": rest["param_groups"]}
