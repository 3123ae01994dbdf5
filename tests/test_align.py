"""VADER / DDPO: the truncated sampler, LoRA adapters, the training loop and its errors (tiny random models)."""

import math

import pytest
import torch
from peft.tuners.lora import LoraLayer

from genlab.align.checkpointing import enable_block_checkpointing
from genlab.align.config import AlignConfig
from genlab.align.lora import add_lora, trainable_parameters
from genlab.align.rewards.base import Reward, to_unit_range
from genlab.align.sampling import sample_for_reward, step_log_prob, stochastic_steps
from genlab.align.targets import GenlabImageTarget, GenlabVideoTarget
from genlab.align.trainer import AlignmentRun, apply_adapter, choose_frames, score_samples
from genlab.base.info import ImageModelInfo
from genlab.core.denoiser import EDMDenoiser
from genlab.core.edm import ancestral_mean, ancestral_scales
from genlab.core.nets import ImageUNet, VideoDiT
from genlab.core.runlog import read_log
from genlab.errors import GenlabError

NUM_CLASSES = 3


def adapted_layers(module: torch.nn.Module) -> list[str]:
    """Names of the layers that carry LoRA adapters."""
    return [name for name, layer in module.named_modules() if isinstance(layer, LoraLayer)]


def randomised(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter small random values (fresh genlab nets are zero-initialised at the output)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return net


def image_target(seed: int = 0) -> GenlabImageTarget:
    net = ImageUNet(in_channels=1, resolution=8, num_classes=NUM_CLASSES, base_channels=8, channel_mults=(1, 2),
                    num_res_blocks=1, attention_levels=(1,))
    denoiser = EDMDenoiser(randomised(net, seed)).eval()
    return GenlabImageTarget(denoiser, ImageModelInfo.of(denoiser, "digits"))


def video_target(seed: int = 0) -> GenlabVideoTarget:
    net = VideoDiT(in_channels=3, frames=4, resolution=8, patch_size=4, hidden_size=16, depth=1, num_heads=2)
    return GenlabVideoTarget(EDMDenoiser(randomised(net, seed)).eval())


class Brightness(Reward):
    name = "brightness"

    def score(self, samples, prompts, labels):
        return to_unit_range(samples).mean((1, 2, 3))


class LabelReward(Reward):
    name = "label"
    needs = "labels"

    def score(self, samples, prompts, labels):
        return samples.mean((1, 2, 3)) * (labels.float() - 1)


class TextReward(Reward):
    name = "text"
    needs = "prompts"

    def score(self, samples, prompts, labels):
        return samples.mean((1, 2, 3))


class BreaksAtCall(Reward):
    """Brightness until its ``bad_call``-th call, then NaN."""

    name = "breaks"

    def __init__(self, bad_call: int):
        super().__init__()
        self.calls, self.bad_call = 0, bad_call

    def score(self, samples, prompts, labels):
        self.calls += 1
        scores = samples.mean((1, 2, 3))
        return scores * math.nan if self.calls >= self.bad_call else scores


def config(tmp_path, **overrides) -> AlignConfig:
    settings = dict(steps=3, batch_size=2, sampling_steps=4, lora_rank=2, run_dir=str(tmp_path / "run"),
                    progress=False, checkpoint_every=1)
    return AlignConfig(**{**settings, **overrides})


# -- the sampler -------------------------------------------------------------------------------------------
def test_with_k_1_only_the_last_denoiser_call_builds_a_graph_and_its_gradient_is_the_last_steps():
    target = image_target()
    add_lora(target.module, 2, target.lora_targets)
    cond = target.encode_condition(None, torch.tensor([0, 2]))
    grad_flags = []

    def denoise(x, sigma):
        grad_flags.append(torch.is_grad_enabled())
        return target.denoise(x, sigma, cond)

    sigmas = target.sigmas(5)
    noise = torch.randn(target.state_shape(2), generator=torch.Generator().manual_seed(1))
    x0, _ = sample_for_reward(denoise, noise, sigmas, eta=1.0, grad_steps=1, generator=torch.Generator().manual_seed(2))
    assert grad_flags == [False, False, False, False, True]
    x0.mean().backward()
    truncated = [p.grad.clone() for p in trainable_parameters(target.module)]
    assert any(g.abs().sum() > 0 for g in truncated)

    # the same gradient by hand: the first four steps without a graph, then the last step alone
    target.module.zero_grad()
    generator = torch.Generator().manual_seed(2)
    step_noise = torch.randn((5, *noise.shape), generator=generator)
    x = noise * sigmas[0].float()
    with torch.no_grad():
        for i in range(4):
            down, up = ancestral_scales(sigmas[i].float(), sigmas[i + 1].float(), 1.0)
            x = ancestral_mean(x, target.denoise(x, sigmas[i].float().expand(2), cond), sigmas[i].float(), down) + up * step_noise[i]
    last = sigmas[4].float()
    down, up = ancestral_scales(last, sigmas[5].float(), 1.0)
    ancestral_mean(x, target.denoise(x, last.expand(2), cond), last, down).mean().backward()
    for by_sampler, by_hand in zip(truncated, [p.grad for p in trainable_parameters(target.module)], strict=True):
        torch.testing.assert_close(by_sampler, by_hand)


def test_more_steps_of_backpropagation_change_the_gradient_and_checkpointing_does_not():
    def gradients(grad_steps: int, checkpointing: bool):
        target = image_target()
        torch.manual_seed(0)  # the same LoRA A matrices in every call
        add_lora(target.module, 2, target.lora_targets)
        cond = target.encode_condition(None, torch.tensor([1, 1]))
        noise = torch.randn(target.state_shape(2), generator=torch.Generator().manual_seed(1))
        if checkpointing:
            assert enable_block_checkpointing(target.module) > 0
        x0, _ = sample_for_reward(lambda x, s: target.denoise(x, s, cond), noise, target.sigmas(5), 1.0, grad_steps,
                                  torch.Generator().manual_seed(2))
        x0.pow(2).mean().backward()
        return torch.cat([p.grad.flatten() for p in trainable_parameters(target.module)])

    one, three, three_checkpointed = gradients(1, False), gradients(3, False), gradients(3, True)
    assert not torch.allclose(one, three)
    torch.testing.assert_close(three, three_checkpointed)


def test_k_larger_than_the_sampling_steps_is_a_clear_error(tmp_path):
    target = image_target()
    with pytest.raises(GenlabError, match="more than the 4 sampling steps"):
        sample_for_reward(lambda x, s: x, torch.zeros(target.state_shape(1)), target.sigmas(4), grad_steps=5)
    with pytest.raises(GenlabError, match="--k 9 must lie between 1 and --sampling-steps 4"):
        config(tmp_path, k=9).validate()


def test_ddpo_log_probabilities_are_the_samplers_gaussian_steps():
    target = image_target()
    cond = target.encode_condition(None, torch.tensor([0, 1]))
    sigmas = target.sigmas(4)

    def denoise(x, s):
        return target.denoise(x, s, cond)

    noise = torch.randn(target.state_shape(2), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        _, trajectory = sample_for_reward(denoise, noise, sigmas, eta=0.7, grad_steps=0,
                                          generator=torch.Generator().manual_seed(4), record_trajectory=True)
        assert trajectory.step_indices == stochastic_steps(sigmas, 0.7) == [0, 1, 2]  # the last step is deterministic
        for j, index in enumerate(trajectory.step_indices):
            sigma, sigma_next = sigmas[index].float(), sigmas[index + 1].float()
            down, up = ancestral_scales(sigma, sigma_next, 0.7)
            mean = ancestral_mean(trajectory.states[j], denoise(trajectory.states[j], sigma.expand(2)), sigma, down)
            expected = torch.distributions.Normal(mean, up).log_prob(trajectory.next_states[j]).flatten(1).sum(1)
            torch.testing.assert_close(trajectory.log_probs[j], expected, rtol=1e-5, atol=1e-3)
            recomputed = step_log_prob(denoise, trajectory.states[j], trajectory.next_states[j], sigmas, index, 0.7)
            torch.testing.assert_close(recomputed, trajectory.log_probs[j], rtol=1e-5, atol=1e-3)
            # σ_up² + σ_down² = σ'² (the marginal noise level is kept)
            torch.testing.assert_close(up**2 + down**2, sigma_next**2)
        with pytest.raises(GenlabError, match="deterministic"):
            step_log_prob(denoise, noise, noise, sigmas, 3, 0.7)


# -- LoRA ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make_target", [image_target, video_target])
def test_lora_starts_as_a_no_op_and_trains_only_the_adapters(make_target):
    target = make_target()
    x = torch.randn(target.state_shape(2))
    sigma = torch.tensor([0.5, 2.0])
    cond = target.encode_condition(None, torch.tensor([0, 1])) if target.condition else {}
    before = target.denoise(x, sigma, cond)
    add_lora(target.module, 4, target.lora_targets)
    names = adapted_layers(target.module)
    assert names and all(name.endswith(("qkv", "proj")) for name in names)
    assert torch.equal(target.denoise(x, sigma, cond), before)
    trained = trainable_parameters(target.module)
    assert trained and all("lora_" in name for name, p in target.module.named_parameters() if p.requires_grad)
    with torch.no_grad():
        for parameter in trained:
            parameter.add_(0.1)
    assert not torch.allclose(target.denoise(x, sigma, cond), before)


def test_a_lora_target_that_matches_no_layer_or_a_whole_block_is_a_clear_error():
    with pytest.raises(GenlabError, match=r"LoRA target 'to_q' matches no layer of ImageUNet; .*e\.g\. .*qkv"):
        add_lora(image_target().module, 4, ["qkv", "to_q"])
    # "0" ends Linear names (mlp.0) but also whole blocks (blocks.0), which peft refuses with a raw ValueError
    with pytest.raises(GenlabError, match=r"LoRA target '0' matches blocks\.0 \(FactorisedDiTBlock\) in VideoDiT, "
                                          r"which LoRA cannot adapt; .*e\.g\. .*mlp\.0, mlp\.2, .*qkv"):
        add_lora(video_target().module, 4, ["0"])
    module = video_target().module
    add_lora(module, 4, ["mlp.0", "patch_embed"])  # a suggested Linear and a Conv target work
    assert adapted_layers(module) == ["patch_embed", "blocks.0.mlp.0"]


# -- frames and conditions ------------------------------------------------------------------------------------
def test_frame_choice_and_image_rewards_on_videos_average_the_scored_frames():
    generator = torch.Generator().manual_seed(0)
    assert choose_frames(8, "all", generator) is None
    assert choose_frames(8, "random", generator).shape == (1,)
    assert choose_frames(8, "every-3", generator).tolist() == [0, 3, 6]
    with pytest.raises(GenlabError, match="--score-frames"):
        choose_frames(8, "every-0", generator)
    videos = torch.stack([torch.full((3, 1, 2, 2), v) for v in (-1.0, 1.0)])  # [2, 3, 1, 2, 2]
    videos[1, 0] = -1.0
    torch.testing.assert_close(score_samples(Brightness(), videos, None, None), torch.tensor([0.0, 2 / 3]))


def test_a_text_reward_on_a_class_conditional_model_is_a_clear_error(tmp_path):
    with pytest.raises(GenlabError, match="'text' reward needs prompts but the model is conditioned on class labels"):
        AlignmentRun(image_target(), TextReward(), config(tmp_path))
    with pytest.raises(GenlabError, match="needs one prompt per sample"):
        TextReward()(torch.zeros(2, 1, 4, 4), labels=torch.tensor([0, 1]))


# -- the loop ------------------------------------------------------------------------------------------------
def test_vader_raises_the_reward_of_a_tiny_model(tmp_path):
    target = image_target()
    settings = dict(steps=12, k=4, lr=1e-2, batch_size=4, lora_rank=0)
    result = AlignmentRun(target, Brightness(), config(tmp_path, **settings)).fit()
    rewards = [r["reward"] for r in read_log(result.run_dir / "log.jsonl")]
    assert result.queries == 12 * 4 and len(rewards) == 12
    assert sum(rewards[-3:]) / 3 > sum(rewards[:3]) / 3 + 0.05
    assert (result.run_dir / "reward.png").is_file()


def test_ddpo_runs_counts_queries_and_trains_the_adapters(tmp_path):
    target = image_target()
    before = [p.detach().clone() for p in target.module.parameters()]
    result = AlignmentRun(target, LabelReward(), config(tmp_path, method="ddpo", accumulate=2, ddpo_clip=0.2)).fit()
    assert result.queries == 3 * 2 * 2
    records = read_log(result.run_dir / "log.jsonl")
    assert [r["queries"] for r in records] == [4, 8, 12]
    lora = [p for name, p in target.module.named_parameters() if "lora_B" in name]
    assert any(p.abs().sum() > 0 for p in lora)
    base = [p for name, p in target.module.named_parameters() if "lora_" not in name]
    assert all(torch.equal(a, b) for a, b in zip(base, before, strict=True))


def test_resume_continues_to_the_same_weights_and_log(tmp_path):
    straight = AlignmentRun(image_target(), Brightness(), config(tmp_path / "a", steps=4, k=2)).fit()
    AlignmentRun(image_target(), Brightness(), config(tmp_path / "b", steps=2, k=2)).fit()
    resumed = AlignmentRun(image_target(), Brightness(), config(tmp_path / "b", steps=4, k=2, resume=True)).fit()
    assert resumed.queries == straight.queries == 8
    logs = [read_log(r.run_dir / "log.jsonl") for r in (straight, resumed)]
    assert [r["reward"] for r in logs[0]] == pytest.approx([r["reward"] for r in logs[1]], rel=1e-5)
    first, second = image_target(), image_target()
    apply_adapter(first, straight.run_dir)
    apply_adapter(second, resumed.run_dir)
    x, sigma, cond = torch.randn(first.state_shape(2)), torch.tensor([1.0, 1.0]), {"class_labels": torch.tensor([0, 2])}
    torch.testing.assert_close(first.denoise(x, sigma, cond), second.denoise(x, sigma, cond), rtol=1e-4, atol=1e-5)
    with pytest.raises(GenlabError, match=r"already holds a run \(.*checkpoints/\); pass --resume"):
        AlignmentRun(image_target(), Brightness(), config(tmp_path / "b", steps=4)).fit()


def test_a_non_finite_reward_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path):
    run = AlignmentRun(image_target(), BreaksAtCall(bad_call=3), config(tmp_path, steps=5))
    with pytest.raises(GenlabError, match=r"non-finite values at update 3.*step_00000002"):
        run.fit()
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step_*"))
    assert checkpoints == ["step_00000001", "step_00000002"]
    assert [r["step"] for r in read_log(tmp_path / "run" / "log.jsonl")] == [1, 2]


def test_full_weights_bf16_and_video_frame_subsampling_run(tmp_path):
    target = video_target()
    result = AlignmentRun(target, Brightness(), config(tmp_path, lora_rank=0, mixed_precision="bf16", steps=2,
                                                       score_frames="random", gradient_checkpointing=True)).fit()
    assert result.queries == 4
    assert all(p.requires_grad for p in target.module.parameters())
