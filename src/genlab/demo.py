"""``genlab demo``: each method's small demonstration, gathered into one HTML report.

A part is a function ``part(folder) -> ReportSection`` that does its work inside ``folder``
(a sub-folder of the demo's output named after the part) and returns its report section (it
imports what it needs, so that ``genlab demo --help`` reads :data:`PARTS` without torch);
figures are referenced by paths relative to the report. Each part should take ≤ 2 minutes
on 2 CPU cores so that the whole demo stays ≤ 15 minutes.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from genlab.core.paths import mark_created, remove_created
from genlab.errors import GenlabError


@dataclass
class ReportSection:
    """One part's piece of the report: a title, an HTML body and its headline numbers."""

    title: str
    body: str
    metrics: dict


def full_run_note(method: str, template: str, results_dir: Path | None = None) -> str:
    """``template`` (white space folded) filled with the figures of ``method``'s committed full run (docs/results/<method>/results.json,
    formatted by :mod:`genlab.experiments.figures`), or a pointer to its page where that file is not on disk."""
    from genlab.experiments.figures import figures

    values = figures(method, results_dir)
    if values is None:
        return f"See docs/results/{method}.md for the full run."
    return html.escape(" ".join(template.format(**values).split()), quote=False)


def quick_run(name: str, folder: Path) -> tuple[object, dict]:
    """Run experiment ``name``'s quick preset in ``folder``: ``(its module, its results)``."""
    import importlib

    experiment = importlib.import_module(f"genlab.experiments.{name}")
    return experiment, experiment.run(folder, experiment.PRESETS["quick"])


def metrics_table(rows: dict[str, dict[str, float]], columns: list[str]) -> str:
    """An HTML table with one row per entry of ``rows`` and the given metric columns."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["", *columns])
    body = "".join(
        "<tr><th>" + html.escape(name) + "</th>"
        + "".join(f"<td>{values[c]:.3f}</td>" if c in values else "<td>–</td>" for c in columns) + "</tr>"
        for name, values in rows.items()
    )
    return f"<table><tr>{head}</tr>{body}</table>"


CORE_STEPS = 1200
CORE_EVAL_IMAGES = 1000


def core_part(folder: Path) -> ReportSection:
    """Train a tiny class-conditional digits U-Net, sample a grid, score trained vs untrained."""
    import torch

    from genlab.base import image_model
    from genlab.core.images import save_image_grid

    run_dir = folder / "run"
    remove_created(run_dir)
    mark_created(run_dir)
    config = image_model.ImageModelConfig(data="digits", steps=CORE_STEPS, checkpoint_every=CORE_STEPS,
                                          run_dir=str(run_dir))
    image_model.train_image_model(config)
    denoiser, info = image_model.load_image_model(run_dir)
    labels = image_model.balanced_labels(100, info.num_classes)
    grid = image_model.generate_images(denoiser, 100, labels, steps=18)
    save_image_grid(grid, folder / "samples.png", columns=info.num_classes)
    trained = image_model.evaluate_image_model(denoiser, info, CORE_EVAL_IMAGES, progress=True)
    untrained_model = image_model.build_denoiser(config, info.channels, info.resolution, info.num_classes)
    with torch.no_grad():
        untrained = image_model.evaluate_image_model(untrained_model.eval(), info, CORE_EVAL_IMAGES)
    table = metrics_table({"trained (EMA)": trained, "untrained": untrained},
                          ["fd", "precision", "recall", "accuracy"])
    body = (
        f"<p>A {sum(p.numel() for p in denoiser.parameters()) / 1e6:.2f} M-parameter U-Net, trained for "
        f"{CORE_STEPS} steps (batch 64) with the EDM loss on scikit-learn's digits at 16×16, "
        f"sampled with Heun, 18 levels ({trained['nfe']} network calls). Each column is one class, 0–9.</p>"
        f'<div class="figs"><img class="pixels" src="{folder.name}/samples.png" alt="samples">'
        f'<img src="{folder.name}/run/loss.png" alt="loss curve"></div>'
        f"<p>Scores of {CORE_EVAL_IMAGES} class-balanced samples against the 297 held-out digits, in the "
        "feature space of genlab's digits classifier (FD is a Fréchet distance on those features, not FID; "
        "accuracy is the share of samples the classifier assigns to the requested class).</p>" + table
        + "<p>" + full_run_note("core", """The run recorded in docs/results/core.md (the same settings) scored
                                           FD {trained_fd} and class accuracy {trained_accuracy}; untrained,
                                           FD {untrained_fd}.""")
        + "</p>"
    )
    results = {"preset": {"data": "digits", "resolution": 16, "steps": CORE_STEPS, "batch_size": 64,
                          "eval_images": CORE_EVAL_IMAGES}, "trained": trained, "untrained": untrained}
    (folder / "results.json").write_text(json.dumps(results, indent=2))  # the form of docs/results/core/results.json
    return ReportSection("Class-conditional EDM on digits (core)", body, {"trained": trained, "untrained": untrained})


def guidance_part(folder: Path) -> ReportSection:
    """ICG / TSG / CFG on three tiny digits models (a shortened ``genlab reproduce guidance``)."""
    from genlab.experiments import guidance as guidance_experiment

    config = guidance_experiment.PRESETS["demo"]
    results = guidance_experiment.run(folder, config)
    rows = {name: runs[0] for name, runs in results["table"].items()}
    grids = "".join(
        f'<figure><img class="pixels" src="{folder.name}/samples_{name}.png" alt="{name}">'
        f"<figcaption>{name.replace('_', ' + ')}</figcaption></figure>"
        for name in ("A_unguided", "A_icg", "B_cfg", "A_tsg")
    )
    body = (
        f"<p>Three 0.32 M-parameter U-Nets trained {config.train_steps} steps each on digits: A class-conditional "
        "<em>without</em> label dropping, B with 10% label dropping (needed for CFG), C unconditional. "
        f"Sampled alike (Heun, {config.sampler_steps} levels, {config.num_images} images). ICG replaces CFG's "
        "unconditional call by the conditional model with a random class; TSG perturbs the time-step embedding. "
        "Paper: ICG ≈ CFG, A+ICG ≥ B+CFG, TSG better than unguided. This short run is one seed; "
        + full_run_note("guidance", "see docs/results/guidance.md for the full run with {seeds} seeds.") + "</p>"
        + metrics_table(rows, ["fd", "precision", "recall", "accuracy"])
        + f'<div class="figs">{grids}</div>'
        + f'<div class="figs"><img src="{folder.name}/sweep.png" alt="FD against guidance scale"></div>'
    )
    return ReportSection("Training-free guidance: ICG and TSG vs CFG", body, rows)


def disco_part(folder: Path) -> ReportSection:
    """DisCo-Diff's toy and a short shapes run (a shortened ``genlab reproduce disco``)."""
    from genlab.experiments import disco as disco_experiment

    preset = disco_experiment.PRESETS["demo"]
    results = disco_experiment.run(folder, preset)
    toy = {name: runs[0] for name, runs in results["toy"]["results"].items()}
    record = next(iter(results["images"]["seeds"].values()))
    nfe = next(iter(record["fd_table"]["EDM"]))
    rows = {row: cells[nfe] for row, cells in record["fd_table"].items()}
    rows.update({f"DisCo-Diff, latent CFG w={w}": scores for w, scores in record["latent_cfg"].items() if w != "1.0"})
    usage = sum(record["code_usage"]) / len(record["code_usage"])
    images = preset.images
    body = (
        "<p>DisCo-Diff adds a few discrete latents, inferred from the clean image by an encoder trained jointly "
        "with the denoiser, so the denoiser no longer has to split the data's modes by itself; an autoregressive "
        "prior draws the latents at sampling time. Paper (2-D toy): W2 0.27 → 0.118 and nearly straight ODE paths. "
        f"Here: one seed, the toy MLPs trained {preset.toy.train_steps} steps. At this short budget the latents "
        "help EDM's MLP separate the modes; with twice the steps EDM catches up (docs/results/disco.md).</p>"
        + metrics_table(toy, ["w2", "off_mode", "straightness", "code_usage"])
        + f'<div class="figs"><img src="{folder.name}/toy/trajectories.png" alt="toy ODE trajectories"></div>'
        f"<p>Shapes at {images.resolution} px: an EDM U-Net and a DisCo-Diff U-Net ({images.num_latents} latents × "
        f"{images.num_codes} codes) trained {images.train_steps} steps each, {images.num_images} samples at NFE {nfe} "
        f"(Heun). Oracle latents are the encoder's codes of held-out images. Codes used: {usage:.0%}. "
        "This short run is far from converged. "
        + full_run_note("disco", """In the full run (docs/results/disco.md, {seeds} seeds) DisCo-Diff's FD is
                                    {fd_below_edm_pct}% below EDM's at NFE {nfe}, but so is that of its
                                    network trained with the latents always dropped: at this scale the gain
                                    comes from the larger network, not from the latents.""") + "</p>"
        + metrics_table(rows, ["fd", "precision", "recall", "accuracy"])
        + '<p>Each row fixes the codes (and class) drawn from the prior; the columns vary the noise:</p>'
        f'<div class="figs"><img class="pixels" src="{folder.name}/images/latent_grid.png" alt="latent grid"></div>'
    )
    return ReportSection("DisCo-Diff: discrete latents for diffusion", body, {"toy": toy, "images": rows})


def growth_part(folder: Path) -> ReportSection:
    """Model growth: a 1-layer byte-level LLaMA stacked to 4 layers with each operator vs scratch."""
    from genlab.experiments import growth as growth_experiment

    preset = growth_experiment.PRESETS["demo"]
    results = growth_experiment.run(folder, preset)
    seed = preset.seeds[0]
    scratch_loss = results["per_job"][next(iter(results["per_job"]))]["target_loss"]
    rows = {"scratch (4 layers)": {"final loss": scratch_loss}}
    for operator in preset.operators:
        record = growth_experiment.main_rows(results, preset, "depth", operator)[0]
        rows[growth_experiment.OPERATOR_LABELS[operator]] = {
            "final loss": record["final_loss"],
            **{f"{label} saved %": 100 * record[f"saved_{key}"] for key, label in (("tokens", "tokens"), ("flops", "FLOPs"))
               if record[f"saved_{key}"] is not None}}
    schedule = preset.schedule
    body = (
        "<p>Stacking Your Transformers (Du et al. 2024): train a small model, grow it (G_stack copies its layers "
        "4×), keep training; paper: a 7B LLaMA reaches its 300B-token loss after 194B tokens. Here: a "
        f"{preset.layers // preset.depth_factor}-layer byte-level LLaMA ({preset.hidden} wide) trained "
        f"{preset.small_steps} steps on the Python standard library's docstrings, grown to {preset.layers} layers "
        f"with each operator and trained {preset.steps} steps (batch {schedule.batch_size}×{schedule.seq_len} bytes), "
        f"against the {preset.layers}-layer model trained {preset.steps} steps from scratch; seed {seed}. "
        "'Saved' is the share of the scratch run's tokens/FLOPs the grown run did not need to reach its final "
        "held-out loss (the small model's cost included; negative = needed more).</p>"
        + metrics_table(rows, ["tokens saved %", "FLOPs saved %", "final loss"])
        + f'<div class="figs"><img src="{folder.name}/curves.png" alt="loss vs tokens and FLOPs"></div>'
        "<p>This short run is one seed. "
        + full_run_note("growth", """In the full run (docs/results/growth.md: {layers} layers, {seeds} seeds,
                                     width growth, a timing/factor sweep), G_stack saves {saved_tokens_pct}%
                                     of the tokens ({saved_flops_pct}% of the FLOPs) to reach the scratch
                                     model's loss at {tokens_m}M tokens and {long_saved_tokens_pct}% of the
                                     tokens at {long_tokens_m}M; the other operators save none, and width
                                     growth by neuron splitting does not help because the split copies stay
                                     identical.""") + "</p>"
    )
    return ReportSection("Model growth: G_stack and the other operators", body, rows)


def worldmodel_part(folder: Path) -> ReportSection:
    """iVideoGPT: the quick world-model reproduction (32 px PushBlock) and its rollout GIF."""
    _, results = quick_run("worldmodel", folder)
    preset = results["preset"]
    rows = {name: {"tokens/frame": r["future_tokens"], "PSNR": r["psnr"], "SSIM": r["ssim"],
                   "PSNR best-of-N": r["psnr_best"], "FD": r["fd"], "frames/s": r["frames_per_second"]}
            for name, r in results["prediction"].items()}
    control = {policy: {"success rate": r["success_rate"], "final distance": sum(r["final_distances"]) / len(r["final_distances"])}
               for policy, r in results["control"].items()}
    body = (
        "<p>iVideoGPT (Wu et al. 2024): a compressive tokenizer (a full token grid for the context frame, "
        "few tokens for each future frame, decoded relative to the context) and a LLaMA over "
        "[context, (slot + action, future tokens) × T] with a reward head. Here, the built-in PushBlock world at "
        f"{preset['frame_size']}×{preset['frame_size']}, {preset['train_episodes']} training episodes, short training; "
        f"predictions of {preset['future_frames']} frames from one true frame on held-out episodes, "
        f"{preset['samples']} samples each.</p>"
        + metrics_table(rows, ["tokens/frame", "PSNR", "SSIM", "PSNR best-of-N", "FD", "frames/s"])
        + "<p>Model-predictive control (CEM on imagined rollouts, scored by the reward head or by the reward of "
        "the positions read off the imagined frames) against a random policy and the same planner on the true "
        "simulator:</p>"
        + metrics_table(control, ["success rate", "final distance"])
        + f'<div class="figs"><figure><img class="pixels" src="{folder.name}/rollout.gif" alt="rollout">'
        "<figcaption>true | compressive | per-frame</figcaption></figure></div>"
        + "<p>" + full_run_note("worldmodel", """In the full run (docs/results/worldmodel.md: {frame_size} px,
                                                 {episodes} episodes, {transformer_steps} transformer steps)
                                                 the world model follows the actions: action-conditioned
                                                 prediction beats the action-free model by {action_gain_db} dB
                                                 and places the agent {agent_closer_pct}% closer to its true
                                                 position. CEM with horizon {horizon} on its imagined frames
                                                 solves {frames_solved} episodes (random: {random_solved},
                                                 higher return in {frames_wins} paired episodes), on its
                                                 reward head {reward_head_solved}; the simulator planner
                                                 {simulator_solved}.""")
        + f" This short run (horizon {preset['horizon']}, {preset['transformer_steps']} transformer steps) shows the "
        "pipeline, not the effect.</p>"
    )
    return ReportSection("World model: iVideoGPT on PushBlock", body, {"prediction": rows, "control": control})


def camera_part(folder: Path) -> ReportSection:
    """VD3D: the quick camera-control reproduction (from the shipped video base) and its trajectories GIF."""
    camera_experiment, results = quick_run("camera", folder)
    preset, evaluation, training = results["preset"], results["evaluation"], results["training"]

    def means(scores: dict) -> dict[str, float]:
        return {key: value["mean"] if isinstance(value, dict) else value for key, value in scores.items()
                if key in ("rotation_deg", "translation", "discrimination", "psnr", "clip_fd")}

    rows = {f"{name} (estimator)": means(evaluation[name]) for name in (camera_experiment.TRUTH, camera_experiment.STILL)}
    rows[camera_experiment.BASE] = means(evaluation[camera_experiment.BASE])
    rows.update({name: {**means(evaluation[name]), "trainable M": training[name][0]["trainable_parameters"] / 1e6,
                        "s/step": training[name][0]["seconds_per_step"]} for name in camera_experiment.ARMS})
    body = (
        "<p>VD3D (Bahmani et al. 2024): a frozen video transformer is steered by a small trainable branch that reads "
        "the Plücker embedding of each frame's camera and adds its output, through zero-initialised projections, "
        "to the base's first blocks. Baselines: a CameraCtrl-style camera encoder whose features are added inside "
        "the frozen base, a MotionCtrl-style model (Plücker frames concatenated, every weight fine-tuned), and the "
        "base fine-tuned without any camera. Here: genlab's pretrained video base "
        f"({results['frames']} frames at {results['resolution']}×{results['resolution']}), each arm trained "
        f"{preset['camera_steps']} steps on {preset['clips']} clips of procedural 3-D scenes. A pose estimator "
        "trained with generator-like artefacts reads the cameras off the generated clips: errors against the "
        "requested trajectory (orbit, pan, tilt, dolly, random; odd scenes reversed) and discrimination (is the "
        "motion nearest the requested path among all types, both directions and a still camera).</p>"
        + metrics_table(rows, ["rotation_deg", "translation", "discrimination", "psnr", "clip_fd", "trainable M",
                               "s/step"])
        + f'<div class="figs"><figure><img class="pixels" src="{folder.name}/trajectories.gif" alt="trajectories">'
        "<figcaption>rows: orbit, pan, tilt, dolly, random; columns: true | base | ControlNet | encoder | concat | "
        "fine-tuned without camera</figcaption></figure></div>"
        + "<p>This short run shows the pipeline, not the effect. "
        + full_run_note("camera", """In the previous full run (docs/results/camera.md: {clips} clips at
                                     {resolution} px, a weaker base) the ControlNet lowered the camera-blind
                                     base's rotation error from {base_rotation}° to {controlnet_rotation}° (the
                                     concat baseline: {concat_rotation}°), but no model beat a clip that does
                                     not move ({still_rotation}°).""") + "</p>"
    )
    return ReportSection("Camera control: VD3D ControlNet on a video DiT", body, rows)


def enhance_part(folder: Path) -> ReportSection:
    """VEnhancer: the quick enhancement reproduction (16 px clips) and its side-by-side GIF."""
    _, results = quick_run("enhance", folder)
    preset = results["preset"]
    rows = {f"s={setting['space']}, k={setting['time']}{'' if setting['trained'] else ' (unseen)'}: {method}": row
            for setting in results["settings"] for method, row in setting["methods"].items()}
    seams = results["long_video"]["rows"]
    body = (
        "<p>VEnhancer (He et al. 2024): a trainable copy of a frozen video model's first blocks reads the "
        "low-resolution key frames (up-sampled, noise-augmented, with a key-frame mask; the noise level and the "
        "spatial factor s join the time embedding of key frames) and feeds the base through zero-initialised "
        "projections; sampling starts from the noised trilinear up-sampling (SDEdit). Here: clips of 3-D scenes and "
        f"moving sprites at {preset['resolution']}×{preset['resolution']}, {preset['frames']} frames; base "
        f"{preset['base_steps']} steps, ControlNet and the L2 regression baseline {preset['enhance_steps']} steps; "
        "held-out clips degraded by spatial factor s and temporal factor k.</p>"
        + metrics_table(rows, ["psnr", "ssim", "fd", "temporal_error"])
        + "<p>A 4-window video, temporal error at chunk borders ÷ elsewhere: "
        + ", ".join(f"{html.escape(name)} {row['border_ratio']:.2f}" for name, row in seams.items()) + ".</p>"
        + f'<div class="figs"><figure><img class="pixels" src="{folder.name}/side_by_side.gif" alt="side by side">'
        "<figcaption>true | trilinear | regression | ControlNet</figcaption></figure></div>"
        + "<p>" + full_run_note("enhance", """In the full run (docs/results/enhance.md: {resolution} px,
                                              {clips} clips, base {base_steps} steps, enhancers
                                              {enhance_steps}) the ControlNet beats trilinear up-sampling on
                                              FD at every factor (s = 4: {s4_fd_enhancer} vs
                                              {s4_fd_trilinear}) but not on PSNR
                                              ({psnr_loss_min}-{psnr_loss_max} dB lower); the L2 regression
                                              net beats both except at the unseen s = 8; blending chunks at
                                              every step removes the seam of hard chunk borders.""")
        + " This short run shows the pipeline, not the effect.</p>"
    )
    return ReportSection("Video enhancement: VEnhancer space-time ControlNet", body, rows)



def align_part(folder: Path) -> ReportSection:
    """VADER: the quick alignment reproduction (VADER K=1, large K and DDPO on a digits and a video model)."""
    _, results = quick_run("align", folder)
    preset = results["preset"]
    rows = {f"{arm}: {method}": {key: scores[key]["mean"] for key in ("reward", "diversity", "fd")}
            for arm, by_method in results["samples"].items() for method, scores in by_method.items()}
    first_arm = next(iter(results["arms"]))
    body = (
        "<p>VADER (Prabhudesai et al. 2024): sample with the full sampler, score the samples with a differentiable "
        "reward and back-propagate it through only the last K sampler steps into LoRA adapters; DDPO, the "
        "baseline, runs PPO on the sampler's per-step Gaussian log-probabilities. Here: a digits model aligned to "
        "p(class 3) under genlab's digit classifier and a sprite video model aligned to leftward optical flow, "
        f"{preset['sampling_steps']} sampler steps, batch {preset['batch_size']}, VADER {preset['vader_updates']} "
        f"updates, DDPO {preset['ddpo_updates']}. Reward, diversity (feature variance) and FD to the data of "
        "fixed-noise samples:</p>"
        + metrics_table(rows, ["reward", "diversity", "fd"])
        + f'<div class="figs"><figure><img src="{folder.name}/curves.png" alt="reward curves">'
        "<figcaption>reward against reward queries (top) and wall seconds (bottom)</figcaption></figure>"
        f'<figure><img class="pixels" src="{folder.name}/runs/{first_arm}/vader-k1-s0/samples_all.png" '
        'alt="VADER samples"><figcaption>after VADER, K = 1</figcaption></figure></div>'
        + "<p>" + full_run_note("align", """In the full run (docs/results/align.md: {arms} arms, {seeds}
                                            seeds) VADER with K = 1 reaches DDPO's final reward with
                                            {brightness_ratio}× (brightness) and {class3_ratio}× (p(class 3))
                                            fewer reward queries on the digits models; DDPO did not raise the
                                            video rewards. At this scale every method raises the reward by
                                            leaving the data (FD to the data rises up to {max_fd_rise}×).""")
        + " This short run shows the pipeline, not the effect.</p>"
    )
    return ReportSection("Alignment: VADER reward gradients vs DDPO", body, rows)



PARTS: dict[str, Callable[[Path], ReportSection]] = {"core": core_part, "guidance": guidance_part,
                                                      "disco": disco_part, "growth": growth_part,
                                                      "worldmodel": worldmodel_part, "camera": camera_part,
                                                      "enhance": enhance_part, "align": align_part}

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>genlab demo</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:right}}
.figs img{{max-width:48%;margin-right:1%;vertical-align:top}}figure{{display:inline-block;margin:0 .5em}}.figs figure img{{width:240px;max-width:none}}.figs img.pixels{{image-rendering:pixelated}}</style></head>
<body><h1>genlab demo</h1><p>Generated by <code>genlab demo</code> on the CPU; {total:.0f} s in all.</p>
{sections}</body></html>
"""


def run_demo(out: Path, only: str | None = None) -> Path:
    """Run the demo parts (all, or ``only`` one) in ``out``; write and return ``out/report.html``."""
    if only is not None and only not in PARTS:
        raise GenlabError(f"--only must be one of {', '.join(PARTS)}, got {only!r}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise GenlabError(f"demo folder {out} is not writable ({error.strerror})") from error
    sections, started = [], time.perf_counter()
    for name, part in PARTS.items():
        if only in (None, name):
            part_started = time.perf_counter()
            section = part(out / name)
            seconds = time.perf_counter() - part_started
            sections.append(f"<h2>{html.escape(section.title)}</h2>{section.body}<p><small>{seconds:.0f} s</small></p>")
    report = out / "report.html"
    report.write_text(PAGE.format(total=time.perf_counter() - started, sections="\n".join(sections)))
    return report
