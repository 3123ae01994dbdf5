"""The headline figures of the committed full runs, as the README and ``genlab demo`` quote them.

Each function takes a method's ``results.json`` (the dict its reproduction writes, committed as
``docs/results/<method>/results.json``) and returns its figures as formatted strings, named for
the text that quotes them; :func:`figures` loads and formats one method. Nothing here is a number
of its own: text that quotes a result formats it from these JSONs (``scripts/readme_figures.py``
checks the README, ``genlab demo`` fills its notes on the full runs).

Rounding: a claim of the form "N× fewer" rounds down (the smallest whole factor the run supports);
everything else rounds to the shown digits. Torch is not imported.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable
from pathlib import Path

from genlab.experiments.reporting import RESULTS_DIR, load_results

WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}


def count(value: int) -> str:
    """A count as the docs write it: ``3,000``."""
    return f"{value:,}"


def word(value: int) -> str:
    """``3`` -> ``three`` (up to five), else the digits."""
    return WORDS.get(value, str(value))


def times_fewer(value: float) -> str:
    """A "N× fewer/less" factor, rounded down."""
    return str(math.floor(value))


def of_paired(wins: int, total: int) -> str:
    """``all 10`` or ``7 of 10``."""
    return f"all {total}" if wins == total else f"{wins} of {total}"


def core(results: dict) -> dict[str, str]:
    """The demo's digits model, trained and untrained: FD and class accuracy (three significant digits)."""
    return {f"{model}_{metric}": f"{results[model][metric]:.3g}"
            for model in ("trained", "untrained") for metric in ("fd", "accuracy")}


def guidance(results: dict) -> dict[str, str]:
    """ICG/TSG: the number of seeds of the full run."""
    return {"seeds": word(len(results["config"]["seeds"]))}


def camera(results: dict) -> dict[str, str]:
    """VD3D: rotation errors (°) of the estimator on true and still clips and of each model, overall and on tilt."""
    evaluation, preset = results["evaluation"], results["preset"]

    def rotation(name: str, trajectory: str | None = None) -> float:
        row = evaluation[name] if trajectory is None else evaluation[name]["per_trajectory"][trajectory]
        return row["rotation_deg"]

    return {"clips": count(preset["clips"]), "resolution": str(preset["resolution"]),
            "base_steps": count(preset["base_steps"]),
            "truth_rotation": f"{rotation('ground truth'):.2f}",
            "still_rotation": f"{rotation('no camera motion'):.1f}",
            "base_rotation": f"{rotation('base (no camera)'):.1f}",
            "controlnet_rotation": f"{rotation('ControlNet (VD3D)'):.1f}",
            "concat_rotation": f"{rotation('concat + full fine-tune'):.1f}",
            "base_tilt": f"{rotation('base (no camera)', 'tilt'):.1f}",
            "controlnet_tilt": f"{rotation('ControlNet (VD3D)', 'tilt'):.1f}"}


ENHANCER, TRILINEAR = "ControlNet (VEnhancer)", "trilinear"


def enhance(results: dict) -> dict[str, str]:
    """VEnhancer: FD at s = 4 (the first s = 4 setting), the PSNR it loses to trilinear over all settings, seams."""
    preset, settings = results["preset"], results["settings"]
    s4 = next(s["methods"] for s in settings if s["space"] == 4)
    gaps = [s["methods"][TRILINEAR]["psnr"] - s["methods"][ENHANCER]["psnr"] for s in settings]
    long_video = list(results["long_video"]["rows"].values())  # blended, then hard chunk borders
    return {"clips": count(preset["clips"]), "resolution": str(preset["resolution"]),
            "base_steps": count(preset["base_steps"]), "enhance_steps": count(preset["enhance_steps"]),
            "s4_fd_enhancer": f"{s4[ENHANCER]['fd']:.0f}", "s4_fd_trilinear": f"{s4[TRILINEAR]['fd']:.0f}",
            "psnr_loss_min": f"{min(gaps):.1f}", "psnr_loss_max": f"{max(gaps):.1f}",
            "blended_ratio": f"{long_video[0]['border_ratio']:.2f}",
            "hard_ratio": f"{long_video[1]['border_ratio']:.2f}"}


def worldmodel(results: dict) -> dict[str, str]:
    """iVideoGPT: what the actions add to prediction, rollout speed, and the planners' solved episodes."""
    preset, prediction, control = results["preset"], results["prediction"], results["control"]
    actions, action_free = prediction["compressive"], prediction["compressive, action-free"]

    def solved(policy: str) -> str:
        episodes = len(control[policy]["returns"])
        return f"{round(control[policy]['success_rate'] * episodes)}/{episodes}"

    def wins(policy: str) -> str:
        pairs = list(zip(control[policy]["returns"], control["random"]["returns"], strict=True))
        return of_paired(sum(mine > random for mine, random in pairs), len(pairs))

    return {"frame_size": str(preset["frame_size"]), "episodes": count(preset["train_episodes"]),
            "transformer_steps": count(preset["transformer_steps"]), "horizon": str(preset["horizon"]),
            "action_gain_db": f"{actions['psnr'] - action_free['psnr']:.1f}",
            "agent_closer_pct": f"{100 * (1 - actions['agent_error'] / action_free['agent_error']):.0f}",
            "rollout_speedup": f"{actions['frames_per_second'] / prediction['per-frame']['frames_per_second']:.1f}",
            "random_solved": solved("random"), "simulator_solved": solved("simulator MPC"),
            "frames_solved": solved("world model MPC, imagined frames"),
            "reward_head_solved": solved("world model MPC, reward head"),
            "frames_wins": wins("world model MPC, imagined frames"),
            "reward_head_wins": wins("world model MPC, reward head")}


def align(results: dict, memory: dict | None = None) -> dict[str, str]:
    """VADER: VADER K=1's query and wall-time ratios to DDPO where DDPO improved, held-out labels, FD drift;
    with ``memory`` (``align/align_memory_gpu.json``) the memory of one step with each saver added."""
    efficiency, samples = results["efficiency"], results["samples"]
    improved = [arm for arm, eff in efficiency.items() if eff["ddpo_gain"]["mean"] > 0]
    ratios = [math.floor(efficiency[arm]["vader-k1"]["ratio"]["mean"]) for arm in improved]
    time_ratios = [math.floor(efficiency[arm]["vader-k1"]["time_ratio"]["mean"]) for arm in improved]
    rises = {arm: max(scores["fd"]["mean"] for scores in by_method.values()) / by_method["base"]["fd"]["mean"]
             for arm, by_method in samples.items()}
    others = sorted({round(rise) for arm, rise in rises.items() if arm != "digits-class3"})
    brightness = samples["digits-brightness"]["vader-k1"]
    labels = results["arms"]["digits-brightness"]
    found = {"arms": str(len(results["arms"])), "seeds": str(results["preset"]["seeds"]),
             "methods": str(len({method for by_method in samples.values() for method in by_method} - {"base"})),
             "train_labels": f"{labels['labels'][0]}–{labels['labels'][-1]}",
             "held_out_labels": f"{labels['held_out'][0]}–{labels['held_out'][-1]}",
             "ratio_min": str(min(ratios)), "ratio_max": str(max(ratios)),
             "class3_ratio": times_fewer(efficiency["digits-class3"]["vader-k1"]["ratio"]["mean"]),
             "brightness_ratio": times_fewer(efficiency["digits-brightness"]["vader-k1"]["ratio"]["mean"]),
             "time_ratio_min": str(min(time_ratios)), "time_ratio_max": str(max(time_ratios)),
             "held_out_reward": f"{brightness['held_out_reward']['mean']:.2f}",
             "train_reward": f"{brightness['reward']['mean']:.2f}",
             "class3_fd_rise": f"{rises['digits-class3']:.0f}", "max_fd_rise": f"{max(rises.values()):.0f}",
             "other_fd_rise": "–".join(map(str, (others[0], others[-1]) if len(others) > 1 else others))}
    if memory is not None:
        rows = {row["setting"]: row["above_base_gib"] for row in memory["rows"]}
        found.update({f"memory_{key}": f"{rows[setting]:.2g}" for key, setting in (
            ("full", "full backprop"), ("truncated", "+ truncation (K=1)"), ("checkpointed", "+ checkpointing"),
            ("bf16", "+ bf16"))})
    return found


def growth(results: dict) -> dict[str, str]:
    """G_stack depth: tokens and FLOPs saved at the main budget (mean over seeds) and at the long one (seed 0)."""
    preset, per_job = results["preset"], results["per_job"]
    stem = f"direct-depth-g{preset['depth_factor']}-d{preset['small_steps']}"
    main = [per_job[f"{stem}-s{seed}"] for seed in preset["seeds"]]
    long_run = per_job[f"{stem}-T{preset['long_steps']}-s{preset['seeds'][0]}"]
    tokens_per_step = preset["schedule"]["batch_size"] * preset["schedule"]["seq_len"]
    return {"layers": str(preset["layers"]), "seeds": word(len(preset["seeds"])),
            "saved_tokens_pct": f"{100 * statistics.mean(r['saved_tokens'] for r in main):.0f}",
            "saved_flops_pct": f"{100 * statistics.mean(r['saved_flops'] for r in main):.0f}",
            "tokens_m": f"{results['scratch_tokens'] / 1e6:.1f}",
            "long_saved_tokens_pct": f"{100 * long_run['saved_tokens']:.0f}",
            "long_tokens_m": f"{preset['long_steps'] * tokens_per_step / 1e6:.1f}"}


def disco(results: dict) -> dict[str, str]:
    """DisCo-Diff on images: how far its FD (prior latents) is below EDM's, at the NFE where EDM's is lowest."""
    seeds = results["images"]["seeds"].values()

    def mean_fd(row: str, nfe: str) -> float:
        return statistics.mean(record["fd_table"][row][nfe]["fd"] for record in seeds)

    nfe = min(next(iter(seeds))["fd_table"]["EDM"], key=lambda n: mean_fd("EDM", n))
    below = 1 - mean_fd("DisCo-Diff (prior latents)", nfe) / mean_fd("EDM", nfe)
    return {"seeds": word(len(seeds)), "nfe": nfe, "fd_below_edm_pct": f"{100 * below:.0f}"}


FIGURES: dict[str, Callable[[dict], dict[str, str]]] = {
    "core": core, "guidance": guidance, "camera": camera, "enhance": enhance, "worldmodel": worldmodel, "align": align, "growth": growth, "disco": disco}


def figures(method: str, results_dir: Path | None = None) -> dict[str, str] | None:
    """The figures of ``method``'s committed full run, or None where its results.json is not on disk."""
    results = load_results(method, results_dir)
    if results is None:
        return None
    if method == "align":
        memory = (results_dir or RESULTS_DIR) / "align" / "align_memory_gpu.json"
        return align(results, json.loads(memory.read_text()) if memory.is_file() else None)
    return FIGURES[method](results)
