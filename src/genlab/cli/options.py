"""Click options generated from config dataclasses, so every flag is exactly one config field.

A field declared with :func:`genlab.core.config.option` becomes ``--field-name`` with its help
text, default, type (from the default, or ``type=`` in its metadata) and choices; a bool field
becomes a ``--name/--no-name`` switch (or a plain ``--name`` flag with ``flag=True``); a field without a
default is a required option. A field with ``renamed_from="--old-name"`` still accepts the old
spelling for one release (:class:`RenamedOption`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import click

from genlab.core.config import check_fields, check_value, flag_name
from genlab.core.paths import output_dir
from genlab.errors import GenlabError


def options_from(config_class: type, exclude: tuple[str, ...] = ()) -> Callable:
    """Decorate a click command with one option per field of ``config_class``."""

    def decorate(command: Callable) -> Callable:
        for config_field in reversed(dataclasses.fields(config_class)):
            if config_field.name not in exclude:
                command = _option(config_field)(command)
        return command

    return decorate


class RenamedOption(click.Option):
    """A value option that also accepts its old spelling ``renamed_from`` for one release: the old
    name is hidden from ``--help``, and using it prints a one-line deprecation note on stderr."""

    def __init__(self, *args, renamed_from: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.renamed_from = renamed_from

    @property
    def _old_dest(self) -> str:
        return f"{self.name} as {self.renamed_from}"

    def add_to_parser(self, parser, ctx: click.Context) -> None:
        super().add_to_parser(parser, ctx)
        parser.add_option(obj=self, opts=[self.renamed_from], dest=self._old_dest, action="store", nargs=self.nargs)

    def consume_value(self, ctx: click.Context, opts):
        if self._old_dest in opts:
            click.echo(f"genlab: warning: {self.renamed_from} is deprecated and goes away in the next release; "
                       f"use {self.opts[0]}", err=True)
            opts = {self.name: opts[self._old_dest], **opts}
        return super().consume_value(ctx, opts)


def num_workers_option(help: str = "processes for independent jobs (one CPU thread each)") -> Callable:
    """The ``--num-workers`` option of the ``reproduce`` commands (spelt ``--workers`` before)."""
    return click.option("--num-workers", default=2, show_default=True, type=number(int, min=1), cls=RenamedOption,
                        renamed_from="--workers", help=help)


def out_folder_option(default: str, help: str = "output folder") -> Callable:
    """The ``--out`` folder of ``reproduce`` and ``demo``: created, and checked to be a writable folder."""
    return click.option("--out", default=default, show_default=True, help=help,
                        callback=lambda ctx, param, value: _checked(output_dir, value, "--out"))


def _checked(check: Callable, *args):
    """Run a :mod:`genlab.core.paths` check inside a click callback: its GenlabError becomes a usage error."""
    try:
        return check(*args)
    except GenlabError as error:
        raise click.BadParameter(str(error).removeprefix(f"{args[-1]} ")) from error


class Number(click.ParamType):
    """An int or a finite float (``nan`` and ``inf`` refused), optionally bounded: ``minimum`` / ``maximum``
    inclusive, ``above`` exclusive. A bad value is a usage error naming the flag."""

    def __init__(self, kind: type = float, minimum=None, maximum=None, above=None):
        self.kind, self.bounds = kind, (minimum, maximum, above)
        self.name = kind.__name__

    def convert(self, value, param, ctx):
        if isinstance(value, self.kind) and not isinstance(value, bool):
            number = value
        else:
            try:
                number = self.kind(value)
            except (TypeError, ValueError):
                self.fail(f"{value!r} is not {'an integer' if self.kind is int else 'a number'}", param, ctx)
        try:
            check_value(param.opts[0] if param else "value", number, *self.bounds)
        except GenlabError as error:
            self.fail(str(error).split(" ", 1)[1], param, ctx)  # drop the flag: click names it
        return number


def number(kind: type = float, min=None, max=None, above=None) -> Number:  # noqa: A002 (click's own names)
    """A click type for a finite, bounded number (see :class:`Number`)."""
    return Number(kind, min, max, above)


def _option(config_field: dataclasses.Field) -> Callable:
    flag = flag_name(config_field.name)
    required = config_field.default is dataclasses.MISSING
    default = None if required else config_field.default
    meta = config_field.metadata
    common = {"help": meta.get("help"), "show_default": default is not None}
    if required:  # without a default: click counts any default, None too, as a value given
        common["required"] = True
    else:
        common["default"] = default
    if "renamed_from" in meta:
        common.update(cls=RenamedOption, renamed_from=meta["renamed_from"])
    if isinstance(default, bool) and meta.get("flag"):
        return click.option(flag, config_field.name, is_flag=True, default=default, help=meta.get("help"))
    if isinstance(default, bool):
        return click.option(f"{flag}/--no-{flag[2:]}", config_field.name, **common)
    if "choices" in meta:
        return click.option(flag, config_field.name, type=click.Choice(meta["choices"]), **common)
    kind = meta.get("type", type(default))
    if kind in (int, float):
        kind = Number(kind, meta.get("min"), meta.get("max"), meta.get("above"))
    return click.option(flag, config_field.name, type=kind, **common)


def build_config(config_class: type, values: dict):
    """Instantiate ``config_class`` from click's keyword arguments (unknown keys ignored) and check its
    numbers against their declared bounds; its own ``validate()``, if any, runs too."""
    names = {f.name for f in dataclasses.fields(config_class)}
    config = config_class(**{k: v for k, v in values.items() if k in names})
    check_fields(config)
    if hasattr(config, "validate"):
        config.validate()
    return config


def echo_once(message: str) -> None:
    """Print ``message`` from the main process only (under ``accelerate launch`` every process runs the command)."""
    if os.environ.get("RANK", "0") == "0":
        click.echo(message)


def run_training(trainer: Callable, config_class: type, values: dict, what: str) -> None:
    """The body of a ``genlab train`` command: build ``config_class`` from the flags, train it with ``trainer``
    and print the last line: steps, last loss and where the model (``what``) is."""
    config = build_config(config_class, values)
    result = trainer(config)
    echo_once(f"trained {result.steps} steps (last loss {result.last_loss:.4f}); {what} in {config.run_dir}/model")
