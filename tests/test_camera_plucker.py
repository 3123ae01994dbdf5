"""Plücker ray embeddings: unit directions, moments ⊥ directions, known rays, a per-pixel reference, bad input."""

import numpy as np
import pytest
import torch

from genlab.camera import plucker_embedding, relative_to_first
from genlab.errors import GenlabError


def random_poses(generator: torch.Generator, shape: tuple[int, ...]) -> torch.Tensor:
    """Random rigid camera-to-world matrices ``[*shape, 4, 4]`` (float64)."""
    q, r = torch.linalg.qr(torch.randn(*shape, 3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[..., None, :]
    q[torch.linalg.det(q) < 0] *= -1  # a rotation, not a reflection
    poses = torch.eye(4, dtype=torch.float64).repeat(*shape, 1, 1)
    poses[..., :3, :3] = q
    poses[..., :3, 3] = torch.randn(*shape, 3, generator=generator, dtype=torch.float64)
    return poses


def intrinsics(fx, fy, cx, cy, shape):
    return torch.tensor([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=torch.float64).expand(*shape, 3, 3).clone()


def reference_embedding(pose: np.ndarray, k: np.ndarray, height: int, width: int) -> np.ndarray:
    """One camera's embedding ``[6, H, W]``, pixel by pixel."""
    out = np.zeros((6, height, width))
    for i in range(height):
        for j in range(width):
            ray = np.linalg.inv(k) @ np.array([j + 0.5, i + 0.5, 1.0])
            direction = pose[:3, :3] @ (ray / np.linalg.norm(ray))
            out[:, i, j] = np.concatenate([np.cross(pose[:3, 3], direction), direction])
    return out


def test_directions_are_unit_and_moments_are_perpendicular_to_them():
    poses = random_poses(torch.Generator().manual_seed(0), (2, 4))
    embedding = plucker_embedding(poses, intrinsics(20.0, 24.0, 7.5, 9.0, (2, 4)), 12, 16, relative=False)
    moments, directions = embedding[:, :, :3], embedding[:, :, 3:]
    assert embedding.shape == (2, 4, 6, 12, 16) and embedding.dtype == torch.float64
    torch.testing.assert_close(directions.norm(dim=2), torch.ones(2, 4, 12, 16, dtype=torch.float64))
    assert (moments * directions).sum(dim=2).abs().max() < 1e-12


def test_a_known_camera_gives_known_rays():
    pose = torch.eye(4, dtype=torch.float64)
    pose[:3, 3] = torch.tensor([1.0, 0.0, 0.0])  # camera at x = 1, looking along +z
    embedding = plucker_embedding(pose[None, None], intrinsics(1.0, 1.0, 1.5, 1.5, (1, 1)), 3, 3, relative=False)[0, 0]
    centre, corner = embedding[:, 1, 1], embedding[:, 0, 0]
    torch.testing.assert_close(centre, torch.tensor([0.0, -1.0, 0.0, 0.0, 0.0, 1.0], dtype=torch.float64))
    direction = torch.tensor([-1.0, -1.0, 1.0], dtype=torch.float64) / 3 ** 0.5  # up-left pixel: -x, -y (OpenCV)
    torch.testing.assert_close(corner[3:], direction)
    torch.testing.assert_close(corner[:3], torch.linalg.cross(pose[:3, 3], direction))


def test_agrees_with_a_pixel_by_pixel_reference_including_relative_poses():
    poses = random_poses(torch.Generator().manual_seed(1), (1, 3))
    k = intrinsics(9.0, 11.0, 3.2, 4.1, (1, 3))
    embedding = plucker_embedding(poses, k, 6, 5)
    first = np.linalg.inv(poses[0, 0].numpy())
    for t in range(3):
        expected = reference_embedding(first @ poses[0, t].numpy(), k[0, t].numpy(), 6, 5)
        np.testing.assert_allclose(embedding[0, t].numpy(), expected, atol=1e-10)


def test_relative_poses_start_at_the_identity_and_ignore_where_the_world_frame_is():
    generator = torch.Generator().manual_seed(2)
    poses, world_change = random_poses(generator, (2, 4)), random_poses(generator, ())
    torch.testing.assert_close(relative_to_first(poses)[:, 0], torch.eye(4, dtype=torch.float64).expand(2, 4, 4))
    k = intrinsics(8.0, 8.0, 4.0, 4.0, (2, 4))
    torch.testing.assert_close(plucker_embedding(world_change @ poses, k, 8, 8), plucker_embedding(poses, k, 8, 8))
    assert not torch.allclose(plucker_embedding(world_change @ poses, k, 8, 8, relative=False),
                              plucker_embedding(poses, k, 8, 8, relative=False))


def test_bad_cameras_are_clear_errors():
    poses = random_poses(torch.Generator().manual_seed(3), (1, 2))
    k = intrinsics(8.0, 8.0, 4.0, 4.0, (1, 2))
    scaled = poses.clone()
    scaled[..., :3, :3] *= 2
    with pytest.raises(GenlabError, match="rigid"):
        plucker_embedding(scaled, k, 8, 8)
    mirrored = poses.clone()
    mirrored[..., :3, 0] *= -1
    with pytest.raises(GenlabError, match="determinant"):
        plucker_embedding(mirrored, k, 8, 8)
    with pytest.raises(GenlabError, match=r"\[\.\.\., 3, 3\]"):
        plucker_embedding(poses, k[:, :1], 8, 8)
    with pytest.raises(GenlabError, match="focal"):
        plucker_embedding(poses, intrinsics(-8.0, 8.0, 4.0, 4.0, (1, 2)), 8, 8)
    with pytest.raises(GenlabError, match=r"\[\.\.\., 4, 4\]"):
        plucker_embedding(poses[..., :3, :], k, 8, 8)


def test_a_coarser_grid_takes_the_ray_through_each_cells_centre():
    from genlab.camera.training import clip_plucker

    generator = torch.Generator().manual_seed(3)
    poses = random_poses(generator, (1, 2))
    k = intrinsics(20.0, 22.0, 15.0, 17.0, (1, 2))
    fine, coarse = clip_plucker(poses, k, 32).double(), clip_plucker(poses, k, 32, grid=8).double()
    assert coarse.shape == (1, 2, 6, 8, 8)
    torch.testing.assert_close(clip_plucker(poses, k, 32, grid=32), clip_plucker(poses, k, 32))
    # directions are unit vectors of (u - cx) / fx ...: a cell's un-normalised direction is the mean of its
    # 4×4 pixels' (those are linear in the pixel position), so normalising that mean gives the cell's ray
    direction = fine[:, :, 3:]
    forward = relative_to_first(poses)[..., :3, 2, None, None]  # each camera's optical axis in the world, [1, 2, 3, 1, 1]
    linear = direction / (direction * forward).sum(2, keepdim=True)  # divide by depth: (x, y, 1) in camera terms
    mean = torch.nn.functional.avg_pool2d(linear.flatten(0, 1), 4).unflatten(0, (1, 2))
    torch.testing.assert_close(coarse[:, :, 3:], mean / mean.norm(dim=2, keepdim=True))
