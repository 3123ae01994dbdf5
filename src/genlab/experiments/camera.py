"""``genlab reproduce camera``: VD3D's claim at small scale, from genlab's pretrained video base.

Steps (each cached in ``out``, so a stopped run resumes):

1. Four ways of training on top of the same base (genlab's shipped video base unless the preset
   names another), on the same clips with the same steps, batch and learning rate, one run per
   seed: the **VD3D ControlNet** (a branch on Plücker frames, base frozen), a **CameraCtrl-style**
   camera encoder (features added inside the frozen base's blocks), a **MotionCtrl-style** model
   (Plücker frames concatenated to the input, every weight fine-tuned), and the **control**: every
   weight fine-tuned without any camera. Trainable parameters, training time per step and the
   memory of gradients plus Adam state are recorded.
2. Held-out scenes each request every trajectory type, even scenes in its default direction and
   odd scenes reversed. Every model generates the clips from the true first frames (seed ``s``
   draws the same noise for every model); so do the camera-blind base and two references: the
   true clip, and a clip that does not move. The shipped pose estimator (trained with generator
   artefacts) reads the cameras off each clip: rotation and translation error against the
   requested cameras, and trajectory discrimination (is the motion nearest the requested path
   among every type, both directions and a still camera). PSNR against the true rendering, and
   frame FD and clip FD in genlab's video feature net against the true clips, beside the
   true-vs-true floor (other held-out scenes under the same requests).
3. ``results.json`` (per seed and mean ± std, and whether each goal of the issue is met),
   ``report.md`` and a GIF/MP4 grid (rows: trajectories; columns: true | base | each arm).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from genlab.base.video_model import PRETRAINED_VIDEO_DIR, clip_size, generate_videos, load_video_model
from genlab.camera.model import (
    CameraBlindDenoiser,
    load_camera_model,
    save_camera_model,
    trainable_parameters,
)
from genlab.camera.training import CameraModelConfig, model_plucker, train_camera_model
from genlab.core.images import save_video, video_grid
from genlab.data import default_intrinsics, random_scenes, render
from genlab.data.trajectories import DEFAULT_STRENGTH, TRAJECTORIES, make_trajectory, trajectory_candidates
from genlab.experiments.parallel import map_in_processes
from genlab.experiments.reporting import seconds_per_step, stat, stat_text, table, timed_record
from genlab.metrics import camera_errors, psnr, trajectory_discrimination
from genlab.metrics.camera_error import POSE_ESTIMATOR_DIR, PoseEstimator, load_pose_estimator
from genlab.metrics.video_features import video_fd

PAPER = ("Bahmani et al. 2024 (VD3D): on a large pretrained video transformer (SnapVideo), a ControlNet-like "
         "branch on Plücker embeddings, base frozen, follows requested cameras far better than MotionCtrl- and "
         "CameraCtrl-style conditioning ported to the same model (lower rotation and translation error of "
         "ParticleSfM-estimated poses), at similar or better FID/FVD.")

ARMS = {  # trained arms: report name -> camera model variant
    "VD3D ControlNet": "controlnet",
    "CameraCtrl-style encoder": "encoder",
    "MotionCtrl-style concat": "concat",
    "fine-tuned, no camera": "none",
}
CAMERA_ARMS = ("VD3D ControlNet", "CameraCtrl-style encoder", "MotionCtrl-style concat")
BASE = "camera-blind base"
TRUTH, STILL = "ground truth", "still clip"
TEST_SEED, FLOOR_SEED = 1, 2  # held-out scenes, and other held-out scenes for the FD floor (training: data seed 0)
ADAM_FLOATS = 3  # a trainable parameter costs its gradient and Adam's two moments in training memory


@dataclass(frozen=True)
class CameraPreset:
    """Settings of one run; ``base`` and ``estimator`` are folders, None for the ones shipped with genlab."""

    name: str
    clips: int
    camera_steps: int
    batch_size: int
    lr: float
    branch_hidden: int
    branch_depth: int
    seeds: tuple[int, ...]
    eval_scenes: int
    sampler_steps: int
    base: str | None = None
    estimator: str | None = None


PRESETS = {
    "full": CameraPreset("full", clips=3000, camera_steps=600, batch_size=16, lr=1e-3, branch_hidden=96,
                         branch_depth=2, seeds=(0, 1, 2), eval_scenes=48, sampler_steps=10),
    "quick": CameraPreset("quick", clips=200, camera_steps=30, batch_size=8, lr=1e-3, branch_hidden=64,
                          branch_depth=2, seeds=(0,), eval_scenes=4, sampler_steps=10),
}


def base_folder(preset: CameraPreset) -> Path:
    return Path(preset.base) if preset.base is not None else PRETRAINED_VIDEO_DIR


def estimator(preset: CameraPreset) -> PoseEstimator:
    return load_pose_estimator(preset.estimator if preset.estimator is not None else POSE_ESTIMATOR_DIR)


def run_folder(out: Path, variant: str, seed: int) -> Path:
    return out / f"{variant}_seed{seed}"


def train_arm(out: Path, preset: CameraPreset, variant: str, seed: int) -> dict:
    """One trained arm and seed: training record (steps, loss, s/step, trainable parameters, memory)."""
    folder = run_folder(out, variant, seed)
    config = CameraModelConfig(base=str(base_folder(preset)), variant=variant, clips=preset.clips, seed=seed,
                               branch_hidden=preset.branch_hidden, branch_depth=preset.branch_depth,
                               steps=preset.camera_steps, batch_size=preset.batch_size, lr=preset.lr,
                               checkpoint_every=preset.camera_steps, run_dir=str(folder), progress=False,
                               overwrite=True)  # a stage without its record starts afresh

    def compute() -> dict:
        result = train_camera_model(config)
        trainable = trainable_parameters(load_camera_model(folder).train())
        return {"steps": result.steps, "last_loss": result.last_loss, "seconds_per_step": seconds_per_step(folder),
                "trainable_parameters": trainable, "optimiser_memory_mb": trainable * 4 * ADAM_FLOATS / 2**20}

    return timed_record(folder, compute)


def requests(preset: CameraPreset, frames: int, resolution: int, seed: int = TEST_SEED) -> dict[str, dict]:
    """For each trajectory type: the held-out scenes' requested poses (even scenes forward, odd reversed) and
    intrinsics, their true clips and the requested candidate indices of :func:`trajectory_candidates`."""
    names, _ = trajectory_candidates(frames)
    scenes = random_scenes(preset.eval_scenes, seed=seed)
    intrinsics = default_intrinsics(resolution).expand(preset.eval_scenes, frames, 3, 3)
    reversed_scene = torch.arange(preset.eval_scenes) % 2 == 1
    out = {}
    for name in TRAJECTORIES:
        forward, backward = (make_trajectory(name, frames, strength=DEFAULT_STRENGTH[name] * sign) for sign in (1, -1))
        poses = torch.where(reversed_scene[:, None, None, None], backward, forward)
        out[name] = {"poses": poses, "intrinsics": intrinsics, "video": render(scenes, poses, intrinsics, resolution),
                     "requested": torch.tensor([names.index(("-" if r else "") + name) for r in reversed_scene])}
    return out


def scores(clips: dict[str, dict], videos: dict[str, torch.Tensor], pose_estimator: PoseEstimator,
           fd: bool = True) -> dict:
    """Camera errors and discrimination (per trajectory and overall), PSNR and (with ``fd``) frame / clip FD of
    ``videos`` against the true clips."""
    _, candidates = trajectory_candidates(next(iter(videos.values())).shape[1])
    per_trajectory, later = {}, slice(1, None)  # frame 0 is given
    for name, clip in clips.items():
        estimated = pose_estimator.estimate(videos[name])
        errors = camera_errors(estimated, clip["poses"])
        per_trajectory[name] = {
            "rotation_deg": float(errors["rotation_deg"].mean()),
            "translation": float(errors["translation"].mean()),
            "discrimination": float(trajectory_discrimination(estimated, clip["requested"], candidates).float().mean()),
            "psnr": float(psnr(videos[name][:, later].flatten(0, 1), clip["video"][:, later].flatten(0, 1)).mean()),
        }
    overall = {key: sum(r[key] for r in per_trajectory.values()) / len(per_trajectory)
               for key in ("rotation_deg", "translation", "discrimination", "psnr")}
    if fd:
        true = torch.cat([c["video"] for c in clips.values()])
        overall.update(video_fd(true, torch.cat([videos[name] for name in clips])))
    return {**overall, "per_trajectory": per_trajectory}


def evaluate_model(out: Path, preset: CameraPreset, name: str, seed: int) -> dict:
    """Generate every request with model ``name`` (noise seed ``seed``) and score the clips; keep one scene's clips."""
    model = load_camera_model(_model_folder(out, preset, name, seed))
    frames, resolution = clip_size(model)
    clips = requests(preset, frames, resolution)
    generated = {}
    for trajectory, clip in clips.items():
        plucker = model_plucker(model, clip["poses"], clip["intrinsics"], resolution)
        generated[trajectory] = generate_videos(model, tuple(clip["video"].shape), steps=preset.sampler_steps, seed=seed,
                                                plucker=plucker, **model.first_frame_kwargs(clip["video"][:, 0]))
    examples = out / "examples"
    examples.mkdir(exist_ok=True)
    torch.save({t: v[0].clone() for t, v in generated.items()}, examples / f"{ARMS.get(name, 'base')}_seed{seed}.pt")
    return scores(clips, generated, estimator(preset))


def _model_folder(out: Path, preset: CameraPreset, name: str, seed: int) -> Path:
    if name in ARMS:
        return run_folder(out, ARMS[name], seed)
    folder = out / "base_camera_blind"  # the base wrapped as a camera model that ignores the camera (written once)
    if not (folder / "genlab.json").exists():
        save_camera_model(CameraBlindDenoiser(load_video_model(base_folder(preset))), folder)
    return folder


def _evaluation_job(out: Path, preset: CameraPreset, name: str, seed: int) -> dict:
    folder = out / "evaluation"
    folder.mkdir(exist_ok=True)
    record = folder / f"{ARMS.get(name, 'base')}_seed{seed}.json"
    if not record.exists():
        record.write_text(json.dumps(evaluate_model(out, preset, name, seed), indent=2))
    return json.loads(record.read_text())


def references(preset: CameraPreset, frames: int, resolution: int) -> dict:
    """The true clips and a still clip through the estimator, and the true-vs-true FD floor."""
    clips = requests(preset, frames, resolution)
    pose_estimator = estimator(preset)
    truth = scores(clips, {n: c["video"] for n, c in clips.items()}, pose_estimator, fd=False)
    still = scores(clips, {n: c["video"][:, :1].expand_as(c["video"]) for n, c in clips.items()}, pose_estimator)
    others = requests(preset, frames, resolution, seed=FLOOR_SEED)
    floor = video_fd(torch.cat([c["video"] for c in clips.values()]), torch.cat([c["video"] for c in others.values()]))
    return {TRUTH: truth, STILL: still, "true-vs-true floor": floor}


def summarise(per_seed: list[dict]) -> dict:
    """Mean ± std over seeds of every overall score and per-trajectory score."""
    keys = [k for k in per_seed[0] if k != "per_trajectory"]
    summary = {key: stat([run[key] for run in per_seed]) for key in keys}
    summary["per_trajectory"] = {
        t: {key: stat([run["per_trajectory"][t][key] for run in per_seed]) for key in per_seed[0]["per_trajectory"][t]}
        for t in per_seed[0]["per_trajectory"]}
    summary["seeds"] = per_seed
    return summary


def goals(evaluation: dict) -> dict:
    """The issue's goals, each with the numbers it compares."""
    def mean(name: str, key: str) -> float:
        value = evaluation[name][key]
        return value["mean"] if isinstance(value, dict) else value

    def interval(name: str, key: str) -> tuple[float, float]:
        value = evaluation[name][key]
        return value["mean"] - value["std"], value["mean"] + value["std"]

    controlnet = mean("VD3D ControlNet", "rotation_deg")
    others = [name for name in CAMERA_ARMS if name != "VD3D ControlNet"]
    best_other = min(others, key=lambda name: mean(name, "rotation_deg"))
    low, high = interval("VD3D ControlNet", "rotation_deg")
    other_low, _ = interval(best_other, "rotation_deg")
    return {
        "rotation at most half of a still clip's": controlnet <= 0.5 * mean(STILL, "rotation_deg"),
        "rotation at most half of the camera-blind base's": controlnet <= 0.5 * mean(BASE, "rotation_deg"),
        "discrimination at least 90%": mean("VD3D ControlNet", "discrimination") >= 0.9,
        "best camera arm by rotation, spread apart": high < other_low,
        "best or tied camera arm by rotation": low <= interval(best_other, "rotation_deg")[1],
        "clip FD within 10% of the base's": mean("VD3D ControlNet", "clip_fd") <= 1.1 * mean(BASE, "clip_fd"),
    }


def example_video(out: Path, preset: CameraPreset, frames: int, resolution: int) -> None:
    """Scene 0 under every trajectory: rows = trajectories; columns = true | base | each arm (first seed)."""
    clips = requests(preset, frames, resolution)
    seed = preset.seeds[0]
    columns = [torch.load(out / "examples" / f"{tag}_seed{seed}.pt", weights_only=True)
               for tag in ("base", *ARMS.values())]
    rows = []
    for trajectory in TRAJECTORIES:
        rows += [clips[trajectory]["video"][0], *(column[trajectory] for column in columns)]
    grid = video_grid(torch.stack(rows), columns=2 + len(ARMS), scale=max(1, 64 // resolution))
    for suffix in ("gif", "mp4"):
        save_video(grid, out / f"trajectories.{suffix}", fps=4)


def run(out: Path, preset: CameraPreset, workers: int = 2) -> dict:
    """The whole reproduction; returns (and writes) the results."""
    out.mkdir(parents=True, exist_ok=True)
    frames, resolution = clip_size(load_video_model(base_folder(preset)))
    jobs = [(out, preset, variant, seed) for seed in preset.seeds for variant in ARMS.values()]
    records = map_in_processes(train_arm, jobs, workers, desc="camera arms × seeds")
    training = {name: [r for (_, _, variant, _), r in zip(jobs, records, strict=True) if variant == ARMS[name]]
                for name in ARMS}
    base_parameters = sum(p.numel() for p in load_video_model(base_folder(preset)).net.parameters())  # the DiT
    models = [(out, preset, name, seed) for seed in preset.seeds for name in (BASE, *ARMS)]
    scored = map_in_processes(_evaluation_job, models, workers, desc="generate and score")
    evaluation = references(preset, frames, resolution)
    for name in (BASE, *ARMS):
        evaluation[name] = summarise([s for (_, _, model, _), s in zip(models, scored, strict=True) if model == name])
    results = {"preset": asdict(preset), "paper": PAPER, "frames": frames, "resolution": resolution,
               "base_parameters": base_parameters, "training": training, "evaluation": evaluation,
               "goals": goals(evaluation)}
    example_video(out, preset, frames, resolution)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "report.md").write_text(report(results))
    return results


def report(results: dict) -> str:
    """A Markdown report of :func:`run`'s results (mean ± std over seeds)."""
    preset, training, evaluation = results["preset"], results["training"], results["evaluation"]
    seeds = len(preset["seeds"])
    lines = [
        f"# VD3D camera control, preset {preset['name']}",
        "",
        f"Base: {'genlab’s pretrained video base' if preset['base'] is None else preset['base']} "
        f"({results['base_parameters'] / 1e6:.2f} M parameters, {results['frames']} frames at "
        f"{results['resolution']}×{results['resolution']}). Each arm: {preset['camera_steps']} steps, batch "
        f"{preset['batch_size']}, lr {preset['lr']}, {preset['clips']} training clips; {seeds} seed(s). "
        f"{preset['eval_scenes']} held-out scenes × {len(TRAJECTORIES)} trajectories (odd scenes reversed), Heun "
        f"{preset['sampler_steps']} levels. Mean ± std over seeds.",
        "",
    ]

    def score(name: str, key: str, digits: int) -> str:
        value = evaluation[name].get(key)
        if value is None:
            return "–"
        return stat_text(value, digits) if isinstance(value, dict) else f"{value:.{digits}f}"

    def trained(name: str, key: str, digits: int) -> str:
        return stat_text(stat([r[key] for r in training[name]]), digits) if name in training else "–"

    rows = []
    for name in (TRUTH, STILL, BASE, *ARMS):
        params = (f"{stat([r['trainable_parameters'] for r in training[name]])['mean'] / 1e6:.2f} M"
                  if name in training else "–")
        rows.append([name, params, trained(name, "seconds_per_step", 3), trained(name, "optimiser_memory_mb", 1),
                     score(name, "rotation_deg", 2), score(name, "translation", 3), score(name, "discrimination", 2),
                     score(name, "psnr", 2), score(name, "frame_fd", 2), score(name, "clip_fd", 2)])
    floor = evaluation["true-vs-true floor"]
    rows.append(["true-vs-true floor (other scenes)", "–", "–", "–", "–", "–", "–", "–", f"{floor['frame_fd']:.2f}",
                 f"{floor['clip_fd']:.2f}"])
    lines += table(["model", "trainable params", "training s/step", "grads + Adam (MB)", "rotation error (°)",
                    "translation error", "discrimination", "PSNR vs true clip", "frame FD", "clip FD"], rows)
    for key, title, digits in (("rotation_deg", "Rotation error (°)", 2), ("translation", "Translation error", 3),
                               ("discrimination", "Discrimination accuracy", 2)):
        per = [[name, *(stat_text(evaluation[name]["per_trajectory"][t][key], digits)
                        if isinstance(evaluation[name]["per_trajectory"][t][key], dict)
                        else f"{evaluation[name]['per_trajectory'][t][key]:.{digits}f}" for t in TRAJECTORIES)]
               for name in (TRUTH, STILL, BASE, *ARMS)]
        lines += ["", f"{title} per requested trajectory:", "", *table(["model", *TRAJECTORIES], per)]
    lines += ["", "Goals:", "", *(f"- {goal}: {'yes' if met else 'no'}" for goal, met in results["goals"].items())]
    lines += ["", f"Paper: {results['paper']}", ""]
    return "\n".join(lines)
