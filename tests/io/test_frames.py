"""FrameFolder on Something-Else's real frame folders, against PIL as the independent decoder."""
import math
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from videograph.io import FrameFolder

VIDEOS = ("57082", "2", "13201", "151201")


def folder(shared_data, video):
    return os.path.join(shared_data, "ssv2", "something_else", "annotated_videos", video)


def pil_frames(path):
    names = sorted(n for n in os.listdir(path) if n.endswith(".jpg"))
    return torch.from_numpy(np.stack([np.asarray(Image.open(os.path.join(path, n)).convert("RGB")) for n in names]))


@pytest.mark.parametrize("video", VIDEOS)
def test_frames_equal_pil(shared_data, video):
    path = folder(shared_data, video)
    truth = pil_frames(path)
    with FrameFolder(path, fps=12) as frames:
        assert len(frames) == frames.metadata.num_frames == truth.size(0) == len(os.listdir(path))
        assert (frames.metadata.height, frames.metadata.width) == truth.shape[1:3]
        assert frames.metadata.fps == 12.0 and frames.metadata.duration == pytest.approx(truth.size(0) / 12)
        assert frames.metadata.codec == "jpeg" and frames.start_index == 1
        assert torch.equal(frames[0], truth[0]) and torch.equal(frames[-1], truth[-1])
        assert torch.equal(frames[1:9:3], truth[1:9:3])
        order = torch.randperm(truth.size(0), generator=torch.Generator().manual_seed(0))[:7]
        order = torch.cat([order, order[:2]])                               # repeats too
        got = frames.get_frames_at(order)
        assert got.dtype == torch.uint8 and torch.equal(got, truth[order])
        assert frames.get_frames_at([]).shape == (0, *truth.shape[1:])


def test_numbering_start_and_fps(shared_data, tmp_path):
    source = folder(shared_data, "151201")
    for i in range(5):                                                      # numbered 7..11, another template
        shutil.copy(os.path.join(source, f"{i + 1:04d}.jpg"), tmp_path / f"img_{i + 7:05d}.JPG")
    (tmp_path / "notes.txt").write_text("not a frame")
    frames = FrameFolder(tmp_path)
    assert frames.start_index == 7 and len(frames) == 5
    assert math.isnan(frames.metadata.fps) and math.isnan(frames.metadata.duration)
    assert torch.equal(frames[2], pil_frames(source)[2])
    assert "start_index=7" in repr(frames)


def test_bad_folders(shared_data, tmp_path):
    source = folder(shared_data, "151201")
    with pytest.raises(FileNotFoundError, match="missing"):
        FrameFolder(tmp_path / "missing")
    with pytest.raises(ValueError, match="not a folder"):
        FrameFolder(os.path.join(source, "0001.jpg"))
    with pytest.raises(ValueError, match="holds no image"):
        FrameFolder(tmp_path)
    with pytest.raises(ValueError, match="fps"):
        FrameFolder(source, fps=0)
    gap = tmp_path / "gap"
    gap.mkdir()
    for n in (1, 2, 4):
        shutil.copy(os.path.join(source, f"{n:04d}.jpg"), gap / f"{n:04d}.jpg")
    with pytest.raises(ValueError, match="lacks frame 3"):
        FrameFolder(gap)
    shutil.copy(os.path.join(source, "0003.jpg"), gap / "3.jpg")
    shutil.copy(os.path.join(source, "0003.jpg"), gap / "0003.jpg")
    with pytest.raises(ValueError, match="both frame 3"):
        FrameFolder(gap)
    unnamed = tmp_path / "unnamed"
    unnamed.mkdir()
    shutil.copy(os.path.join(source, "0001.jpg"), unnamed / "first.jpg")
    with pytest.raises(ValueError, match="frame number"):
        FrameFolder(unnamed)


def test_bad_frames(shared_data, tmp_path):
    source = folder(shared_data, "151201")
    shutil.copy(os.path.join(source, "0001.jpg"), tmp_path / "0001.jpg")
    Image.open(os.path.join(source, "0002.jpg")).resize((64, 48)).save(tmp_path / "0002.jpg")
    (tmp_path / "0003.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    frames = FrameFolder(tmp_path)
    assert frames[0].shape == (240, 400, 3)
    with pytest.raises(ValueError, match="0002.jpg' is 64x48"):
        frames[1]
    with pytest.raises(ValueError, match="0003.jpg' could not be decoded"):
        frames.get_frames_at([0, 2])
    with pytest.raises(IndexError, match="out of range"):
        frames.get_frames_at([3])
    with pytest.raises(IndexError, match="out of range"):
        frames[-4]
    with pytest.raises(TypeError, match="integers"):
        frames.get_frames_at(torch.tensor([0.0]))
    with pytest.raises(TypeError, match="int or a slice"):
        frames["0"]
