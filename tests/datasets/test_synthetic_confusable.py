import pytest
import torch

from videograph.datasets import SyntheticConfusable, confusable_classes


def test_classes_groups_and_balance():
    names, groups = confusable_classes()
    ds = SyntheticConfusable(36, seed=3)
    assert ds.classes == names and ds.num_classes == 12 and groups == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert torch.equal(torch.bincount(ds.labels, minlength=12), torch.full((12,), 3))
    assert ds.confusable.tolist() == [True] * 9 + [False] * 3


def test_seeded_and_splits_disjoint():
    a, b = SyntheticConfusable(4, seed=1), SyntheticConfusable(4, seed=1)
    video, label = a[2]
    assert video.shape == (3, 8, 32, 32) and video.dtype == torch.float32 and 0 <= video.min() <= video.max() <= 1
    assert torch.equal(video, b[2][0]) and label == b[2][1]
    assert not torch.equal(video, SyntheticConfusable(4, seed=1, split="test")[2][0])
    videos, labels = a.tensors()
    assert videos.shape == (4, 3, 8, 32, 32) and torch.equal(labels, a.labels)


@pytest.mark.parametrize("index", range(6))
def test_confusable_classes_differ_only_in_the_mark(index):
    ds = SyntheticConfusable(12, seed=0)
    position = [i for i in range(12) if int(ds.labels[i]) < 9][index]
    label = int(ds.labels[position])
    video, _ = ds[position]
    ds.labels[position] = 3 * (label // 3) + (label + 1) % 3      # the next class of its group
    other, _ = ds[position]
    changed = (video != other).any(0)                              # [T, H, W]
    per_frame = changed.flatten(1).sum(1)
    assert bool((per_frame > 0).all()) and int(per_frame.max()) <= 2 * 2 * 2   # two 2x2 marks move


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_videos"):
        SyntheticConfusable(0)
    with pytest.raises(ValueError, match="split"):
        SyntheticConfusable(3, split="dev")
    with pytest.raises(ValueError, match="easy_motions"):
        SyntheticConfusable(3, easy_motions=("spin",))
    with pytest.raises(IndexError):
        SyntheticConfusable(3)[3]
