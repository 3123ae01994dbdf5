"""The ``genlab demo`` command (registered in :mod:`genlab.cli`); the demo itself is :mod:`genlab.demo`,
imported when the command runs or its ``--only`` choices are shown."""

from __future__ import annotations

from pathlib import Path

import click

from genlab.cli.lazy import LazyChoice
from genlab.cli.options import out_folder_option


@click.command()
@click.option("--only", "only", type=LazyChoice("genlab.demo:PARTS"), default=None,
              help="run only this part of the demo")
@out_folder_option("runs/demo", "folder for the report and runs")
def demo(only: str | None, out: str) -> None:
    """The main job: every method's small demo, then one HTML report (runs/demo/report.html).

    Parts: core (a tiny class-conditional digits model: train, sample, evaluate); guidance (ICG
    and TSG vs CFG on three tiny digits models); disco (DisCo-Diff's 2-D toy and a short shapes
    run); growth (a byte-level LLaMA grown 4x in depth with each growth operator vs scratch);
    worldmodel (iVideoGPT's quick run on the PushBlock world, with a rollout GIF).
    Each part takes about 2 minutes on 2 cores.
    """
    from genlab.demo import run_demo

    report = run_demo(Path(out), only)
    click.echo(f"report: {report}")
