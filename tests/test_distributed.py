"""STRG under DDP: two gloo ranks equal one process on the union of their batches; uneven inputs finish."""

import pytest
import torch
import torch.multiprocessing as mp
from torch_geometric.data import Batch

from videograph.distributed import GlobalLoss, all_reduce_sum, keyed_generator, world
from videograph.launch import build_model, cast_graphs, spawn_worker, synthetic_graphs, train

BATCH, STEPS, RANKS = 4, 5, 2


@pytest.fixture(scope="module")
def graphs():
    return cast_graphs(synthetic_graphs("strg", 27, seed=3), torch.float64)     # 27: uneven over 2 ranks


def _reference(graphs, world_size, steps, batch_size, seed, rank_batches, lr=1e-2):
    """One process, batch K*B: at every step the union of what the K ranks' samplers give them."""
    net = build_model("strg", graphs[0], 9, seed).double()
    step = GlobalLoss(net)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    done, epoch = 0, 0
    while done < steps:
        per_rank = rank_batches(len(graphs), world_size, batch_size, seed, epoch)
        for t in range(len(per_rank[0])):
            union = [graphs[i] for rank in range(world_size) for i in per_rank[rank][t]]
            out = step(Batch.from_data_list(union))
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
            done += 1
            if done == steps:
                break
        epoch += 1
    return net.state_dict()


def test_two_gloo_ranks_equal_one_process_on_the_union(graphs, tmp_path, rank_batches):
    kwargs = dict(model="strg", graphs=graphs, steps=STEPS, epochs=None, batch_size=BATCH, dtype="float64", seed=3,
                  out=str(tmp_path), num_classes=9, progress=False, rank_states=True)
    mp.spawn(spawn_worker, args=(RANKS, str(tmp_path / "init"), kwargs), nprocs=RANKS, join=True)
    ranks = [torch.load(tmp_path / f"model_rank{r}.pt", weights_only=True) for r in range(RANKS)]
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), key             # ranks bitwise equal
    reference = _reference(graphs, RANKS, STEPS, BATCH, 3, rank_batches)
    worst = max(float((ranks[0][k] - reference[k]).abs().max()) for k in reference if reference[k].is_floating_point())
    assert worst <= 1e-8
    initial = build_model("strg", graphs[0], 9, 3).double().state_dict()
    assert max(float((initial[k] - reference[k]).abs().max()) for k in initial) > 1e-4   # it did train
    model = torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(torch.equal(model[k], ranks[0][k]) for k in model)


def test_uneven_inputs_finish_with_equal_batches(graphs, tmp_path):
    # 27 graphs over 2 ranks: drop_last leaves 13 each; 13 / 4 gives 4 batches on both ranks, none waits
    kwargs = dict(model="strg", graphs=graphs, epochs=2, batch_size=BATCH, dtype="float64", seed=1,
                  out=str(tmp_path), num_classes=9, progress=False)
    mp.spawn(spawn_worker, args=(RANKS, str(tmp_path / "init"), kwargs), nprocs=RANKS, join=True)
    import json
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["graphs"] == 26 and metrics["steps"] == 8 and metrics["world_size"] == 2


def test_one_process_without_a_group(graphs, tmp_path):
    assert world() == (0, 1)
    value = torch.tensor([1.5])
    assert all_reduce_sum(value) is value
    metrics = train("strg", graphs=graphs, epochs=1, batch_size=8, dtype="float64", out=str(tmp_path), progress=False)
    assert metrics["graphs"] == 27 and metrics["world_size"] == 1
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(v.dtype == torch.float64 for v in state.values() if v.is_floating_point())


def test_keyed_generator_depends_on_every_key():
    draws = {key: torch.rand(3, generator=keyed_generator(*key)) for key in [(0, 0, 0), (0, 0, 1), (0, 1, 0),
                                                                            (1, 0, 0)]}
    assert len({tuple(v.tolist()) for v in draws.values()}) == 4
    assert torch.equal(torch.rand(3, generator=keyed_generator(0, 1, 0)), draws[(0, 1, 0)])


@pytest.mark.parametrize("kwargs, match", [(dict(epochs=1, steps=2), "exactly one"), (dict(epochs=0), "epochs"),
                                           (dict(dtype="float16"), "dtype"), (dict(model="gcn"), "model")])
def test_bad_arguments(graphs, kwargs, match, tmp_path):
    arguments = dict(model="strg", graphs=graphs, epochs=1, out=str(tmp_path), progress=False)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        train(**arguments)
