"""Per-pixel Plücker embeddings of camera rays, VD3D's camera conditioning.

Cameras are 4×4 camera-to-world matrices with OpenCV axes (x right, y down, z forward) and 3×3
intrinsics in pixels. The ray through the centre of pixel (row i, column j) has, in camera
coordinates, the direction ``((j + 0.5 − cx) / fx, (i + 0.5 − cy) / fy, 1)``; normalised and rotated
into the world it is ``d``, and it starts at the camera centre ``o`` (the translation column). Its
Plücker coordinates are ``(o × d, d)``: the moment and the direction, 6 channels per pixel, the
same convention as CameraCtrl's ``ray_condition``. Trajectories are usually made relative to
their first frame first (``genlab.data.trajectories.relative_to_first``), so the embedding does
not depend on where the scene's world frame happens to be.
"""

from __future__ import annotations

import torch
from torch import Tensor

from genlab.data.trajectories import check_cameras, check_trajectory_batch, relative_to_first_unchecked
from genlab.errors import GenlabError


def plucker_embedding(camera_to_world: Tensor, intrinsics: Tensor, height: int, width: int,
                      relative: bool = True) -> Tensor:
    """Plücker ray embeddings ``[B, T, 6, height, width]`` (moment ``o × d``, then direction ``d``) of
    cameras ``[B, T, 4, 4]`` with intrinsics ``[B, T, 3, 3]`` (pixels, for frames of ``height × width``).

    ``relative=True`` first makes the poses relative to each trajectory's first frame.
    """
    check_cameras(camera_to_world, intrinsics)
    check_trajectory_batch(camera_to_world)
    if height < 1 or width < 1:
        raise GenlabError(f"frame size must be positive, got {height}×{width}")
    poses = relative_to_first_unchecked(camera_to_world) if relative else camera_to_world
    dtype, device = poses.dtype, poses.device
    rows, columns = torch.meshgrid(torch.arange(height, dtype=dtype, device=device) + 0.5,
                                   torch.arange(width, dtype=dtype, device=device) + 0.5, indexing="ij")
    fx, fy = intrinsics[..., 0, 0, None, None], intrinsics[..., 1, 1, None, None]  # [B, T, 1, 1]
    cx, cy = intrinsics[..., 0, 2, None, None], intrinsics[..., 1, 2, None, None]
    camera_directions = torch.stack([(columns - cx) / fx, (rows - cy) / fy, torch.ones_like(columns - cx)], dim=-1)
    camera_directions = camera_directions / camera_directions.norm(dim=-1, keepdim=True)  # [B, T, H, W, 3]
    directions = torch.einsum("btij,bthwj->bthwi", poses[..., :3, :3], camera_directions)
    origins = poses[..., None, None, :3, 3].expand_as(directions)
    moments = torch.cross(origins, directions, dim=-1)
    return torch.cat([moments, directions], dim=-1).permute(0, 1, 4, 2, 3)
