"""``genlab reproduce growth``: "Stacking Your Transformers" at small scale on the CPU.

A byte-level LLaMA (the large model: ``layers`` × ``hidden``) is trained from scratch for
``steps`` steps on the standard-library docstring corpus. For each operator and direction a
small model (``layers / depth_factor`` layers, or ``hidden / width_factor`` width) is trained for
``small_steps`` steps, grown to the large shape and trained ``steps`` more steps. Every run logs
held-out loss against tokens and FLOPs, the small model's share included. The speed-up is read
off where a grown run's curve first reaches the scratch run's final loss (same seed). Jobs run in
``workers`` processes (one thread each) and are cached as ``runs/*.json``, so a stopped run
resumes where it stopped.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from genlab.core.runlog import agg_figure
from genlab.experiments.parallel import map_in_processes
from genlab.experiments.reporting import seed_cells, table
from genlab.growth import OPERATORS, grow
from genlab.growth.corpus import VOCAB_SIZE, ByteCorpus, corpus_name
from genlab.growth.lm import LMSchedule, train_lm
from genlab.growth.timing import recommended_growth_tokens, training_flops_per_token

OPERATOR_LABELS = {"direct": "G_direct (G_stack)", "learn": "G_learn", "zero": "G_zero", "random": "G_random"}
PAPER = ("Du et al. 2024: G_stack depth ×4 reaches a 7B model's 300B-token loss after 194B tokens "
         "(300/194 − 1 = 54.6% speed-up, i.e. 35% of tokens saved); 3B: 48.6–54.5% speed-up. "
         "Growth factor g = 4 was best in their sweep.")


@dataclass(frozen=True)
class GrowthPreset:
    """Sizes of the testbed. Width growth uses ``width_factor`` (heads stay 16-dimensional)."""

    layers: int = 8
    hidden: int = 64
    heads: int = 4
    intermediate: int = 172
    depth_factor: int = 4
    width_factor: int = 2
    steps: int = 800
    small_steps: int = 200
    operators: tuple[str, ...] = OPERATORS
    directions: tuple[str, ...] = ("depth", "width")
    seeds: tuple[int, ...] = (0, 1, 2)
    sweep_small_steps: tuple[int, ...] = (100, 400)
    sweep_factors: tuple[int, ...] = (2, 8)
    learn_steps: int = 100
    ramp_steps: int = 100
    width_split_noise: float = 0.1
    long_steps: int = 2400
    schedule: LMSchedule = field(default_factory=LMSchedule)


PRESETS = {
    "full": GrowthPreset(),
    "quick": GrowthPreset(layers=4, steps=300, small_steps=75, directions=("depth",), seeds=(0,),
                          sweep_small_steps=(), sweep_factors=(), learn_steps=30, ramp_steps=30, long_steps=0,
                          schedule=LMSchedule(eval_every=25, eval_batches=4)),
}
PRESETS["demo"] = PRESETS["quick"]  # the demo part is the quick run


@dataclass(frozen=True)
class Job:
    """One training run: ``operator`` None is the scratch baseline."""

    seed: int
    operator: str | None = None
    direction: str = "depth"
    factor: int = 1
    small_steps: int = 0
    split_noise: float = 0.0
    steps: int = 0  # large-model steps; 0 = the preset's

    @property
    def name(self) -> str:
        budget = f"-T{self.steps}" if self.steps else ""
        if self.operator is None:
            return f"scratch{budget}-s{self.seed}"
        noise = f"-n{self.split_noise:g}" if self.split_noise else ""
        return f"{self.operator}-{self.direction}-g{self.factor}-d{self.small_steps}{noise}{budget}-s{self.seed}"


def variants(preset: GrowthPreset, direction: str) -> list[tuple[str, float]]:
    """``(operator, split noise)`` rows of one direction: every operator, plus symmetry-broken
    splitting for G_direct and G_learn width (see :func:`genlab.growth.grow`)."""
    rows = [(op, 0.0) for op in preset.operators]
    if direction == "width" and preset.width_split_noise:
        rows += [(op, preset.width_split_noise) for op in ("direct", "learn") if op in preset.operators]
    return rows


def variant_label(operator: str, split_noise: float) -> str:
    return OPERATOR_LABELS[operator] + (f" + split noise {split_noise:g}" if split_noise else "")


def large_config(preset: GrowthPreset) -> LlamaConfig:
    return LlamaConfig(vocab_size=VOCAB_SIZE, hidden_size=preset.hidden, intermediate_size=preset.intermediate,
                       num_hidden_layers=preset.layers, num_attention_heads=preset.heads,
                       num_key_value_heads=preset.heads, max_position_embeddings=preset.schedule.seq_len + 1,
                       head_dim=preset.hidden // preset.heads, tie_word_embeddings=False)


def small_config(preset: GrowthPreset, direction: str, factor: int) -> LlamaConfig:
    config = large_config(preset)
    if direction == "depth":
        config.num_hidden_layers = preset.layers // factor
    else:
        config.hidden_size, config.num_attention_heads = preset.hidden // factor, preset.heads // factor
        config.num_key_value_heads = config.num_attention_heads
        config.intermediate_size = preset.intermediate // factor
    return config


def jobs(preset: GrowthPreset) -> list[Job]:
    """Scratch and every operator × direction per seed, then the timing/factor sweep (first seed, G_stack)."""
    factors = {"depth": preset.depth_factor, "width": preset.width_factor}
    listed = [Job(seed) for seed in preset.seeds]
    listed += [Job(seed, op, direction, factors[direction], preset.small_steps, noise)
               for seed in preset.seeds for direction in preset.directions for op, noise in variants(preset, direction)]
    seed = preset.seeds[0]
    listed += [Job(seed, "direct", "depth", preset.depth_factor, d) for d in preset.sweep_small_steps]
    listed += [Job(seed, "direct", "depth", g, preset.small_steps) for g in preset.sweep_factors]
    if preset.long_steps:
        listed += [Job(seed, steps=preset.long_steps),
                   Job(seed, "direct", "depth", preset.depth_factor, preset.small_steps, steps=preset.long_steps)]
    return listed


def operator_batches(corpus: ByteCorpus, schedule: LMSchedule, steps: int, seed: int) -> list[torch.Tensor]:
    """G_learn's ``steps`` training batches: fresh windows every step (not the run's data order)."""
    generator = torch.Generator().manual_seed(seed + 10_000)
    return [corpus.batch(schedule.batch_size, schedule.seq_len, generator) for _ in range(steps)]


def run_job(job: Job, preset: GrowthPreset, out: Path) -> dict:
    """Train one job (or read its cached record)."""
    path = out / "runs" / f"{job.name}.json"
    if path.exists():
        return json.loads(path.read_text())
    corpus, schedule = ByteCorpus(), preset.schedule
    steps = job.steps or preset.steps
    torch.manual_seed(job.seed)
    if job.operator is None:
        model = LlamaForCausalLM(large_config(preset))
        curve = train_lm(model, corpus, steps, schedule, job.seed, desc=job.name)
        record = {"job": asdict(job), "curve": curve}
    else:
        small = LlamaForCausalLM(small_config(preset, job.direction, job.factor))
        small_curve = train_lm(small, corpus, job.small_steps, schedule, job.seed, desc=f"{job.name} small")
        tokens, flops = small_curve[-1]["tokens"], small_curve[-1]["flops"]
        learn_batches = operator_batches(corpus, schedule, preset.learn_steps, job.seed) \
            if job.operator == "learn" else None
        grown = grow(small, job.operator, job.direction, job.factor, ramp_steps=preset.ramp_steps, seed=job.seed,
                     split_noise=job.split_noise,
                     learn_batches=learn_batches, learn_steps=preset.learn_steps)
        if job.operator == "learn":
            learn_tokens = preset.learn_steps * schedule.batch_size * schedule.seq_len
            flops += learn_tokens * training_flops_per_token(grown.model.config, schedule.seq_len)
            tokens += learn_tokens
        curve = train_lm(grown.model, corpus, steps, schedule, job.seed + 1, ramp=grown.ramp,
                         tokens=tokens, flops=flops, desc=job.name)
        record = {"job": asdict(job), "small_curve": small_curve, "curve": curve}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return record


def run_all(out: Path, preset: GrowthPreset, workers: int) -> dict[str, dict]:
    """Run every job (``workers`` processes), returning ``{job name: record}``."""
    listed = jobs(preset)
    records = map_in_processes(run_job, [(job, preset, out) for job in listed], workers, "growth runs")
    return {job.name: record for job, record in zip(listed, records, strict=True)}


def reach_point(curve: list[dict], target: float, key: str) -> float | None:
    """``key`` (tokens or flops) where the loss curve first reaches ``target`` (linear interpolation)."""
    for before, after in pairwise(curve):
        if after["val_loss"] <= target:
            if before["val_loss"] <= target:
                return before[key]
            share = (before["val_loss"] - target) / (before["val_loss"] - after["val_loss"])
            return before[key] + share * (after[key] - before[key])
    return None


def speedup(grown: dict, scratch: dict) -> dict:
    """Saved share and speed-up ratio in tokens and FLOPs to reach the scratch run's final loss.

    ``saved_tokens_after_growth`` leaves the small model's (and G_learn's) tokens out.
    """
    target = scratch["curve"][-1]["val_loss"]
    result = {"target_loss": target, "final_loss": grown["curve"][-1]["val_loss"]}
    for key in ("tokens", "flops"):
        budget = scratch["curve"][-1][key]
        reached = reach_point(grown["curve"], target, key)
        result[f"{key}_to_target"] = reached
        result[f"saved_{key}"] = None if reached is None else 1 - reached / budget
        result[f"speedup_{key}"] = None if reached is None else budget / reached - 1
    before_growth = grown["curve"][0]["tokens"]
    reached = result["tokens_to_target"]
    budget = scratch["curve"][-1]["tokens"]
    result["saved_tokens_after_growth"] = None if reached is None else 1 - (reached - before_growth) / budget
    return result


def analyse(records: dict[str, dict], preset: GrowthPreset) -> dict:
    """Per-job speed-ups against the same seed's scratch run, and the main-table aggregates."""
    per_job = {}
    for name, record in records.items():
        job = Job(**record["job"])
        if job.operator is not None:
            scratch = records[Job(job.seed, steps=job.steps).name]
            per_job[name] = {"job": record["job"], **speedup(record, scratch)}
    large_params = sum(p.numel() for p in LlamaForCausalLM(large_config(preset)).parameters())
    scratch = records[Job(preset.seeds[0]).name]["curve"][-1]
    return {"per_job": per_job, "large_params": large_params,
            "law_growth_tokens": recommended_growth_tokens(large_params, scratch["flops"]),
            "scratch_tokens": scratch["tokens"], "scratch_flops": scratch["flops"]}


SHARES = ("saved_tokens", "saved_tokens_after_growth", "saved_flops", "speedup_tokens")  # main-table columns


def _fmt_share(values: list[float | None]) -> str:
    reached = [v for v in values if v is not None]
    if not reached:
        return "not reached"
    text = f"{100 * statistics.mean(reached):.1f}%"
    if len(reached) > 1:
        text += f" ± {100 * statistics.stdev(reached):.1f}"
    missing = len(values) - len(reached)
    return text + (f" ({missing} of {len(values)} seeds not reached)" if missing else "")


def main_rows(analysis: dict, preset: GrowthPreset, direction: str, operator: str,
              split_noise: float = 0.0) -> list[dict]:
    """The speed-up records of one operator and direction, one per seed."""
    factor = preset.depth_factor if direction == "depth" else preset.width_factor
    return [analysis["per_job"][Job(s, operator, direction, factor, preset.small_steps, split_noise).name]
            for s in preset.seeds]


def main_table(analysis: dict, preset: GrowthPreset) -> list[str]:
    factors = {"depth": preset.depth_factor, "width": preset.width_factor}
    cells = []
    for direction in preset.directions:
        for op, noise in variants(preset, direction):
            seeds = main_rows(analysis, preset, direction, op, noise)
            cells.append([f"{direction} ×{factors[direction]}", variant_label(op, noise),
                          *(_fmt_share([r[key] for r in seeds]) for key in SHARES),
                          *seed_cells(seeds, ("final_loss", "target_loss"))])
    return table(["direction", "operator", "tokens saved", "tokens saved, small model not counted", "FLOPs saved",
                  "speed-up (tokens, paper's definition)", "final loss (grown)", "final loss (scratch)"], cells)


def sweep_table(analysis: dict, preset: GrowthPreset) -> list[str]:
    seed = preset.seeds[0]
    points = sorted({(preset.depth_factor, d) for d in (*preset.sweep_small_steps, preset.small_steps)}
                    | {(g, preset.small_steps) for g in preset.sweep_factors})
    tokens_per_step = preset.schedule.batch_size * preset.schedule.seq_len
    rows = [(g, d, analysis["per_job"][Job(seed, "direct", "depth", g, d).name]) for g, d in points]
    return table(["g", "small-model steps d (tokens)", "tokens saved", "FLOPs saved", "final loss"],
                 ([g, f"{d} ({d * tokens_per_step / 1e3:.0f}k)", _fmt_share([row["saved_tokens"]]),
                   _fmt_share([row["saved_flops"]]), f"{row['final_loss']:.3f}"] for g, d, row in rows))


def budget_table(analysis: dict, preset: GrowthPreset) -> list[str]:
    """G_stack depth against scratch at the main and the long budget (first seed)."""
    seed = preset.seeds[0]
    tokens_per_step = preset.schedule.batch_size * preset.schedule.seq_len
    rows = [(steps or preset.steps, analysis["per_job"][Job(seed, "direct", "depth", preset.depth_factor,
                                                             preset.small_steps, steps=steps).name])
            for steps in (0, preset.long_steps)]
    return table(["large-model steps (tokens)", "tokens saved", "tokens saved, small model not counted", "FLOPs saved",
                  "final loss grown / scratch"],
                 ([f"{budget} ({budget * tokens_per_step / 1e6:.2f}M)",
                   *(_fmt_share([row[key]]) for key in ("saved_tokens", "saved_tokens_after_growth", "saved_flops")),
                   f"{row['final_loss']:.3f} / {row['target_loss']:.3f}"] for budget, row in rows))


def plot_curves(records: dict[str, dict], preset: GrowthPreset, path: Path) -> None:
    """Held-out loss vs tokens (top) and vs FLOPs (bottom), one column per direction, first seed."""
    factors = {"depth": preset.depth_factor, "width": preset.width_factor}
    seed = preset.seeds[0]
    figure = agg_figure((5.5 * len(preset.directions), 7))
    axes = figure.subplots(2, len(preset.directions), squeeze=False)
    for column, direction in enumerate(preset.directions):
        for row, key in enumerate(("tokens", "flops")):
            axis = axes[row][column]
            scratch = records[Job(seed).name]["curve"]
            axis.plot([p[key] for p in scratch], [p["val_loss"] for p in scratch], "k-", label="scratch")
            for op, noise in variants(preset, direction):
                record = records[Job(seed, op, direction, factors[direction], preset.small_steps, noise).name]
                curve = record["small_curve"] + record["curve"]
                axis.plot([p[key] for p in curve], [p["val_loss"] for p in curve], label=variant_label(op, noise),
                          linestyle="--" if noise else "-")
            axis.axhline(scratch[-1]["val_loss"], color="grey", linestyle=":", linewidth=1)
            axis.set_ylim(top=min(3.5, axis.get_ylim()[1]))
            axis.set_xlabel(key + (" (training, 6N+attention)" if key == "flops" else ""))
            axis.set_ylabel("held-out loss (nats/byte)")
            axis.set_title(f"{direction} ×{factors[direction]}, seed {seed}")
            axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path)


def plot_long_budget(records: dict[str, dict], preset: GrowthPreset, path: Path) -> None:
    """Held-out loss vs tokens of scratch and G_stack at the long budget (first seed)."""
    seed = preset.seeds[0]
    figure = agg_figure((6, 4))
    axis = figure.subplots()
    scratch = records[Job(seed, steps=preset.long_steps).name]["curve"]
    stacked = records[Job(seed, "direct", "depth", preset.depth_factor, preset.small_steps,
                          steps=preset.long_steps).name]
    axis.plot([p["tokens"] for p in scratch], [p["val_loss"] for p in scratch], "k-", label="scratch")
    curve = stacked["small_curve"] + stacked["curve"]
    axis.plot([p["tokens"] for p in curve], [p["val_loss"] for p in curve], label=OPERATOR_LABELS["direct"])
    axis.axhline(scratch[-1]["val_loss"], color="grey", linestyle=":", linewidth=1)
    axis.set_ylim(top=min(3.0, axis.get_ylim()[1]))
    axis.set_xlabel("tokens")
    axis.set_ylabel("held-out loss (nats/byte)")
    axis.set_title(f"depth ×{preset.depth_factor}, {preset.long_steps} large-model steps, seed {seed}")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)


def report(analysis: dict, preset: GrowthPreset) -> str:
    lines = [f"Corpus: {corpus_name()}. Large model: LLaMA, {preset.layers} layers × {preset.hidden} wide "
             f"({analysis['large_params'] / 1e3:.0f}k parameters), {preset.steps} steps of "
             f"{preset.schedule.batch_size}×{preset.schedule.seq_len} tokens "
             f"({analysis['scratch_tokens'] / 1e6:.2f}M tokens). Small models train {preset.small_steps} steps "
             f"first; their tokens and FLOPs are counted. Seeds: {list(preset.seeds)}.", "",
             "## Speed-up to the scratch model's final loss", "", *main_table(analysis, preset), "",
             "Tokens/FLOPs saved = 1 − (spent by the grown run when it first reaches the scratch run's final "
             "held-out loss) / (the scratch run's budget). Speed-up = budget / spent − 1 (the paper's 54.6%). "
             "Mean ± std over seeds.", "", PAPER, ""]
    if preset.sweep_small_steps or preset.sweep_factors:
        lines += [f"## Growth timing d and factor g (G_stack depth, seed {preset.seeds[0]})", "",
                  *sweep_table(analysis, preset), ""]
    if preset.long_steps:
        lines += [f"## A longer budget (G_stack depth, seed {preset.seeds[0]})", "", *budget_table(analysis, preset), ""]
    lines += [f"The paper's timing law gives d = {analysis['law_growth_tokens']:.3g} tokens for this model and "
              f"budget (N = {analysis['large_params']:.3g}, C = {analysis['scratch_flops']:.3g} FLOPs) — far outside "
              "the 410M–7B range it was fitted on, so it is not used here.", ""]
    return "\n".join(lines)


def run(out: Path, preset: GrowthPreset, workers: int = 2) -> dict:
    """Run the testbed into ``out``: ``runs/``, results.json, report.md, curves.png."""
    out.mkdir(parents=True, exist_ok=True)
    records = run_all(out, preset, workers)
    analysis = analyse(records, preset)
    results = {"preset": asdict(preset), "corpus": corpus_name(), **analysis}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    plot_curves(records, preset, out / "curves.png")
    if preset.long_steps:
        plot_long_budget(records, preset, out / "curves_long.png")
    (out / "report.md").write_text(report(analysis, preset))
    return results
