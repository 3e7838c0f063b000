import itertools
import math

import pytest
import torch
from scipy.stats import chisquare

from videograph.sampler import segment_sample


def _rows(segment, offset, num_segments):
    return [offset[segment == r].tolist() for r in range(num_segments)]


@pytest.mark.parametrize("method", ["floyd", "sort"])
def test_draws_are_distinct_offsets_in_range(method):
    count = torch.tensor([0, 1, 3, 7, 40, 5])
    k = torch.tensor([3, 3, 3, 3, 35, 0])
    segment, offset, num = segment_sample(count, k, generator=torch.Generator().manual_seed(0), method=method)
    assert num.tolist() == [0, 1, 3, 3, 35, 0]
    assert segment.tolist() == sorted(segment.tolist())  # grouped by segment, in order
    for r, drawn in enumerate(_rows(segment, offset, count.numel())):
        assert len(set(drawn)) == len(drawn)
        assert all(0 <= o < count[r] for o in drawn)
    # Segments not larger than their quota are taken whole, in order.
    assert _rows(segment, offset, 6)[2] == [0, 1, 2]


@pytest.mark.parametrize("method", ["floyd", "sort"])
@pytest.mark.parametrize("n,k", [(5, 2), (6, 3), (4, 1)])
def test_subsets_are_uniform(method, n, k):
    # Every k-subset of a segment of size n must come out with probability 1 / C(n, k).
    reps = 3000
    segment, offset, _ = segment_sample(torch.full((reps, ), n), k, generator=torch.Generator().manual_seed(1),
                                        method=method)
    subsets = offset.view(reps, k).sort(-1).values
    index = {s: i for i, s in enumerate(itertools.combinations(range(n), k))}
    counts = torch.bincount(torch.tensor([index[tuple(s)] for s in subsets.tolist()]), minlength=len(index))
    assert counts.sum() == reps
    assert chisquare(counts.numpy()).pvalue > 1e-3


def test_mixed_quotas_per_segment_are_uniform():
    # Per-segment quotas in one call (as the per-edge-type stage uses): marginals k_r / n_r.
    reps = 2000
    count = torch.tensor([6, 9]).repeat(reps)
    k = torch.tensor([2, 5]).repeat(reps)
    segment, offset, num = segment_sample(count, k, generator=torch.Generator().manual_seed(2))
    assert num.tolist() == [2, 5] * reps
    for r, (n, kk) in enumerate([(6, 2), (9, 5)]):
        drawn = offset[segment % 2 == r]
        hist = torch.bincount(drawn, minlength=n)
        assert math.isclose(hist.sum().item(), reps * kk)
        assert chisquare(hist.numpy()).pvalue > 1e-3


def test_with_replacement_draws_k_uniform_offsets():
    reps = 4000
    count = torch.tensor([3, 0, 5]).repeat(reps)
    segment, offset, num = segment_sample(count, 4, replace=True, generator=torch.Generator().manual_seed(3))
    assert num.tolist() == [4, 0, 4] * reps
    for r, n in [(0, 3), (2, 5)]:
        hist = torch.bincount(offset[segment % 3 == r], minlength=n)
        assert hist.numel() == n
        assert chisquare(hist.numpy()).pvalue > 1e-3


def test_minus_one_takes_whole_segments():
    count = torch.tensor([2, 0, 4])
    segment, offset, num = segment_sample(count, -1)
    assert num.tolist() == [2, 0, 4]
    assert segment.tolist() == [0, 0, 2, 2, 2, 2]
    assert offset.tolist() == [0, 1, 0, 1, 2, 3]


def test_same_generator_state_same_draws():
    count = torch.randint(0, 30, (200, ), generator=torch.Generator().manual_seed(4))
    a = segment_sample(count, 5, generator=torch.Generator().manual_seed(7))
    b = segment_sample(count, 5, generator=torch.Generator().manual_seed(7))
    c = segment_sample(count, 5, generator=torch.Generator().manual_seed(8))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[1], c[1])


@pytest.mark.parametrize("kwargs,match", [
    (dict(count=torch.tensor([1.0]), k=1), "count"),
    (dict(count=torch.tensor([3]), k=-2), "k"),
    (dict(count=torch.tensor([3]), k=1, method="reservoir"), "method"),
])
def test_bad_input_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        segment_sample(**kwargs)


def test_minus_one_takes_whole_segments_with_replacement_too():
    segment, offset, num = segment_sample(torch.tensor([2, 3]), torch.tensor([-1, 2]), replace=True,
                                          generator=torch.Generator().manual_seed(5))
    assert num.tolist() == [2, 2]
    assert offset[:2].tolist() == [0, 1]
    assert bool(((offset[2:] >= 0) & (offset[2:] < 3)).all())
