import itertools

import pytest
import torch
from torchvision.ops import box_iou

import videograph as vg
from videograph.nn.conv.strg_conv import SimilarityConv, STRGConv, complete_edge_index


def _dense(edge_index, weight, num_nodes):
    """G with G[i, j] = weight of edge j -> i (PyG flow), summing duplicates."""
    g = torch.zeros(num_nodes, num_nodes, dtype=weight.dtype)
    for (j, i), w in zip(edge_index.t().tolist(), weight.tolist()):
        g[i, j] += w
    return g


def test_strg_conv_is_a_sum_of_graph_products(generator):
    x = torch.randn(6, 4, generator=generator)
    edge_index = torch.tensor([[0, 1, 2, 3, 5, 4, 0], [1, 2, 3, 4, 0, 4, 5]])
    weight = torch.rand(7, generator=generator)
    edge_type = torch.tensor([0, 1, 0, 1, 1, 0, 0])
    conv = STRGConv(4, 3, num_relations=2)
    weights = conv.lin.weight.view(2, 3, 4)                 # W_r^T rows
    expected = sum(_dense(edge_index[:, edge_type == r], weight[edge_type == r], 6) @ x @ weights[r].t()
                   for r in range(2)) + conv.bias
    torch.testing.assert_close(conv(x, edge_index, weight, edge_type), expected)
    assert repr(conv) == "STRGConv(4, 3, num_relations=2)"


def test_strg_conv_on_region_front_graph_is_the_papers_row_normalised_iou():
    boxes = torch.tensor([[0., 0., 10., 10.], [20., 20., 30., 30.],
                          [2., 2., 12., 12.], [5., 0., 15., 9.], [19., 21., 29., 31.]])
    frame = torch.tensor([0, 0, 1, 1, 1])
    data = vg.build_graph(vg.Regions(boxes, frame, frame_size=(40, 40)))
    x = torch.randn(5, 3)
    conv = STRGConv(3, 3, bias=False)
    # the paper: G_front[i, j] = IoU(box i at t, box j at t + 1), rows normalised
    g = torch.zeros(5, 5)
    g[:2, 2:] = box_iou(boxes[:2], boxes[2:])
    g = g / g.sum(1, keepdim=True).clamp_min(1e-12)
    expected = g @ x @ conv.lin.weight.t()
    torch.testing.assert_close(conv(x, data.front_edge_index, data.front_edge_weight), expected)


def test_strg_conv_rejects_bad_edge_types():
    conv = STRGConv(2, 2, num_relations=2)
    with pytest.raises(ValueError, match="edge_type"):
        conv(torch.randn(3, 2), torch.tensor([[0], [1]]))
    with pytest.raises(ValueError, match="edge_type"):
        conv(torch.randn(3, 2), torch.tensor([[0], [1]]), edge_type=torch.tensor([2]))


def test_complete_edge_index_matches_itertools():
    batch = torch.tensor([0, 0, 0, 1, 2, 2])
    edge_index = complete_edge_index(batch)
    expected = {(j, i) for nodes in ([0, 1, 2], [3], [4, 5]) for i, j in itertools.product(nodes, nodes)}
    assert set(map(tuple, edge_index.t().tolist())) == expected and edge_index.size(1) == len(expected)
    no_loops = complete_edge_index(batch, self_loops=False)
    assert set(map(tuple, no_loops.t().tolist())) == {e for e in expected if e[0] != e[1]}


def test_similarity_conv_is_the_dense_row_softmax(generator):
    x = torch.randn(5, 4, generator=generator)
    conv = SimilarityConv(4, 3, sim_channels=2)
    out, weight = conv(x, complete_edge_index(torch.zeros(5, dtype=torch.long)), return_attention_weights=True)
    affinity = conv.phi(x) @ conv.phi_prime(x).t()          # F[i, j] = phi(x_i)^T phi'(x_j)
    g = torch.softmax(affinity, dim=1)
    torch.testing.assert_close(out, g @ x @ conv.lin.weight.t() + conv.bias)
    assert weight.shape == (25,)


def test_similarity_gradients_flow_through_the_softmax():
    torch.manual_seed(0)
    x = torch.randn(4, 3, dtype=torch.double)
    conv = SimilarityConv(3, 2).double()
    edge_index = complete_edge_index(torch.zeros(4, dtype=torch.long))

    def f(phi_weight, phi_prime_weight):
        conv.phi.weight, conv.phi_prime.weight = phi_weight, phi_prime_weight
        return conv(x, edge_index)

    weights = (torch.nn.Parameter(conv.phi.weight.detach().clone()),
               torch.nn.Parameter(conv.phi_prime.weight.detach().clone()))
    assert torch.autograd.gradcheck(f, weights)
    conv.phi.weight, conv.phi_prime.weight = weights
    conv(x, edge_index).pow(2).sum().backward()
    assert weights[0].grad.abs().sum() > 0 and weights[1].grad.abs().sum() > 0
