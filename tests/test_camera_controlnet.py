"""The camera ControlNet: zero init, activity window, hooks, token order, bad input, on genlab's video DiT
and on a tiny diffusers CogVideoX transformer; and the naive concat baseline."""

import pytest
import torch
from diffusers import CogVideoXDDIMScheduler, CogVideoXTransformer3DModel

from genlab.camera.controlnet import CameraControlNet, CameraEncoder, camera_control, camera_tokens, taps_for
from genlab.camera.model import (
    CameraBlindDenoiser,
    ConcatCameraDenoiser,
    ControlNetCameraDenoiser,
    EncoderCameraDenoiser,
    load_camera_model,
    save_camera_model,
    trainable_parameters,
)
from genlab.core.denoiser import DiffusersDenoiser, EDMDenoiser
from genlab.core.nets import VideoDiT
from genlab.errors import GenlabError

TINY = {"frames": 4, "resolution": 8, "patch_size": 2, "hidden_size": 16, "depth": 3, "num_heads": 2}
COGVIDEOX = {"num_attention_heads": 2, "attention_head_dim": 8, "in_channels": 4, "out_channels": 4,
             "time_embed_dim": 16, "text_embed_dim": 12, "num_layers": 3, "sample_width": 8, "sample_height": 8,
             "sample_frames": 9, "patch_size": 2, "max_text_seq_length": 5}


def randomise(module: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    torch.manual_seed(seed)
    for parameter in module.parameters():
        torch.nn.init.normal_(parameter, std=0.2)
    return module


def video_base() -> EDMDenoiser:
    return EDMDenoiser(randomise(VideoDiT(condition_channels=3, **TINY))).eval()


def inputs(batch: int = 2):
    torch.manual_seed(0)
    return (torch.randn(batch, 4, 3, 8, 8), torch.tensor([0.3, 4.0])[:batch], torch.randn(batch, 4, 6, 8, 8),
            torch.randn(batch, 4, 3, 8, 8))


def test_fresh_controlnet_leaves_the_base_unchanged_and_a_trained_one_does_not():
    base = video_base()
    x, sigma, plucker, condition = inputs()
    model = ControlNetCameraDenoiser(base, CameraControlNet.for_backbone(base.net, hidden_size=16, num_heads=2))
    reference = base(x, sigma, condition=condition)
    torch.testing.assert_close(model(x, sigma, plucker=plucker, condition=condition), reference, rtol=0, atol=0)
    randomise(model.controlnet)
    steered = model(x, sigma, plucker=plucker, condition=condition)
    assert (steered - reference).abs().max() > 1e-3
    assert not torch.allclose(steered, model(x, sigma, plucker=plucker.flip(1), condition=condition))
    # the hooks are gone after each call: the base alone is unchanged
    torch.testing.assert_close(base(x, sigma, condition=condition), reference, rtol=0, atol=0)
    model.train()
    assert model.training and model.controlnet.training and not base.training  # the frozen base stays in eval mode
    assert not any(parameter.requires_grad for parameter in base.parameters())


def test_activity_window_switches_the_branch_per_sample():
    base = video_base()
    x, sigma, plucker, condition = inputs()  # sigma 0.3 (late, low noise) and 4.0 (early, high noise)
    branch = randomise(CameraControlNet.for_backbone(base.net, hidden_size=16, num_heads=2))
    early_only = ControlNetCameraDenoiser(base, branch, window=(0.6, 1.0))
    assert early_only.active(sigma).tolist() == [False, True]
    difference = (early_only(x, sigma, plucker=plucker, condition=condition)
                  - base(x, sigma, condition=condition)).flatten(1).abs().amax(1)
    assert difference[0] == 0 and difference[1] > 1e-3
    with pytest.raises(GenlabError, match="window"):
        ControlNetCameraDenoiser(base, branch, window=(0.5, 0.5))


def test_hooks_are_removed_after_an_error():
    base = video_base()
    x, sigma, plucker, condition = inputs()
    branch = randomise(CameraControlNet.for_backbone(base.net, hidden_size=16, num_heads=2))
    reference = base(x, sigma, condition=condition)
    with pytest.raises(RuntimeError), camera_control(taps_for(base.net), branch, plucker):
        raise RuntimeError("boom")
    torch.testing.assert_close(base(x, sigma, condition=condition), reference, rtol=0, atol=0)


def test_trajectory_of_the_wrong_length_is_a_clear_error():
    base = video_base()
    x, sigma, plucker, condition = inputs()
    model = ControlNetCameraDenoiser(base, CameraControlNet.for_backbone(base.net, hidden_size=16, num_heads=2))
    with pytest.raises(GenlabError, match="trajectory as long as the clip"):
        model(x, sigma, plucker=plucker[:, :3], condition=condition)
    with pytest.raises(GenlabError, match="needs plucker"):
        model(x, sigma, condition=condition)
    with pytest.raises(GenlabError, match="plucker must be"):
        model(x, sigma, plucker=plucker[:, :, :3], condition=condition)


def test_branch_tokens_follow_the_video_token_order():
    """With the base's patch weights, the branch's Plücker tokens equal the base's tokens of the same input."""
    net = randomise(VideoDiT(in_channels=6, **TINY))
    branch = CameraControlNet.for_backbone(net, hidden_size=16, num_heads=2)
    branch.camera_embed.load_state_dict(net.patch_embed.state_dict())
    frames = torch.randn(2, 4, 6, 8, 8)
    base_tokens = net.patch_embed(frames.transpose(1, 2)).flatten(2).transpose(1, 2) + net.pos_embed
    torch.testing.assert_close(camera_tokens(branch.camera_embed, frames, base_tokens), base_tokens)


def test_concat_baseline_starts_as_the_base_and_trains_everything():
    base = video_base()
    x, sigma, plucker, condition = inputs()
    concat = ConcatCameraDenoiser.from_base(base)
    torch.testing.assert_close(concat(x, sigma, plucker=plucker, condition=condition),
                               base(x, sigma, condition=condition))
    assert concat.net.config.condition_channels == 9
    assert trainable_parameters(concat) == sum(p.numel() for p in concat.parameters())
    controlled = ControlNetCameraDenoiser(base, CameraControlNet.for_backbone(base.net, hidden_size=16, num_heads=2))
    assert trainable_parameters(controlled) == sum(p.numel() for p in controlled.controlnet.parameters())


def test_camera_encoder_starts_as_the_base_sees_only_cameras_and_trains_only_itself():
    base = video_base()
    x, sigma, plucker, condition = inputs()
    model = EncoderCameraDenoiser(base, CameraEncoder.for_backbone(base.net, hidden_size=8))
    assert len(model.controlnet.blocks) == len(base.net.blocks)  # CameraCtrl-style: feeds every block
    reference = base(x, sigma, condition=condition)
    torch.testing.assert_close(model(x, sigma, plucker=plucker, condition=condition), reference, rtol=0, atol=0)
    randomise(model.controlnet)
    steered = model(x, sigma, plucker=plucker, condition=condition)
    assert (steered - reference).abs().max() > 1e-3
    tokens = torch.zeros(2, base.net.tokens_per_clip, base.net.config.hidden_size)
    features = model.controlnet(tokens, plucker)
    assert all(torch.equal(a, b) for a, b in zip(features, model.controlnet(tokens + 1, plucker), strict=True))
    steered.square().mean().backward()
    assert all(p.grad is None for p in base.parameters())
    assert trainable_parameters(model) == sum(p.numel() for p in model.controlnet.parameters())
    with pytest.raises(GenlabError, match="feeds 1 to 3 blocks"):
        CameraEncoder.for_backbone(base.net, depth=4)


def test_camera_blind_control_trains_every_base_weight():
    base = EDMDenoiser(randomise(VideoDiT(condition_channels=3, **TINY)))
    model = CameraBlindDenoiser(base)
    x, sigma, plucker, condition = inputs()
    model(x, sigma, plucker=plucker, condition=condition).square().mean().backward()
    assert trainable_parameters(model) == sum(p.numel() for p in base.parameters())
    assert all(p.grad is not None for p in base.net.blocks.parameters())


@pytest.mark.parametrize("variant", ["controlnet", "encoder", "concat", "none"])
def test_camera_model_save_load_round_trip(tmp_path, variant):
    base = video_base()
    x, sigma, plucker, condition = inputs()
    if variant == "controlnet":
        model = ControlNetCameraDenoiser(base, randomise(CameraControlNet.for_backbone(base.net, 16, 2, 2)), (0.2, 1.0))
    elif variant == "encoder":
        model = EncoderCameraDenoiser(base, randomise(CameraEncoder.for_backbone(base.net, 8)))
    elif variant == "concat":
        model = randomise(ConcatCameraDenoiser.from_base(base))
    else:
        model = CameraBlindDenoiser(base)
    save_camera_model(model, tmp_path / "model")
    loaded = load_camera_model(tmp_path)
    assert loaded.variant == variant
    torch.testing.assert_close(loaded(x, sigma, plucker=plucker, **loaded.first_frame_kwargs(condition[:, 0])),
                               model(x, sigma, plucker=plucker, **model.first_frame_kwargs(condition[:, 0])))
    with pytest.raises(GenlabError, match="no genlab camera model"):
        load_camera_model(tmp_path / "missing")


def cogvideox_denoiser(tmp_path) -> DiffusersDenoiser:
    """A tiny random CogVideoX transformer saved and reloaded locally, with its scheduler."""
    torch.manual_seed(0)
    CogVideoXTransformer3DModel(**COGVIDEOX).save_pretrained(tmp_path / "transformer")
    transformer = CogVideoXTransformer3DModel.from_pretrained(tmp_path / "transformer")
    return DiffusersDenoiser(transformer, CogVideoXDDIMScheduler(prediction_type="v_prediction")).eval()


def test_controlnet_on_cogvideox_starts_as_a_no_op_and_trains_only_the_branch(tmp_path):
    base = cogvideox_denoiser(tmp_path)
    model = ControlNetCameraDenoiser(base, CameraControlNet.for_backbone(base.model, hidden_size=16, num_heads=2))
    torch.manual_seed(0)
    x, sigma = torch.randn(2, 3, 4, 8, 8), torch.tensor([0.5, 2.0])
    plucker, text = torch.randn(2, 3, 6, 8, 8), torch.randn(2, 5, 12)
    reference = base(x, sigma, encoder_hidden_states=text)
    torch.testing.assert_close(model(x, sigma, plucker=plucker, encoder_hidden_states=text), reference, rtol=0, atol=0)
    randomise(model.controlnet)
    steered = model(x, sigma, plucker=plucker, encoder_hidden_states=text)
    assert (steered - reference).abs().max() > 1e-3
    steered.square().mean().backward()
    assert all(p.grad is None for p in base.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.controlnet.parameters())


def test_branch_tokens_follow_cogvideox_token_order(tmp_path):
    """The branch's patchification of a 6-channel grid matches CogVideoX's own patch embedding."""
    torch.manual_seed(0)
    transformer = CogVideoXTransformer3DModel(**{**COGVIDEOX, "in_channels": 6, "out_channels": 6},
                                              use_rotary_positional_embeddings=True)  # no additive positions
    branch = CameraControlNet.for_backbone(transformer, hidden_size=transformer.config.num_attention_heads * 8,
                                           num_heads=2)
    proj = transformer.patch_embed.proj  # Conv2d(6, inner, 2, 2)
    branch.camera_embed.weight.data.copy_(proj.weight.data[:, :, None])
    branch.camera_embed.bias.data.copy_(proj.bias.data)
    grid = torch.randn(2, 3, 6, 8, 8)
    theirs = transformer.patch_embed(torch.zeros(2, 0, 12), grid)
    theirs = theirs - transformer.patch_embed(torch.zeros(2, 0, 12), torch.zeros_like(grid))
    ours = (camera_tokens(branch.camera_embed, grid, theirs)
            - camera_tokens(branch.camera_embed, torch.zeros_like(grid), theirs))  # positions cancel
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_unsupported_backbone_is_a_clear_error():
    with pytest.raises(GenlabError, match="support genlab's VideoDiT"):
        CameraControlNet.for_backbone(torch.nn.Linear(2, 2))


def latent_video_base() -> EDMDenoiser:
    """A random latent video model: a VideoDiT on the 3-channel, 8×8 latents of 32×32 frames."""
    from genlab.base.video_model import LatentVideoDenoiser
    from genlab.core.edm import EDMSchedule
    from genlab.core.nets.autoencoder import FrameAutoencoder

    torch.manual_seed(2)
    autoencoder = FrameAutoencoder(latent_channels=3, width=8)
    return LatentVideoDenoiser(randomise(VideoDiT(in_channels=3, condition_channels=3, **TINY)), EDMSchedule(),
                               autoencoder).eval()


@pytest.mark.parametrize("variant", ["controlnet", "encoder", "concat", "none"])
def test_camera_models_on_a_latent_base_take_pixels_and_cameras_and_return_pixel_clips(tmp_path, variant):
    from genlab.base.video_model import clip_size, generate_videos, model_frames
    from genlab.camera.training import model_plucker
    from genlab.data import default_intrinsics
    from genlab.data.trajectories import make_trajectory

    base = latent_video_base()
    if variant == "controlnet":
        model = ControlNetCameraDenoiser(base, randomise(CameraControlNet.for_backbone(base.net, 16, 2, 2)))
    elif variant == "encoder":
        model = EncoderCameraDenoiser(base, randomise(CameraEncoder.for_backbone(base.net, 8)))
    elif variant == "concat":
        model = ConcatCameraDenoiser.from_base(base)
        randomise(model.net)
    else:
        model = CameraBlindDenoiser(base)
    assert clip_size(model) == (4, 32)
    assert not any(p.requires_grad for p in model.autoencoder.parameters())  # no variant trains the autoencoder
    first = torch.rand(2, 3, 32, 32) * 2 - 1
    condition = model.first_frame_kwargs(first)
    if variant != "concat":
        torch.testing.assert_close(condition["condition"][:, 0], model_frames(base, first))  # encoded, not pixels
    poses = make_trajectory("orbit", 4).expand(2, 4, 4, 4)
    plucker = model_plucker(model, poses, default_intrinsics(32).expand(2, 4, 3, 3), 32)
    assert plucker.shape == (2, 4, 6, 8, 8)  # one ray per latent cell
    clips = generate_videos(model, (2, 4, 3, 32, 32), steps=2, seed=1, plucker=plucker, **condition)
    assert clips.shape == (2, 4, 3, 32, 32)
    save_camera_model(model, tmp_path / "model")
    loaded = load_camera_model(tmp_path)
    again = generate_videos(loaded, (2, 4, 3, 32, 32), steps=2, seed=1, plucker=plucker,
                            **loaded.first_frame_kwargs(first))
    torch.testing.assert_close(again, clips)
