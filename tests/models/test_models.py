import copy
import itertools

import pytest
import torch
from torch_geometric.data import Batch
from torch_geometric.nn import GATConv, GraphConv

import videograph as vg
from videograph.models import GCN, MUSLE, STRG, Base
from videograph.nn import PrototypeBank
from videograph.nn.functional import gmm_log_prob
from videograph.subgraph import enumerate_subgraphs, pair_nodes


def _tubelet_batch(sizes=(5, 4), channels=6, frames=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    graphs = []
    for label, n in enumerate(sizes):
        xy = torch.rand(n, frames, 2, generator=g) * 40
        boxes = torch.cat([xy, xy + 8 + torch.rand(n, frames, 2, generator=g) * 4], -1)
        clip = torch.arange(n) * 2 // n
        data = vg.build_graph(vg.Tubelets(boxes, clip, torch.randn(n, channels, generator=g), label=label,
                                          frame_size=(64, 64)))
        data.global_x = torch.randn(1, 3, generator=g)
        graphs.append(data)
    return Batch.from_data_list(graphs)


def _region_batch(channels=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    graphs = []
    for label in range(2):
        frame = torch.arange(3).repeat_interleave(3)
        xy = torch.rand(9, 2, generator=g) * 20 + frame[:, None] * 2.0
        boxes = torch.cat([xy, xy + 12], -1)
        data = vg.build_graph(vg.Regions(boxes, frame, torch.randn(9, channels, generator=g), label=label,
                                         frame_size=(48, 48)))
        data.global_x = torch.randn(1, 3, generator=g)
        graphs.append(data)
    return Batch.from_data_list(graphs)


def _musle(batch, **kwargs):
    torch.manual_seed(0)
    options = dict(scales=(2, 3), num_components=3, train_subgraphs=4)
    options.update(kwargs)
    return MUSLE(2, batch.x.size(1), batch.coord.size(1), **options)


@pytest.mark.parametrize("make", [
    lambda b, r: (Base(6, 2, global_channels=3), b),
    lambda b, r: (GCN(6, 2, edge_key="dense_edge_index"), b),
    lambda b, r: (GCN(6, 2, conv=lambda i, o: GraphConv(i, o), edge_key="dense_edge_index"), b),
    lambda b, r: (STRG(6, 2, global_channels=3), r),
    lambda b, r: (STRG(6, 2, conv=lambda i, o: GATConv(i, o), sim_conv=lambda i, o: GATConv(i, o)), r),
])
def test_forward_backward(make):
    torch.manual_seed(0)
    model, batch = make(_tubelet_batch(), _region_batch())
    out = model(batch)
    assert out.shape == (2, 2)
    out.logsumexp(-1).sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("options", [{}, dict(node_visual=False, edge_semantic=False), dict(node_coord=False),
                                     dict(background=True, scale_reduce="sum", aux_weight=1.0, fit_top=1,
                                          generative_features=False)])
def test_musle_forward_backward(options):
    batch = _tubelet_batch()
    model = _musle(batch, **options)
    loss, scores = model.loss(batch, torch.Generator().manual_seed(0))
    assert scores.shape == (2, 2) and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.node_encoder.parameters()] + [p.grad for p in model.pair_encoder.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    model.eval()
    assert model(batch).shape == (2, 2)


def test_fresh_strg_equals_its_input_pooling():
    batch = _region_batch()
    torch.manual_seed(0)
    model = STRG(6, 2, global_channels=3)
    counts = torch.bincount(batch.batch).float()[:, None]
    mean = torch.zeros(2, 6).index_add_(0, batch.batch, batch.x) / counts
    torch.testing.assert_close(model.embed(batch), torch.cat([mean, batch.global_x], -1))
    torch.testing.assert_close(model(batch), model.head(torch.cat([mean, batch.global_x], -1)))


def test_strg_similarity_branch_learns():
    batch = _region_batch()
    torch.manual_seed(0)
    model = STRG(6, 2, branches=("similarity",))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):   # the zero-initialised last layer blocks gradients to earlier layers for one step
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(batch), batch.y).backward()
        optimizer.step()
    for conv in model.sim_convs:
        assert conv.phi.weight.grad.abs().sum() > 0 and conv.phi_prime.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("options", [{}, dict(background=True, scale_reduce="sum"),
                                     dict(background=True, scale_reduce="learned")])
def test_musle_scores_equal_the_brute_force_maximum_over_materialised_subgraphs(options):
    batch = _tubelet_batch(sizes=(6, 5, 4))
    batch.y = torch.tensor([0, 1, 0])
    model = _musle(batch, train_subgraphs=100, **options)
    model.train()
    for step in range(3):   # move the running estimates away from their initial values
        model.loss(batch, torch.Generator().manual_seed(step))
    model.eval()
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        if options.get("scale_reduce") == "learned":
            model.bank.scale_log_weight.copy_(torch.randn(2, 2, generator=generator) * 0.5)
            model.bank.scale_bias.copy_(torch.randn(2, generator=generator))
        scores, best = model(batch, return_best=True)
        node_x, pair_x, ptr = model.encode(batch)

    def score(vector, c, k):
        m = model.bank.mixture(c, k)
        lp = gmm_log_prob(vector[None], m.running_phi, m.running_mu, m.running_cov, model.bank.eps)[0]
        return lp - score(vector, 2, k) if options and c < 2 else lp   # mixture 2: the background

    per_scale = torch.full((len(model.scales), 3, 2), -float("inf"))
    for s, k in enumerate(model.scales):
        for g in range(3):
            n0, n1 = int(ptr[g]), int(ptr[g + 1])
            for nodes in itertools.combinations(range(n0, n1), k):
                vector = torch.cat([node_x[list(nodes)].flatten()] + [
                    pair_x[_pair_id(ptr, g, u, w)] for u, w in itertools.combinations(nodes, 2)])
                for c in range(2):
                    per_scale[s, g, c] = torch.maximum(per_scale[s, g, c], score(vector, c, k))
    expected = {"max": per_scale.amax(0), "sum": per_scale.sum(0)}.get(options.get("scale_reduce", "max"))
    if expected is None:    # learned: positive weight per (scale, class), bias per class
        bank = model.bank
        expected = (bank.scale_log_weight.detach().exp()[:, None] * per_scale).sum(0) + bank.scale_bias.detach()
    torch.testing.assert_close(scores, expected, rtol=1e-4, atol=1e-3)
    assert torch.equal(model.predict(batch), expected.argmax(-1))
    # the reported best sub-graph is the one that attains the score
    for g, c in itertools.product(range(3), range(2)):
        k = int(best.scale[g, c])
        nodes = best.nodes[g, c, :k].tolist()
        assert (best.nodes[g, c, k:] == -1).all() and nodes == sorted(nodes)
        assert tuple(enumerate_subgraphs(batch, k).nodes[int(best.index[g, c])].tolist()) == tuple(nodes)
        vector = torch.cat([node_x[nodes].flatten()] + [pair_x[_pair_id(ptr, g, u, w)]
                                                        for u, w in itertools.combinations(nodes, 2)])
        torch.testing.assert_close(score(vector, c, k), per_scale[:, g, c].max(), rtol=1e-4, atol=1e-3)


def _pair_id(ptr, g, u, w):
    n = int(ptr[g + 1] - ptr[g])
    pair_offset = sum(int(ptr[h + 1] - ptr[h]) * (int(ptr[h + 1] - ptr[h]) - 1) // 2 for h in range(g))
    u, w = u - int(ptr[g]), w - int(ptr[g])
    return pair_offset + u * n - u * (u + 1) // 2 + (w - u - 1)


def test_pair_id_helper_agrees_with_pair_nodes():
    ptr = torch.tensor([0, 4, 7])
    pairs = pair_nodes(ptr)
    for index, (u, w) in enumerate(pairs.tolist()):
        assert _pair_id(ptr, int(u >= 4), u, w) == index


def test_musle_state_dict_round_trips_after_pruning(tmp_path):
    batch = _tubelet_batch()
    model = _musle(batch)
    model.loss(batch, torch.Generator().manual_seed(0))
    model.bank.stack(2).running_phi[0] = torch.tensor([0.01, 0.49, 0.5])
    model.end_epoch()
    assert model.bank.num_components[0].tolist() == [2, 3] and model.bank.mixture(0, 2).num_components == 2
    torch.save(model.state_dict(), tmp_path / "musle.pt")
    fresh = _musle(batch)
    fresh.load_state_dict(torch.load(tmp_path / "musle.pt", weights_only=True))
    model.eval(), fresh.eval()
    torch.testing.assert_close(fresh(batch), model(batch))
    assert fresh.bank.num_components.tolist() == model.bank.num_components.tolist()


def test_musle_rejects_bad_arguments():
    batch = _tubelet_batch()
    cases = [(dict(fit_top=1), "'fit_top'"), (dict(ce_weight=-1.0), "'ce_weight'"), (dict(ce_start=-1), "'ce_start'"),
             (dict(scales=(2, 2)), "'scales'"), (dict(scale_reduce="mean"), "'scale_reduce'"),
             (dict(bank=PrototypeBank(2, 3, 3, scales=(2,))), "'bank'")]
    for options, match in cases:
        with pytest.raises(ValueError, match=match):
            _musle(batch, **options)
    with pytest.raises(TypeError, match="'bank'"):
        _musle(batch, bank=torch.nn.Linear(2, 2))


def test_musle_uses_a_given_bank():
    batch = _tubelet_batch()
    reference = _musle(batch)
    bank = PrototypeBank(2, reference.node_encoder.out_channels, reference.pair_encoder.out_channels, scales=(3,),
                         num_components=2)
    model = _musle(batch, bank=bank)
    assert model.bank is bank and model.scales == (3,)
    loss, scores = model.loss(batch, torch.Generator().manual_seed(0))
    loss.backward()
    assert scores.shape == (2, 2) and bank.stack(3).weight1.grad is not None


def test_frozen_mixtures_change_only_at_refit():
    """From ce_start on, batches leave the running estimates alone; end_epoch with the data refits them to the
    bank's own full-pass estimate and calibrates the scores to them."""
    batch = _tubelet_batch(sizes=(5, 4, 5, 4))
    batch.y = torch.tensor([0, 1, 0, 1])
    graphs = batch.to_data_list()
    model = _musle(batch, ce_start=1, background=True, aux_weight=1.0, fit_top=2, train_subgraphs=100,
                   scale_reduce="learned")
    model.train()
    model.loss(batch, torch.Generator().manual_seed(0))
    moved = model.bank.stack(2).running_mu.clone()
    model.end_epoch(graphs)
    assert model.mixtures_frozen and not model.bank.training
    refitted = {name: b.clone() for name, b in model.bank.named_buffers()}
    assert not torch.equal(refitted["mixtures.2.running_mu"], moved)
    # the refit equals the bank's fit_ on the same (eval-mode) features, sub-graphs and top-2 selection
    model.eval()
    with torch.no_grad():
        node_x, pair_x, ptr = model.encode(batch)
        subgraphs = {k: enumerate_subgraphs(batch, k) for k in model.scales}
        select = model._top_subgraphs(model._aux_logits(node_x, pair_x, subgraphs), subgraphs, batch.y)
    for k, mask in select.items():   # each video's two best sub-graphs for its own class, by a loop
        logits = model._aux_logits(node_x, pair_x, subgraphs)[k].detach()
        for g in range(4):
            rows = (subgraphs[k].batch == g).nonzero().view(-1).tolist()
            ranked = sorted(rows, key=lambda r: -float(logits[r, batch.y[g]]))
            assert sorted(mask.nonzero().view(-1)[subgraphs[k].batch[mask] == g].tolist()) == sorted(ranked[:2])
    bank = copy.deepcopy(model.bank).fit_([(node_x, pair_x, ptr, batch.y, subgraphs, select)])
    bank.prune_(model.prune_threshold)          # dynamic K acts on the refitted weights
    for name, value in bank.named_buffers():
        torch.testing.assert_close(value, refitted[name], msg=name)
    # ... and the calibration the bank's calibrate_ gives on those mixtures
    assert not torch.equal(model.bank.scale_log_weight, torch.zeros_like(model.bank.scale_log_weight))
    bank.calibrate_([(node_x, pair_x, ptr, batch.y, subgraphs)])
    torch.testing.assert_close(bank.scale_log_weight, model.bank.scale_log_weight)
    torch.testing.assert_close(bank.scale_bias, model.bank.scale_bias)
    model.train()                               # what fit() does at every epoch start
    assert not model.bank.training
    model.loss(batch, torch.Generator().manual_seed(1))
    for name, value in model.bank.named_buffers():
        assert torch.equal(value, refitted[name]), name


def test_fresh_strg_with_input_embedding_equals_the_embedded_pooling():
    batch = _region_batch()
    torch.manual_seed(0)
    model = STRG(6, 2, hidden_channels=5)
    embedded = model.embed_input(batch.x)
    counts = torch.bincount(batch.batch).float()[:, None]
    mean = torch.zeros(2, 5).index_add_(0, batch.batch, embedded) / counts
    torch.testing.assert_close(model.embed(batch), mean)


def test_end_epoch_prunes_the_refitted_mixtures_not_last_epochs():
    """The bank's documented order: fit_, then prune_ (then the calibration, on the pruned mixtures). A component
    whose stale running weight is below the threshold but whose refitted weight is not must survive."""
    batch = _tubelet_batch(sizes=(5, 4, 5, 4))
    batch.y = torch.tensor([0, 1, 0, 1])
    graphs = batch.to_data_list()
    model = _musle(batch, ce_start=0, background=True, scale_reduce="learned", prune_threshold=0.02)
    model.train()
    model.loss(batch, torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.bank.stack(2).running_phi[0] = torch.tensor([0.001, 0.5, 0.499])
    model.eval()
    with torch.no_grad():
        node_x, pair_x, ptr = model.encode(batch)
    subgraphs = {k: enumerate_subgraphs(batch, k) for k in model.scales}
    expected = copy.deepcopy(model.bank).fit_([(node_x, pair_x, ptr, batch.y, subgraphs)])
    assert float(expected.stack(2).running_phi[0, 0]) > 0.02     # the premise: the refit revives component 0
    expected.prune_(0.02).calibrate_([(node_x, pair_x, ptr, batch.y, subgraphs)])
    model.train()
    model.end_epoch(graphs)
    assert bool(model.bank.stack(2).active[0, 0])
    for name, value in expected.named_buffers():
        torch.testing.assert_close(model.bank.get_buffer(name), value, msg=name)
    torch.testing.assert_close(model.bank.scale_log_weight, expected.scale_log_weight)
    torch.testing.assert_close(model.bank.scale_bias, expected.scale_bias)


def test_musle_checkpoint_after_compact_loads_into_a_fresh_model(tmp_path):
    """compact_ drops component slots (parameter shapes change); a plain load_state_dict into a freshly built
    model must still restore it."""
    batch = _tubelet_batch()
    model = _musle(batch)
    model.loss(batch, torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.bank.stack(2).running_phi[:, 0] = 0.01
    model.end_epoch()
    model.bank.compact_()
    assert model.bank.stack(2).num_components == 2 and model.bank.stack(3).num_components == 3
    torch.save(model.state_dict(), tmp_path / "musle.pt")
    fresh = _musle(batch)
    fresh.load_state_dict(torch.load(tmp_path / "musle.pt", weights_only=True))
    assert fresh.bank.stack(2).weight2.shape == model.bank.stack(2).weight2.shape
    model.eval(), fresh.eval()
    torch.testing.assert_close(fresh(batch), model(batch))
    for name, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], value), name
