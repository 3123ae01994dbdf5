"""Procedural 3-D scenes: what the ray caster shows where, camera paths, determinism, the video data set."""

import math

import pytest
import torch

from genlab.data import CameraVideoDataset, default_intrinsics, random_camera_paths, random_scenes, render
from genlab.data.scenes import AMBIENT, BOX, LIGHT, SPHERE, SceneBatch
from genlab.data.trajectories import look_at, make_trajectory
from genlab.errors import GenlabError

RED, BLUE, GREEN = (1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, 1.0, 0.0)
RESOLUTION = 32
TOWARDS_LIGHT = torch.nn.functional.normalize(torch.tensor(LIGHT), dim=0)


def one_scene(*primitives, valid=None):
    """One scene on a white/black checkerboard; primitives are (kind, centre, half_size, colour)."""
    kinds, centres, halves, colours = zip(*primitives, strict=True)
    return SceneBatch(
        kind=torch.tensor([kinds]),
        centre=torch.tensor([centres]),
        half_size=torch.tensor([halves]),
        colour=torch.tensor([colours]),
        valid=torch.tensor([valid or [True] * len(primitives)]),
        ground=torch.tensor([[[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]]),
    )


def sphere(x, y, radius, colour):
    return SPHERE, (x, y, radius), (radius,) * 3, colour


def box(x, y, half, colour):
    return BOX, (x, y, half[2]), half, colour


def shoot(scene, poses):
    """Render one scene from poses [T, 4, 4]: [T, 3, H, W]."""
    return render(scene, poses[None], default_intrinsics(RESOLUTION), RESOLUTION)[0]


def camera(eye, target):
    return look_at(torch.tensor(eye, dtype=torch.float64), torch.tensor(target, dtype=torch.float64))


def red_columns(frame):
    """Mean column of the pixels showing a red object (red bright, green and blue at -1)."""
    mask = (frame[0] > -0.5) & (frame[1] == -1) & (frame[2] == -1)
    assert mask.any()
    return mask.nonzero()[:, 1].float().mean().item()


def test_default_intrinsics_have_the_field_of_view_and_a_centred_principal_point():
    intrinsics = default_intrinsics(32, fov_degrees=90.0)
    assert intrinsics.dtype == torch.float64
    torch.testing.assert_close(intrinsics, torch.tensor([[16.0, 0, 16], [0, 16.0, 16], [0, 0, 1]],
                                                        dtype=torch.float64))


def test_a_sphere_straight_ahead_fills_the_centre_with_ground_below_and_sky_above():
    frame = shoot(one_scene(sphere(0.0, 0.0, 0.5, RED)), camera((-4.0, 0.0, 0.5), (0.0, 0.0, 0.5))[None])[0]
    centre = frame[:, 15:17, 15:17]
    assert (centre[0] > -0.5).all() and (centre[1:] == -1).all()  # lit pure red
    sky = frame[:, :4]
    assert (sky[2] - sky[0] > 0.5).all()  # blue above
    ground = frame[:, 24:]
    torch.testing.assert_close(ground[0], ground[1])  # grey: the white and black checkerboard
    torch.testing.assert_close(ground[0], ground[2])
    assert ground.max() - ground.min() > 1.0  # with both colours in view
    assert not (frame[0, :, :6] > -0.5).logical_and(frame[1, :, :6] == -1).any()  # no sphere at the side


def test_the_checkerboard_fades_to_its_mean_colour_towards_the_horizon_instead_of_aliasing():
    empty = one_scene(sphere(0.0, 0.0, 0.5, RED), valid=[False])
    frame = shoot(empty, camera((-4.0, 0.0, 1.5), (0.0, 0.0, 1.5))[None])[0]  # horizon between rows 15 and 16
    lit_white = AMBIENT + (1 - AMBIENT) * TOWARDS_LIGHT[2]
    assert ((frame[:, 16:19] - (lit_white - 1)).abs() < 0.05).all()  # the mean of lit white and black
    assert frame[:, 28:].max() - frame[:, 28:].min() > 1.0  # sharp near the camera


def test_the_nearest_valid_primitive_hides_the_ones_behind_it():
    scene = one_scene(box(-3.0, 0.0, (0.3, 0.3, 0.5), GREEN), sphere(1.0, 0.0, 0.6, RED),
                      box(-1.5, 0.0, (0.3, 0.3, 0.3), BLUE), valid=[False, True, True])
    frame = shoot(scene, camera((-4.0, 0.0, 0.3), (0.0, 0.0, 0.3))[None])[0]
    assert frame[2, 16, 16] > -0.5 and (frame[:2, 16, 16] == -1).all()  # the blue box, not the red sphere
    assert (frame[1] == -1).logical_and(frame[0] > -0.5).any()  # the red sphere shows around it
    assert not (frame[1] > frame[0] + 0.5).any()  # the invalid green box is not drawn


def test_box_faces_are_lambert_shaded_by_the_fixed_light():
    scene = one_scene(box(0.0, 0.0, (0.5, 0.5, 0.4), RED))
    frame = shoot(scene, camera((-4.0, 0.0, 2.5), (0.0, 0.0, 0.4))[None])[0]  # sees the top and the -x face
    on_box = (frame[1] == -1) & (frame[2] == -1) & (frame[0] > -1)
    brightness = {face: 2 * (AMBIENT + (1 - AMBIENT) * cosine.clamp_min(0)) - 1
                  for face, cosine in (("top", TOWARDS_LIGHT[2]), ("front", -TOWARDS_LIGHT[0]))}
    seen = frame[0][on_box]
    on_a_face = [(seen - value).abs() < 1e-5 for value in brightness.values()]
    assert on_a_face[0].sum() > 10 and on_a_face[1].sum() > 10  # both faces in view
    assert (on_a_face[0] | on_a_face[1]).all()  # and nothing else


@pytest.mark.parametrize(("strength", "moves"), [(-0.3, "left"), (0.3, "right")])
def test_an_object_moves_against_the_pan(strength, moves):
    """A negative pan turns the camera right (towards world -y), so the scene moves left in the image."""
    scene = one_scene(box(0.0, 0.0, (0.4, 0.4, 0.4), RED))
    first, last = shoot(scene, make_trajectory("pan", 2, strength=strength))
    shift = red_columns(last) - red_columns(first)
    assert shift < -3 if moves == "left" else shift > 3


def test_dolly_in_enlarges_objects_and_tilting_up_shows_more_sky():
    scene = one_scene(sphere(0.0, 0.0, 0.5, RED))
    near, far = shoot(scene, make_trajectory("dolly", 2, strength=0.4))[[1, 0]]
    red = lambda frame: ((frame[0] > -0.5) & (frame[1] == -1)).sum()  # noqa: E731
    assert red(near) > 1.5 * red(far)
    level, raised = shoot(scene, make_trajectory("tilt", 2, strength=0.3))
    sky = lambda frame: (frame[2] - frame[0] > 0.3).sum()  # noqa: E731
    assert sky(raised) > sky(level) + 3 * RESOLUTION


def test_a_static_camera_gives_identical_frames_and_a_moving_one_does_not():
    scene = random_scenes(1, seed=0)
    still = shoot(scene, camera((-4.0, 0.5, 1.5), (0.0, 0.0, 0.0)).expand(3, 4, 4))
    assert torch.equal(still[0], still[1]) and torch.equal(still[0], still[2])
    moving = shoot(scene, make_trajectory("orbit", 3))
    assert (moving[0] - moving[2]).abs().mean() > 0.05


def test_random_scenes_depend_only_on_seed_and_index():
    few, many = random_scenes(2, seed=7), random_scenes(5, seed=7)
    for name in ("kind", "centre", "half_size", "colour", "valid", "ground"):
        assert torch.equal(getattr(few.index(1), name), getattr(many.index(1), name))
    assert not torch.equal(random_scenes(2, seed=8).centre, few.centre)
    assert len(many) == 5 and len(many.index(torch.tensor([0, 2]))) == 2
    counts = many.valid.sum(dim=1)
    assert counts.min() >= 3 and counts.max() <= 5
    resting = many.centre[..., 2] - many.half_size[..., 2]
    assert resting[many.valid].abs().max() < 1e-6
    assert many.centre[..., :2][many.valid].norm(dim=-1).max() <= 2.0


def test_camera_paths_draw_trajectory_strength_sign_radius_and_height_per_clip():
    poses, index = random_camera_paths(40, 4, seed=3, trajectories=("pan", "dolly"))
    assert poses.shape == (40, 4, 4, 4) and poses.dtype == torch.float64 and index.dtype == torch.int64
    assert set(index.tolist()) == {0, 1}
    eyes = poses[:, :, :3, 3]
    assert (eyes[:, 0, :2].norm(dim=-1) - 3.5).min() >= 0 and (eyes[:, 0, :2].norm(dim=-1) - 4.5).max() <= 0
    assert eyes[:, 0, 2].min() >= 1.0 and eyes[:, 0, 2].max() <= 2.0
    pans, dollies = index == 0, index == 1
    torch.testing.assert_close(eyes[pans], eyes[pans, :1].expand(-1, 4, -1))  # a pan turns in place
    forward = poses[pans][:, :, :3, 2]
    turn = torch.atan2(forward[:, -1, 1], forward[:, -1, 0]) - torch.atan2(forward[:, 0, 1], forward[:, 0, 0])
    assert (turn > 0).any() and (turn < 0).any()  # both directions
    assert turn.abs().min() >= 0.5 * 0.5 - 1e-9 and turn.abs().max() <= 0.5 * 1.5 + 1e-9
    distance = eyes[dollies].norm(dim=-1)
    assert ((distance[:, -1] < distance[:, 0]).any() and (distance[:, -1] > distance[:, 0]).any())
    again, _ = random_camera_paths(2, 4, seed=3, trajectories=("pan", "dolly"))
    assert torch.equal(again, poses[:2])


def test_video_dataset_items_shapes_dtypes_range_and_determinism():
    dataset = CameraVideoDataset(3, frames=4, resolution=16, seed=1)
    assert len(dataset) == 3 and dataset.videos.shape == (3, 4, 3, 16, 16)
    assert dataset.videos.dtype == torch.uint8
    video, poses, intrinsics, trajectory = dataset[2]
    assert video.shape == (4, 3, 16, 16) and video.dtype == torch.float32
    assert -1 <= video.min() and video.max() <= 1 and video.std() > 0.2
    assert poses.shape == (4, 4, 4) and poses.dtype == torch.float32
    assert intrinsics.shape == (4, 3, 3) and intrinsics.dtype == torch.float32
    torch.testing.assert_close(intrinsics[0], default_intrinsics(16).float())
    assert isinstance(trajectory, int) and 0 <= trajectory < len(dataset.trajectories)
    torch.testing.assert_close(video, dataset.video_tensor([2])[0])
    videos = dataset.video_tensor()
    assert (videos[:, 0] != videos[:, -1]).any(dim=(1, 2, 3)).all()  # every clip moves
    again = CameraVideoDataset(3, frames=4, resolution=16, seed=1)
    assert torch.equal(again.videos, dataset.videos)
    assert torch.equal(again.camera_to_world, dataset.camera_to_world)
    other = CameraVideoDataset(3, frames=4, resolution=16, seed=2)
    assert not torch.equal(other.videos, dataset.videos)
    longer = CameraVideoDataset(4, frames=4, resolution=16, seed=1)
    assert torch.equal(longer.videos[:3], dataset.videos)
    with pytest.raises(IndexError):
        dataset[3]


def test_rendering_matches_its_value_range_and_resolution():
    scenes = random_scenes(2, seed=0)
    video = render(scenes, random_camera_paths(2, 2, seed=0)[0], default_intrinsics(24), 24)
    assert video.shape == (2, 2, 3, 24, 24) and video.dtype == torch.float32
    assert video.min() >= -1 and video.max() <= 1 and not video.isnan().any()


def test_bad_input_is_reported_clearly():
    scenes = random_scenes(2, seed=0)
    poses = random_camera_paths(2, 2, seed=0)[0]
    intrinsics = default_intrinsics(16)
    with pytest.raises(GenlabError, match="trajectory must be one of"):
        CameraVideoDataset(2, trajectories=("orbit", "spin"))
    with pytest.raises(GenlabError, match="frames must be an integer of at least 2"):
        random_camera_paths(2, 1, seed=0)
    with pytest.raises(GenlabError, match="resolution must be an integer of at least 8"):
        CameraVideoDataset(2, resolution=4)
    with pytest.raises(GenlabError, match="clips must be a positive integer"):
        CameraVideoDataset(0)
    with pytest.raises(GenlabError, match=r"camera_to_world must be .*\[N, T, 4, 4\] with N = 2 scenes"):
        render(scenes, poses[:1], intrinsics, 16)
    with pytest.raises(GenlabError, match="camera_to_world must be"):
        render(scenes, poses[:, 0], intrinsics, 16)
    with pytest.raises(GenlabError, match=r"intrinsics must be a tensor of shape \[3, 3\] or \[2, 2, 3, 3\]"):
        render(scenes, poses, intrinsics[:2], 16)
    flat = intrinsics.clone()
    flat[1, 1] = 0
    with pytest.raises(GenlabError, match="positive focal lengths"):
        render(scenes, poses, flat, 16)
    with pytest.raises(GenlabError, match="fov_degrees"):
        default_intrinsics(16, fov_degrees=math.pi * 60)
