"""``genlab play``: drive a world model from the keyboard in a terminal, or from an action file.

Keys (type them and press Enter; several at once add up): ``w`` up, ``s`` down, ``a`` left,
``d`` right, ``.`` stay, ``q`` quit. Frames are drawn in the terminal with 24-bit colour
half-blocks (two pixel rows per text line).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from genlab.errors import GenlabError
from genlab.worldmodel.env import PushBlockEnv
from genlab.worldmodel.model import WorldModel

KEYS = {"w": (0.0, -1.0), "s": (0.0, 1.0), "a": (-1.0, 0.0), "d": (1.0, 0.0), ".": (0.0, 0.0)}
HELP = "keys: w up, s down, a left, d right (combine, e.g. 'wd'), '.' stay, q quit; then Enter"


def read_actions(path: Path | str, action_dim: int = 2) -> np.ndarray:
    """Actions ``[N, action_dim]`` (N >= 1, finite) from a ``.npy`` file or a text file of one action per line
    (numbers separated by spaces or commas; ``#`` starts a comment); else a GenlabError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise GenlabError(f"action file {path} {'is a folder, not a file' if path.exists() else 'does not exist'}")
    try:
        if path.suffix == ".npy":
            actions = np.load(path)
            if not isinstance(actions, np.ndarray):
                raise GenlabError(f"{path} is not a .npy file of one array")
        else:
            actions = _text_actions(path, action_dim)
    except (ValueError, OSError, EOFError) as error:
        message = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise GenlabError(f"cannot read actions from {path}: {message}") from error
    if actions.ndim != 2 or actions.shape[1] != action_dim or len(actions) == 0:
        raise GenlabError(f"{path} must hold actions of dimension {action_dim} (one per row), "
                          f"got shape {list(actions.shape)}")
    if not np.issubdtype(actions.dtype, np.integer) and not np.issubdtype(actions.dtype, np.floating):
        raise GenlabError(f"{path} must hold numbers, got an array of {actions.dtype}")
    bad = np.flatnonzero(~np.isfinite(actions).all(axis=1))
    if len(bad):
        raise GenlabError(f"{path}: action {bad[0] + 1} is not finite ({actions[bad[0]].tolist()}); actions must "
                          "be finite numbers")
    return actions.astype(np.float32)


def _text_actions(path: Path, action_dim: int) -> np.ndarray:
    """The actions of a text file, one per line; a ValueError naming the first line that is not ``action_dim``
    numbers, or saying that there is no action."""
    actions = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        values = line.split("#")[0].replace(",", " ").split()
        if not values:
            continue
        if len(values) != action_dim:
            raise ValueError(f"line {number} has {len(values)} values; an action is {action_dim} numbers")
        try:
            actions.append([float(value) for value in values])
        except ValueError as error:
            raise ValueError(f"line {number}: {error}") from error
    if not actions:
        raise ValueError(f"no actions in it (one line of {action_dim} numbers per step)")
    return np.array(actions, dtype=np.float32)


def key_action(keys: str) -> np.ndarray | None:
    """The action typed as ``keys`` (e.g. ``"wd"``), clipped to [-1, 1]; ``None`` to quit."""
    keys = keys.strip().lower()
    if keys.startswith("q"):
        return None
    unknown = set(keys) - set(KEYS)
    if unknown:
        raise GenlabError(f"unknown key(s) {''.join(sorted(unknown))!r}; {HELP}")
    return np.clip(sum((np.array(KEYS[k]) for k in keys), np.zeros(2)), -1, 1).astype(np.float32)


def keyboard_actions(lines: Iterable[str], echo=print) -> Iterator[np.ndarray]:
    """Actions from typed lines until ``q`` or the end of input; bad lines are reported and skipped."""
    for line in lines:
        try:
            action = key_action(line)
        except GenlabError as error:
            echo(str(error))
            continue
        if action is None:
            return
        yield action


def ansi_frame(frame: np.ndarray) -> str:
    """A uint8 ``[H, W, 3]`` frame as terminal text: each character is two pixels (upper half-block)."""
    if len(frame) % 2:
        frame = np.concatenate([frame, frame[-1:]])
    lines = []
    for top, bottom in zip(frame[0::2], frame[1::2], strict=True):
        cells = (f"\x1b[38;2;{t[0]};{t[1]};{t[2]}m\x1b[48;2;{b[0]};{b[1]};{b[2]}m\u2580" for t, b in zip(top, bottom, strict=True))
        lines.append("".join(cells) + "\x1b[0m")
    return "\n".join(lines)


def play(world_model: WorldModel, seed: int, actions: Iterable[np.ndarray], compare: bool = True,
         show=None) -> tuple[np.ndarray, list[float]]:
    """Roll ``world_model`` out from PushBlock's first frame (``reset(seed=seed)``) under ``actions``.

    Returns the video ``[T + 1, H, W', 3]`` (imagined frames, or ``true | imagined`` side by side
    with ``compare``, the real environment stepping with the same actions) and the predicted
    rewards. ``show(frame, reward)`` is called after every step (e.g. to draw in the terminal).
    """
    env = PushBlockEnv(size=world_model.tokenizer.config.frame_size, max_steps=10**9, terminate_on_success=False)
    first, _ = env.reset(seed=seed)
    world_model.reset(np.stack([first] * world_model.context_frames))
    gap = np.full((first.shape[0], 2, 3), 255, np.uint8)
    video, rewards = [np.concatenate([first, gap, first], axis=1) if compare else first], []
    for action in actions:
        imagined, reward = world_model.step(action if world_model.transformer.action_conditioned else None)
        rewards.append(reward)
        frame = imagined
        if compare:
            frame = np.concatenate([env.step(action)[0], gap, imagined], axis=1)
        video.append(frame)
        if show is not None:
            show(frame, reward)
    return np.stack(video), rewards
