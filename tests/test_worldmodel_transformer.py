"""World-model transformer and interactive API: zero-init actions, KV cache vs full pass, reset/step, save/load."""

import numpy as np
import pytest
import torch

from conftest import TINY_TRANSFORMER as TRANSFORMER
from conftest import randomise_action_projection
from genlab.errors import GenlabError
from genlab.worldmodel.env import PushBlockEnv
from genlab.worldmodel.model import WorldModel
from genlab.worldmodel.transformer import WorldModelTransformer


def tokens(batch=2, frames=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 32, (batch, 1, 64), generator=g), torch.randint(0, 16, (batch, frames, 4), generator=g)




def test_zero_initialised_action_projection_leaves_the_action_free_logits_unchanged():
    torch.manual_seed(0)
    with_actions = WorldModelTransformer(**TRANSFORMER).eval()
    action_free = WorldModelTransformer(**TRANSFORMER, action_dim=0).eval()
    missing = action_free.load_state_dict(with_actions.state_dict(), strict=False)
    assert missing.unexpected_keys == ["action_projection.weight", "action_projection.bias"]
    context, future = tokens()
    actions = torch.randn(2, 2, 2)
    conditioned, free = with_actions(context, future, actions), action_free(context, future)
    assert torch.equal(conditioned["logits"], free["logits"]) and torch.equal(conditioned["reward"], free["reward"])
    randomise_action_projection(with_actions)  # once trained, actions do change the prediction
    assert not torch.allclose(with_actions(context, future, actions)["logits"], free["logits"])


def test_loss_is_next_token_cross_entropy_on_future_tokens_plus_reward():
    torch.manual_seed(0)
    model = WorldModelTransformer(**TRANSFORMER)
    context, future = tokens()
    out = model(context, future, torch.randn(2, 2, 2), rewards=torch.tensor([[0.5, -1.0], [0.0, 2.0]]))
    assert out["logits"].shape == (2, 2, 4, 16) and out["reward"].shape == (2, 2)
    assert 0.8 * np.log(16) < out["token_loss"].item() < 1.2 * np.log(16)  # near-uniform at init
    assert torch.isclose(out["loss"], out["token_loss"] + out["reward_loss"])
    out["loss"].backward()
    assert model.action_projection.weight.grad.abs().sum() > 0 and model.reward_head.weight.grad is not None


@pytest.mark.parametrize("action_dim", [2, 0])
def test_kv_cache_generation_equals_full_recomputation(action_dim):
    torch.manual_seed(0)
    model = WorldModelTransformer(**TRANSFORMER, action_dim=action_dim).eval()
    if action_dim:
        randomise_action_projection(model)
    context, _ = tokens()
    actions = torch.randn(2, 2, 2) if action_dim else None
    cache = model.prefill(context)
    drawn = [model.generate_frame(cache, None if actions is None else actions[:, t], top_k=1) for t in range(2)]
    future = torch.stack([ids for ids, _ in drawn], dim=1)
    full = model(context, future, actions)
    assert torch.equal(full["logits"].argmax(dim=-1), future)  # greedy: each token is the full pass's argmax
    assert torch.allclose(full["reward"], torch.stack([r for _, r in drawn], dim=1), atol=1e-5)


def test_top_k_sampling_stays_in_the_future_codebook_and_is_seeded():
    torch.manual_seed(0)
    model = WorldModelTransformer(**TRANSFORMER).eval()
    context, _ = tokens(batch=8)
    draws = [model.generate_frame(model.prefill(context), torch.zeros(8, 2), top_k=5,
                                  generator=torch.Generator().manual_seed(3))[0] for _ in range(2)]
    assert torch.equal(draws[0], draws[1]) and 0 <= int(draws[0].min()) and int(draws[0].max()) < 16


def test_bad_actions_and_tokens_are_rejected():
    model = WorldModelTransformer(**TRANSFORMER)
    context, future = tokens()
    with pytest.raises(GenlabError, match="action dimension 2"):
        model(context, future, torch.zeros(2, 2, 3))
    with pytest.raises(GenlabError, match="future ids"):
        model(context, torch.zeros(2, 3, 4, dtype=torch.long), torch.zeros(2, 3, 2))
    with pytest.raises(GenlabError, match="action_dim"):
        WorldModelTransformer(**TRANSFORMER, action_dim=-1)


def first_frame(seed=0):
    return PushBlockEnv(size=32).reset(seed=seed)[0]


def test_step_after_reset_returns_frames_and_rewards_also_past_the_training_length(tiny_world_model):
    world_model = tiny_world_model
    world_model.reset(first_frame()[None])
    for _ in range(5):  # future_frames is 2: the context slides twice
        frame, reward = world_model.step(np.array([0.5, -0.5]))
        assert frame.shape == (32, 32, 3) and frame.dtype == np.uint8 and isinstance(reward, float)
    world_model.reset(np.stack([first_frame(s)[None] for s in range(3)]))
    frames, rewards = world_model.step(np.zeros((3, 2)))
    assert frames.shape == (3, 32, 32, 3) and rewards.shape == (3,)


def test_imagine_predicts_rewards_without_moving_the_state(tiny_world_model):
    world_model = tiny_world_model
    world_model.reset(first_frame()[None])
    expected = world_model.step(np.array([1.0, 0.0]))
    world_model.reset(first_frame()[None])
    rewards = world_model.imagine(np.random.default_rng(0).uniform(-1, 1, (6, 5, 2)))
    assert rewards.shape == (6, 5)
    frame, reward = world_model.step(np.array([1.0, 0.0]))
    assert np.array_equal(frame, expected[0]) and reward == pytest.approx(expected[1], abs=1e-6)


def test_imagine_can_return_the_imagined_frames(tiny_world_model):
    world_model = tiny_world_model
    world_model.reset(first_frame()[None])
    actions = np.random.default_rng(0).uniform(-1, 1, (4, 5, 2))  # 5 > 3 training frames: the context slides
    rewards, frames = world_model.imagine(actions, frames=True)
    assert frames.shape == (4, 5, 32, 32, 3) and frames.dtype == np.uint8
    np.testing.assert_allclose(rewards, world_model.imagine(actions), atol=1e-6)
    world_model.reset(np.repeat(first_frame()[None, None], 4, axis=0))
    stepped = [world_model.step(actions[:, t])[0] for t in range(5)]
    assert np.array_equal(frames, np.stack(stepped, axis=1))


def test_world_model_errors_are_clear(tiny_world_model):
    world_model = tiny_world_model
    with pytest.raises(GenlabError, match="reset"):
        world_model.step(np.zeros(2))
    with pytest.raises(GenlabError, match=r"\[1, 32, 32, 3\]"):
        world_model.reset(np.zeros((1, 64, 64, 3), np.uint8))
    with pytest.raises(GenlabError, match="uint8"):
        world_model.reset(np.zeros((1, 32, 32, 3), np.float32))
    world_model.reset(first_frame()[None])
    with pytest.raises(GenlabError, match="action dimension 2"):
        world_model.step(np.zeros(3))
    with pytest.raises(GenlabError, match="action dimension 2"):
        world_model.step(None)


def test_save_and_load_give_the_same_rollout(tiny_world_model, tmp_path):
    world_model = tiny_world_model
    world_model.save_pretrained(tmp_path)
    loaded = WorldModel.from_pretrained(tmp_path, top_k=1)
    rollouts = []
    for model in (world_model, loaded):
        model.reset(first_frame()[None])
        rollouts.append([model.step(np.array([0.3, 0.7])) for _ in range(3)])
    for (frame_a, reward_a), (frame_b, reward_b) in zip(*rollouts, strict=True):
        assert np.array_equal(frame_a, frame_b) and reward_a == pytest.approx(reward_b, abs=1e-6)
    with pytest.raises(GenlabError, match="not a genlab world model"):
        WorldModel.from_pretrained(tmp_path / "tokenizer")
