"""Rollout frames/s and tokenizer throughput of the world model, compressive vs per-frame, in one run.

The models have the paper's shapes (64×64 frames, 16×16 context tokens, 4×4 future tokens for
the compressive tokenizer: 16× fewer) and the full reproduction's 4-layer 128-wide LLaMA, with
random weights: speed does not depend on training. Measured, for each tokenizer:

* tokenizer throughput: frames per second through encode + decode of 4-frame clips;
* rollout: imagined frames per second (KV-cache generation + decoding), one rollout and a
  planning batch of 64;
* transformer training: tokens per second of a forward + backward step, and on a GPU the model
  FLOP utilisation (6 × parameters × tokens + attention, against the card's bf16 peak).

The ratio compressive / per-frame is the number to compare (same process, same machine).

    python benchmarks/worldmodel_speed.py [--device cpu|cuda] [--repeats 3] [--peak-tflops 989]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from genlab.worldmodel.model import WorldModel
from genlab.worldmodel.tokenizer import VideoTokenizer
from genlab.worldmodel.transformer import WorldModelTransformer

SHAPE = dict(frame_size=64, context_grid=16, future_grid=4, channels=32, code_dim=8, context_codes=512,
             future_codes=512)
TRANSFORMER = dict(hidden_size=128, num_layers=4, num_heads=4, future_frames=3)


def build(compressive: bool, device: str, hidden_size: int) -> WorldModel:
    tokenizer = VideoTokenizer(**SHAPE, compressive=compressive)
    transformer = WorldModelTransformer(
        context_tokens=tokenizer.context_tokens, future_tokens=tokenizer.future_tokens,
        context_codes=512, future_codes=512, shared_codebook=not compressive,
        **{**TRANSFORMER, "hidden_size": hidden_size})
    return WorldModel(tokenizer.to(device), transformer.to(device), top_k=16, seed=0)


def timed(function, repeats: int, device: str) -> float:
    """Best wall time of ``repeats`` calls (after one warm-up call), in seconds."""
    function()
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def measure(world_model: WorldModel, device: str, repeats: int, peak_tflops: float) -> dict:
    clips = torch.rand(16, 4, 3, 64, 64, device=device) * 2 - 1
    tokenizer_s = timed(lambda: world_model.tokenizer.decode(world_model.tokenizer.encode(clips)), repeats, device)
    frame = np.zeros((1, 64, 64, 3), np.uint8)
    steps = 6  # twice the training length: the context slides once

    def rollout(batch: int):
        world_model.reset(frame if batch == 1 else np.broadcast_to(frame, (batch, *frame.shape)))
        for _ in range(steps):
            world_model.step(np.zeros(2, np.float32) if batch == 1 else np.zeros((batch, 2), np.float32))

    single_s = timed(lambda: rollout(1), repeats, device)
    batch_s = timed(lambda: rollout(64), repeats, device)
    transformer = world_model.transformer.train()
    c = transformer.config
    batch = 16
    context = torch.randint(0, 512, (batch, c.context_frames, c.context_tokens), device=device)
    future = torch.randint(0, 512, (batch, c.future_frames, c.future_tokens), device=device)
    actions = torch.zeros(batch, c.future_frames, 2, device=device)
    optimizer = torch.optim.AdamW(transformer.parameters(), lr=1e-4)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")

    def train_step():
        with autocast:
            loss = transformer(context, future, actions)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step_s = timed(train_step, repeats, device)
    world_model.transformer.eval()
    tokens = batch * transformer.sequence_length
    parameters = sum(p.numel() for p in transformer.parameters())
    attention = 6 * c.num_layers * transformer.sequence_length * c.hidden_size  # per token, causal ≈ half of 12
    flops = tokens * (6 * parameters + attention)
    result = {
        "tokens_per_frame": world_model.tokenizer.future_tokens,
        "sequence_tokens": transformer.sequence_length,
        "tokenizer_frames_per_s": clips.shape[0] * clips.shape[1] / tokenizer_s,
        "rollout_frames_per_s": steps / single_s,
        "planning_frames_per_s": 64 * steps / batch_s,
        "train_tokens_per_s": tokens / step_s,
    }
    if device == "cuda":
        result["mfu"] = flops / step_s / (peak_tflops * 1e12)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hidden-size", type=int, default=TRANSFORMER["hidden_size"],
                        help="transformer width (the full run uses 128; a GPU needs more to be busy)")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the GPU (H100 SXM: 989)")
    args = parser.parse_args()
    torch.manual_seed(0)
    results = {}
    for name, compressive in (("compressive", True), ("per-frame", False)):
        results[name] = measure(build(compressive, args.device, args.hidden_size), args.device, args.repeats,
                                args.peak_tflops)
    keys = list(results["compressive"])
    print(f"device {args.device}, threads {torch.get_num_threads()}")
    print(f"{'':26}{'compressive':>14}{'per-frame':>14}{'ratio':>10}")
    for key in keys:
        a, b = results["compressive"][key], results["per-frame"][key]
        print(f"{key:26}{a:14.4g}{b:14.4g}{a / b:10.3g}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
