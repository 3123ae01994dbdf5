"""``genlab reproduce enhance``: VEnhancer's space-time ControlNet at small scale.

Steps (each cached in ``out``, so a stopped run resumes):

1. Side by side: an unconditional base video DiT on high-resolution clips (3-D scenes and moving
   sprites) | the L2 regression baseline (a video DiT of the enhancer's total size) and a
   low-resolution video generator (the source of *generated* low-resolution videos).
2. Side by side on the frozen base: the ControlNet enhancer with noise augmentation, and the same
   without it (the ablation).
3. Held-out clips degraded by known (s, k), trained and unseen: PSNR, SSIM, FD of frames and the
   temporal error (RMSE of frame-to-frame differences against the truth) for trilinear
   up-sampling, the regression net and the enhancer. The noise-augmentation ablation on generated
   low-resolution videos (FD to real frames; PSNR of the result shrunk back against its input).
   A long video (4 model windows) with chunks blended at every step vs hard chunk borders: the
   temporal error at chunk borders over the error elsewhere.
4. ``results.json``, ``report.md`` and side-by-side GIF/MP4s.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from genlab.base.video_model import (
    VideoModelConfig,
    build_video_denoiser,
    generate_videos,
    load_video_model,
    train_video_model,
    video_clips,
)
from genlab.core.images import save_video, video_grid
from genlab.enhance.degradation import degrade, trilinear_upsample
from genlab.enhance.inference import EnhanceSettings, enhance_video
from genlab.enhance.model import load_enhancer
from genlab.enhance.training import EnhanceConfig, train_enhancer
from genlab.experiments.parallel import map_in_processes
from genlab.experiments.reporting import FrameFeatures, cells, seconds_per_step, table, timed_record
from genlab.metrics import frechet_distance, psnr, ssim

PAPER = ("He et al. 2024 (VEnhancer): one video ControlNet on a frozen text-to-video model does space and time "
         "super-resolution together, for arbitrary up-sampling factors, and beats cascades of video "
         "super-resolution and frame interpolation on VBench and visual quality; noise augmentation of the "
         "condition lets it refine (and repair) generated low-resolution videos, and long videos run in "
         "overlapping 32-frame chunks blended at every step.")

METHODS = ("trilinear", "regression (L2)", "ControlNet (VEnhancer)")
TEST_SEED = 1  # held-out clips (training clips use data seed 0)
VALIDATION_SEED = 2  # the SDEdit start-level sweep, which informs the default start level


@dataclass(frozen=True)
class EnhancePreset:
    name: str
    clips: int
    frames: int
    resolution: int
    base_steps: int
    enhance_steps: int
    generator_steps: int
    batch_size: int
    branch_depth: int
    eval_clips: int
    eval_frames: int
    sampler_steps: int
    trained: tuple[tuple[int, int], ...]
    unseen: tuple[tuple[int, int], ...]
    ablation: tuple[int, int]

    @property
    def settings(self) -> tuple[tuple[int, int], ...]:
        return self.trained + self.unseen


PRESETS = {
    "full": EnhancePreset("full", clips=3000, frames=8, resolution=32, base_steps=3000, enhance_steps=1500,
                          generator_steps=1500, batch_size=16, branch_depth=2, eval_clips=32, eval_frames=17,
                          sampler_steps=15, trained=((2, 1), (4, 1), (2, 2), (4, 2), (4, 4)),
                          unseen=((3, 1), (8, 1), (4, 3), (2, 8)), ablation=(4, 2)),
    "quick": EnhancePreset("quick", clips=300, frames=8, resolution=16, base_steps=400, enhance_steps=300,
                           generator_steps=200, batch_size=8, branch_depth=1, eval_clips=6, eval_frames=9,
                           sampler_steps=5, trained=((2, 1), (2, 2)), unseen=((3, 1),), ablation=(2, 2)),
}


# -- training -------------------------------------------------------------------------------------
def _video_config(preset: EnhancePreset, folder: Path, **changes) -> VideoModelConfig:
    config = VideoModelConfig(clips=preset.clips, frames=preset.frames, resolution=preset.resolution, size="tiny",
                              data="mixed", first_frame=False, steps=preset.base_steps, batch_size=preset.batch_size,
                              checkpoint_every=preset.base_steps, run_dir=str(folder), progress=False,
                              overwrite=True)  # a stage without its record starts afresh
    return replace(config, **changes)


def _enhance_config(preset: EnhancePreset, out: Path, variant: str, name: str, **changes) -> EnhanceConfig:
    config = EnhanceConfig(base=str(out / "base"), variant=variant, clips=preset.clips, steps=preset.enhance_steps,
                           batch_size=preset.batch_size, branch_depth=preset.branch_depth,
                           checkpoint_every=preset.enhance_steps, run_dir=str(out / name), progress=False,
                           overwrite=True)
    return replace(config, **changes)


def _generator_config(preset: EnhancePreset, out: Path) -> VideoModelConfig:
    """The low-resolution generator: clips the size of the ablation's degraded input."""
    space, time = preset.ablation
    return _video_config(preset, out / "generator", frames=(preset.frames - 1) // time + 1,
                         resolution=preset.resolution // space, steps=preset.generator_steps,
                         checkpoint_every=preset.generator_steps)


def _training_record(run_dir: Path, result, model) -> dict:
    return {"steps": result.steps, "last_loss": result.last_loss, "seconds_per_step": seconds_per_step(run_dir),
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)}


def train_job(out: Path, preset: EnhancePreset, job: str) -> dict:
    """One training job: ``base``, ``generator``, ``regression``, ``controlnet`` or ``controlnet-no-aug``."""
    if job in ("base", "generator"):
        config = _video_config(preset, out / "base") if job == "base" else _generator_config(preset, out)

        def compute() -> dict:
            result = train_video_model(config)
            return _training_record(Path(config.run_dir), result, result.ema_model)

        return timed_record(Path(config.run_dir), compute)

    changes = {"max_augment_sigma": 0.0} if job == "controlnet-no-aug" else {}
    config = _enhance_config(preset, out, "regression" if job == "regression" else "controlnet", job, **changes)
    # the regression net only needs the base's shape, so it trains alongside the base
    base = build_video_denoiser(_video_config(preset, out / "base")) if job == "regression" else None

    def compute() -> dict:
        result = train_enhancer(config, base=base)
        return _training_record(Path(config.run_dir), result, load_enhancer(config.run_dir).train())

    return timed_record(out / job, compute)


def _train_jobs(out: Path, preset: EnhancePreset, jobs: tuple[str, ...]) -> dict:
    return {job: train_job(out, preset, job) for job in jobs}


# -- evaluation -----------------------------------------------------------------------------------
def held_out_clips(preset: EnhancePreset, frames: int | None = None, seed: int = TEST_SEED) -> torch.Tensor:
    """Held-out high-resolution clips ``[N, frames, 3, R, R]`` (half scenes, half sprites)."""
    frames = frames or preset.eval_frames
    return video_clips("mixed", preset.eval_clips, frames, preset.resolution, seed, progress=False).video_tensor()


def temporal_error(videos: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per transition ``[T - 1]``: RMSE between the frame-to-frame differences of ``videos`` and ``truth``
    ``[N, T, C, H, W]`` (flicker and wrong motion both raise it)."""
    difference = videos.diff(dim=1) - truth.diff(dim=1)
    return difference.pow(2).mean(dim=(0, 2, 3, 4)).sqrt()


def fidelity(videos: torch.Tensor, truth: torch.Tensor, features: FrameFeatures) -> dict:
    """PSNR, SSIM (frame means), FD of frames and temporal error of ``videos`` against ``truth``."""
    frames, true_frames = videos.flatten(0, 1), truth.flatten(0, 1)
    return {"psnr": float(psnr(frames, true_frames).mean()), "ssim": float(ssim(frames, true_frames).mean()),
            "fd": frechet_distance(features(truth), features(videos)),
            "temporal_error": float(temporal_error(videos, truth).mean())}


def _enhanced(out: Path, preset: EnhancePreset, method: str, low: torch.Tensor, space: int, time: int,
              **settings) -> torch.Tensor:
    """``low`` enhanced by ``method`` to the preset's resolution (so a factor like 3 need not divide it)."""
    size = (preset.resolution, preset.resolution)
    if method == "trilinear":
        return trilinear_upsample(low, time, size).clamp(-1, 1)
    folder = {"regression (L2)": "regression", "ControlNet (VEnhancer)": "controlnet"}.get(method, method)
    chosen = EnhanceSettings(sampling_steps=preset.sampler_steps, **settings)
    return enhance_video(load_enhancer(out / folder), low, space, time, chosen, size=size)


def evaluate_setting(out: Path, preset: EnhancePreset, space: int, time: int, start_sigma: float) -> dict:
    """Every method on the held-out clips degraded by ``(space, time)`` (the ControlNet from ``start_sigma``)."""
    def compute() -> dict:
        truth = held_out_clips(preset)
        low = degrade(truth, space, time)
        features = FrameFeatures()
        rows, examples = {}, {}
        for method in METHODS:
            videos = _enhanced(out, preset, method, low, space, time, start_sigma=start_sigma)
            rows[method] = fidelity(videos, truth[:, : videos.shape[1]], features)
            examples[method] = videos[:2]
        torch.save(examples, out / "eval" / f"s{space}k{time}.pt")
        return {"space": space, "time": time, "trained": (space, time) in preset.trained, "start_sigma": start_sigma,
                "methods": rows}

    return timed_record(out / "eval" / f"s{space}k{time}", compute)


def evaluate_ablation(out: Path, preset: EnhancePreset, start_sigma: float) -> dict:
    """Noise augmentation on vs off, on generated and on real low-resolution videos (at ``preset.ablation``)."""
    space, time = preset.ablation

    def compute() -> dict:
        generator = load_video_model(out / "generator")
        cfg = generator.net.config
        generated = generate_videos(generator, (preset.eval_clips, cfg.frames, 3, cfg.resolution, cfg.resolution),
                                    steps=18, seed=0)
        truth = held_out_clips(preset, (cfg.frames - 1) * time + 1)
        features = FrameFeatures()
        variants = {"augmentation on (σ_aug = 0.1)": ("controlnet", 0.1),
                    "augmentation off (trained and run at σ_aug = 0)": ("controlnet-no-aug", 0.0)}
        rows = {}
        for name, (folder, level) in variants.items():
            enhanced = _enhanced(out, preset, folder, generated, space, time, augment_sigma=level,
                                 start_sigma=start_sigma)
            real = _enhanced(out, preset, folder, degrade(truth, space, time), space, time, augment_sigma=level,
                             start_sigma=start_sigma)
            rows[name] = {
                "generated_fd": frechet_distance(features(truth), features(enhanced)),
                "generated_consistency_psnr": float(psnr(degrade(enhanced, space, time).flatten(0, 1),
                                                         generated.flatten(0, 1)).mean()),
                "real": fidelity(real, truth, features),
            }
        trilinear = trilinear_upsample(generated, time, (preset.resolution, preset.resolution))
        rows["trilinear"] = {"generated_fd": frechet_distance(features(truth), features(trilinear))}
        return {"space": space, "time": time, "rows": rows}

    return timed_record(out / "eval" / "ablation", compute)


def evaluate_long_video(out: Path, preset: EnhancePreset, start_sigma: float) -> dict:
    """A video 4 model windows long: chunks blended at every step vs independent chunks (no overlap)."""
    def compute() -> dict:
        frames = 4 * preset.frames
        truth = held_out_clips(preset, frames)
        low = degrade(truth, 2, 1)
        window = preset.frames
        borders = torch.zeros(frames - 1, dtype=torch.bool)
        borders[window - 1 :: window] = True  # transitions between the hard chunks (frame 8j-1 -> 8j)
        rows = {}
        for name, overlap in (("blended (overlap = half a window)", window // 2), ("hard chunk borders", 0)):
            videos = _enhanced(out, preset, "controlnet", low, 2, 1, frame_overlap=overlap, start_sigma=start_sigma)
            errors = temporal_error(videos, truth)
            rows[name] = {"border_error": float(errors[borders].mean()), "interior_error": float(errors[~borders].mean()),
                          "psnr": float(psnr(videos.flatten(0, 1), truth.flatten(0, 1)).mean())}
            rows[name]["border_ratio"] = rows[name]["border_error"] / rows[name]["interior_error"]
            torch.save(videos[:2], out / "eval" / f"long_overlap{overlap}.pt")
        return {"frames": frames, "window": window, "rows": rows}

    return timed_record(out / "eval" / "long_video", compute)


START_SIGMAS = (0.25, 0.5, 1.0, 2.0)


def evaluate_start_level(out: Path, preset: EnhancePreset, start_sigma: float) -> dict:
    """The ControlNet enhancer from the SDEdit start ``start_sigma`` at ``preset.ablation``, on validation
    clips (not the test clips of the other tables): the sweep that picks the start level."""
    space, time = preset.ablation

    def compute() -> dict:
        truth = held_out_clips(preset, seed=VALIDATION_SEED)
        videos = _enhanced(out, preset, "controlnet", degrade(truth, space, time), space, time, start_sigma=start_sigma)
        return {"start_sigma": start_sigma, **fidelity(videos, truth[:, : videos.shape[1]], FrameFeatures())}

    return timed_record(out / "eval" / f"start_sigma_{start_sigma}", compute)


def _evaluation_job(out: Path, preset: EnhancePreset, job: tuple, start_sigma: float | None = None) -> dict:
    """``("start", σ)``, ``("setting", s, k)``, ``("ablation",)`` or ``("long",)``."""
    torch.manual_seed(0)
    kind, *arguments = job
    if kind == "start":
        return evaluate_start_level(out, preset, *arguments)
    if kind == "setting":
        return evaluate_setting(out, preset, *arguments, start_sigma)
    evaluate = {"ablation": evaluate_ablation, "long": evaluate_long_video}[kind]
    return evaluate(out, preset, start_sigma)


def example_video(out: Path, preset: EnhancePreset) -> None:
    """Ground truth | trilinear | regression | ControlNet for two clips at the ablation setting (if evaluated)."""
    space, time = preset.ablation if preset.ablation in preset.settings else preset.settings[0]
    examples = torch.load(out / "eval" / f"s{space}k{time}.pt", weights_only=True)
    truth = held_out_clips(preset)[:2, : examples[METHODS[0]].shape[1]]
    rows = []
    for clip in range(2):
        rows += [truth[clip]] + [examples[method][clip] for method in METHODS]
    frames = video_grid(torch.stack(rows), columns=1 + len(METHODS), scale=max(1, 96 // preset.resolution))
    for suffix in ("gif", "mp4"):
        save_video(frames, out / f"side_by_side.{suffix}", fps=4)


def run(out: Path, preset: EnhancePreset, workers: int = 2) -> dict:
    """The whole reproduction; returns (and writes) the results."""
    out.mkdir(parents=True, exist_ok=True)
    stages = ((("base",), ("regression", "generator")), (("controlnet",), ("controlnet-no-aug",)))
    training = {}
    for stage in stages:
        for record in map_in_processes(_train_jobs, [(out, preset, jobs) for jobs in stage], workers,
                                       desc="training " + " | ".join("+".join(jobs) for jobs in stage)):
            training.update(record)
    (out / "eval").mkdir(exist_ok=True)
    sweep = map_in_processes(_evaluation_job, [(out, preset, ("start", start)) for start in START_SIGMAS], workers,
                             desc="SDEdit start levels (validation clips)")
    chosen = min(sweep, key=lambda row: row["fd"])["start_sigma"]
    jobs = [("long",), ("ablation",), *(("setting", *setting) for setting in preset.settings)]  # longest first
    records = map_in_processes(_evaluation_job, [(out, preset, job, chosen) for job in jobs], workers,
                               desc="evaluation")
    results = {"preset": asdict(preset), "paper": PAPER, "training": training,
               "start_sigma": {"space": preset.ablation[0], "time": preset.ablation[1], "rows": sweep, "chosen": chosen},
               "settings": records[2:], "ablation": records[1], "long_video": records[0]}
    example_video(out, preset)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "report.md").write_text(report(results))
    return results


# -- report ---------------------------------------------------------------------------------------
TRAINING_ROWS = (("base", "base video DiT (frozen later)"), ("controlnet", "ControlNet (VEnhancer)"),
                 ("controlnet-no-aug", "ControlNet without noise augmentation"),
                 ("regression", "regression (L2)"), ("generator", "low-resolution generator"))


def report(results: dict) -> str:
    """A Markdown report of :func:`run`'s results."""
    preset, training = results["preset"], results["training"]
    lines = [
        f"# VEnhancer space-time enhancement, preset {preset['name']}",
        "",
        f"{preset['clips']} training clips (3-D scenes and moving sprites) of {preset['frames']} frames at "
        f"{preset['resolution']}×{preset['resolution']}; base {preset['base_steps']} steps, enhancers "
        f"{preset['enhance_steps']} steps (batch {preset['batch_size']}), trained on s, k ∈ {{1, 2, 4}} "
        f"(the `genlab train enhance` defaults); "
        f"{preset['eval_clips']} held-out clips of {preset['eval_frames']} frames; Heun {preset['sampler_steps']} "
        f"levels from the SDEdit start σ = {results['start_sigma']['chosen']} (chosen on validation clips, below).",
        "",
    ]
    quality = (("psnr", ".2f"), ("ssim", ".3f"), ("fd", ".2f"), ("temporal_error", ".4f"))
    lines += table(["model", "trainable params", "training s/step", "final loss"],
                   ([name, f"{training[job]['trainable_parameters'] / 1e6:.2f} M",
                     *cells(training[job], (("seconds_per_step", ".3f"), ("last_loss", ".4f")))]
                    for job, name in TRAINING_ROWS))
    lines += ["", "Held-out clips degraded by (s, k); ↑ higher is better, ↓ lower is better.", "",
              *table(["s", "k", "seen in training", "method", "PSNR ↑", "SSIM ↑", "FD ↓", "temporal error ↓"],
                     ([setting["space"], setting["time"], "yes" if setting["trained"] else "no", method,
                       *cells(row, quality)]
                      for setting in results["settings"] for method, row in setting["methods"].items()))]
    ablation = results["ablation"]
    lines += ["", f"Noise augmentation, s = {ablation['space']}, k = {ablation['time']}: generated low-resolution "
              "videos (FD of the enhanced frames to real frames; PSNR of the result shrunk back against the "
              "generated input) and real degraded clips.", "",
              *table(["model", "generated: FD ↓", "generated: consistency PSNR ↑", "real: PSNR ↑", "real: FD ↓"],
                     ([name, *cells(row, (("generated_fd", ".2f"), ("generated_consistency_psnr", ".2f"))),
                       *cells(row.get("real", {}), (("psnr", ".2f"), ("fd", ".2f")))]
                      for name, row in ablation["rows"].items()))]
    sweep = results["start_sigma"]
    lines += ["", f"SDEdit start level of the ControlNet at s = {sweep['space']}, k = {sweep['time']}, on validation "
              "clips; the level with the lowest FD is used in every other table.", "",
              *table(["start σ", "PSNR ↑", "SSIM ↑", "FD ↓", "temporal error ↓"],
                     ([f"{row['start_sigma']}{' (chosen)' if row['start_sigma'] == sweep['chosen'] else ''}",
                       *cells(row, quality)] for row in sweep["rows"]))]
    long_video = results["long_video"]
    lines += ["", f"Long video: {long_video['frames']} frames = 4 windows of {long_video['window']}, s = 2; temporal "
              "error at the transitions between hard chunks vs elsewhere.", "",
              *table(["chunking", "error at chunk borders", "error elsewhere", "ratio", "PSNR"],
                     ([name, *cells(row, (("border_error", ".4f"), ("interior_error", ".4f"), ("border_ratio", ".2f"),
                                          ("psnr", ".2f")))] for name, row in long_video["rows"].items()))]
    lines += ["", f"Paper: {results['paper']}", ""]
    return "\n".join(lines)
