"""Camera poses for procedural scenes: checks (:func:`check_cameras`), poses relative to the first
frame, and trajectories (orbit, pan, dolly, tilt and smooth random paths).

World axes: z is up and the ground is z = 0. Cameras are camera-to-world 4×4 matrices with OpenCV
axes (x right, y down, z forward), built by :func:`look_at`. Every trajectory starts from the
same camera: at distance ``radius`` from ``target``, ``height`` above the ground, looking at the
target. ``strength`` scales the motion (radians for orbit, pan and tilt; a fraction of the
distance for dolly; the size of the wander for random).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from genlab.errors import GenlabError

WORLD_UP = (0.0, 0.0, 1.0)


def look_at(eye: Tensor, target: Tensor) -> Tensor:
    """Camera-to-world matrices ``[..., 4, 4]`` of cameras at ``eye [..., 3]`` looking at ``target [..., 3]``
    (OpenCV axes; the image's "down" is the world's -z as far as the view direction allows)."""
    forward = torch.nn.functional.normalize(target - eye, dim=-1)
    up = torch.tensor(WORLD_UP, dtype=eye.dtype, device=eye.device).expand_as(forward)
    right = torch.linalg.cross(forward, up, dim=-1)
    if (right.norm(dim=-1) < 1e-6).any():
        raise GenlabError("a camera cannot look straight up or down (its view direction is parallel to world z)")
    right = torch.nn.functional.normalize(right, dim=-1)
    down = torch.linalg.cross(forward, right, dim=-1)
    pose = torch.zeros(*eye.shape[:-1], 4, 4, dtype=eye.dtype, device=eye.device)
    pose[..., :3, :3] = torch.stack([right, down, forward], dim=-1)
    pose[..., :3, 3] = eye
    pose[..., 3, 3] = 1
    return pose


def check_cameras(camera_to_world: Tensor, intrinsics: Tensor | None = None, tolerance: float = 1e-3) -> None:
    """Raise a GenlabError unless ``camera_to_world [..., 4, 4]`` are rigid transforms (rotation with
    determinant +1, last row ``0 0 0 1``) and ``intrinsics`` (if given) are ``[..., 3, 3]`` with the same
    leading shape and positive focal lengths."""
    if camera_to_world.dim() < 2 or camera_to_world.shape[-2:] != (4, 4):
        raise GenlabError(f"camera-to-world poses must be [..., 4, 4] matrices, got {list(camera_to_world.shape)}")
    poses = camera_to_world.double()
    if not torch.isfinite(poses).all():
        raise GenlabError("camera-to-world poses must be finite numbers (found NaN or inf)")
    rotation = poses[..., :3, :3]
    identity = torch.eye(3, dtype=torch.float64)
    last_row = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    if ((rotation.transpose(-1, -2) @ rotation - identity).abs().amax() > tolerance
            or (torch.linalg.det(rotation) - 1).abs().amax() > tolerance
            or (poses[..., 3, :] - last_row).abs().amax() > tolerance):
        raise GenlabError("camera-to-world poses must be rigid transforms: an orthonormal rotation with "
                          "determinant +1 and a last row of 0 0 0 1")
    if intrinsics is None:
        return
    if intrinsics.shape != (*camera_to_world.shape[:-2], 3, 3):
        raise GenlabError(f"intrinsics must be [..., 3, 3] with the poses' leading shape "
                          f"{list(camera_to_world.shape[:-2])}, got {list(intrinsics.shape)}")
    if (intrinsics[..., 0, 0] <= 0).any() or (intrinsics[..., 1, 1] <= 0).any():
        raise GenlabError("intrinsics must have positive focal lengths fx = K[0, 0] and fy = K[1, 1] (pixels)")


def relative_to_first(camera_to_world: Tensor) -> Tensor:
    """Poses ``[B, T, 4, 4]`` expressed in the first frame's camera: ``inverse(P_0) @ P_t`` (frame 0 becomes
    the identity)."""
    check_cameras(camera_to_world)
    check_trajectory_batch(camera_to_world)
    return relative_to_first_unchecked(camera_to_world)


def check_trajectory_batch(camera_to_world: Tensor) -> None:
    """Raise a GenlabError unless the poses are a batch of trajectories ``[B, T, 4, 4]``."""
    if camera_to_world.dim() != 4:
        raise GenlabError(f"a batch of trajectories must be [B, T, 4, 4], got {list(camera_to_world.shape)}")


def relative_to_first_unchecked(camera_to_world: Tensor) -> Tensor:
    """:func:`relative_to_first` for poses already checked."""
    return torch.linalg.inv(camera_to_world[:, :1]) @ camera_to_world


def _start(radius: float, height: float) -> tuple[Tensor, Tensor]:
    eye = torch.tensor([-radius, 0.0, height], dtype=torch.float64)
    return eye, torch.zeros(3, dtype=torch.float64)


def _orbit(s: Tensor, radius: float, height: float, strength: float, generator) -> Tensor:
    angle = strength * s
    eye = torch.stack([-radius * torch.cos(angle), -radius * torch.sin(angle), torch.full_like(s, height)], dim=-1)
    return look_at(eye, torch.zeros_like(eye))


def _pan(s: Tensor, radius: float, height: float, strength: float, generator) -> Tensor:
    eye, target = _start(radius, height)
    offset = target - eye
    angle = strength * s
    rotated = torch.stack([offset[0] * torch.cos(angle) - offset[1] * torch.sin(angle),
                           offset[0] * torch.sin(angle) + offset[1] * torch.cos(angle),
                           offset[2].expand_as(s)], dim=-1)
    return look_at(eye.expand(len(s), 3), eye + rotated)


def _tilt(s: Tensor, radius: float, height: float, strength: float, generator) -> Tensor:
    eye, target = _start(radius, height)
    target = target.expand(len(s), 3).clone()
    target[:, 2] = target[:, 2] + radius * torch.tan(strength * s)  # raise the point looked at
    return look_at(eye.expand(len(s), 3), target)


def _dolly(s: Tensor, radius: float, height: float, strength: float, generator) -> Tensor:
    eye, target = _start(radius, height)
    eye = eye + (target - eye) * (strength * s)[:, None]
    return look_at(eye, target.expand_as(eye))


def _random(s: Tensor, radius: float, height: float, strength: float, generator) -> Tensor:
    eye, target = _start(radius, height)
    # a few low-frequency sinusoids per axis, zero at s = 0 so the path starts at the common camera
    frequencies = torch.rand(2, 3, 3, generator=generator, dtype=torch.float64) * 1.5 + 0.5
    phases = torch.rand(2, 3, 3, generator=generator, dtype=torch.float64) * 2 * math.pi
    waves = torch.sin(frequencies[..., None] * math.pi * s + phases[..., None]) - torch.sin(phases[..., None])
    offsets = strength * radius * waves.mean(dim=2) / 2  # [2 (eye, target), 3, T]
    return look_at(eye + offsets[0].T, target + offsets[1].T)


TRAJECTORIES = {"orbit": _orbit, "pan": _pan, "tilt": _tilt, "dolly": _dolly, "random": _random}
DEFAULT_STRENGTH = {"orbit": 0.8, "pan": 0.5, "tilt": 0.3, "dolly": 0.4, "random": 0.3}


def make_trajectory(name: str, frames: int, radius: float = 4.0, height: float = 1.5,
                    strength: float | None = None, seed: int = 0) -> Tensor:
    """Camera-to-world poses ``[frames, 4, 4]`` (float64) of trajectory ``name`` (see ``TRAJECTORIES``)."""
    if name not in TRAJECTORIES:
        raise GenlabError(f"unknown trajectory {name!r}; choose one of {', '.join(TRAJECTORIES)}")
    if frames < 1:
        raise GenlabError(f"a trajectory needs at least 1 frame, got {frames}")
    if radius <= 0:
        raise GenlabError(f"radius must be positive, got {radius}")
    s = torch.linspace(0, 1, frames, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    return TRAJECTORIES[name](s, radius, height, DEFAULT_STRENGTH[name] if strength is None else strength, generator)


def trajectory_candidates(frames: int, seed: int = 0) -> tuple[list[str], Tensor]:
    """Every trajectory type in both directions, and a camera that does not move: the paths a
    camera-following score tells apart.

    Returns ``(names, camera_to_world [K, frames, 4, 4])`` with ``K = 2·len(TRAJECTORIES) + 1``: for each
    type its default strength (``"orbit"``) and the reversed path (``"-orbit"``: the strength's sign
    flipped; ``"-random"`` mirrors the random path of the same ``seed``), then ``"still"``, the common first
    camera held, so that a clip that does not move is nearest to it rather than to a small path.
    """
    names = [f"{sign}{name}" for name in TRAJECTORIES for sign in ("", "-")] + ["still"]
    poses = [make_trajectory(name, frames, strength=DEFAULT_STRENGTH[name] * direction, seed=seed)
             for name in TRAJECTORIES for direction in (1, -1)]
    poses.append(make_trajectory("orbit", frames, strength=0.0))
    return names, torch.stack(poses)
