import numpy as np
import pytest
import torch
from torchvision.ops import nms as box_nms

from videograph.eval import TemporalNMS, soft_nms, temporal_nms

from .oracles import batched_nms_loop, nms_loop, soft_nms_loop, soft_nms_numpy


def random_segments(n, generator, *, span=50.0, length=10.0, levels=5, dtype=torch.float64):
    start = torch.rand(n, generator=generator, dtype=dtype) * span
    segments = torch.stack([start, start + torch.rand(n, generator=generator, dtype=dtype) * length], 1)
    # few score levels: many exact ties
    scores = (torch.rand(n, generator=generator, dtype=dtype) * levels).round() / levels
    return segments, scores


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7, 1.0])
@pytest.mark.parametrize("seed", range(4))
def test_matches_per_group_loop(threshold, seed):
    generator = torch.Generator().manual_seed(seed)
    n = 400
    segments, scores = random_segments(n, generator)
    classes = torch.randint(0, 4, (n,), generator=generator)
    batch = torch.randint(0, 5, (n,), generator=generator)
    kept = temporal_nms(segments, scores, threshold, classes=classes, batch=batch)
    groups = (batch * 4 + classes).numpy()
    expected = batched_nms_loop(segments.numpy(), scores.numpy(), threshold, groups)
    assert kept.tolist() == expected.tolist()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_single_group_equals_torchvision_box_nms(dtype, generator):
    segments, scores = random_segments(300, generator, dtype=dtype, levels=1000)
    scores = scores + torch.arange(300, dtype=dtype) * 1e-7                 # distinct: torchvision's order is defined
    boxes = torch.stack([segments[:, 0], torch.zeros(300, dtype=dtype), segments[:, 1], torch.ones(300, dtype=dtype)], 1)
    expected = box_nms(boxes.double(), scores.double(), 0.4)
    assert temporal_nms(segments, scores, 0.4).tolist() == expected.tolist()


def test_threshold_is_strict():
    # tIoU([0, 2], [1, 2]) = 1 / 2 exactly: suppressed only when the threshold is below it
    segments = torch.tensor([[0.0, 2.0], [1.0, 2.0]])
    scores = torch.tensor([0.9, 0.8])
    assert temporal_nms(segments, scores, 0.5).tolist() == [0, 1]
    assert temporal_nms(segments, scores, 0.49).tolist() == [0]


def test_ties_keep_the_lower_index():
    segments = torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [5.0, 6.0]])
    scores = torch.tensor([0.5, 0.7, 0.7, 0.7])
    assert temporal_nms(segments, scores, 0.5).tolist() == [1, 3]


def test_groups_never_suppress_each_other():
    segments = torch.tensor([[0.0, 10.0]]).repeat(6, 1)
    scores = torch.linspace(1, 0.5, 6)
    classes = torch.tensor([0, 0, 1, 1, 0, 1])
    batch = torch.tensor([0, 0, 0, 0, 1, 1])
    # one survivor per (batch, class): the best of indices {0, 1}, {2, 3}, {4}, {5}
    assert temporal_nms(segments, scores, 0.5, classes=classes, batch=batch).tolist() == [0, 2, 4, 5]
    assert temporal_nms(segments, scores, 0.5, classes=classes).tolist() == [0, 2]
    assert temporal_nms(segments, scores, 0.5).tolist() == [0]


def test_chain_of_suppressions():
    # a suppresses b, b (suppressed) must not suppress c: greedy keeps a and c
    segments = torch.tensor([[0.0, 10.0], [4.0, 14.0], [8.0, 18.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert temporal_nms(segments, scores, 0.3).tolist() == [0, 2]


def test_large_groups_go_through_box_nms(generator):
    n = 5000                                             # two groups of about 2500 > the block limit
    segments, scores = random_segments(n, generator, span=2000.0, length=60.0, levels=50)
    classes = torch.randint(0, 2, (n,), generator=generator)
    kept = temporal_nms(segments, scores, 0.5, classes=classes)
    expected = batched_nms_loop(segments.numpy(), scores.numpy(), 0.5, classes.numpy())
    assert kept.tolist() == expected.tolist()


def test_zero_length_segments_overlap_nothing():
    segments = torch.tensor([[3.0, 3.0], [3.0, 3.0], [2.0, 4.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert temporal_nms(segments, scores, 0.0).tolist() == [0, 1, 2]
    assert nms_loop(segments.numpy(), scores.numpy(), 0.0).tolist() == [0, 1, 2]


def test_empty_and_module():
    assert temporal_nms(torch.zeros(0, 2), torch.zeros(0), 0.5).tolist() == []
    module = TemporalNMS(0.4)
    assert repr(module) == "TemporalNMS(iou_threshold=0.4)"
    segments = torch.tensor([[0.0, 1.0], [0.1, 1.0]])
    assert module(segments, torch.tensor([0.2, 0.3])).tolist() == [1]


@pytest.mark.parametrize("bad, match", [
    (dict(scores=torch.tensor([0.5, float("nan")])), "finite"),
    (dict(segments=torch.tensor([[0.0, 1.0], [2.0, 1.0]])), "start <= end"),
    (dict(segments=torch.zeros(2, 3)), r"\[N, 2\]"),
    (dict(scores=torch.zeros(3)), "shape"),
    (dict(classes=torch.tensor([0, -1])), "non-negative"),
    (dict(batch=torch.tensor([0.0, 1.0])), "integer"),
])
def test_bad_input(bad, match):
    args = dict(segments=torch.tensor([[0.0, 1.0], [0.5, 1.5]]), scores=torch.tensor([0.5, 0.4]), classes=None,
                batch=None)
    args.update(bad)
    with pytest.raises((ValueError, TypeError), match=match):
        temporal_nms(args["segments"], args["scores"], 0.5, classes=args["classes"], batch=args["batch"])


@pytest.mark.parametrize("sigma, iou_threshold, score_threshold, top_k", [
    (0.5, 0.0, 0.001, None), (0.4, 0.0, 0.0, 10), (0.5, 0.3, 0.05, 5), (0.1, 0.0, 0.2, None),
    (1e-4, 0.0, 0.0, None),     # decays underflow to 0: selected segments (-inf) must not turn into nan
    (0.5, 0.9, 0.001, None)])
@pytest.mark.parametrize("seed, integer", [(0, False), (1, False), (2, True)])
def test_soft_nms_matches_loop(sigma, iou_threshold, score_threshold, top_k, seed, integer):
    generator = torch.Generator().manual_seed(seed)
    n = 150
    segments, scores = random_segments(n, generator, levels=20)
    if integer:  # equal starts and ends, touching and zero-length segments
        segments = segments.round()
    classes = torch.randint(0, 3, (n,), generator=generator)
    batch = torch.randint(0, 2, (n,), generator=generator)
    index, new_scores = soft_nms(segments, scores, sigma=sigma, iou_threshold=iou_threshold,
                                 score_threshold=score_threshold, top_k=top_k, classes=classes, batch=batch)
    groups = (batch * 3 + classes).numpy()
    expected = []
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        out = soft_nms_loop(segments.numpy()[members], scores.numpy()[members], sigma, iou_threshold,
                            score_threshold, top_k)
        expected += [(int(members[i]), s) for i, s in out]
    got = dict(zip(index.tolist(), new_scores.tolist()))
    assert sorted(got) == sorted(i for i, _ in expected)
    for i, s in expected:
        assert got[i] == pytest.approx(s, abs=1e-12)
    assert (new_scores[:-1] >= new_scores[1:]).all()
    # the vectorised-per-step loop of the benchmark agrees with the one-at-a-time loop
    members = np.flatnonzero(groups == groups[0])
    args = (segments.numpy()[members], scores.numpy()[members], sigma, iou_threshold, score_threshold, top_k)
    assert [i for i, _ in soft_nms_numpy(*args)] == [i for i, _ in soft_nms_loop(*args)]


def test_soft_nms_decays_by_the_gaussian():
    segments = torch.tensor([[0.0, 10.0], [5.0, 15.0], [30.0, 40.0]], dtype=torch.float64)
    scores = torch.tensor([0.9, 0.8, 0.7], dtype=torch.float64)
    index, new_scores = soft_nms(segments, scores, sigma=0.5)
    iou = 5 / 15
    assert index.tolist() == [0, 2, 1]
    assert new_scores.tolist() == pytest.approx([0.9, 0.7, 0.8 * np.exp(-iou ** 2 / 0.5)])


def test_soft_nms_bad_parameters():
    segments, scores = torch.tensor([[0.0, 1.0]]), torch.tensor([0.5])
    with pytest.raises(ValueError, match="sigma"):
        soft_nms(segments, scores, sigma=0.0)
    with pytest.raises(ValueError, match="top_k"):
        soft_nms(segments, scores, top_k=0)
