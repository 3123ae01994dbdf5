"""``genlab reproduce camera``: VD3D's camera ControlNet at small scale on procedural 3-D scenes.

Steps (each cached in ``out``, so a stopped run resumes):

1. A pose estimator trained on rendered ground truth (the camera-following metric), and a base
   video DiT trained on clips of random scenes under random camera paths, conditioned on the first
   frame but given no camera: it must guess the motion. These two run side by side.
2. Two ways to add the camera, side by side from the same base: VD3D's ControlNet (a small branch
   on Plücker frames, base frozen) and the naive baseline (Plücker frames concatenated to the input,
   whole model fine-tuned); trainable parameters and training time per step are recorded.
3. Held-out scenes under each named trajectory: every model generates the clip from the true
   first frame (same noise for all); the estimator reads the cameras off the generated frames
   and they are compared with the requested ones (rotation error in degrees, translation error in
   scene units). Because the renderer can draw the requested clip exactly, PSNR against it is
   measured too, plus FD of the frames in the feature space of genlab's shapes classifier.
4. ``results.json``, ``report.md`` and a GIF/MP4 of one scene under every trajectory.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from genlab.base.video_model import VideoModelConfig, generate_videos, load_video_model, train_video_model
from genlab.camera.model import (
    CameraBlindDenoiser,
    load_camera_model,
    save_camera_model,
    trainable_parameters,
)
from genlab.camera.training import CameraModelConfig, clip_plucker, train_camera_model
from genlab.core.images import save_video, video_grid
from genlab.data import CameraVideoDataset, default_intrinsics, random_scenes, render
from genlab.data.trajectories import TRAJECTORIES, make_trajectory
from genlab.experiments.parallel import map_in_processes
from genlab.experiments.reporting import FrameFeatures, cells, seconds_per_step, table, timed_record
from genlab.metrics import (
    PoseEstimator,
    camera_errors,
    frechet_distance,
    psnr,
    train_pose_estimator,
)

PAPER = ("Bahmani et al. 2024 (VD3D): on a large video transformer (SnapVideo), a ControlNet-like branch on "
         "Plücker embeddings, base frozen, follows requested cameras far better than MotionCtrl- and "
         "CameraCtrl-style conditioning ported to the same model (lower rotation and translation error of "
         "ParticleSfM-estimated poses), at similar or better FID/FVD.")

MODELS = ("base (no camera)", "ControlNet (VD3D)", "concat + full fine-tune")
TEST_SEED = 1  # held-out scenes (training clips use data seed 0)


@dataclass(frozen=True)
class CameraPreset:
    name: str
    clips: int
    frames: int
    resolution: int
    size: str
    base_steps: int
    camera_steps: int
    batch_size: int
    lr: float
    branch_hidden: int
    branch_depth: int
    pose_clips: int
    pose_steps: int
    eval_scenes: int
    sampler_steps: int


PRESETS = {
    "full": CameraPreset("full", clips=3000, frames=8, resolution=32, size="tiny", base_steps=2500,
                         camera_steps=1500, batch_size=16, lr=1e-3, branch_hidden=96, branch_depth=2,
                         pose_clips=3000, pose_steps=3000, eval_scenes=24, sampler_steps=18),
    "quick": CameraPreset("quick", clips=300, frames=8, resolution=16, size="tiny", base_steps=250,
                          camera_steps=150, batch_size=16, lr=1e-3, branch_hidden=64, branch_depth=2,
                          pose_clips=300, pose_steps=300, eval_scenes=4, sampler_steps=10),
}


def train_base_job(out: Path, preset: CameraPreset) -> dict:
    """The base video model (first frame in, no camera)."""
    config = VideoModelConfig(clips=preset.clips, frames=preset.frames, resolution=preset.resolution,
                              size=preset.size, steps=preset.base_steps, batch_size=preset.batch_size, lr=preset.lr,
                              checkpoint_every=preset.base_steps, run_dir=str(out / "base"), progress=False,
                              overwrite=True)  # a stage without its record starts afresh

    def compute() -> dict:
        result = train_video_model(config)
        return {"steps": result.steps, "last_loss": result.last_loss, "seconds_per_step": seconds_per_step(out / "base")}

    return timed_record(out / "base", compute)


def train_camera_job(out: Path, preset: CameraPreset, variant: str) -> dict:
    """A camera model of ``variant`` (controlnet or concat) on top of the trained base."""
    config = CameraModelConfig(base=str(out / "base"), variant=variant, clips=preset.clips,
                               branch_hidden=preset.branch_hidden, branch_depth=preset.branch_depth,
                               steps=preset.camera_steps, batch_size=preset.batch_size, lr=preset.lr,
                               checkpoint_every=preset.camera_steps, run_dir=str(out / variant), progress=False,
                               overwrite=True)

    def compute() -> dict:
        result = train_camera_model(config)
        return {"steps": result.steps, "last_loss": result.last_loss, "seconds_per_step": seconds_per_step(out / variant),
                "trainable_parameters": trainable_parameters(load_camera_model(out / variant).train())}

    return timed_record(out / variant, compute)


def train_estimator_job(out: Path, preset: CameraPreset) -> dict:
    """The pose estimator, on ground-truth clips of the training scenes."""
    def compute() -> dict:
        data = CameraVideoDataset(preset.pose_clips, preset.frames, preset.resolution, seed=0)
        estimator = train_pose_estimator(data.videos, data.camera_to_world, steps=preset.pose_steps)
        estimator.save_pretrained(out / "pose_estimator")
        return {"clips": preset.pose_clips, "steps": preset.pose_steps}

    return timed_record(out / "pose_estimator", compute)


def _train_job(out: Path, preset: CameraPreset, job: str) -> dict:
    if job == "base":
        return train_base_job(out, preset)
    if job == "estimator":
        return train_estimator_job(out, preset)
    return train_camera_job(out, preset, job)


def requested_clips(preset: CameraPreset) -> dict[str, dict[str, torch.Tensor]]:
    """For each named trajectory: its poses, the held-out scenes' true clips, and their Plücker frames."""
    scenes = random_scenes(preset.eval_scenes, seed=TEST_SEED)
    intrinsics = default_intrinsics(preset.resolution).expand(preset.eval_scenes, preset.frames, 3, 3)
    clips = {}
    for name in TRAJECTORIES:
        poses = make_trajectory(name, preset.frames).expand(preset.eval_scenes, -1, -1, -1)
        clips[name] = {"poses": poses, "video": render(scenes, poses, intrinsics, preset.resolution),
                       "plucker": clip_plucker(poses, intrinsics, preset.resolution)}
    return clips


def evaluate(out: Path, preset: CameraPreset) -> dict:
    """Camera errors, PSNR against the true clip and FD for every model and trajectory."""
    clips = requested_clips(preset)
    estimator = PoseEstimator.from_pretrained(out / "pose_estimator").eval()
    frame_features = FrameFeatures()
    true_videos = torch.cat([c["video"] for c in clips.values()])
    results = {"ground truth": _scores(estimator, clips, {n: c["video"] for n, c in clips.items()})}
    results["no camera motion"] = _scores(estimator, clips, {n: c["video"][:, :1].expand_as(c["video"])
                                                            for n, c in clips.items()})
    generated_for_gif = {}
    for name, folder in zip(MODELS, ("base", "controlnet", "concat"), strict=True):
        model = load_camera_model(out / folder if folder != "base" else _blind_model_folder(out))
        generated = {}
        for trajectory, clip in clips.items():
            first = clip["video"][:, 0]
            generated[trajectory] = generate_videos(model, tuple(clip["video"].shape), steps=preset.sampler_steps,
                                                    seed=0, plucker=clip["plucker"],
                                                    **model.first_frame_kwargs(first))
        results[name] = _scores(estimator, clips, generated)
        results[name]["fd"] = frechet_distance(frame_features(true_videos),
                                               frame_features(torch.cat(list(generated.values()))))
        generated_for_gif[name] = {t: v[0] for t, v in generated.items()}
    torch.save(generated_for_gif, out / "example_clips.pt")
    return results


def _blind_model_folder(out: Path) -> Path:
    """The base model wrapped as a camera model that ignores the camera (written once)."""
    folder = out / "base_camera_blind"
    if not (folder / "genlab.json").exists():
        save_camera_model(CameraBlindDenoiser(load_video_model(out / "base")), folder)
    return folder


def _scores(estimator: PoseEstimator, clips: dict, videos: dict[str, torch.Tensor]) -> dict:
    """Camera errors (mean over scenes, per trajectory and overall) and PSNR against the true clips."""
    per_trajectory = {}
    for trajectory, clip in clips.items():
        estimated = estimator.estimate(videos[trajectory])
        errors = camera_errors(estimated, clip["poses"])
        later = slice(1, None)  # frame 0 is given
        per_trajectory[trajectory] = {
            "rotation_deg": float(errors["rotation_deg"].mean()),
            "translation": float(errors["translation"].mean()),
            "psnr": float(psnr(videos[trajectory][:, later].flatten(0, 1), clip["video"][:, later].flatten(0, 1)).mean()),
        }
    overall = {key: sum(r[key] for r in per_trajectory.values()) / len(per_trajectory)
               for key in ("rotation_deg", "translation", "psnr")}
    return {**overall, "per_trajectory": per_trajectory}


def example_video(out: Path, preset: CameraPreset) -> None:
    """One held-out scene under every trajectory: rows = trajectories; columns = true | base | ControlNet | concat."""
    clips = requested_clips(preset)
    generated = torch.load(out / "example_clips.pt", weights_only=True)
    rows = []
    for trajectory in TRAJECTORIES:
        rows += [clips[trajectory]["video"][0]] + [generated[name][trajectory] for name in MODELS]
    frames = video_grid(torch.stack(rows), columns=1 + len(MODELS), scale=max(1, 64 // preset.resolution))
    for suffix in ("gif", "mp4"):
        save_video(frames, out / f"trajectories.{suffix}", fps=4)


def run(out: Path, preset: CameraPreset, workers: int = 2) -> dict:
    """The whole reproduction; returns (and writes) the results."""
    out.mkdir(parents=True, exist_ok=True)
    first = map_in_processes(_train_job, [(out, preset, "estimator"), (out, preset, "base")], workers,
                             desc="pose estimator and base model")
    second = map_in_processes(_train_job, [(out, preset, "controlnet"), (out, preset, "concat")], workers,
                              desc="ControlNet and concat baseline")
    training = {"pose estimator": first[0], MODELS[0]: first[1], MODELS[1]: second[0], MODELS[2]: second[1]}
    base_parameters = sum(p.numel() for p in load_camera_model(_blind_model_folder(out)).parameters())
    training[MODELS[0]]["trainable_parameters"] = base_parameters
    results = {"preset": asdict(preset), "paper": PAPER, "training": training, "evaluation": evaluate(out, preset)}
    example_video(out, preset)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "report.md").write_text(report(results))
    return results


def report(results: dict) -> str:
    """A Markdown report of :func:`run`'s results."""
    preset, training, evaluation = results["preset"], results["training"], results["evaluation"]
    lines = [
        f"# VD3D camera control, preset {preset['name']}",
        "",
        f"{preset['clips']} training clips of {preset['frames']} frames at {preset['resolution']}×{preset['resolution']}; "
        f"base {preset['base_steps']} steps, camera models {preset['camera_steps']} steps (batch {preset['batch_size']}); "
        f"{preset['eval_scenes']} held-out scenes × {len(TRAJECTORIES)} trajectories, Heun {preset['sampler_steps']} levels.",
        "",
    ]
    errors = (("rotation_deg", ".2f"), ("translation", ".3f"))
    estimator = [[f"{name} (estimator)", "–", "–", *cells(evaluation[name], errors), psnr, "–"]
                 for name, psnr in (("ground truth", "∞"), ("no camera motion", f"{evaluation['no camera motion']['psnr']:.2f}"))]
    models = [[name, f"{training[name]['trainable_parameters'] / 1e6:.2f} M", f"{training[name]['seconds_per_step']:.3f}",
               *cells(evaluation[name], (*errors, ("psnr", ".2f"), ("fd", ".2f")))] for name in MODELS]
    lines += table(["model", "trainable params", "training s/step", "rotation error (°)", "translation error",
                    "PSNR vs true clip", "FD"], estimator + models)
    lines += ["", "Rotation error (°) per trajectory:", "",
              *table(["model", *TRAJECTORIES],
                     ([name, *(f"{evaluation[name]['per_trajectory'][t]['rotation_deg']:.2f}" for t in TRAJECTORIES)]
                      for name in ("ground truth", "no camera motion", *MODELS)))]
    lines += ["", f"Paper: {results['paper']}", ""]
    return "\n".join(lines)
