"""Cost of DisCo-Diff's extra parts, measured against the plain EDM model in the same run.

(a) Sampling: drawing the m codes from the autoregressive prior, as a share of the diffusion
    sampler's time for the same images (Heun, ``--steps`` levels, i.e. 2·steps − 1 network
    calls). Paper: the prior costs about 0.5% of sampling at ImageNet scale.
(b) Training: one stage-1 step (encoder + latent-conditioned U-Net, EDM loss, backward, Adam)
    against one step of the EDM baseline with the same U-Net size, batch and data.

Models are untrained and built as ``genlab reproduce disco`` builds them (shapes, 16 px, tiny
U-Net, m = 4, k = 16); timings do not depend on the weights. Each round times every variant
once and the table shows medians over rounds (one thread by default, which is steadier on a
shared machine).

    python benchmarks/disco_cost.py [--batch 256] [--steps 18] [--train-batch 64] [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

from genlab.base.image_model import ImageModelConfig, build_denoiser, image_loss
from genlab.core.edm import karras_sigmas, sample
from genlab.data import load_dataset
from genlab.disco.prior import LatentPrior, build_prior_lm
from genlab.disco.training import PRIOR_SIZES, DisCoConfig, build_disco, stage1_loss


def seconds(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def train_step(model: torch.nn.Module, loss_fn, batch) -> Callable[[], None]:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        loss_fn(model, batch).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=256, help="images sampled per timing")
    parser.add_argument("--steps", type=int, default=18, help="Heun noise levels")
    parser.add_argument("--train-batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = DisCoConfig(resolution=16)
    disco = build_disco(config, 3, 16, 4).eval()
    disco.prior = LatentPrior(build_prior_lm(config.num_latents, config.num_codes, 4, **PRIOR_SIZES[config.size])).eval()
    edm = build_denoiser(ImageModelConfig(data="shapes", resolution=16), 3, 16, 4).eval()
    labels = torch.arange(args.batch) % 4
    noise = torch.randn(args.batch, 3, 16, 16)
    sigmas = karras_sigmas(args.steps, 0.002, 80.0, 7.0)
    codes = torch.randint(0, config.num_codes, (args.batch, config.num_latents))
    data = load_dataset("shapes", "train", 16)
    batch = (data.images(range(args.train_batch)), data.labels(range(args.train_batch)))

    timings: dict[str, list[float]] = {k: [] for k in ("prior", "diffusion (DisCo)", "diffusion (EDM)",
                                                       "train step (DisCo)", "train step (EDM)")}
    disco_step = train_step(disco, stage1_loss(4, 0.0), batch)
    edm_step = train_step(edm, image_loss(4, 0.0), batch)
    with torch.no_grad():
        disco.sample_codes(8, labels[:8])  # warm-up
    for _ in range(args.rounds + 1):
        with torch.no_grad():
            round_times = {
                "prior": seconds(lambda: disco.sample_codes(args.batch, labels)),
                "diffusion (DisCo)": seconds(lambda: sample(disco.denoiser, noise, sigmas, class_labels=labels,
                                                            codes=codes)),
                "diffusion (EDM)": seconds(lambda: sample(edm, noise, sigmas, class_labels=labels)),
            }
        round_times["train step (DisCo)"] = seconds(disco_step)
        round_times["train step (EDM)"] = seconds(edm_step)
        for key, value in round_times.items():
            timings[key].append(value)
    medians = {k: statistics.median(v[1:]) for k, v in timings.items()}  # the first round warms up
    ratios = {
        "prior / DisCo diffusion sampling": medians["prior"] / medians["diffusion (DisCo)"],
        "DisCo / EDM diffusion sampling": medians["diffusion (DisCo)"] / medians["diffusion (EDM)"],
        "DisCo / EDM training step": medians["train step (DisCo)"] / medians["train step (EDM)"],
    }
    print(f"batch {args.batch}, Heun {args.steps} levels ({2 * args.steps - 1} calls), {args.threads} thread(s)")
    for key, value in medians.items():
        print(f"  {key:<22} {value * 1000:9.1f} ms")
    for key, value in ratios.items():
        print(f"  {key:<34} {value:.4f}")
    print(json.dumps({"seconds": medians, "ratios": ratios}))


if __name__ == "__main__":
    main()
