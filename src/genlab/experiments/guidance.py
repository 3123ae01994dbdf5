"""``genlab reproduce guidance``: ICG and TSG against CFG on small digits models (Sadat et al., 2025).

Three models per seed, same data, size and budget:
  A: class-conditional, trained *without* label dropping (no unconditional model inside);
  B: class-conditional with 10% label dropping (what CFG needs);
  C: unconditional.
Each is sampled the same way (Heun, same levels and seeds) and scored with FD, precision, recall
and class accuracy against held-out digits: A unguided / +ICG / +TSG / +ICG+TSG, B unguided /
+CFG / +ICG, C unguided / +TSG, plus a sweep of FD against the guidance scale.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from genlab.base.image_model import ImageModelConfig, balanced_labels, load_image_model, train_image_model
from genlab.base.info import ImageModelInfo
from genlab.core.checkpoint import read_json
from genlab.core.edm import karras_sigmas, sample
from genlab.core.images import save_image_grid
from genlab.core.paths import mark_created, remove_created
from genlab.core.runlog import agg_figure
from genlab.errors import GenlabError
from genlab.experiments import reporting
from genlab.guidance import GuidanceTerm, guide_class_model
from genlab.metrics import evaluate_samples

MODELS = {"A": {"label_dropout": 0.0, "conditional": True},
          "B": {"label_dropout": 0.1, "conditional": True},
          "C": {"label_dropout": 0.0, "conditional": False}}


@dataclass
class GuidanceSettings:
    """Guidance scales used in the table, fixed before the runs (paper-like values)."""

    cfg_scale: float = 1.5
    icg_scale: float = 1.5
    tsg_scale: float = 2.5
    tsg_noise: float = 2.0
    tsg_alpha: float = 1.0
    uncond_tsg_scale: float = 3.0
    uncond_tsg_noise: float = 1.0
    uncond_tsg_interval: tuple[float, float] = (0.2, 0.8)

    def terms(self, name: str) -> list[GuidanceTerm]:
        """The guidance terms of one table row's method (``"icg+tsg"`` gives two)."""
        tsg = GuidanceTerm("tsg", self.tsg_scale, noise_scale=self.tsg_noise, noise_exponent=self.tsg_alpha)
        by_name = {
            "unguided": [],
            "cfg": [GuidanceTerm("cfg", self.cfg_scale)],
            "icg": [GuidanceTerm("icg", self.icg_scale)],
            "tsg": [tsg],
            "icg+tsg": [GuidanceTerm("icg", self.icg_scale), tsg],
            "tsg-uncond": [GuidanceTerm("tsg", self.uncond_tsg_scale, interval=self.uncond_tsg_interval,
                                        noise_scale=self.uncond_tsg_noise)],
        }
        return by_name[name]


ROWS = [("A", "unguided"), ("A", "icg"), ("A", "tsg"), ("A", "icg+tsg"),
        ("B", "unguided"), ("B", "cfg"), ("B", "icg"),
        ("C", "unguided"), ("C", "tsg-uncond")]
SWEEP = [("B", "cfg"), ("A", "icg"), ("A", "tsg")]
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
CHUNK = 100  # images per sampler call: (up to 3 branches) x 100 rows keeps CPU batches cache-friendly


@dataclass
class ExperimentConfig:
    """Size of the reproduction (``quick`` and ``full`` presets below)."""

    seeds: tuple[int, ...] = (0, 1, 2)
    train_steps: int = 2000
    num_images: int = 1000
    sampler_steps: int = 18
    sweep_scales: tuple[float, ...] = (1.0, 1.25, 1.5, 2.0, 3.0, 4.0)
    sweep_images: int = 500
    guidance: GuidanceSettings = field(default_factory=GuidanceSettings)


PRESETS = {
    "full": ExperimentConfig(),
    "quick": ExperimentConfig(seeds=(0,), train_steps=400, num_images=300, sampler_steps=10,
                              sweep_scales=(1.0, 2.0, 3.0), sweep_images=200),
    "demo": ExperimentConfig(seeds=(0,), train_steps=300, num_images=200, sampler_steps=10,
                             sweep_scales=(1.0, 2.0), sweep_images=200),
}


def _trained_alike(run_dir: Path, model_config: ImageModelConfig) -> bool:
    """Whether ``run_dir`` holds a finished model trained with the settings of ``model_config``."""
    try:
        saved = read_json(run_dir / "config.json", "no config")
    except GenlabError:
        return False
    ignored = ("progress", "run_dir", "overwrite")
    return (all(saved.get(k) == v for k, v in asdict(model_config).items() if v is not None and k not in ignored)
            and (run_dir / "model" / "genlab.json").is_file())


def train_models(out: Path, config: ExperimentConfig, seed: int) -> dict[str, tuple]:
    """Train (or reuse, if the same settings were trained before) models A, B, C for one seed."""
    models = {}
    for name, settings in MODELS.items():
        run_dir = out / "models" / f"{name}-seed{seed}"
        model_config = ImageModelConfig(data="digits", steps=config.train_steps, seed=seed,
                                        checkpoint_every=config.train_steps, run_dir=str(run_dir), **settings)
        if not _trained_alike(run_dir, model_config):
            remove_created(run_dir)
            mark_created(run_dir)
            train_image_model(model_config)
        denoiser, info = load_image_model(run_dir)
        models[name] = (denoiser.to(DEVICE), info)
    return models


@torch.no_grad()
def guided_samples(denoiser, info: ImageModelInfo, terms: list[GuidanceTerm], num_images: int, steps: int,
                   seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``num_images`` class-balanced samples (labels also for C: they are only used for scoring)."""
    labels = balanced_labels(num_images, 10)
    num_classes = info.num_classes
    guided = guide_class_model(denoiser, num_classes, terms, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(num_images, 1, 16, 16, generator=generator).to(DEVICE)
    chunks = []
    for start in range(0, num_images, CHUNK):
        cond = {"class_labels": labels[start : start + CHUNK].to(DEVICE)} if num_classes else {}
        chunks.append(sample(guided, noise[start : start + CHUNK], karras_sigmas(steps), "heun", **cond).cpu())
    return torch.cat(chunks).clamp(-1, 1), labels


def score(images: torch.Tensor, labels: torch.Tensor, conditional: bool) -> dict:
    return evaluate_samples(images, labels if conditional else None, "digits")


def run(out: Path, config: ExperimentConfig) -> dict:
    """Run the whole reproduction; write results.json, report.md, sweep.png and sample grids."""
    out.mkdir(parents=True, exist_ok=True)
    table: dict[str, list[dict]] = {f"{m} {g}": [] for m, g in ROWS}
    sweep: dict[str, list[list[float]]] = {f"{m} {g}": [] for m, g in SWEEP}
    for seed in config.seeds:
        models = train_models(out, config, seed)
        for model_name, method in tqdm(ROWS, desc=f"guidance table, seed {seed}", leave=False):
            denoiser, info = models[model_name]
            images, labels = guided_samples(denoiser, info, config.guidance.terms(method), config.num_images,
                                            config.sampler_steps, seed=1000 + seed)
            table[f"{model_name} {method}"].append(score(images, labels, bool(info.num_classes)))
            if seed == config.seeds[0]:
                save_image_grid(images[:50], out / f"samples_{model_name}_{method}.png", columns=10)
        for model_name, method in SWEEP:
            denoiser, info = models[model_name]
            fds = []
            for scale in config.sweep_scales:
                terms = [replace(term, scale=scale) for term in config.guidance.terms(method)]
                images, labels = guided_samples(denoiser, info, terms, config.sweep_images, config.sampler_steps,
                                                seed=2000 + seed)
                fds.append(score(images, labels, True)["fd"])
            sweep[f"{model_name} {method}"].append(fds)
    results = {"config": asdict(config), "table": table, "sweep": sweep}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    plot_sweep(sweep, config.sweep_scales, out / "sweep.png")
    (out / "report.md").write_text(markdown_table(table, len(config.seeds)))
    return results


def markdown_table(table: dict[str, list[dict]], num_seeds: int) -> str:
    """The comparison as a Markdown table (mean ± std over seeds)."""
    header, *lines = reporting.table(["model + guidance", "FD ↓", "precision ↑", "recall ↑", "class accuracy ↑"],
                                     ([row, *reporting.seed_cells(runs, ("fd", "precision", "recall", "accuracy"))]
                                      for row, runs in table.items()))
    return "\n".join([f"{header}  (seeds: {num_seeds})", *lines]) + "\n"


def plot_sweep(sweep: dict[str, list[list[float]]], scales: tuple[float, ...], path: Path) -> None:
    """FD against guidance scale, mean over seeds with min–max band."""
    figure = agg_figure((5, 3.4))
    axis = figure.subplots()
    for name, runs in sweep.items():
        values = torch.tensor(runs)
        axis.plot(scales, values.mean(0), marker="o", label=name.replace("A ", "A+").replace("B ", "B+"))
        if len(runs) > 1:
            axis.fill_between(scales, values.min(0).values, values.max(0).values, alpha=0.2)
    axis.set_xlabel("guidance scale w")
    axis.set_ylabel("FD (digits features) ↓")
    axis.set_yscale("log")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path)
