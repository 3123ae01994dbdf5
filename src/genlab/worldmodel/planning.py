"""Model-predictive control with the cross-entropy method (CEM) on imagined or simulated rollouts.

At every real step the planner draws ``population`` action sequences of ``horizon`` steps from a
Gaussian, scores them, refits the Gaussian to the ``elites`` best for ``iterations`` rounds,
executes the first action of the best sequence and plans again from the next observation (the
mean is warm-started by shifting). Scorers:

* :func:`world_model_scorer`: the world model's reward head on imagined rollouts;
* :func:`imagined_frames_scorer`: the reward function applied to the positions a
  :class:`~genlab.worldmodel.perceptual.StateNet` reads off the imagined frames (a cost on
  predicted frames, as in the visual-MPC benchmark VP² that iVideoGPT reports on);
* :func:`simulator_scorer`: the true simulator from the true state (the upper bound).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from genlab.worldmodel.env import PushBlockEnv, reward_of, simulate_returns
from genlab.worldmodel.model import WorldModel, frames_to_model
from genlab.worldmodel.perceptual import StateNet

# (last Tc frames uint8 [Tc, H, W, 3], true state [6]) -> a function scoring sequences [N, H, A] -> [N]
Scorer = Callable[[np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]]


@dataclass
class CEMConfig:
    horizon: int = 4
    population: int = 64
    elites: int = 8
    iterations: int = 3
    initial_std: float = 0.8


def cem_plan(score: Callable[[np.ndarray], np.ndarray], mean: np.ndarray, config: CEMConfig,
             rng: np.random.Generator) -> np.ndarray:
    """Best action sequence ``[H, A]`` found by CEM, starting from ``mean [H, A]``."""
    std = np.full_like(mean, config.initial_std)
    best, best_score = mean, -np.inf
    for _ in range(config.iterations):
        candidates = np.clip(mean + std * rng.standard_normal((config.population, *mean.shape)), -1, 1)
        scores = score(candidates)
        order = np.argsort(scores)[::-1]
        if scores[order[0]] > best_score:
            best, best_score = candidates[order[0]], scores[order[0]]
        elite = candidates[order[: config.elites]]
        mean, std = elite.mean(axis=0), elite.std(axis=0) + 0.05
    return best


def world_model_scorer(world_model: WorldModel) -> Scorer:
    """Scores by the sum of the world model's predicted rewards, imagined from the last ``Tc`` frames."""

    def observe(frames: np.ndarray, state: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        world_model.reset(frames)
        return lambda candidates: world_model.imagine(candidates).sum(axis=1)

    return observe


def read_positions(state_net: StateNet, frames: np.ndarray) -> np.ndarray:
    """Agent, block and goal positions ``[..., 6]`` that ``state_net`` reads off uint8 frames ``[..., H, W, 3]``."""
    with torch.no_grad():
        flat = frames_to_model(frames.reshape(-1, *frames.shape[-3:])).to(state_net.device)
        return state_net(flat).cpu().numpy().reshape(*frames.shape[:-3], 6)


def imagined_frames_scorer(world_model: WorldModel, state_net: StateNet) -> Scorer:
    """Scores by the environment's reward function applied to the positions ``state_net`` reads off
    the current frame and the imagined frames (no true state is used)."""

    def observe(frames: np.ndarray, state: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        world_model.reset(frames)
        now = read_positions(state_net, frames[-1])

        def score(candidates: np.ndarray) -> np.ndarray:
            _, imagined = world_model.imagine(candidates, frames=True)
            positions = read_positions(state_net, imagined)  # [N, H, 6]
            path = np.concatenate([np.broadcast_to(now, (len(candidates), 1, 6)), positions], axis=1)
            rewards = reward_of(path[:, :-1, :2], path[:, :-1, 2:4], path[:, 1:, :2], path[:, 1:, 2:4], now[4:6])
            return rewards.sum(axis=1)

        return score

    return observe


def simulator_scorer(frames: np.ndarray, state: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Scores by the true simulator's returns from the true state (the upper bound)."""
    return lambda candidates: simulate_returns(state, candidates)


@dataclass
class Episode:
    success: bool
    episode_return: float
    final_distance: float
    steps: int
    frames: np.ndarray  # uint8 [steps + 1, H, W, 3]


def run_episode(seed: int, policy: str, max_steps: int, config: CEMConfig, scorer: Scorer | None = None,
                context_frames: int = 1, frame_size: int = 64) -> Episode:
    """One PushBlock episode (``reset(seed=seed)``) under ``policy``: ``"random"`` or ``"mpc"`` with ``scorer``."""
    env = PushBlockEnv(size=frame_size, max_steps=max_steps)
    frame, info = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    frames, total, plan = [frame], 0.0, np.zeros((config.horizon, 2))
    done = False
    while not done:
        if policy == "random":
            action = rng.uniform(-1, 1, 2)
        else:
            history = np.stack((frames[:1] * context_frames + frames)[-context_frames:])
            plan = cem_plan(scorer(history, info["state"]), plan, config, rng)
            action, plan = plan[0], np.concatenate([plan[1:], np.zeros((1, 2))])
        frame, reward, terminated, truncated, info = env.step(action.astype(np.float32))
        frames.append(frame)
        total += reward
        done = terminated or truncated
    return Episode(env.success, total, env.block_to_goal, env.steps, np.stack(frames))
