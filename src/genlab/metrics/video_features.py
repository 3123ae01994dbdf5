"""A feature net trained on genlab's own video clips, for frame FD and clip-level (temporal) FD.

The shapes classifier behind image FD never saw a 3-D scene or a sprite clip; for video metrics
genlab ships :class:`VideoFeatureNet`, trained by ``scripts/train_video_features.py`` on the
clips the video models learn from (procedural 3-D scenes under camera paths and moving sprites).
It is trained to tell:

* which kind of clip it is (scene or sprites),
* which camera path a scene clip follows (orbit, pan, tilt, dolly, random),
* whether the clip is intact, its frames shuffled, or its second half spliced from another clip,

so its clip features depend on layout, on motion and on temporal coherence (objects that break
up or jump between frames), and its frame features on what a single frame shows.

``frame_features(videos [B, T, 3, H, W]) -> [B·T, frame_dim]`` and
``clip_features(videos) -> [B, clip_dim]``, both from frames in ``[-1, 1]``; frames of another size
are resized to the net's (trained at 8 frames of 32×32; the temporal convolutions take any length). The weights live in
``metrics/weights/clips/`` (``save_pretrained`` format); :func:`load_video_feature_net` reads them.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import Tensor, nn

from genlab.core.loading import load_pretrained
from genlab.core.nets.embeddings import check_config
from genlab.errors import GenlabError
from genlab.metrics.distances import frechet_distance

VIDEO_FEATURES_DIR = Path(__file__).resolve().parent / "weights" / "clips"
CLIP_KINDS = ("scene", "sprites")
CORRUPTIONS = ("intact", "shuffled", "spliced")


class VideoFeatureNet(ModelMixin, ConfigMixin):
    """Frame trunk (conv stages, 2×2 max-pool between, two coordinate channels appended) shared by
    all frames, then a temporal stack of 1-D convolutions over the frames' 2×2-pooled maps.

    Frame features are the trunk's spatial means ``[B·T, widths[-1]]``; clip features the temporal
    stack's mean over time ``[B, clip_dim]``. ``forward`` gives the training heads' logits: clip
    kind ``[B, 2]``, camera path ``[B, trajectories]`` and corruption ``[B, 3]``.
    """

    @register_to_config
    def __init__(self, resolution: int = 32, frames: int = 8, widths: tuple[int, ...] = (24, 48, 96),
                 clip_dim: int = 64, trajectories: int = 5) -> None:
        super().__init__()
        check_config(resolution >= 4 and frames >= 2, f"need resolution >= 4 and frames >= 2, got {resolution}, {frames}")
        check_config(len(widths) >= 1 and all(w >= 8 and w % 8 == 0 for w in widths),
                     f"widths must be multiples of 8, got {widths}")
        check_config(resolution % 2 ** len(widths) == 0,
                     f"resolution must be a multiple of {2 ** len(widths)}, got {resolution}")
        layers: list[nn.Module] = []
        in_channels = 3 + 2
        for stage, width in enumerate(widths):
            if stage > 0:
                layers.append(nn.MaxPool2d(2))
            layers += [nn.Conv2d(in_channels, width, 3, padding=1), nn.GroupNorm(8, width), nn.SiLU()]
            in_channels = width
        self.trunk = nn.Sequential(*layers)
        self.temporal = nn.Sequential(
            nn.Conv1d(4 * widths[-1], clip_dim, 3, padding=1), nn.SiLU(),
            nn.Conv1d(clip_dim, clip_dim, 3, padding=1), nn.SiLU(),
        )
        self.heads = nn.Linear(clip_dim, len(CLIP_KINDS) + trajectories + len(CORRUPTIONS))
        ramp = torch.linspace(-1.0, 1.0, resolution)
        self.register_buffer("coords", torch.stack(torch.meshgrid(ramp, ramp, indexing="ij"))[None], persistent=False)

    def _maps(self, videos: Tensor) -> Tensor:
        """Trunk maps ``[B·T, C, h, w]`` of ``videos [B, T, 3, H, W]`` (frames resized to the net's resolution)."""
        self._check(videos)
        frames = videos.flatten(0, 1).to(self.coords.dtype)
        if frames.shape[-2:] != self.coords.shape[-2:]:
            frames = nn.functional.interpolate(frames, size=self.coords.shape[-2:], mode="bilinear", antialias=True,
                                               align_corners=False)
        return self.trunk(torch.cat([frames, self.coords.expand(len(frames), -1, -1, -1)], dim=1))

    def _clip(self, maps: Tensor, clips: int) -> Tensor:
        pooled = nn.functional.adaptive_avg_pool2d(maps, 2).flatten(1)  # [B·T, 4C]
        sequence = pooled.view(clips, -1, pooled.shape[1]).transpose(1, 2)  # [B, 4C, T]
        return self.temporal(sequence).mean(dim=2)

    def frame_features(self, videos: Tensor) -> Tensor:
        """Features ``[B·T, widths[-1]]`` of every frame of ``videos [B, T, 3, R, R]`` in ``[-1, 1]``."""
        return self._maps(videos).mean(dim=(2, 3))

    def clip_features(self, videos: Tensor) -> Tensor:
        """Features ``[B, clip_dim]`` of whole clips ``videos [B, T, 3, R, R]`` in ``[-1, 1]``."""
        return self._clip(self._maps(videos), len(videos))

    def features(self, videos: Tensor) -> tuple[Tensor, Tensor]:
        """``(frame features [B·T, widths[-1]], clip features [B, clip_dim])`` from one pass of the trunk."""
        maps = self._maps(videos)
        return maps.mean(dim=(2, 3)), self._clip(maps, len(videos))

    def forward(self, videos: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Logits of clip kind ``[B, 2]``, camera path ``[B, trajectories]`` and corruption ``[B, 3]``."""
        logits = self.heads(self.clip_features(videos))
        kinds, paths = len(CLIP_KINDS), self.config.trajectories
        return logits[:, :kinds], logits[:, kinds:kinds + paths], logits[:, kinds + paths:]

    def _check(self, videos: Tensor) -> None:
        if not isinstance(videos, Tensor) or not videos.is_floating_point() or videos.ndim != 5 or videos.shape[2] != 3:
            got = list(videos.shape) if isinstance(videos, Tensor) else type(videos).__name__
            raise GenlabError(f"the video feature net expects float RGB clips [B, T, 3, H, W], got {got}")


@cache
def load_video_feature_net(folder: Path | str = VIDEO_FEATURES_DIR) -> VideoFeatureNet:
    """The committed video feature net (eval mode, frozen, shared between calls)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise GenlabError(f"no video feature net in {folder}; run scripts/train_video_features.py")
    return load_pretrained(VideoFeatureNet, folder, "video feature net").eval().requires_grad_(False)


@torch.no_grad()
def video_features(videos: Tensor, batch_size: int = 64, net: VideoFeatureNet | None = None) -> tuple[Tensor, Tensor]:
    """``(frame features [N·T, D_f], clip features [N, D_c])`` of clips ``[N, T, 3, R, R]`` in ``[-1, 1]``,
    in the committed net (or ``net``), computed in batches."""
    net = net if net is not None else load_video_feature_net()
    chunks = [net.features(videos[start:start + batch_size].float()) for start in range(0, len(videos), batch_size)]
    return torch.cat([frames for frames, _ in chunks]), torch.cat([clips for _, clips in chunks])


def video_fd(real: Tensor, generated: Tensor, net: VideoFeatureNet | None = None) -> dict[str, float]:
    """Frame FD and clip FD between clip sets ``[N, T, 3, R, R]`` and ``[M, T, 3, R, R]`` in ``[-1, 1]``, in
    the video feature net's spaces (use ≥ 1,000 clips a side for a stable clip FD)."""
    real_frames, real_clips = video_features(real, net=net)
    fake_frames, fake_clips = video_features(generated, net=net)
    return {"frame_fd": frechet_distance(real_frames, fake_frames), "clip_fd": frechet_distance(real_clips, fake_clips)}
