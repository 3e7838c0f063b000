"""MUSLE.loss_sum: what videograph.distributed.GlobalLoss (the module DDP wraps) trains, with sub-graphs keyed per
video."""
import pytest
import torch
from torch_geometric.data import Batch

from videograph.distributed import GlobalLoss, keyed_generator
from videograph.launch import build_model, cast_graphs, synthetic_graphs


@pytest.fixture(scope="module")
def graphs():
    return synthetic_graphs("musle", 6, seed=1)


def _model(graphs, **options):
    return build_model("musle", graphs[0], 9, 1, dict(dict(train_subgraphs=8, fit_top=None), **options)).double()


def _local(sub, b):
    """The sub-graphs of video b of a batch, as node ids local to the video."""
    rows = sub.batch == b
    return sub.nodes[rows] - sub.node_ptr[b]


def test_a_video_draws_the_same_subgraphs_in_any_batch(graphs):
    model = _model(graphs)
    draws = []
    for members in ([0, 3], [3, 5, 1]):
        batch = Batch.from_data_list([graphs[i] for i in members])
        generators = [keyed_generator(1, 0, int(v)) for v in batch.video_id]
        draws.append(model.sample_subgraphs(batch, generators))
    for k in model.scales:
        first, second = _local(draws[0][k], 1), _local(draws[1][k], 0)        # video 3 in both
        assert first.size(0) == 8 and torch.equal(first, second)
    other_epoch = model.sample_subgraphs(Batch.from_data_list([graphs[3]]), [keyed_generator(1, 1, 3)])
    assert any(not torch.equal(other_epoch[k].nodes, _local(draws[0][k], 1)) for k in model.scales)


def test_loss_sum_is_the_keyed_loss_times_the_count(graphs):
    model = _model(graphs, ce_start=None)
    batch = Batch.from_data_list(cast_graphs(graphs[:4], torch.float64))
    torch.manual_seed(0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    total, count, scores = model.loss_sum(batch)
    model.load_state_dict(state)   # loss moves the running estimates: start again from the same ones
    generators = [keyed_generator(model.sample_seed, 0, int(v)) for v in batch.video_id]
    loss, expected_scores = model.loss(batch, generators)
    assert count == 4
    torch.testing.assert_close(total / count, loss, rtol=1e-12, atol=0)
    torch.testing.assert_close(scores, expected_scores)
    model.load_state_dict(state)
    torch.testing.assert_close(GlobalLoss(model)(batch).loss, loss, rtol=1e-12, atol=0)


def test_loss_sum_needs_video_ids(graphs):
    model = _model(graphs)
    batch = Batch.from_data_list(graphs[:2])
    del batch.video_id
    with pytest.raises(ValueError, match="video_id"):
        model.loss_sum(batch)


def test_sample_seed_is_checked(graphs):
    with pytest.raises(ValueError, match="sample_seed"):
        _model(graphs, sample_seed=-1)
