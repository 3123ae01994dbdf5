"""Training-step time, peak memory and (on a GPU) model FLOP utilisation of the video DiT, and of
adding a camera input by VD3D's ControlNet (base frozen) vs full fine-tuning, at the same batch.

Jobs, each an EDM training step (noise sampling, forward, backward, AdamW) with random weights:

* ``video DiT``: the base video model, every weight trained (as in ``genlab train video``);
* ``ControlNet``: the camera branch trained, the base frozen (``genlab train camera``);
* ``camera encoder``: the CameraCtrl-style baseline, a camera encoder trained, the base frozen;
* ``concat fine-tune``: the MotionCtrl-style baseline, Plücker concatenated to the input, every weight trained.

FLOPs are counted once per job with ``torch.utils.flop_counter`` (matmuls and attention); MFU is
FLOPs per second over the bf16 matrix-product peak measured in the same run (8192³). On the CPU
each job runs in a fresh process so that its peak resident memory (``ru_maxrss``) is its own.

    python benchmarks/video_dit.py                       # CPU, the reproduction's model and batch
    python benchmarks/video_dit.py --device cuda --modes eager compiled --attention full
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from genlab.camera.controlnet import CameraControlNet, CameraEncoder
from genlab.camera.model import ConcatCameraDenoiser, ControlNetCameraDenoiser, EncoderCameraDenoiser
from genlab.core.denoiser import EDMDenoiser
from genlab.core.edm import edm_loss
from genlab.core.nets import VideoDiT
from genlab.core.nets.dit import DiTBlock

PRESETS = {  # model, branch, batch
    "cpu": ({"frames": 8, "resolution": 32, "patch_size": 4, "hidden_size": 96, "depth": 4, "num_heads": 4,
             "condition_channels": 3}, {"hidden_size": 96, "depth": 2, "num_heads": 4}, 16),
    "gpu": ({"in_channels": 4, "frames": 16, "resolution": 32, "patch_size": 2, "hidden_size": 1152, "depth": 28,
             "num_heads": 9, "condition_channels": 4}, {"hidden_size": 1152, "depth": 8, "num_heads": 9}, 8),
}
JOBS = ("video DiT", "ControlNet", "camera encoder", "concat fine-tune")
OVERRIDES: dict[str, int] = {}  # --heads / --batch


def build(job: str, preset: str, attention: str, device: str) -> tuple[torch.nn.Module, dict]:
    """The denoiser of ``job`` and its per-step conditioning (Plücker frames for the camera jobs)."""
    model_config, branch_config, batch = PRESETS[preset]
    if OVERRIDES.get("heads"):
        model_config = {**model_config, "num_heads": OVERRIDES["heads"]}
        branch_config = {**branch_config, "num_heads": OVERRIDES["heads"]}
    batch = OVERRIDES.get("batch") or batch
    torch.manual_seed(0)
    base = EDMDenoiser(VideoDiT(attention=attention, **model_config))
    cfg = base.net.config
    first = torch.randn(batch, cfg.frames, cfg.in_channels, cfg.resolution, cfg.resolution, device=device)
    cond = {"condition": first}
    if job == "ControlNet":
        denoiser = ControlNetCameraDenoiser(base, CameraControlNet.for_backbone(base.net, **branch_config))
    elif job == "camera encoder":
        denoiser = EncoderCameraDenoiser(base, CameraEncoder.for_backbone(base.net, branch_config["hidden_size"]))
    elif job == "concat fine-tune":
        denoiser = ConcatCameraDenoiser.from_base(base)
    else:
        return base.to(device), cond
    cond["plucker"] = torch.randn(batch, cfg.frames, 6, cfg.resolution, cfg.resolution, device=device)
    return denoiser.to(device), cond


def measure(job: str, preset: str, attention: str, device: str, compile_model: bool, repeats: int) -> dict:
    """Median step time, FLOPs per step and peak memory of one job."""
    denoiser, cond = build(job, preset, attention, device)
    cfg = (denoiser.net if hasattr(denoiser, "net") else denoiser.base.net).config
    batch = cond["condition"].shape[0]
    clips = torch.randn(batch, cfg.frames, cfg.in_channels, cfg.resolution, cfg.resolution, device=device)
    trainable = [p for p in denoiser.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4, fused=device == "cuda")
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")

    def step():
        with autocast:
            loss = edm_loss(denoiser, clips, **cond).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    with FlopCounterMode(display=False) as counter:  # eagerly: compiled kernels are invisible to the counter
        step()
    if compile_model:
        compile_blocks(denoiser)
    for _ in range(3):
        step()
    times = []
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    seconds = sorted(times)[len(times) // 2]
    memory = (torch.cuda.max_memory_allocated() if device == "cuda"
              else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"job": job, "attention": attention, "compiled": compile_model, "batch": batch,
            "tokens_per_clip": cfg.frames * (cfg.resolution // cfg.patch_size) ** 2,
            "trainable_parameters": sum(p.numel() for p in trainable), "seconds_per_step": seconds,
            "tflops_per_step": counter.get_total_flops() / 1e12, "peak_memory_gib": memory / 2**30}


def compile_blocks(denoiser: torch.nn.Module) -> None:
    """Regional compilation: each transformer block's ``forward`` (base and branch) goes through
    ``torch.compile``; the ControlNet's hooks stay outside the compiled graphs."""
    torch._dynamo.config.cache_size_limit = 64
    for module in denoiser.modules():
        if isinstance(module, DiTBlock):
            module.forward = torch.compile(module.forward)


def matmul_peak_tflops(device: str) -> float:
    """bf16 8192³ matrix-product throughput on ``device`` (the MFU denominator)."""
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(20):
        a @ b
    torch.cuda.synchronize()
    return 2 * 8192**3 * 20 / (time.perf_counter() - start) / 1e12


def _measure_in_fresh_process(arguments: tuple) -> dict:
    *setting, overrides, threads = arguments
    torch.set_num_threads(threads)
    OVERRIDES.update(overrides)
    return measure(*setting)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--preset", choices=tuple(PRESETS), default=None, help="default: cpu, or gpu on cuda")
    parser.add_argument("--attention", nargs="+", default=["full", "factorised"], choices=["full", "factorised"])
    parser.add_argument("--jobs", nargs="+", default=list(JOBS), choices=JOBS)
    parser.add_argument("--modes", nargs="+", default=["eager"], choices=["eager", "compiled"],
                        help="compiled: each block's forward through torch.compile")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--heads", type=int, default=None, help="attention heads (head size = hidden / heads)")
    parser.add_argument("--batch", type=int, default=None, help="clips per step (default: the preset's)")
    args = parser.parse_args()
    OVERRIDES.update(heads=args.heads, batch=args.batch)
    preset = args.preset or ("gpu" if args.device == "cuda" else "cpu")
    settings = [(job, preset, attention, args.device, mode == "compiled", args.repeats)
                for attention in args.attention for job in args.jobs for mode in args.modes]
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        peak = matmul_peak_tflops(args.device)
        rows = []
        for setting in settings:
            try:
                rows.append(measure(*setting))
            except Exception as error:  # report and go on: one failing job must not lose the others' numbers
                print(f"{setting[:5]} failed: {type(error).__name__}: {str(error)[:300]}")
            torch.cuda.empty_cache()
        print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, bf16 matmul peak {peak:.0f} TFLOP/s")
    else:
        peak = None
        context = multiprocessing.get_context("spawn")
        rows = []
        for setting in settings:
            with context.Pool(1) as pool:
                rows.append(pool.apply(_measure_in_fresh_process, ((*setting, OVERRIDES, torch.get_num_threads()),)))
        print(f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'job':18}{'attention':>11}{'compiled':>9}{'trainable M':>12}{'s/step':>9}{'TFLOP/step':>11}"
          f"{'peak GiB':>9}{'MFU %':>7}{'time vs video DiT':>18}")
    reference = {(r["attention"], r["compiled"]): r["seconds_per_step"] for r in rows if r["job"] == "video DiT"}
    reference = {key: reference.get(key, float("nan")) for key in {(r["attention"], r["compiled"]) for r in rows}}
    for row in rows:
        if peak:
            row["mfu"] = row["tflops_per_step"] / row["seconds_per_step"] / peak
        mfu = f"{100 * row['mfu']:7.1f}" if peak else f"{'–':>7}"
        ratio = row["seconds_per_step"] / reference[(row["attention"], row["compiled"])]
        print(f"{row['job']:18}{row['attention']:>11}{row['compiled']!s:>9}{row['trainable_parameters'] / 1e6:12.2f}"
              f"{row['seconds_per_step']:9.3f}{row['tflops_per_step']:11.3f}{row['peak_memory_gib']:9.2f}{mfu}"
              f"{ratio:18.2f}")
    print(json.dumps({"peak_tflops": peak, "rows": rows}))


if __name__ == "__main__":
    main()
