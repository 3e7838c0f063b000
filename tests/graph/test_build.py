import pytest
import torch
from torch_geometric.data import Batch
from torch_geometric.nn import GraphConv, RGCNConv

from videograph import EdgeType, Proposals, Regions, Tubelets, build_graph
from videograph.graph import EDGE_KINDS


def tubelets(generator, n=5):
    corner = torch.rand(n, 2, 2, generator=generator) * 20
    return Tubelets(torch.cat([corner, corner + 4], -1), torch.zeros(n, dtype=torch.long),
                    torch.randn(n, 3, generator=generator), frame_size=(32, 32), label=1)


def regions(generator, n=8):
    corner = torch.rand(n, 2, generator=generator) * 10
    return Regions(torch.cat([corner, corner + 8], -1), torch.arange(n) // 2, torch.randn(n, 3, generator=generator),
                   frame_size=(32, 32))


def proposals(generator, n=12):
    start = torch.rand(n, generator=generator) * 20
    return Proposals(torch.stack([start, start + 2 + 5 * torch.rand(n, generator=generator)], 1),
                     torch.randn(n, 3, generator=generator))


MAKERS = [tubelets, regions, proposals]


@pytest.mark.parametrize("make", MAKERS)
def test_merged_edges_concatenate_the_kinds(generator, make):
    video = make(generator)
    data = build_graph(video)
    kinds = EDGE_KINDS[type(video)]
    assert torch.equal(data.edge_index, torch.cat([data[f"{k}_edge_index"] for k in kinds], 1))
    expected_type = torch.cat([torch.full((data[f"{k}_edge_index"].size(1),), EdgeType[k.upper()].value)
                               for k in kinds])
    assert torch.equal(data.edge_type, expected_type)
    assert data.edge_weight.shape == (data.edge_index.size(1),)


@pytest.mark.parametrize("make", MAKERS)
def test_batch_offsets_every_index_key(generator, make):
    videos = [make(generator), make(generator), make(generator)]
    graphs = [build_graph(v) for v in videos]
    batch = build_graph(videos)
    assert isinstance(batch, Batch) and batch.num_graphs == 3
    index_keys = [key for key in graphs[0].keys() if "index" in key]
    assert "edge_index" in index_keys and len(index_keys) >= 2
    offset = 0
    for g, graph in enumerate(graphs):
        for key in index_keys:
            parts = batch[key].split([h[key].size(1) for h in graphs], dim=1)
            assert torch.equal(parts[g], graph[key] + offset), key
        offset += graph.num_nodes
    assert torch.equal(batch.ptr, torch.tensor([0] + [sum(h.num_nodes for h in graphs[:i + 1]) for i in range(3)]))


@pytest.mark.parametrize("make", MAKERS)
def test_pyg_convs_consume_the_graph(generator, make):
    data = build_graph(make(generator))
    # GraphConv, not GCNConv: cosine weights may be negative, which GCN's degree normalisation cannot take.
    out = GraphConv(3, 4)(data.x, data.edge_index, data.edge_weight)
    assert out.shape == (data.num_nodes, 4) and torch.isfinite(out).all()
    out = RGCNConv(3, 4, num_relations=len(EdgeType))(data.x, data.edge_index, data.edge_type)
    assert out.shape == (data.num_nodes, 4)


def test_edges_option_selects_kinds(generator):
    data = build_graph(proposals(generator), edges=["surrounding"])
    assert "contextual_edge_index" not in data
    assert bool((data.edge_type == EdgeType.SURROUNDING).all())


@pytest.mark.parametrize("call, error, match", [
    (lambda g: build_graph(proposals(g), edges=["front"]), ValueError, "'edges'"),
    (lambda g: build_graph([]), ValueError, "'video'"),
    (lambda g: build_graph([proposals(g), regions(g)]), TypeError, "'video' mixes"),
    (lambda g: build_graph(torch.zeros(3, 2)), TypeError, "'video' must be"),
    (lambda g: build_graph(regions(g), theta_ctx=0.5), TypeError, "do not take"),
])
def test_bad_calls(generator, call, error, match):
    with pytest.raises(error, match=match):
        call(generator)
