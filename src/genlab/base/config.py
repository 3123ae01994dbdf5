"""Settings of the base image and video models, importable without torch (``genlab --help`` reads them).

:class:`ImageModelConfig` and :class:`VideoModelConfig` extend the loop's :class:`~genlab.core.config.LoopConfig`
with the flags of ``genlab train image`` and ``genlab train video``.
"""

from __future__ import annotations

from dataclasses import dataclass

from genlab.core.config import ATTENTION_MODES, MAX_SEED, MODEL_SIZES, VIDEO_SIZES, LoopConfig, option
from genlab.data import DATASETS
from genlab.errors import GenlabError

VIDEO_DATA = ("scenes", "sprites", "mixed")


@dataclass
class ImageModelConfig(LoopConfig):
    """Everything ``genlab train`` needs for an image diffusion model."""

    data: str = option("digits", "data set", choices=DATASETS)
    resolution: int | None = option(None, "image size in pixels (default: the data set's)", type=int, min=8)
    arch: str = option("unet", "backbone", choices=tuple(MODEL_SIZES))
    size: str = option("tiny", "backbone size preset", choices=("tiny", "small"))
    conditional: bool = option(True, "class-conditional model (else unconditional)")
    label_dropout: float = option(0.0, "probability of replacing the label by the null label (for CFG)", min=0, max=0.99)
    run_dir: str = option("runs/train/default", "run folder: config, checkpoints, log, figures, model")
    resume: bool = option(False, "continue the run in --run-dir from its latest checkpoint")

    def validate(self) -> None:
        super().validate()
        if not 0 <= self.label_dropout < 1:
            raise GenlabError(f"--label-dropout must be in [0, 1), got {self.label_dropout}")
        if self.label_dropout > 0 and not self.conditional:
            raise GenlabError("--label-dropout needs a --conditional model")


@dataclass
class SceneClipsConfig:
    """Which procedural scene clips to train on (shared by ``genlab train video`` and ``train camera``)."""

    clips: int = option(2000, "number of training clips (3-D scenes under random camera paths)", min=1)
    data_seed: int = option(0, "seed of the scenes and camera paths", min=0, max=MAX_SEED)


@dataclass
class VideoModelConfig(SceneClipsConfig, LoopConfig):
    """Everything ``genlab train video`` needs."""

    steps: int = option(3000, "total optimiser steps", min=1)
    batch_size: int = option(16, "global batch size (split across processes)", min=1)
    lr: float = option(1e-3, "peak learning rate (Adam)", above=0)
    frames: int = option(8, "frames per clip", min=2)
    resolution: int = option(32, "frame size in pixels", min=4)
    size: str = option("tiny", "backbone size preset", choices=tuple(VIDEO_SIZES))
    attention: str = option("full", "space-time attention: full, or factorised (space, then time)",
                            choices=ATTENTION_MODES)
    first_frame: bool = option(True, "condition on the clip's first frame (image-to-video)")
    first_frame_dropout: float = option(0.0, "probability of hiding a training clip's first frame (an all-zero "
                                        "condition), so that a first-frame model also samples without one",
                                        min=0, max=0.99)
    data: str = option("scenes", "training clips: 3-D scenes under camera paths, moving sprites, or mixed (half "
                       "each)", choices=VIDEO_DATA)
    autoencoder: str | None = option(None, "frame autoencoder folder: train a latent video model (the DiT denoises "
                                     "the autoencoder's latents, as CogVideoX-class models do); none: pixels",
                                     type=str)
    patch_size: int | None = option(None, "patch size of the DiT (default: the size preset's)", type=int, min=1)
    run_dir: str = option("runs/train/video", "run folder: config, checkpoints, log, figures, model")
    resume: bool = option(False, "continue the run in --run-dir from its latest checkpoint")

    @property
    def patch(self) -> int:
        """The DiT's patch size (``--patch-size``, else the size preset's)."""
        return self.patch_size if self.patch_size is not None else VIDEO_SIZES[self.size]["patch_size"]

    def validate(self) -> None:
        super().validate()
        if self.first_frame_dropout > 0 and not self.first_frame:
            raise GenlabError("--first-frame-dropout needs a --first-frame model")
        if self.autoencoder is None and self.resolution % self.patch:
            raise GenlabError(f"--resolution must be a multiple of the patch size {self.patch}, got {self.resolution}")


@dataclass
class AutoencoderConfig(SceneClipsConfig, LoopConfig):
    """Everything ``scripts/train_video_base.py`` needs for the frame autoencoder of a latent video model."""

    steps: int = option(3000, "total optimiser steps", min=1)
    batch_size: int = option(32, "frames per step", min=1)
    lr: float = option(1e-3, "peak learning rate (Adam)", above=0)
    frames: int = option(8, "frames per clip", min=2)
    resolution: int = option(32, "frame size in pixels", min=4)
    data: str = option("mixed", "training clips: 3-D scenes, moving sprites, or mixed (half each)", choices=VIDEO_DATA)
    latent_channels: int = option(4, "channels of a latent cell", min=1)
    width: int = option(32, "convolution channels at full size (twice that below)", min=1)
    downsamples: int = option(2, "halvings of the frame size: a latent cell covers 2**downsamples pixels a side", min=1)
    run_dir: str = option("runs/train/autoencoder", "run folder: config, checkpoints, log, figures, model")
    resume: bool = option(False, "continue the run in --run-dir from its latest checkpoint")

    def validate(self) -> None:
        super().validate()
        if self.resolution % 2**self.downsamples:
            raise GenlabError(f"--resolution must be a multiple of 2**downsamples = {2**self.downsamples}, "
                              f"got {self.resolution}")
