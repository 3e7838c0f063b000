"""MUSLE under DDP: two gloo ranks equal one process on the union of their batches (mixture statistics synced)."""
import pytest
import torch
import torch.multiprocessing as mp
from torch.utils.data import DistributedSampler
from torch_geometric.data import Batch

from videograph.distributed import GlobalLoss
from videograph.launch import build_model, cast_graphs, spawn_worker, synthetic_graphs

BATCH, RANKS, CLASSES, SEED = 4, 2, 9, 3
# fit_top=None: with fit_top=1 a mixture fitted on one sub-graph has a zero membership gradient, whose
# rounding noise Adam scales up to ~lr * 1e-6 (one process, its batch reordered, moves by 1.4e-8 in one step).
OPTIONS = dict(ce_start=1, train_subgraphs=16, fit_top=None, scale_reduce="max", prune_threshold=0.12)


@pytest.fixture(scope="module")
def graphs():
    return cast_graphs(synthetic_graphs("musle", 16, seed=SEED), torch.float64)


def _epoch_batches(graphs, epoch):
    """The indices each rank's sampler gives it, per step, in ``epoch``."""
    per_rank = []
    for rank in range(RANKS):
        sampler = DistributedSampler(graphs, RANKS, rank, shuffle=True, seed=SEED, drop_last=True)
        sampler.set_epoch(epoch)
        indices = list(sampler)
        per_rank.append([indices[i:i + BATCH] for i in range(0, len(indices), BATCH)])
    return per_rank


def _reference(graphs, epochs, options):
    """One process, batch K*B: at every step the union of the ranks' batches; end_epoch on the whole set."""
    net = build_model("musle", graphs[0], CLASSES, SEED, options).double()
    step = GlobalLoss(net)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for epoch in range(epochs):
        net.train()
        per_rank = _epoch_batches(graphs, epoch)
        for t in range(len(per_rank[0])):
            out = step(Batch.from_data_list([graphs[i] for rank in range(RANKS) for i in per_rank[rank][t]]))
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
        net.end_epoch(graphs)
    return net.state_dict()


def _run_ranks(graphs, tmp_path, epochs, options):
    kwargs = dict(model="musle", graphs=graphs, epochs=epochs, batch_size=BATCH, dtype="float64", seed=SEED,
                  out=str(tmp_path), num_classes=CLASSES, progress=False, rank_states=True, model_options=options)
    mp.spawn(spawn_worker, args=(RANKS, str(tmp_path / "init"), kwargs), nprocs=RANKS, join=True)
    return [torch.load(tmp_path / f"model_rank{r}.pt", weights_only=True) for r in range(RANKS)]


def _worst(a, b):
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in b if b[k].is_floating_point())


def _disjoint_classes(graphs):
    """Relabelled copies: in epoch 0 rank 0 holds only classes 0-3 and rank 1 only classes 4-8."""
    graphs = [g.clone() for g in graphs]
    for rank, batches in enumerate(_epoch_batches(graphs, 0)):
        for t, batch in enumerate(batches):
            for j, i in enumerate(batch):
                graphs[i].y = torch.tensor([(t + j) % 4 if rank == 0 else 4 + (t + j) % 5])
    return graphs


def test_two_gloo_ranks_equal_one_process_on_the_union(graphs, tmp_path):
    """Epoch 0: the batches move the mixtures (eq. 4 moments all-reduced), the ranks hold disjoint classes; its
    end: refit on each rank's share, prune; epoch 1: frozen mixtures, cross-entropy."""
    graphs = _disjoint_classes(graphs)
    ranks = _run_ranks(graphs, tmp_path, epochs=2, options=OPTIONS)
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), key             # ranks bitwise equal
    reference = _reference(graphs, 2, OPTIONS)
    assert set(reference) == set(ranks[0]) and any(k.endswith("running_mu") for k in reference)
    assert _worst(ranks[0], reference) <= 1e-8                           # parameters and running buffers
    for key in reference:                                                # masks and counters exactly
        if not reference[key].is_floating_point():
            assert torch.equal(ranks[0][key], reference[key]), key
    initial = build_model("musle", graphs[0], CLASSES, SEED, OPTIONS).double().state_dict()
    assert _worst(initial, reference) > 1e-4                             # it did train
    assert any(not bool(v.all()) for k, v in reference.items() if k.endswith(".active"))   # prune_ acted


def test_learned_calibration_is_the_same_on_every_rank(graphs, tmp_path):
    """scale_reduce="learned": calibrate_ gathers every rank's scores, so the ranks fit the same map. That map
    is an LBFGS fit on separable scores, which amplifies rounding (one process with its union batches
    reordered moves it by O(10)), so it is compared across ranks only; the rest against one process."""
    options = dict(OPTIONS, scale_reduce="learned")
    ranks = _run_ranks(graphs, tmp_path, epochs=1, options=options)
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), key
    assert float(ranks[0]["bank.scale_log_weight"].abs().max()) > 0      # calibrated at the epoch's end
    reference = _reference(graphs, 1, options)
    rest = {k: v for k, v in reference.items() if not k.startswith("bank.scale_")}
    assert _worst(ranks[0], rest) <= 1e-8
