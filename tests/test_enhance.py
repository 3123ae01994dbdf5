"""VEnhancer (genlab.enhance) on tiny video DiTs: the zero-init ControlNet, its gradients, the degradation
and key-frame condition, blended space-time windows, enhance_video, bad input, save/load, the sprite
clips and the random training degradation."""

import pytest
import torch
import torch.nn.functional as F

from genlab.base.video_model import save_video_model, video_clips
from genlab.core.denoiser import EDMDenoiser
from genlab.core.edm import edm_loss
from genlab.core.nets import VideoDiT
from genlab.data.sprites import moving_sprites
from genlab.enhance import (
    ControlNetEnhancer,
    EnhanceControlNet,
    EnhanceSettings,
    RegressionEnhancer,
    WindowedDenoiser,
    apply_in_windows,
    degrade,
    enhance_video,
    key_frame_hint,
    key_frame_mask,
    load_enhancer,
    save_enhancer,
    trilinear_upsample,
)
from genlab.enhance.degradation import check_factors
from genlab.enhance.training import parse_factors, random_degradation
from genlab.enhance.windows import window_starts
from genlab.errors import GenlabError

TINY = {"frames": 4, "resolution": 8, "patch_size": 2, "hidden_size": 32, "depth": 2, "num_heads": 2}
FAST = EnhanceSettings(sampling_steps=2, start_sigma=1.0, augment_sigma=0.1, seed=3)
# Loaded weights are the same numbers, but safetensors hands them over at another memory alignment, which
# may change the CPU's matmul kernels in the last bit: "identical" up to float rounding.
SAME = {"rtol": 1e-6, "atol": 1e-6}


def randomise(module: torch.nn.Module, seed: int = 1, std: float = 0.1) -> torch.nn.Module:
    """Random weights everywhere (as if trained): zero-initialised layers would hide bugs."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(std=std)
    return module


def make_base(attention: str = "full", seed: int = 0, **overrides) -> EDMDenoiser:
    torch.manual_seed(seed)
    net = VideoDiT(**{**TINY, "attention": attention, **overrides})
    return EDMDenoiser(randomise(net, seed + 1)).eval()


def make_enhancer(attention: str = "full", depth: int = 1) -> ControlNetEnhancer:
    """A ControlNet enhancer whose branch has random weights (hint, labels and outputs all matter)."""
    base = make_base(attention)
    return ControlNetEnhancer(base, randomise(EnhanceControlNet.for_base(base.net, depth), seed=7)).eval()


def make_regression(fresh: bool = False) -> RegressionEnhancer:
    model = RegressionEnhancer.from_base(make_base(), 1)
    return (model if fresh else randomise(model, seed=5)).eval()


def conditions(batch: int = 2, frames: int = 4, height: int = 8, width: int = 8, seed: int = 0):
    """``(x, sigma, cond)`` for a ControlNetEnhancer call on ``[batch, frames, 3, height, width]`` clips."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, frames, 3, height, width, generator=generator)
    sigma = torch.tensor([0.3, 4.0, 1.2])[:batch]
    hint = torch.randn(batch, frames, 3, height, width, generator=generator)
    key_frames = torch.stack([key_frame_mask(frames, time, time - 1) for time in (2, 3, 1)][:batch])
    cond = {"hint": hint, "key_frames": key_frames, "space": torch.tensor([2, 4, 1])[:batch],
            "augment_sigma": torch.tensor([0.0, 0.2, 0.05])[:batch]}
    return x, sigma, cond


def low_video(batch: int, count: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, count, 3, height, width, generator=generator) * 2 - 1


# --- 1. the fresh branch is a no-op ----------------------------------------------------------------------


@pytest.mark.parametrize("attention", ["full", "factorised"])
def test_fresh_branch_leaves_the_base_bit_identical_and_a_trained_one_does_not(attention):
    base = make_base(attention)
    branch = EnhanceControlNet.for_base(base.net, 2)
    assert branch.config.attention == attention and len(branch.blocks) == 2
    for copy, original in zip(branch.blocks, base.net.blocks, strict=True):
        theirs = original.state_dict()
        assert copy.state_dict().keys() == theirs.keys()
        assert all(torch.equal(value, theirs[key]) for key, value in copy.state_dict().items())
    model = ControlNetEnhancer(base, branch)
    x, sigma, cond = conditions()
    with torch.no_grad():
        reference = base(x, sigma)
        assert torch.equal(model(x, sigma, **cond), reference)
        assert torch.equal(base(x, sigma), reference)  # the hooks are gone after the call

        for layer in branch.outputs:  # as if trained: non-zero output linears
            layer.weight.normal_(std=0.2)
            layer.bias.normal_(std=0.2)
        steered = model(x, sigma, **cond)
        assert (steered - reference).abs().max() > 1e-3
        # the hint still enters through the zero-initialised Conv3d: it cannot matter yet ...
        assert torch.equal(model(x, sigma, **{**cond, "hint": torch.randn_like(cond["hint"])}), steered)
        # ... but the key frames, the spatial factor and the augmentation level do
        assert not torch.equal(model(x, sigma, **{**cond, "key_frames": ~cond["key_frames"]}), steered)
        assert not torch.equal(model(x, sigma, **{**cond, "space": torch.tensor([1, 8])}), steered)
        assert not torch.equal(model(x, sigma, **{**cond, "augment_sigma": torch.tensor([0.3, 0.0])}), steered)
        branch.hint_embed.weight.normal_(std=0.2)
        assert not torch.allclose(model(x, sigma, **{**cond, "hint": torch.randn_like(cond["hint"])}), steered)
        assert torch.equal(base(x, sigma), reference)


def test_branch_copies_only_the_first_blocks_and_does_not_share_them():
    base = make_base(depth=3)
    branch = EnhanceControlNet.for_base(base.net, 1)
    assert len(branch.blocks) == 1 and len(branch.outputs) == 1
    original = {key: value.clone() for key, value in base.net.blocks[0].state_dict().items()}
    assert all(torch.equal(value, original[key]) for key, value in branch.blocks[0].state_dict().items())
    second = base.net.blocks[1].state_dict()
    assert not all(torch.equal(value, second[key]) for key, value in branch.blocks[0].state_dict().items())
    randomise(branch, seed=3)
    assert all(torch.equal(value, original[key]) for key, value in base.net.blocks[0].state_dict().items())


# --- 2. gradients ----------------------------------------------------------------------------------------


def test_training_reaches_only_the_branch_and_the_hint_embedding_once_outputs_are_non_zero():
    base = make_base()
    branch = EnhanceControlNet.for_base(base.net, 2)
    model = ControlNetEnhancer(base, branch).train()
    assert not base.training and branch.training  # the base stays in eval mode
    assert all(not p.requires_grad for p in base.parameters())
    assert all(p.requires_grad for p in branch.parameters())
    videos = moving_sprites(3, 4, 8, seed=1).float() / 127.5 - 1

    def backward() -> None:
        model.zero_grad(set_to_none=True)
        torch.manual_seed(0)
        condition = random_degradation(videos, (1, 2), (1, 2), 0.3)
        condition.pop("trilinear")
        edm_loss(model, videos, **condition).mean().backward()
        assert all(p.grad is None for p in base.parameters())

    backward()  # fresh branch: only the zero output linears get a gradient; the zero conv blocks the rest
    assert all(layer.weight.grad.abs().sum() > 0 for layer in branch.outputs)
    assert torch.count_nonzero(branch.hint_embed.weight.grad) == 0

    with torch.no_grad():
        for layer in branch.outputs:
            layer.weight.normal_(std=0.2)
    backward()
    assert branch.hint_embed.weight.grad.abs().sum() > 0
    no_gradient = [name for name, p in branch.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert no_gradient == []


# --- 3. degradation and the key-frame condition ----------------------------------------------------------


@pytest.mark.parametrize(("frames", "time", "offset"), [(9, 1, 0), (9, 2, 0), (9, 2, 1), (10, 3, 2), (5, 8, 4),
                                                         (1, 4, 0), (8, 4, 3)])
def test_key_frame_mask_marks_every_time_th_frame_from_offset(frames, time, offset):
    mask = key_frame_mask(frames, time, offset)
    assert mask.dtype == torch.bool and mask.shape == (frames,)
    assert mask.nonzero().flatten().tolist() == list(range(offset, frames, time))


def test_key_frame_mask_rejects_an_offset_outside_the_interval():
    for offset in (-1, 2, 3):
        with pytest.raises(GenlabError, match="offset must lie in"):
            key_frame_mask(6, 2, offset)


def test_key_frame_hint_places_upsampled_frames_at_key_frames_and_zeros_elsewhere():
    low = torch.randn(2, 3, 3, 4, 5)
    hint, mask = key_frame_hint(low, 3, (8, 10), offset=1)
    assert hint.shape == (2, 8, 3, 8, 10)  # offset + (n - 1) * time + 1 frames
    assert mask.shape == (2, 8) and mask.dtype == torch.bool
    assert torch.equal(mask, key_frame_mask(8, 3, 1)[None].expand(2, 8))
    keys = mask[0]
    expected = F.interpolate(low.flatten(0, 1), size=(8, 10), mode="bilinear", align_corners=False)
    torch.testing.assert_close(hint[:, keys], expected.reshape(2, 3, 3, 8, 10))
    assert torch.count_nonzero(hint[:, ~keys]) == 0

    # a shorter clip drops the key frames past its end; no resize at the input size
    hint, mask = key_frame_hint(low, 3, (4, 5), frames=5, offset=1)
    assert mask[0].nonzero().flatten().tolist() == [1, 4]
    assert torch.equal(hint[:, [1, 4]], low[:, :2])
    assert torch.count_nonzero(hint[:, [0, 2, 3]]) == 0


@pytest.mark.parametrize(("time", "offset"), [(1, 0), (2, 0), (2, 1), (3, 2), (8, 5)])
def test_degrade_then_hint_at_space_1_reproduces_the_key_frames(time, offset):
    video = torch.randn(2, 7, 3, 6, 6)
    low = degrade(video, 1, time, offset)
    assert low.shape == (2, len(range(offset, 7, time)), 3, 6, 6)
    hint, mask = key_frame_hint(low, time, (6, 6), frames=7, offset=offset)
    keys = mask[0]
    assert torch.equal(keys, key_frame_mask(7, time, offset))
    assert torch.equal(hint[:, keys], video[:, offset::time])
    assert torch.count_nonzero(hint[:, ~keys]) == 0


def test_degrade_shrinks_frames_by_the_spatial_factor():
    video = torch.randn(1, 5, 3, 8, 12)
    assert degrade(video, 2, 2).shape == (1, 3, 3, 4, 6)
    assert degrade(video, 3, 1, 0).shape == (1, 5, 3, 3, 4)  # round(8 / 3) x round(12 / 3)
    constant = torch.full((1, 5, 3, 8, 8), 0.25)
    torch.testing.assert_close(degrade(constant, 4, 2), torch.full((1, 3, 3, 2, 2), 0.25))


def test_trilinear_upsample_keeps_key_frames_and_interpolates_linearly_between_them():
    low = torch.randn(2, 3, 3, 5, 5)
    up = trilinear_upsample(low, 2, (5, 5))
    assert up.shape == (2, 5, 3, 5, 5)
    assert torch.equal(up[:, ::2], low)
    torch.testing.assert_close(up[:, 1::2], (low[:, :-1] + low[:, 1:]) / 2, rtol=0, atol=1e-6)

    quarter = trilinear_upsample(low, 4, (5, 5))
    torch.testing.assert_close(quarter[:, 1], 0.75 * low[:, 0] + 0.25 * low[:, 1], rtol=0, atol=1e-6)
    # frames before the first key frame and after the last repeat them
    shifted = trilinear_upsample(low, 2, (5, 5), frames=8, offset=1)
    assert torch.equal(shifted[:, 0], low[:, 0]) and torch.equal(shifted[:, 1], low[:, 0])
    assert torch.equal(shifted[:, 5], low[:, 2]) and torch.equal(shifted[:, 7], low[:, 2])
    # in space it is the hint's bilinear up-sampling
    hint, mask = key_frame_hint(low, 2, (10, 10))
    torch.testing.assert_close(trilinear_upsample(low, 2, (10, 10))[:, mask[0]], hint[:, mask[0]])


def test_check_factors_accepts_1_to_8_only():
    check_factors(1, 8)
    for space, time, name in ((0, 2, "space"), (9, 2, "space"), (2.0, 2, "space"), (True, 2, "space"),
                              (2, 0, "time"), (2, 9, "time"), (2, 1.5, "time")):
        with pytest.raises(GenlabError, match=f"--{name} must be an integer from 1 to 8"):
            check_factors(space, time)


# --- 4. windows ------------------------------------------------------------------------------------------

# 11 frames in chunks of 4 overlapping by 2: starts 0, 2, 4, 6 and a shifted last 7;
# 13 rows in tiles of 8 overlapping by 3: 0, 5; 10 columns in tiles of 8 overlapping by 2: 0 and a shifted 2.
SHAPE, WINDOW, OVERLAP = (2, 11, 3, 13, 10), (4, 8, 8), (2, 3, 2)


def test_window_layout_of_the_test_video():
    assert window_starts(11, 4, 2) == [0, 2, 4, 6, 7]
    assert window_starts(13, 8, 3, "rows") == [0, 5]
    assert window_starts(10, 8, 2, "columns") == [0, 2]


@pytest.mark.parametrize(("length", "window", "overlap"), [(4, 4, 0), (4, 4, 3), (11, 4, 2), (13, 8, 3), (10, 4, 0),
                                                            (9, 4, 3), (100, 8, 4), (17, 16, 15)])
def test_window_starts_cover_every_position_with_the_overlap(length, window, overlap):
    starts = window_starts(length, window, overlap)
    assert starts[0] == 0 and starts[-1] + window == length
    assert starts == sorted(set(starts))
    covered = torch.zeros(length, dtype=torch.bool)
    for start in starts:
        covered[start : start + window] = True
    assert covered.all()
    assert all(later - earlier <= window - overlap for earlier, later in zip(starts, starts[1:], strict=False))


def test_window_starts_reject_short_videos_and_bad_overlaps():
    with pytest.raises(GenlabError, match="fewer than the model's window"):
        window_starts(3, 4, 0)
    for overlap in (-1, 4, 5):
        with pytest.raises(GenlabError, match="overlap must lie in"):
            window_starts(8, 4, overlap)


@pytest.mark.parametrize("windows_per_call", [1, 3, 100])
def test_constant_video_comes_back_exactly_through_blended_windows(windows_per_call):
    video = torch.full(SHAPE, 0.37)
    calls = []

    def identity(x):
        calls.append(x.shape[0])
        assert x.shape[1:] == (4, 3, 8, 8)
        return x

    torch.testing.assert_close(apply_in_windows(identity, video, WINDOW, OVERLAP, windows_per_call), video,
                               rtol=0, atol=1e-6)
    windows = 5 * 2 * 2
    assert sum(calls) == windows * SHAPE[0] and max(calls) <= windows_per_call * SHAPE[0]
    assert len(calls) == -(-windows // windows_per_call)
    constant = apply_in_windows(lambda x: torch.full_like(x, -0.5), torch.randn(SHAPE), WINDOW, OVERLAP,
                                windows_per_call)
    torch.testing.assert_close(constant, torch.full(SHAPE, -0.5), rtol=0, atol=1e-6)


@pytest.mark.parametrize("function", [lambda x: x * 2 + 1, torch.tanh], ids=["affine", "tanh"])
def test_per_pixel_function_in_windows_equals_the_whole_video(function):
    video = torch.randn(SHAPE)
    for per_call in (1, 7):
        torch.testing.assert_close(apply_in_windows(function, video, WINDOW, OVERLAP, per_call), function(video),
                                   rtol=0, atol=1e-6)


def test_conditions_are_cut_with_each_window():
    """Video-shaped conditions are cut in space-time, per-frame ones in time, per-clip ones repeated."""
    generator = torch.Generator().manual_seed(0)
    video, offsets = torch.randn(SHAPE, generator=generator), torch.randn(SHAPE, generator=generator)
    per_frame, per_clip = torch.randn(2, 11, generator=generator), torch.tensor([1.5, -2.0])

    def function(x, offsets, per_frame, per_clip, label="unused"):
        assert label == "kept"
        return x + offsets * per_clip[:, None, None, None, None] + per_frame[:, :, None, None, None]

    expected = function(video, offsets, per_frame, per_clip, "kept")
    for per_call in (1, 4, 100):
        blended = apply_in_windows(function, video, WINDOW, OVERLAP, per_call, offsets=offsets,
                                   per_frame=per_frame, per_clip=per_clip, label="kept")
        torch.testing.assert_close(blended, expected, rtol=0, atol=1e-5)


def test_apply_in_windows_rejects_bad_calls():
    with pytest.raises(GenlabError, match=r"expected a video batch \[B, L, C, H, W\]"):
        apply_in_windows(torch.tanh, torch.randn(11, 3, 13, 10), WINDOW, OVERLAP)
    with pytest.raises(GenlabError, match="windows per call must be >= 1"):
        apply_in_windows(torch.tanh, torch.randn(SHAPE), WINDOW, OVERLAP, 0)
    with pytest.raises(GenlabError, match="the video has 3 frames, fewer than the model's window of 4"):
        apply_in_windows(torch.tanh, torch.randn(2, 3, 3, 8, 8), WINDOW, OVERLAP)


@pytest.mark.parametrize("attention", ["full", "factorised"])
def test_windowed_denoiser_over_one_window_is_the_inner_denoiser(attention):
    model = make_enhancer(attention)
    x, sigma, cond = conditions()
    windowed = WindowedDenoiser(model, (4, 8, 8), (2, 2, 2), windows_per_call=3)
    with torch.no_grad():
        assert torch.equal(windowed(x, sigma, **cond), model(x, sigma, **cond))


def test_windows_per_call_does_not_change_the_windowed_denoiser():
    model = make_enhancer()
    x, sigma, cond = conditions(frames=7, height=12, width=10)  # 3 chunks x 2 tiles x 2 tiles
    with torch.no_grad():
        one = WindowedDenoiser(model, (4, 8, 8), (2, 2, 2), windows_per_call=1)(x, sigma, **cond)
        for per_call in (5, 100):
            many = WindowedDenoiser(model, (4, 8, 8), (2, 2, 2), windows_per_call=per_call)(x, sigma, **cond)
            torch.testing.assert_close(many, one, rtol=0, atol=1e-5)
        # each window sees its own part of the condition: a different hint in the last frame changes only
        # the chunks that hold it
        hint = cond["hint"].clone()
        hint[:, -1] += 1
        changed = WindowedDenoiser(model, (4, 8, 8), (2, 2, 2))(x, sigma, **{**cond, "hint": hint})
    difference = (changed - one).abs().flatten(2).amax(2)  # [B, frames]
    assert difference[:, :3].max() == 0 and difference[:, -1].min() > 0


# --- 5. enhance_video ------------------------------------------------------------------------------------

# (frames, height, width, space, time): padded in time and space; windows in time and space; windows in
# time and columns with padded rows; one frame at time 1; windows in time at space 1
CASES = [(2, 2, 2, 2, 2), (4, 6, 6, 2, 2), (3, 3, 5, 2, 3), (1, 4, 4, 2, 1), (5, 8, 8, 1, 1)]


@pytest.mark.parametrize(("count", "height", "width", "space", "time"), CASES)
def test_enhance_video_shape_range_determinism_and_memory_budget(count, height, width, space, time):
    model = make_enhancer()
    low = low_video(2, count, height, width)
    enhanced = enhance_video(model, low, space, time, FAST)
    assert enhanced.shape == (2, (count - 1) * time + 1, 3, height * space, width * space)
    assert enhanced.dtype == torch.float32 and torch.isfinite(enhanced).all()
    assert enhanced.min() >= -1 and enhanced.max() <= 1
    assert torch.equal(enhance_video(model, low, space, time, FAST), enhanced)
    # all windows in one call / one window per call: the same up to float rounding of batched matmuls, which
    # the last Heun step (a slope divided by sigma_min = 0.002) amplifies a few hundred times
    for budget in (0.0, 1e-9):
        settings = EnhanceSettings(**{**vars(FAST), "memory_budget": budget})
        torch.testing.assert_close(enhance_video(model, low, space, time, settings), enhanced, rtol=0, atol=1e-4)
    other_seed = enhance_video(model, low, space, time, EnhanceSettings(**{**vars(FAST), "seed": 4}))
    assert not torch.allclose(other_seed, enhanced)


def test_enhance_video_uses_the_given_output_size():
    model = make_enhancer()
    low = low_video(1, 2, 3, 3)  # e.g. 8 px shrunk by 3 to round(8 / 3) = 3
    assert enhance_video(model, low, 3, 2, FAST, size=(8, 8)).shape == (1, 3, 3, 8, 8)


@pytest.mark.parametrize(("count", "height", "width", "space", "time"), CASES)
def test_fresh_regression_enhancer_is_trilinear_upsampling_at_any_size(count, height, width, space, time):
    low = low_video(2, count, height, width)
    size = (height * space, width * space)
    enhanced = enhance_video(make_regression(fresh=True), low, space, time, FAST)
    torch.testing.assert_close(enhanced, trilinear_upsample(low, time, size), rtol=0, atol=1e-6)


@pytest.mark.parametrize(("count", "height", "width", "space", "time"), CASES[:3])
def test_regression_enhancer_shape_determinism_and_memory_budget(count, height, width, space, time):
    model = make_regression()
    assert model.net.config.depth == TINY["depth"] + 1 and model.net.config.condition_channels == 1
    low = low_video(1, count, height, width, seed=2)
    enhanced = enhance_video(model, low, space, time, FAST)
    assert enhanced.shape == (1, (count - 1) * time + 1, 3, height * space, width * space)
    assert enhanced.min() >= -1 and enhanced.max() <= 1
    size = (height * space, width * space)
    assert (enhanced - trilinear_upsample(low, time, size).clamp(-1, 1)).abs().max() > 1e-3  # the net acts
    assert torch.equal(enhance_video(model, low, space, time, FAST), enhanced)
    for budget in (0.0, 1e-9):
        settings = EnhanceSettings(**{**vars(FAST), "memory_budget": budget})
        torch.testing.assert_close(enhance_video(model, low, space, time, settings), enhanced, rtol=0, atol=1e-5)


# --- 6. bad input ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["controlnet", "regression"])
def test_enhance_video_bad_inputs_are_clear_errors(variant):
    model = make_enhancer() if variant == "controlnet" else make_regression()
    low = low_video(1, 3, 4, 4)
    for space in (0, 9):
        with pytest.raises(GenlabError, match="--space must be an integer from 1 to 8"):
            enhance_video(model, low, space, 2, FAST)
    for time in (0, 9):
        with pytest.raises(GenlabError, match="--time must be an integer from 1 to 8"):
            enhance_video(model, low, 2, time, FAST)
    with pytest.raises(GenlabError, match="--time 2 interpolates between frames: the video needs at least 2"):
        enhance_video(model, low[:, :1], 2, 2, FAST)
    with pytest.raises(GenlabError, match="3×3, not a multiple of the model's patch size 2"):
        enhance_video(model, low_video(1, 3, 3, 3), 1, 2, FAST)
    with pytest.raises(GenlabError, match="expected RGB clips"):
        enhance_video(model, low[:, :, :1], 2, 2, FAST)
    with pytest.raises(GenlabError, match="--sampling-steps must be >= 1"):
        enhance_video(model, low, 2, 2, EnhanceSettings(sampling_steps=0))
    with pytest.raises(GenlabError, match="--memory-budget must be >= 0"):
        enhance_video(model, low, 2, 2, EnhanceSettings(memory_budget=-1))


def test_enhancers_need_an_unconditional_video_dit_base():
    for overrides in ({"condition_channels": 3}, {"num_classes": 4}):
        base = make_base(**overrides)
        branch = EnhanceControlNet.for_base(base.net, 1)
        with pytest.raises(GenlabError, match="must be an unconditional video model"):
            ControlNetEnhancer(base, branch)
        with pytest.raises(GenlabError, match="must be an unconditional video model"):
            RegressionEnhancer.from_base(base, 1)
    with pytest.raises(GenlabError, match="needs a genlab VideoDiT base"):
        EnhanceControlNet.for_base(torch.nn.Linear(2, 2))
    with pytest.raises(GenlabError, match="needs a genlab video model as its base"):
        ControlNetEnhancer(EDMDenoiser(torch.nn.Linear(2, 2)), EnhanceControlNet.for_base(make_base().net, 1))


def test_branch_depth_must_fit_the_base():
    net = make_base().net  # depth 2
    for depth in (0, 3):
        with pytest.raises(GenlabError, match=r"--branch-depth must be in 1\.\.2 \(the base's blocks\), got"):
            EnhanceControlNet.for_base(net, depth)
    with pytest.raises(GenlabError, match="depth >= 1"):
        EnhanceControlNet(depth=0)


def test_hint_of_the_wrong_size_is_a_clear_error():
    model = make_enhancer()
    x, sigma, cond = conditions()
    with pytest.raises(GenlabError, match="pass it at the model's frames and resolution"):
        model(x, sigma, **{**cond, "hint": cond["hint"][..., :4, :4]})


# --- 7. save / load --------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["controlnet", "regression"])
def test_enhancer_save_load_round_trip(tmp_path, variant):
    model = make_enhancer(depth=2) if variant == "controlnet" else make_regression()
    save_enhancer(model, tmp_path / "model")
    x, sigma, cond = conditions()
    for path in (tmp_path, tmp_path / "model"):  # the run folder or its model/
        loaded = load_enhancer(path)
        assert type(loaded) is type(model) and loaded.variant == variant and not loaded.training
        with torch.no_grad():
            if variant == "controlnet":
                assert all(not p.requires_grad for p in loaded.base.parameters())
                assert (loaded.sigma_min, loaded.sigma_max) == (model.sigma_min, model.sigma_max)
                torch.testing.assert_close(loaded(x, sigma, **cond), model(x, sigma, **cond), **SAME)
            else:
                args = (x, cond["key_frames"], cond["space"])
                torch.testing.assert_close(loaded(*args), model(*args), **SAME)
    low = low_video(1, 2, 4, 4)
    torch.testing.assert_close(enhance_video(load_enhancer(tmp_path), low, 2, 2, FAST),
                               enhance_video(model, low, 2, 2, FAST), **SAME)


def test_loading_a_folder_without_an_enhancer_is_a_clear_error(tmp_path):
    with pytest.raises(GenlabError, match="holds no genlab enhance model"):
        load_enhancer(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GenlabError, match="holds no genlab enhance model"):
        load_enhancer(tmp_path / "empty")
    save_video_model(make_base(), tmp_path / "video")
    with pytest.raises(GenlabError, match="holds a video model, not an enhance model"):
        load_enhancer(tmp_path / "video")


# --- 8. training data ------------------------------------------------------------------------------------


def test_moving_sprites_shape_determinism_and_motion():
    videos = moving_sprites(5, 6, 16, seed=3)
    assert videos.shape == (5, 6, 3, 16, 16) and videos.dtype == torch.uint8
    assert torch.equal(moving_sprites(5, 6, 16, seed=3), videos)
    assert not torch.equal(moving_sprites(5, 6, 16, seed=4), videos)
    assert (videos[:, 1:] != videos[:, :-1]).flatten(1).any(1).all()  # every clip moves
    assert (videos.flatten(1).float().std(1) > 5).all()  # not blank


@pytest.mark.parametrize(("args", "message"), [((0,), "clips must be an integer of at least 1"),
                                               ((2, 0), "frames must be an integer of at least 1"),
                                               ((2, 4, 3), "resolution must be an integer of at least 4"),
                                               ((2, 4.0), "frames must be an integer"),
                                               ((True,), "clips must be an integer")])
def test_moving_sprites_bad_arguments_are_clear_errors(args, message):
    with pytest.raises(GenlabError, match=message):
        moving_sprites(*args)


def test_video_clips_mixed_and_sprites_give_the_requested_number_of_clips():
    for data, clips in (("mixed", 3), ("sprites", 2)):
        dataset = video_clips(data, clips, 2, 8, 0, progress=False)
        assert len(dataset) == clips
        (video,) = dataset[clips - 1]
        assert video.shape == (2, 3, 8, 8) and video.dtype == torch.float32
        assert video.min() >= -1 and video.max() <= 1
    with pytest.raises(GenlabError, match="--data must be one of"):
        video_clips("noise", 2, 2, 8, 0, progress=False)


# --- 9. the random training degradation -----------------------------------------------------------------


def test_random_degradation_shapes_key_frames_and_augmentation():
    videos = moving_sprites(8, 7, 8, seed=1).float() / 127.5 - 1
    spaces, times = (1, 2, 4), (2, 3, 8)
    torch.manual_seed(0)
    noisy = random_degradation(videos, spaces, times, 0.25)
    torch.manual_seed(0)
    clean = random_degradation(videos, spaces, times, 0.0)  # the same draws, no hint noise
    assert set(noisy) == {"hint", "key_frames", "space", "augment_sigma", "trilinear"}
    assert noisy["hint"].shape == noisy["trilinear"].shape == videos.shape
    assert noisy["key_frames"].shape == (8, 7) and noisy["key_frames"].dtype == torch.bool
    assert noisy["space"].shape == noisy["augment_sigma"].shape == (8,)
    assert set(noisy["space"].tolist()) <= set(spaces)
    assert ((noisy["augment_sigma"] >= 0) & (noisy["augment_sigma"] <= 0.25)).all()
    assert torch.equal(clean["augment_sigma"], torch.zeros(8))
    assert torch.equal(noisy["key_frames"], clean["key_frames"]) and torch.equal(noisy["space"], clean["space"])
    assert torch.equal(noisy["trilinear"], clean["trilinear"])

    for clip in range(8):
        keys = noisy["key_frames"][clip]
        assert any(torch.equal(keys, key_frame_mask(7, time, offset)) for time in times for offset in range(time))
        assert torch.count_nonzero(noisy["hint"][clip, ~keys]) == 0  # the noise stays on key frames
        noise = (noisy["hint"][clip, keys] - clean["hint"][clip, keys]) / noisy["augment_sigma"][clip]
        assert 0.7 < noise.std() < 1.3


def test_random_degradation_at_space_1_keeps_the_key_frames():
    videos = torch.rand(4, 6, 3, 8, 8) * 2 - 1
    torch.manual_seed(1)
    out = random_degradation(videos, (1,), (2, 3), 0.0)
    assert torch.equal(out["space"], torch.ones(4, dtype=out["space"].dtype))
    for clip in range(4):
        keys = out["key_frames"][clip]
        assert torch.equal(out["hint"][clip, keys], videos[clip, keys])
        assert torch.equal(out["trilinear"][clip, keys], videos[clip, keys])
    torch.manual_seed(2)
    long_interval = random_degradation(videos[:, :4], (2,), (8,), 0.0)  # time > frames: one key frame
    assert (long_interval["key_frames"].sum(1) == 1).all()


def test_parse_factors():
    assert parse_factors("1,2,4", "space-factors") == (1, 2, 4)
    assert parse_factors("8", "time-factors") == (8,)
    with pytest.raises(GenlabError, match="--space-factors: every factor must lie in 1..8"):
        parse_factors("0,2", "space-factors")
    with pytest.raises(GenlabError, match="--time-factors: every factor must lie in 1..8"):
        parse_factors("2,9", "time-factors")
    for text in ("a", "1,,2", ""):
        with pytest.raises(GenlabError, match="--time-factors must be comma-separated integers"):
            parse_factors(text, "time-factors")
