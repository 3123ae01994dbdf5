"""Peak memory and time of one VADER training step on a video DiT with each memory saver switched on in turn.

The paper's ablation (VADER, ModelScope): LoRA + mixed precision, then + truncated back-propagation
(K = 1 instead of through every sampler step), then + gradient checkpointing, then + frame
subsampling (the reward sees one random frame). The rows here, each on top of the previous one:

* ``full backprop``: LoRA (rank 16 on the attention projections), the reward's gradient flows
  through all ``--sampling-steps`` sampler steps;
* ``+ truncation (K=1)``: only the last step keeps a graph;
* ``+ checkpointing``: each transformer block's activations are recomputed in the backward pass
  (:func:`~genlab.align.checkpointing.enable_block_checkpointing`);
* ``+ frame subsampling``: the (image) reward scores one random frame instead of all of them;
* ``+ bf16``: the model's forward passes run under bfloat16 autocast (the paper's mixed precision,
  which it switches on first).

One step = sample a batch with the full sampler, score it with the ``brightness`` reward (an image
reward, so frame subsampling applies), back-propagate and update the LoRA weights, on a freshly
initialised genlab VideoDiT (no trained weights: cost does not depend on them). Each row runs in
a fresh (spawned) process, so its peak is its own: on the CPU the peak resident memory
(``ru_maxrss``) minus the peak after building the model (``above base``); on a GPU
``torch.cuda.max_memory_allocated`` minus the model's allocation. ``s/step`` is the mean over
``--repeats`` steps after one warm-up step. The last column is each row's memory as a share of
the first row's.

    python benchmarks/align_memory.py                       # CPU: small VideoDiT, 8 frames of 32×32
    python benchmarks/align_memory.py --device cuda --frames 16 --resolution 64 --size large --batch-size 2
    python benchmarks/align_memory.py --quick               # tiny: a check that it runs
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path

import torch

from genlab.align.config import AlignConfig
from genlab.align.rewards import build_reward
from genlab.align.targets import GenlabVideoTarget
from genlab.align.trainer import AlignmentRun
from genlab.core.denoiser import EDMDenoiser
from genlab.core.nets import VideoDiT

SIZES = {
    "tiny": {"patch_size": 4, "hidden_size": 32, "depth": 2, "num_heads": 2},
    "small": {"patch_size": 4, "hidden_size": 128, "depth": 6, "num_heads": 4},
    "large": {"patch_size": 4, "hidden_size": 384, "depth": 12, "num_heads": 6},
}
ROWS = (
    ("full backprop", {"k": 0}),
    ("+ truncation (K=1)", {"k": 1}),
    ("+ checkpointing", {"k": 1, "gradient_checkpointing": True}),
    ("+ frame subsampling", {"k": 1, "gradient_checkpointing": True, "score_frames": "random"}),
    ("+ bf16", {"k": 1, "gradient_checkpointing": True, "score_frames": "random", "mixed_precision": "bf16"}),
)


def peak_bytes(device: str) -> int:
    if device == "cuda":
        return torch.cuda.max_memory_allocated()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(args: argparse.Namespace, settings: dict) -> dict:
    """Build the model, run one warm-up and ``args.repeats`` timed steps; peak memory above the build."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = VideoDiT(in_channels=3, frames=args.frames, resolution=args.resolution, **SIZES[args.size]).to(args.device)
    with torch.no_grad():  # a fresh VideoDiT outputs zeros; give the output layers weights so gradients flow
        for name, parameter in net.named_parameters():
            if "modulation" in name or "final_layer" in name:
                parameter.normal_(0, 0.02)
    target = GenlabVideoTarget(EDMDenoiser(net).train())
    k = settings.get("k", 1) or args.sampling_steps
    config = AlignConfig(**{**settings, "k": k}, batch_size=args.batch_size, sampling_steps=args.sampling_steps,
                         lora_rank=16, steps=1, progress=False, run_dir=tempfile.mkdtemp())
    run = AlignmentRun(target, build_reward("brightness"), config)
    if args.device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base = peak_bytes(args.device)
    run.vader_update(0)
    if args.device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for step in range(args.repeats):
        run.vader_update(step + 1)
    if args.device == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - started) / args.repeats
    return {"k": k, "peak_gib": peak_bytes(args.device) / 2**30, "above_base_gib": (peak_bytes(args.device) - base) / 2**30,
            "seconds_per_step": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--size", default="small", choices=tuple(SIZES))
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--sampling-steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--quick", action="store_true", help="tiny model, 4 frames of 16×16, 4 sampler steps")
    args = parser.parse_args()
    if args.quick:
        args.size, args.frames, args.resolution, args.sampling_steps, args.repeats = "tiny", 4, 16, 4, 1
    context = multiprocessing.get_context("spawn")
    rows = []
    print(f"VADER step on VideoDiT-{args.size}, {args.frames}×{args.resolution}², batch {args.batch_size}, "
          f"{args.sampling_steps} sampler steps, {args.device}")
    print(f"{'setting':<22}{'K':>4}{'peak GiB':>10}{'above base':>12}{'s/step':>9}{'share':>8}")
    for name, settings in ROWS:
        with context.Pool(1) as pool:
            row = {"setting": name, **pool.apply(measure, (args, settings))}
        rows.append(row)
        share = row["above_base_gib"] / max(rows[0]["above_base_gib"], 1e-9)
        print(f"{name:<22}{row['k']:>4}{row['peak_gib']:>10.3f}{row['above_base_gib']:>12.3f}"
              f"{row['seconds_per_step']:>9.2f}{share:>8.2f}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
