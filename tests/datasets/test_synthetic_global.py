import pytest
import torch

from videograph.datasets import HFLIP_LABEL, PAN_CLASSES, SyntheticCameraPan

KW = dict(num_frames=4, height=32, width=32, band=7, object_size=6, object_jitter=2)


def _shift(a, b, max_shift=3):
    """The horizontal shift s minimising |b[x] - a[x - s]| (brute force over s)."""
    errors = {s: float((b[..., max_shift:-max_shift] - a.roll(s, -1)[..., max_shift:-max_shift]).abs().mean())
              for s in range(-max_shift, max_shift + 1)}
    return min(errors, key=errors.get)


def test_motions_match_the_labels_and_the_pixels():
    data = SyntheticCameraPan(64, seed=3, noise=0.0, **KW)
    videos, labels = data.tensors()
    assert videos.shape == (64, 3, 4, 32, 32) and videos.min() >= 0 and videos.max() <= 1
    # Balanced: with_pan / against_pan 1/4 each, the four one-motion classes 1/8 each.
    assert torch.bincount(labels, minlength=6).tolist() == [16, 16, 8, 8, 8, 8]
    pan, obj = data.v_pan.sign(), data.v_obj.sign()
    expected = torch.where((pan != 0) & (obj != 0), (pan != obj).long(),
                           torch.where(pan == 0, 2 + (obj > 0).long(), 4 + (pan > 0).long()))
    assert torch.equal(labels, expected)
    for i in range(64):
        top = videos[i, :, :, :7]                           # the scenery band, [3, T, 7, W]
        assert _shift(top[:, 0], top[:, 1]) == int(data.v_pan[i])
        middle = (videos[i, :, :, 7:25] - 0.5).abs().sum((0, 2))          # [T, W]: the object's columns
        cols = torch.arange(32.0)
        centre = (middle * cols).sum(-1) / middle.sum(-1)
        assert torch.allclose(centre[1:] - centre[:-1], torch.full((3,), float(data.v_obj[i])), atol=1e-4)


def test_hflip_label_mirrors_the_directions():
    assert len(PAN_CLASSES) == 6
    for label, name in enumerate(PAN_CLASSES):
        mirrored = PAN_CLASSES[int(HFLIP_LABEL[label])]
        assert mirrored == name.replace("left", "@").replace("right", "left").replace("@", "right")


def test_seeded_and_splits_differ():
    a, b = SyntheticCameraPan(8, seed=1, **KW), SyntheticCameraPan(8, seed=1, **KW)
    assert torch.equal(a.videos, b.videos) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.videos, SyntheticCameraPan(8, seed=1, split="test", **KW).videos)
    assert not torch.equal(a.videos, SyntheticCameraPan(8, seed=2, **KW).videos)
    video, label = a[3]
    assert torch.equal(video, a.videos[3]) and label == int(a.labels[3]) and len(a) == 8


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        SyntheticCameraPan(4, split="dev")
    with pytest.raises(ValueError, match="height"):
        SyntheticCameraPan(4, height=20, band=8)
    with pytest.raises(ValueError, match="num_videos"):
        SyntheticCameraPan(0)
