"""Episode data for world models: PushBlock rollouts written as ``.npz`` shards and read back.

Each episode runs ``steps`` actions from a fresh ``reset`` (fixed length: success does not end
it). It is driven either by the scripted pushing policy with Gaussian action noise or by a
random policy whose actions are smoothed uniform noise, so that it wanders rather than jitters.
Episode ``i`` of a data set with seed ``s`` depends only on ``(s, i)``, so shards can be
regenerated or extended deterministically.

A shard holds ``frames (N, steps + 1, H, W, 3) uint8``, ``actions (N, steps, 2) float32``,
``rewards (N, steps) float32``, ``states (N, steps + 1, 6) float32`` (agent, block and goal
positions, for perceptual features and evaluation), ``success (N,) bool`` and ``scripted (N,)
bool`` (which policy).
``meta.json`` beside the shards records how they were made.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from genlab.core.paths import existing_dir
from genlab.errors import GenlabError
from genlab.worldmodel.env import PushBlockEnv, scripted_action

KEYS = ("frames", "actions", "rewards", "states", "success", "scripted")


def rollout_episode(seed: int, index: int, steps: int, size: int, scripted_share: float,
                    noise: float) -> dict[str, np.ndarray]:
    """One fixed-length episode; the policy and everything else depend only on ``(seed, index)``."""
    rng = np.random.default_rng([seed, index])
    env = PushBlockEnv(size=size, max_steps=steps, terminate_on_success=False)
    frame, info = env.reset(seed=int(rng.integers(2**31)))
    scripted = bool(rng.random() < scripted_share)
    frames, actions, rewards, states = [frame], [], [], [info["state"]]
    drift = rng.uniform(-1, 1, 2)
    for _ in range(steps):
        if scripted:
            action = scripted_action(info["state"], noise, rng)
        else:
            drift = 0.7 * drift + 0.3 * rng.uniform(-1, 1, 2)
            action = np.clip(drift / max(np.abs(drift).max(), 0.5), -1, 1).astype(np.float32)
        frame, reward, _, _, info = env.step(action)
        frames.append(frame)
        actions.append(action)
        rewards.append(reward)
        states.append(info["state"])
    return {"frames": np.stack(frames), "actions": np.stack(actions).astype(np.float32),
            "rewards": np.asarray(rewards, np.float32), "states": np.stack(states),
            "success": np.asarray(info["success"]),
            "scripted": np.asarray(scripted)}


def write_shards(out: Path | str, episodes: int, steps: int = 30, size: int = 64, shard_size: int = 100,
                 seed: int = 0, scripted_share: float = 0.5, noise: float = 0.3,
                 progress: bool = True) -> list[Path]:
    """Generate ``episodes`` episodes into ``out/shard-00000.npz``, ``shard-00001.npz``, … (+ ``meta.json``).

    Returns the shard paths.
    """
    if episodes < 1 or steps < 1 or shard_size < 1:
        raise GenlabError(f"episodes, steps and shard_size must be >= 1, got {episodes}, {steps}, {shard_size}")
    if not 0 <= scripted_share <= 1:
        raise GenlabError(f"scripted_share must be in [0, 1], got {scripted_share}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    bar = tqdm(total=episodes, desc="PushBlock episodes", unit="ep", disable=not progress)
    for start in range(0, episodes, shard_size):
        batch = []
        for index in range(start, min(start + shard_size, episodes)):
            batch.append(rollout_episode(seed, index, steps, size, scripted_share, noise))
            bar.update(1)
        path = out / f"shard-{start // shard_size:05d}.npz"
        np.savez_compressed(path, **{key: np.stack([episode[key] for episode in batch]) for key in KEYS})
        paths.append(path)
    bar.close()
    meta = {"env": "PushBlock", "episodes": episodes, "steps": steps, "size": size, "seed": seed,
            "scripted_share": scripted_share, "noise": noise, "shards": [p.name for p in paths]}
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return paths


def read_shards(directory: Path | str) -> dict[str, np.ndarray]:
    """All shards of ``directory`` concatenated along episodes, checked for the expected keys and shapes."""
    directory = existing_dir(directory, "episode data", "folder of shard-*.npz files")
    paths = sorted(directory.glob("shard-*.npz"))
    if not paths:
        raise GenlabError(f"no shard-*.npz files in {directory}")
    parts = [read_shard(path) for path in paths]
    shapes = {key: {part[key].shape[1:] for part in parts} for key in KEYS}
    mismatched = [key for key, found in shapes.items() if len(found) > 1]
    if mismatched:
        raise GenlabError(f"shards in {directory} disagree on the shape of {mismatched}: {shapes[mismatched[0]]}")
    return {key: np.concatenate([part[key] for part in parts]) for key in KEYS}


def read_shard(path: Path) -> dict[str, np.ndarray]:
    """One shard, or a GenlabError naming the file when it is empty, truncated, not an npz, or incomplete."""
    try:
        data = np.load(path)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise GenlabError(f"{path} is not a PushBlock shard: it holds one array, not an .npz archive")
        with data:
            missing = [key for key in KEYS if key not in data.files]
            if missing:
                raise GenlabError(f"{path} is not a PushBlock shard: missing {missing}")
            shard = {key: data[key] for key in KEYS}
    except (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError, KeyError) as error:
        raise GenlabError(f"{path} is corrupt or not an .npz shard ({error})") from error
    _check_shard(path, shard)
    return shard


def _check_shard(path: Path, shard: dict[str, np.ndarray]) -> None:
    """The arrays of one shard agree on episodes ``N`` and steps ``S`` (see the module docstring)."""
    actions = shard["actions"]
    if actions.ndim != 3 or len(actions) == 0:
        raise GenlabError(f"{path} is not a PushBlock shard: actions should be [episodes >= 1, steps, action_dim], "
                          f"got shape {list(actions.shape)}")
    episodes, steps = actions.shape[:2]
    expected = {"frames": ((episodes, steps + 1), 5), "rewards": ((episodes, steps), 2),
                "states": ((episodes, steps + 1), 3), "success": ((episodes,), 1), "scripted": ((episodes,), 1)}
    for key, (leading, ndim) in expected.items():
        array = shard[key]
        if array.ndim != ndim or array.shape[: len(leading)] != leading:
            raise GenlabError(f"{path}: {key} of shape {list(array.shape)} do not match actions {list(actions.shape)}")
    if shard["frames"].dtype != np.uint8 or shard["frames"].shape[-1] != 3:
        raise GenlabError(f"{path}: frames should be uint8 RGB [..., H, W, 3], got {shard['frames'].dtype} "
                          f"{list(shard['frames'].shape)}")
    for key in ("actions", "rewards", "states"):
        if not np.issubdtype(shard[key].dtype, np.number) or not np.isfinite(shard[key]).all():
            raise GenlabError(f"{path}: {key} should be finite numbers")
