import pytest
import torch
import torch.nn.functional as F
from torch_geometric.loader import LinkLoader, NodeLoader
from torch_geometric.nn import SAGEConv

from videograph.nn import PGCN
from videograph.sampler import NeighborLoader, NeighborSampler

CONTEXTUAL, SURROUNDING = 3, 4  # videograph.graph.EdgeType values


def _check_minibatch(mb, data, edge_key="edge_index"):
    seeds = mb.n_id[:mb.batch_size]
    assert torch.equal(mb.x, data.x[mb.n_id])
    assert torch.equal(mb.y, data.y[mb.n_id])
    assert torch.equal(mb.n_id[mb.edge_index], data[edge_key][:, mb.e_id])  # real edges, local ids
    assert mb.n_id.unique().numel() == mb.n_id.numel()
    assert mb.num_nodes == mb.n_id.numel() == sum(mb.num_sampled_nodes)
    assert mb.edge_index.size(1) == sum(mb.num_sampled_edges)
    return seeds


def test_pyg_node_loader_yields_ordinary_minibatches(make_proposal_batch):
    # A plain Data: on a Batch, PyG's NodeLoader reads `batch_size` from Batch's property
    # (the number of graphs) and overwrites `batch`; NeighborLoader below handles that case.
    data = make_proposal_batch(num_videos=1, num_proposals=100).to_data_list()[0]
    sampler = NeighborSampler(data, [4, 4], generator=torch.Generator().manual_seed(0))
    input_nodes = torch.arange(0, data.num_nodes, 2)
    loader = NodeLoader(data, node_sampler=sampler, input_nodes=input_nodes, batch_size=16)
    seen = []
    for mb in loader:
        seeds = _check_minibatch(mb, data)
        assert torch.equal(mb.edge_weight, data.edge_weight[mb.e_id])
        assert torch.equal(mb.edge_type, data.edge_type[mb.e_id])
        assert torch.equal(seeds, input_nodes[mb.input_id])
        seen.append(seeds)
    assert torch.equal(torch.cat(seen), input_nodes)


def test_neighbor_loader_keeps_video_membership_and_drops_full_graph_edge_sets(make_proposal_batch):
    data = make_proposal_batch()
    data.video_label = torch.tensor([7, 8, 9])  # graph-level: one entry per video
    loader = NeighborLoader(data, [4, 4], batch_size=20, shuffle=True, generator=torch.Generator().manual_seed(1))
    seen = []
    for mb in loader:
        seen.append(_check_minibatch(mb, data))
        assert torch.equal(mb.batch, data.batch[mb.n_id])
        assert torch.equal(mb.video_label, data.video_label)
        assert torch.equal(mb.segments, data.segments[mb.n_id])
        assert torch.equal(mb.edge_weight, data.edge_weight[mb.e_id])
        for key in ("ptr", "contextual_edge_index", "surrounding_edge_index"):
            assert key not in mb
    assert sorted(torch.cat(seen).tolist()) == list(range(data.num_nodes))
    assert repr(loader).startswith("NeighborLoader(NeighborSampler(num_neighbors=[4, 4]")


def test_neighbor_loader_over_another_edge_set_slices_its_attributes(make_proposal_batch):
    data = make_proposal_batch(num_videos=2)
    data.contextual_edge_weight = torch.rand(data.contextual_edge_index.size(1))
    loader = NeighborLoader(data, [3, 3], edge_key="contextual_edge_index", batch_size=32,
                            generator=torch.Generator().manual_seed(2))
    for mb in loader:
        _check_minibatch(mb, data, edge_key="contextual_edge_index")
        assert torch.equal(mb.edge_weight, data.contextual_edge_weight[mb.e_id])
        assert "edge_type" not in mb  # belonged to the merged edge set
        assert bool(torch.isin(mb.e_id, torch.arange(data.contextual_edge_index.size(1))).all())


def test_neighbor_loader_with_edge_type_quotas(make_proposal_batch):
    data = make_proposal_batch(num_videos=2)
    loader = NeighborLoader(data, [2, 2], edge_types={CONTEXTUAL: 3, SURROUNDING: 1}, batch_size=40,
                            generator=torch.Generator().manual_seed(3))
    for mb in loader:
        _check_minibatch(mb, data)
        assert torch.equal(mb.edge_type, data.edge_type[mb.e_id])
        fanout = torch.bincount(mb.edge_index[1], minlength=mb.num_nodes)
        assert bool((fanout <= 2).all())


def test_neighbor_loader_rejects_float_input_nodes(make_proposal_batch):
    with pytest.raises(ValueError, match="input_nodes"):
        NeighborLoader(make_proposal_batch(), [2], input_nodes=torch.tensor([0.0, 1.0]))


def test_link_loader_samples_around_both_end_points(make_proposal_batch):
    data = make_proposal_batch(num_videos=2)
    sampler = NeighborSampler(data, [3], generator=torch.Generator().manual_seed(4))
    edge_label_index = data.edge_index[:, :10]
    loader = LinkLoader(data, link_sampler=sampler, edge_label_index=edge_label_index, batch_size=5)
    for mb in loader:
        assert torch.equal(mb.n_id[mb.edge_index], data.edge_index[:, mb.e_id])
        assert torch.equal(mb.n_id[mb.edge_label_index], edge_label_index[:, mb.input_id])


class SAGE(torch.nn.Module):
    def __init__(self, in_channels, hidden_channels, out_channels):
        super().__init__()
        self.conv1 = SAGEConv(in_channels, hidden_channels)
        self.conv2 = SAGEConv(hidden_channels, out_channels)

    def forward(self, x, edge_index, edge_weight=None):
        return self.conv2(self.conv1(x, edge_index).relu(), edge_index)


class PGCNClassifier(torch.nn.Module):
    def __init__(self, in_channels, hidden_channels, out_channels):
        super().__init__()
        self.encoder = PGCN(in_channels, hidden_channels, num_layers=2)
        self.head = torch.nn.Linear(2 * in_channels, out_channels)

    def forward(self, x, edge_index, edge_weight=None):
        return self.head(self.encoder(x, edge_index, edge_weight))


@pytest.mark.parametrize("model_cls", [SAGE, PGCNClassifier])
def test_models_train_on_sampled_proposal_minibatches(make_proposal_batch, model_cls):
    torch.manual_seed(0)
    data = make_proposal_batch(num_videos=4, num_proposals=60, num_classes=4, num_features=8)
    model = model_cls(8, 16, 4)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    loader = NeighborLoader(data, [4, 4], batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(5))

    def full_graph_loss():  # no sampling at test time, as in P-GCN
        model.eval()
        with torch.no_grad():
            return F.cross_entropy(model(data.x, data.edge_index, data.edge_weight.clamp(min=0)), data.y).item()

    before = full_graph_loss()
    for _ in range(4):
        for mb in loader:
            model.train()
            optimizer.zero_grad()
            out = model(mb.x, mb.edge_index, mb.edge_weight.clamp(min=0))[:mb.batch_size]
            F.cross_entropy(out, mb.y[:mb.batch_size]).backward()
            optimizer.step()
    after = full_graph_loss()
    print(f"{model_cls.__name__}: full-graph loss {before:.3f} -> {after:.3f}")
    assert after < 0.7 * before, (before, after)


def test_workers_draw_independent_reproducible_streams(make_proposal_batch):
    data = make_proposal_batch(num_videos=1, num_proposals=40)
    hub = int(torch.bincount(data.edge_index[1]).argmax())  # many neighbours: two draws rarely agree

    def epoch(seed):
        loader = NeighborLoader(data, [3], input_nodes=torch.full((64, ), hub), batch_size=16, num_workers=2,
                                generator=torch.Generator().manual_seed(seed))
        return [mb.e_id for mb in loader]

    first, again, other = epoch(0), epoch(0), epoch(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    # Batches 0 and 1 went to different workers with copies of one generator state.
    assert not torch.equal(first[0], first[1])
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


def test_neighbor_loader_without_sampling_takes_whole_neighbourhoods(make_proposal_batch):
    data = make_proposal_batch(num_videos=2)
    loader = NeighborLoader(data, [2], batch_size=50, sample=False)
    in_degree = torch.bincount(data.edge_index[1], minlength=data.num_nodes)
    for mb in loader:
        fanout = torch.bincount(mb.edge_index[1], minlength=mb.num_nodes)[:mb.batch_size]
        assert torch.equal(fanout, in_degree[mb.n_id[:mb.batch_size]])


def test_worker_streams_follow_the_sampler_generator_not_the_global_rng(make_proposal_batch):
    # PyG's NodeLoader given only the sampler's generator: the loader's worker seeds then come from the
    # global RNG, which must not decide the draws (the user's seed must).
    data = make_proposal_batch(num_videos=1, num_proposals=40).to_data_list()[0]
    hub = int(torch.bincount(data.edge_index[1]).argmax())  # many neighbours: two draws rarely agree

    def epoch(seed, global_seed):
        sampler = NeighborSampler(data, [3], generator=torch.Generator().manual_seed(seed))
        loader = NodeLoader(data, node_sampler=sampler, input_nodes=torch.full((64, ), hub), batch_size=16,
                            num_workers=2)
        with torch.random.fork_rng():
            torch.manual_seed(global_seed)
            return [mb.e_id for mb in loader]

    first, again, other = epoch(0, global_seed=1), epoch(0, global_seed=2), epoch(1, global_seed=1)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], first[1])  # batches 0 and 1 went to different workers
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


@pytest.mark.parametrize("share_generator", [False, True])
@pytest.mark.parametrize("persistent_workers", [False, True])
def test_worker_streams_change_between_epochs(make_proposal_batch, persistent_workers, share_generator):
    # share_generator=False: only the sampler has the generator, so nothing advances it in the main process.
    data = make_proposal_batch(num_videos=1, num_proposals=40).to_data_list()[0]
    hub = int(torch.bincount(data.edge_index[1]).argmax())

    def epochs(seed):
        generator = torch.Generator().manual_seed(seed)
        sampler = NeighborSampler(data, [3], generator=generator)
        loader = NodeLoader(data, node_sampler=sampler, input_nodes=torch.full((64, ), hub), batch_size=16,
                            num_workers=2, persistent_workers=persistent_workers,
                            generator=generator if share_generator else None)
        return [[mb.e_id for mb in loader] for _ in range(2)]

    (first, second), (again_first, again_second) = epochs(0), epochs(0)
    assert not all(torch.equal(a, b) for a, b in zip(first, second))
    assert all(torch.equal(a, b) for a, b in zip(first + second, again_first + again_second))
