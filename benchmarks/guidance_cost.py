"""Cost of genlab's guidance: ICG and TSG against CFG, and genlab's CFG against diffusers' own loop.

(a) Time per Heun sampling step of genlab's tiny class-conditional digits U-Net (untrained;
    the timing does not depend on the weights) at batch B = 256, same number of steps for every
    method. CFG, ICG and TSG each run one model call on a doubled batch, so ICG and TSG should
    cost what CFG costs (target ratio <= 1.05); ICG+TSG runs a tripled batch (<= 1.6). The
    unguided model sampled at batch 2B and 3B shows the floor: the model's own cost ratio of a
    tripled to a doubled batch, which ICG+TSG / CFG cannot beat.
(b) A small random Stable Diffusion pipeline, CFG with the same number of UNet calls:
    genlab (``guided_pipeline_sample``: prompt encoding, ``GuidedDenoiser`` around
    ``DiffusersDenoiser``, genlab's Euler sampler) against ``StableDiffusionPipeline.__call__``
    (guidance_scale > 1, its DDIM loop), both returning latents. Reported as a ratio.

On CPU, glibc's malloc by default hands large freed buffers back to the system after every
model call, so each call page-faults its activations in again and big batches cost more than
their size (here a batch of 768 took 1.74× a batch of 512 instead of 1.5×). The script therefore
asks glibc (``mallopt``) to keep freed memory; ``--system-malloc`` measures without that.

Each round runs every method once (alternating the order), and the table shows the median
time per step and the median over rounds of each round's ratio to the baseline, which resists
other processes on a shared machine better than a ratio of medians. One thread by default, for
the same reason: with two threads on two busy cores, each thread barrier can wait a time slice.

    python benchmarks/guidance_cost.py [--batch 256] [--steps 4] [--rounds 7] [--threads 1] [--system-malloc]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from genlab.base.image_model import ImageModelConfig, build_denoiser
from genlab.core.edm import karras_sigmas, sample
from genlab.guidance import GuidanceTerm, guide_class_model
from genlab.guidance.pipelines import guided_pipeline_sample

NUM_CLASSES = 10
METHODS = {
    "CFG": [GuidanceTerm("cfg", 2.0)],
    "ICG": [GuidanceTerm("icg", 2.0)],
    "TSG": [GuidanceTerm("tsg", 2.0)],
    "ICG+TSG": [GuidanceTerm("icg", 2.0), GuidanceTerm("tsg", 2.0)],
}
TARGETS = {"ICG": 1.05, "TSG": 1.05, "ICG+TSG": 1.6}


# glibc mallopt options: keep up to 2 GiB of freed memory, pad the heap by 1 GiB, mmap only above 32 MiB.
MALLOC_OPTIONS = ((-1, 2**31 - 1), (-2, 1 << 30), (-3, 32 << 20))


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse; False where libc is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return all(libc.mallopt(option, value) == 1 for option, value in MALLOC_OPTIONS)


def seconds(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def digits_runs(batch: int, steps: int) -> dict[str, Callable[[], object]]:
    """One Heun sampling run per method on the digits U-Net; each returns ``[batch, 1, 16, 16]``."""
    denoiser = build_denoiser(ImageModelConfig(), 1, 16, NUM_CLASSES).eval()
    sigmas = karras_sigmas(steps, denoiser.sigma_min, denoiser.sigma_max)
    labels = torch.arange(batch) % NUM_CLASSES
    noise = torch.randn(batch, 1, 16, 16)

    def runner(terms: list[GuidanceTerm]) -> Callable[[], object]:
        guided = guide_class_model(denoiser, NUM_CLASSES, terms)
        return lambda: sample(guided, noise, sigmas, method="heun", class_labels=labels)

    def bare(copies: int) -> Callable[[], object]:
        return lambda: sample(denoiser, noise.repeat(copies, 1, 1, 1), sigmas, method="heun",
                              class_labels=labels.repeat(copies))

    runs = {name: runner(terms) for name, terms in METHODS.items()}
    return {**runs, "bare model, 2B": bare(2), "bare model, 3B": bare(3)}


def small_stable_diffusion(folder: Path) -> StableDiffusionPipeline:
    """A random Stable Diffusion pipeline (32×32 latents), with a letter-level CLIP tokenizer."""
    torch.manual_seed(0)
    letters = "abcdefghijklmnopqrstuvwxyz"
    tokens = ["<|startoftext|>", "<|endoftext|>", *letters, *(f"{c}</w>" for c in letters)]
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=16)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    unet = UNet2DConditionModel(
        sample_size=32, block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=32,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=8, norm_num_groups=8)
    vae = AutoencoderKL(block_out_channels=(8, 8), latent_channels=4, layers_per_block=1, norm_num_groups=4,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    pipeline = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                       scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def stable_diffusion_runs(pipeline: StableDiffusionPipeline, batch: int,
                          steps: int) -> dict[str, Callable[[], object]]:
    """genlab's CFG (Euler, ``steps`` UNet calls) and diffusers' CFG loop (``steps`` UNet calls)."""
    prompts = ["a cat"] * batch
    return {
        "genlab CFG": lambda: guided_pipeline_sample(pipeline, [GuidanceTerm("cfg", 7.5)], prompt=prompts,
                                                     steps=steps, sampler="euler", output_type="latent"),
        "diffusers CFG": lambda: pipeline(prompts, num_inference_steps=steps, guidance_scale=7.5,
                                          output_type="latent"),
    }


def measure(runs: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Seconds per run of each entry, after one warm-up each; every round runs each entry once,
    in forward order on even rounds and backward on odd ones, so that drift hits all alike."""
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for index in range(rounds):
        names = list(runs) if index % 2 == 0 else list(reversed(runs))
        for name in names:
            times[name].append(seconds(runs[name]))
    return times


def print_table(title: str, times: dict[str, list[float]], steps: int, baseline: str,
                targets: dict[str, float]) -> None:
    """Median ms per sampling step, and the median over rounds of each round's ratio to ``baseline``."""
    print(title)
    print(f"{'method':<18}{'ms/step (median)':>18}{'ratio':>8}  {'target':<14}rounds (ms/step)")
    for name, values in times.items():
        ratio = statistics.median(v / b for v, b in zip(values, times[baseline], strict=True))
        target = targets.get(name)
        verdict = "-" if target is None else f"<= {target:.2f} {'OK' if ratio <= target else 'OVER'}"
        rounds = ", ".join(f"{v / steps * 1e3:.0f}" for v in values)
        print(f"{name:<18}{statistics.median(values) / steps * 1e3:>18.1f}{ratio:>8.3f}  {verdict:<14}{rounds}")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256, help="(a) images per sampling run")
    parser.add_argument("--steps", type=int, default=4, help="(a) Heun steps per run (2·steps − 1 model calls)")
    parser.add_argument("--sd-batch", type=int, default=4, help="(b) prompts per run")
    parser.add_argument("--sd-steps", type=int, default=10, help="(b) denoising steps = UNet calls per run")
    parser.add_argument("--rounds", type=int, default=7, help="measurement rounds")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--system-malloc", action="store_true", help="leave glibc's malloc settings alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tuned = not args.system_malloc and keep_freed_memory()
    print(f"allocator: {'glibc malloc keeping freed memory' if tuned else 'system default'}\n")
    torch.manual_seed(0)
    with torch.no_grad():
        digits = measure(digits_runs(args.batch, args.steps), args.rounds)
    print_table(f"(a) digits U-Net, batch {args.batch}, Heun {args.steps} steps, {args.threads} threads",
                digits, args.steps, "CFG", TARGETS)
    with tempfile.TemporaryDirectory() as folder:
        pipeline = small_stable_diffusion(Path(folder))
        stable = measure(stable_diffusion_runs(pipeline, args.sd_batch, args.sd_steps), args.rounds)
    print_table(f"(b) small Stable Diffusion, {args.sd_batch} prompts, CFG, {args.sd_steps} UNet calls",
                stable, args.sd_steps, "diffusers CFG", {})


if __name__ == "__main__":
    main()
