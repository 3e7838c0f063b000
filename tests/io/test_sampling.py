import math

import pytest
import torch

from videograph.io import clip_indices

CASES = [  # (num_frames, num_clips, clip_len, frame_interval)
    (300, 4, 16, 1), (300, 4, 16, 2), (100, 3, 8, 4), (64, 1, 16, 1), (17, 4, 4, 1), (16, 1, 16, 1),
    (10, 4, 4, 1), (10, 8, 2, 1), (5, 8, 4, 2), (3, 2, 16, 1), (1, 3, 5, 3), (40, 5, 8, 5), (7, 7, 1, 1),
]


def repeat_last(starts, num_frames, clip_len, frame_interval):
    """Rows start + j * interval; an index past the end becomes the row's last index inside the video."""
    rows = []
    for s in starts:
        row = [s + j * frame_interval for j in range(clip_len)]
        inside = [i for i in row if i < num_frames]
        rows.append([i if i < num_frames else max(inside) for i in row])
    return rows


def branch(num_frames, num_clips, clip_len, frame_interval):
    """Which case of MMAction2's _get_train_clips applies, restated from its documentation."""
    span = clip_len * frame_interval
    avg = (num_frames - span + 1) // num_clips
    if avg > 0:
        return "segments", avg
    if num_frames > max(num_clips, span):
        return "sorted_random", None
    if avg == 0:
        return "spread", (num_frames - span + 1) / num_clips
    return "zeros", None


@pytest.mark.parametrize("case", CASES)
def test_uniform_is_mmaction2_test_clips(case):
    F, n, L, s = case
    max_offset = max(F - ((L - 1) * s + 1), 0)
    if n > 1:  # evenly from 0 to max_offset, numpy's round-half-to-even
        starts = [round(i * max_offset / (n - 1)) for i in range(n)]
    else:
        starts = [max_offset // 2]
    expected = repeat_last(starts, F, L, s)
    got = clip_indices(F, n, L, frame_interval=s, mode="uniform")
    assert got.dtype == torch.long and got.shape == (n, L)
    assert got.tolist() == expected
    assert torch.equal(got, clip_indices(F, n, L, frame_interval=s, mode="uniform"))  # deterministic


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("mode", ["segment", "uniform", "random"])
def test_clip_structure(case, mode, generator):
    F, n, L, s = case
    for _ in range(20):
        got = clip_indices(F, n, L, frame_interval=s, mode=mode, generator=generator)
        assert got.shape == (n, L) and got.dtype == torch.long
        assert got.min() >= 0 and got.max() < F
        starts = got[:, 0]
        assert (starts[1:] >= starts[:-1]).all()  # clips in time order
        assert got.tolist() == repeat_last(starts.tolist(), F, L, s)  # interval apart, clamped


@pytest.mark.parametrize("case", CASES)
def test_segment_is_mmaction2_train_clips(case):
    F, n, L, s = case
    kind, param = branch(F, n, L, s)
    draws = torch.stack([clip_indices(F, n, L, frame_interval=s, mode="segment",
                                      generator=torch.Generator().manual_seed(seed))[:, 0]
                         for seed in range(300)])  # [300, n] starts
    if kind == "segments":  # clip i starts uniformly in [i * avg, (i + 1) * avg): each value is hit
        for i in range(n):
            assert set(draws[:, i].tolist()) <= set(range(i * param, (i + 1) * param))
            if param <= 20:
                assert set(draws[:, i].tolist()) == set(range(i * param, (i + 1) * param))
    elif kind == "sorted_random":
        assert draws.min() >= 0 and draws.max() <= F - L * s
        assert len(set(draws.flatten().tolist())) == F - L * s + 1  # the whole range is reachable
    elif kind == "spread":
        expected = [round(i * param) for i in range(n)]
        assert (draws == torch.tensor(expected)).all()
    else:
        assert (draws == 0).all()


def test_segment_covers_each_segment_uniformly():
    F, n, L = 1000, 4, 10  # avg = 247: segment i is [247 i, 247 (i + 1))
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([clip_indices(F, n, L, generator=g)[:, 0] for _ in range(4000)])
    rel = draws - torch.arange(n) * 247
    assert rel.min() >= 0 and rel.max() < 247
    # uniform on [0, 247): mean 123, and each quarter holds ~1/4 of the draws
    assert abs(rel.double().mean().item() - 123) < 4
    quarters = torch.bincount((rel * 4 // 247).flatten(), minlength=4).double() / rel.numel()
    assert (quarters - 0.25).abs().max() < 0.02


def test_random_mode_is_independent_sorted_uniform():
    F, n, L = 50, 3, 5
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([clip_indices(F, n, L, mode="random", generator=g)[:, 0] for _ in range(3000)])
    assert draws.min() == 0 and draws.max() == F - L
    # the order statistics of 3 uniforms on 46 values: E[min] = 46 * 1/4 - 1/2 roughly
    expected_min = sum(((F - L + 1 - k) / (F - L + 1)) ** n for k in range(1, F - L + 1))
    assert abs(draws[:, 0].double().mean().item() - expected_min) < 1.0


@pytest.mark.parametrize("mode", ["segment", "random"])
def test_generator_makes_it_reproducible(mode):
    a = clip_indices(500, 4, 16, mode=mode, generator=torch.Generator().manual_seed(7))
    b = clip_indices(500, 4, 16, mode=mode, generator=torch.Generator().manual_seed(7))
    c = clip_indices(500, 4, 16, mode=mode, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_clip_longer_than_video_is_clamped():
    got = clip_indices(5, 2, 4, frame_interval=2, mode="uniform")
    assert got.tolist() == [[0, 2, 4, 4], [0, 2, 4, 4]]
    got = clip_indices(3, 1, 6, mode="segment", generator=torch.Generator().manual_seed(0))
    assert got.tolist() == [[0, 1, 2, 2, 2, 2]]


@pytest.mark.parametrize("kwargs, error, match", [
    ({"num_frames": 0}, ValueError, "num_frames"),
    ({"num_clips": 0}, ValueError, "num_clips"),
    ({"clip_len": -1}, ValueError, "clip_len"),
    ({"frame_interval": 0}, ValueError, "frame_interval"),
    ({"num_frames": 10.0}, TypeError, "num_frames"),
    ({"num_frames": True}, TypeError, "num_frames"),
    ({"mode": "dense"}, ValueError, "mode"),
    ({"generator": 0}, TypeError, "generator"),
])
def test_bad_input(kwargs, error, match):
    args = {"num_frames": 100, "num_clips": 2, "clip_len": 8, **kwargs}
    with pytest.raises(error, match=match):
        clip_indices(args.pop("num_frames"), args.pop("num_clips"), args.pop("clip_len"), **args)


def test_accepts_integer_like_sizes():
    import numpy as np
    got = clip_indices(np.int64(100), torch.tensor(2).item(), 8, mode="uniform")
    assert got.shape == (2, 8) and math.isclose(got[1, 0].item(), 92)
