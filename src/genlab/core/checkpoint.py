"""Checkpoints as folders of safetensors + JSON, written so that a kill never breaks the latest one.

Layout under a checkpoint root (``runs/.../checkpoints``)::

    step_00000500/   model.safetensors, ema.safetensors, optimizer.safetensors, state.json
    step_00001000/   ...
    latest           the name of the newest complete folder (one line)

A save writes a hidden temporary folder (``.tmp-…``), flushes it, renames it into place and only
then replaces ``latest`` (rename and replace are atomic on POSIX; the root folder is flushed after
each). A kill at any moment therefore leaves ``latest`` pointing at a complete checkpoint, the new
one or the previous one. Old checkpoints are first renamed to a hidden ``.trash-…`` name and only
then deleted, so a kill while pruning never leaves a half-deleted ``step_*`` folder; leftover
``.tmp-…`` and ``.trash-…`` folders are removed by the next save. A save that fails (a full disk)
raises :class:`GenlabError`, removes what it wrote and leaves the previous checkpoint as ``latest``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from genlab.core.paths import write_text_atomic
from genlab.errors import GenlabError

LATEST = "latest"
STATE_FILE = "state.json"
STEP_NAME = re.compile(r"step_\d{8,}")  # f"step_{step:08d}"; a bare name, never a path
STAGING_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
POINTER_TEMP = f".{LATEST}.tmp"


def fsync_dir(folder: Path | str) -> None:
    """Flush a folder's entries (a rename or a new file in it) to disk; skipped where the system does not
    support syncing a folder."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def os_reason(error: BaseException) -> str:
    """The operating system's reason in an I/O error, e.g. ``No space left on device``."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = (str(error).splitlines() or [""])[0] or type(error).__name__
    return text.removeprefix("Error while serializing: ")


def write_json_atomic(path: Path, data: dict) -> None:
    """Write ``data`` as JSON to ``path`` atomically (:func:`genlab.core.paths.write_text_atomic`)."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True))


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def discard(folder: Path) -> None:
    """Delete ``folder`` so that a kill on the way never leaves it half-deleted under its own name: rename it
    to a hidden ``.trash-…`` name beside it first (atomic), then delete that. Best effort: a folder that
    cannot be renamed is left as it is."""
    folder = Path(folder)
    trash = folder.parent / f"{TRASH_PREFIX}{folder.name}-{uuid.uuid4().hex[:8]}"
    try:
        os.rename(folder, trash)
    except OSError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def clear_leftovers(root: Path) -> None:
    """Remove what killed saves and prunes left in ``root``: ``.tmp-…`` and ``.trash-…`` folders and a
    temporary ``latest`` pointer."""
    try:
        entries = list(Path(root).iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith((STAGING_PREFIX, TRASH_PREFIX)):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                _unlink_quietly(entry)
        elif entry.name == POINTER_TEMP:
            _unlink_quietly(entry)


def _step_of(folder: Path) -> int:
    return int(folder.name.removeprefix("step_"))


def _step_folders(root: Path) -> list[Path]:
    """The ``step_*`` folders directly in ``root`` (no links), oldest first."""
    try:
        entries = list(Path(root).iterdir())
    except OSError:
        return []
    folders = [p for p in entries if STEP_NAME.fullmatch(p.name) and p.is_dir() and not p.is_symlink()]
    return sorted(folders, key=_step_of)


def _write_pointer(root: Path, name: str) -> None:
    temporary = root / POINTER_TEMP
    with open(temporary, "w") as handle:
        handle.write(name + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, root / LATEST)
    fsync_dir(root)


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

    Raises:
        GenlabError: the save failed (a full disk, no permission); what it wrote is removed and the previous
            checkpoint stays the latest one.
    """
    root = Path(root)
    final = root / f"step_{step:08d}"
    staging = renamed = None
    previous = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        clear_leftovers(root)  # first: frees the space that killed saves took
        previous = _pointer_target(root)
        staging = Path(tempfile.mkdtemp(dir=root, prefix=f"{STAGING_PREFIX}{final.name}-"))
        for stem, named in tensors.items():
            contiguous = {name: tensor.detach().contiguous().cpu() for name, tensor in named.items()}
            save_file(contiguous, str(staging / f"{stem}.safetensors"))
        with open(staging / STATE_FILE, "w") as handle:
            json.dump({**state, "step": step}, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        for file in staging.iterdir():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
        fsync_dir(staging)
        if final.exists() or final.is_symlink():
            discard(final)  # an earlier save of this step that a resume from an older checkpoint repeats
        os.rename(staging, final)
        staging, renamed = None, final
        fsync_dir(root)
        _write_pointer(root, final.name)
        renamed = None
    except BaseException as error:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if renamed is not None:  # in place, but ``latest`` still names the previous one: take it out again
            discard(renamed)
        _unlink_quietly(root / POINTER_TEMP)
        if isinstance(error, (OSError, SafetensorError)):
            kept = (f"the previous checkpoint {previous} is kept as the latest one" if previous
                    else "no earlier checkpoint exists")
            raise GenlabError(f"cannot save checkpoint {final.name} in {root} ({os_reason(error)}); {kept}") from error
        raise
    _prune(root, keep, final.name)
    return final


def _prune(root: Path, keep: int, latest: str) -> None:
    """Delete all but the newest ``keep`` checkpoints (never ``latest``) and any leftover temporary folders."""
    complete = _step_folders(root)
    for old in complete[:-keep] if keep > 0 else []:
        if old.name != latest:
            discard(old)
    clear_leftovers(root)


def _pointer_target(root: Path) -> str | None:
    """The folder name ``latest`` holds, if it is a valid one (for messages; never raises)."""
    try:
        found = latest_checkpoint(root)
    except GenlabError:
        return None
    return found.name if found is not None else None


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint folder under ``root``, or None if there is none.

    ``latest`` is followed only if it holds the bare name of a ``step_*`` folder directly in ``root``;
    anything else (a path, a missing folder) is a corrupt pointer and a GenlabError.
    """
    root = Path(root)
    pointer = root / LATEST
    if pointer.is_file():
        try:
            name = pointer.read_text().strip()
        except (OSError, UnicodeDecodeError) as error:
            raise GenlabError(f"checkpoint pointer {pointer} is corrupt or unreadable ({os_reason(error)}); "
                              "delete it to use the newest complete step_* folder") from error
        folder = root / name
        if not STEP_NAME.fullmatch(name) or folder.is_symlink() or not folder.is_dir():
            shown = name if len(name) <= 80 else name[:77] + "..."
            raise GenlabError(f"checkpoint pointer {pointer} is corrupt: it names {shown!r}, which is not a "
                              f"checkpoint folder in {root}; delete it to use the newest complete step_* folder")
        return folder
    if pointer.exists() or pointer.is_symlink():
        raise GenlabError(f"checkpoint pointer {pointer} is corrupt: it is not a file")
    complete = [p for p in _step_folders(root) if (p / STATE_FILE).is_file()]
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
    step = json_field(state, "step", int, folder / STATE_FILE)
    if step < 0:
        raise GenlabError(f"{folder / STATE_FILE} is corrupt: 'step' should be >= 0, got {step}")
    tensors = {}
    for file in sorted(folder.glob("*.safetensors")):
        tensors[file.stem] = load_tensors(file)
    return tensors, state


def require_parts(folder: Path, tensors: dict, state: dict, files: tuple[str, ...] = (),
                  fields: tuple[str, ...] = ()) -> None:
    """GenlabError unless a loaded checkpoint has every ``<stem>.safetensors`` of ``files`` and every
    ``state.json`` field of ``fields``: resuming without one (e.g. with a fresh optimiser) would not
    continue the run it was saved from."""
    missing = [f"{stem}.safetensors" for stem in files if stem not in tensors]
    missing += [f"{key!r} in {STATE_FILE}" for key in fields if key not in state]
    if missing:
        raise GenlabError(f"checkpoint {folder} is incomplete (no {', '.join(missing)}), so it cannot continue "
                          "its run exactly; resume from an intact checkpoint or start afresh with --overwrite")


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
