"""Settings of ``genlab train camera``, importable without torch (``genlab --help`` reads them)."""

from __future__ import annotations

from dataclasses import dataclass

from genlab.base.config import SceneClipsConfig
from genlab.core.config import LoopConfig, option
from genlab.errors import GenlabError


@dataclass
class CameraModelConfig(SceneClipsConfig, LoopConfig):
    """Everything ``genlab train camera`` needs; frames and resolution come from the base model."""

    steps: int = option(1500, "total optimiser steps", min=1)
    batch_size: int = option(16, "global batch size (split across processes)", min=1)
    lr: float = option(1e-3, "peak learning rate (Adam)", above=0)
    base: str = option("runs/train/video", "trained video model (run folder or its model/) to add cameras to")
    variant: str = option("controlnet", "controlnet: VD3D branch, base frozen; concat: Plücker concatenated to "
                          "the input, whole model fine-tuned", choices=("controlnet", "concat"))
    branch_hidden: int = option(96, "width of the ControlNet branch", min=1)
    branch_depth: int = option(2, "blocks of the ControlNet branch (= base blocks it feeds)", min=1)
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
