"""Video tokenizers: shapes and token counts, encode/decode agreement, save/load, learning on PushBlock clips."""

import numpy as np
import pytest
import torch

from genlab.errors import GenlabError
from genlab.worldmodel.dataset import rollout_episode
from genlab.worldmodel.tokenizer import VideoTokenizer

SMALL = dict(frame_size=32, context_grid=8, future_grid=2, channels=16, code_dim=8, context_codes=32,
             future_codes=32, num_heads=2)


def clip(episodes=2, frames=4, size=32):
    video = np.stack([rollout_episode(0, i, frames - 1, size, 0.5, 0.3)["frames"] for i in range(episodes)])
    return torch.from_numpy(video).permute(0, 1, 4, 2, 3).float() / 127.5 - 1


@pytest.mark.parametrize("compressive", [True, False])
def test_tokens_have_the_promised_counts_and_decode_like_forward(compressive):
    torch.manual_seed(0)
    tokenizer = VideoTokenizer(**SMALL, compressive=compressive).eval()
    frames = clip()
    recon, tokens, losses = tokenizer(frames)
    assert recon.shape == frames.shape and {"l1", "motion_l1", "codebook", "commitment", "loss"} <= set(losses)
    assert tokens.context.shape == (2, 1, 64) and tokenizer.context_tokens == 64
    future = 4 if compressive else 64
    assert tokens.future.shape == (2, 3, future) and tokenizer.future_tokens == future
    assert tokens.future.dtype == torch.long and int(tokens.future.max()) < 32
    assert torch.allclose(tokenizer.decode(tokenizer.encode(frames)), recon, atol=1e-5)


def test_save_and_load_give_the_same_tokens(tmp_path):
    torch.manual_seed(0)
    tokenizer = VideoTokenizer(**SMALL).eval()
    tokenizer.save_pretrained(tmp_path)
    loaded = VideoTokenizer.from_pretrained(tmp_path).eval()
    frames = clip()
    assert torch.equal(loaded.encode(frames).future, tokenizer.encode(frames).future)


def test_training_reduces_the_reconstruction_error():
    torch.manual_seed(0)
    tokenizer = VideoTokenizer(**SMALL)
    optimizer = torch.optim.Adam(tokenizer.parameters(), lr=2e-3)
    frames = clip(episodes=4)
    first = tokenizer(frames)[2]["l1"].item()
    for _ in range(40):
        loss = tokenizer(frames)[2]["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert tokenizer(frames)[2]["l1"].item() < 0.5 * first


def test_bad_frames_are_rejected():
    tokenizer = VideoTokenizer(**SMALL)
    with pytest.raises(GenlabError, match=r"\[B, T, 3, 32, 32\]"):
        tokenizer(torch.zeros(1, 3, 3, 64, 64))
    with pytest.raises(GenlabError, match="more than the 1 context"):
        tokenizer(torch.zeros(1, 1, 3, 32, 32))
    with pytest.raises(GenlabError, match="power of two"):
        VideoTokenizer(frame_size=32, context_grid=6)


def test_clip_dataset_enumerates_every_window():
    from genlab.worldmodel.training import ClipDataset

    episodes = {"frames": np.arange(2 * 5 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 5, 4, 4, 3),
                "actions": np.zeros((2, 4, 2), np.float32), "rewards": np.arange(8, dtype=np.float32).reshape(2, 4)}
    dataset = ClipDataset(episodes, clip_frames=3)
    assert len(dataset) == 2 * 3
    frames, actions, rewards = dataset[4]  # episode 1, frames 1..3, the steps 1 and 2 that lead to 2 and 3
    assert frames.shape == (3, 3, 4, 4) and actions.shape == (2, 2) and rewards.tolist() == [5.0, 6.0]
    expected = torch.from_numpy(episodes["frames"][1, 1:4]).float().movedim(-1, -3) / 127.5 - 1
    assert torch.equal(frames, expected)
    with pytest.raises(GenlabError, match="clip length"):
        ClipDataset(episodes, clip_frames=6)


def test_train_tokenizer_end_to_end_with_the_perceptual_net(tmp_path):
    from genlab.worldmodel.dataset import write_shards
    from genlab.worldmodel.training import TokenizerConfig, train_tokenizer

    write_shards(tmp_path / "data", episodes=6, steps=4, size=32, progress=False)
    config = TokenizerConfig(data=str(tmp_path / "data"), clip_frames=3, context_grid=8, future_grid=2, channels=16,
                             code_dim=8, num_codes=32, state_net_steps=5, steps=4, batch_size=4, checkpoint_every=4,
                             log_every=2, progress=False, run_dir=str(tmp_path / "run"))
    result = train_tokenizer(config)
    assert result.steps == 4
    model = VideoTokenizer.from_pretrained(tmp_path / "run" / "model")
    assert model.future_tokens == 4 and (tmp_path / "run" / "state_net" / "config.json").exists()


def test_unused_codes_are_restarted_at_encoder_outputs():
    from genlab.worldmodel.quantizer import VectorQuantizer

    torch.manual_seed(0)
    quantizer = VectorQuantizer(num_codes=16, dim=4, restart_below=0.5, usage_decay=0.0)
    with torch.no_grad():
        quantizer.codebook.weight.copy_(torch.tensor([1.0, 0, 0, 0]).expand(16, 4))  # every input -> code 0
    inputs = torch.randn(1, 64, 4)
    before = quantizer.eval()(inputs)[1].unique().numel()
    quantizer.train()(inputs)  # finds every code this batch did not use ...
    quantizer(inputs)  # ... and restarts them before the next step's lookup
    after = quantizer.eval()(inputs)[1].unique().numel()
    assert before == 1 and after >= 8
    restarted = torch.nn.functional.normalize(quantizer.codebook.weight, dim=-1)
    targets = torch.nn.functional.normalize(inputs[0], dim=-1)
    assert (restarted @ targets.T).max(dim=1).values.gt(0.999).sum() >= 8  # they sit on encoder outputs


def test_compressive_future_tokens_carry_what_moved():
    """After a short training the decoder uses the future tokens: another clip's tokens (same context)
    reconstruct the future frames worse than their own. Before the change-decoding, difference input
    and motion-weighted loss, swapping tokens changed PSNR by ~0.002 dB."""
    from genlab.metrics import psnr

    torch.manual_seed(0)
    tokenizer = VideoTokenizer(**{**SMALL, "future_grid": 4})
    optimizer = torch.optim.Adam(tokenizer.parameters(), lr=2e-3)
    video = clip(episodes=16, frames=4)
    for step in range(300):
        batch = video[torch.randperm(16, generator=torch.Generator().manual_seed(step))[:8]]
        loss = tokenizer(batch)[2]["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    tokenizer.eval()
    tokens = tokenizer.encode(video)
    swapped = type(tokens)(tokens.context, tokens.future.roll(1, dims=0))

    def future_psnr(clip_tokens):
        return psnr(tokenizer.decode(clip_tokens)[:, 1:].flatten(0, 1), video[:, 1:].flatten(0, 1)).mean().item()

    own, other = future_psnr(tokens), future_psnr(swapped)
    assert own > other + 1.0, (own, other)
