"""Procedural 3-D scenes rendered by a vectorised ray caster, and camera-controlled video clips of them.

A scene is a ground plane (z = 0) with a two-colour checkerboard of ``CHECKER_SIZE`` world units,
a sky whose colour runs from ``SKY_HORIZON`` to ``SKY_ZENITH`` with elevation, and 3–5 saturated
spheres and axis-aligned boxes resting on the ground within ``LAYOUT_RADIUS`` of the origin.
Surfaces are Lambert-shaded by a fixed directional light plus ambient; there are no shadows.
The checkerboard is box-filtered over each pixel's footprint on the ground (ray differentials),
so it fades to its mean colour towards the horizon instead of aliasing.

Cameras follow the conventions of :mod:`genlab.data.trajectories`: camera-to-world 4×4 matrices
with OpenCV axes (x right, y down, z forward) and pinhole intrinsics in pixels. Each pixel casts
one ray through its centre. Colours are float in ``[-1, 1]``.

:class:`CameraVideoDataset` pairs scene ``i`` with camera path ``i`` (both keyed by
``(seed, i)``) and renders every clip once, at construction.
"""

from __future__ import annotations

import colorsys
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from genlab.data.base import check_choice
from genlab.data.trajectories import DEFAULT_STRENGTH, TRAJECTORIES, make_trajectory
from genlab.errors import GenlabError

SPHERE, BOX = 0, 1
MAX_PRIMITIVES = 5
MIN_PRIMITIVES = 3
LAYOUT_RADIUS = 2.0  # primitive centres lie in a disc of this radius around the origin
LAYOUT_GAP = 0.15  # smallest gap between the ground footprints of two primitives
PLACEMENT_TRIES = 100
SPHERE_RADIUS = (0.3, 0.6)
BOX_HALF_SIZE = (0.25, 0.6)
OBJECT_PALETTE = (
    (0.95, 0.10, 0.10),  # red
    (1.00, 0.55, 0.05),  # orange
    (0.95, 0.90, 0.10),  # yellow
    (0.10, 0.80, 0.15),  # green
    (0.05, 0.80, 0.90),  # cyan
    (0.15, 0.30, 1.00),  # blue
    (0.60, 0.15, 0.95),  # purple
    (1.00, 0.25, 0.75),  # pink
)
CHECKER_SIZE = 0.75
CHECKER_FILTER = 1.5  # width of the checkerboard's box filter in pixels (1 leaves moiré at mid distance)
SKY_HORIZON = (0.88, 0.90, 0.95)
SKY_ZENITH = (0.25, 0.45, 0.90)
SKY_SPAN = 0.5  # sine of the elevation at which the sky reaches its zenith colour
LIGHT = (-0.4, -0.35, 0.85)  # towards the light; normalised below
AMBIENT = 0.35
CAMERA_RADIUS = (3.5, 4.5)
CAMERA_HEIGHT = (1.0, 2.0)
STRENGTH_SCALE = (0.5, 1.5)

_SCENE_SALT = 0x5CE9E
_CAMERA_SALT = 0xCA3E8
_CHUNK_RAYS = 1 << 18
_CLIPS_PER_STEP = 32
_EPSILON = 1e-4
_LIGHT = torch.nn.functional.normalize(torch.tensor(LIGHT), dim=0)


def default_intrinsics(resolution: int, fov_degrees: float = 60.0) -> Tensor:
    """Pinhole intrinsics ``[3, 3]`` (float64, pixels) of a square image with a horizontal/vertical
    field of view of ``fov_degrees``: square pixels, principal point at the image centre."""
    _check_resolution(resolution)
    if not 0 < fov_degrees < 180:
        raise GenlabError(f"fov_degrees must lie in (0, 180), got {fov_degrees}")
    focal = resolution / 2 / math.tan(math.radians(fov_degrees) / 2)
    return torch.tensor([[focal, 0.0, resolution / 2], [0.0, focal, resolution / 2], [0.0, 0.0, 1.0]],
                        dtype=torch.float64)


@dataclass(frozen=True)
class SceneBatch:
    """N scenes, each with up to P primitives (padded; ``valid`` marks the real ones).

    ``kind`` int64 ``[N, P]`` (``SPHERE`` or ``BOX``); ``centre`` float32 ``[N, P, 3]`` (world
    units); ``half_size`` float32 ``[N, P, 3]``, a box's half-extents along x, y, z, a sphere's
    radius in all three; ``colour`` float32 ``[N, P, 3]`` in ``[0, 1]``; ``valid`` bool ``[N, P]``;
    ``ground`` float32 ``[N, 2, 3]`` in ``[0, 1]``, the two checkerboard colours (the cell at the
    origin's +x, +y corner has the first).
    """

    kind: Tensor
    centre: Tensor
    half_size: Tensor
    colour: Tensor
    valid: Tensor
    ground: Tensor

    def __post_init__(self) -> None:
        count, primitives = self.kind.shape
        expected = {"centre": (count, primitives, 3), "half_size": (count, primitives, 3),
                    "colour": (count, primitives, 3), "valid": (count, primitives), "ground": (count, 2, 3)}
        for name, shape in expected.items():
            found = tuple(getattr(self, name).shape)
            if found != shape:
                raise GenlabError(f"SceneBatch.{name} must have shape {shape}, got {found}")

    def __len__(self) -> int:
        return self.kind.shape[0]

    def index(self, which: int | slice | Sequence[int] | Tensor) -> SceneBatch:
        """The scenes at ``which`` (an int keeps the scene dimension: a batch of one)."""
        if isinstance(which, int | np.integer):
            which = [int(which)]
        return SceneBatch(*(getattr(self, field.name)[which] for field in fields(self)))


def random_scenes(count: int, seed: int) -> SceneBatch:
    """``count`` random scenes; scene ``i`` depends only on ``(seed, i)``."""
    _check_positive("count", count)
    _check_seed(seed)
    scenes = [_random_scene(np.random.default_rng([seed, index, _SCENE_SALT])) for index in range(count)]
    return SceneBatch(*(torch.from_numpy(np.stack(part)) for part in zip(*scenes, strict=True)))


def _random_scene(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """One scene's padded arrays, in the order of :class:`SceneBatch`'s fields."""
    count = int(rng.integers(MIN_PRIMITIVES, MAX_PRIMITIVES + 1))
    kind = np.zeros(MAX_PRIMITIVES, dtype=np.int64)
    half_size = np.zeros((MAX_PRIMITIVES, 3), dtype=np.float32)
    kind[:count] = rng.integers(0, 2, count)
    for slot in range(count):
        if kind[slot] == SPHERE:
            half_size[slot] = rng.uniform(*SPHERE_RADIUS)
        else:
            half_size[slot] = rng.uniform(*BOX_HALF_SIZE, 3)
    footprint = np.where(kind == SPHERE, half_size[:, 0], np.hypot(half_size[:, 0], half_size[:, 1]))
    centre = np.zeros((MAX_PRIMITIVES, 3), dtype=np.float32)
    centre[:count, :2] = _layout(rng, footprint[:count])
    centre[:, 2] = half_size[:, 2]  # resting on the ground
    colour = np.zeros((MAX_PRIMITIVES, 3), dtype=np.float32)
    colour[:count] = np.asarray(OBJECT_PALETTE)[rng.choice(len(OBJECT_PALETTE), count, replace=False)]
    valid = np.arange(MAX_PRIMITIVES) < count
    return kind, centre, half_size, colour, valid, _ground_colours(rng)


def _layout(rng: np.random.Generator, footprint: np.ndarray) -> np.ndarray:
    """Ground positions ``[K, 2]`` for primitives of footprint radii ``footprint [K]``, drawn in the
    layout disc so that footprints keep ``LAYOUT_GAP`` apart (after ``PLACEMENT_TRIES`` failed draws
    the last one is kept: a rare overlap only merges two primitives)."""
    placed: list[np.ndarray] = []
    for radius in footprint:
        for _ in range(PLACEMENT_TRIES):
            distance, angle = LAYOUT_RADIUS * math.sqrt(rng.random()), 2 * math.pi * rng.random()
            position = np.array([distance * math.cos(angle), distance * math.sin(angle)])
            if all(np.hypot(*(position - other)) >= radius + footprint[k] + LAYOUT_GAP
                   for k, other in enumerate(placed)):
                break
        placed.append(position)
    return np.stack(placed)


def _ground_colours(rng: np.random.Generator) -> np.ndarray:
    """Two checkerboard colours ``[2, 3]``: a light and a dark tone of two random, muted hues."""
    light = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.1, 0.3), rng.uniform(0.8, 0.9))
    dark = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.1, 0.3), rng.uniform(0.2, 0.3))
    return np.array([light, dark], dtype=np.float32)


def render(scenes: SceneBatch, camera_to_world: Tensor, intrinsics: Tensor, resolution: int) -> Tensor:
    """Render scene ``n`` from cameras ``camera_to_world [N, T, 4, 4]`` with ``intrinsics``
    (``[N, T, 3, 3]`` or one shared ``[3, 3]``, pixels): video float32 ``[N, T, 3, R, R]`` in ``[-1, 1]``.

    One ray per pixel through its centre ``(j + 0.5, i + 0.5)``; cameras are cast in chunks of
    about ``_CHUNK_RAYS`` rays in float32.
    """
    _check_resolution(resolution)
    count, frames = _check_cameras(camera_to_world, len(scenes))
    intrinsics = _check_intrinsics(intrinsics, count, frames)
    poses = camera_to_world.to(torch.float32).reshape(count * frames, 4, 4)
    intrinsics = intrinsics.to(torch.float32).expand(count, frames, 3, 3).reshape(count * frames, 3, 3)
    scene_of_camera = torch.arange(count).repeat_interleave(frames)
    centres = torch.arange(resolution, dtype=torch.float32) + 0.5
    rows, columns = torch.meshgrid(centres, centres, indexing="ij")
    pixels = torch.stack([columns.flatten(), rows.flatten()])  # [2, R*R]: (u, v)
    video = torch.empty(count * frames, 3, resolution * resolution)
    step = max(1, _CHUNK_RAYS // resolution**2)
    for start in range(0, count * frames, step):
        cameras = slice(start, start + step)
        scene = scenes.index(scene_of_camera[cameras])
        video[cameras] = _cast(scene, poses[cameras], intrinsics[cameras], pixels)
    return video.view(count, frames, 3, resolution, resolution)


def _cast(scenes: SceneBatch, poses: Tensor, intrinsics: Tensor, pixels: Tensor) -> Tensor:
    """Colours ``[B, 3, R]`` in ``[-1, 1]`` seen by B cameras (``poses [B, 4, 4]``, ``intrinsics
    [B, 3, 3]``, float32) of their scenes (a batch of B) at ``pixels [2, R]``."""
    rotation, origin = poses[:, :3, :3], poses[:, :3, 3]
    focal, principal = intrinsics[:, [0, 1], [0, 1]], intrinsics[:, :2, 2]
    plane = (pixels[None] - principal[..., None]) / focal[..., None]  # [B, 2, R] on the z = 1 plane
    direction = rotation[..., :2] @ plane + rotation[..., 2:]  # [B, 3, R], not normalised
    direction = direction.where(direction != 0, 1e-12)  # keeps the slab test free of 0 / 0
    object_distance, nearest = _hit_primitives(scenes, origin, direction)
    ground_distance = (-origin[:, 2:] / direction[:, 2]).where(origin[:, 2:] * direction[:, 2] < 0, math.inf)
    object_rgb = _shade_primitives(scenes, origin, direction, object_distance, nearest)
    steps = rotation[..., :2] / focal[:, None]  # [B, 3, 2]: d(direction)/du, d(direction)/dv
    ground_rgb = _shade_ground(scenes.ground, origin, direction, ground_distance.nan_to_num(posinf=0), steps)
    sky_rgb = _sky(direction)
    on_object = (object_distance < ground_distance)[:, None]
    on_ground = ground_distance.isfinite()[:, None]
    rgb = object_rgb.where(on_object, ground_rgb.where(on_ground, sky_rgb))
    return (rgb * 2 - 1).clamp(-1, 1)


def _hit_primitives(scenes: SceneBatch, origin: Tensor, direction: Tensor) -> tuple[Tensor, Tensor]:
    """Distance ``[B, R]`` along ``direction [B, 3, R]`` from ``origin [B, 3]`` to the nearest
    primitive (inf on a miss; rays starting inside a primitive do not see it) and its index ``[B, R]``."""
    offset = (origin[:, None] - scenes.centre)[..., None]  # [B, P, 3, 1]
    ray = direction[:, None]  # [B, 1, 3, R]
    half = scenes.half_size[..., None]
    along = (ray * offset).sum(dim=2)  # [B, P, R]
    square = (ray * ray).sum(dim=2)
    excess = (offset * offset).sum(dim=2) - half[:, :, 0] ** 2
    discriminant = along * along - square * excess
    sphere = ((-along - discriminant.clamp_min(0).sqrt()) / square).where(discriminant > 0, math.inf)
    first, second = (-half - offset) / ray, (half - offset) / ray  # slab crossings [B, P, 3, R]
    enter = torch.minimum(first, second).amax(dim=2)
    leave = torch.maximum(first, second).amin(dim=2)
    box = enter.where(enter <= leave, math.inf)
    distance = sphere.where(scenes.kind[..., None] == SPHERE, box)
    distance = distance.where(scenes.valid[..., None] & (distance > _EPSILON), math.inf)
    return distance.min(dim=1)


def _shade_primitives(scenes: SceneBatch, origin: Tensor, direction: Tensor, distance: Tensor,
                      nearest: Tensor) -> Tensor:
    """Lambert-shaded colour ``[B, 3, R]`` in ``[0, 1]`` of primitive ``nearest [B, R]`` hit at
    ``distance [B, R]`` (garbage where the distance is infinite)."""
    def pick(values: Tensor) -> Tensor:  # [B, P, 3] -> [B, 3, R] at each ray's primitive
        return values.gather(1, nearest[..., None].expand(-1, -1, 3)).transpose(1, 2)

    point = origin[..., None] + direction * distance.nan_to_num(posinf=0)[:, None]
    local = (point - pick(scenes.centre)) / pick(scenes.half_size).clamp_min(_EPSILON)  # unit sphere / cube
    magnitude = local.abs()
    box_normal = local.sign() * (magnitude == magnitude.amax(dim=1, keepdim=True))
    is_sphere = (scenes.kind.gather(1, nearest) == SPHERE)[:, None]
    normal = torch.nn.functional.normalize(local.where(is_sphere, box_normal), dim=1)
    return pick(scenes.colour) * _lambert(normal)


def _shade_ground(ground: Tensor, origin: Tensor, direction: Tensor, distance: Tensor,
                  steps: Tensor) -> Tensor:
    """Filtered checkerboard colour ``[B, 3, R]`` where rays hit the ground at ``distance [B, R]``;
    ``steps [B, 3, 2]`` is how the ray direction changes per pixel in u and v (ray differentials)."""
    point = origin[:, :2, None] + direction[:, :2] * distance[:, None]  # [B, 2, R]
    slope = direction[:, :2] / direction[:, 2:]  # [B, 2, R]
    # the ground point o + s d with s = -o_z / d_z moves by s (d' - d d'_z / d_z) per pixel step
    moves = [distance[:, None] * (steps[:, :2, k, None] - slope * steps[:, 2, k, None, None])
             for k in range(2)]
    footprint = CHECKER_FILTER * (moves[0].abs() + moves[1].abs())  # [B, 2, R]: extent along world x, y
    second = _filtered_checker(point / CHECKER_SIZE, footprint / CHECKER_SIZE)  # [B, R]
    light, dark = ground[:, 0, :, None], ground[:, 1, :, None]
    up = torch.tensor([0.0, 0.0, 1.0])[None, :, None]
    return (light + (dark - light) * second[:, None]) * _lambert(up)


def _filtered_checker(point: Tensor, width: Tensor) -> Tensor:
    """Share ``[B, R]`` of the second checkerboard colour over a box of ``width [B, 2, R]`` around
    ``point [B, 2, R]`` (both in cells): 0 or 1 for a sharp sample, 0.5 when very blurred."""
    width = width + 1e-3

    def triangle(x: Tensor) -> Tensor:
        return (torch.remainder(x / 2, 1) - 0.5).abs()

    integral = 2 * (triangle(point - width / 2) - triangle(point + width / 2)) / width
    return 0.5 - 0.5 * integral.prod(dim=1)


def _sky(direction: Tensor) -> Tensor:
    """Sky colour ``[B, 3, R]``: horizon to zenith colour by the elevation of ``direction [B, 3, R]``."""
    rise = (direction[:, 2:] / direction.norm(dim=1, keepdim=True) / SKY_SPAN).clamp(0, 1)
    horizon, zenith = torch.tensor(SKY_HORIZON)[None, :, None], torch.tensor(SKY_ZENITH)[None, :, None]
    return horizon + (zenith - horizon) * rise


def _lambert(normal: Tensor) -> Tensor:
    """Brightness ``[B, 1, R]`` in ``[AMBIENT, 1]`` of unit normals ``[B, 3, R]`` under the fixed light."""
    return AMBIENT + (1 - AMBIENT) * (normal * _LIGHT[None, :, None]).sum(dim=1, keepdim=True).clamp_min(0)


def random_camera_paths(count: int, frames: int, seed: int,
                        trajectories: Sequence[str] = tuple(TRAJECTORIES)) -> tuple[Tensor, Tensor]:
    """Camera paths of ``count`` clips: camera-to-world float64 ``[count, frames, 4, 4]`` and the
    index int64 ``[count]`` of each clip's trajectory in ``trajectories``.

    Clip ``i`` depends only on ``(seed, i)`` and ``trajectories``: a trajectory drawn uniformly,
    its default strength scaled by ``U(STRENGTH_SCALE)`` with a random sign, a radius from
    ``U(CAMERA_RADIUS)``, a height from ``U(CAMERA_HEIGHT)`` and a trajectory seed.
    """
    _check_positive("count", count)
    _check_frames(frames)
    _check_seed(seed)
    names = _check_trajectories(trajectories)
    paths, chosen = [], []
    for index in range(count):
        rng = np.random.default_rng([seed, index, _CAMERA_SALT])
        choice = int(rng.integers(len(names)))
        strength = DEFAULT_STRENGTH[names[choice]] * rng.uniform(*STRENGTH_SCALE) * rng.choice([-1.0, 1.0])
        paths.append(make_trajectory(names[choice], frames, radius=rng.uniform(*CAMERA_RADIUS),
                                     height=rng.uniform(*CAMERA_HEIGHT), strength=float(strength),
                                     seed=int(rng.integers(2**31))))
        chosen.append(choice)
    return torch.stack(paths), torch.tensor(chosen, dtype=torch.int64)


class CameraVideoDataset(Dataset):
    """``clips`` camera-controlled videos of random scenes, all rendered at construction.

    Item ``i`` is ``(video, camera_to_world, intrinsics, trajectory)``: float32 ``[T, 3, R, R]``
    in ``[-1, 1]``, float32 ``[T, 4, 4]``, float32 ``[T, 3, 3]`` (pixels) and the int index of the
    clip's trajectory in :attr:`trajectories`. Attributes: ``videos`` uint8 ``[N, T, 3, R, R]``
    (``video_tensor`` gives them as float), ``camera_to_world`` float64 ``[N, T, 4, 4]``,
    ``intrinsics`` float64 ``[N, T, 3, 3]``, ``trajectory_index`` int64 ``[N]``, ``scenes``,
    ``trajectories`` (names), ``frames``, ``resolution``, ``seed``.
    """

    def __init__(self, clips: int, frames: int = 8, resolution: int = 32, seed: int = 0,
                 trajectories: Sequence[str] = tuple(TRAJECTORIES), progress: bool = False) -> None:
        _check_positive("clips", clips)
        _check_resolution(resolution)
        self.trajectories = _check_trajectories(trajectories)
        self.frames, self.resolution, self.seed = frames, resolution, seed
        paths = random_camera_paths(clips, frames, seed, self.trajectories)
        self.camera_to_world, self.trajectory_index = paths
        self.scenes = random_scenes(clips, seed)
        self.intrinsics = default_intrinsics(resolution).expand(clips, frames, 3, 3).contiguous()
        self.videos = torch.empty(clips, frames, 3, resolution, resolution, dtype=torch.uint8)
        with tqdm(total=clips, desc="camera videos", unit="clip", disable=not progress) as bar:
            for start in range(0, clips, _CLIPS_PER_STEP):
                chosen = slice(start, start + _CLIPS_PER_STEP)
                poses, intrinsics = self.camera_to_world[chosen], self.intrinsics[chosen]
                video = render(self.scenes.index(chosen), poses, intrinsics, resolution)
                self.videos[chosen] = ((video + 1) * 127.5).round().to(torch.uint8)
                bar.update(len(video))

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor, int]:
        index = operator.index(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is out of range for a data set of {len(self)} clips")
        video = self.video_tensor([index])[0]
        return (video, self.camera_to_world[index].float(), self.intrinsics[index].float(),
                int(self.trajectory_index[index]))

    def video_tensor(self, indices: Sequence[int] | Tensor | slice | None = None) -> Tensor:
        """Videos at ``indices`` (all when None): float32 ``[M, T, 3, R, R]`` in ``[-1, 1]``."""
        chosen = self.videos if indices is None else self.videos[indices]
        return chosen.float() / 127.5 - 1


def _check_positive(argument: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise GenlabError(f"{argument} must be a positive integer, got {value!r}")


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise GenlabError(f"seed must be a non-negative integer, got {seed!r}")


def _check_frames(frames: int) -> None:
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 2:
        raise GenlabError(f"frames must be an integer of at least 2, got {frames!r}")


def _check_resolution(resolution: int) -> None:
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 8:
        raise GenlabError(f"resolution must be an integer of at least 8 pixels, got {resolution!r}")


def _check_trajectories(trajectories: Sequence[str]) -> tuple[str, ...]:
    names = (trajectories,) if isinstance(trajectories, str) else tuple(trajectories)
    if not names:
        raise GenlabError("trajectories must name at least one trajectory")
    for name in names:
        check_choice("trajectory", name, tuple(TRAJECTORIES))
    return names


def _check_cameras(camera_to_world: Tensor, scenes: int) -> tuple[int, int]:
    """``(N, T)`` of ``camera_to_world``, which must be ``[N, T, 4, 4]`` with N the scene count."""
    shape = tuple(camera_to_world.shape) if isinstance(camera_to_world, Tensor) else None
    if shape is None or len(shape) != 4 or shape[2:] != (4, 4) or shape[0] != scenes or shape[1] < 1:
        raise GenlabError(f"camera_to_world must be a tensor of shape [N, T, 4, 4] with N = {scenes} scenes, "
                          f"got {shape if shape is not None else type(camera_to_world).__name__}")
    return shape[0], shape[1]


def _check_intrinsics(intrinsics: Tensor, count: int, frames: int) -> Tensor:
    """``intrinsics`` as ``[N, T, 3, 3]`` (a shared ``[3, 3]`` expanded), with positive focal lengths."""
    shape = tuple(intrinsics.shape) if isinstance(intrinsics, Tensor) else None
    if shape not in ((3, 3), (count, frames, 3, 3)):
        raise GenlabError(f"intrinsics must be a tensor of shape [3, 3] or [{count}, {frames}, 3, 3], "
                          f"got {shape if shape is not None else type(intrinsics).__name__}")
    if not (intrinsics[..., [0, 1], [0, 1]] > 0).all():
        raise GenlabError("intrinsics must have positive focal lengths fx = K[0, 0] and fy = K[1, 1]")
    return intrinsics.expand(count, frames, 3, 3)
