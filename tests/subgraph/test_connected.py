import networkx as nx
import pytest
import torch

from videograph.subgraph.connected import connected_sets, edge_ids, sort_rows, undirected_adjacency

from .conftest import connected_oracle, graph_from_nx


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


def test_edge_ids_prefers_forward_then_smallest():
    edge_index = torch.tensor([[1, 0, 2, 0, 3], [0, 1, 0, 1, 3]])  # 1->0, 0->1 twice, 2->0, loop
    u, w = torch.tensor([0, 0, 1, 3]), torch.tensor([1, 2, 2, 3])
    assert edge_ids(edge_index, 4, u, w).tolist() == [1, 2, -1, 4]
    assert edge_ids(torch.empty(2, 0, dtype=torch.long), 4, u, w).tolist() == [-1] * 4
