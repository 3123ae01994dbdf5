"""PushBlock environment and its episode shards: determinism, dynamics, shapes, bad input."""

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from genlab.errors import GenlabError
from genlab.worldmodel import PushBlockEnv, scripted_action
from genlab.worldmodel.dataset import read_shards, rollout_episode, write_shards
from genlab.worldmodel.env import potential


def run(env, seed, actions):
    frames, rewards = [env.reset(seed=seed)[0]], []
    for action in actions:
        frame, reward, *_ = env.step(action)
        frames.append(frame)
        rewards.append(reward)
    return np.stack(frames), rewards


def test_environment_follows_the_gymnasium_api():
    check_env(PushBlockEnv(), skip_render_check=True)


def test_environment_is_deterministic_by_seed():
    actions = np.random.default_rng(0).uniform(-1, 1, (20, 2))
    first, rewards = run(PushBlockEnv(), 3, actions)
    again, rewards_again = run(PushBlockEnv(), 3, actions)
    other, _ = run(PushBlockEnv(), 4, actions)
    assert np.array_equal(first, again) and rewards == rewards_again
    assert not np.array_equal(first[0], other[0])


def test_rewards_are_the_progress_in_the_potential_plus_the_success_bonus():
    # a potential-based reward: an episode's rewards add up to the change of the potential plus
    # one per step ended with the block in the goal, whatever the actions were
    env = PushBlockEnv(max_steps=40, terminate_on_success=False)
    _, info = env.reset(seed=5)
    start, rng, total, successes = info["state"], np.random.default_rng(1), 0.0, 0
    for _ in range(40):
        _, reward, _, _, info = env.step(scripted_action(info["state"], 0.2, rng))
        total, successes = total + reward, successes + info["success"]
    end = info["state"]
    change = potential(end[:2], end[2:4], end[4:6]) - potential(start[:2], start[2:4], start[4:6])
    assert successes > 0 and total == pytest.approx(change + successes)


def test_step_after_reset_returns_frames_rewards_and_state():
    env = PushBlockEnv(size=32, max_steps=3)
    frame, info = env.reset(seed=0)
    assert frame.shape == (32, 32, 3) and frame.dtype == np.uint8 and info["state"].shape == (6,)
    for _ in range(3):
        frame, reward, terminated, truncated, info = env.step(np.zeros(2, np.float32))
        assert frame.shape == (32, 32, 3) and isinstance(reward, float)
    assert truncated and not terminated


def test_the_agent_pushes_the_block_and_the_scripted_policy_beats_random_actions():
    rng = np.random.default_rng(0)
    scripted, random = 0, 0
    for seed in range(10):
        env = PushBlockEnv(max_steps=60)
        _, info = env.reset(seed=seed)
        block_start = info["state"][2:4].copy()
        for _ in range(60):
            _, _, terminated, truncated, info = env.step(scripted_action(info["state"], 0.0, rng))
            if terminated or truncated:
                break
        assert not np.allclose(info["state"][2:4], block_start)  # the block was pushed
        scripted += info["success"]
        env.reset(seed=seed)
        for _ in range(60):
            _, _, terminated, truncated, info = env.step(rng.uniform(-1, 1, 2))
            if terminated or truncated:
                break
        random += info["success"]
    assert scripted >= 8 and random <= 2


@pytest.mark.parametrize("action", [np.zeros(3), np.zeros((1, 2)), np.array([np.nan, 0.0])])
def test_bad_actions_and_missing_reset_raise_clear_errors(action):
    env = PushBlockEnv()
    with pytest.raises(GenlabError, match="reset"):
        env.step(np.zeros(2))
    env.reset(seed=0)
    with pytest.raises(GenlabError, match="2-D vectors|finite"):
        env.step(action)


def test_shards_round_trip_and_episodes_depend_only_on_seed_and_index(tmp_path):
    paths = write_shards(tmp_path, episodes=5, steps=4, size=32, shard_size=2, seed=1, progress=False)
    assert [p.name for p in paths] == ["shard-00000.npz", "shard-00001.npz", "shard-00002.npz"]
    data = read_shards(tmp_path)
    assert data["frames"].shape == (5, 5, 32, 32, 3) and data["frames"].dtype == np.uint8
    assert data["actions"].shape == (5, 4, 2) and data["rewards"].shape == (5, 4)
    assert data["states"].shape == (5, 5, 6)
    episode = rollout_episode(1, 3, steps=4, size=32, scripted_share=0.5, noise=0.3)
    assert np.array_equal(data["frames"][3], episode["frames"])
    assert np.array_equal(data["actions"][3], episode["actions"])


def test_corrupt_or_missing_shards_are_named(tmp_path):
    with pytest.raises(GenlabError, match="no shard"):
        read_shards(tmp_path)
    write_shards(tmp_path, episodes=2, steps=2, size=16, progress=False)
    (tmp_path / "shard-00001.npz").write_bytes(b"not a zip file")
    with pytest.raises(GenlabError, match="shard-00001.npz is corrupt"):
        read_shards(tmp_path)
    np.savez(tmp_path / "shard-00001.npz", frames=np.zeros((1, 3, 16, 16, 3), np.uint8))
    with pytest.raises(GenlabError, match="missing"):
        read_shards(tmp_path)
