"""The ``genlab`` command line.

The groups below name each command's module (``genlab.cli.<method>``) and import it only when the
command is used or listed (:class:`~genlab.cli.lazy.LazyGroup`); command modules import torch and the
method's code inside their functions, so ``genlab --help`` stays fast.

User mistakes (a :class:`~genlab.errors.GenlabError`) print one line and exit with status 2;
an interrupted training run exits with 130 after saving a checkpoint.
"""

from __future__ import annotations

import sys

import click

from genlab.cli.lazy import LazyGroup
from genlab.errors import GenlabError


@click.group(cls=LazyGroup, lazy_commands={"align": "genlab.cli.align:align_command",
                                           "demo": "genlab.cli.demo:demo",
                                           "enhance": "genlab.cli.enhance:enhance_command",
                                           "evaluate": "genlab.cli.core:evaluate",
                                           "grow": "genlab.cli.growth:grow",
                                           "play": "genlab.cli.worldmodel:play_command",
                                           "reproduce": "genlab.cli.reproduce:reproduce"},
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="genlab")
def cli() -> None:
    """genlab: 2024 image/video generation methods on one EDM diffusion core.

    Start with `genlab demo` (trains tiny models on the CPU in a few minutes and writes
    runs/demo/report.html). Then `genlab train image|disco`, `genlab sample image|disco` and
    `genlab evaluate` work on your own runs. Every command explains its options with --help.
    """


@cli.group(cls=LazyGroup, lazy_commands={"camera": "genlab.cli.camera:train_camera_command",
                                         "disco": "genlab.cli.disco:train_disco",
                                         "enhance": "genlab.cli.enhance:train_enhance_command",
                                         "image": "genlab.cli.core:train_image",
                                         "tokenizer": "genlab.cli.worldmodel:train_tokenizer_command",
                                         "video": "genlab.cli.camera:train_video_command",
                                         "worldmodel": "genlab.cli.worldmodel:train_worldmodel_command"})
def train() -> None:
    """Train a model: `genlab train image|disco|tokenizer|worldmodel …` (see each one's --help)."""


@cli.group(cls=LazyGroup, lazy_commands={"camera": "genlab.cli.camera:sample_camera_command",
                                         "disco": "genlab.cli.disco:sample_disco",
                                         "image": "genlab.cli.core:sample_image"})
def sample() -> None:
    """Sample a trained model into a PNG grid: `genlab sample image …` or `genlab sample disco …`."""


def _one_line(message: str) -> str:
    return " ".join(message.split())


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning user errors into one line and an exit status."""
    try:
        cli.main(args=argv, prog_name="genlab", standalone_mode=False)
    except GenlabError as error:
        click.echo(f"genlab: error: {_one_line(str(error))}", err=True)
        sys.exit(getattr(error, "exit_code", 2))
    except OSError as error:  # the file system refused: disk full, no permission, a path removed mid-run
        where = f"{error.filename}: " if error.filename else ""
        click.echo(f"genlab: error: {where}{_one_line(error.strerror or str(error))}", err=True)
        sys.exit(2)
    except click.UsageError as error:
        command = error.ctx.command_path if error.ctx else "genlab"
        click.echo(f"genlab: error: {error.format_message()} (see '{command} --help')", err=True)
        sys.exit(error.exit_code)
    except click.ClickException as error:
        click.echo(f"genlab: error: {error.format_message()}", err=True)
        sys.exit(error.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("genlab: interrupted", err=True)
        sys.exit(130)
