r"""The space-time region graph model (Wang & Gupta, ECCV 2018, sec. 4-5)."""
from typing import Optional

import torch
from torch import Tensor, nn
from torch_geometric.nn import global_mean_pool

from ..nn.conv.strg_conv import SimilarityConv, STRGConv, complete_edge_index
from ._utils import ConvFactory, batch_vector, call_conv, graph_count, positive
from .base import _global_features

__all__ = ["STRG"]


class STRG(nn.Module):
    r"""The space-time region graph network of `"Videos as Space-Time Region Graphs"
    <https://arxiv.org/abs/1806.01810>`_: two branches of ``num_layers`` graph convolutions over the region
    nodes, each layer followed by LayerNorm then ReLU,

    * the **similarity branch** on the dense graph of each video's regions, re-learned per layer
      (:class:`~videograph.nn.conv.SimilarityConv`: :math:`G^{sim} = \mathrm{softmax}_j(\phi(x_i)^\top \phi'(x_j))`,
      gradients flowing through the softmax),
    * the **front/back branch** :math:`Z = G^{front} X W_f + G^{back} X W_b` (:class:`~videograph.nn.conv.STRGConv`
      on ``front_edge_index`` / ``back_edge_index`` and their row-normalised weights),

    summed with the input as a residual. The last layer of each branch is zero-initialised (as the paper does,
    following non-local networks: here a per-channel gain on its output starts at zero), so a fresh model's node
    features are its input and its video feature is the input's mean. The video feature :math:`[\mathrm{mean}_v\, z_v, \mathbf{g}]` (``g`` = ``data.global_x``, the
    backbone map's global average; optional) goes to a linear classifier.

    Any PyG conv fits either slot: ``conv(in, out)`` replaces the front/back layer (it gets the merged front and back
    edges, with ``edge_weight`` / ``edge_type`` when its ``forward`` takes them; ``edge_type`` 0 = front, 1 = back),
    ``sim_conv(in, out)`` the similarity layer (it gets the dense per-video edges). ``branches`` picks which run.

    Args:
        in_channels (int): region feature size :math:`d` (every layer keeps it, for the residual).
        num_classes (int): number of classes.
        num_layers (int, optional): layers per branch. (default: :obj:`3`)
        global_channels (int, optional): size of ``data.global_x``; :obj:`0` for none. (default: :obj:`0`)
        sim_channels (int, optional): size of :math:`\phi, \phi'`. (default: :obj:`in_channels`)
        conv (callable, optional): front/back layer factory. (default: :class:`STRGConv` with 2 relations)
        sim_conv (callable, optional): similarity layer factory. (default: :class:`SimilarityConv`)
        branches (tuple, optional): subset of ``("similarity", "front_back")``. (default: both)
        zero_init (bool, optional): zero the last layer's output of each branch. (default: :obj:`True`)
        dropout (float, optional): dropout before the classifier. (default: :obj:`0.0`)
        hidden_channels (int, optional): embed the input with Linear + ReLU to this width first (the layers,
            residual and pooling then use it). (default: :obj:`None`: the layers keep ``in_channels``)

    Shapes:
        - **input:** a batch of region graphs with ``x`` :math:`(N, d)`, ``front_edge_index``,
          ``front_edge_weight``, ``back_edge_index``, ``back_edge_weight``, ``batch``
        - **output:** logits :math:`(B, C)`; :meth:`embed` gives the video features :math:`(B, d + G)`
    """

    def __init__(self, in_channels: int, num_classes: int, num_layers: int = 3, global_channels: int = 0,
                 sim_channels: Optional[int] = None, conv: Optional[ConvFactory] = None,
                 sim_conv: Optional[ConvFactory] = None, branches=("similarity", "front_back"),
                 zero_init: bool = True, dropout: float = 0.0, hidden_channels: Optional[int] = None):
        super().__init__()
        self.in_channels = positive("in_channels", in_channels)
        # Optional input embedding: the graph layers then work at width hidden_channels (the paper's d is the
        # backbone's 512; LayerNorm over a handful of raw channels, e.g. box coordinates, erases their scale).
        self.embed_input = nn.Sequential(nn.Linear(in_channels, positive("hidden_channels", hidden_channels)),
                                         nn.ReLU()) if hidden_channels is not None else None
        self.num_classes = positive("num_classes", num_classes)
        self.num_layers = positive("num_layers", num_layers)
        self.global_channels = int(global_channels)
        unknown = set(branches) - {"similarity", "front_back"}
        if unknown or not branches:
            raise ValueError(f"'branches' must be a non-empty subset of ('similarity', 'front_back'), got {branches!r}")
        self.branches = tuple(branches)
        sim_conv = sim_conv or (lambda i, o: SimilarityConv(i, o, sim_channels))
        conv = conv or (lambda i, o: STRGConv(i, o, num_relations=2))
        d = in_channels if hidden_channels is None else hidden_channels
        self.sim_convs = nn.ModuleList(sim_conv(d, d) for _ in range(num_layers)) \
            if "similarity" in self.branches else nn.ModuleList()
        self.sim_norms = nn.ModuleList(nn.LayerNorm(d) for _ in self.sim_convs)
        self.fb_convs = nn.ModuleList(conv(d, d) for _ in range(num_layers)) \
            if "front_back" in self.branches else nn.ModuleList()
        self.fb_norms = nn.ModuleList(nn.LayerNorm(d) for _ in self.fb_convs)
        self.zero_init = zero_init
        self.sim_gain = nn.Parameter(torch.empty(d))
        self.fb_gain = nn.Parameter(torch.empty(d))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(d + self.global_channels, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in list(self.sim_convs) + list(self.fb_convs) + list(self.sim_norms) + list(self.fb_norms):
            module.reset_parameters()
        if self.embed_input is not None:
            self.embed_input[0].reset_parameters()
        # The last layer's output starts at zero through a per-channel gain after its LayerNorm and ReLU (as
        # non-local networks zero their last BatchNorm's scale). Zeroing the conv's weights instead would leave
        # ReLU(LayerNorm(0)) = 0 at ReLU's kink, where no gradient passes, and would set the similarity layer's
        # phi = phi' = 0, whose product gets no gradient either: the branch would never train.
        for gain in (self.sim_gain, self.fb_gain):
            if self.zero_init:
                nn.init.zeros_(gain)
            else:
                nn.init.ones_(gain)
        self.head.reset_parameters()

    @staticmethod
    def front_back_edges(data):
        """The merged front and back edges, their weights and relation ids (0 front, 1 back)."""
        missing = [k for k in ("front_edge_index", "back_edge_index") if k not in data]
        if missing:
            raise ValueError(f"STRG's front/back branch needs {missing} (build_graph on Regions makes them)")
        front, back = data.front_edge_index, data.back_edge_index
        edge_index = torch.cat([front, back], dim=1)
        weight = torch.cat([data.front_edge_weight, data.back_edge_weight]) if "front_edge_weight" in data and \
            "back_edge_weight" in data else None
        edge_type = torch.cat([front.new_zeros(front.size(1)), front.new_ones(back.size(1))])
        return edge_index, weight, edge_type

    def node_features(self, data) -> Tensor:
        x = data.x
        if x is None or x.dim() != 2 or x.size(1) != self.in_channels:
            raise ValueError(f"'data.x' must be [N, {self.in_channels}], got "
                             f"{None if x is None else tuple(x.shape)}")
        if self.embed_input is not None:
            x = self.embed_input(x)
        out = x
        if len(self.sim_convs):
            dense = complete_edge_index(batch_vector(data))
            h = x
            for conv, norm in zip(self.sim_convs, self.sim_norms):
                h = torch.relu(norm(call_conv(conv, h, dense)))
            out = out + self.sim_gain * h
        if len(self.fb_convs):
            edge_index, weight, edge_type = self.front_back_edges(data)
            h = x
            for conv, norm in zip(self.fb_convs, self.fb_norms):
                h = torch.relu(norm(call_conv(conv, h, edge_index, weight, edge_type)))
            out = out + self.fb_gain * h
        return out

    def embed(self, data) -> Tensor:
        num_graphs = graph_count(data)
        pooled = global_mean_pool(self.node_features(data), batch_vector(data), size=num_graphs)
        g = _global_features(data, self.global_channels, num_graphs)
        return pooled if g is None else torch.cat([pooled, g], dim=-1)

    def forward(self, data) -> Tensor:
        return self.head(self.dropout(self.embed(data)))

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, num_classes={self.num_classes}, "
                f"num_layers={self.num_layers}, branches={self.branches})")
