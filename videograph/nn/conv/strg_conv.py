r"""The graph convolutions of `"Videos as Space-Time Region Graphs" <https://arxiv.org/abs/1806.01810>`_
(Wang & Gupta, ECCV 2018, sec. 4): :math:`Z = \sum_r G_r X W_r` over given graphs, and the learned similarity
graph :math:`G^{sim}`."""
from typing import Optional

import torch
from torch import Tensor
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.typing import OptTensor
from torch_geometric.utils import softmax

__all__ = ["STRGConv", "SimilarityConv", "complete_edge_index"]


def _positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"'{name}' must be a positive int, got {value!r}")
    return value


def complete_edge_index(batch: Tensor, self_loops: bool = True) -> Tensor:
    r"""Every ordered pair of nodes of the same graph (a node's graph is ``batch[node]``, graphs numbered
    consecutively as in a PyG :class:`~torch_geometric.data.Batch`), with self-loops by default: the support
    of STRG's dense similarity graph.

    Args:
        batch: ``[N]`` sorted graph index of every node.
        self_loops: include the edges :math:`i \to i`. (default: :obj:`True`)

    Returns:
        ``[2, sum_g n_g^2]`` (or :math:`n_g (n_g - 1)` per graph without self-loops), sorted by target then source.
    """
    if batch.dim() != 1:
        raise ValueError(f"'batch' must be [N], got {tuple(batch.shape)}")
    if batch.numel() > 1 and bool((batch[1:] < batch[:-1]).any()):
        raise ValueError("'batch' must be sorted (nodes of each graph consecutive)")
    counts = torch.bincount(batch)
    ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    # Each target i is repeated n_g times; its sources run over its graph's node range.
    target = torch.arange(batch.numel(), device=batch.device).repeat_interleave(counts[batch])
    first = ptr[batch].repeat_interleave(counts[batch])
    edge_start = torch.cat([counts.new_zeros(1), (counts[batch]).cumsum(0)])[:-1]
    offset = torch.arange(target.numel(), device=batch.device) - edge_start.repeat_interleave(counts[batch])
    edge_index = torch.stack([first + offset, target])
    if not self_loops:
        edge_index = edge_index[:, edge_index[0] != edge_index[1]]
    return edge_index


class STRGConv(MessagePassing):
    r"""The space-time region graph convolution of `"Videos as Space-Time Region Graphs"
    <https://arxiv.org/abs/1806.01810>`_ (eq. 5-6) over :math:`R` given graphs with separate weights:

    .. math::
        \mathbf{Z} = \sum_{r=1}^{R} \mathbf{G}_r \mathbf{X} \mathbf{W}_r,
        \qquad \mathbf{z}_i = \sum_r \sum_{j \to i \,\in\, \mathcal{E}_r} G_{r, ij}\, \mathbf{W}_r^\top \mathbf{x}_j

    :math:`G_{r, ij}` is the weight of edge :math:`j \to i` of relation :math:`r` (``edge_type``); with the
    front and back graphs of :func:`~videograph.build_graph` on :class:`~videograph.Regions`
    (``front_edge_weight`` / ``back_edge_weight`` already row-normalised) this is the paper's front/back branch.
    Every relation's transform is computed for all nodes at once and each edge gathers its own relation's row, so
    no per-relation loop runs. With ``num_relations=1`` and no ``edge_type`` it is :math:`\mathbf{G}\mathbf{X}
    \mathbf{W}`. Nodes without incoming edges get :math:`\mathbf{0}` (plus the bias).

    Args:
        in_channels (int): Size of each input sample.
        out_channels (int): Size of each output sample.
        num_relations (int, optional): The number of graphs :math:`R`. (default: :obj:`1`)
        bias (bool, optional): If set to :obj:`False`, the layer will not learn an additive bias.
            (default: :obj:`True`)
        **kwargs (optional): Additional arguments of :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **inputs:** node features :math:`(|\mathcal{V}|, F_{in})`, edge indices :math:`(2, |\mathcal{E}|)`,
          edge weights :math:`(|\mathcal{E}|)` *(optional, default 1)*, edge types :math:`(|\mathcal{E}|)` in
          :math:`[0, R)` *(optional when* :math:`R = 1` *)*
        - **output:** node features :math:`(|\mathcal{V}|, F_{out})`
    """

    def __init__(self, in_channels: int, out_channels: int, num_relations: int = 1, bias: bool = True, **kwargs):
        kwargs.setdefault("aggr", "add")
        super().__init__(**kwargs)
        self.in_channels = _positive("in_channels", in_channels)
        self.out_channels = _positive("out_channels", out_channels)
        self.num_relations = _positive("num_relations", num_relations)
        self.lin = Linear(in_channels, num_relations * out_channels, bias=False, weight_initializer="glorot")
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

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: OptTensor = None,
                edge_type: OptTensor = None) -> Tensor:
        num_nodes = x.size(0)
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f"'edge_index' must be [2, E], got {tuple(edge_index.shape)}")
        if edge_weight is not None and edge_weight.shape != (edge_index.size(1),):
            raise ValueError(f"'edge_weight' must be [{edge_index.size(1)}], got {tuple(edge_weight.shape)}")
        if edge_type is None:
            if self.num_relations != 1:
                raise ValueError(f"'edge_type' is required with num_relations={self.num_relations}")
            edge_type = edge_index.new_zeros(edge_index.size(1))
        elif edge_type.shape != (edge_index.size(1),):
            raise ValueError(f"'edge_type' must be [{edge_index.size(1)}], got {tuple(edge_type.shape)}")
        elif edge_type.numel() and (int(edge_type.min()) < 0 or int(edge_type.max()) >= self.num_relations):
            raise ValueError(f"'edge_type' must lie in [0, {self.num_relations}), got values in "
                             f"[{int(edge_type.min())}, {int(edge_type.max())}]")
        # Row (j, r) of the flat [N * R, out] transform is W_r^T x_j: relabel each edge's source to its row.
        h = self.lin(x).view(num_nodes * self.num_relations, self.out_channels)
        flat_index = torch.stack([edge_index[0] * self.num_relations + edge_type, edge_index[1]])
        out = self.propagate(flat_index, x=(h, None), edge_weight=edge_weight,
                             size=(num_nodes * self.num_relations, num_nodes))
        if self.bias is not None:
            out = out + self.bias
        return out

    def message(self, x_j: Tensor, edge_weight: OptTensor) -> Tensor:
        return x_j if edge_weight is None else edge_weight.view(-1, 1) * x_j

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, num_relations={self.num_relations})"


class SimilarityConv(MessagePassing):
    r"""The similarity-graph convolution of `"Videos as Space-Time Region Graphs"
    <https://arxiv.org/abs/1806.01810>`_ (eq. 1-3): a graph learned from the node features,

    .. math::
        F(\mathbf{x}_i, \mathbf{x}_j) = \phi(\mathbf{x}_i)^\top \phi'(\mathbf{x}_j), \quad
        G^{sim}_{ij} = \frac{\exp F(\mathbf{x}_i, \mathbf{x}_j)}{\sum_{j'} \exp F(\mathbf{x}_i, \mathbf{x}_{j'})},
        \quad \mathbf{Z} = \mathbf{G}^{sim} \mathbf{X} \mathbf{W}

    with :math:`\phi(\mathbf{x}) = \mathbf{w}\mathbf{x}`, :math:`\phi'(\mathbf{x}) = \mathbf{w}'\mathbf{x}`. The row
    softmax runs over the incoming edges of each target (:func:`torch_geometric.utils.softmax`), and gradients
    flow through it into :math:`\phi, \phi'` (detaching the affinity, as one unofficial implementation did, turns
    the graph into a fixed function of the input). Pass :func:`complete_edge_index` of the batch for the paper's
    dense graph over all regions of a video.

    Args:
        in_channels (int): Size of each input sample.
        out_channels (int): Size of each output sample.
        sim_channels (int, optional): Size of :math:`\phi` and :math:`\phi'`. (default: :obj:`in_channels`)
        bias (bool, optional): If set to :obj:`False`, the layer will not learn an additive bias.
            (default: :obj:`True`)
        **kwargs (optional): Additional arguments of :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **inputs:** node features :math:`(|\mathcal{V}|, F_{in})`, edge indices :math:`(2, |\mathcal{E}|)`
        - **output:** node features :math:`(|\mathcal{V}|, F_{out})`; with ``return_attention_weights=True``
          also :math:`G^{sim}` on the edges :math:`(|\mathcal{E}|)`
    """

    def __init__(self, in_channels: int, out_channels: int, sim_channels: Optional[int] = None, bias: bool = True,
                 **kwargs):
        kwargs.setdefault("aggr", "add")
        super().__init__(**kwargs)
        self.in_channels = _positive("in_channels", in_channels)
        self.out_channels = _positive("out_channels", out_channels)
        self.sim_channels = _positive("sim_channels", in_channels if sim_channels is None else sim_channels)
        self.phi = Linear(in_channels, self.sim_channels, bias=False, weight_initializer="glorot")
        self.phi_prime = Linear(in_channels, self.sim_channels, bias=False, weight_initializer="glorot")
        self.lin = Linear(in_channels, out_channels, bias=False, weight_initializer="glorot")
        if bias:
            self.bias = torch.nn.Parameter(torch.empty(out_channels))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        self.phi.reset_parameters()
        self.phi_prime.reset_parameters()
        self.lin.reset_parameters()
        if self.bias is not None:
            torch.nn.init.zeros_(self.bias)

    def similarity(self, x: Tensor, edge_index: Tensor) -> Tensor:
        r""":math:`G^{sim}` on the edges: the softmax of :math:`\phi(x_i)^\top \phi'(x_j)` over each target's
        incoming edges."""
        source, target = edge_index
        logits = (self.phi(x)[target] * self.phi_prime(x)[source]).sum(-1)
        return softmax(logits, target, num_nodes=x.size(0))

    def forward(self, x: Tensor, edge_index: Tensor, return_attention_weights: bool = False):
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f"'edge_index' must be [2, E], got {tuple(edge_index.shape)}")
        weight = self.similarity(x, edge_index)
        out = self.propagate(edge_index, x=self.lin(x), edge_weight=weight)
        if self.bias is not None:
            out = out + self.bias
        return (out, weight) if return_attention_weights else out

    def message(self, x_j: Tensor, edge_weight: Tensor) -> Tensor:
        return edge_weight.view(-1, 1) * x_j

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
                f"sim_channels={self.sim_channels})")
