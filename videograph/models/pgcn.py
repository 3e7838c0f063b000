r"""P-GCN's localisation model (Zeng et al., ICCV 2019, sec. 3.4, eq. 5-10): two proposal-graph networks and
their heads."""
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from ..nn.conv import PGCN
from ._utils import positive

__all__ = ["PGCNLocalizer"]


class PGCNLocalizer(nn.Module):
    r"""The P-GCN temporal action localiser from the `"Graph Convolutional Networks for Temporal Action
    Localization" <https://arxiv.org/abs/1909.03252>`_ paper: two :class:`~videograph.nn.conv.PGCN` encoders on the
    same proposal graph (eq. 6-8),

    .. math::
        \hat{\mathbf{y}}_i = \mathrm{FC}_1(\mathrm{GCN}_1(\mathbf{X})_i), \qquad
        \hat{\mathbf{c}}_i = \mathrm{FC}_3(\mathrm{GCN}_2(\mathbf{X}')_i), \qquad
        \hat{\mathbf{t}}_i = \mathrm{FC}_2(\mathrm{GCN}_2(\mathbf{X}')_i),

    :math:`\mathbf{X}` the proposals' features (``data.x``), :math:`\mathbf{X}'` their extended features
    (``data.x_ext``: boundaries extended by half the length on each side). Each GCN has ``num_layers``
    :class:`~videograph.nn.conv.PGCNConv` layers (eq. 10: mean of the cosine-weighted neighbours plus the node
    itself) and concatenates its last output with its input (eq. 5). Outputs: activity logits over ``K + 1``
    classes (column 0 = background), completeness scores for the ``K`` action classes, and class-wise boundary
    regression ``[K, 2]`` (centre shift over the length, log length ratio, in the training set's normalised
    units, see :class:`~videograph.models.pgcn_targets.RegressionStats`).

    The adjacency is ``data.edge_weight`` (``build_graph``'s cosine similarities, eq. 9), or ones when absent;
    ``clamp_negative=True`` zeroes negative cosines, as the reference code does. On a mini-batch of
    :class:`~videograph.sampler.NeighborLoader` (``num_sampled_nodes`` / ``num_sampled_edges`` present), the
    graph is trimmed layer by layer and the outputs cover its first ``batch_size`` nodes (the seeds); on a full
    graph they cover every node. A graph without edges makes both GCNs per-proposal MLPs (P-GCN's *MLP*
    baseline, table 3).

    Args:
        in_channels (int): size of ``data.x`` and ``data.x_ext``.
        num_classes (int): number of action classes :math:`K` (background excluded).
        hidden_channels (int, optional): hidden size of both GCNs. (default: :obj:`512`)
        num_layers (int, optional): layers per GCN. (default: :obj:`2`)
        dropout (float, optional): dropout between the GCN layers and before the heads. (default: :obj:`0.5`)
        clamp_negative (bool, optional): clamp negative edge weights to 0. (default: :obj:`False`)

    Shapes:
        - **input:** a graph with ``x``, ``x_ext`` :math:`(|\mathcal{V}|, F)`, ``edge_index``, optional
          ``edge_weight``
        - **output:** ``(activity (N, K + 1), completeness (N, K), regression (N, K, 2))``
    """

    def __init__(self, in_channels: int, num_classes: int, hidden_channels: int = 512, num_layers: int = 2,
                 dropout: float = 0.5, clamp_negative: bool = False):
        super().__init__()
        self.in_channels = positive("in_channels", in_channels)
        self.num_classes = positive("num_classes", num_classes)
        self.hidden_channels = positive("hidden_channels", hidden_channels)
        self.num_layers = positive("num_layers", num_layers)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"'dropout' must lie in [0, 1), got {dropout!r}")
        self.dropout = float(dropout)
        self.clamp_negative = bool(clamp_negative)
        self.gcn1 = PGCN(in_channels, hidden_channels, num_layers=num_layers, dropout=dropout)
        self.gcn2 = PGCN(in_channels, hidden_channels, num_layers=num_layers, dropout=dropout)
        width = 2 * in_channels
        self.activity = nn.Linear(width, num_classes + 1)
        self.completeness = nn.Linear(width, num_classes)
        self.regression = nn.Linear(width, 2 * num_classes)
        self.reset_parameters()

    def reset_parameters(self):
        self.gcn1.reset_parameters()
        self.gcn2.reset_parameters()
        for head in (self.activity, self.completeness, self.regression):
            head.reset_parameters()

    def forward(self, data) -> Tuple[Tensor, Tensor, Tensor]:
        for key in ("x", "x_ext"):
            value = getattr(data, key, None)
            if not isinstance(value, Tensor) or value.dim() != 2 or value.size(1) != self.in_channels:
                got = None if not isinstance(value, Tensor) else tuple(value.shape)
                raise ValueError(f"'data.{key}' must be [N, {self.in_channels}], got {got}")
        edge_index = data.edge_index
        weight: Optional[Tensor] = getattr(data, "edge_weight", None)
        if weight is not None and self.clamp_negative:
            weight = weight.clamp(min=0)
        hops = {}
        if getattr(data, "num_sampled_nodes", None) is not None:
            hops = dict(num_sampled_nodes_per_hop=list(data.num_sampled_nodes),
                        num_sampled_edges_per_hop=list(data.num_sampled_edges))
            _pad_hops(hops, self.num_layers)
        h1 = self.gcn1(data.x, edge_index, weight, **hops)
        h2 = self.gcn2(data.x_ext, edge_index, weight, **hops)
        if hops:
            size = int(data.batch_size)
            h1, h2 = h1[:size], h2[:size]
        h1 = nn.functional.dropout(h1, self.dropout, self.training)
        h2 = nn.functional.dropout(h2, self.dropout, self.training)
        regression = self.regression(h2).view(-1, self.num_classes, 2)
        return self.activity(h1), self.completeness(h2), regression

    def loss_share(self, batch) -> Tuple[Tensor, Tensor, Tensor]:
        r"""This rank's share of the P-GCN loss over the global batch, for
        :class:`~videograph.distributed.GlobalLoss`: ``(share, correct, count)``, with ``share``
        :func:`~videograph.models.pgcn_loss.global_pgcn_loss` of a sampled mini-batch
        (:class:`~videograph.models.pgcn_sample.KeyedSampleCollate`; every loss over its all-reduced term count),
        ``correct`` / ``count`` the rank's activity seeds (foreground and background) classified right / in all."""
        from .pgcn_loss import global_pgcn_loss
        from .pgcn_targets import BACKGROUND, FOREGROUND

        size = int(batch.batch_size)
        outputs = self(batch)
        kind, label = batch.kind[:size], batch.label[:size]
        share, _ = global_pgcn_loss(outputs, kind, label, batch.reg_target[:size], batch.batch[:size])
        scored = (kind == FOREGROUND) | (kind == BACKGROUND)
        target = torch.where(kind == FOREGROUND, label, 0)
        correct = ((outputs[0].detach().argmax(-1) == target) & scored).sum()
        return share, correct, scored.sum()

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, num_classes={self.num_classes}, "
                f"hidden_channels={self.hidden_channels}, num_layers={self.num_layers})")


def _pad_hops(hops: dict, num_layers: int) -> None:
    # A sample with fewer hops than layers (e.g. no edges at all) still trims correctly with empty extra hops.
    nodes, edges = hops["num_sampled_nodes_per_hop"], hops["num_sampled_edges_per_hop"]
    while len(nodes) <= num_layers:
        nodes.append(0)
    while len(edges) < len(nodes) - 1:
        edges.append(0)
