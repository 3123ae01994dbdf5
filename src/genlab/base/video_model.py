"""EDM video models on the procedural 3-D scene clips, end to end.

``train_video_model(config)`` trains a :class:`~genlab.core.nets.VideoDiT` with the shared loop on
:class:`~genlab.data.CameraVideoDataset` clips and/or moving sprites (optionally conditioned on the clip's first frame)
and exports the EMA weights to ``<run_dir>/model``; ``load_video_model(path)`` reads them back as
an :class:`~genlab.core.denoiser.EDMDenoiser`; ``generate_videos`` samples clips with genlab's EDM
samplers. This model carries no camera input: ``genlab train camera`` adds one.
"""

from __future__ import annotations

from dataclasses import asdict
from functools import partial
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from genlab.base.autoencoder import decode_videos, encode_videos, load_autoencoder
from genlab.base.config import VIDEO_DATA, VideoModelConfig
from genlab.base.info import MODEL_INFO_FILE, VideoModelInfo
from genlab.core.checkpoint import json_field, read_json
from genlab.core.config import SAMPLERS, VIDEO_SIZES
from genlab.core.denoiser import EDMDenoiser
from genlab.core.edm import EDMSchedule, edm_loss, karras_sigmas, sample
from genlab.core.loading import load_pretrained
from genlab.core.nets import VideoDiT
from genlab.core.nets.autoencoder import FrameAutoencoder
from genlab.core.nets.video_dit import first_frame_condition
from genlab.core.train import Trainer, TrainResult, unwrap
from genlab.errors import GenlabError

PRETRAINED_VIDEO_DIR = Path(__file__).resolve().parent / "weights" / "video"  # written by scripts/train_video_base.py
AUTOENCODER_FOLDER = "autoencoder"  # a latent video model keeps its frame autoencoder in this subfolder
PRETRAINED = "pretrained"  # the name that stands for the shipped video base wherever a video model is asked for


def scene_clips(clips: int, frames: int, resolution: int, seed: int, progress: bool = True):
    """Training clips: :class:`~genlab.data.CameraVideoDataset` items ``(video, camera_to_world, K, trajectory)``."""
    from genlab.data import CameraVideoDataset

    if clips < 1 or frames < 2 or resolution < 8:
        raise GenlabError(f"need --clips >= 1, --frames >= 2 and --resolution >= 8; got {clips}, {frames} "
                          f"and {resolution}")
    return CameraVideoDataset(clips, frames, resolution, seed, progress=progress)


def video_clips(data: str, clips: int, frames: int, resolution: int, seed: int, progress: bool = True):
    """Training clips whose items start with the video ``[T, 3, R, R]``: 3-D ``scenes``, moving
    ``sprites``, or ``mixed`` (half of each)."""
    from genlab.data.sprites import VideoClips, moving_sprites

    if data not in VIDEO_DATA:
        raise GenlabError(f"--data must be one of {', '.join(VIDEO_DATA)}, got {data!r}")
    if data == "scenes":
        return scene_clips(clips, frames, resolution, seed, progress)
    sprite_count = clips if data == "sprites" else clips - clips // 2
    videos = moving_sprites(sprite_count, frames, resolution, seed)
    if data == "mixed" and clips // 2:
        videos = torch.cat([scene_clips(clips // 2, frames, resolution, seed, progress).videos, videos])
    return VideoClips(videos)


class LatentVideoDenoiser(EDMDenoiser):
    """An EDM video denoiser whose net works on the normalised latents of a frozen frame ``autoencoder``
    (``[B, T, latent_channels, H / f, W / f]`` for clips ``[B, T, 3, H, W]``). Called like any denoiser, in latent
    space; :func:`generate_videos` decodes what it samples and :func:`model_frames` encodes pixel frames."""

    def __init__(self, net: VideoDiT, schedule: EDMSchedule, autoencoder: FrameAutoencoder) -> None:
        super().__init__(net, schedule)
        self.autoencoder = autoencoder.requires_grad_(False).eval()


def autoencoder_of(denoiser) -> FrameAutoencoder | None:
    """The frame autoencoder of a latent video model (or of a camera model around one); None for a pixel model."""
    return getattr(denoiser, "autoencoder", None)


def model_frames(denoiser, frames: Tensor) -> Tensor:
    """Pixel frames ``[B, 3, H, W]`` in the space ``denoiser`` works in (normalised latents for a latent model)."""
    autoencoder = autoencoder_of(denoiser)
    return frames if autoencoder is None else encode_videos(autoencoder, frames[:, None])[:, 0]


def clip_size(denoiser) -> tuple[int, int]:
    """``(frames, resolution in pixels)`` of the clips a genlab video denoiser (or a camera model on one) makes."""
    backbone = denoiser.backbone if hasattr(denoiser, "backbone") else denoiser.net
    autoencoder = autoencoder_of(denoiser)
    return backbone.config.frames, backbone.config.resolution * (1 if autoencoder is None else autoencoder.factor)


def model_videos(denoiser, videos: Tensor) -> Tensor:
    """Pixel clips ``[B, T, 3, H, W]`` in the space ``denoiser`` works in (normalised latents for a latent model)."""
    autoencoder = autoencoder_of(denoiser)
    return videos if autoencoder is None else encode_videos(autoencoder, videos)


def model_shape(denoiser, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape, in the space ``denoiser`` works in, of pixel clips ``shape = (N, T, C, H, W)``."""
    autoencoder = autoencoder_of(denoiser)
    if autoencoder is None:
        return tuple(shape)
    n, t, _, h, w = shape
    f = autoencoder.factor
    return n, t, autoencoder.config.latent_channels, h // f, w // f


def build_video_denoiser(config: VideoModelConfig, autoencoder: FrameAutoencoder | None = None) -> EDMDenoiser:
    """A freshly initialised (seeded) EDM video denoiser for ``config``; with ``autoencoder``, a latent one."""
    torch.manual_seed(config.seed)
    channels, resolution = 3, config.resolution
    if autoencoder is not None:
        channels, resolution = autoencoder.config.latent_channels, config.resolution // autoencoder.factor
    sizes = {**VIDEO_SIZES[config.size], "patch_size": config.patch}
    if resolution % config.patch:
        raise GenlabError(f"the DiT's input size {resolution} must be a multiple of the patch size {config.patch}")
    net = VideoDiT(in_channels=channels, frames=config.frames, resolution=resolution, attention=config.attention,
                   condition_channels=channels if config.first_frame else 0, **sizes)
    if autoencoder is None:
        return EDMDenoiser(net, EDMSchedule())
    return LatentVideoDenoiser(net, EDMSchedule(), autoencoder)


def first_frame_kwargs(net: VideoDiT, first_frames: Tensor) -> dict[str, Tensor]:
    """The conditioning keywords of a video net for clips starting with ``first_frames [B, C, H, W]``.

    An all-zero first frame means "no first frame": a model trained with ``first_frame_dropout``
    samples unconditionally from it (see :func:`no_first_frame`).
    """
    if net.config.condition_channels == 0:
        return {}
    return {"condition": first_frame_condition(first_frames, net.config.frames)}


def no_first_frame(net: VideoDiT, clips: int) -> dict[str, Tensor]:
    """The conditioning keywords for ``clips`` unconditional clips (empty for a net without a first frame)."""
    cfg = net.config
    return first_frame_kwargs(net, torch.zeros(clips, cfg.in_channels, cfg.resolution, cfg.resolution))


def video_loss(denoiser: EDMDenoiser, batch: tuple, first_frame_dropout: float = 0.0) -> Tensor:
    """EDM loss on a batch of clips ``(videos [B, T, 3, H, W], ...)``, conditioned as the net expects; each
    clip's first frame is hidden (zeroed) with probability ``first_frame_dropout``."""
    videos = batch[0]
    first = videos[:, 0]
    if first_frame_dropout > 0:
        shown = torch.rand(len(videos), device=videos.device) >= first_frame_dropout
        first = first * shown[:, None, None, None].to(first.dtype)
    return edm_loss(denoiser, videos, **first_frame_kwargs(unwrap(denoiser).net, first)).mean()


def train_video_model(config: VideoModelConfig) -> TrainResult:
    """Train (or resume) a video model; export EMA weights to ``<run_dir>/model``."""
    config.validate()
    dataset = video_clips(config.data, config.clips, config.frames, config.resolution, config.data_seed,
                          config.progress)
    autoencoder = load_autoencoder(config.autoencoder) if config.autoencoder is not None else None
    denoiser = build_video_denoiser(config, autoencoder)
    if autoencoder is not None:  # the latents are computed once; the DiT trains on them alone
        dataset = TensorDataset(encode_videos(autoencoder, dataset.video_tensor()))
        denoiser = EDMDenoiser(denoiser.net, denoiser.schedule)
    loss = partial(video_loss, first_frame_dropout=config.first_frame_dropout)
    trainer = Trainer(denoiser, loss, dataset, config.run_dir, config, {**asdict(config), "method": "video"})
    result = trainer.fit(resume=config.resume)
    model = result.ema_model
    if autoencoder is not None:
        model = LatentVideoDenoiser(model.net, model.schedule, autoencoder)
    trainer.export(save_video_model, model, Path(config.run_dir) / "model")
    return result


def save_video_model(denoiser: EDMDenoiser, folder: Path) -> None:
    """Write ``denoiser`` as ``save_pretrained`` weights plus ``genlab.json`` (σ settings)."""
    denoiser.net.save_pretrained(folder)
    autoencoder = autoencoder_of(denoiser)
    if autoencoder is not None:
        autoencoder.save_pretrained(Path(folder) / AUTOENCODER_FOLDER)
    VideoModelInfo(type(denoiser.net).__name__, denoiser.schedule,
                   None if autoencoder is None else AUTOENCODER_FOLDER).save(folder)


def read_model_info(path: Path | str, method: str, train_hint: str) -> tuple[Path, dict]:
    """``(folder, info)`` of a genlab model saved with a ``genlab.json`` naming ``method``, ``info`` the file's
    JSON object (for the method's ``from_json`` to read, e.g. :meth:`VideoModelInfo.from_json`).

    ``path`` is the model folder or a run folder holding it in ``model/``; ``train_hint`` says how
    to make one (shown when there is none, or when the folder holds another method's model).
    """
    folder = Path(path)
    if not folder.is_dir():
        state = "is a file, not a model folder or run folder" if folder.exists() else "does not exist"
        raise GenlabError(f"{path} holds no genlab {method} model: it {state}; {train_hint}")
    if (folder / "model" / MODEL_INFO_FILE).is_file():
        folder = folder / "model"
    info = read_json(folder / MODEL_INFO_FILE, f"{path} holds no genlab {method} model (no {MODEL_INFO_FILE}); "
                     f"{train_hint}")
    found = json_field(info, "method", str, folder / MODEL_INFO_FILE) if "method" in info else "image"
    if found != method:
        article = "an" if method[0] in "aeiou" else "a"
        raise GenlabError(f"{path} holds a {found} model, not {article} {method} model; {train_hint}")
    return folder, info


def load_video_model(path: Path | str) -> EDMDenoiser:
    """Load a model saved by :func:`save_video_model` from a run folder or its ``model/`` folder (eval mode);
    ``"pretrained"`` loads the video base shipped with genlab (see its ``MODEL_CARD.md``)."""
    path = PRETRAINED_VIDEO_DIR if str(path) == PRETRAINED else path
    folder, saved = read_model_info(path, "video", "train one with `genlab train video`")
    info = VideoModelInfo.from_json(saved, folder / MODEL_INFO_FILE)
    net = load_pretrained(VideoDiT, folder, "video model")
    if info.autoencoder is None:
        return EDMDenoiser(net, info.schedule).eval()
    return LatentVideoDenoiser(net, info.schedule, load_autoencoder(folder / info.autoencoder)).eval()


@torch.no_grad()
def generate_videos(denoiser, shape: tuple[int, ...], steps: int = 18, sampler: str = "heun", seed: int = 0,
                    batch_size: int = 32, progress: bool = False, schedule: EDMSchedule = EDMSchedule(),
                    **per_clip: Tensor) -> Tensor:
    """Sample clips of ``shape = (N, T, C, H, W)`` in ``[-1, 1]``.

    ``per_clip`` conditions (``[N, ...]`` tensors, e.g. ``condition`` or ``plucker``) are batched with
    the clips; the initial noise comes from one generator seeded by ``seed``, so the result does not
    depend on ``batch_size``.
    """
    if sampler not in SAMPLERS:
        raise GenlabError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(model_shape(denoiser, shape), generator=generator)
    sigmas = karras_sigmas(steps, schedule.sigma_min, schedule.sigma_max, schedule.rho)
    autoencoder = autoencoder_of(denoiser)
    chunks = []
    for start in range(0, shape[0], batch_size):
        cond = {key: value[start : start + batch_size] for key, value in per_clip.items()}
        clips = sample(denoiser, noise[start : start + batch_size], sigmas, sampler, generator=generator,
                       progress=progress, **cond)
        chunks.append(clips if autoencoder is None else decode_videos(autoencoder, clips))
    return torch.cat(chunks).clamp(-1, 1)
