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


def read_json(path: Path, missing: str, expect: type = dict) -> dict:
    """Parse a JSON file that must hold an ``expect`` (a JSON object by default); GenlabError(``missing``)
    if it is absent, or naming it if it is unreadable, not valid JSON or of another type."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError as error:
        raise GenlabError(missing) from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise GenlabError(f"{path} is corrupt: not valid JSON ({error})") from error
    except OSError as error:
        raise GenlabError(f"cannot read {path} ({error.strerror})") from error
    if not isinstance(data, expect):
        kind = "a JSON object" if expect is dict else f"a JSON {expect.__name__}"
        raise GenlabError(f"{path} is corrupt: it should hold {kind}, not {type(data).__name__}")
    return data


def json_field(data: dict, key: str, kind: type | tuple[type, ...], source: Path | str):
    """``data[key]``, checked to be of ``kind``; GenlabError naming ``source`` if it is missing or mistyped."""
    if key not in data:
        raise GenlabError(f"{source} is corrupt: it has no {key!r}")
    value = data[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        raise GenlabError(f"{source} is corrupt: {key!r} should be {' or '.join(k.__name__ for k in kinds)}, "
                          f"got {value!r}")
    return value


def load_tensors(path: Path | str) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` file; GenlabError naming it if it is missing, truncated or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise GenlabError(f"{path} is missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise GenlabError(f"{path} is corrupt or unreadable ({str(error).splitlines()[0]})") from error


def load_weights(module: torch.nn.Module, path: Path | str, strict: bool = True) -> torch.nn.Module:
    """Load the ``.safetensors`` file ``path`` into ``module``; GenlabError if it is corrupt or its tensors
    do not fit the module (other names or shapes)."""
    state = load_tensors(path)
    try:
        module.load_state_dict(state, strict=strict)
    except RuntimeError as error:
        raise GenlabError(f"{path} does not fit this model: {str(error).splitlines()[0]}") from error
    return module


def load_checkpoint(folder: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict]:
    """Read a checkpoint folder: ``(tensors by file stem, state dict)``; clear errors if corrupt."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GenlabError(f"checkpoint {folder} does not exist")
    state = read_json(folder / STATE_FILE, f"checkpoint {folder} is incomplete: {STATE_FILE} is missing")
    tensors = {}
    for file in sorted(folder.glob("*.safetensors")):
        tensors[file.stem] = load_tensors(file)
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
