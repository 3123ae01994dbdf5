"""Writing images and videos: a write that fails or loses frames is an error and leaves no file behind."""

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from genlab.core import images
from genlab.core.images import save_image_grid, save_video
from genlab.errors import GenlabError


def _frames(count: int = 5) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (count, 8, 8, 3), dtype=np.uint8)


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_a_written_video_holds_every_frame(tmp_path, suffix):
    path = save_video(_frames(), tmp_path / f"clip{suffix}", fps=4)
    assert len(iio.imread(path, index=None)) == 5
    assert [p.name for p in tmp_path.iterdir()] == [f"clip{suffix}"]  # no temporary file left


def test_a_gif_of_still_frames_is_written(tmp_path):
    still = np.repeat(_frames(1), 4, axis=0)  # the GIF writer merges identical frames: not a lost frame
    assert save_video(still, tmp_path / "still.gif").is_file()


def test_a_write_that_loses_frames_is_an_error_and_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "clip.mp4"
    target.write_bytes(b"the user's earlier video")
    real_write = iio.imwrite
    monkeypatch.setattr(images.iio, "imwrite", lambda path, frames, **kw: real_write(path, frames[:2], **kw))
    with pytest.raises(GenlabError, match="kept 2 of 5 frames"):
        save_video(_frames(), target)
    assert target.read_bytes() == b"the user's earlier video"
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


def test_a_failing_writer_is_an_error_naming_the_file(tmp_path, monkeypatch):
    def full_disk(path, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(images.iio, "imwrite", full_disk)
    with pytest.raises(GenlabError, match="cannot write .*clip.gif: .*No space left"):
        save_video(_frames(), tmp_path / "clip.gif")
    with pytest.raises(GenlabError, match="cannot write .*grid.png"):
        save_image_grid(torch.zeros(4, 3, 8, 8), tmp_path / "grid.png")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("name", "fps", "message"), [
    ("clip.txt", 4, "must end in .mp4 or .gif"),
    ("clip.mp4", 0, "frame rate > 0"),
    ("clip.gif", float("nan"), "frame rate > 0"),
])
def test_bad_video_targets_are_errors(tmp_path, name, fps, message):
    with pytest.raises(GenlabError, match=message):
        save_video(_frames(), tmp_path / name, fps=fps)
    assert not (tmp_path / name).exists()
