"""CLI conventions: help never imports the heavy libraries, one flag name per concept, and every
renamed flag's old spelling still works (hidden from --help, with a deprecation note)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from genlab.cli import cli
from genlab.cli.options import RenamedOption

HEAVY = ("torch", "diffusers", "transformers", "accelerate")

WALK_HELP = f"""
import contextlib, io, json, sys
import click
from genlab.cli import cli, main

def paths(command, prefix):
    yield prefix
    if isinstance(command, click.Group):
        for name in command.list_commands(click.Context(command)):
            yield from paths(command.get_command(click.Context(command), name), [*prefix, name])

report = []
for path in list(paths(cli, [])):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main([*path, "--help"])
    heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)
    report.append({{"path": path, "usage": out.getvalue().startswith("Usage: genlab"), "heavy": heavy}})
print(json.dumps(report))
"""


def test_help_of_every_command_imports_no_heavy_library():
    done = subprocess.run([sys.executable, "-c", WALK_HELP], capture_output=True, text=True, check=True)
    report = json.loads(done.stdout)
    paths = [" ".join(row["path"]) for row in report]
    assert {"", "train", "train image", "sample camera", "reproduce worldmodel", "align", "play"} <= set(paths)
    assert len(paths) >= 25
    assert all(row["usage"] for row in report), paths
    assert [(p, row["heavy"]) for p, row in zip(paths, report, strict=True) if row["heavy"]] == []


def test_entry_point_help_imports_no_heavy_library():
    script = Path(sys.executable).with_name("genlab")
    command = [str(script)] if script.is_file() else ["-m", "genlab.cli"]
    done = subprocess.run([sys.executable, "-X", "importtime", *command, "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "Usage: genlab" in done.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "genlab.cli" in imported
    assert not {name for name in imported if name.split(".")[0] in HEAVY}


def command_at(path: tuple[str, ...]) -> click.Command:
    command = cli
    for name in path:
        command = command.get_command(click.Context(command), name)
    return command


def every_command(command: click.Command = cli, prefix: tuple[str, ...] = ()):
    """``(path, command)`` for every leaf command."""
    if not isinstance(command, click.Group):
        yield prefix, command
        return
    for name in command.list_commands(click.Context(command)):
        yield from every_command(command.get_command(click.Context(command), name), (*prefix, name))


REQUIRED = {("align",): ["--model", "m", "--reward", "brightness"], ("play",): ["--model", "m"],
            ("sample", "camera"): ["--model", "m"], ("enhance",): ["low.mp4"], ("grow",): ["--model", "m", "--out", "o"]}
WORKERS = [(("reproduce", name), "--workers", "--num-workers", "3")
           for name in ("align", "camera", "enhance", "growth", "worldmodel")]
RENAMES = [
    *[(path, old, new, value) for path in (("sample", "image"), ("evaluate",))
      for old, new, value in (("--run", "--model", "runs/x"), ("--steps", "--sampling-steps", "7"),
                              ("--scale", "--guidance-scale", "2.5"))],
    (("sample", "disco"), "--run", "--model", "runs/x"),
    (("sample", "disco"), "--steps", "--sampling-steps", "7"),
    (("sample", "camera"), "--steps", "--sampling-steps", "7"),
    (("enhance",), "--steps", "--sampling-steps", "7"),
    (("play",), "--steps", "--rollout-steps", "7"),
    (("align",), "--precision", "--mixed-precision", "bf16"),
    (("align",), "--num-frames", "--frames", "5"),
    (("train", "tokenizer"), "--codes", "--num-codes", "64"),
    *WORKERS,
]


@pytest.mark.parametrize(("path", "old", "new", "value"), RENAMES, ids=lambda x: x if isinstance(x, str) else None)
def test_old_spelling_maps_to_the_new_flag_with_a_note(capsys, path, old, new, value):
    command, base = command_at(path), REQUIRED.get(path, [])
    with command.make_context(command.name, [*base, new, value]) as ctx:
        new_params = ctx.params
    assert capsys.readouterr().err == ""
    with command.make_context(command.name, [*base, old, value]) as ctx:
        assert ctx.params == new_params
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{old} is deprecated" in err and f"use {new}" in err
    name = new[2:].replace("-", "_")
    default = next(p.default for p in command.params if p.name == name)
    assert str(new_params[name]) == value != str(default)


@pytest.mark.parametrize(("path", "old", "new"), sorted({(p, o, n) for p, o, n, _ in RENAMES}))
def test_help_shows_only_the_new_name(path, old, new):
    help_text = command_at(path).get_help(click.Context(command_at(path), info_name=path[-1]))
    assert re.search(rf"(?<![\w-]){new}(?![\w-])", help_text)
    assert not re.search(rf"(?<![\w-]){old}(?![\w-])", help_text), help_text


def test_every_renamed_option_is_covered_and_retired_names_are_gone():
    renamed = {(path, param.renamed_from) for path, command in every_command() for param in command.params
               if isinstance(param, RenamedOption)}
    assert renamed == {(path, old) for path, old, _, _ in RENAMES}
    visible = {path: {opt for param in command.params if isinstance(param, click.Option)
                      for opt in param.opts + param.secondary_opts} for path, command in every_command()}
    for retired in ("--workers", "--precision", "--scale", "--run", "--num-frames", "--codes"):
        assert [path for path, flags in visible.items() if retired in flags] == [], retired
    # --steps counts optimiser updates: only commands that train have it
    assert {path for path, flags in visible.items() if "--steps" in flags} == {
        path for path in visible if path[0] in ("train", "align")}


def test_old_spelling_reaches_the_command(run_cli):
    code, _, err = run_cli("reproduce", "worldmodel", "--workers", "0")
    assert code == 2
    assert err.splitlines() == [
        "genlab: warning: --workers is deprecated and goes away in the next release; use --num-workers",
        "genlab: error: Invalid value for '--num-workers': must be >= 1, got 0 "
        "(see 'genlab reproduce worldmodel --help')"]


def test_sample_camera_offers_exactly_the_known_trajectories():
    from genlab.camera.config import TRAJECTORY_NAMES
    from genlab.data.trajectories import TRAJECTORIES

    assert TRAJECTORY_NAMES == tuple(TRAJECTORIES)
