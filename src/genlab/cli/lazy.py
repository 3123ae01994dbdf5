"""Lazy pieces of the ``genlab`` CLI: a click group whose subcommands are imported only when they are
used (click's ``LazyGroup`` pattern), and a choice whose values are read only when they are needed.

``genlab --help`` lists every command, so each command's module is imported for its one-line
help; those modules import no torch, diffusers or transformers at module level (heavy imports sit
inside the command functions), which keeps help and argument errors fast.
"""

from __future__ import annotations

import importlib

import click


def resolve(where: str):
    """The object named ``"module:attribute"``, its module imported now."""
    module, attribute = where.split(":")
    return getattr(importlib.import_module(module), attribute)


class LazyGroup(click.Group):
    """A group with ``lazy_commands``, ``{name: "module:attribute"}``, resolved on first use."""

    def __init__(self, *args, lazy_commands: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_commands and cmd_name not in self.commands:
            self.add_command(resolve(self.lazy_commands[cmd_name]), cmd_name)
        return super().get_command(ctx, cmd_name)


class LazyChoice(click.Choice):
    """A :class:`click.Choice` among the keys of ``"module:attribute"``, imported when a value is checked or
    ``--help`` shows the choices (so that a parent's ``--help`` does not import that module)."""

    def __init__(self, where: str):  # no super().__init__: it would read the choices now
        self.where = where
        self.case_sensitive = True

    @property
    def choices(self) -> tuple:
        return tuple(resolve(self.where))
