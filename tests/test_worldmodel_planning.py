"""Planning (CEM/MPC), the true-simulator scorer, image-quality metrics and `genlab play`."""

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from genlab.errors import GenlabError
from genlab.metrics import psnr, ssim
from genlab.worldmodel.env import COLOURS, PushBlockEnv, move, simulate_returns
from genlab.worldmodel.planning import (
    CEMConfig,
    cem_plan,
    imagined_frames_scorer,
    run_episode,
    simulator_scorer,
    world_model_scorer,
)
from genlab.worldmodel.play import ansi_frame, key_action, read_actions


def test_vectorised_simulator_matches_stepping_the_environment():
    env = PushBlockEnv(terminate_on_success=False)
    _, info = env.reset(seed=3)
    actions = np.random.default_rng(0).uniform(-1, 1, (5, 6, 2))
    returns = simulate_returns(info["state"], actions)
    for candidate, expected in zip(actions, returns, strict=True):
        env.reset(seed=3)
        total = sum(env.step(a.astype(np.float32))[1] for a in candidate)
        assert total == pytest.approx(expected, abs=1e-5)


def test_cem_finds_the_best_action_sequence_of_a_known_score():
    target = np.array([[0.5, -0.3], [-0.8, 0.2]])
    best = cem_plan(lambda c: -((c - target) ** 2).sum(axis=(1, 2)), np.zeros((2, 2)),
                    CEMConfig(horizon=2, population=200, elites=20, iterations=6), np.random.default_rng(0))
    assert np.abs(best - target).max() < 0.1


def test_simulator_mpc_pushes_the_block_closer_than_a_random_policy():
    config = CEMConfig(horizon=4, population=64, elites=8, iterations=3)
    planned = [run_episode(seed, "mpc", 25, config, simulator_scorer, frame_size=32) for seed in range(3)]
    random = [run_episode(seed, "random", 25, config, frame_size=32) for seed in range(3)]
    assert np.mean([e.final_distance for e in planned]) < np.mean([e.final_distance for e in random]) - 0.1
    assert planned[0].frames.shape == (planned[0].steps + 1, 32, 32, 3)


def test_world_model_scorer_runs_mpc_in_the_real_environment(tiny_world_model):
    episode = run_episode(0, "mpc", 3, CEMConfig(horizon=2, population=8, elites=2, iterations=2),
                          world_model_scorer(tiny_world_model), frame_size=32)
    assert episode.steps == 3 and episode.frames.shape == (4, 32, 32, 3)


class TrueFramesWorldModel:
    """A stand-in world model that "imagines" exactly what the simulator renders."""

    def __init__(self, seed: int):
        self.env = PushBlockEnv(size=32)
        self.seed = seed

    def reset(self, frames):
        self.env.reset(seed=self.seed)

    def imagine(self, actions, frames=False):
        rendered = []
        for candidate in actions:
            agent, block = self.env.agent, self.env.block
            sequence = []
            for action in candidate:
                agent, block = move(agent, block, action)
                sequence.append(self._render(agent, block))
            rendered.append(np.stack(sequence))
        return np.zeros(actions.shape[:2]), np.stack(rendered)

    def _render(self, agent, block):
        saved = self.env.agent, self.env.block
        self.env.agent, self.env.block = agent, block
        frame = self.env.render_frame()
        self.env.agent, self.env.block = saved
        return frame


class ColourCentroids:
    """A stand-in StateNet that reads the agent, block and goal positions off a frame exactly (by colour)."""

    device = torch.device("cpu")

    def __call__(self, frames):
        size = frames.shape[-1]
        centres = (torch.arange(size) + 0.5) / size
        positions = []
        for name in ("agent", "block", "goal"):
            colour = torch.from_numpy(COLOURS[name]).float() / 127.5 - 1
            inside = ((frames - colour[:, None, None]).abs() < 0.02).all(dim=1).float()  # [N, H, W]
            count = inside.sum(dim=(1, 2)).clamp(min=1)
            positions += [(inside.sum(dim=1) * centres).sum(dim=1) / count, (inside.sum(dim=2) * centres).sum(dim=1) / count]
        return torch.stack(positions, dim=1)


def test_imagined_frames_scorer_ranks_candidates_like_the_simulator_when_the_frames_are_true():
    frame, info = PushBlockEnv(size=32).reset(seed=7)
    candidates = np.random.default_rng(0).uniform(-1, 1, (32, 3, 2))
    scores = imagined_frames_scorer(TrueFramesWorldModel(7), ColourCentroids())(frame[None], info["state"])(candidates)
    assert np.corrcoef(scores, simulate_returns(info["state"], candidates))[0, 1] > 0.9


def test_psnr_and_ssim_on_known_cases():
    torch.manual_seed(0)
    images = torch.rand(3, 3, 16, 16) * 1.6 - 0.8
    assert torch.allclose(psnr(images, images), torch.full((3,), 100.0))
    # an offset of 0.2 in [-1, 1] is 0.1 in [0, 1]: MSE 0.01, 20 dB
    assert torch.allclose(psnr(images + 0.2, images), torch.full((3,), 20.0), atol=1e-4)
    assert torch.allclose(ssim(images, images), torch.ones(3), atol=1e-5)
    noisy = [ssim(images + s * torch.randn_like(images), images).mean() for s in (0.05, 0.2)]
    assert 1 > noisy[0] > noisy[1]
    with pytest.raises(GenlabError, match="N, C, H, W"):
        psnr(images, images[:2])


def test_action_files_and_keys(tmp_path):
    text = tmp_path / "actions.txt"
    text.write_text("# dx dy\n1 0\n0.5, -0.5\n\n")
    assert read_actions(text).tolist() == [[1.0, 0.0], [0.5, -0.5]]
    np.save(tmp_path / "a.npy", np.zeros((4, 2), np.float32))
    assert read_actions(tmp_path / "a.npy").shape == (4, 2)
    np.save(tmp_path / "bad.npy", np.zeros((4, 3), np.float32))
    with pytest.raises(GenlabError, match="dimension 2"):
        read_actions(tmp_path / "bad.npy")
    (tmp_path / "words.txt").write_text("left\n")
    with pytest.raises(GenlabError, match="cannot read"):
        read_actions(tmp_path / "words.txt")
    assert key_action("wd").tolist() == [1.0, -1.0] and key_action("q") is None
    with pytest.raises(GenlabError, match="unknown key"):
        key_action("x")
    frame = np.zeros((5, 4, 3), np.uint8)
    assert ansi_frame(frame).count("\n") == 2 and ansi_frame(frame).count("\u2580") == 12


def test_play_writes_a_side_by_side_video_from_an_action_file(run_cli, tiny_world_model, tmp_path):
    tiny_world_model.save_pretrained(tmp_path / "wm")
    (tmp_path / "actions.txt").write_text("1 0\n1 0\n0 1\n")
    code, out, err = run_cli("play", "--model", str(tmp_path / "wm"), "--actions", str(tmp_path / "actions.txt"),
                             "--out", str(tmp_path / "rollout.gif"))
    assert code == 0, err
    assert "3 steps" in out
    video = iio.imread(tmp_path / "rollout.gif")
    assert video.shape == (4, 96, 3 * (2 * 32 + 2), 3)  # true | imagined, 3x enlarged
    code, _, err = run_cli("play", "--model", str(tmp_path / "wm"), "--actions", str(tmp_path / "missing.txt"))
    assert code == 2 and "does not exist" in err


def test_play_from_the_keyboard_skips_bad_keys_and_stops_on_q(run_cli, tiny_world_model, tmp_path, monkeypatch):
    import io

    tiny_world_model.save_pretrained(tmp_path / "wm")
    monkeypatch.setattr("sys.stdin", io.StringIO("d\nwd\nx\nq\ns\n"))
    code, out, err = run_cli("play", "--model", str(tmp_path / "wm"), "--no-compare", "--out", str(tmp_path / "r.mp4"))
    assert code == 0, err
    assert "unknown key(s) 'x'" in out and "2 steps" in out
    assert iio.imread(tmp_path / "r.mp4").shape[:3] == (3, 96, 96)
