import itertools
import math
from collections import Counter

import networkx as nx
import pytest
import torch
from hypothesis import given, settings, strategies as st
from scipy.stats import chisquare
from torch_geometric.data import Batch, Data

from videograph.subgraph import Subgraphs, enumerate_subgraphs, iter_subgraphs, multiscale, slot_pairs

from .oracles import connected_oracle, graph_from_nx

NAMED_GRAPHS = {
    'path': nx.path_graph(9),
    'star': nx.star_graph(7),  # centre 0 and 7 leaves
    'clique': nx.complete_graph(7),
    'disconnected': nx.disjoint_union(nx.cycle_graph(5), nx.path_graph(4)),
    'isolated': nx.disjoint_union(nx.empty_graph(3), nx.complete_graph(4)),
    'er_sparse': nx.gnp_random_graph(12, 0.2, seed=7),
    'er_dense': nx.gnp_random_graph(10, 0.6, seed=8),
}


def _mixed_batch():
    graphs = [nx.gnp_random_graph(n, 0.35, seed=n) for n in (5, 8, 6, 8)]
    return graphs, Batch.from_data_list([graph_from_nx(G) for G in graphs])


# ---------------------------------------------------------------- complete mode
@pytest.mark.parametrize('n,k', [(5, 1), (6, 2), (7, 3), (9, 4), (10, 5), (6, 6)])
def test_complete_matches_itertools(n, k):
    out = enumerate_subgraphs(Data(num_nodes=n), k)
    assert out.nodes.tolist() == [list(c) for c in itertools.combinations(range(n), k)]
    assert out.batch.tolist() == [0] * math.comb(n, k)
    assert out.ptr.tolist() == [0, math.comb(n, k)]
    assert out.num_subgraphs.tolist() == [math.comb(n, k)]
    assert out.k == k and out.pair_index.shape == (math.comb(n, k), k * (k - 1) // 2)


def test_complete_pair_index_dict_lookup_batched():
    _, batch = _mixed_batch()
    out = enumerate_subgraphs(batch, 3)
    pairs = out.pair_nodes()
    lookup = {tuple(p): i for i, p in enumerate(pairs.tolist())}
    assert len(lookup) == pairs.size(0) == sum(n * (n - 1) // 2 for n in (5, 8, 6, 8))
    # Every pair id belongs to its own graph and numbers its pairs densely, triangularly.
    assert torch.equal(out.pair_ptr, torch.tensor([0, 10, 38, 53, 81]))
    for g in range(4):
        lo, hi = batch.ptr[g].item(), batch.ptr[g + 1].item()
        expected = [(u, w) for u, w in itertools.combinations(range(lo, hi), 2)]
        assert pairs[out.pair_ptr[g]:out.pair_ptr[g + 1]].tolist() == [list(p) for p in expected]
    ij = slot_pairs(3).tolist()
    for row, ids in zip(out.nodes.tolist(), out.pair_index.tolist()):
        assert ids == [lookup[(row[i], row[j])] for i, j in ij]


@pytest.mark.parametrize('mode', ['complete', 'connected'])
def test_batched_equals_per_graph_offset(mode):
    graphs, batch = _mixed_batch()
    out = enumerate_subgraphs(batch, 3, mode=mode)
    for g, G in enumerate(graphs):
        single = enumerate_subgraphs(graph_from_nx(G), 3, mode=mode)
        rows = slice(out.ptr[g].item(), out.ptr[g + 1].item())
        assert torch.equal(out.nodes[rows], single.nodes + batch.ptr[g])
        assert torch.all(out.batch[rows] == g)
        offset = out.pair_ptr[g] if mode == 'complete' else int(batch._slice_dict['edge_index'][g])
        shifted = torch.where(single.pair_index >= 0, single.pair_index + offset, single.pair_index)
        assert torch.equal(out.pair_index[rows], shifted)


def test_same_size_batch_uses_the_shared_table():
    batch = Batch.from_data_list([Data(num_nodes=7) for _ in range(3)])
    out = enumerate_subgraphs(batch, 4)
    single = enumerate_subgraphs(Data(num_nodes=7), 4)
    assert torch.equal(out.nodes, torch.cat([single.nodes + 7 * g for g in range(3)]))
    assert torch.equal(out.pair_index, torch.cat([single.pair_index + 21 * g for g in range(3)]))


def test_output_does_not_alias_the_cache():
    first = enumerate_subgraphs(Data(num_nodes=6), 3)
    first.nodes.zero_()
    first.pair_index.zero_()
    again = enumerate_subgraphs(Data(num_nodes=6), 3)
    assert again.nodes.tolist() == [list(c) for c in itertools.combinations(range(6), 3)]


# ---------------------------------------------------------------- connected mode
@pytest.mark.parametrize('name', sorted(NAMED_GRAPHS))
@pytest.mark.parametrize('k', [1, 2, 3, 4, 5])
def test_connected_matches_networkx(name, k):
    G = NAMED_GRAPHS[name]
    if k > G.number_of_nodes():
        pytest.skip('graph smaller than k')
    out = enumerate_subgraphs(graph_from_nx(G), k, mode='connected')
    assert out.nodes.tolist() == [list(c) for c in connected_oracle(G, k)]


@pytest.mark.parametrize('n,k', [(8, 2), (8, 3), (12, 5)])
def test_connected_known_counts(n, k):
    path = enumerate_subgraphs(graph_from_nx(nx.path_graph(n)), k, mode='connected')
    assert len(path) == n - k + 1
    star = enumerate_subgraphs(graph_from_nx(nx.star_graph(n)), k, mode='connected')
    assert len(star) == math.comb(n, k - 1)
    clique = enumerate_subgraphs(graph_from_nx(nx.complete_graph(n)), k, mode='connected')
    assert len(clique) == math.comb(n, k)
    cycle = enumerate_subgraphs(graph_from_nx(nx.cycle_graph(n)), k, mode='connected')
    assert len(cycle) == n


def test_connected_ignores_direction_loops_and_duplicates():
    G = nx.gnp_random_graph(10, 0.35, seed=2)
    plain = enumerate_subgraphs(graph_from_nx(G), 4, mode='connected')
    data = graph_from_nx(G, directed_one_way=False)
    n = data.num_nodes
    data.edge_index = torch.cat([data.edge_index, torch.arange(n).repeat(2, 1), data.edge_index[:, :3]], 1)
    noisy = enumerate_subgraphs(data, 4, mode='connected')
    assert torch.equal(plain.nodes, noisy.nodes)


def test_connected_pair_index_dict_lookup():
    G = nx.gnp_random_graph(10, 0.4, seed=5)
    data = graph_from_nx(G, directed_one_way=False)
    # Add a duplicate forward edge and drop one reverse edge, so both rules are exercised.
    data.edge_index = torch.cat([data.edge_index, data.edge_index[:, :1]], 1)[:, 1:]
    first_id = {}
    for e, (u, w) in enumerate(data.edge_index.t().tolist()):
        first_id.setdefault((u, w), e)
    out = enumerate_subgraphs(data, 4, mode='connected')
    ij = slot_pairs(4).tolist()
    for row, ids in zip(out.nodes.tolist(), out.pair_index.tolist()):
        expected = [first_id.get((row[i], row[j]), first_id.get((row[j], row[i]), -1)) for i, j in ij]
        assert ids == expected
    assert bool((out.pair_index >= 0).any(1).all())  # connected sets have edges
    with pytest.raises(ValueError, match='pair_nodes'):
        out.pair_nodes()


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 9), p=st.floats(0.0, 1.0), k=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_connected_property(n, p, k, seed):
    G = nx.gnp_random_graph(n, p, seed=seed)
    out = enumerate_subgraphs(graph_from_nx(G), k, mode='connected', small_graphs='empty')
    assert out.nodes.tolist() == [list(c) for c in connected_oracle(G, k)] if k <= n else len(out) == 0


# ---------------------------------------------------------------- streaming, sampling, multiscale
@pytest.mark.parametrize('mode', ['complete', 'connected'])
@pytest.mark.parametrize('chunk_size', [1, 7, 64, 10_000])
@pytest.mark.parametrize('max_per_graph', [None, 9])
def test_chunks_concatenate_to_full(mode, chunk_size, max_per_graph):
    _, batch = _mixed_batch()
    full = enumerate_subgraphs(batch, 4, mode=mode, max_per_graph=max_per_graph,
                               generator=torch.Generator().manual_seed(1))
    chunks = list(iter_subgraphs(batch, 4, mode=mode, max_per_graph=max_per_graph, chunk_size=chunk_size,
                                 generator=torch.Generator().manual_seed(1)))
    assert all(len(c) == chunk_size for c in chunks[:-1]) and 0 < len(chunks[-1]) <= chunk_size
    joined = Subgraphs.cat(chunks)
    for name in ('nodes', 'pair_index', 'batch', 'ptr', 'node_ptr'):
        assert torch.equal(getattr(joined, name), getattr(full, name)), name
    for chunk in chunks:
        assert torch.equal(chunk.ptr.diff(), torch.bincount(chunk.batch, minlength=4))


@pytest.mark.parametrize('mode', ['complete', 'connected'])
def test_sampling_subset_sorted_and_seeded(mode):
    _, batch = _mixed_batch()
    full = enumerate_subgraphs(batch, 3, mode=mode)
    a = enumerate_subgraphs(batch, 3, mode=mode, max_per_graph=4, generator=torch.Generator().manual_seed(5))
    b = enumerate_subgraphs(batch, 3, mode=mode, max_per_graph=4, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.nodes, b.nodes)
    assert a.num_subgraphs.tolist() == full.num_subgraphs.clamp(max=4).tolist()
    rows = {tuple(r): i for i, r in enumerate(full.nodes.tolist())}
    positions = [rows[tuple(r)] for r in a.nodes.tolist()]
    assert positions == sorted(positions)
    assert torch.equal(a.pair_index, full.pair_index[positions])


@pytest.mark.parametrize('mode', ['complete', 'connected'])
def test_sampling_is_uniform(mode):
    data = graph_from_nx(nx.complete_graph(7) if mode == 'complete' else nx.gnp_random_graph(8, 0.5, seed=1))
    full = enumerate_subgraphs(data, 3, mode=mode)
    gen = torch.Generator().manual_seed(0)
    counts = Counter()
    draws = 400
    for _ in range(draws):
        out = enumerate_subgraphs(data, 3, mode=mode, max_per_graph=5, generator=gen)
        counts.update(map(tuple, out.nodes.tolist()))
    observed = [counts.get(tuple(r), 0) for r in full.nodes.tolist()]
    assert sum(observed) == 5 * draws
    assert chisquare(observed).pvalue > 1e-3


def test_multiscale_is_a_dict_of_enumerations():
    data = graph_from_nx(nx.gnp_random_graph(9, 0.4, seed=3))
    for mode in ('complete', 'connected'):
        scales = multiscale(data, (5, 3, 4), mode=mode)
        assert list(scales) == [5, 3, 4]
        for k, sub in scales.items():
            assert torch.equal(sub.nodes, enumerate_subgraphs(data, k, mode=mode).nodes)
    assert sum(len(s) for s in multiscale(Data(num_nodes=32)).values()) == 242_296


def test_prefixes():
    data = graph_from_nx(nx.gnp_random_graph(9, 0.5, seed=4))
    for mode in ('complete', 'connected'):
        out = enumerate_subgraphs(data, 4, mode=mode)
        pre = out.prefixes()
        assert torch.equal(pre.nodes[pre.index], out.nodes[:, :-1])
        heads = out.nodes[:, :-1].tolist()
        assert pre.first.tolist() == [heads.index(p) for p in pre.nodes.tolist()]
        assert len({tuple(p) for p in pre.nodes.tolist()}) == pre.nodes.size(0)
    full3 = enumerate_subgraphs(Data(num_nodes=9), 3).nodes.tolist()
    pre = enumerate_subgraphs(Data(num_nodes=9), 4).prefixes()
    assert pre.nodes.tolist() == [p for p in full3 if p[-1] < 8]  # prefixes that have an extension


def test_small_graphs_policy():
    batch = Batch.from_data_list([Data(num_nodes=5), Data(num_nodes=2), Data(num_nodes=4)])
    with pytest.raises(ValueError, match='graph 1'):
        enumerate_subgraphs(batch, 3)
    for mode in ('complete', 'connected'):
        batch.edge_index = torch.tensor([[0, 1, 2, 3, 5, 7, 8], [1, 2, 3, 4, 6, 8, 9]])
        out = enumerate_subgraphs(batch, 3, mode=mode, small_graphs='empty')
        assert out.num_subgraphs[1].item() == 0 and out.ptr.numel() == 4
        assert not bool((out.batch == 1).any())


def test_to_and_repr():
    out = enumerate_subgraphs(Data(num_nodes=6), 3)
    assert repr(out) == 'Subgraphs(k=3, mode=complete, num_subgraphs=20, num_graphs=1)'
    moved = out.to('cpu')
    assert isinstance(moved, Subgraphs) and torch.equal(moved.nodes, out.nodes) and moved.k == 3



def test_select_keeps_the_masked_rows_of_every_graph():
    batch = Batch.from_data_list([Data(num_nodes=n) for n in (5, 3, 6)])
    out = enumerate_subgraphs(batch, 3)
    mask = torch.rand(len(out), generator=torch.Generator().manual_seed(0)) < 0.4
    mask[out.batch == 1] = False
    kept = out.select(mask)
    expected = [row for row, keep in zip(out.nodes.tolist(), mask.tolist()) if keep]
    assert kept.nodes.tolist() == expected
    assert kept.num_subgraphs.tolist() == [sum(1 for r in expected if lo <= r[0] < hi)
                                           for lo, hi in ((0, 5), (5, 8), (8, 14))]
    assert torch.equal(kept.pair_index, out.pair_index[mask]) and torch.equal(kept.batch, out.batch[mask])
    assert torch.equal(kept.prefixes().nodes[kept.prefixes().index], kept.nodes[:, :-1])
    with pytest.raises(ValueError, match='mask'):
        out.select(mask[:-1])
    with pytest.raises(ValueError, match='mask'):
        out.select(mask.long())

@pytest.mark.parametrize('kwargs,match', [
    (dict(k=0), "'k'"),
    (dict(k=2.0), "'k'"),
    (dict(k=7), "'k'=7 exceeds the number of nodes \\(6\\) of graph 0"),
    (dict(k=3, mode='induced'), "'mode'"),
    (dict(k=3, max_per_graph=0), "'max_per_graph'"),
    (dict(k=3, small_graphs='skip'), "'small_graphs'"),
    (dict(k=3, mode='connected', edge_key='region_edge_index'), "'edge_key'='region_edge_index'"),
])
def test_bad_arguments(kwargs, match):
    data = Data(num_nodes=6, edge_index=torch.tensor([[0, 1], [1, 2]]))
    with pytest.raises(ValueError, match=match):
        enumerate_subgraphs(data, **kwargs)
    with pytest.raises(ValueError, match=match):
        next(iter_subgraphs(data, **kwargs))


@pytest.mark.parametrize('edge_index,match', [
    (torch.tensor([0, 1, 2]), r'shape \[2, num_edges\]'),
    (torch.zeros(3, 2, dtype=torch.long), r'shape \[2, num_edges\]'),
    (torch.tensor([[0.0, 1.0], [1.0, 2.0]]), 'integer node ids'),
    (torch.tensor([[0, 6], [1, 2]]), 'outside the 6 nodes'),
])
def test_bad_edge_index(edge_index, match):
    data = Data(num_nodes=6, edge_index=edge_index)
    with pytest.raises(ValueError, match=match):
        enumerate_subgraphs(data, 3, mode='connected')


def test_edges_across_graphs_and_bad_inputs():
    batch = Batch.from_data_list([Data(num_nodes=3), Data(num_nodes=3)])
    batch.edge_index = torch.tensor([[0, 2], [1, 3]])
    with pytest.raises(ValueError, match='joins graphs 0 and 1'):
        enumerate_subgraphs(batch, 2, mode='connected')
    with pytest.raises(TypeError, match="'data'"):
        enumerate_subgraphs(torch.zeros(3), 2)
    with pytest.raises(ValueError, match="'chunk_size'"):
        iter_subgraphs(Data(num_nodes=3), 2, chunk_size=0)
    with pytest.raises(ValueError, match="'ks'"):
        multiscale(Data(num_nodes=3), ())


@pytest.mark.parametrize('mode', ['complete', 'connected'])
def test_progress_bar_reports_the_work(mode, capsys):
    data = graph_from_nx(nx.gnp_random_graph(9, 0.5, seed=1))
    chunks = list(iter_subgraphs(data, 3, mode=mode, chunk_size=10, progress=True))
    err = capsys.readouterr().err
    unit = 'subgraph' if mode == 'complete' else 'root'
    total = sum(len(c) for c in chunks) if mode == 'complete' else 9
    assert f'{total}/{total}' in err and unit in err


def test_huge_complete_sets_sample_without_enumerating():
    data = Data(num_nodes=400)  # C(400, 5) ~ 8.3e10 sub-graphs
    out = enumerate_subgraphs(data, 5, max_per_graph=50, generator=torch.Generator().manual_seed(0))
    assert len(out) == 50 and bool((out.nodes[:, 1:] > out.nodes[:, :-1]).all())
    keys = [tuple(r) for r in out.nodes.tolist()]
    assert keys == sorted(keys) and len(set(keys)) == 50
    pair_id = {p: i for i, p in enumerate(itertools.combinations(range(400), 2))}
    assert out.pair_index.tolist() == [[pair_id[(r[i], r[j])] for i, j in slot_pairs(5).tolist()] for r in keys]
    with pytest.raises(ValueError, match='graph 0'):
        enumerate_subgraphs(Data(num_nodes=10**6), 40, max_per_graph=3)


@pytest.mark.parametrize('max_per_graph', [None, 9])
def test_unranked_chunks_match_tables(max_per_graph, monkeypatch):
    from videograph.subgraph import combinations
    _, batch = _mixed_batch()
    full = enumerate_subgraphs(batch, 4, max_per_graph=max_per_graph, generator=torch.Generator().manual_seed(2))
    monkeypatch.setattr(combinations, 'CACHE_MAX_ELEMENTS', 0)  # every table over budget: unrank
    chunks = iter_subgraphs(batch, 4, max_per_graph=max_per_graph, chunk_size=50,
                            generator=torch.Generator().manual_seed(2))
    joined = Subgraphs.cat(list(chunks))
    assert torch.equal(joined.nodes, full.nodes) and torch.equal(joined.pair_index, full.pair_index)
