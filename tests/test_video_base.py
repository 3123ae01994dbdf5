"""The video base: first-frame dropout (one model for image-to-video and unconditional sampling)."""

import pytest
import torch

from genlab.base.config import VideoModelConfig
from genlab.base.video_model import build_video_denoiser, first_frame_kwargs, no_first_frame, video_loss
from genlab.core.edm import edm_loss
from genlab.errors import GenlabError


def _random_denoiser():
    denoiser = build_video_denoiser(VideoModelConfig(frames=2, resolution=8, first_frame=True))
    with torch.no_grad():
        for parameter in denoiser.net.final_layer.parameters():  # zero-initialised: would ignore every input
            parameter.normal_(0, 0.1)
    return denoiser


def test_no_first_frame_is_an_all_zero_condition():
    net = _random_denoiser().net
    condition = no_first_frame(net, 3)["condition"]
    assert condition.shape == (3, 2, 3, 8, 8) and not condition.any()
    blind = build_video_denoiser(VideoModelConfig(frames=2, resolution=8, first_frame=False)).net
    assert no_first_frame(blind, 3) == {}


def test_first_frame_dropout_hides_the_first_frame_of_the_drawn_clips():
    denoiser = _random_denoiser()
    videos = torch.rand(6, 2, 3, 8, 8) * 2 - 1
    torch.manual_seed(5)
    dropped = video_loss(denoiser, (videos,), first_frame_dropout=0.5)
    torch.manual_seed(5)
    shown = (torch.rand(6) >= 0.5)[:, None, None, None].float()
    assert 0 < shown.sum() < 6  # the seed hides some clips' first frames, not all
    expected = edm_loss(denoiser, videos, **first_frame_kwargs(denoiser.net, videos[:, 0] * shown)).mean()
    assert torch.allclose(dropped, expected)
    torch.manual_seed(5)
    torch.rand(6)  # the same σ and noise draws as above, every first frame shown
    assert not torch.allclose(expected, edm_loss(denoiser, videos, **first_frame_kwargs(denoiser.net, videos[:, 0])).mean())


def test_first_frame_dropout_needs_a_first_frame_model():
    with pytest.raises(GenlabError, match="--first-frame-dropout needs"):
        VideoModelConfig(first_frame=False, first_frame_dropout=0.1).validate()


def test_the_shipped_base_loads_from_the_package_and_denoises_held_out_clips():
    from genlab.base.video_model import (
        PRETRAINED_VIDEO_DIR,
        autoencoder_of,
        clip_size,
        load_video_model,
        model_frames,
        model_videos,
        video_clips,
    )
    from genlab.core.edm import held_out_loss
    from genlab.metrics import psnr

    for weights in PRETRAINED_VIDEO_DIR.rglob("*.safetensors"):
        assert 0 < weights.stat().st_size <= 25 * 2**20
    assert (PRETRAINED_VIDEO_DIR / "MODEL_CARD.md").is_file()
    model = load_video_model("pretrained")
    assert clip_size(model) == (8, 32) and model.net.config.condition_channels == model.net.config.in_channels
    videos = video_clips("mixed", 16, 8, 32, seed=9, progress=False).video_tensor()
    if autoencoder_of(model) is not None:  # a latent base: its autoencoder reconstructs held-out frames
        decoded = model.autoencoder.decode_latents(model_frames(model, videos[:, 0])).clamp(-1, 1)
        assert float(psnr(decoded, videos[:, 0]).mean()) > 22
    latents = model_videos(model, videos)
    given = first_frame_kwargs(model.net, latents[:, 0])
    trained = held_out_loss(model, latents, [0.2, 1.0], **given)
    fresh_config = VideoModelConfig(first_frame=True, size="small", patch_size=model.net.config.patch_size)
    fresh = held_out_loss(build_video_denoiser(fresh_config, autoencoder_of(model)), latents, [0.2, 1.0], **given)
    assert (trained < 0.6 * fresh).all()
    # an all-zero first frame is "none": the model still denoises, a little worse than with the frame
    unconditional = held_out_loss(model, latents, [1.0], **no_first_frame(model.net, len(videos)))
    assert trained[1] < unconditional[0] < fresh[1]
