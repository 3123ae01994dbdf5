"""Video metrics: generator-like artefacts, and the video feature net behind frame FD and clip FD."""

import pytest
import torch

from genlab.errors import GenlabError
from genlab.metrics.artefacts import Artefacts, blur, generator_artefacts
from genlab.metrics.video_features import VideoFeatureNet, video_fd, video_features

NONE = Artefacts(blocks=0.0, fragments=0, blur=0.0, colour=0.0, noise=0.0)


def _frames(n=4, size=16, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_zero_artefacts_leave_frames_unchanged():
    frames = _frames()
    assert torch.allclose(generator_artefacts(frames, torch.Generator().manual_seed(0), NONE), frames, atol=1e-5)


def test_artefacts_stay_in_range_and_change_frames():
    frames = _frames()
    out = generator_artefacts(frames, torch.Generator().manual_seed(0))
    assert out.shape == frames.shape and out.min() >= -1 and out.max() <= 1
    assert (out - frames).abs().mean() > 0.01


def test_fragments_copy_neighbouring_patches():
    frames = _frames(n=2, size=16)
    out = generator_artefacts(frames, torch.Generator().manual_seed(1), Artefacts(blocks=0.0, fragments=6, blur=0.0,
                                                                                  colour=0.0, noise=0.0))
    patches = lambda x: x.unfold(2, 4, 4).unfold(3, 4, 4)  # noqa: E731  [B, C, 4, 4, p, p]
    source, result = patches(frames), patches(out)
    changed = 0
    for b in range(2):
        for i in range(4):
            for j in range(4):
                if torch.allclose(result[b, :, i, j], source[b, :, i, j], atol=1e-5):
                    continue
                changed += 1
                neighbours = [source[b, :, min(max(i + di, 0), 3), min(max(j + dj, 0), 3)]
                              for di in (-1, 0, 1) for dj in (-1, 0, 1)]
                assert any(torch.allclose(result[b, :, i, j], n, atol=1e-5) for n in neighbours)
    assert changed > 0


def test_blur_keeps_constant_frames_and_smooths_noise():
    generator = torch.Generator().manual_seed(0)
    constant = torch.full((3, 3, 16, 16), 0.3)
    assert torch.allclose(blur(constant, 1.5, generator, share=1.0), constant, atol=1e-5)
    noise = _frames(n=3)
    assert blur(noise, 1.5, generator, share=1.0).std() < 0.7 * noise.std()


def test_video_feature_net_shapes_and_round_trip(tmp_path):
    torch.manual_seed(0)
    net = VideoFeatureNet(resolution=16, frames=4, widths=(8, 16), clip_dim=8).eval()
    videos = torch.rand(3, 4, 3, 16, 16) * 2 - 1
    frames, clips = video_features(videos, net=net, batch_size=2)
    assert frames.shape == (12, 16) and clips.shape == (3, 8)
    assert torch.allclose(frames, net.frame_features(videos), atol=1e-5)
    assert torch.allclose(clips, net.clip_features(videos), atol=1e-5)
    kinds, paths, corruption = net(videos)
    assert kinds.shape == (3, 2) and paths.shape == (3, 5) and corruption.shape == (3, 3)
    net.save_pretrained(tmp_path)
    again = VideoFeatureNet.from_pretrained(tmp_path).eval()
    assert torch.equal(again.clip_features(videos), net.clip_features(videos))
    assert net.clip_features(torch.rand(3, 6, 3, 8, 8)).shape == (3, 8)  # other lengths and sizes are resized
    with pytest.raises(GenlabError, match="expects float RGB clips"):
        net.clip_features(torch.rand(3, 5, 1, 16, 16))


def test_clip_fd_sees_frame_order_that_frame_fd_cannot():
    torch.manual_seed(0)
    net = VideoFeatureNet(resolution=16, frames=4, widths=(8, 16), clip_dim=8).eval()
    ramp = torch.linspace(-0.6, 0.6, 4)[None, :, None, None, None]  # every clip brightens over time
    videos = (0.3 * torch.rand(40, 1, 3, 16, 16) + ramp).expand(-1, 4, -1, -1, -1)
    same = video_fd(videos, videos, net=net)
    assert same["frame_fd"] == pytest.approx(0, abs=1e-6) and same["clip_fd"] == pytest.approx(0, abs=1e-6)
    reversed_time = video_fd(videos, videos.flip(1), net=net)
    assert reversed_time["frame_fd"] == pytest.approx(0, abs=1e-6)  # the same frames, in another order
    assert reversed_time["clip_fd"] > 1e-4
