"""Run time and peak memory of the growth operators on large LLaMA shapes, relative to the target.

For each shape and operator a fresh Python process builds the source model (meta device, then
filled with random values, so no init cost is timed), records its resident memory, grows it and
records the peak. The table reports the memory growth added *over the source* divided by the
target model's size (1.0 = the operator only ever holds the target once more), the whole
process peak in GiB, and the time against a reference measured in the same run: allocating and
randomly initialising the target model directly.

Shapes (LLaMA, GQA 8:1, vocab 32000):
  1b:   target 20 layers × 2048 (1.01 B parameters); depth from 5 layers, width from 1024 wide.
  100m: target 8 layers × 768 (0.11 B); used for G_learn as well, whose operator training runs
        the grown model forward and backward (its memory is that of training, not of growing).

    python benchmarks/growth_cost.py [--shapes 1b,100m] [--dtype bfloat16] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

SHAPES = {
    "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=20, num_attention_heads=32,
               num_key_value_heads=4),
    "100m": dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=8, num_attention_heads=12,
                 num_key_value_heads=12),
}
OPERATORS = {"1b": ("direct", "zero", "random"), "100m": ("direct", "zero", "random", "learn")}
FACTORS = {"depth": 4, "width": 2}


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize()


def peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def source_config(shape: str, direction: str):
    from transformers import LlamaConfig

    dims = dict(SHAPES[shape])
    if direction == "depth":
        dims["num_hidden_layers"] //= FACTORS["depth"]
    else:
        for key in ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads"):
            dims[key] //= FACTORS["width"]
        dims["head_dim"] = SHAPES[shape]["hidden_size"] // SHAPES[shape]["num_attention_heads"]
    return LlamaConfig(vocab_size=32000, max_position_embeddings=2048, **dims)


def filled_model(config, dtype):
    """A model with random weights, built without the (slow, memory-hungry) default init."""
    import torch
    from transformers import LlamaForCausalLM

    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    model = model.to(dtype=dtype).to_empty(device="cpu")
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.uniform_(-0.02, 0.02)
        model.model.rotary_emb = type(model.model.rotary_emb)(config)
    return model


def worker(job: dict) -> dict:
    """Runs in a fresh process: grow once (or build the target directly) and measure."""
    import torch

    from genlab.growth import grow

    torch.set_num_threads(job["threads"])
    dtype = getattr(torch, job["dtype"])
    source = filled_model(source_config(job["shape"], job["direction"]), dtype)
    before = rss_bytes()
    started = time.perf_counter()
    if job["operator"] == "reference":
        from transformers import LlamaConfig

        target = filled_model(LlamaConfig(vocab_size=32000, max_position_embeddings=2048, **SHAPES[job["shape"]]),
                              dtype)
    else:
        batches = [torch.randint(0, 32000, (1, 128))] if job["operator"] == "learn" else None
        target = grow(source, job["operator"], job["direction"], FACTORS[job["direction"]], learn_batches=batches,
                      learn_steps=1).model
    seconds = time.perf_counter() - started
    target_bytes = sum(p.numel() * p.element_size() for p in target.parameters())
    return {**job, "seconds": seconds, "target_params": sum(p.numel() for p in target.parameters()),
            "target_bytes": target_bytes, "added_over_source": (peak_bytes() - before) / target_bytes,
            "peak_gib": peak_bytes() / 2**30}


def measure(job: dict) -> dict:
    output = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], check=True,
                            capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="1b,100m")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    rows = []
    print(f"dtype {args.dtype}, {args.threads} thread(s); 'added' = peak growth over the source / target size")
    print(f"{'shape':>5} {'direction':>9} {'operator':>9} {'target':>8} {'seconds':>8} {'× ref':>6} {'added':>6} "
          f"{'peak GiB':>8}")
    for shape in args.shapes.split(","):
        for direction in FACTORS:
            common = {"shape": shape, "direction": direction, "dtype": args.dtype, "threads": args.threads}
            reference = measure({**common, "operator": "reference"})
            for operator in ("reference", *OPERATORS[shape]):
                row = reference if operator == "reference" else measure({**common, "operator": operator})
                row["time_vs_reference"] = row["seconds"] / reference["seconds"]
                rows.append(row)
                print(f"{shape:>5} {direction:>9} {operator:>9} {row['target_params'] / 1e9:>7.2f}B "
                      f"{row['seconds']:>8.2f} {row['time_vs_reference']:>6.2f} {row['added_over_source']:>6.2f} "
                      f"{row['peak_gib']:>8.2f}", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
