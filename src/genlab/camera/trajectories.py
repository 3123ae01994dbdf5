"""Camera trajectories for procedural scenes: orbit, pan, dolly, tilt and smooth random paths.

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
