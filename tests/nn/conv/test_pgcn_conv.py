import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.loader import NodeLoader
from torch_geometric.nn import SAGEConv

from videograph.nn import PGCN, PGCNConv
from videograph.sampler import NeighborSampler


def _graph(num_nodes=12, num_edges=40, num_features=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    pairs = torch.randperm(num_nodes * num_nodes, generator=g)[:num_edges]  # no repeated edge
    edge_index = torch.stack([pairs // num_nodes, pairs % num_nodes])
    x = torch.randn(num_nodes, num_features, generator=g, dtype=dtype)
    edge_weight = torch.rand(num_edges, generator=g, dtype=dtype) * 2 - 1
    return x, edge_index, edge_weight


def _dense_eq10(x, edge_index, edge_weight, weight, bias):
    # Eq. 10 with the full neighbourhood: (D^-1 A + I) X W^T + b, A[i, j] = weight of edge j -> i.
    n = x.size(0)
    adj = torch.zeros(n, n, dtype=x.dtype)
    adj[edge_index[1], edge_index[0]] = edge_weight if edge_weight is not None else 1.0
    deg = torch.zeros(n, dtype=x.dtype).index_add_(0, edge_index[1], torch.ones(edge_index.size(1), dtype=x.dtype))
    norm = torch.where(deg > 0, 1 / deg, torch.zeros_like(deg))
    out = (norm[:, None] * adj + torch.eye(n, dtype=x.dtype)) @ x @ weight.t()
    return out if bias is None else out + bias


@pytest.mark.parametrize("in_channels,out_channels", [(5, 7), (5, 3)])  # aggregate-first and project-first
@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_full_neighbourhood_equals_dense_eq10(in_channels, out_channels, weighted, bias):
    x, edge_index, edge_weight = _graph(num_features=in_channels)
    x = torch.cat([x, torch.randn(1, in_channels, dtype=x.dtype)])  # a node without neighbours
    edge_weight = edge_weight if weighted else None
    conv = PGCNConv(in_channels, out_channels, bias=bias).double()
    if bias:
        torch.nn.init.normal_(conv.bias)
    out = conv(x, edge_index, edge_weight)
    expected = _dense_eq10(x, edge_index, edge_weight, conv.lin.weight, conv.bias)
    assert out.shape == (x.size(0), out_channels)
    torch.testing.assert_close(out, expected)
    expected_isolated = x[-1] @ conv.lin.weight.t() + (conv.bias if bias else 0)
    torch.testing.assert_close(out[-1], expected_isolated)


def test_without_weights_equals_pyg_sageconv_with_tied_weights():
    x, edge_index, _ = _graph(dtype=torch.float32)
    conv = PGCNConv(5, 6)
    torch.nn.init.normal_(conv.bias)
    sage = SAGEConv(5, 6, aggr="mean", root_weight=True)
    with torch.no_grad():
        sage.lin_l.weight.copy_(conv.lin.weight)
        sage.lin_l.bias.copy_(conv.bias)
        sage.lin_r.weight.copy_(conv.lin.weight)
    torch.testing.assert_close(conv(x, edge_index), sage(x, edge_index))


def test_on_sampled_minibatch_divides_by_ns():
    # Every seed has in-degree >= N_s = 3, so the sampled layer is exactly eq. 10's 1 / N_s form.
    num_nodes, n_s = 30, 3
    src = torch.arange(num_nodes).repeat_interleave(6)
    dst = (src + torch.arange(1, 7).repeat(num_nodes)) % num_nodes
    edge_index = torch.stack([src, dst])
    x = torch.randn(num_nodes, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    edge_weight = torch.rand(edge_index.size(1), dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    data = Data(x=x, edge_index=edge_index, edge_weight=edge_weight)
    loader = NodeLoader(data, node_sampler=NeighborSampler(data, [n_s], generator=torch.Generator().manual_seed(3)),
                        batch_size=8)
    conv = PGCNConv(4, 5).double()
    for mb in loader:
        out = conv(mb.x, mb.edge_index, mb.edge_weight)[:mb.batch_size]
        for i in range(mb.batch_size):
            incoming = (mb.edge_index[1] == i).nonzero().view(-1)
            assert incoming.numel() == n_s
            msg = (mb.edge_weight[incoming, None] * mb.x[mb.edge_index[0, incoming]]).sum(0) / n_s
            expected = conv.lin.weight @ (msg + mb.x[i]) + conv.bias
            torch.testing.assert_close(out[i], expected)


def test_bipartite_input_equals_the_target_rows():
    x, edge_index, edge_weight = _graph()
    conv = PGCNConv(5, 4).double()
    keep = edge_index[1] < 6  # targets are the first 6 nodes
    out = conv((x, x[:6]), edge_index[:, keep], edge_weight[keep], size=(x.size(0), 6))
    torch.testing.assert_close(out, conv(x, edge_index, edge_weight)[:6])


@pytest.mark.parametrize("out_channels", [4, 2])  # aggregate-first and project-first
def test_gradcheck(out_channels):
    x, edge_index, edge_weight = _graph(num_nodes=6, num_edges=14, num_features=3)
    conv = PGCNConv(3, out_channels).double()
    names = [name for name, _ in conv.named_parameters()]

    def forward(x, edge_weight, *params):
        return torch.func.functional_call(conv, dict(zip(names, params)), (x, edge_index, edge_weight))

    params = [p.detach().clone().requires_grad_() for p in conv.parameters()]
    assert torch.autograd.gradcheck(forward, (x.requires_grad_(), edge_weight.requires_grad_(), *params))


def test_repr_reset_and_bad_arguments():
    assert repr(PGCNConv(16, 32)) == "PGCNConv(16, 32)"
    conv = PGCNConv(3, 4)
    with torch.no_grad():
        conv.bias.fill_(1.0)
    conv.reset_parameters()
    assert bool((conv.bias == 0).all())
    with pytest.raises(ValueError, match="in_channels"):
        PGCNConv(0, 4)
    with pytest.raises(ValueError, match="out_channels"):
        PGCNConv(3, -1)
    with pytest.raises(ValueError, match="aggr"):
        PGCNConv(3, 4, aggr="max")
    x, edge_index, edge_weight = _graph(num_features=3, dtype=torch.float32)
    with pytest.raises(ValueError, match="edge_weight"):
        conv(x, edge_index, edge_weight.float().view(-1, 1))


def _dense_pgcn(model, x, edge_index, edge_weight):
    h = x
    for k, conv in enumerate(model.convs):
        h = _dense_eq10(h, edge_index, edge_weight, conv.lin.weight, conv.bias)
        if k < model.num_layers - 1:
            h = h.relu()
    return torch.cat([h, x], dim=-1)


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_pgcn_encoder_equals_dense_eq4_eq5(num_layers):
    x, edge_index, edge_weight = _graph(num_features=6)
    model = PGCN(6, 8, num_layers=num_layers, dropout=0.5).double().eval()
    out = model(x, edge_index, edge_weight)
    assert out.shape == (x.size(0), 6 + 6)
    torch.testing.assert_close(out, _dense_pgcn(model, x, edge_index, edge_weight))
    assert repr(model) == f"PGCN(6, 8, 6, num_layers={num_layers})"
    assert PGCN(6, 8, out_channels=4)(x.float(), edge_index).shape == (x.size(0), 10)


def test_pgcn_dropout_only_in_training():
    x, edge_index, edge_weight = _graph(num_features=6)
    model = PGCN(6, 32, dropout=0.5).double()
    torch.manual_seed(0)
    a, b = model(x, edge_index, edge_weight), model(x, edge_index, edge_weight)
    assert not torch.allclose(a, b)
    model.eval()
    torch.testing.assert_close(model(x, edge_index, edge_weight), model(x, edge_index, edge_weight))


def test_pgcn_trimmed_forward_equals_untrimmed_on_seeds():
    x, edge_index, edge_weight = _graph(num_nodes=40, num_edges=200, num_features=6)
    data = Data(x=x, edge_index=edge_index, edge_weight=edge_weight)
    model = PGCN(6, 8, num_layers=2).double().eval()
    for hops in ([3, 3], [3, 2, 2]):
        loader = NodeLoader(data, node_sampler=NeighborSampler(data, hops, generator=torch.Generator().manual_seed(4)),
                            batch_size=10)
        for mb in loader:
            full = model(mb.x, mb.edge_index, mb.edge_weight)
            trimmed = model(mb.x, mb.edge_index, mb.edge_weight, mb.num_sampled_nodes, mb.num_sampled_edges)
            keep = sum(mb.num_sampled_nodes[:len(hops) + 1 - 2])
            assert trimmed.size(0) == keep
            torch.testing.assert_close(trimmed, full[:keep])


def test_pgcn_trimmed_training_forward_draws_the_untrimmed_dropout():
    # two layers: one dropout, over the first layer's output, whose rows are all the nodes either way
    x, edge_index, edge_weight = _graph(num_nodes=40, num_edges=200, num_features=6)
    data = Data(x=x, edge_index=edge_index, edge_weight=edge_weight)
    model = PGCN(6, 8, num_layers=2, dropout=0.5).double().train()
    loader = NodeLoader(data, node_sampler=NeighborSampler(data, [3, 3], generator=torch.Generator().manual_seed(4)),
                        batch_size=10)
    for mb in loader:
        torch.manual_seed(1)
        full = model(mb.x, mb.edge_index, mb.edge_weight)
        after = torch.rand(3)
        torch.manual_seed(1)
        trimmed = model(mb.x, mb.edge_index, mb.edge_weight, mb.num_sampled_nodes, mb.num_sampled_edges)
        torch.testing.assert_close(trimmed, full[:mb.batch_size], rtol=0, atol=0)
        assert torch.equal(torch.rand(3), after)


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("p, dtype", [(0.5, torch.float32), (0.3, torch.float64)])
def test_dropout_prefix_is_the_prefix_of_f_dropout(monkeypatch, fast, p, dtype):
    from videograph.nn.conv import pgcn_conv
    if fast and not pgcn_conv._fast_dropout_is_exact():
        pytest.skip("this PyTorch build's bernoulli kernel is not the serial one")
    monkeypatch.setattr(pgcn_conv, "_EXACT_FAST_DROPOUT", fast)
    full = torch.randn(11, 5, dtype=dtype)
    torch.manual_seed(3)
    expected = torch.nn.functional.dropout(full, p, True)[:7]
    state = torch.get_rng_state()
    torch.manual_seed(3)
    got = pgcn_conv._dropout_prefix(full[:7], p, True, 11)
    assert torch.equal(got, expected) and torch.equal(torch.get_rng_state(), state)
    torch.testing.assert_close(pgcn_conv._dropout_prefix(full[:7], p, False, 11), full[:7])


def test_pgcn_bad_arguments():
    with pytest.raises(ValueError, match="num_layers"):
        PGCN(4, 8, num_layers=0)
    with pytest.raises(ValueError, match="dropout"):
        PGCN(4, 8, dropout=1.0)
    x, edge_index, _ = _graph(num_features=4, dtype=torch.float32)
    with pytest.raises(ValueError, match="go together"):
        PGCN(4, 8)(x, edge_index, num_sampled_nodes_per_hop=[1, 2, 3])
    with pytest.raises(ValueError, match="hops"):
        PGCN(4, 8, num_layers=2)(x, edge_index, None, [4, 8], [8])
