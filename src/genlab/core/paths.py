"""Checks on the files and folders a user names, made before any work starts (torch-free).

Every command checks its inputs and outputs here first, so that a wrong path is one
``genlab: error:`` line at once, not a traceback after minutes of sampling or training. Folders that
genlab creates for its own runs carry a marker file; genlab deletes a folder only if it finds
its marker there (:func:`remove_created`), never a folder that merely has the expected name.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from genlab.errors import GenlabError

MARKER = ".genlab-created"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
VIDEO_SUFFIXES = (".mp4", ".gif")


def _check_writable(folder: Path, flag: str) -> None:
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as error:
        raise GenlabError(f"{flag} {folder}: cannot write there ({error.strerror})") from error


def _make_folder(folder: Path, flag: str) -> None:
    for parent in (folder, *folder.parents):
        if parent.exists() and not parent.is_dir():
            where = "" if parent == folder else f": {parent}"
            raise GenlabError(f"{flag} {folder}{where} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise GenlabError(f"{flag} {folder}: cannot create the folder ({error.strerror})") from error


def output_file(path: Path | str, suffixes: Iterable[str], flag: str = "--out") -> Path:
    """Check that a file with one of ``suffixes`` (lower case, with the dot) can be written at ``path``:
    not a folder, its parent creatable and writable (the parent is created). Returns ``Path(path)``."""
    path, suffixes = Path(path), tuple(suffixes)
    if path.suffix.lower() not in suffixes:
        raise GenlabError(f"{flag} {path}: the file must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise GenlabError(f"{flag} {path} is a folder; give a file name ending in {' or '.join(suffixes)}")
    _make_folder(path.parent, flag)
    _check_writable(path.parent, flag)
    return path


def output_dir(path: Path | str, flag: str = "--out") -> Path:
    """Create the folder ``path`` (and its parents) if needed and check that it is writable."""
    path = Path(path)
    _make_folder(path, flag)
    _check_writable(path, flag)
    return path


def existing_dir(path: Path | str, flag: str, what: str = "folder") -> Path:
    """``Path(path)``, which must be an existing folder (``what`` names what it should hold)."""
    path = Path(path)
    if not path.exists():
        raise GenlabError(f"{flag} {path} does not exist")
    if not path.is_dir():
        raise GenlabError(f"{flag} {path} is a file; give the {what}")
    return path


def existing_file(path: Path | str, flag: str) -> Path:
    """``Path(path)``, which must be an existing, readable file."""
    path = Path(path)
    if not path.exists():
        raise GenlabError(f"{flag} {path} does not exist")
    if path.is_dir():
        raise GenlabError(f"{flag} {path} is a folder, not a file")
    if not os.access(path, os.R_OK):
        raise GenlabError(f"{flag} {path} is not readable")
    return path


def write_text_atomic(path: Path | str, text: str) -> None:
    """Write ``text`` to ``path`` through a flushed temporary file beside it and an atomic replace; GenlabError
    naming the file if it cannot be written (the old file, if any, is then left as it was)."""
    path = Path(path)
    temporary = None
    try:
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp",
                                         delete=False) as handle:
            temporary = handle.name
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        if temporary is not None and os.path.exists(temporary):
            os.unlink(temporary)
        if isinstance(error, OSError):
            raise GenlabError(f"cannot write {path} ({error.strerror or error})") from error
        raise


def same_path(a: Path | str, b: Path | str) -> bool:
    """Whether two paths name the same file or folder (relative vs absolute, symlinks, ``..``)."""
    return Path(a).resolve() == Path(b).resolve()


def mark_created(folder: Path | str) -> Path:
    """Create ``folder`` as genlab's own (with its marker), so :func:`remove_created` may delete it later."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).touch()
    return folder


def remove_created(folder: Path | str) -> None:
    """Delete ``folder`` if genlab created it (it holds the marker); refuse a folder genlab did not make.

    An absent folder is fine; an empty one is simply removed.
    """
    folder = Path(folder)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise GenlabError(f"{folder} is a file where genlab keeps a run folder; move it away")
    if (folder / MARKER).is_file() or not any(folder.iterdir()):
        shutil.rmtree(folder)
        return
    raise GenlabError(f"{folder} was not made by genlab (no {MARKER} in it), so genlab will not delete it; "
                      "move it away or choose another --out")
