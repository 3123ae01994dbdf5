"""``genlab reproduce align``: VADER's reward-gradient alignment against DDPO at small scale.

Steps (each cached in ``out``, so a stopped run resumes):

1. Base models, side by side: an unconditional and a class-conditional digits model, and an
   unconditional video DiT on moving sprites.
2. Four *arms* (a base model and a reward), each aligned by VADER with K = 1, VADER with a larger K
   and DDPO, over several seeds, all with LoRA on the same sampler:
   ``digits-class3`` (p(class 3) under genlab's digit classifier), ``digits-brightness`` (trained on
   labels 0-4, checked on the held-out labels 5-9), ``video-motion-left`` and ``video-temporal``.
3. Every aligned model (and its base) samples the same noise: the reward, the diversity kept (mean
   variance of classifier features) and the drift from the data (FD to real samples).
4. Sample efficiency from the training logs: the reward queries VADER needs to reach DDPO's final
   reward, as a ratio of DDPO's queries (per seed). ``results.json``, ``report.md``, reward curves
   against queries and wall time, before/after grids and GIFs.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from genlab.align.config import AlignConfig
from genlab.align.rewards import build_reward
from genlab.align.rewards.small import ClassProbabilityReward, global_flow
from genlab.align.sampling import sample_for_reward
from genlab.align.targets import AlignTarget, GenlabImageTarget, GenlabVideoTarget
from genlab.align.trainer import AlignmentRun, score_samples
from genlab.base.image_model import ImageModelConfig, load_image_model, train_image_model
from genlab.base.video_model import VideoModelConfig, load_video_model, train_video_model, video_clips
from genlab.core.checkpoint import latest_checkpoint
from genlab.core.images import save_image_grid, save_video, video_grid
from genlab.core.runlog import agg_figure, read_log
from genlab.errors import GenlabError
from genlab.experiments.parallel import map_in_processes
from genlab.experiments.reporting import FrameFeatures, stat, stat_text, table, timed_record
from genlab.metrics import evaluate_samples, frechet_distance, load_feature_net
from genlab.metrics.evaluate import to_feature_resolution

PAPER = ("Prabhudesai et al. 2024 (VADER): back-propagating a differentiable reward through the last K = 1 "
         "sampler steps into LoRA weights aligns image and video diffusion models with far fewer reward "
         "queries than DDPO and DPO, keeps working on held-out prompts, and fits in memory thanks to "
         "truncation, gradient checkpointing and frame subsampling.")
TRAIN_LABELS, HELD_OUT_LABELS = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)
EVAL_SEED = 12345
SMOOTHING = 5  # updates in the moving average that compares reward curves


@dataclass(frozen=True)
class Arm:
    """A base model and a reward: ``base`` is ``digits-uncond``, ``digits-cond`` or ``video``."""

    name: str
    base: str
    reward: str
    labels: tuple[int, ...] = ()
    held_out: tuple[int, ...] = ()


ARMS = (
    Arm("digits-class3", "digits-uncond", "class3"),
    Arm("digits-brightness", "digits-cond", "brightness", TRAIN_LABELS, HELD_OUT_LABELS),
    Arm("video-flow-left", "video", "flow-left"),
    Arm("video-temporal", "video", "temporal"),
)


@dataclass(frozen=True)
class AlignPreset:
    name: str
    image_steps: int
    video_clips: int
    video_steps: int
    video_resolution: int
    seeds: int
    batch_size: int
    sampling_steps: int
    large_k: int
    vader_updates: int
    ddpo_updates: int
    lr: float
    video_lr: float
    ddpo_lr: float
    eval_samples: int
    arms: tuple[str, ...]


PRESETS = {
    "full": AlignPreset("full", image_steps=2000, video_clips=2000, video_steps=1500, video_resolution=16, seeds=3,
                        batch_size=8, sampling_steps=10, large_k=10, vader_updates=60, ddpo_updates=300,
                        lr=5e-3, video_lr=3e-3, ddpo_lr=1e-2, eval_samples=64, arms=tuple(a.name for a in ARMS)),
    "quick": AlignPreset("quick", image_steps=300, video_clips=200, video_steps=150, video_resolution=16, seeds=1,
                         batch_size=4, sampling_steps=6, large_k=6, vader_updates=8, ddpo_updates=16,
                         lr=5e-3, video_lr=3e-3, ddpo_lr=1e-2, eval_samples=16,
                         arms=("digits-class3", "video-flow-left")),
}
METHODS = ("vader-k1", "vader-klarge", "ddpo")


def _arm(name: str) -> Arm:
    return next(a for a in ARMS if a.name == name)


# -- base models ------------------------------------------------------------------------------------
def train_base(out: Path, preset: AlignPreset, base: str) -> dict:
    """Train one base model (cached): ``digits-uncond``, ``digits-cond`` or ``video``; an unfinished one starts
    afresh (``overwrite``)."""
    folder = out / "base" / base
    if base == "video":
        config = VideoModelConfig(data="sprites", clips=preset.video_clips, frames=8, resolution=preset.video_resolution,
                                  first_frame=False, steps=preset.video_steps, batch_size=16,
                                  checkpoint_every=preset.video_steps, run_dir=str(folder), progress=False,
                                  overwrite=True)
        train = train_video_model
    else:
        config = ImageModelConfig(data="digits", conditional=base == "digits-cond", steps=preset.image_steps,
                                  batch_size=64, checkpoint_every=preset.image_steps, run_dir=str(folder),
                                  progress=False, overwrite=True)
        train = train_image_model
    return timed_record(folder, lambda: {"steps": train(config).steps})


def load_base(out: Path, base: str) -> AlignTarget:
    folder = out / "base" / base
    if base == "video":
        return GenlabVideoTarget(load_video_model(folder))
    return GenlabImageTarget(*load_image_model(folder))


def arm_reward(arm: Arm):
    if arm.reward == "class3":
        return ClassProbabilityReward("digits", target=3).freeze()
    return build_reward(arm.reward)


# -- alignment runs ---------------------------------------------------------------------------------
def method_config(preset: AlignPreset, arm: Arm, method: str, seed: int, run_dir: Path) -> AlignConfig:
    ddpo = method == "ddpo"
    return AlignConfig(
        method="ddpo" if ddpo else "vader", steps=preset.ddpo_updates if ddpo else preset.vader_updates,
        batch_size=preset.batch_size, sampling_steps=preset.sampling_steps,
        lr=preset.ddpo_lr if ddpo else preset.video_lr if arm.base == "video" else preset.lr,
        k=preset.large_k if method == "vader-klarge" else 1, lora_rank=8, ddpo_clip=0.2,
        labels=",".join(map(str, arm.labels)), score_frames="all", seed=seed, run_dir=str(run_dir),
        checkpoint_every=10**6, progress=False,
        # an interrupted run (Ctrl-C saves a checkpoint) continues; a run that left no checkpoint starts afresh
        resume=latest_checkpoint(run_dir / "checkpoints") is not None,
        overwrite=latest_checkpoint(run_dir / "checkpoints") is None,
    )


def align_job(out: Path, preset: AlignPreset, arm_name: str, method: str, seed: int) -> dict:
    """Align one (arm, method, seed), then evaluate the aligned model (cached)."""
    arm = _arm(arm_name)
    run_dir = out / "runs" / arm.name / f"{method}-s{seed}"

    def compute() -> dict:
        target, reward = load_base(out, arm.base), arm_reward(arm)
        AlignmentRun(target, reward, method_config(preset, arm, method, seed, run_dir)).fit()
        return {"log": read_log(run_dir / "log.jsonl"), "eval": evaluate_target(out, preset, arm, target, reward, run_dir)}

    return {"arm": arm.name, "method": method, "seed": seed, **timed_record(run_dir, compute)}


def base_job(out: Path, preset: AlignPreset, arm_name: str) -> dict:
    """The base model's evaluation for one arm (the 'before' row)."""
    arm = _arm(arm_name)
    folder = out / "eval-base" / arm.name

    def compute() -> dict:
        target = load_base(out, arm.base)
        return {"eval": evaluate_target(out, preset, arm, target, arm_reward(arm), folder)}

    return {"arm": arm.name, "method": "base", "seed": 0, **timed_record(folder, compute)}


# -- evaluation -------------------------------------------------------------------------------------
@torch.no_grad()
def eval_samples(target: AlignTarget, preset: AlignPreset, labels: torch.Tensor | None) -> torch.Tensor:
    """Samples from fixed noise (seed ``EVAL_SEED``) with the training sampler: ``[N, ...]`` in [-1, 1]."""
    generator = torch.Generator().manual_seed(EVAL_SEED)
    noise = torch.randn(target.state_shape(preset.eval_samples), generator=generator)
    cond = target.encode_condition(None, labels) if labels is not None else {}
    x0, _ = sample_for_reward(lambda x, s: target.denoise(x, s, cond), noise, target.sigmas(preset.sampling_steps),
                              1.0, 0, generator)
    return target.decode(x0)


def _feature_spread(features: torch.Tensor) -> float:
    """Diversity: the mean per-dimension variance of features ``[N, D]``."""
    return float(features.var(0).mean())


def evaluate_target(out: Path, preset: AlignPreset, arm: Arm, target: AlignTarget, reward, folder: Path) -> dict:
    """Reward, diversity and FD to the data of fixed-noise samples; a grid (PNG) or clips (GIF) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    if target.modality == "video":
        videos = eval_samples(target, preset, None)
        features = FrameFeatures()
        real = video_clips("sprites", preset.eval_samples * 2, 8, preset.video_resolution, seed=1, progress=False)
        result = {"reward": float(score_samples(reward, videos, None, None).mean()),
                  "diversity": _feature_spread(features(videos)),
                  "fd": frechet_distance(features(real.video_tensor()), features(videos)),
                  "flow_x": float(global_flow(videos)[:, 0].mean()),
                  "p_left": float(build_reward("motion-left")(videos).mean())}
        save_video(video_grid(videos[:16], columns=8, scale=2), folder / "samples.gif", fps=4)
        return result
    net = load_feature_net("digits")
    result = {}
    groups = {"train": arm.labels, "held_out": arm.held_out} if arm.labels else {"all": ()}
    for group, labels in groups.items():
        label_tensor = torch.tensor(labels).repeat(preset.eval_samples // len(labels) + 1)[: preset.eval_samples] \
            if labels else None
        images = eval_samples(target, preset, label_tensor)
        scores = score_samples(reward, images, None, label_tensor if reward.needs == "labels" else None)
        features = net.features(to_feature_resolution(images, net.config.resolution))
        result[group] = {"reward": float(scores.mean()), "diversity": _feature_spread(features),
                         "fd": evaluate_samples(images, None, "digits")["fd"]}
        save_image_grid(images[:32], folder / f"samples_{group}.png", columns=8)
    return result


def headline(record: dict) -> dict:
    """The reward/diversity/FD row of an evaluation (the training labels' for conditional arms)."""
    evaluation = record["eval"]
    return evaluation.get("train", evaluation.get("all", evaluation))


# -- sample efficiency --------------------------------------------------------------------------------
def smoothed(values: list[float], window: int = SMOOTHING) -> list[float]:
    """Trailing moving average (shorter at the start)."""
    return [statistics.mean(values[max(0, i - window + 1): i + 1]) for i in range(len(values))]


def queries_to_reach(log: list[dict], level: float) -> int | None:
    """Reward queries at the first update whose smoothed reward reaches ``level``, counting only updates
    with a full smoothing window (so one lucky batch does not count); None if never."""
    values = smoothed([r["reward"] for r in log])
    for record, value in list(zip(log, values, strict=True))[SMOOTHING - 1:]:
        if value >= level:
            return record["queries"]
    return None


def efficiency_rows(records: list[dict], arm: str, seeds: int) -> list[dict]:
    """Per seed: DDPO's final (smoothed) reward and the queries each VADER variant needed to reach it."""
    rows = []
    for seed in range(seeds):
        by_method = {r["method"]: r for r in records if r["arm"] == arm and r["seed"] == seed}
        ddpo_log = by_method["ddpo"]["log"]
        ddpo_curve = smoothed([r["reward"] for r in ddpo_log])
        ddpo_final = ddpo_curve[-1]
        row = {"seed": seed, "ddpo_final": ddpo_final, "ddpo_gain": ddpo_final - ddpo_curve[min(SMOOTHING, len(ddpo_curve)) - 1],
               "ddpo_queries": ddpo_log[-1]["queries"],
               "ddpo_seconds": ddpo_log[-1]["seconds"]}
        for method in ("vader-k1", "vader-klarge"):
            log = by_method[method]["log"]
            reached = queries_to_reach(log, ddpo_final)
            row[method] = {"queries": reached, "final": smoothed([r["reward"] for r in log])[-1],
                           "ratio": row["ddpo_queries"] / reached if reached else None,
                           "seconds": next((r["seconds"] for r in log if r["queries"] == reached), None)}
            row[method]["time_ratio"] = row["ddpo_seconds"] / row[method]["seconds"] if reached else None
        rows.append(row)
    return rows


def efficiency(rows: list[dict]) -> dict:
    """The per-seed rows of :func:`efficiency_rows` over seeds, as ``results.json`` holds them: DDPO's final
    reward, gain and queries, and per VADER variant the seeds that reached DDPO's final reward and the query
    and wall-time ratios over those seeds (None where none did)."""
    summary = {"seeds": len(rows), "ddpo_queries": rows[0]["ddpo_queries"],
               "ddpo_final": stat([r["ddpo_final"] for r in rows]), "ddpo_gain": stat([r["ddpo_gain"] for r in rows])}
    for method in ("vader-k1", "vader-klarge"):
        reached = [r[method] for r in rows if r[method]["ratio"] is not None]
        summary[method] = {"reached": len(reached),
                           **{key: stat([r[key] for r in reached]) if reached else None
                              for key in ("ratio", "time_ratio")}}
    return summary


def samples(records: list[dict], arm: str) -> dict:
    """Per method (the base first): reward, diversity and FD of the fixed-noise samples over seeds; for video
    arms the optical flow along x and p(left), for arms with held-out labels the held-out labels' reward."""
    summary = {}
    for method in ("base", *METHODS):
        chosen = [r["eval"] for r in records if r["arm"] == arm and r["method"] == method]
        if not chosen:
            continue
        rows = [headline({"eval": e}) for e in chosen]
        keys = [k for k in ("reward", "diversity", "fd", "flow_x", "p_left") if k in rows[0]]
        summary[method] = {key: stat([r[key] for r in rows]) for key in keys}
        if "held_out" in chosen[0]:
            summary[method]["held_out_reward"] = stat([e["held_out"]["reward"] for e in chosen])
    return summary


# -- the whole reproduction -------------------------------------------------------------------------
def run(out: Path, preset: AlignPreset, workers: int = 2) -> dict:
    """The whole reproduction. Writes ``results.json`` (the summary over seeds that :func:`report` renders and
    docs/results/align/results.json holds), ``records.json`` (every run's log and evaluation), ``report.md`` and
    ``curves.png``; returns the summary with the raw records under ``runs`` and ``base``."""
    if workers < 1:
        raise GenlabError(f"--num-workers must be >= 1, got {workers}")
    out.mkdir(parents=True, exist_ok=True)
    arms = [_arm(name) for name in preset.arms]
    bases = sorted({a.base for a in arms}, key=lambda b: b != "video")  # the slowest first
    training = dict(zip(bases, map_in_processes(train_base, [(out, preset, b) for b in bases], workers,
                                                desc="base models"), strict=True))
    jobs = [(out, preset, arm.name, method, seed) for arm in sorted(arms, key=lambda a: a.base != "video")
            for method in ("ddpo", "vader-klarge", "vader-k1") for seed in range(preset.seeds)]
    records = map_in_processes(align_job, jobs, workers, desc="alignment runs")
    base_records = map_in_processes(base_job, [(out, preset, arm.name) for arm in arms], workers, desc="base samples")
    results = {"preset": asdict(preset), "paper": PAPER, "training": training,
               "arms": {arm.name: asdict(arm) for arm in arms},
               "efficiency": {arm.name: efficiency(efficiency_rows(records, arm.name, preset.seeds)) for arm in arms},
               "samples": {arm.name: samples(base_records + records, arm.name) for arm in arms}}
    plot_curves(out, list(results["arms"]), records)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "records.json").write_text(json.dumps({"runs": records, "base": base_records}))
    (out / "report.md").write_text(report(results))
    return {**results, "runs": records, "base": base_records}


def plot_curves(out: Path, arms: list[str], records: list[dict]) -> None:
    """``curves.png``: smoothed reward against reward queries (top) and wall seconds (bottom), per arm."""
    figure = agg_figure((3.4 * len(arms), 5.6))
    axes = figure.subplots(2, len(arms), squeeze=False)
    colours = {"vader-k1": "tab:blue", "vader-klarge": "tab:green", "ddpo": "tab:red"}
    for column, arm in enumerate(arms):
        for record in (r for r in records if r["arm"] == arm):
            log = record["log"]
            label = record["method"] if record["seed"] == 0 else None
            for row, key in enumerate(("queries", "seconds")):
                axes[row][column].plot([r[key] for r in log], smoothed([r["reward"] for r in log]),
                                       color=colours[record["method"]], alpha=0.8, lw=1, label=label)
        axes[0][column].set_title(arm, fontsize=9)
        axes[0][column].set_xlabel("reward queries")
        axes[1][column].set_xlabel("wall seconds")
        axes[0][column].set_ylabel("reward (smoothed)")
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(out / "curves.png")


# -- report -----------------------------------------------------------------------------------------
def _ratio_text(summary: dict, key: str, seeds: int) -> str:
    """A VADER variant's ratio cell: mean ± std over the seeds that reached DDPO's final reward, and how many
    did ('never' if none; 'n/a' where the summary does not record it)."""
    if summary["reached"] is None:
        return "n/a"
    text = stat_text(summary[key]) + "×" if summary[key] is not None else "never"
    return text + (f" ({summary['reached']}/{seeds} seeds reached)" if summary["reached"] < seeds else "")


def _efficiency_lines(results: dict) -> list[str]:
    rows = [[arm, stat_text(eff["ddpo_final"]), stat_text(eff["ddpo_gain"]), eff["ddpo_queries"],
             *(_ratio_text(eff[method], key, eff["seeds"]) for key in ("ratio", "time_ratio")
               for method in ("vader-k1", "vader-klarge"))]
            for arm, eff in results["efficiency"].items()]
    return table(["arm", "DDPO final reward", "DDPO gain", "DDPO queries", "DDPO queries ÷ VADER K=1's",
                  "÷ VADER K=large's", "DDPO seconds ÷ VADER K=1's", "÷ VADER K=large's"], rows)


def _sample_rows(results: dict, arms: list[str], keys: tuple[str, ...], with_arm: bool = True) -> list[list[str]]:
    """Table rows of the sample summaries: (arm,) method, then each key's mean ± std ('–' where not recorded)."""
    return [[*([arm] if with_arm else []), method,
             *(stat_text(scores[key]) if key in scores else "–" for key in keys)]
            for arm in arms for method, scores in results["samples"][arm].items()]


def report(results: dict) -> str:
    """A Markdown report of the summary :func:`run` writes to ``results.json``."""
    preset, arms = results["preset"], results["arms"]
    lines = [f"# VADER vs DDPO, preset {preset['name']}", "", f"Paper: {results['paper']}", "",
             f"Sampler: {preset['sampling_steps']} ancestral steps (η = 1); LoRA rank 8 on attention; batch "
             f"{preset['batch_size']}; VADER {preset['vader_updates']} updates (lr {preset['lr']}), DDPO "
             f"{preset['ddpo_updates']} updates (lr {preset['ddpo_lr']}); {preset['seeds']} seed(s). "
             "One reward query = one sample scored.", "",
             "## Sample efficiency: queries VADER needs to reach DDPO's final reward", "",
             "A ratio is meaningful only where DDPO improved (its gain: final minus first smoothed reward); "
             "where it did not, VADER 'reaches' DDPO's level within the first smoothing window.", "",
             *_efficiency_lines(results),
             "", "## Aligned samples (fixed noise): reward, diversity kept, FD to the data", "",
             *table(["arm", "method", "reward", "diversity", "FD"],
                    _sample_rows(results, list(arms), ("reward", "diversity", "fd")))]
    video_arms = [arm for arm, spec in arms.items() if spec["base"] == "video"]
    if video_arms:
        lines += ["", "## Video: independent motion checks on the same samples", "",
                  "Global optical flow along x (px/frame, negative = leftward) and p(left) under the shipped motion "
                  "classifier (the `motion-left` reward).", "",
                  *table(["arm", "method", "flow x", "p(left)"], _sample_rows(results, video_arms, ("flow_x", "p_left")))]
    for arm in (arm for arm, spec in arms.items() if spec["held_out"]):
        lines += ["", f"## Held-out labels ({arm}: trained on {tuple(arms[arm]['labels'])})", "",
                  *table(["method", "reward, training labels", "reward, held-out labels"],
                         _sample_rows(results, [arm], ("reward", "held_out_reward"), with_arm=False))]
    lines += ["", "Curves: curves.png (reward against queries and wall seconds). Samples: eval-base/<arm>/ and "
              "runs/<arm>/<method>-s<seed>/ (PNG grids, GIFs)."]
    return "\n".join(lines) + "\n"
