import math

import pytest
import torch

from videograph import Proposals, build_graph
from videograph.graph import segment_distance, segment_iou


def random_proposals(generator, n=40, features=True, integer=False):
    start = torch.rand(n, generator=generator) * 100
    length = 1 + torch.rand(n, generator=generator) * 30
    segments = torch.stack([start, start + length], 1)
    if integer:
        segments = segments.round()
    x = torch.randn(n, 8, generator=generator) if features else None
    return Proposals(segments.double(), x)


def brute_force_edges(segments, theta_ctx=0.7, theta_sur=1.0, official=False):
    """The paper's definitions (or the reference code's) over all pairs, one pair at a time."""
    one = 1.0 if official else 0.0
    segs = segments.tolist()
    ctx, sur = {}, {}
    for i, (si, ei) in enumerate(segs):
        for j, (sj, ej) in enumerate(segs):
            if i == j:
                continue
            inter = max(0.0, min(ei, ej) - max(si, sj) + one)
            union = (ei - si + one) + (ej - sj + one) - inter
            tiou = inter / union
            span = max(ei, ej) - min(si, sj) + one
            d = abs((si + ei) / 2 - (sj + ej) / 2) / (span if official else union)
            if tiou > theta_ctx:
                ctx[(j, i)] = tiou
            if tiou <= 0 and d < theta_sur:
                sur[(j, i)] = d
    return ctx, sur


def best_per_target(edges, k, descending, segments):
    """Each target's k best sources; ties go to the earlier start, then the smaller index."""
    by_target = {}
    for j, i in edges:
        by_target.setdefault(i, []).append(j)
    kept = set()
    for target, sources in by_target.items():
        sources = sorted(sources, key=lambda j: (-edges[(j, target)] if descending else edges[(j, target)],
                                                 float(segments[j, 0]), j))
        kept |= {(j, target) for j in sources[:k]}
    return kept


def as_set(edge_index):
    return set(map(tuple, edge_index.t().tolist()))


def test_edges_match_the_paper_definitions(generator):
    video = random_proposals(generator)
    data = build_graph(video)
    ctx, sur = brute_force_edges(video.segments)
    assert as_set(data.contextual_edge_index) == set(ctx) and len(ctx) > 0
    assert as_set(data.surrounding_edge_index) == set(sur) and len(sur) > 0
    assert data.contextual_edge_index.size(1) == len(ctx)


@pytest.mark.parametrize("theta_ctx, theta_sur", [(0.5, 0.8), (0.9, 2.0), (0.0, 0.6)])
def test_thresholds(generator, theta_ctx, theta_sur):
    video = random_proposals(generator)
    data = build_graph(video, theta_ctx=theta_ctx, theta_sur=theta_sur)
    ctx, sur = brute_force_edges(video.segments, theta_ctx, theta_sur)
    assert as_set(data.contextual_edge_index) == set(ctx)
    assert as_set(data.surrounding_edge_index) == set(sur)


def test_edges_are_symmetric_without_self_loops(generator):
    data = build_graph(random_proposals(generator))
    for kind in ("contextual", "surrounding"):
        edges = as_set(data[f"{kind}_edge_index"])
        assert edges == {(j, i) for i, j in edges}
        assert all(i != j for i, j in edges)


def test_weights_are_feature_cosines(generator):
    video = random_proposals(generator)
    data = build_graph(video)
    for (j, i), w in zip(data.edge_index.t().tolist(), data.edge_weight.tolist()):
        a, b = video.features[j], video.features[i]
        assert math.isclose(w, float(a @ b / (a.norm() * b.norm())), rel_tol=1e-5, abs_tol=1e-6)
    without = build_graph(random_proposals(generator, features=False))
    assert torch.equal(without.edge_weight, torch.ones_like(without.edge_weight))


@pytest.mark.parametrize("max_contextual, max_surrounding", [(1, 1), (3, 2), (8, 2)])
def test_caps_keep_the_best_sources_per_target(generator, max_contextual, max_surrounding):
    video = random_proposals(generator, n=60)
    data = build_graph(video, max_contextual=max_contextual, max_surrounding=max_surrounding)
    ctx, sur = brute_force_edges(video.segments)
    assert as_set(data.contextual_edge_index) == best_per_target(ctx, max_contextual, True, video.segments)
    assert as_set(data.surrounding_edge_index) == best_per_target(sur, max_surrounding, False, video.segments)


def test_official_mode_matches_the_reference_definitions(generator):
    video = random_proposals(generator, n=60, integer=True)
    data = build_graph(video, pgcn_official=True)
    ctx, sur = brute_force_edges(video.segments, official=True)
    assert as_set(data.contextual_edge_index) == best_per_target(ctx, 8, True, video.segments)
    assert as_set(data.surrounding_edge_index) == best_per_target(sur, 2, False, video.segments)


def test_official_iou_counts_both_end_frames():
    a = torch.tensor([[0.0, 4.0]])
    b = torch.tensor([[4.0, 9.0]])  # shares frame 4 with a
    assert segment_iou(a, b).item() == 0.0
    assert segment_iou(a, b, frame_inclusive=True).item() == pytest.approx(1 / 10)
    assert segment_distance(a, b, union="span").item() == pytest.approx(4.5 / 9)
    assert segment_distance(a, b).item() == pytest.approx(4.5 / 9)


def test_ties_prefer_the_earlier_start_then_the_smaller_index():
    # Targets 0 and 1 have equal-tIoU contextual neighbours; node 3 starts earlier than node 2.
    segments = torch.tensor([[10.0, 20.0], [10.0, 20.0], [11.0, 20.0], [10.0, 19.0], [10.0, 20.0]])
    data = build_graph(Proposals(segments), edges="contextual", max_contextual=2)
    sources_of_0 = data.contextual_edge_index[0, data.contextual_edge_index[1] == 0].tolist()
    assert sorted(sources_of_0) == [1, 4]  # tIoU 1 beats 0.9; 1 and 4 tie at 1.0
    sources_of_2 = data.contextual_edge_index[0, data.contextual_edge_index[1] == 2].tolist()
    assert sorted(sources_of_2) == [0, 1]  # 0, 1, 4 tie (tIoU 0.9); equal starts, smaller indices win
    # Sources 1 and 2 tie at tIoU 8/12 with target 0; source 2 starts earlier and wins despite its index.
    data = build_graph(Proposals(torch.tensor([[10.0, 20.0], [12.0, 22.0], [8.0, 18.0]])), edges="contextual",
                       theta_ctx=0.5, max_contextual=1)
    assert data.contextual_edge_index[0, data.contextual_edge_index[1] == 0].tolist() == [2]


def only_pair_edges(segments, **options):
    data = build_graph(Proposals(torch.tensor(segments, dtype=torch.float64)), **options)
    return tuple(data[f"{kind}_edge_index"].size(1) if f"{kind}_edge_index" in data else None
                 for kind in ("contextual", "surrounding"))


@pytest.mark.parametrize("a, b, theta, official", [
    ([0, 10], [3, 10], 0.7, False),  # inter 7, union 10
    ([0, 10], [4, 10], 0.6, False),  # inter 6, union 10
    ([0, 10], [7, 10], 0.3, False),  # inter 3, union 10
    ([0, 9], [3, 9], 0.7, True),     # frames 0-9 and 3-9: inter 7, union 10
    ([0, 9], [6, 9], 0.4, True),     # inter 4, union 10
])
def test_contextual_tie_at_the_threshold_is_not_an_edge(a, b, theta, official):
    # tIoU exactly theta: `segment_iou(a, b) > theta` is False, so no edge; just below theta, both directions.
    tiou = segment_iou(torch.tensor([a], dtype=torch.float64), torch.tensor([b], dtype=torch.float64),
                       frame_inclusive=official).item()
    assert tiou == theta
    options = dict(edges="contextual", pgcn_official=official)
    assert only_pair_edges([a, b], theta_ctx=theta, **options)[0] == 0
    assert only_pair_edges([a, b], theta_ctx=theta - 1e-9, **options)[0] == 2


@pytest.mark.parametrize("a, b, theta, official", [
    ([0, 20], [22.5, 52.5], 0.55, False),  # centre distance 27.5, union 50
    ([0, 20], [29, 59], 1.1, False),       # centre distance 34 ... union 50: d = 0.68 (no tie: control)
    ([0, 19], [25, 49], 0.55, True),       # frames: centre distance 27.5, span 50
    ([0, 24], [28, 49], 0.56, True),       # centre distance 26.5 ... span 50: d = 0.53 (control)
])
def test_surrounding_tie_at_the_threshold_is_not_an_edge(a, b, theta, official):
    a_, b_ = torch.tensor([a], dtype=torch.float64), torch.tensor([b], dtype=torch.float64)
    d = segment_distance(a_, b_, union="span" if official else "union", frame_inclusive=official).item()
    assert segment_iou(a_, b_, frame_inclusive=official).item() == 0
    options = dict(edges="surrounding", pgcn_official=official)
    expected = 2 if d < theta else 0  # the oracle: d < theta_sur
    assert only_pair_edges([a, b], theta_sur=theta, **options)[1] == expected
    assert only_pair_edges([a, b], theta_sur=d + 1e-9, **options)[1] == 2
    assert only_pair_edges([a, b], theta_sur=d, **options)[1] == 0


def integer_proposals(generator, n=40, span=30, longest=12):
    """Integer segments on a short range, so that tIoU and distance ties are common."""
    start = torch.randint(0, span, (n,), generator=generator)
    length = torch.randint(1, longest, (n,), generator=generator)
    return Proposals(torch.stack([start, start + length], 1).double())


@pytest.mark.parametrize("official", [False, True])
@pytest.mark.parametrize("theta_ctx, theta_sur", [(0.3, 0.55), (0.6, 0.6), (0.7, 0.75), (0.4, 1.1), (0.5, 0.9)])
def test_integer_frames_with_ties_match_the_brute_force_loop(generator, official, theta_ctx, theta_sur):
    video = integer_proposals(generator)
    data = build_graph(video, theta_ctx=theta_ctx, theta_sur=theta_sur, pgcn_official=official,
                       max_contextual=10 ** 6, max_surrounding=10 ** 6)
    ctx, sur = brute_force_edges(video.segments, theta_ctx, theta_sur, official=official)
    assert as_set(data.contextual_edge_index) == set(ctx) and len(ctx) > 0
    assert as_set(data.surrounding_edge_index) == set(sur) and len(sur) > 0


@pytest.mark.parametrize("integer", [False, True])
@pytest.mark.parametrize("theta_sur", [0.55, 0.6, 0.75, 0.9])
def test_official_mode_with_a_bounded_surrounding_window(generator, integer, theta_sur):
    # theta_sur < 1 bounds the search window (R = theta / (1 - theta) (l_i + max_length) / 2): the capped
    # and the uncapped graphs both match the reference definitions.
    video = integer_proposals(generator, n=60, span=80, longest=25) if integer else \
        random_proposals(generator, n=60)
    ctx, sur = brute_force_edges(video.segments, 0.7, theta_sur, official=True)
    data = build_graph(video, pgcn_official=True, theta_sur=theta_sur)
    assert as_set(data.contextual_edge_index) == best_per_target(ctx, 8, True, video.segments)
    assert as_set(data.surrounding_edge_index) == best_per_target(sur, 2, False, video.segments)
    uncapped = build_graph(video, pgcn_official=True, theta_sur=theta_sur, max_surrounding=10 ** 6)
    assert as_set(uncapped.surrounding_edge_index) == set(sur) and 0 < len(sur) < 60 * 59


def long_video(generator, n=300, integer=True, adjacent=False):
    """Proposals over a video much longer than they are, so each target's reach is a small part of it."""
    start = torch.rand(n, generator=generator) * 40 * n
    length = 5 + torch.rand(n, generator=generator) * 60
    if integer:
        start, length = start.round(), length.round()
    if adjacent:  # every other proposal starts right after the one before it ends: many tied distances
        start[1::2] = start[0::2][:n // 2] + length[0::2][:n // 2] + 1
    segments = torch.stack([start, start + length], 1).double()
    return Proposals(segments, torch.randn(n, 8, generator=generator))


@pytest.mark.parametrize("chunk_size, max_surrounding", [(16, 1), (256, 2), (32, 3)])
@pytest.mark.parametrize("integer, adjacent", [(True, False), (True, True), (False, False)])
def test_official_nearest_disjoint_search_matches_the_brute_force_loop(generator, chunk_size, max_surrounding,
                                                                      integer, adjacent):
    # theta_sur = 1 keeps every disjoint pair: each target's best sources come from the nearest-disjoint
    # bound, not from a window of the whole video.
    video = long_video(generator, integer=integer, adjacent=adjacent)
    data = build_graph(video, pgcn_official=True, max_surrounding=max_surrounding, chunk_size=chunk_size)
    ctx, sur = brute_force_edges(video.segments, official=True)
    assert as_set(data.contextual_edge_index) == best_per_target(ctx, 8, True, video.segments)
    assert as_set(data.surrounding_edge_index) == best_per_target(sur, max_surrounding, False, video.segments)
    assert data.surrounding_edge_index.size(1) == max_surrounding * len(video)
    if adjacent:  # ties at 2d = 1 exactly are present, and the earlier start wins them
        assert sum(d == 0.5 for d in sur.values()) > len(video) // 2


def test_official_weights_are_feature_cosines(generator):
    video = long_video(generator)
    data = build_graph(video, pgcn_official=True)
    x = torch.nn.functional.normalize(video.features, dim=1)
    torch.testing.assert_close(data.edge_weight, (x[data.edge_index[0]] * x[data.edge_index[1]]).sum(1))


@pytest.mark.parametrize("chunk_size", [5, 32])
def test_dense_weights_reused_across_blocks_are_feature_cosines(generator, chunk_size):
    # Dense blocks take the cosines with earlier sources from earlier blocks' products (transposed).
    video = random_proposals(generator, n=150)
    data = build_graph(video, theta_sur=2.0, chunk_size=chunk_size)
    x = torch.nn.functional.normalize(video.features, dim=1)
    torch.testing.assert_close(data.edge_weight, (x[data.edge_index[0]] * x[data.edge_index[1]]).sum(1))
    ctx, sur = brute_force_edges(video.segments, theta_sur=2.0)
    assert as_set(data.surrounding_edge_index) == set(sur)


@pytest.mark.parametrize("chunk_size", [1, 7, 64])
def test_chunking_does_not_change_the_graph(generator, chunk_size):
    video = random_proposals(generator, n=70)
    reference = build_graph(video, max_contextual=3)
    chunked = build_graph(video, max_contextual=3, chunk_size=chunk_size)
    for key in ("contextual_edge_index", "surrounding_edge_index", "edge_type"):
        assert torch.equal(reference[key], chunked[key])
    # Large blocks take cosines from a matrix product, small ones from gathered rows: equal up to rounding.
    torch.testing.assert_close(reference.edge_weight, chunked.edge_weight)


def test_node_keys(generator):
    video = random_proposals(generator)
    video = Proposals(video.segments, video.features, video.features * 2, torch.rand(len(video)),
                      torch.zeros(len(video), dtype=torch.long), duration=200.0)
    data = build_graph(video)
    assert torch.equal(data.x_ext, video.features * 2) and torch.equal(data.y, video.labels)
    assert torch.equal(data.score, video.scores) and torch.equal(data.segments, video.segments)


@pytest.mark.parametrize("option, value", [("theta_ctx", 1.5), ("theta_sur", 0.0), ("max_contextual", 0),
                                           ("max_surrounding", 2.5), ("chunk_size", 0)])
def test_bad_options(generator, option, value):
    with pytest.raises(ValueError, match=option):
        build_graph(random_proposals(generator), **{option: value})


def test_segment_functions_check_shapes():
    with pytest.raises(ValueError, match="'a'"):
        segment_iou(torch.zeros(3), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="'union'"):
        segment_distance(torch.zeros(1, 2), torch.zeros(1, 2), union="sum")
