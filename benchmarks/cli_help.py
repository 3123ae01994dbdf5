"""Start-up time of ``genlab --help`` and of every ``genlab COMMAND [SUBCOMMAND] --help``.

Each is a fresh process through the ``genlab`` entry point, timed against ``python -c "import
click"`` in the same round (the floor: an interpreter that loads click). Help imports no torch,
diffusers or transformers (``import torch`` alone takes over a second on a small CPU), so every
help should cost a small multiple of the floor: target ratio <= TARGET (about 0.3 s on a small CPU).
Each round runs every command once in a shuffled order; the table shows the median seconds and
the median over rounds of each round's ratio, which resists other processes on a shared machine.

    python benchmarks/cli_help.py [--rounds 5] [--json runs/cli_help.json]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import click

from genlab.cli import cli

TARGET = 5.0
REFERENCE = "python -c 'import click'"


def help_paths(command: click.Command = cli, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path of the CLI, the root ``()`` first."""
    paths = [prefix]
    if isinstance(command, click.Group):
        for name in command.list_commands(click.Context(command)):
            paths += help_paths(command.get_command(click.Context(command), name), (*prefix, name))
    return paths


def entry_point() -> list[str]:
    """The command line that runs the installed ``genlab`` script (or the module where it is missing)."""
    script = Path(sys.executable).with_name("genlab")
    return [sys.executable, str(script)] if script.is_file() else [sys.executable, "-m", "genlab.cli"]


def seconds(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()

    genlab = entry_point()
    commands = {REFERENCE: [sys.executable, "-c", "import click"]}
    commands.update({" ".join(["genlab", *path, "--help"]): [*genlab, *path, "--help"] for path in help_paths()})
    times: dict[str, list[float]] = {name: [] for name in commands}
    ratios: dict[str, list[float]] = {name: [] for name in commands}
    for name in commands:  # warm-up: byte-compiled files and the disk cache
        seconds(commands[name])
    for _ in range(args.rounds):
        order = list(commands)
        random.shuffle(order)
        round_times = {name: seconds(commands[name]) for name in order}
        for name, value in round_times.items():
            times[name].append(value)
            ratios[name].append(value / round_times[REFERENCE])
    rows = [{"command": name, "seconds": statistics.median(times[name]), "ratio": statistics.median(ratios[name])}
            for name in commands]
    width = max(len(name) for name in commands)
    print(f"{'command':<{width}}  {'seconds':>8}  {'ratio':>6}   (ratio: to {REFERENCE} in the same round; "
          f"target <= {TARGET:g})")
    for row in rows:
        flag = "" if row["command"] == REFERENCE or row["ratio"] <= TARGET else "  over target"
        print(f"{row['command']:<{width}}  {row['seconds']:8.3f}  {row['ratio']:6.2f}{flag}")
    helps = rows[1:]
    worst = max(helps, key=lambda row: row["ratio"])
    print(f"max over {len(helps)} helps: {worst['ratio']:.2f}x ({worst['seconds']:.3f} s, {worst['command']})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"reference": REFERENCE, "target_ratio": TARGET, "rows": rows}, indent=2))
        print(f"rows in {args.json}")


if __name__ == "__main__":
    main()
