"""Peak memory and time per output frame of the VEnhancer ControlNet enhancer (``genlab.enhance``) as
videos get longer and frames get larger, with the memory budget on and off.

``enhance_video`` runs the enhancer, whose model sees clips of ``frames x resolution x resolution``,
over any video in overlapping space-time windows (chunks in time, tiles in space) blended at every
sampler step. ``memory_budget`` (GiB) caps how many windows share one model call
(:func:`~genlab.enhance.inference.windows_per_call`, from the estimate
:func:`~genlab.enhance.inference.estimated_window_bytes`); ``memory_budget=0`` runs every window in
one batched call, the "without chunking" reference, whose memory grows with the video.

Two sweeps, each run with the budget on (``--budget`` GiB) and off (0), on a freshly initialised
enhancer (no trained weights: cost does not depend on them) with input ``low [1, n, 3, h, w]``
random in [-1, 1], space factor 4 and time factor 1 (so output frames = n):

* length: output 16, 32, 64, 128 frames at the model's resolution (32 px, one tile per frame);
* frame size: output frames of 32, 64, 96 px (1, 9, 16 tiles) at the shortest length.

Each job runs in a fresh (spawned) process, one after another, so its peak resident memory
(``ru_maxrss``) is its own. Columns:

* ``windows``: windows per model call over the whole video; ``per call``: how many share one call
  (the budget's cap, or all of them); ``est MiB``: the estimate of one call's activations;
* ``s/frame``: wall time of one ``enhance_video`` call (``--steps`` Heun levels, 2·steps − 1 model
  calls over every window) over output frames, after a one-window warm-up call;
* ``peak GiB``: the process's peak RSS; ``above base``: that peak minus the peak after importing
  torch and building the model and input (the baseline), i.e. what enhancing itself added.

Reading it: with the budget on, ``above base`` should stay roughly flat as the length grows once
the video has more windows than fit in one call (the small part that still grows is the video-sized
sampler state and blend accumulators); with it off, it grows about linearly with the number of
windows. The default ``--budget 0.02`` lets 3 windows of the tiny CPU model share a call (the CLI's
default of 1 GiB fits about 160 of them, so it binds only on long or large videos); if ``per call``
equals ``windows`` in every budget-on row, the budget did not bind: pass a smaller ``--budget``.
The last lines give, for each setting, the ratio of ``above base`` for the longest vs the shortest
video. Times need idle cores: on cores busy with other work, threads waiting for each other can
dominate (``--threads 1`` then gives the more meaningful times); memory is unaffected.

    python benchmarks/enhance_memory.py                        # lengths 16 32 64 128, sizes 32 64 96
    python benchmarks/enhance_memory.py --budget 0.05 --json runs/enhance_memory.json
    python benchmarks/enhance_memory.py --quick                # tiny: a check that it runs
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import time
from pathlib import Path

import torch

from genlab.core.denoiser import EDMDenoiser
from genlab.core.nets import VideoDiT
from genlab.enhance.controlnet import EnhanceControlNet
from genlab.enhance.inference import EnhanceSettings, enhance_video, estimated_window_bytes, windows_per_call
from genlab.enhance.model import ControlNetEnhancer
from genlab.enhance.windows import window_starts

SPACE, TIME = 4, 1
MODEL = {"frames": 8, "resolution": 32, "patch_size": 4, "hidden_size": 96, "depth": 4, "num_heads": 4,
         "attention": "full"}
BRANCH_DEPTH = 2
GIB = 2**30


def build_model() -> ControlNetEnhancer:
    """The enhancer, freshly initialised (seed 0): a tiny video DiT base and a 2-block branch."""
    torch.manual_seed(0)
    net = VideoDiT(**MODEL)
    base = EDMDenoiser(net)
    return ControlNetEnhancer(base, EnhanceControlNet.for_base(net, BRANCH_DEPTH)).eval()


def window_count(net_config, frames: int, size: int, settings: EnhanceSettings) -> int:
    """Space-time windows ``enhance_video`` cuts a video of ``frames`` frames of ``size``² pixels into
    (after padding it to at least the model's clip)."""
    frame_overlap = net_config.frames // 2 if settings.frame_overlap < 0 else settings.frame_overlap
    tile_overlap = net_config.resolution // 4 if settings.tile_overlap < 0 else settings.tile_overlap
    chunks = window_starts(max(frames, net_config.frames), net_config.frames, frame_overlap)
    tiles = window_starts(max(size, net_config.resolution), net_config.resolution, tile_overlap, "rows")
    return len(chunks) * len(tiles) ** 2


def peak_rss() -> int:
    """This process's peak resident memory so far, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(frames: int, size: int, budget: float, steps: int, threads: int) -> dict:
    """Enhance one random video of ``frames`` output frames of ``size``² pixels; time and peak memory."""
    torch.set_num_threads(threads)
    model = build_model()
    cfg = model.net_config
    generator = torch.Generator().manual_seed(1)
    low = torch.rand(1, frames, 3, size // SPACE, size // SPACE, generator=generator) * 2 - 1
    settings = EnhanceSettings(sampling_steps=steps, memory_budget=budget)
    baseline = peak_rss()

    # Warm-up on one window (lazy initialisation, allocator): its peak is below the job's, so it
    # changes neither the baseline (taken before) nor the peak.
    warm = torch.rand(1, cfg.frames, 3, cfg.resolution // SPACE, cfg.resolution // SPACE, generator=generator) * 2 - 1
    enhance_video(model, warm, SPACE, TIME, EnhanceSettings(steps=1, memory_budget=budget))

    start = time.perf_counter()
    enhanced = enhance_video(model, low, SPACE, TIME, settings)
    seconds = time.perf_counter() - start
    peak = peak_rss()
    if tuple(enhanced.shape) != (1, frames, 3, size, size):
        raise RuntimeError(f"expected output [1, {frames}, 3, {size}, {size}], got {list(enhanced.shape)}")

    windows = window_count(cfg, frames, size, settings)
    per_call = min(windows, windows_per_call(cfg, 1, budget))
    return {"output_frames": frames, "frame_size": size, "budget_gib": budget, "windows": windows,
            "windows_per_call": per_call, "calls_per_step": -(-windows // per_call),
            "estimated_call_gib": estimated_window_bytes(cfg, per_call) / GIB, "steps": steps,
            "seconds": seconds, "seconds_per_frame": seconds / frames, "baseline_gib": baseline / GIB,
            "peak_rss_gib": peak / GIB, "peak_above_baseline_gib": (peak - baseline) / GIB,
            "threads": threads}


def _job(connection, job: tuple) -> None:
    try:
        connection.send(("ok", measure(*job)))
    except Exception as error:  # report and go on: one failing job must not lose the others' numbers
        connection.send(("error", f"{type(error).__name__}: {str(error)[:300]}"))
    finally:
        connection.close()


def run_in_fresh_process(context, job: tuple) -> dict | None:
    """``measure(*job)`` in a new spawned process (its own ``ru_maxrss``); None (reported) if it fails,
    including when the process dies (e.g. killed for memory)."""
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_job, args=(sender, job))
    process.start()
    sender.close()  # so that recv() sees EOF if the child dies without answering
    try:
        status, result = receiver.recv()
    except EOFError:
        status, result = "error", "the process died"
    process.join()
    if status != "ok":
        print(f"job frames={job[0]} size={job[1]} budget={job[2]} failed (exit code {process.exitcode}): {result}")
        return None
    return result


def print_table(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    print(f"{'frames':>7}{'size':>6}{'budget':>9}{'windows':>8}{'per call':>9}{'est MiB':>8}{'s/frame':>9}"
          f"{'peak GiB':>9}{'above base':>11}")
    for row in rows:
        budget = f"{row['budget_gib']:g} GiB" if row["budget_gib"] else "off"
        print(f"{row['output_frames']:7d}{row['frame_size']:6d}{budget:>9}{row['windows']:8d}"
              f"{row['windows_per_call']:9d}{row['estimated_call_gib'] * 1024:8.1f}{row['seconds_per_frame']:9.4f}"
              f"{row['peak_rss_gib']:9.3f}{row['peak_above_baseline_gib']:11.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", nargs="+", type=int, default=[16, 32, 64, 128],
                        help="output frames of the length sweep (at the model's resolution)")
    parser.add_argument("--sizes", nargs="+", type=int, default=[32, 64, 96],
                        help=f"output frame sizes (px, multiples of {SPACE * MODEL['patch_size']}) of the size "
                        "sweep, at the shortest length")
    parser.add_argument("--steps", type=int, default=2, help="Heun noise levels (2·steps − 1 model calls)")
    parser.add_argument("--budget", type=float, default=0.02,
                        help="memory budget in GiB for the budget-on runs (0.02: 3 windows of the tiny model per call)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads in each job")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here as JSON")
    parser.add_argument("--quick", action="store_true", help="tiny: lengths 8 16, sizes 32, steps 1")
    args = parser.parse_args()
    if args.quick:
        args.lengths, args.sizes, args.steps = [8, 16], [32], 1
    if args.budget <= 0:
        parser.error("--budget must be > 0 (the budget-off runs use 0 anyway)")
    lengths, sizes = sorted(set(args.lengths)), sorted(set(args.sizes))
    for size in sizes:
        if size % (SPACE * MODEL["patch_size"]):
            parser.error(f"--sizes must be multiples of {SPACE * MODEL['patch_size']}, got {size}")
    budgets = (args.budget, 0.0)
    resolution, shortest = MODEL["resolution"], lengths[0]
    length_jobs = [(n, resolution, b) for b in budgets for n in lengths]
    size_jobs = [(shortest, s, b) for b in budgets for s in sizes]

    context = multiprocessing.get_context("spawn")
    results: dict[tuple, dict | None] = {}
    for job in length_jobs + size_jobs:  # one at a time, each in its own process
        if job not in results:
            results[job] = run_in_fresh_process(context, (*job, args.steps, args.threads))

    print(f"CPU, {args.threads} threads per job, torch {torch.__version__}; ControlNet enhancer, model "
          f"{MODEL['frames']}×{resolution}² (patch {MODEL['patch_size']}, hidden {MODEL['hidden_size']}, depth "
          f"{MODEL['depth']}, branch {BRANCH_DEPTH}), space ×{SPACE}, time ×{TIME}, {args.steps} Heun steps")
    length_rows = [results[job] for job in length_jobs if results[job]]
    size_rows = [results[job] for job in size_jobs if results[job]]
    print_table(f"length sweep ({resolution} px frames)", length_rows)
    print_table(f"frame-size sweep ({shortest} frames)", size_rows)

    print()
    for budget in budgets:
        rows = [r for r in length_rows if r["budget_gib"] == budget]
        name = f"budget {budget:g} GiB" if budget else "budget off"
        if len(rows) < 2:
            print(f"{name}: fewer than two lengths measured, no ratio")
            continue
        short, long = rows[0], rows[-1]
        ratio = long["peak_above_baseline_gib"] / max(short["peak_above_baseline_gib"], 1e-9)
        print(f"{name}: peak above baseline, {long['output_frames']} vs {short['output_frames']} frames: "
              f"{ratio:.2f}× ({long['peak_above_baseline_gib']:.3f} vs {short['peak_above_baseline_gib']:.3f} GiB)")
    on_rows = [r for r in length_rows + size_rows if r["budget_gib"]]
    if on_rows and all(r["windows_per_call"] == r["windows"] for r in on_rows):
        print(f"note: the {args.budget:g} GiB budget fit every video's windows in one call (it did not bind); "
              "pass a smaller --budget to see chunking")

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([r for r in results.values() if r], indent=2))
        print(f"rows in {args.json}")


if __name__ == "__main__":
    main()
