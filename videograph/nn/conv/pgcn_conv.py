from typing import List, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.typing import Adj, OptPairTensor, OptTensor, Size

__all__ = ["PGCNConv", "PGCN"]


class PGCNConv(MessagePassing):
    r"""The sampled proposal-graph convolution from the `"Graph Convolutional
    Networks for Temporal Action Localization"
    <https://arxiv.org/abs/1909.03252>`_ paper (P-GCN, Eq. 10)

    .. math::
        \mathbf{x}^{\prime}_i = \mathbf{W} \left( \frac{1}{|\mathcal{S}(i)|}
        \sum_{j \in \mathcal{S}(i)} A_{ij} \, \mathbf{x}_j + \mathbf{x}_i
        \right) + \mathbf{b}

    where :math:`\mathcal{S}(i)` are the neighbours :math:`j` of :math:`i`
    present in :obj:`edge_index` (edges :math:`j \to i`) and :math:`A_{ij}`
    the edge weight (P-GCN: the cosine similarity of the two proposals' features,
    Eq. 9), or 1 when no weights are given.

    **Normalisation.** The neighbour sum is divided by the number of
    neighbours actually present, :math:`|\mathcal{S}(i)|`. On a mini-batch
    from :class:`~videograph.sampler.NeighborSampler` with :math:`N_s`
    neighbours per node this is :math:`\min(\deg(i), N_s)`, i.e. exactly the
    :math:`1 / N_s` of Eq. 10 whenever :math:`\deg(i) \geq N_s`; for nodes with
    fewer neighbours it stays a mean instead of shrinking towards zero. The
    sampled mean is an unbiased estimate of the full-neighbourhood mean, which
    is what the layer computes at test time, when P-GCN does not sample:
    there :math:`|\mathcal{S}(i)| = \deg(i)` and, in matrix form,

    .. math::
        \mathbf{X}^{\prime} = \left( \mathbf{D}^{-1} \mathbf{A} + \mathbf{I}
        \right) \mathbf{X} \mathbf{W}^{\top} + \mathbf{b},
        \qquad \mathbf{D}_{ii} = \deg(i),

    which is Eq. 4, :math:`\mathbf{A} \mathbf{X} \mathbf{W}`, with the
    adjacency replaced by its row-normalised version plus self-loops of
    weight 1 (the self-addition of Eq. 10). A node without neighbours gets
    :math:`\mathbf{W} \mathbf{x}_i + \mathbf{b}`. The official P-GCN code
    clamps negative cosines to 0 before use; pass
    :obj:`edge_weight.clamp(min=0)` to do the same.

    Args:
        in_channels (int): Size of each input sample.
        out_channels (int): Size of each output sample.
        bias (bool, optional): If set to :obj:`False`, the layer will not learn
            an additive bias. (default: :obj:`True`)
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **inputs:**
          node features :math:`(|\mathcal{V}|, F_{in})` or
          :math:`((|\mathcal{V_s}|, F_{in}), (|\mathcal{V_t}|, F_{in}))`
          if bipartite,
          edge indices :math:`(2, |\mathcal{E}|)`,
          edge weights :math:`(|\mathcal{E}|)` *(optional)*
        - **output:** node features :math:`(|\mathcal{V}|, F_{out})` or
          :math:`(|\mathcal{V_t}|, F_{out})` if bipartite
    """
    def __init__(self, in_channels: int, out_channels: int, bias: bool = True, **kwargs):
        kwargs.setdefault("aggr", "mean")
        if kwargs["aggr"] != "mean":
            raise ValueError(f"'{self.__class__.__name__}' averages over neighbours (got aggr={kwargs['aggr']!r})")
        super().__init__(**kwargs)
        if not isinstance(in_channels, int) or in_channels <= 0:
            raise ValueError(f"'in_channels' must be a positive int (got {in_channels!r})")
        if not isinstance(out_channels, int) or out_channels <= 0:
            raise ValueError(f"'out_channels' must be a positive int (got {out_channels!r})")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.lin = Linear(in_channels, out_channels, bias=False, weight_initializer="glorot")
        if bias:
            self.bias = torch.nn.Parameter(torch.empty(out_channels))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        self.lin.reset_parameters()
        if self.bias is not None:
            torch.nn.init.zeros_(self.bias)

    def forward(
        self,
        x: Union[Tensor, OptPairTensor],
        edge_index: Adj,
        edge_weight: OptTensor = None,
        size: Size = None,
    ) -> Tensor:
        if isinstance(x, Tensor):
            x = (x, x)
        if x[1] is None:
            raise ValueError(f"'{self.__class__.__name__}' adds the target nodes' own features: "
                             f"'x' must hold them")
        if edge_weight is not None and edge_weight.dim() != 1:
            raise ValueError(f"'edge_weight' must have shape [num_edges] (got {tuple(edge_weight.shape)})")
        # W is linear: project first when that shrinks the features to move.
        if self.in_channels > self.out_channels:
            x = (self.lin(x[0]), self.lin(x[1]))
        # propagate_type: (x: OptPairTensor, edge_weight: OptTensor)
        out = self.propagate(edge_index, x=x, edge_weight=edge_weight, size=size)
        out = out + x[1]
        if self.in_channels <= self.out_channels:
            out = self.lin(out)
        if self.bias is not None:
            out = out + self.bias
        return out

    def message(self, x_j: Tensor, edge_weight: OptTensor) -> Tensor:
        return x_j if edge_weight is None else edge_weight.view(-1, 1) * x_j

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.in_channels}, {self.out_channels})"


class PGCN(torch.nn.Module):
    r"""The P-GCN proposal-graph encoder from the `"Graph Convolutional
    Networks for Temporal Action Localization"
    <https://arxiv.org/abs/1909.03252>`_ paper: :math:`K` :class:`PGCNConv`
    layers (Eq. 4 / 10) with ReLU and dropout between them, and the last
    layer's output concatenated with the input (Eq. 5)

    .. math::
        \mathbf{X}^{(k)} = \mathrm{Dropout}(\mathrm{ReLU}(
        \mathrm{PGCNConv}_k(\mathbf{X}^{(k-1)}))), \quad k < K;
        \qquad \mathrm{out} = \mathrm{PGCNConv}_K(\mathbf{X}^{(K-1)})
        \, \Vert \, \mathbf{X}^{(0)}.

    As in the official code, the last layer has no activation. On
    neighbour-sampled mini-batches, passing :obj:`num_sampled_nodes_per_hop`
    and :obj:`num_sampled_edges_per_hop` trims the graph layer by layer
    (:func:`torch_geometric.utils.trim_to_layer`), so only the nodes that
    still feed the seeds are computed, and the output covers the nodes of
    hops :math:`0, \ldots, H - K` for :math:`H` sampled hops (the seeds when
    :math:`H = K`), the only ones with complete :math:`K`-hop inputs. The
    ReLU and dropout only see the rows the next layer reads, but the dropout
    mask is drawn for the whole layer output (the random numbers of an
    untrimmed pass, taken several times faster than
    :func:`torch.nn.functional.dropout` does on CPU where that is exact).

    Args:
        in_channels (int): Size of each input sample.
        hidden_channels (int): Size of each hidden sample.
        out_channels (int, optional): Size of the last layer's output before
            the concatenation; :obj:`in_channels` if :obj:`None`, as in the
            official code. (default: :obj:`None`)
        num_layers (int, optional): The number of layers :math:`K`.
            (default: :obj:`2`)
        dropout (float, optional): Dropout probability between layers.
            (default: :obj:`0.0`)
        bias (bool, optional): If set to :obj:`False`, the layers learn no
            additive bias. (default: :obj:`True`)

    Shapes:
        - **inputs:**
          node features :math:`(|\mathcal{V}|, F_{in})`,
          edge indices :math:`(2, |\mathcal{E}|)`,
          edge weights :math:`(|\mathcal{E}|)` *(optional)*
        - **output:** node features :math:`(|\mathcal{V}|, F_{out} + F_{in})`
    """
    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        out_channels: Optional[int] = None,
        num_layers: int = 2,
        dropout: float = 0.0,
        bias: bool = True,
    ):
        super().__init__()
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"'num_layers' must be a positive int (got {num_layers!r})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"'dropout' must lie in [0, 1) (got {dropout!r})")
        out_channels = in_channels if out_channels is None else out_channels
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.out_channels = out_channels
        self.num_layers = num_layers
        self.dropout = float(dropout)
        sizes = [in_channels] + [hidden_channels] * (num_layers - 1) + [out_channels]
        self.convs = torch.nn.ModuleList(
            PGCNConv(sizes[k], sizes[k + 1], bias=bias) for k in range(num_layers))
        self.reset_parameters()

    def reset_parameters(self):
        for conv in self.convs:
            conv.reset_parameters()

    def forward(
        self,
        x: Tensor,
        edge_index: Adj,
        edge_weight: OptTensor = None,
        num_sampled_nodes_per_hop: Optional[List[int]] = None,
        num_sampled_edges_per_hop: Optional[List[int]] = None,
    ) -> Tensor:
        if (num_sampled_nodes_per_hop is None) != (num_sampled_edges_per_hop is None):
            raise ValueError("'num_sampled_nodes_per_hop' and 'num_sampled_edges_per_hop' go together")
        if num_sampled_nodes_per_hop is not None and len(num_sampled_nodes_per_hop) <= self.num_layers:
            raise ValueError(f"Trimming needs at least num_layers={self.num_layers} sampled hops "
                             f"(got num_sampled_nodes_per_hop={num_sampled_nodes_per_hop})")
        x0, h = x, x
        for k, conv in enumerate(self.convs):
            if num_sampled_nodes_per_hop is not None and k > 0:  # trim_to_layer's cut of the edges
                kept = edge_index.size(1) - num_sampled_edges_per_hop[-k]
                edge_index = edge_index.narrow(1, 0, kept)
                edge_weight = None if edge_weight is None else edge_weight.narrow(0, 0, kept)
            h = conv(h, edge_index, edge_weight)
            rows = h.size(0)
            if num_sampled_nodes_per_hop is not None:
                # trim_to_layer's cut of the nodes for the next layer (after the last one, the seeds' hops),
                # made before the ReLU and dropout: the cut rows are never read
                h = h[:rows - num_sampled_nodes_per_hop[-(k + 1)]]
            if k < self.num_layers - 1:
                h = _dropout_prefix(h.relu(), self.dropout, self.training, rows)
        return torch.cat([h, x0[:h.size(0)]], dim=-1)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, {self.hidden_channels}, "
                f"{self.out_channels}, num_layers={self.num_layers})")


_EXACT_FAST_DROPOUT: Optional[bool] = None


def _fast_dropout_is_exact() -> bool:
    """Whether ``torch.rand(..., dtype=float64) < 1 - p`` draws F.dropout's CPU mask from the default generator,
    number for number (PyTorch's serial bernoulli kernel; not its MKL one): checked once, the state restored."""
    global _EXACT_FAST_DROPOUT
    if _EXACT_FAST_DROPOUT is None:
        state = torch.get_rng_state()
        try:
            mask = F.dropout(torch.ones(4099), 0.5, True) > 0
            after = torch.get_rng_state()
            torch.set_rng_state(state)
            ours = torch.rand(4099, dtype=torch.float64) < 0.5
            _EXACT_FAST_DROPOUT = bool(torch.equal(mask, ours)) and bool(torch.equal(after, torch.get_rng_state()))
        finally:
            torch.set_rng_state(state)
    return _EXACT_FAST_DROPOUT


def _dropout_prefix(x: Tensor, p: float, training: bool, rows: int) -> Tensor:
    """``F.dropout(x_full)[:x.size(0)]`` for an ``x_full`` of ``rows`` rows that starts with ``x``: the mask of
    all the rows is drawn (the same random numbers, so seeded runs do not change), only its first rows are
    used. Several times faster than F.dropout's bernoulli kernel where :func:`_fast_dropout_is_exact`."""
    if not training or p == 0.0:
        return x
    shape = (rows,) + tuple(x.shape[1:])
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64) or not _fast_dropout_is_exact():
        return x * F.dropout(x.new_ones(shape), p, True)[:x.size(0)]
    keep = torch.rand(shape, dtype=torch.float64)[:x.size(0)] < 1.0 - p
    return x * keep.to(x.dtype).div_(1.0 - p)
