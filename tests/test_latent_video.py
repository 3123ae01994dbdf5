"""Latent video models: the frame autoencoder, and a video DiT that denoises its latents."""

import json

import pytest
import torch

from genlab.base.autoencoder import (
    ClipFrames,
    decode_videos,
    encode_videos,
    load_autoencoder,
    set_latent_statistics,
    train_autoencoder,
)
from genlab.base.config import AutoencoderConfig, VideoModelConfig
from genlab.base.video_model import (
    LatentVideoDenoiser,
    build_video_denoiser,
    first_frame_kwargs,
    generate_videos,
    load_video_model,
    model_frames,
    model_shape,
    model_videos,
    save_video_model,
    train_video_model,
)
from genlab.core.nets.autoencoder import FrameAutoencoder
from genlab.errors import GenlabError


def _autoencoder(**kwargs) -> FrameAutoencoder:
    torch.manual_seed(0)
    return FrameAutoencoder(latent_channels=4, width=8, **kwargs).eval()


def test_frame_autoencoder_shapes_and_normalisation_are_inverse():
    autoencoder = _autoencoder(scaling_factor=2.5, shift_factor=0.3)
    frames = torch.rand(3, 3, 16, 16) * 2 - 1
    raw = autoencoder.encode(frames)
    assert raw.shape == (3, 4, 4, 4) and autoencoder.factor == 4
    latents = autoencoder.encode_latents(frames)
    assert torch.allclose(latents, (raw - 0.3) * 2.5)
    assert torch.allclose(autoencoder.decode_latents(latents), autoencoder(frames), atol=1e-5)
    with pytest.raises(GenlabError, match="multiples of 4"):
        autoencoder.encode(torch.zeros(1, 3, 10, 10))


def test_latent_statistics_give_the_data_spread_the_schedule_expects():
    autoencoder = _autoencoder()
    frames = torch.rand(64, 3, 16, 16) * 2 - 1
    set_latent_statistics(autoencoder, frames, sigma_data=0.5)
    with torch.no_grad():
        latents = autoencoder.encode_latents(frames)
    assert abs(float(latents.mean())) < 1e-4 and abs(float(latents.std()) - 0.5) < 1e-3


def test_clip_frames_are_every_frame_of_every_clip():
    videos = torch.randint(0, 256, (2, 3, 3, 4, 4), dtype=torch.uint8)
    frames = ClipFrames(videos)
    assert len(frames) == 6
    assert torch.equal(frames[4][0], videos[1, 1].float() / 127.5 - 1)


def test_videos_round_trip_through_latents_clip_by_clip():
    autoencoder = _autoencoder()
    videos = torch.rand(2, 3, 3, 16, 16) * 2 - 1
    latents = encode_videos(autoencoder, videos, batch_size=4)
    assert latents.shape == (2, 3, 4, 4, 4)
    assert torch.allclose(latents[1, 2], autoencoder.encode_latents(videos[1, 2:3])[0], atol=1e-6)
    decoded = decode_videos(autoencoder, latents)
    assert decoded.shape == videos.shape and decoded.abs().max() <= 1
    assert torch.allclose(decoded[0, 1], autoencoder.decode_latents(latents[0, 1:2])[0].clamp(-1, 1), atol=1e-6)
    with pytest.raises(GenlabError, match=r"\[B, T, C, H, W\]"):
        encode_videos(autoencoder, videos[0])


def test_a_latent_video_model_works_in_latent_space_and_returns_pixels(tmp_path):
    autoencoder = _autoencoder()
    config = VideoModelConfig(frames=2, resolution=16, first_frame=True, patch_size=1)
    model = build_video_denoiser(config, autoencoder)
    assert isinstance(model, LatentVideoDenoiser)
    assert (model.net.config.in_channels, model.net.config.resolution, model.net.config.condition_channels) == (4, 4, 4)
    assert not any(p.requires_grad for p in model.autoencoder.parameters())  # frozen: fine-tuning leaves it alone
    assert model_shape(model, (5, 2, 3, 16, 16)) == (5, 2, 4, 4, 4)
    with torch.no_grad():
        for parameter in model.net.final_layer.parameters():
            parameter.normal_(0, 0.1)
    first = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.allclose(model_frames(model, first), encode_videos(autoencoder, first[:, None])[:, 0])
    given = first_frame_kwargs(model.net, model_frames(model, first))
    clips = generate_videos(model, (2, 2, 3, 16, 16), steps=2, seed=3, **given)
    assert clips.shape == (2, 2, 3, 16, 16)
    # save -> load: a model folder with the autoencoder inside gives the same clips
    save_video_model(model, tmp_path / "model")
    assert json.loads((tmp_path / "model" / "genlab.json").read_text())["autoencoder"] == "autoencoder"
    loaded = load_video_model(tmp_path / "model")
    assert isinstance(loaded, LatentVideoDenoiser)
    assert torch.equal(generate_videos(loaded, (2, 2, 3, 16, 16), steps=2, seed=3, **given), clips)


def test_a_pixel_model_passes_frames_and_shapes_through():
    model = build_video_denoiser(VideoModelConfig(frames=2, resolution=8, first_frame=True))
    videos = torch.rand(1, 2, 3, 8, 8)
    assert model_videos(model, videos) is videos and model_frames(model, videos[:, 0]) is not None
    assert model_shape(model, (1, 2, 3, 8, 8)) == (1, 2, 3, 8, 8)


def test_a_latent_model_without_its_autoencoder_folder_says_so(tmp_path):
    model = build_video_denoiser(VideoModelConfig(frames=2, resolution=16, first_frame=True, patch_size=1),
                                 _autoencoder())
    save_video_model(model, tmp_path / "model")
    for item in (tmp_path / "model" / "autoencoder").iterdir():
        item.unlink()
    with pytest.raises(GenlabError, match="autoencoder"):
        load_video_model(tmp_path / "model")


def test_train_autoencoder_then_a_latent_video_model_end_to_end(tmp_path):
    ae_config = AutoencoderConfig(steps=3, clips=4, batch_size=8, width=8, frames=2, resolution=16, data="sprites",
                                  run_dir=str(tmp_path / "ae"), progress=False, warmup_steps=1)
    train_autoencoder(ae_config)
    autoencoder = load_autoencoder(tmp_path / "ae")
    assert autoencoder.config.scaling_factor != 1.0  # set from the latents' spread
    config = VideoModelConfig(steps=2, clips=4, batch_size=2, frames=2, resolution=16, data="sprites", patch_size=2,
                              autoencoder=str(tmp_path / "ae"), first_frame_dropout=0.5, run_dir=str(tmp_path / "v"),
                              progress=False, warmup_steps=1)
    train_video_model(config)
    model = load_video_model(tmp_path / "v")
    assert isinstance(model, LatentVideoDenoiser) and model.net.config.resolution == 4
    for name, value in autoencoder.state_dict().items():  # the DiT trained; the autoencoder is the one it was given
        assert torch.equal(model.autoencoder.state_dict()[name], value)
    # a camera ControlNet trains on it (pixel clips in, their latents and per-cell Plücker frames inside)
    from genlab.camera.model import load_camera_model
    from genlab.camera.training import CameraModelConfig, train_camera_model

    train_camera_model(CameraModelConfig(base=str(tmp_path / "v"), variant="controlnet", clips=4, steps=2, batch_size=2,
                                         branch_hidden=8, run_dir=str(tmp_path / "c"), progress=False, warmup_steps=1))
    camera = load_camera_model(tmp_path / "c")
    assert torch.equal(camera.base.net.state_dict()["final_layer.linear.weight"],
                       model.net.state_dict()["final_layer.linear.weight"])  # the base stayed frozen


def test_autoencoder_config_checks_the_frame_size():
    with pytest.raises(GenlabError, match="multiple of 2\\*\\*downsamples = 4"):
        AutoencoderConfig(resolution=30).validate()
