r"""Pooling and whole-graph baselines of the recognition ablation (MUSLE table 1: *Base*, *Base+GCN*)."""
from typing import Optional

import torch
from torch import Tensor, nn
from torch_geometric.nn import GCNConv, global_mean_pool

from ._utils import ConvFactory, batch_vector, call_conv, graph_count, positive

__all__ = ["Base", "GCN"]


def _global_features(data, channels: int, num_graphs: int) -> Optional[Tensor]:
    if channels == 0:
        return None
    g = getattr(data, "global_x", None)
    if g is None or g.shape != (num_graphs, channels):
        got = None if g is None else tuple(g.shape)
        raise ValueError(f"'data.global_x' must be [{num_graphs}, {channels}] (one global feature per video), "
                         f"got {got}")
    return g


class Base(nn.Module):
    r"""The *Base* baseline: node features mean-pooled per video (optionally concatenated with a global video
    feature ``data.global_x``), then an MLP,

    .. math::
        \hat{y} = \mathrm{MLP}\left(\left[\tfrac{1}{|V|} \textstyle\sum_{v} \mathbf{x}_v,\ \mathbf{g}\right]\right).

    It sees no relation between nodes, only what the pooled features carry.

    Args:
        in_channels (int): node feature size (``data.x``).
        num_classes (int): number of classes.
        hidden_channels (int, optional): MLP width. (default: :obj:`64`)
        global_channels (int, optional): size of ``data.global_x``; :obj:`0` to use none. (default: :obj:`0`)
        dropout (float, optional): dropout before the last layer. (default: :obj:`0.0`)

    Shapes:
        - **input:** a :class:`~torch_geometric.data.Batch` (or :class:`~torch_geometric.data.Data`) with ``x``
          :math:`(N, F)` and ``batch``
        - **output:** logits :math:`(B, C)`
    """

    def __init__(self, in_channels: int, num_classes: int, hidden_channels: int = 64, global_channels: int = 0,
                 dropout: float = 0.0):
        super().__init__()
        self.in_channels = positive("in_channels", in_channels)
        self.num_classes = positive("num_classes", num_classes)
        self.global_channels = int(global_channels)
        self.mlp = nn.Sequential(nn.Linear(in_channels + self.global_channels, positive("hidden_channels",
                                                                                          hidden_channels)),
                                 nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden_channels, num_classes))

    def forward(self, data) -> Tensor:
        num_graphs = graph_count(data)
        pooled = global_mean_pool(data.x, batch_vector(data), size=num_graphs)
        g = _global_features(data, self.global_channels, num_graphs)
        return self.mlp(pooled if g is None else torch.cat([pooled, g], dim=-1))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.in_channels}, num_classes={self.num_classes})"


class GCN(nn.Module):
    r"""The whole-graph baseline (MUSLE table 1, *Base+GCN*): ``num_layers`` graph convolutions with ReLU over
    ``data[edge_key]`` (default the merged ``edge_index``, e.g. the complete tubelet graph), mean-pooled per video,
    then a linear classifier. Any PyG conv fits the slot: ``conv`` builds layer :math:`(F_{in}, F_{out})`; edge
    weights (``data[edge_weight_key]``) are passed when its ``forward`` takes ``edge_weight``.

    Args:
        in_channels (int): node feature size.
        num_classes (int): number of classes.
        hidden_channels (int, optional): width. (default: :obj:`64`)
        num_layers (int, optional): number of convs. (default: :obj:`2`)
        conv (callable, optional): ``conv(in, out) -> MessagePassing``. (default: :class:`~torch_geometric.nn.GCNConv`)
        edge_key (str, optional): which edges to convolve over. (default: :obj:`"edge_index"`)
        edge_weight_key (str, optional): edge weights to pass, if present. (default: :obj:`None`)
        dropout (float, optional): dropout between layers. (default: :obj:`0.0`)

    Shapes:
        - **input:** a batch with ``x`` :math:`(N, F)`, ``edge_key``, ``batch``
        - **output:** logits :math:`(B, C)`
    """

    def __init__(self, in_channels: int, num_classes: int, hidden_channels: int = 64, num_layers: int = 2,
                 conv: Optional[ConvFactory] = None, edge_key: str = "edge_index",
                 edge_weight_key: Optional[str] = None, dropout: float = 0.0):
        super().__init__()
        self.in_channels = positive("in_channels", in_channels)
        self.num_classes = positive("num_classes", num_classes)
        positive("num_layers", num_layers)
        conv = conv or (lambda i, o: GCNConv(i, o))
        sizes = [in_channels] + [positive("hidden_channels", hidden_channels)] * num_layers
        self.convs = nn.ModuleList(conv(sizes[k], sizes[k + 1]) for k in range(num_layers))
        self.edge_key = edge_key
        self.edge_weight_key = edge_weight_key
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_channels, num_classes)

    def forward(self, data) -> Tensor:
        if self.edge_key not in data:
            raise ValueError(f"GCN convolves over 'data.{self.edge_key}', which the input lacks")
        edge_index = data[self.edge_key]
        edge_weight = data[self.edge_weight_key] if self.edge_weight_key else None
        x = data.x
        for conv in self.convs:
            x = self.dropout(torch.relu(call_conv(conv, x, edge_index, edge_weight)))
        return self.head(global_mean_pool(x, batch_vector(data), size=graph_count(data)))

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, num_classes={self.num_classes}, "
                f"convs={[c.__class__.__name__ for c in self.convs]})")
