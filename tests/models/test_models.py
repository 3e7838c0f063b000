import itertools

import pytest
import torch
from torch_geometric.data import Batch
from torch_geometric.nn import GATConv, GraphConv

import videograph as vg
from videograph.models import GCN, MUSLE, STRG, Base, SubgraphMixtures, materialise
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
                                     dict(background=True, posterior=True, aux_weight=1.0)])
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


def test_musle_scores_equal_the_brute_force_maximum_over_materialised_subgraphs():
    batch = _tubelet_batch(sizes=(6, 5, 4))
    batch.y = torch.tensor([0, 1, 0])
    model = _musle(batch, train_subgraphs=100)
    model.train()
    for step in range(3):   # move the running estimates away from their initial values
        model.loss(batch, torch.Generator().manual_seed(step))
    model.eval()
    with torch.no_grad():
        scores, best = model(batch, return_best=True)
        node_x, pair_x, ptr = model.encode(batch)
    expected = torch.full((3, 2), -float("inf"))
    for k in model.scales:
        for g in range(3):
            n0, n1 = int(ptr[g]), int(ptr[g + 1])
            for nodes in itertools.combinations(range(n0, n1), k):
                vector = torch.cat([node_x[list(nodes)].flatten()] + [
                    pair_x[_pair_id(ptr, g, u, w)] for u, w in itertools.combinations(nodes, 2)])
                for c in range(2):
                    m = model.bank.mixture(c, k)
                    lp = gmm_log_prob(vector[None], m.running_phi, m.running_mu, m.running_cov, model.bank.eps)
                    expected[g, c] = torch.maximum(expected[g, c], lp[0])
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
        m = model.bank.mixture(c, k)
        lp = gmm_log_prob(vector[None], m.running_phi, m.running_mu, m.running_cov, model.bank.eps)
        torch.testing.assert_close(lp[0], expected[g, c], rtol=1e-4, atol=1e-3)


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


def test_fused_log_prob_equals_materialised():
    batch = _tubelet_batch(sizes=(6, 5))
    model = _musle(batch, scales=(3,))
    model.loss(batch, torch.Generator().manual_seed(0))
    model.eval()
    with torch.no_grad():
        node_x, pair_x, _ = model.encode(batch)
        sub = enumerate_subgraphs(batch, 3)
        fused = model.bank.subgraph_log_prob(node_x, pair_x, sub)
        x = materialise(node_x, pair_x, sub)
        for c in range(2):
            m = model.bank.mixture(c, 3)
            torch.testing.assert_close(fused[:, c], gmm_log_prob(x, m.running_phi, m.running_mu, m.running_cov,
                                                                  model.bank.eps), rtol=1e-4, atol=1e-3)


def test_musle_state_dict_round_trips_after_pruning(tmp_path):
    batch = _tubelet_batch()
    model = _musle(batch)
    model.loss(batch, torch.Generator().manual_seed(0))
    mixture = model.bank.mixture(0, 2)
    mixture.running_phi.copy_(torch.tensor([0.01, 0.49, 0.5]))
    model.end_epoch()
    assert mixture.num_components == 2
    torch.save(model.state_dict(), tmp_path / "musle.pt")
    fresh = _musle(batch)
    fresh.load_state_dict(torch.load(tmp_path / "musle.pt", weights_only=True))
    model.eval(), fresh.eval()
    torch.testing.assert_close(fresh(batch), model(batch))


def test_subgraph_mixtures_reject_bad_input():
    with pytest.raises(ValueError, match="scales"):
        SubgraphMixtures(2, 3, 3, scales=(1,))
    bank = SubgraphMixtures(2, 3, 3, scales=(2,))
    with pytest.raises(ValueError, match="pair_x"):
        bank.class_scores(torch.randn(4, 3), torch.randn(5, 3), torch.tensor([0, 4]))


def test_musle_runs_on_the_fused_prototype_bank():
    from videograph.nn import PrototypeBank
    batch = _tubelet_batch()
    model = _musle(batch, bank="prototype")
    assert isinstance(model.bank, PrototypeBank)
    loss, scores = model.loss(batch, torch.Generator().manual_seed(0))
    loss.backward()
    assert scores.shape == (2, 2) and any(p.grad is not None for p in model.node_encoder.parameters())
    model.eval()
    assert model.predict(batch).shape == (2,)
    with pytest.raises(ValueError, match="bank='mixtures'"):
        _musle(batch, bank="prototype", background=True)


def test_fresh_strg_with_input_embedding_equals_the_embedded_pooling():
    batch = _region_batch()
    torch.manual_seed(0)
    model = STRG(6, 2, hidden_channels=5)
    embedded = model.embed_input(batch.x)
    counts = torch.bincount(batch.batch).float()[:, None]
    mean = torch.zeros(2, 5).index_add_(0, batch.batch, embedded) / counts
    torch.testing.assert_close(model.embed(batch), mean)
