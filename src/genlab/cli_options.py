"""Click options generated from config dataclasses, so every flag is exactly one config field.

A field declared with :func:`genlab.core.train.option` becomes ``--field-name`` with its help
text, default, type (from the default, or ``type=`` in its metadata) and choices; a bool field
becomes a ``--name/--no-name`` switch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import click


def options_from(config_class: type, exclude: tuple[str, ...] = ()) -> Callable:
    """Decorate a click command with one option per field of ``config_class``."""

    def decorate(command: Callable) -> Callable:
        for config_field in reversed(dataclasses.fields(config_class)):
            if config_field.name not in exclude:
                command = _option(config_field)(command)
        return command

    return decorate


def _option(config_field: dataclasses.Field) -> Callable:
    flag = "--" + config_field.name.replace("_", "-")
    default = config_field.default
    meta = config_field.metadata
    common = {"default": default, "help": meta.get("help"), "show_default": default is not None}
    if isinstance(default, bool):
        return click.option(f"{flag}/--no-{flag[2:]}", config_field.name, **common)
    if "choices" in meta:
        return click.option(flag, config_field.name, type=click.Choice(meta["choices"]), **common)
    return click.option(flag, config_field.name, type=meta.get("type", type(default)), **common)


def build_config(config_class: type, values: dict):
    """Instantiate ``config_class`` from click's keyword arguments (unknown keys ignored)."""
    names = {f.name for f in dataclasses.fields(config_class)}
    return config_class(**{k: v for k, v in values.items() if k in names})
