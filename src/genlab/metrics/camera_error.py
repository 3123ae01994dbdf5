"""Camera-following metric of VD3D: how well a generated video follows the cameras it was asked for.

A :class:`PoseEstimator` (a small CNN trained on rendered clips with known cameras by
:func:`train_pose_estimator`) reads the relative camera pose of every frame of a video with respect
to its first frame; :func:`camera_errors` compares those poses with the requested ones, and :func:`trajectory_discrimination`
asks whether they are closer to the requested path than to every other candidate path.

Cameras are camera-to-world 4×4 matrices with OpenCV axes (x right, y down, z forward); the
relative pose of frame t is ``inverse(P_0) @ P_t``, so both trajectories are compared in their own
first camera's frame and the metric does not depend on where the world frame is. Rotation errors
are geodesic angles in degrees, translation errors Euclidean distances in scene units.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import Tensor, nn
from tqdm.auto import tqdm

from genlab.core.loading import load_pretrained
from genlab.core.nets.embeddings import check_config
from genlab.data.trajectories import relative_to_first
from genlab.errors import GenlabError
from genlab.metrics.artefacts import Artefacts, generator_artefacts

POSE_ESTIMATOR_DIR = Path(__file__).resolve().parent / "weights" / "pose"  # scripts/train_pose_estimator.py
TRANSLATION_WEIGHT = 1.0  # weight of the squared translation error (scene units²) in the training loss
ESTIMATE_BATCH = 512  # frame pairs per forward pass in PoseEstimator.estimate
DEGREES_PER_UNIT = math.degrees(1 / 4.0)  # angle a unit of translation subtends from the scenes' camera distance 4


def rotation_geodesic_degrees(r1: Tensor, r2: Tensor) -> Tensor:
    """Angle in degrees ``[...]`` of the rotation ``r1ᵀ r2`` between rotations ``r1, r2 [..., 3, 3]``.

    Computed as ``atan2(sin θ, cos θ)`` from the skew and trace parts of ``r1ᵀ r2`` (cosine clamped
    to [-1, 1]), which stays accurate for small angles where ``acos`` of the trace loses precision.
    """
    if r1.shape[-2:] != (3, 3) or r2.shape[-2:] != (3, 3):
        raise GenlabError(f"rotations must be [..., 3, 3], got {list(r1.shape)} and {list(r2.shape)}")
    relative = r1.transpose(-1, -2) @ r2
    cosine = ((relative.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1.0, 1.0)
    sine = (relative - relative.transpose(-1, -2)).flatten(-2).norm(dim=-1) / (2 * math.sqrt(2))
    return torch.rad2deg(torch.atan2(sine, cosine))


def camera_errors(predicted_c2w: Tensor, requested_c2w: Tensor) -> dict[str, Tensor]:
    """Per-video camera errors of ``predicted_c2w`` against ``requested_c2w`` (both ``[B, T, 4, 4]``, T ≥ 2).

    Both trajectories are made relative to their frame 0; returns ``{"rotation_deg": [B],
    "translation": [B]}``: the mean over frames 1..T-1 of the geodesic angle (degrees) between the
    relative rotations and of the distance ``‖t_pred − t_req‖`` (scene units) between the relative
    translations. Computed in float64, returned in ``requested_c2w``'s dtype. Raises GenlabError
    for mismatched or non-rigid poses.
    """
    if predicted_c2w.shape != requested_c2w.shape:
        raise GenlabError(f"predicted and requested cameras must have the same shape, "
                          f"got {list(predicted_c2w.shape)} and {list(requested_c2w.shape)}")
    if predicted_c2w.dim() != 4 or predicted_c2w.shape[1] < 2 or predicted_c2w.shape[-2:] != (4, 4):
        raise GenlabError(f"cameras must be [B, T, 4, 4] with T >= 2, got {list(predicted_c2w.shape)}")
    predicted = relative_to_first(predicted_c2w.double())[:, 1:]
    requested = relative_to_first(requested_c2w.double())[:, 1:]
    rotation = rotation_geodesic_degrees(predicted[..., :3, :3], requested[..., :3, :3])
    translation = (predicted[..., :3, 3] - requested[..., :3, 3]).norm(dim=-1)
    dtype = requested_c2w.dtype
    return {"rotation_deg": rotation.mean(dim=1).to(dtype), "translation": translation.mean(dim=1).to(dtype)}


def trajectory_distances(estimated_c2w: Tensor, candidates_c2w: Tensor,
                          degrees_per_unit: float = DEGREES_PER_UNIT) -> Tensor:
    """Distance ``[B, K]`` of each estimated trajectory to each candidate, in degrees.

    ``estimated_c2w [B, T, 4, 4]``, ``candidates_c2w [K, T, 4, 4]``: the :func:`camera_errors` of the pair,
    ``rotation_deg + degrees_per_unit · translation`` (a translation error counts as the angle it subtends
    at the scene's distance; the default is for genlab's scenes, watched from 4 units away).
    """
    batch, count = estimated_c2w.shape[0], candidates_c2w.shape[0]
    if candidates_c2w.dim() != 4 or candidates_c2w.shape[1:] != estimated_c2w.shape[1:]:
        raise GenlabError(f"candidates must be [K, T, 4, 4] with the estimated cameras' T, got "
                          f"{list(candidates_c2w.shape)} for estimated {list(estimated_c2w.shape)}")
    pairs = camera_errors(estimated_c2w.repeat_interleave(count, dim=0), candidates_c2w.repeat(batch, 1, 1, 1))
    return (pairs["rotation_deg"] + degrees_per_unit * pairs["translation"]).view(batch, count)


def trajectory_discrimination(estimated_c2w: Tensor, requested: Tensor, candidates_c2w: Tensor,
                              degrees_per_unit: float = DEGREES_PER_UNIT) -> Tensor:
    """Whether each video's estimated motion is closer to its requested trajectory than to every other
    candidate (other types, reversed directions): ``[B]`` bool; its mean is the discrimination accuracy.

    ``requested [B]`` (long) indexes ``candidates_c2w [K, T, 4, 4]`` (e.g. from
    :func:`genlab.data.trajectories.trajectory_candidates`); distances as in :func:`trajectory_distances`.
    A tie with another candidate counts as a miss, so a model that does not move scores 0 on paths whose
    reverse is a candidate too.
    """
    if requested.shape != estimated_c2w.shape[:1] or requested.dtype != torch.long:
        raise GenlabError(f"requested must be [B] candidate indices (long) for B = {estimated_c2w.shape[0]}, "
                          f"got {list(requested.shape)} {requested.dtype}")
    if requested.numel() and not 0 <= int(requested.min()) <= int(requested.max()) < candidates_c2w.shape[0]:
        raise GenlabError(f"requested indices must lie in [0, {candidates_c2w.shape[0]}), got {requested.tolist()}")
    distances = trajectory_distances(estimated_c2w, candidates_c2w, degrees_per_unit)
    own = distances.gather(1, requested[:, None])
    others = distances.scatter(1, requested[:, None], math.inf)
    return (own < others).all(dim=1)


def rotation_from_6d(x: Tensor) -> Tensor:
    """Rotations ``[..., 3, 3]`` from the 6-D representation ``x [..., 6]`` of Zhou et al. (2019).

    Gram-Schmidt on the two 3-vectors gives the first two columns; their cross product the third.
    """
    first = nn.functional.normalize(x[..., :3], dim=-1)
    second = x[..., 3:] - (first * x[..., 3:]).sum(-1, keepdim=True) * first
    second = nn.functional.normalize(second, dim=-1)
    return torch.stack([first, second, torch.linalg.cross(first, second, dim=-1)], dim=-1)


def _conv_block(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1),
        nn.GroupNorm(8, out_channels),
        nn.SiLU(),
    )


class PoseEstimator(ModelMixin, ConfigMixin):
    """Relative camera pose of one frame with respect to another, from the two RGB frames.

    The frames ``[B, 3, H, W]`` in ``[-1, 1]`` are stacked on channels (6 × resolution × resolution)
    and pass a stem conv and stride-2 conv stages (width ``channels``, doubled per stage) down to
    4 × 4, then an MLP of width ``hidden`` to 9 numbers: a 6-D rotation representation and a
    translation (scene units). The last layer starts at zero with the bias of the identity pose,
    so a fresh estimator predicts "no motion".
    """

    @register_to_config
    def __init__(self, resolution: int = 32, channels: int = 64, hidden: int = 256) -> None:
        super().__init__()
        check_config(resolution >= 8 and resolution & (resolution - 1) == 0,
                     f"resolution must be a power of two >= 8, got {resolution}")
        check_config(channels >= 8 and channels % 8 == 0, f"channels must be a positive multiple of 8, got {channels}")
        check_config(hidden >= 1, f"hidden must be >= 1, got {hidden}")
        widths = [6] + [channels * 2**i for i in range(int(math.log2(resolution // 4)))]
        self.body = nn.Sequential(*(_conv_block(a, b, 2) for a, b in zip(widths[:-1], widths[1:], strict=True)))
        last = nn.Linear(hidden, 9)
        nn.init.zeros_(last.weight)
        with torch.no_grad():
            last.bias.copy_(torch.tensor([1.0, 0, 0, 0, 1, 0, 0, 0, 0]))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(widths[-1] * 16, hidden), nn.SiLU(), last)

    def forward(self, first: Tensor, other: Tensor) -> tuple[Tensor, Tensor]:
        """Pose of frame ``other`` relative to frame ``first`` (both ``[B, 3, H, W]`` in ``[-1, 1]``):
        rotation ``[B, 3, 3]`` and translation ``[B, 3]`` (scene units) of ``inverse(P_first) @ P_other``."""
        for frames in (first, other):
            self._check_frames(frames, "frames [B, 3, H, W]", frames.shape[1:])
        if first.shape != other.shape:
            raise GenlabError(f"the two frame batches differ in shape: {list(first.shape)} vs {list(other.shape)}")
        out = self.head(self.body(torch.cat([first, other], dim=1).to(self.dtype)))
        return rotation_from_6d(out[:, :6]), out[:, 6:]

    @torch.no_grad()
    def estimate(self, video: Tensor) -> Tensor:
        """Relative camera-to-world poses ``[B, T, 4, 4]`` (frame 0 the identity) of videos
        ``[B, T, 3, H, W]`` in ``[-1, 1]``; frames are paired with frame 0 and run in batches."""
        self._check_frames(video, "videos [B, T, 3, H, W]", video.shape[2:], ndim=5)
        b, t = video.shape[:2]
        first = video[:, :1].expand(-1, t - 1, -1, -1, -1).flatten(0, 1)
        other = video[:, 1:].flatten(0, 1)
        poses = torch.eye(4, device=self.device).repeat(b, t, 1, 1)
        rotations, translations = [], []
        for start in range(0, len(first), ESTIMATE_BATCH):
            rotation, translation = self(first[start:start + ESTIMATE_BATCH].to(self.device),
                                         other[start:start + ESTIMATE_BATCH].to(self.device))
            rotations.append(rotation.float())
            translations.append(translation.float())
        if rotations:
            poses[:, 1:, :3, :3] = torch.cat(rotations).view(b, t - 1, 3, 3)
            poses[:, 1:, :3, 3] = torch.cat(translations).view(b, t - 1, 3)
        return poses

    def _check_frames(self, x: Tensor, what: str, frame_shape: torch.Size, ndim: int = 4) -> None:
        r = self.config.resolution
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim != ndim or tuple(frame_shape) != (3, r, r):
            shape = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise GenlabError(f"the pose estimator expects float {what} with 3×{r}×{r} frames, got {shape}")


def load_pose_estimator(folder: Path | str = POSE_ESTIMATOR_DIR) -> PoseEstimator:
    """The shipped pose estimator (trained with generator artefacts), or one saved in ``folder``; eval mode."""
    return load_pretrained(PoseEstimator, folder, "pose estimator").eval()


def _as_float_frames(frames: Tensor) -> Tensor:
    """Frames as float32 in ``[-1, 1]``: uint8 (0..255) is rescaled, floats are taken as they are."""
    if frames.dtype == torch.uint8:
        return frames.float() / 127.5 - 1
    return frames.float()


def _check_training_data(videos: Tensor, camera_to_world: Tensor) -> None:
    if videos.dim() != 5 or videos.shape[2] != 3 or videos.shape[-1] != videos.shape[-2]:
        raise GenlabError(f"videos must be [N, T, 3, H, H], got {list(videos.shape)}")
    if not (videos.is_floating_point() or videos.dtype == torch.uint8):
        raise GenlabError(f"videos must be float in [-1, 1] or uint8 in 0..255, got {videos.dtype}")
    if camera_to_world.shape != (*videos.shape[:2], 4, 4):
        raise GenlabError(f"camera_to_world must be [N, T, 4, 4] matching videos {list(videos.shape[:2])}, "
                          f"got {list(camera_to_world.shape)}")


def pose_loss(rotation: Tensor, translation: Tensor, target: Tensor) -> Tensor:
    """Mean of ``‖R − R_true‖_F² + TRANSLATION_WEIGHT · ‖t − t_true‖²`` over a batch of predictions
    ``rotation [B, 3, 3]``, ``translation [B, 3]`` against relative poses ``target [B, 4, 4]``."""
    rotation_error = (rotation - target[:, :3, :3]).square().sum(dim=(1, 2))
    translation_error = (translation - target[:, :3, 3]).square().sum(dim=1)
    return (rotation_error + TRANSLATION_WEIGHT * translation_error).mean()


def train_pose_estimator(videos: Tensor, camera_to_world: Tensor, steps: int = 2000, batch_size: int = 64,
                         lr: float = 1e-3, seed: int = 0, progress: bool = False,
                         artefacts: Artefacts | None = None) -> PoseEstimator:
    """Train a :class:`PoseEstimator` on clips with known cameras; returns it in eval mode.

    ``videos [N, T, 3, H, H]`` are float in ``[-1, 1]`` or uint8 in 0..255 (rescaled per batch, which
    keeps large sets small in memory); ``camera_to_world [N, T, 4, 4]`` are their cameras. Each step
    draws ``batch_size`` random (clip, frame t) pairs, t = 0 included, and regresses the pose of
    frame t relative to frame 0 (:func:`pose_loss`) with Adam and a cosine learning-rate decay from
    ``lr`` to 0. The initial weights and the pairs depend on ``seed`` only. With ``artefacts``, both
    frames of every pair are degraded by :func:`~genlab.metrics.artefacts.generator_artefacts` (fresh
    amounts per frame), so that the estimator also reads generated-looking frames.
    """
    _check_training_data(videos, camera_to_world)
    check_config(steps >= 1 and batch_size >= 1, f"steps and batch_size must be >= 1, got {steps}, {batch_size}")
    targets = relative_to_first(camera_to_world.double()).float()
    n, t = videos.shape[:2]
    torch.manual_seed(seed)  # the initial weights depend on the seed only, not on what ran before
    model = PoseEstimator(resolution=videos.shape[-1])
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in tqdm(range(steps), desc="pose estimator", disable=not progress, leave=False):
        clips = torch.randint(n, (batch_size,), generator=generator)
        frames = torch.randint(t, (batch_size,), generator=generator)
        first, other = _as_float_frames(videos[clips, 0]), _as_float_frames(videos[clips, frames])
        if artefacts is not None:
            first, other = (generator_artefacts(f, generator, artefacts) for f in (first, other))
        rotation, translation = model(first, other)
        loss = pose_loss(rotation, translation, targets[clips, frames])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return model.eval()
