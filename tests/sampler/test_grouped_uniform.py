"""GroupedUniform: one vectorised call draws for every group what that group's own generator would give it."""
import pytest
import torch
from torch_geometric.sampler import NodeSamplerInput

from videograph.sampler import GroupedUniform, NeighborSampler, segment_sample
from videograph.sampler.segment_sample import FLOYD_MAX_K

from .conftest import CONTEXTUAL, SURROUNDING


def _generators(num, seed=0):
    return [torch.Generator().manual_seed(seed * 100 + g) for g in range(num)]


@pytest.mark.parametrize("size", [0, 3, 50])
def test_take_reads_each_groups_stream_in_order(size):
    streams = GroupedUniform(_generators(3), size=size)
    requests = [torch.tensor([2, 0, 0, 2, 1]), torch.tensor([], dtype=torch.long), torch.tensor([0] * 40 + [1, 2])]
    got = {g: [] for g in range(3)}
    for request in requests:
        values = streams.take(request)
        for g in range(3):
            got[g].append(values[request == g])
    for g, generator in enumerate(_generators(3)):     # the same seeds, read as one torch.rand per group
        drawn = torch.cat(got[g])
        assert torch.equal(drawn, torch.rand(drawn.numel(), dtype=torch.float64, generator=generator))


@pytest.mark.parametrize("replace", [False, True])
@pytest.mark.parametrize("method", ["auto", "floyd", "sort"])
def test_grouped_segment_sample_is_each_groups_own_call(method, replace):
    # Segments of 4 groups, interleaved; group 2 has quotas above FLOYD_MAX_K (sorted keys under "auto"),
    # group 3 no proper subset (draws nothing, so its later draws are unaffected).
    rng = torch.Generator().manual_seed(5)
    group = torch.tensor([0, 1, 0, 2, 1, 2, 0, 3, 1, 0, 2, 3])
    count = torch.randint(0, 60, (group.numel(), ), generator=rng)
    k = torch.randint(0, 6, (group.numel(), ), generator=rng)
    k[group == 2] = FLOYD_MAX_K + 3
    count[group == 3], k[group == 3] = 2, 5
    k[4] = -1
    streams = GroupedUniform(_generators(4, 1), size=8)
    expected_generators = _generators(4, 1)
    for _ in range(2):                                   # twice: the streams carry on where they stopped
        segment, offset, num = segment_sample(count, k, replace, streams, method, group=group)
        for g in range(4):
            rows = (group == g).nonzero().view(-1)
            s, o, n = segment_sample(count[rows], k[rows], replace, expected_generators[g], method)
            assert torch.equal(num[rows], n)
            mine = (group[segment] == g)
            assert torch.equal(offset[mine], o)
            assert torch.equal(rows[s], segment[mine])


@pytest.mark.parametrize("num_neighbors,quotas", [([4, 4], {CONTEXTUAL: 8, SURROUNDING: 2}),
                                                  ([3, 2, 2], {CONTEXTUAL: 40, SURROUNDING: 1}),
                                                  ([40], None)])
def test_neighbor_sampler_draws_each_video_as_alone(make_proposal_batch, num_neighbors, quotas):
    batch = make_proposal_batch(num_videos=4, num_proposals=80, seed=3)
    seeds = [torch.randint(0, 80, (6, ), generator=torch.Generator().manual_seed(v)) for v in range(4)]
    grouped = NeighborSampler(batch, num_neighbors, edge_types=quotas,
                              generator=GroupedUniform(_generators(4, 2), batch.batch))
    seed = torch.cat([s + int(batch.ptr[v]) for v, s in enumerate(seeds)])
    out = grouped.sample_from_nodes(NodeSamplerInput(torch.arange(seed.numel()), seed))
    hop = torch.arange(len(out.num_sampled_nodes)).repeat_interleave(torch.tensor(out.num_sampled_nodes))
    edge_hop = torch.arange(len(out.num_sampled_edges)).repeat_interleave(torch.tensor(out.num_sampled_edges))
    video, edge_video = batch.batch[out.node], batch.batch[out.node[out.col]]
    for v, generator in enumerate(_generators(4, 2)):
        graph = batch.get_example(v)
        alone = NeighborSampler(graph, num_neighbors, edge_types=quotas, generator=generator)
        ref = alone.sample_from_nodes(NodeSamplerInput(torch.arange(6), seeds[v]))
        ref_hop = torch.arange(len(ref.num_sampled_nodes)).repeat_interleave(torch.tensor(ref.num_sampled_nodes))
        for h in range(len(num_neighbors) + 1):
            nodes = out.node[(video == v) & (hop == h)] - int(batch.ptr[v])
            assert torch.equal(nodes, ref.node[ref_hop == h])
        for h in range(len(num_neighbors)):
            mine = (edge_video == v) & (edge_hop == h)
            ref_h = torch.arange(len(ref.num_sampled_edges)).repeat_interleave(
                torch.tensor(ref.num_sampled_edges)) == h
            pairs = torch.stack([out.node[out.row[mine]], out.node[out.col[mine]]]) - int(batch.ptr[v])
            assert torch.equal(pairs, torch.stack([ref.node[ref.row[ref_h]], ref.node[ref.col[ref_h]]]))
            edge_offset = int(batch._slice_dict["edge_index"][v])
            assert torch.equal(out.edge[mine] - edge_offset, ref.edge[ref_h])


def test_bad_inputs(make_proposal_batch):
    with pytest.raises(TypeError, match="generators"):
        GroupedUniform([])
    with pytest.raises(ValueError, match="size"):
        GroupedUniform(_generators(2), size=-1)
    with pytest.raises(ValueError, match="group ids in"):
        GroupedUniform(_generators(2), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="'group'"):
        segment_sample(torch.tensor([5, 5]), 2, generator=GroupedUniform(_generators(2)))
    batch = make_proposal_batch(num_videos=2)
    sampler = NeighborSampler(batch, [2], generator=GroupedUniform(_generators(2)))
    with pytest.raises(ValueError, match="one group id per node"):
        sampler.sample_from_nodes(NodeSamplerInput(torch.arange(2), torch.tensor([0, 70])))
