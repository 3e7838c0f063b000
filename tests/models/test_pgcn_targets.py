import math

import pytest
import torch

from videograph.models.pgcn_targets import (BACKGROUND, FOREGROUND, IGNORED, INCOMPLETE, RegressionStats,
                                            decode_regression, encode_regression, proposal_targets, sample_proposals)


def brute_category(segment, gts, duration, fg=0.7, inc_iou=0.3, inc_overlap=0.01, bg_iou=0.01, bg_cov=0.02):
    """The SSN / P-GCN rules, one proposal at a time."""
    best_iou, overlap_self, label = 0.0, 0.0, 0
    for (s, e), c in gts:
        inter = max(0.0, min(segment[1], e) - max(segment[0], s))
        iou = inter / ((segment[1] - segment[0]) + (e - s) - inter)
        if iou > best_iou:
            best_iou, label = iou, c
        overlap_self = max(overlap_self, inter / (segment[1] - segment[0]))
    if not gts:
        best_iou = 0.0
    elif best_iou == 0.0:
        label = gts[0][1]
    if best_iou > fg:
        return FOREGROUND, label
    if best_iou < inc_iou and overlap_self > inc_overlap:
        return INCOMPLETE, label
    if best_iou < bg_iou and (segment[1] - segment[0]) / duration > bg_cov:
        return BACKGROUND, label
    return IGNORED, label


def test_hand_built_categories():
    # One video of duration 100 with ground truth [10, 30] (class 2) and [60, 70] (class 1).
    gt = torch.tensor([[10.0, 30.0], [60.0, 70.0]])
    proposals = torch.tensor([
        [10.0, 30.0],     # the ground truth itself: fg
        [11.0, 30.0],     # tIoU 0.95: fg
        [15.0, 20.0],     # inside, tIoU 0.25 < 0.3, overlap 1: incomplete
        [40.0, 50.0],     # disjoint, coverage 0.1: background
        [40.0, 41.0],     # disjoint, coverage 0.01 <= 0.02: ignored
        [10.0, 25.0],     # tIoU 0.75: fg
        [10.0, 22.0],     # tIoU 0.6: ignored (between 0.3 and 0.7)
        [29.9, 59.0],     # tIoU ~0.003 < 0.01 but overlap 0.1/29.1 = 0.0034 <= 0.01: background
        [29.0, 59.0],     # overlap 1/30 > 0.01, tIoU < 0.3: incomplete (takes precedence over background)
    ])
    targets = proposal_targets(proposals, torch.zeros(9, dtype=torch.long), gt, torch.tensor([2, 1]),
                               torch.zeros(2, dtype=torch.long), torch.tensor([100.0]))
    assert targets.category.tolist() == [FOREGROUND, FOREGROUND, INCOMPLETE, BACKGROUND, IGNORED, FOREGROUND,
                                         IGNORED, BACKGROUND, INCOMPLETE]
    assert targets.label[:3].tolist() == [2, 2, 2]
    torch.testing.assert_close(targets.regression[0], torch.zeros(2))
    torch.testing.assert_close(targets.regression[1], torch.tensor([(20.0 - 20.5) / 19.0, math.log(20.0 / 19.0)]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_categories_match_a_brute_force_loop_across_videos(seed):
    g = torch.Generator().manual_seed(seed)
    num_videos, durations = 4, torch.tensor([100.0, 80.0, 120.0, 60.0])
    segments, batch, gt, gt_labels, gt_batch, gts = [], [], [], [], [], []
    for v in range(num_videos):
        starts = torch.rand(6, generator=g) * 40 + torch.arange(6) * 0.0
        own = []
        for k in range(int(torch.randint(0, 3, (1,), generator=g))):
            s = float(10 + 30 * k + torch.rand(1, generator=g) * 5)
            own.append(((s, s + 10 + float(torch.rand(1, generator=g) * 10)), int(torch.randint(1, 4, (1,),
                                                                                              generator=g))))
        gts.append(own)
        for (s, e), c in own:
            gt.append([s, e]), gt_labels.append(c), gt_batch.append(v)
        props = torch.stack([starts, starts + 1 + torch.rand(6, generator=g) * 30], 1)
        props = torch.cat([props, torch.tensor([[s, e] for (s, e), _ in own]).view(-1, 2)])
        segments.append(props)
        batch += [v] * props.size(0)
    segments = torch.cat(segments)
    targets = proposal_targets(segments, torch.tensor(batch), torch.tensor(gt).view(-1, 2), torch.tensor(gt_labels,
                               dtype=torch.long), torch.tensor(gt_batch, dtype=torch.long), durations)
    for n in range(segments.size(0)):
        v = batch[n]
        category, label = brute_category(segments[n].tolist(), gts[v], float(durations[v]))
        assert int(targets.category[n]) == category
        if category != IGNORED and gts[v]:
            assert int(targets.label[n]) == label


@pytest.mark.parametrize("seed", [0, 3])
def test_regression_targets_invert(seed):
    g = torch.Generator().manual_seed(seed)
    start = torch.rand(50, generator=g) * 100
    segments = torch.stack([start, start + 0.5 + torch.rand(50, generator=g) * 20], 1)
    start = torch.rand(50, generator=g) * 100
    targets = torch.stack([start, start + 0.5 + torch.rand(50, generator=g) * 20], 1)
    offsets = encode_regression(segments, targets)
    torch.testing.assert_close(decode_regression(segments, offsets), targets, rtol=1e-5, atol=1e-4)
    stats = RegressionStats(offsets.mean(0), offsets.std(0))
    torch.testing.assert_close(stats.denormalise(stats.normalise(offsets)), offsets)


def test_regression_stats_are_the_foreground_mean_and_std():
    gt = torch.tensor([[10.0, 30.0]])
    proposals = torch.tensor([[10.0, 30.0], [11.0, 30.0], [10.0, 28.0], [50.0, 60.0]])
    targets = proposal_targets(proposals, torch.zeros(4, dtype=torch.long), gt, torch.tensor([1]),
                               torch.zeros(1, dtype=torch.long), torch.tensor([100.0]))
    stats = RegressionStats.fit(targets)
    fg = torch.stack([encode_regression(proposals[i:i + 1], gt)[0] for i in range(3)])
    torch.testing.assert_close(stats.mean, fg.mean(0))
    torch.testing.assert_close(stats.std, fg.std(0, unbiased=False))


def _pools(category, batch):
    return {(v, k): [n for n in range(len(category)) if batch[n] == v and category[n] == k]
            for v in set(batch) for k in (FOREGROUND, INCOMPLETE, BACKGROUND)}


def test_sampler_ratio_and_fallbacks():
    # Video 0 has every category, video 1 no incomplete, video 2 no background, video 3 foreground only.
    category = [0, 1, 1, 2, -1, 0, 0, 2, 0, 1, 0, -1]
    batch = [0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 3]
    cat, bat = torch.tensor(category), torch.tensor(batch)
    pools = _pools(category, batch)
    counts = torch.zeros(12)
    for seed in range(30):
        index, kind = sample_proposals(cat, bat, 4, generator=torch.Generator().manual_seed(seed))
        assert index.shape == (32,) and kind.shape == (32,)
        index, kind = index.view(4, 8), kind.view(4, 8)
        for v in range(4):
            expected = [FOREGROUND] + [INCOMPLETE] * 6 + [BACKGROUND]
            expected = [k if pools[(v, k)] else FOREGROUND for k in expected]     # the fall-back
            assert kind[v].tolist() == expected
            for n, k in zip(index[v].tolist(), kind[v].tolist()):
                assert n in pools[(v, k)]
        counts += torch.bincount(index.view(-1), minlength=12)
    assert counts[4] == 0 and counts[11] == 0                # ignored proposals are never drawn
    # Draws are uniform within a pool: video 0's two incomplete proposals share 6 * 30 draws.
    assert 60 < counts[1] < 120 and 60 < counts[2] < 120


def test_sampler_is_seeded_and_custom_ratio():
    cat, bat = torch.tensor([0, 1, 1, 2, 0, 2]), torch.tensor([0, 0, 0, 0, 1, 1])
    a = sample_proposals(cat, bat, 2, ratio=(2, 1, 3), generator=torch.Generator().manual_seed(4))
    b = sample_proposals(cat, bat, 2, ratio=(2, 1, 3), generator=torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and a[0].numel() == 12
    assert a[1].view(2, 6)[1].tolist() == [FOREGROUND] * 3 + [BACKGROUND] * 3


def test_sampler_takes_each_videos_numbers_from_uniform():
    # Each video's row of `uniform` decides its slots alone: the draws of video v equal its draws alone
    # (the same category list, one video) with that row.
    category = [0, 1, 1, 2, -1, 0, 0, 2, 0, 1, 0, -1]
    batch = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 3])
    cat = torch.tensor(category)
    uniform = torch.rand(4, 8, generator=torch.Generator().manual_seed(3))
    index, kind = sample_proposals(cat, batch, 4, uniform=uniform)
    for v in range(4):
        mine = (batch == v).nonzero().view(-1)
        alone, alone_kind = sample_proposals(cat[mine], torch.zeros(mine.numel(), dtype=torch.long), 1,
                                             uniform=uniform[v:v + 1])
        assert torch.equal(index.view(4, 8)[v], mine[alone]) and torch.equal(kind.view(4, 8)[v], alone_kind)
    # a generator draws exactly that table
    drawn = sample_proposals(cat, batch, 4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(drawn[0], index)
    with pytest.raises(ValueError, match="'uniform' must be a tensor of shape \\(4, 8\\)"):
        sample_proposals(cat, batch, 4, uniform=uniform[:, :7])


@pytest.mark.parametrize("kwargs,match", [
    (dict(category=torch.tensor([1, 2]), batch=torch.tensor([0, 0])), "no foreground"),
    (dict(category=torch.tensor([0]), batch=torch.tensor([0]), ratio=(0, 6, 1)), "ratio"),
    (dict(category=torch.tensor([0, 1]), batch=torch.tensor([0])), "one entry"),
])
def test_sampler_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample_proposals(num_videos=1, **kwargs)


def test_bad_segments_name_the_argument():
    with pytest.raises(ValueError, match="gt_segments"):
        proposal_targets(torch.tensor([[0.0, 1.0]]), torch.zeros(1, dtype=torch.long), torch.tensor([[2.0, 1.0]]),
                         torch.tensor([1]), torch.zeros(1, dtype=torch.long), torch.tensor([10.0]))
