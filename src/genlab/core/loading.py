"""Loading ``save_pretrained`` folders (diffusers and transformers models) with one clear error.

A plain ``from_pretrained`` fails on a broken folder with a many-line library message, or worse,
quietly fills missing or misshapen weights with random values and only logs a warning. These
helpers check a folder before a library reads it (:func:`pretrained_folder`, :func:`check_model_config`),
turn what the libraries raise into one :class:`~genlab.errors.GenlabError` naming the path
(:func:`loading_errors`) and refuse weights that do not fit (:func:`from_pretrained_checked`).
:func:`read_schedule` reads the σ settings a genlab model keeps in its ``genlab.json``.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path

from huggingface_hub.errors import StrictDataclassError
from safetensors import SafetensorError, safe_open

from genlab.core.checkpoint import json_field, read_json
from genlab.core.edm import EDMSchedule
from genlab.core.paths import existing_dir
from genlab.errors import GenlabError

CONFIG_FILE = "config.json"
#: What diffusers, transformers and safetensors raise for a missing, unreadable, corrupt or ill-fitting model
#: file (``SafetensorError`` is no ``OSError``; transformers' strict configs raise ``StrictDataclassError``).
POSITIVE_SCHEDULE_FIELDS = ("sigma_data", "sigma_min", "sigma_max", "rho", "p_std")
LOAD_ERRORS = (SafetensorError, OSError, ValueError, RuntimeError, KeyError, TypeError, StrictDataclassError)


def first_line(error: BaseException) -> str:
    """The first non-empty line of an exception's message (library messages run on over many lines), with the
    next one when it ends in a colon (``Validation error for field 'x':`` / ``TypeError: …``)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    return " ".join(lines[:2]) if lines[0].endswith(":") else lines[0]


@contextmanager
def loading_errors(what: str) -> Iterator[None]:
    """Turn what a library raises while it reads model files (:data:`LOAD_ERRORS`) into one GenlabError,
    ``cannot load {what}: <first line of the library's message>``."""
    try:
        yield
    except LOAD_ERRORS as error:
        reason = first_line(error).split(" If you want to instead overwrite")[0]  # diffusers' advice on shapes
        raise GenlabError(f"cannot load {what}: {reason}") from error


@contextmanager
def library_warnings_off() -> Iterator[None]:
    """Silence the warnings diffusers and transformers log while loading (their many-line reports of weights
    that do not fit) and transformers' "Loading weights" progress bar, so that a broken model is the one
    line of genlab's error alone."""
    from transformers.utils import logging as transformers_logging

    loggers = [logging.getLogger(name) for name in ("diffusers", "transformers")]
    levels = [logger.level for logger in loggers]
    bar = transformers_logging.is_progress_bar_enabled()
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
        if bar:
            transformers_logging.enable_progress_bar()


def from_pretrained_checked(load: Callable, folder: Path, what: str, strict: bool = True, **kwargs):
    """``load(folder, output_loading_info=True, **kwargs)`` (a diffusers or transformers ``from_pretrained``) with
    a GenlabError naming ``folder`` for unreadable files, and for weights that do not fit the model: missing
    or of another shape (which those libraries would fill with random values), or, if ``strict``, left over.

    (Pass ``ignore_mismatched_sizes=True`` to a transformers loader: its mismatches are then listed here
    rather than raised with a pointer to the report this silences.)"""
    with loading_errors(f"{what} from {folder}"), library_warnings_off():
        model, info = load(folder, output_loading_info=True, **kwargs)
    misfits = {"missing": info.get("missing_keys"), "of another shape": info.get("mismatched_keys"),
               "unexpected": info.get("unexpected_keys") if strict else None}
    names = {kind: sorted(str(key[0] if isinstance(key, tuple) else key) for key in keys or ())
             for kind, keys in misfits.items()}
    problems = [f"{kind}: {', '.join(keys[:3])}{', …' if len(keys) > 3 else ''}" for kind, keys in names.items() if keys]
    if problems:
        raise GenlabError(f"the weights in {folder} do not fit the {what} ({'; '.join(problems)})")
    return model


def _json_kinds(annotation) -> tuple[type, ...] | None:
    """The JSON types a ``register_to_config`` argument annotated ``annotation`` may take (None: unchecked)."""
    text = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    kinds: list[type] = []
    for part in (part.strip() for part in text.split("|")):
        if part in ("int", "bool", "str", "dict"):
            kinds.append({"int": int, "bool": bool, "str": str, "dict": dict}[part])
        elif part == "float":
            kinds += [int, float]
        elif part == "None":
            kinds.append(type(None))
        elif part.startswith(("tuple", "list")):
            kinds.append(list)
        else:
            return None
    return tuple(kinds)


def pretrained_folder(path: Path | str, what: str, weights: str = "diffusion_pytorch_model") -> tuple[Path, dict]:
    """``(folder, config)`` of a ``save_pretrained`` folder, checked before a library reads it: an existing folder
    (not a file) with a ``config.json`` holding a JSON object that names its class (diffusers'
    ``_class_name``, or transformers' ``model_type`` when ``weights`` is ``"model"``) and a ``weights*`` file;
    else a GenlabError. (Without a class name the libraries would build their default, possibly huge, model.)"""
    folder = existing_dir(path, what, "model folder")
    config = read_json(folder / CONFIG_FILE, f"{folder} holds no {what} (no {CONFIG_FILE})")
    transformers = weights == "model"
    json_field(config, "model_type" if transformers else "_class_name", str, folder / CONFIG_FILE)
    patterns = (f"{weights}*", "pytorch_model*") if transformers else (f"{weights}*",)
    if not any(any(folder.glob(pattern)) for pattern in patterns):
        raise GenlabError(f"{folder} holds no weights of the {what} (no {weights}.safetensors)")
    for file in sorted(folder.glob(f"{weights}*.safetensors")):
        try:
            with safe_open(str(file), "pt"):  # reads and checks the header only
                pass
        except (SafetensorError, OSError) as error:
            raise GenlabError(f"{file} is corrupt or unreadable ({first_line(error)})") from error
    return folder, config


def check_model_config(model_class: type, config: dict, path: Path, what: str) -> None:
    """Check the ``config.json`` (``config``, read from ``path``) of a genlab diffusers-style model against
    ``model_class``'s ``__init__``: it names the class, has every required argument and none of another type."""
    name = json_field(config, "_class_name", str, path)
    if name != model_class.__name__:
        raise GenlabError(f"{path} describes a {name}, not the {model_class.__name__} of a {what}")
    for key, parameter in inspect.signature(model_class.__init__).parameters.items():
        if key == "self" or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        kinds = _json_kinds(parameter.annotation)
        if key not in config and parameter.default is parameter.empty:
            raise GenlabError(f"{path} is corrupt: it has no {key!r}")
        if key in config and kinds:
            json_field(config, key, kinds, path)


def load_pretrained(model_class: type, path: Path | str, what: str, load: Callable | None = None, **kwargs):
    """A genlab diffusers-style model (``ModelMixin`` + ``ConfigMixin``) from its ``save_pretrained`` folder,
    with one GenlabError naming the path for a missing folder or a file in its place, a corrupt or
    mistyped ``config.json``, missing, truncated or corrupt weights, and weights that do not fit.

    ``load`` is the ``from_pretrained`` to call (default ``model_class.from_pretrained``; a class that
    overrides it with this function passes ``super().from_pretrained``).
    """
    folder, config = pretrained_folder(path, what)
    check_model_config(model_class, config, folder / CONFIG_FILE, what)
    return from_pretrained_checked(load or model_class.from_pretrained, folder, what, **kwargs)


def read_schedule(info: dict, source: Path | str) -> EDMSchedule:
    """The :class:`EDMSchedule` saved in a ``genlab.json`` (absent σ settings keep their defaults); GenlabError
    naming ``source`` unless each is a finite number, the positive ones positive and σ_min < σ_max."""
    values = {}
    for field in fields(EDMSchedule):
        value = json_field(info, field.name, (int, float), source) if field.name in info else field.default
        if not math.isfinite(value) or (field.name in POSITIVE_SCHEDULE_FIELDS and value <= 0):
            kind = "a positive" if field.name in POSITIVE_SCHEDULE_FIELDS else "a finite"
            raise GenlabError(f"{source} is corrupt: {field.name!r} should be {kind} number, got {value!r}")
        values[field.name] = float(value)
    if values["sigma_min"] >= values["sigma_max"]:
        raise GenlabError(f"{source} is corrupt: sigma_min {values['sigma_min']} is not below sigma_max "
                          f"{values['sigma_max']}")
    return EDMSchedule(**values)
