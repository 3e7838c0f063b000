from collections import Counter

import pytest
import torch
import torch_geometric.typing
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare
from torch_geometric.data import Data
from torch_geometric.sampler import NodeSamplerInput
from torch_geometric.sampler.base import NumNeighbors

from videograph.sampler import NeighborSampler

CONTEXTUAL, SURROUNDING = 3, 4  # videograph.graph.EdgeType values


def _sample(sampler, seeds):
    seeds = torch.as_tensor(seeds, dtype=torch.long)
    return sampler.sample_from_nodes(NodeSamplerInput(input_id=torch.arange(seeds.numel()), node=seeds))


def _in_edges(edge_index, num_nodes):
    in_edges = [[] for _ in range(num_nodes)]
    for e, i in enumerate(edge_index[1].tolist()):
        in_edges[i].append(e)
    return in_edges


def check_sample(out, edge_index, num_nodes, seeds, num_neighbors, replace=False, quota=None, edge_type=None):
    """Replays the drawn edges with a plain-Python mini-batch builder (PyG's directional,
    non-disjoint semantics) and checks every invariant of the output against it."""
    seeds = list(seeds)
    src = edge_index[0].tolist()
    in_edges = _in_edges(edge_index, num_nodes)
    node, row, col, edge = out.node.tolist(), out.row.tolist(), out.col.tolist(), out.edge.tolist()
    assert len(row) == len(col) == len(edge) == sum(out.num_sampled_edges)
    assert len(node) == sum(out.num_sampled_nodes)
    assert out.num_sampled_nodes[0] == len(seeds) and node[:len(seeds)] == seeds
    assert len(out.num_sampled_edges) == len(num_neighbors) == len(out.num_sampled_nodes) - 1
    assert out.batch is None

    local = {}
    for position, s in enumerate(seeds):
        local.setdefault(s, position)
    expected_node = list(seeds)
    begin, end, e_pos = 0, len(seeds), 0
    for hop, k in enumerate(num_neighbors):
        hop_edges = edge[e_pos:e_pos + out.num_sampled_edges[hop]]
        hop_cols = col[e_pos:e_pos + out.num_sampled_edges[hop]]
        assert hop_cols == sorted(hop_cols)  # grouped by the node they were drawn for
        assert all(begin <= c < end for c in hop_cols)  # targets are the previous hop's nodes
        drawn = Counter(hop_cols)
        for i in range(begin, end):
            mine = [e for e, c in zip(hop_edges, hop_cols) if c == i]
            assert len(mine) == drawn.get(i, 0)
            allowed = in_edges[expected_node[i]]
            if quota is not None:
                allowed = [e for e in allowed if edge_type[e] in quota]
            assert set(mine) <= set(allowed)  # real edges into node i
            if quota is not None:
                per_type = Counter(edge_type[e] for e in mine)
                assert all(per_type[t] <= quota[t] for t in per_type)
                candidates = sum(min(sum(edge_type[e] == t for e in allowed), q) for t, q in quota.items())
                expected_fanout = candidates if k < 0 else min(candidates, k)
            elif replace and k >= 0:
                expected_fanout = k if allowed else 0
            else:
                expected_fanout = len(allowed) if k < 0 else min(len(allowed), k)
            if not replace or k < 0:
                assert len(set(mine)) == len(mine)  # no neighbour twice
            assert len(mine) == expected_fanout
        for e in hop_edges:
            j = src[e]
            if j not in local:
                local[j] = len(expected_node)
                expected_node.append(j)
        assert out.num_sampled_nodes[hop + 1] == len(expected_node) - end
        begin, end, e_pos = end, len(expected_node), e_pos + len(hop_edges)
    assert node == expected_node  # new nodes in order of first draw
    assert row == [local[src[e]] for e in edge]
    assert len(set(node[len(seeds):])) == len(node) - len(seeds)
    assert not set(node[len(seeds):]) & set(seeds)
    # Local ids point back to the drawn edges' end points.
    assert torch.equal(out.node[out.row], edge_index[0, out.edge])
    assert torch.equal(out.node[out.col], edge_index[1, out.edge])


def _random_graph(num_nodes=40, num_edges=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, num_nodes, (2, num_edges), generator=g)
    return Data(edge_index=edge_index, num_nodes=num_nodes)


@pytest.mark.parametrize("num_neighbors", [[4, 4], [2, 3, 1], [0, 5], [-1, 2]])
@pytest.mark.parametrize("replace", [False, True])
def test_random_graph_invariants(num_neighbors, replace):
    data = _random_graph()
    sampler = NeighborSampler(data, num_neighbors, replace=replace, generator=torch.Generator().manual_seed(1))
    seeds = [3, 17, 0, 25, 8]
    out = _sample(sampler, seeds)
    check_sample(out, data.edge_index, data.num_nodes, seeds, num_neighbors, replace=replace)


def test_large_fanout_uses_sorted_keys_and_keeps_invariants():
    data = _random_graph(num_nodes=30, num_edges=3000)  # degrees ~100 > 40 > 32
    sampler = NeighborSampler(data, [40, 40], generator=torch.Generator().manual_seed(2))
    out = _sample(sampler, [1, 2])
    check_sample(out, data.edge_index, data.num_nodes, [1, 2], [40, 40])


def test_proposal_batch_invariants_and_seeds_from_several_videos(make_proposal_batch):
    batch = make_proposal_batch(num_videos=3, num_proposals=40)
    sampler = NeighborSampler(batch, [4, 4], generator=torch.Generator().manual_seed(3))
    seeds = [0, 45, 90, 1, 119, 60]  # from all three videos
    out = _sample(sampler, seeds)
    check_sample(out, batch.edge_index, batch.num_nodes, seeds, [4, 4])
    # Proposal graphs have no edges between videos, so every sample stays inside the seeds' videos.
    assert set(batch.batch[out.node].tolist()) <= set(batch.batch[torch.tensor(seeds)].tolist())
    assert torch.equal(batch.batch[out.node[out.row]], batch.batch[out.node[out.col]])


def test_each_neighbour_is_drawn_uniformly():
    # Node 0 has 7 in-neighbours; repeated seeds are expanded independently, so one call
    # gives many independent draws of N_s = 3 of them.
    edge_index = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 0], [0, 0, 0, 0, 0, 0, 0, 1]])
    sampler = NeighborSampler(Data(edge_index=edge_index, num_nodes=8), [3],
                              generator=torch.Generator().manual_seed(4))
    reps = 3000
    out = _sample(sampler, [0] * reps)
    assert out.num_sampled_edges == [3 * reps]
    hist = torch.bincount(out.edge, minlength=7)[:7]
    assert hist.sum() == 3 * reps
    assert chisquare(hist.numpy()).pvalue > 1e-3
    # ... and as a set: all C(7, 3) = 35 subsets equally likely.
    subsets = Counter(tuple(sorted(out.edge[out.col == c].tolist())) for c in range(0, reps, 1))
    assert len(subsets) == 35
    assert chisquare(list(subsets.values())).pvalue > 1e-3


def test_fanout_at_least_max_degree_is_full_neighbourhood(make_proposal_batch):
    batch = make_proposal_batch(num_videos=2, num_proposals=30)
    max_degree = int(torch.bincount(batch.edge_index[1]).max())
    seeds = torch.arange(0, 60, 7)
    full = _sample(NeighborSampler(batch, [-1, -1]), seeds)
    for sampler in (NeighborSampler(batch, [max_degree, max_degree + 5], generator=torch.Generator().manual_seed(5)),
                    NeighborSampler(batch, [2, 2], sample=False)):
        out = _sample(sampler, seeds)
        for key in ("node", "row", "col", "edge"):
            assert torch.equal(getattr(out, key), getattr(full, key))
        assert out.num_sampled_nodes == full.num_sampled_nodes
    check_sample(full, batch.edge_index, batch.num_nodes, seeds.tolist(), [-1, -1])


def test_full_neighbourhood_matches_breadth_first_search():
    # Every in-edge of every node within 2 hops, independent oracle: edge_index scans.
    data = _random_graph(num_nodes=25, num_edges=60, seed=6)
    out = _sample(NeighborSampler(data, [-1, -1]), [4])
    hop1 = set(data.edge_index[0, data.edge_index[1] == 4].tolist()) | {4}
    reach = {j for i in hop1 for j in data.edge_index[0, data.edge_index[1] == i].tolist()} | hop1
    assert set(out.node.tolist()) == reach
    expected_edges = {e for e in range(60) if data.edge_index[1, e].item() in hop1}
    assert Counter(out.edge.tolist()) == Counter(expected_edges)


def test_hop_counts_add_up_and_sampler_is_deterministic(make_proposal_batch):
    batch = make_proposal_batch()
    seeds = torch.randperm(batch.num_nodes, generator=torch.Generator().manual_seed(7))[:32]
    a = _sample(NeighborSampler(batch, [4, 4, 2], generator=torch.Generator().manual_seed(8)), seeds)
    b = _sample(NeighborSampler(batch, [4, 4, 2], generator=torch.Generator().manual_seed(8)), seeds)
    c = _sample(NeighborSampler(batch, [4, 4, 2], generator=torch.Generator().manual_seed(9)), seeds)
    assert sum(a.num_sampled_nodes) == a.node.numel() and sum(a.num_sampled_edges) == a.row.numel()
    for key in ("node", "row", "col", "edge"):
        assert torch.equal(getattr(a, key), getattr(b, key))
    assert a.num_sampled_nodes == b.num_sampled_nodes
    assert not torch.equal(a.edge, c.edge)


def test_repeated_calls_leave_no_state_behind():
    data = _random_graph(seed=10)
    sampler = NeighborSampler(data, [3, 3], generator=torch.Generator().manual_seed(11))
    for seeds in ([1, 2, 3], [3, 2, 1], [5], [1, 2, 3]):
        check_sample(_sample(sampler, seeds), data.edge_index, data.num_nodes, seeds, [3, 3])
    assert sampler._buffers and all(bool((b == (1 << 62)).all()) for b in sampler._buffers)


def test_repeated_seed_keeps_its_positions():
    data = _random_graph(seed=12)
    out = _sample(NeighborSampler(data, [3], generator=torch.Generator().manual_seed(13)), [5, 9, 5])
    check_sample(out, data.edge_index, data.num_nodes, [5, 9, 5], [3])
    assert out.node[:3].tolist() == [5, 9, 5]


def test_edge_type_quotas(make_proposal_batch):
    batch = make_proposal_batch(num_videos=2, num_proposals=50)
    quota = {CONTEXTUAL: 3, SURROUNDING: 1}
    sampler = NeighborSampler(batch, [2, 2], edge_types=quota, generator=torch.Generator().manual_seed(14))
    seeds = list(range(0, 100, 9))
    out = _sample(sampler, seeds)
    check_sample(out, batch.edge_index, batch.num_nodes, seeds, [2, 2], quota=quota, edge_type=batch.edge_type.tolist())
    # Candidates only (no N_s cut), and a listed type only.
    for quota, k in (({CONTEXTUAL: 3, SURROUNDING: 1}, -1), ({SURROUNDING: 2}, 4)):
        out = _sample(NeighborSampler(batch, [k], edge_types=quota, generator=torch.Generator().manual_seed(15)), seeds)
        check_sample(out, batch.edge_index, batch.num_nodes, seeds, [k], quota=quota,
                     edge_type=batch.edge_type.tolist())


def test_edge_type_quotas_draw_uniformly_in_two_stages():
    # Node 0: 4 contextual and 3 surrounding in-neighbours; quotas {3: 2, 4: 1} give 3 candidates,
    # N_s = 2 of them kept: P(contextual edge) = 2/4 * 2/3, P(surrounding edge) = 1/3 * 2/3.
    edge_index = torch.tensor([[1, 2, 3, 4, 5, 6, 7], [0] * 7])
    edge_type = torch.tensor([CONTEXTUAL] * 4 + [SURROUNDING] * 3)
    sampler = NeighborSampler(Data(edge_index=edge_index, edge_type=edge_type, num_nodes=8), [2],
                              edge_types={CONTEXTUAL: 2, SURROUNDING: 1}, generator=torch.Generator().manual_seed(16))
    reps = 4000
    out = _sample(sampler, [0] * reps)
    hist = torch.bincount(out.edge, minlength=7).double()
    expected = torch.tensor([1 / 3] * 4 + [2 / 9] * 3, dtype=torch.float64) * reps
    assert hist.sum() == 2 * reps
    assert chisquare(hist.numpy(), expected.numpy()).pvalue > 1e-3


@pytest.mark.parametrize("edge_types", [None, {CONTEXTUAL: 3, SURROUNDING: 1}, {SURROUNDING: 2}])
def test_cat_of_per_graph_samplers_is_the_batch_sampler(make_proposal_batch, edge_types):
    # The oracle: the sampler built on the Batch itself (its edges grouped anew); same CSC, same draws.
    batch = make_proposal_batch(num_videos=3, num_proposals=50, seed=4)
    whole = NeighborSampler(batch, [3, 2], edge_types=edge_types, generator=torch.Generator().manual_seed(8))
    parts = [NeighborSampler(batch.get_example(v), [3, 2], edge_types=edge_types) for v in range(3)]
    joined = NeighborSampler.cat(parts, generator=torch.Generator().manual_seed(8))
    for name in ("row", "perm", "ptr"):
        assert torch.equal(getattr(joined, name), getattr(whole, name))
    seeds = NodeSamplerInput(torch.arange(5), torch.tensor([3, 70, 140, 3, 99]))
    a, b = whole.sample_from_nodes(seeds), joined.sample_from_nodes(seeds)
    for name in ("node", "row", "col", "edge"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    with pytest.raises(ValueError, match="settings"):
        NeighborSampler.cat([parts[0], NeighborSampler(batch.get_example(1), [3])])
    with pytest.raises(TypeError, match="samplers"):
        NeighborSampler.cat([])


def test_sample_switch_takes_whole_neighbourhood_at_test_time(make_proposal_batch):
    batch = make_proposal_batch(num_videos=1, num_proposals=30)
    sampler = NeighborSampler(batch, [2, 2], generator=torch.Generator().manual_seed(17))
    sampler.sample = False
    out = _sample(sampler, [0, 1])
    check_sample(out, batch.edge_index, batch.num_nodes, [0, 1], [-1, -1])


def test_accepts_pyg_num_neighbors_and_other_edge_sets(make_proposal_batch):
    batch = make_proposal_batch(num_videos=1, num_proposals=30)
    sampler = NeighborSampler(batch, NumNeighbors([3, 2]), edge_key="contextual_edge_index",
                              generator=torch.Generator().manual_seed(18))
    out = _sample(sampler, [0, 5])
    check_sample(out, batch.contextual_edge_index, batch.num_nodes, [0, 5], [3, 2])
    assert sampler.edge_permutation is None and sampler.num_hops == 2


def test_isolated_seed_and_empty_seed_list():
    data = Data(edge_index=torch.tensor([[0], [1]]), num_nodes=3)
    out = _sample(NeighborSampler(data, [2, 2]), [2])
    assert out.node.tolist() == [2] and out.row.numel() == 0
    assert out.num_sampled_nodes == [1, 0, 0] and out.num_sampled_edges == [0, 0]
    out = _sample(NeighborSampler(data, [2]), [])
    assert out.node.numel() == 0 and out.num_sampled_nodes == [0, 0]


@pytest.mark.parametrize("make,match", [
    (lambda d: NeighborSampler(d, [4, -2]), "num_neighbors"),
    (lambda d: NeighborSampler(d, [4, 2.5]), "num_neighbors"),
    (lambda d: NeighborSampler(d, {"a": [1]}), "num_neighbors"),
    (lambda d: NeighborSampler(d, [4], edge_key="contextual_edge_index"), "edge_key"),
    (lambda d: NeighborSampler(Data(edge_index=d.edge_index.int(), num_nodes=40), [4]), "torch.long"),
    (lambda d: NeighborSampler(Data(edge_index=d.edge_index, num_nodes=10), [4]), "outside"),
    (lambda d: NeighborSampler(d, [4], edge_types={3: 2}), "edge_type"),
    (lambda d: NeighborSampler(Data(edge_index=d.edge_index, edge_type=torch.zeros(300), num_nodes=40), [4],
                               edge_types={0: 2}), "edge_type"),
    (lambda d: NeighborSampler(Data(edge_index=d.edge_index, edge_type=torch.zeros(300, dtype=torch.long),
                                    num_nodes=40), [4], edge_types={0: -3}), "edge_types"),
    (lambda d: _sample(NeighborSampler(d, [4]), [0, 40]), r"\[0, 40\)"),
    (lambda d: _sample(NeighborSampler(d, [4]), [-1]), r"\[0, 40\)"),
    (lambda d: NeighborSampler(d, [4]).sample_from_nodes(NodeSamplerInput(None, torch.tensor([1.0]))), "long"),
    (lambda d: NeighborSampler(d, [4]).sample_from_nodes(NodeSamplerInput(None, torch.tensor([1]), input_type="p")),
     "homogeneous"),
    (lambda d: NeighborSampler(d, [4]).sample_from_nodes(NodeSamplerInput(None, torch.tensor([1]),
                                                                          time=torch.tensor([0]))), "temporal"),
])
def test_bad_input_raises_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make(_random_graph())


def test_bad_types_raise_type_error():
    with pytest.raises(TypeError, match="data"):
        NeighborSampler(torch.zeros(2, 3), [4])
    with pytest.raises(TypeError, match="generator"):
        NeighborSampler(_random_graph(), [4], generator=0)


@pytest.mark.skipif(not (torch_geometric.typing.WITH_PYG_LIB or torch_geometric.typing.WITH_TORCH_SPARSE),
                    reason="PyG's own NeighborSampler needs pyg-lib or torch-sparse (the 'ext' extra), "
                    "neither is installed")
def test_pyg_neighbor_sampler_satisfies_the_same_invariants(make_proposal_batch):
    from torch_geometric.sampler import NeighborSampler as PyGNeighborSampler
    batch = make_proposal_batch()
    seeds = torch.arange(0, batch.num_nodes, 11)
    sampler = PyGNeighborSampler(batch, [4, 4])
    out = _sample(sampler, seeds)
    edge = out.edge if sampler.edge_permutation is None else sampler.edge_permutation[out.edge]
    # The invariants that do not depend on hop bookkeeping (torch-sparse does not report it).
    assert torch.equal(out.node[:seeds.numel()], seeds)
    assert out.node.unique().numel() == out.node.numel()
    assert torch.equal(out.node[out.row], batch.edge_index[0, edge])
    assert torch.equal(out.node[out.col], batch.edge_index[1, edge])
    assert edge.unique().numel() == edge.numel()
    in_degree = torch.bincount(batch.edge_index[1], minlength=batch.num_nodes)
    fanout = torch.bincount(out.col, minlength=out.node.numel())
    assert torch.equal(fanout[:seeds.numel()], in_degree[seeds].clamp(max=4))
    assert bool((fanout <= 4).all())


@settings(max_examples=25, deadline=None)
@given(num_nodes=st.integers(1, 30), num_edges=st.integers(0, 120), seed=st.integers(0, 2**16),
       num_neighbors=st.lists(st.integers(-1, 6), min_size=1, max_size=3), replace=st.booleans(),
       num_seeds=st.integers(1, 8))
def test_invariants_hold_on_arbitrary_graphs(num_nodes, num_edges, seed, num_neighbors, replace, num_seeds):
    g = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, num_nodes, (2, num_edges), generator=g)
    seeds = torch.randperm(num_nodes, generator=g)[:num_seeds].tolist()
    sampler = NeighborSampler(Data(edge_index=edge_index, num_nodes=num_nodes), num_neighbors, replace=replace,
                              generator=g)
    check_sample(_sample(sampler, seeds), edge_index, num_nodes, seeds, num_neighbors, replace=replace)
