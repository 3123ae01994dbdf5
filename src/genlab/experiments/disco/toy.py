"""DisCo-Diff reproduction, part 1: the paper's 2-D toy (8-Gaussian ring).

An EDM MLP denoiser with and without one discrete latent of 8 codes, same size and budget;
Heun with 50 levels; Wasserstein-2 distance to fresh data and the straightness of the ODE paths
(path length over end-to-end distance, 1 = straight). Paper: W2 0.27 → 0.118, near-straight paths.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from genlab.core.checkpoint import latest_checkpoint
from genlab.core.edm import karras_sigmas, sample
from genlab.core.runlog import agg_figure
from genlab.core.train import LoopConfig, Trainer
from genlab.disco.codes import code_usage
from genlab.disco.toy import ToyDisCo, ring_of_gaussians
from genlab.experiments.reporting import mean_std, seed_cells, table
from genlab.metrics import wasserstein2

VARIANTS = {"EDM": 0, "DisCo-Diff": 1}


@dataclass
class ToyConfig:
    """Size of the toy reproduction."""

    seeds: tuple[int, ...] = (0, 1, 2)
    train_steps: int = 3000
    batch_size: int = 256
    train_points: int = 20000
    eval_points: int = 2000
    sampler_steps: int = 50
    num_codes: int = 8
    hidden: int = 64
    ring_std: float = 0.03


def train_toy(model: ToyDisCo, points: torch.Tensor, run_dir: Path, config: ToyConfig, seed: int) -> ToyDisCo:
    """Train encoder and denoiser end to end with the EDM loss; returns the EMA model.

    A finished run in ``run_dir`` is reused (resuming it adds no steps).
    """
    loop = LoopConfig(steps=config.train_steps, batch_size=config.batch_size, lr=1e-3, warmup_steps=100,
                      checkpoint_every=config.train_steps, log_every=100, seed=seed, progress=False,
                      overwrite=True)  # a run killed before its checkpoint starts afresh
    trainer = Trainer(model, lambda m, batch: m(batch[0]), TensorDataset(points), run_dir, loop,
                      {**asdict(loop), "model": "toy", "num_latents": model.num_latents})
    return trainer.fit(resume=latest_checkpoint(run_dir / "checkpoints") is not None).ema_model.eval()


@torch.no_grad()
def sample_toy(model: ToyDisCo, points: torch.Tensor, num: int, steps: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``num`` samples ``[N, 2]`` and their trajectories ``[levels + 1, N, 2]``.

    DisCo codes are drawn from the prior: the categorical distribution of the encoder's
    zero-temperature codes on the training points.
    """
    generator = torch.Generator().manual_seed(seed)
    cond = {}
    if model.num_latents:
        counts = torch.bincount(model.code_indices(points)[:, 0], minlength=model.num_codes).float()
        drawn = torch.multinomial(counts / counts.sum(), num, replacement=True, generator=generator)
        cond["codes"] = torch.nn.functional.one_hot(drawn, model.num_codes).float()[:, None]
    states = []
    noise = torch.randn(num, 2, generator=generator)
    schedule = model.denoiser.schedule
    sigmas = karras_sigmas(steps, schedule.sigma_min, schedule.sigma_max, schedule.rho)
    final = sample(model.denoiser, noise, sigmas, "heun", callback=lambda i, x: states.append(x.float()), **cond)
    return final, torch.stack(states)


def off_mode_share(samples: torch.Tensor, std: float, modes: int = 8, radius: float = 1.0) -> float:
    """Share of samples farther than 3 std from every mode centre (about 1% for perfect samples)."""
    angle = 2 * torch.pi * torch.arange(modes) / modes
    centres = radius * torch.stack([angle.cos(), angle.sin()], dim=1)
    return float((torch.cdist(samples.float(), centres).min(1).values > 3 * std).float().mean())


def straightness(trajectories: torch.Tensor) -> float:
    """Mean over paths of (path length / distance between start and end); 1 = straight lines."""
    length = (trajectories[1:] - trajectories[:-1]).norm(dim=-1).sum(0)
    chord = (trajectories[-1] - trajectories[0]).norm(dim=-1)
    return float((length / chord).mean())


def run_toy(out: Path, config: ToyConfig = ToyConfig()) -> dict:
    """Train both variants per seed; write results.json, report.md and trajectories.png."""
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    shown = {}
    for seed in config.seeds:
        generator = torch.Generator().manual_seed(seed)
        points = ring_of_gaussians(config.train_points, std=config.ring_std, generator=generator)
        reference = ring_of_gaussians(config.eval_points, std=config.ring_std, generator=generator)
        for name, num_latents in VARIANTS.items():
            torch.manual_seed(seed)
            model = ToyDisCo(num_latents=num_latents, num_codes=config.num_codes, hidden=config.hidden)
            run_dir = out / "runs" / f"{name}-{config.train_steps}steps-h{config.hidden}-seed{seed}"
            model = train_toy(model, points, run_dir, config, seed)
            samples, paths = sample_toy(model, points, config.eval_points, config.sampler_steps, seed + 100)
            record = {"w2": wasserstein2(samples, reference), "straightness": straightness(paths),
                      "off_mode": off_mode_share(samples, config.ring_std)}
            if num_latents:
                record["code_usage"] = float(code_usage(model.code_indices(points), config.num_codes)[0])
                if record["code_usage"] < 0.5:
                    warnings.warn(f"codebook collapse: seed {seed} uses {record['code_usage']:.0%} of the "
                                  f"{config.num_codes} codes", stacklevel=2)
            results[name].append(record)
            if seed == config.seeds[0]:
                shown[name] = paths[:, :300]
    floor = [wasserstein2(*(ring_of_gaussians(config.eval_points, std=config.ring_std,
                                              generator=torch.Generator().manual_seed(1000 * s + k)) for k in (7, 8)))
             for s in config.seeds]
    summary = {"config": asdict(config), "results": results, "w2_data_vs_data": floor}
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    (out / "report.md").write_text(toy_table(results, floor))
    plot_trajectories(shown, out / "trajectories.png")
    return summary


def toy_table(results: dict[str, list[dict]], floor: list[float]) -> str:
    """Markdown table: W2 and straightness per variant, mean ± std over seeds."""
    rows = [[name, *seed_cells(runs, ("w2", "off_mode", "straightness", "code_usage"))] for name, runs in results.items()]
    return "\n".join(table(["model", "W2 to data ↓", "off-mode share ↓", "path length / chord (1 = straight)",
                             "code usage"], [*rows, ["two data samples (floor)", mean_std(floor), "–", "–", "–"]])) + "\n"


def plot_trajectories(paths: dict[str, torch.Tensor], path: Path) -> None:
    """ODE trajectories ``[levels + 1, n, 2]`` per variant, side by side (noise end clipped to view)."""
    figure = agg_figure((4.2 * len(paths), 4.2))
    axes = figure.subplots(1, len(paths))
    for axis, (name, trajectories) in zip(axes, paths.items(), strict=True):
        lines = trajectories.clamp(-3, 3).numpy()
        axis.plot(lines[:, :, 0], lines[:, :, 1], lw=0.4, alpha=0.35, color="tab:blue")
        axis.scatter(lines[-1, :, 0], lines[-1, :, 1], s=3, color="tab:red", zorder=3)
        axis.set_title(name)
        axis.set_xlim(-3, 3)
        axis.set_ylim(-3, 3)
        axis.set_aspect("equal")
    figure.tight_layout()
    figure.savefig(path)
