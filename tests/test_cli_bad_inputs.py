"""Every ``genlab`` command, given bad or odd input, fails with one clear line, never a traceback.

The promise checked here: every CLI command, given any input, either does the right thing or prints
exactly one ``genlab: error:`` line on stderr and exits with status 2 -- no Python traceback, and never
exit 0 after doing the wrong thing. :data:`CASES` is one table of inputs for every subcommand, run
in-process through :func:`genlab.cli.main` against tiny models trained once (:func:`build_fixtures`,
about 15 s). ``scripts/cli_bad_inputs.py`` runs the same table in subprocesses and counts outcomes.

Kinds of input in the table:

* output paths: a file where a folder is expected and a folder where a file is expected, a wrong or
  missing extension (images want .png/.jpg, videos .mp4/.gif, ``evaluate`` .json), a parent that is a
  file, an unwritable folder (as root, where permissions do not bite, a path under a regular file);
* model and data folders: a file, a missing or empty folder, another kind of model, JSON that parses
  but has the wrong shape or types, truncated or garbage ``*.safetensors`` in every loader;
* numbers: 0, negative, ``nan``, ``inf``, huge (seeds past 2**64) and text for every bounded flag, and
  pairs that contradict each other (``--guidance-t-min 0.8 --guidance-t-max 0.2``);
* silently wrong: flags a model ignores (``align --guidance-scale`` on a genlab model), a fresh run
  over a finished one, ``grow --out`` onto its own model, a checkpoint without its optimizer state
  or whose ``latest`` pointer leaves the run folder, all of which must be refused;
* ``reproduce`` and ``demo``: only inputs that must fail before any work starts (a bad ``--out``,
  ``--num-workers 0``), since a good one runs for minutes;
* good inputs for each command, whose output is checked (a readable PNG, video, JSON or model).

Outcomes (:func:`judge`): ``clean_error`` and ``ok`` are what the table expects; ``traceback`` (an
exception escaped ``main``), ``silently_wrong`` (exit 0 where an error was expected), ``bad_message``
(exit 2 but not exactly one ``genlab: error:`` line naming what the table asks for; error cases must
fail before work starts, so a progress bar or warning before the error counts), ``wrong_exit``
(another exit status), ``ok_failed`` (a good input that failed or wrote a bad result) and
``timeout`` are failures.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import shutil
import signal
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from genlab.cli import main

Placeholders = dict[str, str]
Setup = Callable[[Placeholders], None]
Check = Callable[[Placeholders], None]

# ---------------------------------------------------------------------------------------------------
# Fixtures: tiny trained models, built once with the same flags the table resumes and trains with
# ---------------------------------------------------------------------------------------------------

LOOP = "--steps 2 --batch-size 4 --checkpoint-every 2 --warmup-steps 1 --no-progress"
CKPT = "checkpoints/step_00000002"  # the one checkpoint of every fixture run
HUGE = "100000000000000000000000"  # 1e23: past the 2**64 a seed can hold
TRAIN = {
    "image": f"train image {LOOP} --resolution 8",
    "disco": f"train disco {LOOP} --resolution 8 --data digits --num-latents 2 --num-codes 4 --prior-steps 2 "
             "--prior-batch-size 4",
    "video": f"train video {LOOP} --clips 4 --frames 4 --resolution 8",
    "venh": f"train video {LOOP} --clips 4 --frames 4 --resolution 8 --no-first-frame --data mixed",
    "camera": f"train camera {LOOP} --base {{video}} --clips 4 --branch-hidden 16 --branch-depth 1",
    "enhancer": f"train enhance {LOOP} --base {{venh}} --clips 4 --branch-depth 1",
    "tokenizer": f"train tokenizer {LOOP} --data {{shards}} --context-grid 8 --future-grid 2 --channels 8 "
                 "--code-dim 4 --num-codes 8 --state-net-steps 1",
    "worldmodel": f"train worldmodel {LOOP} --data {{shards}} --tokenizer {{tok}} --future-frames 1 --hidden-size 16 "
                  "--layers 1 --heads 2",
}


def build_fixtures(root: Path) -> Placeholders:
    """Train the tiny models the table reads (run folders under ``root``); their placeholders.

    ``image``/``disco``/``video``/``camera``/``enhancer``: run folders; ``venh``: an unconditional
    video run (an enhancer's base); ``shards``: PushBlock shards; ``tok``: a tokenizer model folder;
    ``wm``: a world-model folder; ``llama``: a tiny LlamaForCausalLM; ``lowvid``: a 3-frame 4x4 MP4;
    ``actions``: a ``.npy`` of three PushBlock actions.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from genlab.core.images import save_video
    from genlab.worldmodel.dataset import write_shards

    root = Path(root)
    fx = {name: str(root / name) for name in ("image", "disco", "video", "venh", "camera", "enhancer", "shards",
                                              "llama")}
    fx.update(tok=str(root / "tokrun" / "model"), wm=str(root / "wmrun" / "model"), lowvid=str(root / "low.mp4"),
              actions=str(root / "actions.npy"))
    runs = {"tokenizer": root / "tokrun", "worldmodel": root / "wmrun"}
    write_shards(root / "shards", episodes=4, steps=5, size=32, progress=False)
    for name, template in TRAIN.items():
        _genlab(f"{template} --run-dir {runs.get(name, root / name)}", fx)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=256, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=2)).save_pretrained(fx["llama"])
    save_video(np.random.default_rng(0).integers(0, 256, (3, 4, 4, 3), dtype=np.uint8), fx["lowvid"], fps=4)
    np.save(fx["actions"], np.array([[1, 0], [0, 1], [0.5, -0.5]], np.float32))
    return fx


def _genlab(template: str, placeholders: Placeholders) -> None:
    argv = [token.format(**placeholders) for token in shlex.split(template)]
    try:
        main(argv)
    except SystemExit as exit_:
        if exit_.code:
            raise RuntimeError(f"building a fixture failed (exit {exit_.code}): genlab {' '.join(argv)}") from None


@contextlib.contextmanager
def case_folder(tmp: Path, fixtures: Placeholders) -> Iterator[Placeholders]:
    """The placeholders of one case: the fixtures, ``tmp`` (its own folder), ``file`` (a text file),
    ``empty`` and ``full`` (an empty and a non-empty folder) and ``unwritable`` (a folder nothing can be
    created in; as root, where permissions do not bite, a regular file, so paths under it fail)."""
    tmp = Path(tmp)
    (tmp / "file.txt").write_text("not a model, not a video\n")
    (tmp / "empty").mkdir()
    (tmp / "full").mkdir()
    (tmp / "full" / "keep.txt").write_text("keep me\n")
    if os.geteuid() == 0:
        unwritable = tmp / "locked.txt"
        unwritable.write_text("a file, so nothing can be created under it\n")
    else:
        unwritable = tmp / "locked"
        unwritable.mkdir()
        unwritable.chmod(0o500)
    try:
        yield {**fixtures, "tmp": str(tmp), "file": str(tmp / "file.txt"), "empty": str(tmp / "empty"),
               "full": str(tmp / "full"), "unwritable": str(unwritable)}
    finally:
        if unwritable.is_dir():
            unwritable.chmod(0o700)


# ---------------------------------------------------------------------------------------------------
# Setups (prepare a case's folder) and checks (of a good case's output); paths are relative to {tmp}
# ---------------------------------------------------------------------------------------------------

def copy_of(source: str, *edits: Callable[[Path], None], to: str = "m") -> Setup:
    """Copy fixture ``source`` to ``{tmp}/<to>`` and apply ``edits`` to the copy."""
    def setup(ph: Placeholders) -> None:
        dest = Path(ph["tmp"]) / to
        shutil.copytree(ph[source], dest)
        for edit in edits:
            edit(dest)
    return setup


def json_file(rel: str, value) -> Callable[[Path], None]:
    return lambda folder: (folder / rel).write_text(json.dumps(value))


def json_key(rel: str, key: str, value) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        data = json.loads((folder / rel).read_text())
        data[key] = value
        (folder / rel).write_text(json.dumps(data))
    return edit


def text_file(rel: str, text: str) -> Callable[[Path], None]:
    return lambda folder: (folder / rel).write_text(text)


def removed(rel: str) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        path = folder / rel
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return edit


def truncated(rel: str = ".") -> Callable[[Path], None]:
    """Cut every ``*.safetensors`` under ``rel`` to half its size."""
    def edit(folder: Path) -> None:
        for path in [folder / rel] if (folder / rel).is_file() else (folder / rel).rglob("*.safetensors"):
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return edit


def garbage(rel: str = ".") -> Callable[[Path], None]:
    """Replace every ``*.safetensors`` under ``rel`` by bytes that are not one."""
    def edit(folder: Path) -> None:
        for path in [folder / rel] if (folder / rel).is_file() else (folder / rel).rglob("*.safetensors"):
            path.write_bytes(b"\x89 not a safetensors file \x00\xff" * 8)
    return edit


def files(contents: dict) -> Setup:
    """Write files under ``{tmp}``: str -> text, bytes -> bytes, an array -> ``.npy``."""
    def setup(ph: Placeholders) -> None:
        for rel, content in contents.items():
            path = Path(ph["tmp"]) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, np.ndarray):
                np.save(path, content)
            elif isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
    return setup


def escaping_latest(ph: Placeholders) -> None:
    """An image run whose ``checkpoints/latest`` names a complete checkpoint of another run folder."""
    tmp = Path(ph["tmp"])
    shutil.copytree(ph["image"], tmp / "run")
    shutil.copytree(tmp / "run" / CKPT, tmp / "other" / "checkpoints" / "step_00000001")
    (tmp / "run" / "checkpoints" / "latest").write_text("../../other/checkpoints/step_00000001\n")


def exists(*rels: str) -> Check:
    def check(ph: Placeholders) -> None:
        missing = [rel for rel in rels if not (Path(ph["tmp"]) / rel).exists()]
        assert not missing, f"missing {missing}"
    return check


def image_at(rel: str) -> Check:
    def check(ph: Placeholders) -> None:
        import imageio.v3 as iio

        image = iio.imread(Path(ph["tmp"]) / rel)
        assert image.ndim in (2, 3) and image.size > 0, f"{rel}: not an image, shape {image.shape}"
    return check


def video_at(rel: str, frames: int | None = None) -> Check:
    def check(ph: Placeholders) -> None:
        import imageio.v3 as iio

        video = iio.imread(Path(ph["tmp"]) / rel, index=None)
        assert video.ndim == 4, f"{rel}: not a video, shape {video.shape}"
        assert frames is None or len(video) == frames, f"{rel}: {len(video)} frames, expected {frames}"
    return check


def json_with(rel: str, *keys: str) -> Check:
    def check(ph: Placeholders) -> None:
        data = json.loads((Path(ph["tmp"]) / rel).read_text())
        assert isinstance(data, dict) and set(keys) <= data.keys(), f"{rel}: lacks some of {keys}"
    return check


def hf_config(rel: str, **expected) -> Check:
    def check(ph: Placeholders) -> None:
        config = json.loads((Path(ph["tmp"]) / rel / "config.json").read_text())
        assert {k: config.get(k) for k in expected} == expected, f"{rel}: {config}"
    return check


def text_is(rel: str, text: str) -> Check:
    def check(ph: Placeholders) -> None:
        assert (Path(ph["tmp"]) / rel).read_text().strip() == text, f"{rel} should read {text!r}"
    return check


# ---------------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """``genlab <template>``, its ``{placeholders}`` filled per token, and what must happen."""

    id: str
    template: str
    expect: str = "error"  # "error": one `genlab: error:` line, exit 2; "ok": exit 0 and `check` holds
    contains: str | None = None  # the error line must contain this
    check: Check | None = None
    setup: Setup | None = None

    def argv(self, ph: Placeholders) -> list[str]:
        return [token.format(**ph) for token in shlex.split(self.template)]


@dataclass(frozen=True)
class Item:
    name: str
    args: str
    expect: str
    contains: str | None = None
    check: Check | None = None
    setup: Setup | None = None


def E(name: str, args: str, contains: str | None = None, setup: Setup | None = None) -> Item:
    """An input that must be refused: one `genlab: error:` line (containing ``contains``), exit 2."""
    return Item(name, args, "error", contains, None, setup)


def OK(name: str, args: str = "", check: Check | None = None, setup: Setup | None = None) -> Item:
    """An input that must work: exit 0 and ``check`` holds."""
    return Item(name, args, "ok", None, check, setup)


def numbers(flag: str, *values: str, extra: str = "") -> list[Item]:
    """Bad values of one numeric flag; each error must name the flag."""
    return [E(f"{flag[2:]}={'huge' if value == HUGE else value}", f"{extra} {flag} {value}".strip(), contains=flag)
            for value in values]


def group(command: str, base: str, *items: Item | list[Item]) -> list[Case]:
    """Cases ``<base> <item args>`` named ``<command>/<item name>`` (a later flag overrides the base's)."""
    flat = [i for item in items for i in (item if isinstance(item, list) else [item])]
    return [Case(f"{command}/{i.name}", f"{base} {i.args}".strip(), i.expect, i.contains, i.check, i.setup)
            for i in flat]


def output_file_errors(out_flag: str, good_ext: str, other_ext: str) -> list[Item]:
    """A bad ``--out`` file: wrong kind of file, no extension, a folder, under a file, unwritable."""
    return [E("out-wrong-extension", f"{out_flag} {{tmp}}/o.txt"),
            E(f"out-{other_ext[1:]}-not-{good_ext[1:]}", f"{out_flag} {{tmp}}/o{other_ext}"),
            E("out-no-extension", f"{out_flag} {{tmp}}/o"),
            E("out-is-a-folder", f"{out_flag} {{tmp}}"),
            E("out-parent-is-a-file", f"{out_flag} {{file}}/o{good_ext}"),
            E("out-unwritable", f"{out_flag} {{unwritable}}/sub/o{good_ext}")]


def run_dir_errors() -> list[Item]:
    return [E("run-dir-is-a-file", "--run-dir {file}"),
            E("run-dir-under-a-file", "--run-dir {file}/run"),
            E("run-dir-unwritable", "--run-dir {unwritable}/sub/run")]


def model_folder_errors(flag: str, source: str, model_json: str, weights: str = ".") -> list[Item]:
    """A bad model folder for ``flag``: a file, missing, empty, truncated or garbage weights, and a
    ``model_json`` (relative to a copy of fixture ``source``) that parses but has the wrong shape."""
    return [E(f"{flag[2:]}-is-a-file", f"{flag} {{file}}"),
            E(f"{flag[2:]}-missing", f"{flag} {{tmp}}/missing"),
            E(f"{flag[2:]}-empty-folder", f"{flag} {{empty}}"),
            E(f"{flag[2:]}-truncated-weights", f"{flag} {{tmp}}/m", setup=copy_of(source, truncated(weights))),
            E(f"{flag[2:]}-garbage-weights", f"{flag} {{tmp}}/m", setup=copy_of(source, garbage(weights))),
            E(f"{flag[2:]}-json-list", f"{flag} {{tmp}}/m", setup=copy_of(source, json_file(model_json, []))),
            E(f"{flag[2:]}-json-empty-object", f"{flag} {{tmp}}/m", setup=copy_of(source, json_file(model_json, {}))),
            E(f"{flag[2:]}-json-string", f"{flag} {{tmp}}/m", setup=copy_of(source, json_file(model_json, "model")))]


def resume_errors(source: str, ckpt: str = CKPT) -> list[Item]:
    """``--resume`` from a damaged checkpoint of a copy of fixture run ``source`` at ``{tmp}/run``."""
    def damaged(*edits):
        return copy_of(source, *edits, to="run")
    return [E("resume-state-json-empty-object", "--resume", setup=damaged(json_file(f"{ckpt}/state.json", {}))),
            E("resume-state-json-list", "--resume", setup=damaged(json_file(f"{ckpt}/state.json", []))),
            E("resume-state-json-not-json", "--resume", setup=damaged(text_file(f"{ckpt}/state.json", "{step: 2"))),
            E("resume-no-optimizer-state", "--resume --steps 3",
              setup=damaged(removed(f"{ckpt}/optimizer.safetensors"))),
            E("resume-truncated-checkpoint", "--resume --steps 3",
              setup=damaged(truncated(f"{ckpt}/model.safetensors"))),
            E("resume-garbage-ema", "--resume --steps 3", setup=damaged(garbage(f"{ckpt}/ema.safetensors"))),
            E("resume-latest-names-a-missing-step", "--resume --steps 3",
              setup=damaged(text_file("checkpoints/latest", "step_00000099\n")))]


def finished_run_errors(source: str) -> list[Item]:
    """A fresh run (no --resume) into a copy of finished fixture run ``source``: refused."""
    return [E("fresh-run-over-a-finished-run", "", setup=copy_of(source, to="run")),
            E("fresh-run-over-a-finished-run-without-checkpoints", "",
              setup=copy_of(source, removed("checkpoints"), to="run"))]


def reproduce_cases(name: str, workers: bool) -> list[Case]:
    """Only inputs that must fail before any work: a bad --out, a bad --num-workers."""
    return group(f"reproduce-{name}", f"reproduce {name} --quick --out {{tmp}}/rep",
                 E("out-is-a-file", "--out {file}"),
                 E("out-under-a-file", "--out {file}/sub"),
                 E("out-unwritable", "--out {unwritable}/sub/rep"),
                 numbers("--num-workers", "0", "-1", "nan", "two") if workers else [])


TI = TRAIN["image"] + " --run-dir {tmp}/run"
SI = "sample image --model {image} --num 4 --sampling-steps 2 --out {tmp}/s.png"
EV = "evaluate --model {image} --num 8 --sampling-steps 2 --out {tmp}/r.json"
SD = "sample disco --model {disco} --num 4 --sampling-steps 2 --out {tmp}/d.png"
SC = "sample camera --model {camera} --sampling-steps 2 --out {tmp}/c.gif"
EN = "enhance {lowvid} --model {enhancer} --space 2 --sampling-steps 2 --out {tmp}/h.mp4"
PL = "play --model {wm} --actions {actions} --out {tmp}/p.gif"
GR = "grow --model {llama} --factor 2 --out {tmp}/g"
AL = "align --model {image} --reward brightness --steps 1 --batch-size 2 --sampling-steps 2 --lora-rank 2 " \
     "--no-progress --run-dir {tmp}/run"
CORPUS = "The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs.\n" * 60

CASES: list[Case] = [
    # --- the command line itself -------------------------------------------------------------------
    *group("cli", "",
           E("unknown-command", "frobnicate"),
           E("unknown-train-command", "train cifar"),
           E("unknown-option", f"{SI} --no-such-flag"),
           E("option-without-value", "evaluate --num"),
           E("grow-without-model", "grow --out {tmp}/g", "--model"),
           E("align-without-reward", "align --model {image}", "--reward"),
           E("enhance-without-input", "enhance --model {enhancer}", "INPUT")),

    # --- train image (the shared training loop and run folder) -------------------------------------
    *group("train-image", TI,
           numbers("--steps", "0", "-3", "nan", "inf", "ten"),
           numbers("--batch-size", "0", "-4", "2.5"),
           numbers("--lr", "0", "-0.001", "nan", "inf"),
           numbers("--warmup-steps", "-1"),
           numbers("--ema-decay", "1", "-0.5", "nan"),
           numbers("--grad-clip", "-1", "nan"),
           numbers("--checkpoint-every", "0"),
           numbers("--keep-checkpoints", "0"),
           numbers("--log-every", "0"),
           numbers("--seed", "-1", HUGE),
           numbers("--num-workers", "-1"),
           numbers("--resolution", "0", "4"),
           numbers("--label-dropout", "1", "-0.1", "nan"),
           E("resolution=12", "--resolution 12", "resolution"),
           E("label-dropout-unconditional", "--label-dropout 0.1 --no-conditional", "--label-dropout"),
           E("data-unknown", "--data cifar", "--data"),
           E("arch-unknown", "--arch resnet", "--arch"),
           run_dir_errors(),
           finished_run_errors("image"),
           resume_errors("image"),
           E("resume-latest-leaves-the-run-folder", "--resume --steps 3", setup=escaping_latest),
           E("resume-with-nothing-to-resume", "--run-dir {empty} --resume"),
           E("resume-with-other-settings", "--resume --steps 3 --lr 0.5", "lr", setup=copy_of("image", to="run")),
           OK("fresh-run", check=exists("run/model/genlab.json", "run/loss.png", "run/log.jsonl")),
           OK("overwrite-a-finished-run", "--overwrite", check=exists("run/model/genlab.json"),
              setup=copy_of("image", to="run")),
           OK("resume", "--resume --steps 3", check=text_is("run/checkpoints/latest", "step_00000003"),
              setup=copy_of("image", to="run"))),

    # --- train disco ---------------------------------------------------------------------------------
    *group("train-disco", TRAIN["disco"] + " --run-dir {tmp}/run",
           numbers("--num-codes", "1", "0"),
           numbers("--num-latents", "0", "-1"),
           numbers("--temperature", "0", "nan"),
           numbers("--latent-dropout", "2", "nan"),
           numbers("--latent-groups", "0", "9"),
           numbers("--prior-steps", "0"),
           numbers("--prior-batch-size", "0"),
           numbers("--prior-lr", "0", "inf"),
           numbers("--resolution", "4"),
           E("data-sprites", "--data sprites", "--data"),
           run_dir_errors(),
           E("fresh-run-over-a-finished-run", "", setup=copy_of("disco", to="run")),
           E("resume-stage1-state-json-empty-object", "--resume",
             setup=copy_of("disco", json_file(f"stage1/{CKPT}/state.json", {}), to="run")),
           OK("fresh-run", check=exists("run/model/genlab.json", "run/model/prior"))),

    # --- train video ---------------------------------------------------------------------------------
    *group("train-video", TRAIN["video"] + " --run-dir {tmp}/run",
           numbers("--frames", "1", "0"),
           numbers("--resolution", "6", "0", "-8"),
           numbers("--clips", "0"),
           numbers("--data-seed", "-1"),
           numbers("--batch-size", "0"),
           numbers("--lr", "nan"),
           E("attention-unknown", "--attention sparse", "--attention"),
           E("data-unknown", "--data cifar", "--data"),
           E("size-unknown", "--size huge", "--size"),
           run_dir_errors(),
           E("fresh-run-over-a-finished-run", "", setup=copy_of("video", to="run")),
           E("resume-no-optimizer-state", "--resume --steps 3",
             setup=copy_of("video", removed(f"{CKPT}/optimizer.safetensors"), to="run")),
           OK("fresh-run", check=exists("run/model/genlab.json"))),

    # --- train camera --------------------------------------------------------------------------------
    *group("train-camera", TRAIN["camera"] + " --run-dir {tmp}/run",
           numbers("--branch-hidden", "0", "-1"),
           numbers("--branch-depth", "0"),
           numbers("--window-end", "nan", "2"),
           numbers("--window-start", "-0.1"),
           numbers("--clips", "0"),
           numbers("--steps", "0"),
           E("branch-depth-beyond-the-base", "--branch-depth 99", "--branch-depth"),
           E("window-reversed", "--window-start 0.8 --window-end 0.2", "--window-start"),
           E("window-empty", "--window-start 0.5 --window-end 0.5", "--window-start"),
           E("variant-unknown", "--variant lora", "--variant"),
           model_folder_errors("--base", "video", "model/genlab.json"),
           E("base-config-resolution-text", "--base {tmp}/m",
             setup=copy_of("video", json_key("model/config.json", "resolution", "sixteen"))),
           E("base-is-an-image-model", "--base {image}"),
           run_dir_errors(),
           E("fresh-run-over-a-finished-run", "", setup=copy_of("camera", to="run")),
           OK("fresh-run", check=exists("run/model/genlab.json", "run/model/controlnet"))),

    # --- train enhance -------------------------------------------------------------------------------
    *group("train-enhance", TRAIN["enhancer"] + " --run-dir {tmp}/run",
           E("space-factors-zero", "--space-factors 0,2", "--space-factors"),
           E("space-factors-nine", "--space-factors 9", "--space-factors"),
           E("space-factors-text", "--space-factors a,b", "--space-factors"),
           E("space-factors-empty", "--space-factors ''", "--space-factors"),
           E("time-factors-gap", "--time-factors 1,,2", "--time-factors"),
           E("time-factors-negative", "--time-factors -1", "--time-factors"),
           numbers("--max-augment-sigma", "-0.1", "nan"),
           numbers("--branch-depth", "0"),
           numbers("--clips", "0"),
           E("branch-depth-beyond-the-base", "--branch-depth 99", "--branch-depth"),
           E("data-unknown", "--data cifar", "--data"),
           E("variant-unknown", "--variant lora", "--variant"),
           model_folder_errors("--base", "venh", "model/genlab.json"),
           E("base-config-resolution-text", "--base {tmp}/m",
             setup=copy_of("venh", json_key("model/config.json", "resolution", "sixteen"))),
           E("base-conditions-on-the-first-frame", "--base {video}"),
           E("base-is-an-image-model", "--base {image}"),
           run_dir_errors(),
           OK("fresh-run", check=exists("run/model/genlab.json", "run/model/controlnet"))),

    # --- train tokenizer -----------------------------------------------------------------------------
    *group("train-tokenizer", TRAIN["tokenizer"] + " --run-dir {tmp}/run",
           numbers("--channels", "0", "-8"),
           numbers("--code-dim", "0"),
           numbers("--context-frames", "0"),
           numbers("--num-codes", "0", "1"),
           numbers("--clip-frames", "1"),
           numbers("--context-grid", "0"),
           numbers("--future-grid", "0"),
           numbers("--perceptual-weight", "-1", "nan"),
           numbers("--motion-weight", "inf"),
           numbers("--state-net-steps", "0", "-5"),
           E("clip-frames-longer-than-episodes", "--clip-frames 99", "clip"),
           E("context-frames-fill-the-clip", "--context-frames 4", "context"),
           E("context-frames-beyond-the-clip", "--context-frames 9", "context"),
           E("context-grid-does-not-divide", "--context-grid 5", "grid"),
           E("future-grid-does-not-divide", "--future-grid 3", "grid"),
           E("data-is-a-file", "--data {file}"),
           E("data-missing", "--data {tmp}/missing"),
           E("data-empty-folder", "--data {empty}"),
           E("data-garbage-shard", "--data {tmp}/shards",
             setup=files({"shards/shard-00000.npz": b"PK\x03\x04 not really a zip"})),
           E("data-is-a-model-folder", "--data {image}"),
           run_dir_errors(),
           OK("fresh-run", check=exists("run/model/config.json"))),

    # --- train worldmodel ----------------------------------------------------------------------------
    *group("train-worldmodel", TRAIN["worldmodel"] + " --run-dir {tmp}/run",
           numbers("--hidden-size", "0"),
           numbers("--heads", "0"),
           numbers("--layers", "0"),
           numbers("--future-frames", "0"),
           numbers("--lr", "nan"),
           E("hidden-size-not-a-multiple-of-heads", "--hidden-size 30 --heads 4", "--hidden-size"),
           E("future-frames-longer-than-episodes", "--future-frames 99", "frames"),
           E("tokenizer-is-a-file", "--tokenizer {file}"),
           E("tokenizer-missing", "--tokenizer {tmp}/missing"),
           E("tokenizer-empty-folder", "--tokenizer {empty}"),
           E("tokenizer-is-an-image-run", "--tokenizer {image}"),
           E("tokenizer-truncated-weights", "--tokenizer {tmp}/m", setup=copy_of("tok", truncated())),
           E("tokenizer-garbage-weights", "--tokenizer {tmp}/m", setup=copy_of("tok", garbage())),
           E("tokenizer-config-list", "--tokenizer {tmp}/m", setup=copy_of("tok", json_file("config.json", []))),
           E("tokenizer-config-channels-text", "--tokenizer {tmp}/m",
             setup=copy_of("tok", json_key("config.json", "channels", "sixteen"))),
           E("data-is-a-file", "--data {file}"),
           E("data-missing", "--data {tmp}/missing"),
           E("data-empty-folder", "--data {empty}"),
           run_dir_errors(),
           OK("fresh-run", check=exists("run/model/tokenizer", "run/model/transformer"))),

    # --- sample image --------------------------------------------------------------------------------
    *group("sample-image", SI,
           output_file_errors("--out", ".png", ".gif"),
           model_folder_errors("--model", "image", "model/genlab.json"),
           E("model-config-resolution-text", "--model {tmp}/m",
             setup=copy_of("image", json_key("model/config.json", "resolution", "sixteen"))),
           E("model-config-list", "--model {tmp}/m", setup=copy_of("image", json_file("model/config.json", []))),
           E("model-weights-missing", "--model {tmp}/m",
             setup=copy_of("image", removed("model/diffusion_pytorch_model.safetensors"))),
           E("model-is-a-disco-model", "--model {disco}"),
           E("model-is-a-video-model", "--model {video}"),
           E("model-is-a-language-model", "--model {llama}"),
           numbers("--num", "0", "-1", "nan"),
           numbers("--sampling-steps", "0", "nan", "2.5"),
           numbers("--seed", "-1", HUGE),
           numbers("--churn", "-1", "nan"),
           numbers("--guidance-scale", "nan", "inf"),
           numbers("--tsg-noise", "-1"),
           numbers("--tsg-alpha", "nan"),
           numbers("--guidance-t-max", "nan"),
           numbers("--class-label", "10", "-1"),
           E("guidance-window-beyond-1", "--guidance-t-min 5 --guidance-t-max 9", "--guidance-t-"),
           E("guidance-window-reversed", "--guidance-t-min 0.8 --guidance-t-max 0.2", "--guidance-t-"),
           E("sampler-unknown", "--sampler dpm", "--sampler"),
           E("guidance-unknown", "--guidance magic", "--guidance"),
           E("adapter-is-a-file", "--adapter {file}"),
           E("adapter-missing", "--adapter {tmp}/missing"),
           E("adapter-is-a-model-run", "--adapter {image}"),
           OK("png", check=image_at("s.png")),
           OK("jpg", "--out {tmp}/s.jpg", check=image_at("s.jpg")),
           OK("tsg-guidance", "--guidance tsg --guidance-scale 2", check=image_at("s.png"))),

    # --- evaluate ------------------------------------------------------------------------------------
    *group("evaluate", EV,
           E("out-wrong-extension", "--out {tmp}/r.txt"),
           E("out-png-not-json", "--out {tmp}/r.png"),
           E("out-is-a-folder", "--out {tmp}"),
           E("out-parent-is-a-file", "--out {file}/r.json"),
           E("out-unwritable", "--out {unwritable}/sub/r.json"),
           numbers("--num", "1", "0", "nan"),
           numbers("--sampling-steps", "0"),
           numbers("--seed", "-1"),
           numbers("--guidance-scale", "nan"),
           E("guidance-window-reversed", "--guidance-t-min 0.8 --guidance-t-max 0.2", "--guidance-t-"),
           E("model-is-a-file", "--model {file}"),
           E("model-missing", "--model {tmp}/missing"),
           E("model-is-a-video-model", "--model {video}"),
           E("model-truncated-weights", "--model {tmp}/m", setup=copy_of("image", truncated())),
           E("model-json-empty-object", "--model {tmp}/m", setup=copy_of("image", json_file("model/genlab.json", {}))),
           E("model-config-list", "--model {tmp}/m", setup=copy_of("image", json_file("model/config.json", []))),
           OK("json", check=json_with("r.json", "fd", "precision", "recall"))),

    # --- sample disco --------------------------------------------------------------------------------
    *group("sample-disco", SD,
           output_file_errors("--out", ".png", ".mp4"),
           model_folder_errors("--model", "disco", "model/genlab.json"),
           E("model-encoder-config-list", "--model {tmp}/m",
             setup=copy_of("disco", json_file("model/encoder/config.json", []))),
           E("model-prior-config-list", "--model {tmp}/m",
             setup=copy_of("disco", json_file("model/prior/config.json", []))),
           E("model-is-an-image-model", "--model {image}"),
           numbers("--prior-temperature", "0", "-1", "nan"),
           numbers("--latent-scale", "nan", "inf"),
           numbers("--num", "0"),
           numbers("--sampling-steps", "0"),
           numbers("--seed", "-1"),
           numbers("--class-label", "99"),
           E("sampler-unknown", "--sampler rk4", "--sampler"),
           OK("png", check=image_at("d.png"))),

    # --- sample camera -------------------------------------------------------------------------------
    *group("sample-camera", SC,
           output_file_errors("--out", ".gif", ".png"),
           model_folder_errors("--model", "camera", "model/genlab.json"),
           E("model-window-text", "--model {tmp}/m", setup=copy_of("camera", json_key("model/genlab.json",
                                                                                      "window", "wide"))),
           E("model-controlnet-config-list", "--model {tmp}/m",
             setup=copy_of("camera", json_file("model/controlnet/config.json", []))),
           E("model-is-a-video-model", "--model {video}"),
           E("model-is-an-image-model", "--model {image}"),
           numbers("--strength", "nan", "inf", "big"),
           numbers("--scene", "-1"),
           numbers("--seed", "-1", HUGE),
           numbers("--sampling-steps", "0"),
           numbers("--guidance-scale", "nan", "0.5"),
           E("guidance-scale-without-cogvideox", "--guidance-scale 3", "--guidance-scale"),
           E("prompt-without-cogvideox", "--prompt 'a cat'", "--prompt"),
           E("trajectory-unknown", "--trajectory spiral", "--trajectory"),
           E("poses-is-a-text-file", "--poses {file}"),
           E("poses-missing", "--poses {tmp}/missing.npy"),
           E("poses-is-a-folder", "--poses {tmp}"),
           E("poses-wrong-shape", "--poses {tmp}/p.npy", setup=files({"p.npy": np.tile(np.eye(4), (3, 1, 1))})),
           E("poses-nan", "--poses {tmp}/p.npy",
             setup=files({"p.npy": np.where(np.eye(4) > 0, np.nan, 0.0)[None].repeat(4, 0)})),
           E("poses-inf", "--poses {tmp}/p.npy", setup=files({"p.npy": np.full((4, 4, 4), np.inf)})),
           OK("gif", check=video_at("c.gif", frames=4)),
           OK("mp4", "--out {tmp}/c.mp4", check=video_at("c.mp4", frames=4)),
           OK("still-poses", "--poses {tmp}/p.npy", check=video_at("c.gif", frames=4),
              setup=files({"p.npy": np.tile(np.eye(4), (4, 1, 1))}))),

    # --- enhance -------------------------------------------------------------------------------------
    *group("enhance", EN,
           output_file_errors("--out", ".mp4", ".png"),
           model_folder_errors("--model", "enhancer", "model/genlab.json"),
           E("model-base-config-resolution-text", "--model {tmp}/m",
             setup=copy_of("enhancer", json_key("model/base/config.json", "resolution", "sixteen"))),
           E("model-is-a-video-model", "--model {venh}"),
           E("model-is-an-image-model", "--model {image}"),
           numbers("--fps", "0", "-1", "nan", "inf"),
           numbers("--space", "0", "9", "nan"),
           numbers("--time", "0", "9"),
           numbers("--sampling-steps", "0"),
           numbers("--start-sigma", "0", "-1", "nan"),
           numbers("--augment-sigma", "-1", "nan"),
           numbers("--frame-overlap", "-2"),
           numbers("--tile-overlap", "-5"),
           numbers("--memory-budget", "-1", "nan"),
           numbers("--seed", "-1"),
           OK("mp4", check=video_at("h.mp4", frames=3)),
           OK("gif-twice-the-frames", "--time 2 --fps 3 --out {tmp}/h.gif", check=video_at("h.gif", frames=5))),
    *group("enhance", "enhance --model {enhancer} --space 2 --sampling-steps 2 --out {tmp}/h.mp4",
           E("input-is-a-text-file", "{file}"),
           E("input-missing", "{tmp}/missing.mp4"),
           E("input-is-a-folder", "{tmp}"),
           E("input-empty-file", "{tmp}/empty.mp4", setup=files({"empty.mp4": b""})),
           E("input-garbage-gif", "{tmp}/junk.gif", setup=files({"junk.gif": b"GIF89a but then nothing sensible"}))),

    # --- play ----------------------------------------------------------------------------------------
    *group("play", PL,
           output_file_errors("--out", ".gif", ".png"),
           E("model-is-a-file", "--model {file}"),
           E("model-missing", "--model {tmp}/missing"),
           E("model-empty-folder", "--model {empty}"),
           E("model-is-an-image-model", "--model {image}"),
           E("model-is-a-tokenizer", "--model {tok}"),
           E("model-truncated-weights", "--model {tmp}/m", setup=copy_of("wm", truncated())),
           E("model-garbage-weights", "--model {tmp}/m", setup=copy_of("wm", garbage())),
           E("model-transformer-config-list", "--model {tmp}/m",
             setup=copy_of("wm", json_file("transformer/config.json", []))),
           E("model-tokenizer-config-channels-text", "--model {tmp}/m",
             setup=copy_of("wm", json_key("tokenizer/config.json", "channels", "sixteen"))),
           numbers("--seed", "-1", "nan"),
           numbers("--rollout-steps", "0", "-1"),
           numbers("--top-k", "0", "-1"),
           numbers("--sample-seed", "-1", HUGE),
           E("actions-missing", "--actions {tmp}/missing.txt"),
           E("actions-is-a-folder", "--actions {tmp}"),
           E("actions-not-numbers", "--actions {file}"),
           E("actions-empty-file", "--actions {tmp}/a.txt", setup=files({"a.txt": ""})),
           E("actions-text-nan", "--actions {tmp}/a.txt", setup=files({"a.txt": "1 0\nnan 0\n"})),
           E("actions-npy-nan", "--actions {tmp}/a.npy", setup=files({"a.npy": np.array([[1, 0], [np.nan, 0]])})),
           E("actions-npy-inf", "--actions {tmp}/a.npy", setup=files({"a.npy": np.array([[np.inf, 0.0]])})),
           E("actions-npy-three-columns", "--actions {tmp}/a.npy", setup=files({"a.npy": np.zeros((3, 3))})),
           E("actions-npy-one-dimensional", "--actions {tmp}/a.npy", setup=files({"a.npy": np.zeros(4)})),
           OK("npy-gif", check=video_at("p.gif", frames=4)),
           OK("text-mp4-no-compare", "--actions {tmp}/a.txt --no-compare --out {tmp}/p.mp4",
              check=video_at("p.mp4", frames=3), setup=files({"a.txt": "# dx dy\n1 0\n0, 1\n"}))),

    # --- grow ----------------------------------------------------------------------------------------
    *group("grow", GR,
           numbers("--factor", "nan", "0", "1", "-2", "inf", "abc"),
           E("factor-not-whole-for-depth", "--factor 1.5", "factor"),
           numbers("--ramp-steps", "0", extra="--operator random"),
           numbers("--learn-steps", "0", extra="--operator learn"),
           numbers("--split-noise", "-1", "nan"),
           numbers("--seed", "-1", HUGE, extra="--operator random"),
           E("operator-unknown", "--operator magic", "--operator"),
           E("direction-unknown", "--direction diagonal", "--direction"),
           E("learn-data-missing", "--operator learn --learn-data {tmp}/missing.txt", "--learn-data"),
           E("learn-data-empty", "--operator learn --learn-data {tmp}/e.txt", "--learn-data",
             setup=files({"e.txt": ""})),
           E("learn-data-is-a-folder", "--operator learn --learn-data {tmp}", "--learn-data"),
           E("out-is-the-model", "--model {tmp}/m --out {tmp}/m", "--out", setup=copy_of("llama")),
           E("out-is-the-model-spelt-differently", "--model {tmp}/m --out {tmp}/m/../m", "--out",
             setup=copy_of("llama")),
           E("out-holds-the-model", "--model {tmp}/m --out {tmp}", "--out", setup=copy_of("llama")),
           E("out-not-empty", "--out {full}", "--out"),
           E("out-is-a-file", "--out {file}"),
           E("out-under-a-file", "--out {file}/g"),
           E("out-unwritable", "--out {unwritable}/sub/g"),
           E("model-is-a-file", "--model {file}"),
           E("model-missing", "--model {tmp}/missing"),
           E("model-empty-folder", "--model {empty}"),
           E("model-is-a-genlab-model", "--model {image}/model"),
           E("model-truncated-weights", "--model {tmp}/m", setup=copy_of("llama", truncated())),
           E("model-garbage-weights", "--model {tmp}/m", setup=copy_of("llama", garbage())),
           E("model-config-list", "--model {tmp}/m", setup=copy_of("llama", json_file("config.json", []))),
           E("model-config-empty-object", "--model {tmp}/m", setup=copy_of("llama", json_file("config.json", {}))),
           E("model-config-layers-text", "--model {tmp}/m",
             setup=copy_of("llama", json_key("config.json", "num_hidden_layers", "two"))),
           OK("stack-depth", check=hf_config("g", num_hidden_layers=2)),
           OK("zero-width", "--operator zero --direction width", check=hf_config("g", hidden_size=32)),
           OK("overwrite-a-non-empty-out", "--out {full} --overwrite", check=hf_config("full", num_hidden_layers=2)),
           OK("learn-on-a-text-file", "--operator learn --learn-steps 1 --learn-data {tmp}/corpus.txt",
              check=hf_config("g", num_hidden_layers=2), setup=files({"corpus.txt": CORPUS}))),

    # --- align ---------------------------------------------------------------------------------------
    *group("align", AL,
           E("guidance-scale-on-a-genlab-model", "--guidance-scale 3", "--guidance-scale"),
           E("frames-on-a-genlab-model", "--frames 4", "--frames"),
           E("prompts-on-a-class-model", "--prompts 'a cat|a dog'", "--prompts"),
           numbers("--steps", "0", "-1", "nan"),
           numbers("--batch-size", "0"),
           numbers("--accumulate", "0"),
           numbers("--lr", "0", "nan", "inf"),
           numbers("--eta", "2", "-0.5", "nan"),
           numbers("--k", "0", "5"),
           numbers("--lora-rank", "-1"),
           numbers("--lora-alpha", "nan"),
           numbers("--grad-clip", "-1", "nan"),
           numbers("--ddpo-clip", "-1", "nan", extra="--method ddpo"),
           numbers("--ddpo-epochs", "0", extra="--method ddpo"),
           numbers("--sampling-steps", "0"),
           numbers("--checkpoint-every", "0"),
           numbers("--keep-checkpoints", "0"),
           numbers("--seed", "-1", HUGE),
           E("score-frames-every-0", "--score-frames every-0", "--score-frames"),
           E("labels-text", "--labels a,b", "--labels"),
           E("labels-beyond-the-classes", "--labels 99", "--labels"),
           E("labels-negative", "--labels -1", "--labels"),
           E("reward-unknown", "--reward nope", "nope"),
           E("reward-for-videos-on-an-image-model", "--reward motion-left"),
           E("method-unknown", "--method ppo", "--method"),
           E("mixed-precision-unknown", "--mixed-precision fp16", "--mixed-precision"),
           E("model-is-a-file", "--model {file}"),
           E("model-missing", "--model {tmp}/missing"),
           E("model-empty-folder", "--model {empty}"),
           E("model-truncated-weights", "--model {tmp}/m", setup=copy_of("image", truncated())),
           E("model-json-list", "--model {tmp}/m", setup=copy_of("image", json_file("model/genlab.json", []))),
           E("model-is-a-language-model", "--model {llama}"),
           run_dir_errors(),
           E("run-dir-holds-a-training-run", "", setup=copy_of("image", to="run")),
           E("resume-with-nothing-to-resume", "--run-dir {empty} --resume"),
           OK("lora", check=exists("run/adapter/adapter_model.safetensors", "run/reward.png"))),

    # --- reproduce and demo: only inputs that must fail before any work ----------------------------
    *reproduce_cases("guidance", workers=False),
    *reproduce_cases("disco", workers=False),
    *reproduce_cases("growth", workers=True),
    *reproduce_cases("camera", workers=True),
    *reproduce_cases("enhance", workers=True),
    *reproduce_cases("worldmodel", workers=True),
    *reproduce_cases("align", workers=True),
    *group("demo", "demo --out {tmp}/demo",
           E("out-is-a-file", "--out {file}"),
           E("out-under-a-file", "--out {file}/demo"),
           E("out-unwritable", "--out {unwritable}/sub/demo"),
           E("only-unknown", "--only nothing", "--only"),
           E("only-core-out-is-a-file", "--only core --out {file}")),
]
assert len({case.id for case in CASES}) == len(CASES), "case ids must be unique"

# ---------------------------------------------------------------------------------------------------
# Running and judging one case
# ---------------------------------------------------------------------------------------------------

CATEGORIES = {
    "clean_error": "clean errors (one `genlab: error:` line, exit 2)",
    "ok": "good inputs that worked",
    "traceback": "tracebacks",
    "silently_wrong": "silently wrong (exit 0 where an error was expected)",
    "bad_message": "exit 2 but not exactly one clean `genlab: error:` line (or lacking the expected text)",
    "wrong_exit": "other wrong exit statuses",
    "ok_failed": "good inputs that failed or wrote a bad result",
    "timeout": "timeouts",
}
GOOD = ("clean_error", "ok")
BAD = tuple(category for category in CATEGORIES if category not in GOOD)


@dataclass
class Result:
    """What one run of a case gave: exit status (None if it crashed or timed out) and stderr."""

    code: int | None
    err: str
    crash: str | None = None  # "ExcType: message (at file:line in function)" of an escaped exception
    timed_out: bool = False


@dataclass
class Outcome:
    category: str
    detail: str


def judge(case: Case, result: Result, ph: Placeholders) -> Outcome:
    """Sort a result into one of :data:`GOOD` or :data:`BAD` (see the module docstring)."""
    lines = [line for line in result.err.splitlines() if line.strip()]
    if result.timed_out:
        return Outcome("timeout", "")
    if result.crash:
        return Outcome("traceback", result.crash)
    if case.expect == "ok":
        if result.code != 0:
            return Outcome("ok_failed", f"exit {result.code}: {lines[-1] if lines else '(no stderr)'}")
        try:
            if case.check:
                case.check(ph)
        except Exception as error:  # any failure of the check is the finding
            return Outcome("ok_failed", f"exit 0 but {type(error).__name__}: {error}")
        return Outcome("ok", "")
    if result.code == 0:
        return Outcome("silently_wrong", "exit 0")
    if result.code != 2:
        return Outcome("wrong_exit", f"exit {result.code}: {lines[-1] if lines else '(no stderr)'}")
    if len(lines) != 1 or not lines[0].startswith("genlab: error:"):
        shown = " | ".join(line.strip()[:100] for line in lines[:4])
        return Outcome("bad_message", f"{len(lines)} stderr lines: {shown}")
    if case.contains and case.contains not in lines[0]:
        return Outcome("bad_message", f"lacks {case.contains!r}: {lines[0]}")
    return Outcome("clean_error", lines[0])


class CaseTimeout(BaseException):
    """Raised in the main thread when an in-process case runs past its time limit."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def expire(signum, frame):
        raise CaseTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


HIDDEN_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


def run_in_process(argv: list[str], read_stderr: Callable[[], str], limit: float = 60) -> Result:
    """``main(argv)`` in this process; ``read_stderr`` returns what it wrote to stderr. Python warnings
    a plain ``genlab`` run would print are added to stderr, one line each."""
    code, crash, timed_out = None, None, False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        try:
            with time_limit(limit):
                main(argv)
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        except CaseTimeout:
            timed_out = True
        except BaseException as error:  # anything escaping main is a traceback
            crash = describe_exception(error)
    shown = [f"{w.category.__name__}: {w.message}" for w in caught if not issubclass(w.category, HIDDEN_WARNINGS)]
    err = read_stderr()
    return Result(code, err + "".join(f"{line}\n" for line in shown), crash, timed_out)


def describe_exception(error: BaseException) -> str:
    """``ExcType: message (at file:line in function)``, at the innermost genlab frame if there is one."""
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if f"{os.sep}genlab{os.sep}" in f.filename] or frames
    where = f" (at {_short(ours[-1].filename)}:{ours[-1].lineno} in {ours[-1].name})" if ours else ""
    message = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {message[:160]}{where}"


def _short(filename: str) -> str:
    marker = f"{os.sep}genlab{os.sep}"
    return "genlab/" + filename.rsplit(marker, 1)[1] if marker in filename else filename


# ---------------------------------------------------------------------------------------------------
# The test
# ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> Placeholders:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return build_fixtures(tmp_path_factory.mktemp("cli-fixtures"))


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_cli_input_gives_the_right_result_or_one_clear_error(case, fixtures, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with case_folder(tmp_path, fixtures) as ph:
        if case.setup:
            case.setup(ph)
        argv = case.argv(ph)
        capsys.readouterr()
        result = run_in_process(argv, lambda: capsys.readouterr().err)
        outcome = judge(case, result, ph)
    assert outcome.category in GOOD, f"{outcome.category}: {outcome.detail}\n  genlab {shlex.join(argv)}"
