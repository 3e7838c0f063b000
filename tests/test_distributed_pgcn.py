"""P-GCN under DDP: two gloo ranks equal one process on the union of their videos (issue 15)."""
import json
import os

import pytest
import torch
import torch.multiprocessing as mp

from videograph.datasets import GraphStore
from videograph.distributed import GlobalLoss
from videograph.launch import build_model, cast_graphs, spawn_worker, synthetic_graphs, train
from videograph.launch_pgcn import check_graphs
from videograph.models.pgcn_loss import global_pgcn_loss, pgcn_loss
from videograph.models.pgcn_sample import KeyedSampleCollate, sample_videos

BATCH, STEPS, RANKS, VIDEOS, SEED = 4, 3, 2, 13, 3


@pytest.fixture(scope="module")
def graphs():
    return cast_graphs(synthetic_graphs("pgcn", VIDEOS, seed=SEED), torch.float64)


def _reference(graphs, world_size, steps, batch_size, seed, rank_batches, lr=1e-2):
    """One process, batch K*B: at every step the union of the K ranks' videos, sampled with the same keys."""
    net = build_model("pgcn", graphs[0], 6, seed).double()
    step, collate = GlobalLoss(net), KeyedSampleCollate(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    done, epoch = 0, 0
    while done < steps:
        per_rank = rank_batches(len(graphs), world_size, batch_size, seed, epoch)
        collate.set_epoch(epoch)
        for t in range(len(per_rank[0])):
            union = [graphs[i] for rank in range(world_size) for i in per_rank[rank][t]]
            out = step(collate(union))
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
            done += 1
            if done == steps:
                break
        epoch += 1
    return net.state_dict()


def test_two_gloo_ranks_equal_one_process_on_the_union(graphs, tmp_path, rank_batches):
    # 13 videos on 2 ranks (uneven: drop_last leaves 6 each), batches of 4 then 2 on both ranks: 3 steps cross an
    # epoch (a new permutation and new keys) and a short batch, and every rank finishes
    kwargs = dict(model="pgcn", graphs=graphs, steps=STEPS, epochs=None, batch_size=BATCH, dtype="float64",
                  seed=SEED, out=str(tmp_path), num_classes=6, progress=False, rank_states=True)
    mp.spawn(spawn_worker, args=(RANKS, str(tmp_path / "init"), kwargs), nprocs=RANKS, join=True)
    ranks = [torch.load(tmp_path / f"model_rank{r}.pt", weights_only=True) for r in range(RANKS)]
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), key             # ranks bitwise equal
    reference = _reference(graphs, RANKS, STEPS, BATCH, SEED, rank_batches)
    worst = max(float((ranks[0][k] - reference[k]).abs().max()) for k in reference)
    assert worst <= 1e-8
    initial = build_model("pgcn", graphs[0], 6, SEED).double().state_dict()
    assert max(float((initial[k] - reference[k]).abs().max()) for k in initial) > 1e-3   # it did train
    model = torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(torch.equal(model[k], ranks[0][k]) for k in model)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["steps"] == STEPS and metrics["world_size"] == 2 and metrics["epoch"] == 2
    # the count is the activity seeds: every video gives at least its foreground and background one
    assert metrics["graphs"] >= 2 * 2 and 0.0 <= metrics["train_accuracy"] <= 1.0


@pytest.mark.parametrize("epoch", [0, 4])
def test_a_videos_draws_do_not_depend_on_its_batch(graphs, epoch):
    collate = KeyedSampleCollate(SEED)
    collate.set_epoch(epoch)
    model = build_model("pgcn", graphs[0], 6, 0).double().eval()
    alone = {i: model(collate([graphs[i]])) for i in (0, 4, 7)}
    for order in ([0, 4, 7], [7, 0, 4]):
        merged = collate([graphs[i] for i in order])
        size = int(merged.batch_size)
        assert size == 8 * len(order) and bool((merged.kind[:size] >= 0).all())
        outputs = model(merged)
        for position, i in enumerate(order):
            mine = merged.batch[:size] == position
            for got, expected in zip(outputs, alone[i]):
                torch.testing.assert_close(got[mine], expected, rtol=0, atol=1e-12)
    other = KeyedSampleCollate(SEED)
    other.set_epoch(epoch + 1)
    assert not torch.equal(other([graphs[0]]).x, collate([graphs[0]]).x)       # a new epoch, new draws


@pytest.mark.parametrize("num_neighbors,quotas", [((4, 4), {"contextual": 8, "surrounding": 2}),
                                                  ((40, 2), {"contextual": 40, "surrounding": 1})])
def test_a_videos_draws_are_those_of_its_keyed_generator_alone(graphs, num_neighbors, quotas):
    # Oracle: the video alone, its seeds (sample_proposals) then its neighbourhoods (NeighborSampler) drawn in
    # that order from keyed_generator(seed, epoch, video_id); the batch holds them hop by hop, video by video.
    from torch_geometric.sampler import NodeSamplerInput
    from videograph.distributed import keyed_generator
    from videograph.graph import EdgeType
    from videograph.models.pgcn_targets import sample_proposals
    from videograph.sampler import NeighborSampler

    order = [6, 1, 11, 3]
    merged = sample_videos([graphs[i] for i in order], seed=5, epoch=2, num_neighbors=num_neighbors, quotas=quotas)
    hop = torch.arange(len(merged.num_sampled_nodes)).repeat_interleave(torch.tensor(merged.num_sampled_nodes))
    types = {int(EdgeType[k.upper()]): q for k, q in quotas.items()}
    for position, i in enumerate(order):
        graph, generator = graphs[i], keyed_generator(5, 2, int(graphs[i].video_id))
        seeds, kind = sample_proposals(graph.category, torch.zeros(graph.num_nodes, dtype=torch.long), 1,
                                       generator=generator)
        alone = NeighborSampler(graph, list(num_neighbors), edge_types=types, generator=generator)
        ref = alone.sample_from_nodes(NodeSamplerInput(torch.arange(seeds.numel()), seeds))
        ref_hop = torch.arange(len(ref.num_sampled_nodes)).repeat_interleave(torch.tensor(ref.num_sampled_nodes))
        offset = sum(graphs[j].num_nodes for j in order[:position])
        for h in range(len(num_neighbors) + 1):
            mine = (merged.batch == position) & (hop == h)
            assert torch.equal(merged.n_id[mine] - offset, ref.node[ref_hop == h])
        assert torch.equal(merged.kind[:merged.batch_size][merged.batch[:merged.batch_size] == position], kind)


def test_hop_major_layout_matches_the_untrimmed_graph(graphs):
    alone = [sample_videos([graphs[i]], seed=0, epoch=0) for i in range(4)]
    merged = sample_videos(graphs[:4], seed=0, epoch=0)
    assert merged.num_sampled_nodes == [sum(s.num_sampled_nodes[h] for s in alone) for h in range(3)]
    assert merged.num_sampled_edges == [sum(s.num_sampled_edges[h] for s in alone) for h in range(2)]
    assert merged.num_nodes == sum(s.num_nodes for s in alone) == merged.x.size(0)
    # the seeds come first, video by video, as each video's own sample has them
    size = int(merged.batch_size)
    assert torch.equal(merged.x[:size], torch.cat([s.x[:s.batch_size] for s in alone]))
    assert torch.equal(merged.kind[:size], torch.cat([s.kind[:s.batch_size] for s in alone]))
    # trimmed layer by layer (hop by hop) or computed on the whole sampled graph: the same seed outputs
    model = build_model("pgcn", graphs[0], 6, 0).double().eval()
    trimmed = model(merged)
    full = merged.clone()
    del full.num_sampled_nodes, full.num_sampled_edges
    for a, b in zip(trimmed, model(full)):
        torch.testing.assert_close(a, b[:size], rtol=0, atol=1e-12)


def test_global_loss_in_one_process_is_the_batch_mean(graphs):
    batch = KeyedSampleCollate(0)(graphs[:5])
    model = build_model("pgcn", graphs[0], 6, 0).double()
    size = int(batch.batch_size)
    outputs = model(batch)
    args = (batch.kind[:size], batch.label[:size], batch.reg_target[:size], batch.batch[:size])
    share, counts = global_pgcn_loss(outputs, *args)
    mean, _ = pgcn_loss(outputs, *args)
    torch.testing.assert_close(share, mean, rtol=1e-14, atol=0)
    kind = args[0]
    assert counts[0] == int(((kind == 0) | (kind == 2)).sum()) and counts[2] == int((kind == 0).sum())


def test_a_store_of_training_graphs_trains_like_the_graphs(graphs, tmp_path):
    store = str(tmp_path / "store")
    GraphStore(store, graphs, progress=False)
    options = dict(epochs=None, steps=2, batch_size=4, dtype="float64", progress=False)
    runs = [train("pgcn", store, out=str(tmp_path / "a"), **options),
            train("pgcn", graphs=graphs, out=str(tmp_path / "b"), **options)]
    assert runs[0]["loss"] == runs[1]["loss"]
    a, b = (torch.load(tmp_path / d / "model.pt", weights_only=True) for d in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_proposal_list_store_is_refused_with_the_missing_keys(shared_data, tmp_path):
    from videograph.preprocess import preprocess
    text = open(os.path.join(shared_data, "pgcn/ssn_activitynet1.2_tag_val_normalized_proposal_list.txt")).read()
    listing = tmp_path / "list.txt"
    listing.write_text("".join("#" + block for block in text.split("#")[1:4]))
    preprocess(str(listing), "proposals", str(tmp_path / "store"), progress=False)
    with pytest.raises(ValueError, match=r"no \['x', 'x_ext', 'category'"):
        train("pgcn", str(tmp_path / "store"), out=str(tmp_path / "out"), progress=False)


def test_bad_inputs(graphs):
    with pytest.raises(ValueError, match="seed"):
        KeyedSampleCollate(-1)
    with pytest.raises(ValueError, match="quotas"):
        KeyedSampleCollate(0, quotas={"temporal_ctx": 3})
    with pytest.raises(ValueError, match="empty"):
        sample_videos([], seed=0, epoch=0)
    bare = graphs[0].clone()
    del bare.video_id
    with pytest.raises(ValueError, match="video_id"):
        sample_videos([graphs[1], bare], seed=0, epoch=0)
    twice = [graphs[0], graphs[1].clone()]
    twice[1].video_id = graphs[0].video_id.clone()
    with pytest.raises(ValueError, match="distinct"):
        check_graphs(twice)


def test_fit_pgcn_draws_what_train_draws(graphs, tmp_path):
    # fit_pgcn's one-replica order and keyed collate: one epoch of batches of 4 equals `train` in one process
    from torch_geometric.data import Batch
    from videograph.models.pgcn_train import PGCNTrainConfig, fit_pgcn

    train("pgcn", graphs=graphs, epochs=1, batch_size=4, dtype="float64", seed=2, out=str(tmp_path), num_classes=6,
          progress=False)
    launched = torch.load(tmp_path / "model.pt", weights_only=True)
    model = build_model("pgcn", graphs[0], 6, 2).double()
    fit_pgcn(model, Batch.from_data_list(graphs), PGCNTrainConfig(epochs=1, videos_per_batch=4, lr=1e-2,
                                                                  weight_decay=0.0, seed=2))
    assert max(float((model.state_dict()[k] - launched[k]).abs().max()) for k in launched) <= 1e-10
