"""The video and camera-control commands of the ``genlab`` CLI: ``train video``, ``train camera`` and
``sample camera`` (registered on the groups in :mod:`genlab.cli`; ``reproduce camera`` is made in
:mod:`genlab.cli.reproduce`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from genlab.base.config import VideoModelConfig
from genlab.camera.config import CameraModelConfig, CameraSampleConfig
from genlab.cli.options import build_config, options_from, run_training
from genlab.core.paths import VIDEO_SUFFIXES, existing_dir, existing_file, output_file
from genlab.errors import GenlabError

if TYPE_CHECKING:
    import torch


@click.command("video")
@options_from(VideoModelConfig)
def train_video_command(**values) -> None:
    """Train a video diffusion transformer (EDM) on procedural 3-D scene clips.

    Clips show 3-5 coloured objects on a checkered ground under random camera paths (orbit, pan,
    tilt, dolly, smooth random). --first-frame (default) conditions on the clip's first frame
    (image-to-video); the model gets no camera, so it must guess the motion. --attention picks full
    space-time attention or factorised (space, then time). The EMA model goes to <run-dir>/model;
    add a camera input with `genlab train camera --base <run-dir>`.
    """
    from genlab.base.video_model import train_video_model

    run_training(train_video_model, VideoModelConfig, values, "video model")


@click.command("camera")
@options_from(CameraModelConfig)
def train_camera_command(**values) -> None:
    """Add camera control to a trained video model (VD3D).

    --variant controlnet: a small trainable branch reads the Plücker embedding of each frame's camera
    (relative to frame 0) and adds its output, through zero-initialised projections, to the hidden
    states of the frozen base's first --branch-depth blocks; it runs only for diffusion times in
    [--window-start, --window-end]. --variant encoder (CameraCtrl-style): a camera encoder that sees
    only the Plücker frames adds its features inside every block of the frozen base. --variant concat
    (MotionCtrl-style): Plücker frames concatenated to the input and the whole model fine-tuned.
    --variant none: the whole model fine-tuned without any camera (a control). The model goes to
    <run-dir>/model.
    """
    from genlab.camera.training import train_camera_model

    run_training(train_camera_model, CameraModelConfig, values, "camera model")


def _requested_poses(config: CameraSampleConfig, frames: int) -> torch.Tensor:
    """Camera-to-world poses ``[frames, 4, 4]``: the named ``--trajectory`` or the ``--poses`` file."""
    import numpy as np
    import torch

    from genlab.data.trajectories import check_cameras, make_trajectory

    if config.poses is None:
        return make_trajectory(config.trajectory, frames, strength=config.strength, seed=config.seed)
    try:
        poses = torch.from_numpy(np.load(config.poses)).to(torch.float64)
    except (OSError, ValueError) as error:
        raise GenlabError(f"--poses {config.poses}: cannot read a .npy array ({error})") from error
    if poses.shape != (frames, 4, 4):
        raise GenlabError(f"--poses must hold one camera-to-world matrix per frame of the clip, [{frames}, 4, 4]; "
                          f"got {list(poses.shape)}")
    check_cameras(poses)
    return poses


@click.command("camera")
@options_from(CameraSampleConfig)
def sample_camera_command(**values) -> None:
    """Generate a clip that follows a requested camera path, beside the path's true rendering.

    The clip starts from the first frame of procedural scene --scene; the video shows the generated
    clip (left) and the scene rendered along the requested cameras (right). A camera model on a
    CogVideoX base instead makes a clip at CogVideoX's native size from --prompt (no --scene, no
    rendering), on CUDA when available.
    """
    import torch

    from genlab.base.video_model import clip_size, generate_videos
    from genlab.camera.cogvideox import CogVideoXDenoiser
    from genlab.camera.model import load_camera_model
    from genlab.camera.training import model_plucker
    from genlab.core.images import save_video, video_grid
    from genlab.data import default_intrinsics, random_scenes, render

    config = build_config(CameraSampleConfig, values)
    output_file(config.out, VIDEO_SUFFIXES)
    if config.poses is not None:
        existing_file(config.poses, "--poses")
    model = load_camera_model(existing_dir(config.model, "--model"))
    if isinstance(getattr(model, "base", None), CogVideoXDenoiser):
        _sample_cogvideox_camera(model, config)
        return
    if config.prompt is not None or config.guidance_scale != 1:
        raise GenlabError("--prompt and --guidance-scale apply only to camera models on a CogVideoX base")
    frames, resolution = clip_size(model)
    poses = _requested_poses(config, frames)[None]
    intrinsics = default_intrinsics(resolution).expand(1, frames, 3, 3)
    truth = render(random_scenes(1, seed=config.scene), poses, intrinsics, resolution)
    clip = generate_videos(model, tuple(truth.shape), steps=config.sampling_steps, seed=config.seed,
                           plucker=model_plucker(model, poses, intrinsics, resolution),
                           **model.first_frame_kwargs(truth[:, 0]))
    save_video(video_grid(torch.cat([clip, truth]), columns=2, scale=max(1, 128 // resolution)), config.out, fps=4)
    click.echo(f"{frames} frames ({model.variant} model) in {config.out} (left: generated, right: true rendering)")


def _sample_cogvideox_camera(model, config: CameraSampleConfig) -> None:
    """``genlab sample camera`` for a camera model on a CogVideoX base: the generated clip alone, at 8 fps."""
    import torch

    from genlab.camera.cogvideox import clip_geometry, generate_camera_clip
    from genlab.core.images import save_video, video_grid

    geometry = clip_geometry(model.base)
    poses = _requested_poses(config, geometry.frames)
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    clip = generate_camera_clip(model, poses, steps=config.sampling_steps, seed=config.seed, prompt=config.prompt or "",
                                guidance_scale=config.guidance_scale, progress=True)
    save_video(video_grid(clip.cpu(), columns=1, padding=0, scale=max(1, 128 // geometry.width)), config.out, fps=8)
    click.echo(f"{geometry.frames} frames ({model.variant} model on CogVideoX {model.base.folder}) in {config.out}")
