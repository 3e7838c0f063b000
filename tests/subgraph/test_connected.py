import networkx as nx
import pytest
import torch

from videograph.subgraph import connected
from videograph.subgraph.connected import (PairLookup, connected_sets, edge_id_table, edge_ids, sort_rows,
                                           undirected_adjacency)

from .oracles import connected_oracle, graph_from_nx


def _esu(G, k):
    data = graph_from_nx(G)
    adj = undirected_adjacency(data.edge_index, data.num_nodes)
    rows = connected_sets(adj, torch.arange(data.num_nodes), k)
    return rows, sort_rows(rows, data.num_nodes)


@pytest.mark.parametrize('seed', range(4))
@pytest.mark.parametrize('k', [2, 3, 4, 5])
def test_esu_each_connected_set_exactly_once(seed, k):
    G = nx.gnp_random_graph(11, 0.3, seed=seed)
    rows, ordered = _esu(G, k)
    assert len({tuple(sorted(r)) for r in rows.tolist()}) == rows.size(0)  # no duplicates
    assert ordered.tolist() == [list(c) for c in connected_oracle(G, k)]


def test_sort_rows_wide_ids_uses_stable_passes():
    rows = torch.tensor([[9, 2**40, 3], [2**40, 1, 2], [1, 2, 2**41]])
    out = sort_rows(rows, 2**42)  # (2**42)**3 overflows an int64 key
    assert out.tolist() == [[1, 2, 2**40], [1, 2, 2**41], [3, 9, 2**40]]


@pytest.mark.parametrize('dense', [True, False])
def test_edge_ids_prefers_forward_then_smallest(dense, monkeypatch):
    monkeypatch.setattr(connected, 'DENSE_LIMIT', 1 << 20 if dense else 0)
    lookup = PairLookup(torch.tensor([0, 2, 5]), 5)  # graphs {0, 1} and {2, 3, 4}
    assert lookup.dense == dense
    # 1->0, 0->1 twice, 4->2, 3->4 and 4->3, loop 3->3
    edge_index = torch.tensor([[1, 0, 4, 0, 3, 4, 3], [0, 1, 2, 1, 4, 3, 3]])
    u, w = torch.tensor([0, 2, 2, 3, 3]), torch.tensor([1, 3, 4, 4, 3])
    assert edge_ids(edge_id_table(edge_index, lookup), u, w).tolist() == [1, -1, 2, 4, 6]
    empty = edge_id_table(torch.empty(2, 0, dtype=torch.long), lookup)
    assert edge_ids(empty, u, w).tolist() == [-1] * 5


@pytest.mark.parametrize('dense', [True, False])
def test_esu_dense_and_sparse_lookups_agree(dense, monkeypatch):
    monkeypatch.setattr(connected, 'DENSE_LIMIT', 1 << 20 if dense else 0)
    G = nx.gnp_random_graph(10, 0.4, seed=11)
    data = graph_from_nx(G)
    lookup = PairLookup(torch.tensor([0, 10]), 10)
    adj = undirected_adjacency(data.edge_index, 10, lookup)
    rows = sort_rows(connected_sets(adj, torch.arange(10), 4), 10)
    assert rows.tolist() == [list(c) for c in connected_oracle(G, 4)]
