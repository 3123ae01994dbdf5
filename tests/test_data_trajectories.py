"""Camera trajectories: rigid, a common start, each motion does what its name says, bad input."""

import math

import pytest
import torch

from genlab.camera import check_cameras
from genlab.data.trajectories import TRAJECTORIES, look_at, make_trajectory
from genlab.errors import GenlabError


def forward(poses):
    return poses[..., :3, 2]


def test_every_trajectory_is_rigid_and_starts_from_the_same_camera():
    first = make_trajectory("orbit", 6)[0]
    for name in TRAJECTORIES:
        poses = make_trajectory(name, 6)
        check_cameras(poses)
        assert poses.shape == (6, 4, 4)
        torch.testing.assert_close(poses[0], first)
        assert not torch.allclose(poses[-1], first)  # it moves


def test_look_at_points_the_optical_axis_at_the_target_with_image_down_towards_the_ground():
    pose = look_at(torch.tensor([-4.0, 1.0, 2.0], dtype=torch.float64), torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(forward(pose), torch.tensor([4.0, -1.0, -2.0], dtype=torch.float64) / 21 ** 0.5)
    assert pose[2, 1] < 0  # the camera's y axis (image down) has a downward world component
    with pytest.raises(GenlabError, match="straight up or down"):
        look_at(torch.tensor([0.0, 0.0, 5.0]), torch.zeros(3))


def test_orbit_keeps_its_distance_and_looks_at_the_target_while_turning_by_the_strength():
    poses = make_trajectory("orbit", 9, radius=3.0, height=1.0, strength=math.pi / 2)
    eyes = poses[:, :3, 3]
    torch.testing.assert_close(eyes.norm(dim=1), torch.full((9,), math.hypot(3.0, 1.0), dtype=torch.float64))
    torch.testing.assert_close(forward(poses), torch.nn.functional.normalize(-eyes, dim=1))
    turned = torch.atan2(eyes[-1, 1], eyes[-1, 0]) - torch.atan2(eyes[0, 1], eyes[0, 0])
    assert abs(abs(turned.item()) - math.pi / 2) < 1e-9


def test_pan_and_tilt_turn_in_place_and_dolly_moves_straight_in():
    pan, tilt = make_trajectory("pan", 5, strength=0.4), make_trajectory("tilt", 5, strength=0.2)
    for poses in (pan, tilt):
        torch.testing.assert_close(poses[:, :3, 3], poses[:1, :3, 3].expand(5, 3))
    yaw = lambda f: torch.atan2(f[1], f[0])  # noqa: E731
    assert abs((yaw(forward(pan[-1])) - yaw(forward(pan[0]))).item() - 0.4) < 1e-9
    assert forward(tilt)[:, 2].diff().min() > 0  # looking further up each frame
    dolly = make_trajectory("dolly", 5, strength=0.4)
    distance = dolly[:, :3, 3].norm(dim=1)
    assert distance.diff().max() < 0 and abs(distance[-1] / distance[0] - 0.6) < 1e-9
    torch.testing.assert_close(forward(dolly), forward(dolly[:1]).expand(5, 3))


def test_random_paths_are_smooth_and_repeatable_by_seed():
    path = make_trajectory("random", 16, seed=3)
    torch.testing.assert_close(path, make_trajectory("random", 16, seed=3))
    assert not torch.allclose(path, make_trajectory("random", 16, seed=4))
    assert path[:, :3, 3].diff(dim=0).norm(dim=1).max() < 0.3  # no jumps between frames


def test_bad_trajectories_are_clear_errors():
    with pytest.raises(GenlabError, match="unknown trajectory 'spiral'; choose one of orbit, pan"):
        make_trajectory("spiral", 8)
    with pytest.raises(GenlabError, match="at least 1 frame"):
        make_trajectory("orbit", 0)
    with pytest.raises(GenlabError, match="radius"):
        make_trajectory("orbit", 4, radius=0)
