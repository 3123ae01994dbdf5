"""Settings of ``genlab train camera`` and ``genlab sample camera``, importable without torch (``genlab --help``
reads them)."""

from __future__ import annotations

from dataclasses import MISSING, dataclass

from genlab.base.config import SceneClipsConfig
from genlab.core.config import MAX_SEED, LoopConfig, option
from genlab.errors import GenlabError

TRAJECTORY_NAMES = ("orbit", "pan", "tilt", "dolly", "random")  # the keys of genlab.data.trajectories.TRAJECTORIES


@dataclass
class CameraModelConfig(SceneClipsConfig, LoopConfig):
    """Everything ``genlab train camera`` needs; frames and resolution come from the base model."""

    steps: int = option(1500, "total optimiser steps", min=1)
    batch_size: int = option(16, "global batch size (split across processes)", min=1)
    lr: float = option(1e-3, "peak learning rate (Adam)", above=0)
    base: str = option("pretrained", "video model to add cameras to: 'pretrained' (the video base shipped with "
                       "genlab) or a run folder of `genlab train video` (or its model/)")
    variant: str = option("controlnet", "controlnet: VD3D branch, base frozen; encoder: CameraCtrl-style camera "
                          "encoder added inside the frozen base's blocks; concat: MotionCtrl-style, Plücker "
                          "concatenated to the input, whole model fine-tuned; none: whole model fine-tuned without "
                          "any camera (a control)", choices=("controlnet", "encoder", "concat", "none"))
    branch_hidden: int = option(96, "width of the ControlNet branch or camera encoder", min=1)
    branch_depth: int = option(2, "blocks of the ControlNet branch (= base blocks it feeds; the encoder feeds them "
                               "all)", min=1)
    window_start: float = option(0.0, "the branch runs for diffusion times in [window-start, window-end] "
                                 "(0 = clean, 1 = pure noise)", min=0, max=1)
    window_end: float = option(1.0, "end of the branch's activity window", min=0, max=1)
    run_dir: str = option("runs/train/camera", "run folder: config, checkpoints, log, figures, model")
    resume: bool = option(False, "continue the run in --run-dir from its latest checkpoint")

    def validate(self) -> None:
        super().validate()
        if self.window_start >= self.window_end:
            raise GenlabError(f"--window-start {self.window_start} must be below --window-end {self.window_end}: "
                              "the branch would never run")


@dataclass
class CameraSampleConfig:
    """What ``genlab sample camera`` generates: the camera model, the requested camera path, the scene or
    prompt the clip starts from, the sampler and the video it writes."""

    model: str = option(MISSING, "camera model (run folder of `genlab train camera`, or a saved camera model on a "
                        "local CogVideoX folder)", type=str)
    trajectory: str = option("orbit", "requested camera path", choices=TRAJECTORY_NAMES)
    strength: float | None = option(None, "size of the motion (radians for orbit/pan/tilt, share of the distance "
                                    "for dolly); default: the trajectory's", type=float)
    poses: str | None = option(None, "a .npy file of camera-to-world poses [T, 4, 4] (OpenCV axes) instead of "
                               "--trajectory", type=str)
    scene: int = option(0, "seed of the procedural scene whose first frame starts the clip", min=0, max=MAX_SEED)
    sampling_steps: int = option(18, "Heun noise levels", renamed_from="--steps", min=1)
    seed: int = option(0, "seed of the sampling noise (and of a random trajectory)", min=0, max=MAX_SEED)
    out: str = option("runs/sample/camera.gif", "video to write (.gif or .mp4)")
    prompt: str | None = option(None, "CogVideoX models: text prompt (needs the folder's text_encoder/ and "
                                "tokenizer/; default: the empty prompt, or zero embeddings without a text encoder)",
                                type=str)
    guidance_scale: float = option(1.0, "CogVideoX models: classifier-free guidance scale (1 = off; CogVideoX's own "
                                   "default is 6)", min=1)
