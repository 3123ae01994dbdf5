"""``genlab reproduce disco``: DisCo-Diff's key claims at small scale.

Part 1 is the paper's 2-D toy (:mod:`.toy`); parts 2–4 are the image experiments
(:mod:`.images`). :func:`run` does both and writes ``results.json``, ``report.md`` and figures.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from genlab.core.runlog import agg_figure
from genlab.data import load_dataset
from genlab.experiments.disco.images import ImageExperimentConfig, run_images
from genlab.experiments.disco.toy import ToyConfig, run_toy, toy_table
from genlab.experiments.reporting import mean_std, seed_cells, table
from genlab.metrics import entropy


@dataclass
class DisCoPreset:
    """Sizes of both parts."""

    toy: ToyConfig = field(default_factory=ToyConfig)
    images: ImageExperimentConfig = field(default_factory=ImageExperimentConfig)


PRESETS = {
    "full": DisCoPreset(),
    "quick": DisCoPreset(ToyConfig(seeds=(0,), train_steps=1500),
                         ImageExperimentConfig(seeds=(0,), train_steps=800, prior_steps=400, num_images=500,
                                               sampler_steps=(4, 18), cfg_scales=(1.0, 2.0), cfg_images=300,
                                               control_seeds=(0,))),
    "demo": DisCoPreset(ToyConfig(seeds=(0,), train_steps=1500, eval_points=1000),
                        ImageExperimentConfig(seeds=(0,), train_steps=400, prior_steps=200, num_images=300,
                                              sampler_steps=(18,), cfg_scales=(1.0, 2.0), cfg_images=200,
                                              control_seeds=())),
}


def run(out: Path, preset: DisCoPreset) -> dict:
    """Run both parts into ``out`` (``toy/`` and ``images/``); write results.json, report.md, fd_vs_nfe.png."""
    out.mkdir(parents=True, exist_ok=True)
    toy = run_toy(out / "toy", preset.toy)
    images = run_images(out / "images", preset.images)
    results = {"toy": toy, "images": images, "preset": asdict(preset)}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    plot_fd_vs_nfe(images, out / "fd_vs_nfe.png")
    (out / "report.md").write_text(report(toy, images))
    return results


def _over_seeds(images: dict, *path: str) -> list:
    """The value at ``path`` inside every seed's record."""
    values = []
    for record in images["seeds"].values():
        for key in path:
            record = record[key]
        values.append(record)
    return values


CONTROL_ROW = "control: DisCo-Diff network, latents always dropped"


def table_runs(images: dict) -> dict[str, list[dict]]:
    """``row -> [one {NFE: scores} per seed]`` for the FD table, the control row last (if run)."""
    rows = {row: [record["fd_table"][row] for record in images["seeds"].values()]
            for row in next(iter(images["seeds"].values()))["fd_table"]}
    if images.get("control"):
        rows[CONTROL_ROW] = [record["fd_table"] for record in images["control"].values()]
    return rows


def fd_rows(images: dict, metric: str = "fd") -> dict[str, dict[str, str]]:
    """``row -> NFE -> "mean ± std"`` of ``metric`` over seeds (the row's seed count in its name if it differs)."""
    seeds = len(images["seeds"])
    table = {}
    for row, runs in table_runs(images).items():
        name = row if len(runs) == seeds else f"{row} ({len(runs)} seed{'s' * (len(runs) > 1)})"
        table[name] = {nfe: mean_std([run[nfe][metric] for run in runs]) for nfe in runs[0]}
    return table


def report(toy: dict, images: dict) -> str:
    """The markdown report: toy table, FD vs NFE, latent CFG, code usage and mutual information."""
    seeds = len(images["seeds"])
    lines = ["## 1. 2-D toy (8-Gaussian ring)", "", toy_table(toy["results"], toy["w2_data_vs_data"]),
             f"## 2. Images ({images['config']['data']}, {images['config']['resolution']} px): FD vs NFE "
             f"(Heun; mean ± std over {seeds} seed(s))", ""]
    for metric in ("fd", "precision", "recall"):
        rows = fd_rows(images, metric)
        nfes = list(next(iter(rows.values())))
        lines += [f"**{metric}**", "", *table(["model", *(f"NFE {n}" for n in nfes)],
                                              ([row, *(cells[n] for n in nfes)] for row, cells in rows.items())), ""]
    lines += per_seed_fd(images) + [""]
    scales = list(next(iter(images["seeds"].values()))["latent_cfg"])
    lines += ["## 3. Latent CFG (scale w: 1 = no guidance)", "",
              *table(["w", "FD", "precision", "recall", "accuracy"],
                     ([scale, *seed_cells(_over_seeds(images, "latent_cfg", scale), ("fd", "precision", "recall",
                                                                                       "accuracy"))]
                      for scale in scales))]
    lines += ["", "## 4. What the latents learned", ""]
    usage = [sum(u) / len(u) for u in _over_seeds(images, "code_usage")]
    lines += [f"Code usage (share of the k codes used, mean over latents): {mean_std(usage)}", ""]
    config = images["config"]
    factors = load_dataset(config["data"], "train", config["resolution"]).factors()
    per_seed = {name: _over_seeds(images, "mutual_information_bits", name) for name in factors}
    lines += table(["factor", "H(factor) bits", "best latent: I(z_i; factor) bits", "sum over latents"],
                   ([name, f"{entropy(values):.2f}", mean_std([max(v) for v in per_seed[name]]),
                     mean_std([sum(v) for v in per_seed[name]])] for name, values in factors.items()))
    return "\n".join(lines) + "\n"


def per_seed_fd(images: dict) -> list[str]:
    """Markdown lines: FD of every row for each seed (the paired comparison behind the means)."""
    first = next(iter(images["seeds"].values()))["fd_table"]
    nfes = list(next(iter(first.values())))
    rows = []
    for seed, record in images["seeds"].items():
        by_row = dict(record["fd_table"])
        if seed in images.get("control", {}):
            by_row[CONTROL_ROW] = images["control"][seed]["fd_table"]
        rows += [[seed, row, *(f"{cells[n]['fd']:.3f}" for n in nfes)] for row, cells in by_row.items()]
    return ["**FD per seed**", "", *table(["seed", "model", *(f"NFE {n}" for n in nfes)], rows)]


def plot_fd_vs_nfe(images: dict, path: Path) -> None:
    """FD against NFE per row of the table, mean over seeds with std error bars."""
    figure = agg_figure((6, 4))
    axis = figure.subplots()
    for row, runs in table_runs(images).items():
        nfes = sorted(runs[0], key=int)
        values = [[run[n]["fd"] for run in runs] for n in nfes]
        means = [sum(v) / len(v) for v in values]
        spreads = [(sum((x - m) ** 2 for x in v) / max(len(v) - 1, 1)) ** 0.5 for v, m in zip(values, means, strict=True)]
        axis.errorbar([int(n) for n in nfes], means, yerr=spreads, marker="o", capsize=3, label=row,
                      linestyle="--" if row == CONTROL_ROW else "-")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("network evaluations (Heun)")
    axis.set_ylabel("FD (genlab shapes features) ↓")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
