r"""Every conv slot of the recognition models takes any PyG layer: here STRG's branches run GATConv and a
user-written MessagePassing layer, and the GCN baseline runs GraphSAGE.

    python examples/custom_layer.py
"""
import torch
from torch_geometric.nn import GATConv, MessagePassing, SAGEConv
from torch_geometric.data import Batch

import videograph as vg
from videograph.datasets import SyntheticInteractions
from videograph.models import GCN, STRG


class MaxRelation(MessagePassing):
    """A user's own layer: x_i' = W x_i + max_j ReLU(U (x_j - x_i)), weighted by the edge weight if given."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(aggr="max")
        self.lin = torch.nn.Linear(in_channels, out_channels)
        self.rel = torch.nn.Linear(in_channels, out_channels)

    def forward(self, x, edge_index, edge_weight=None):
        return self.lin(x) + self.propagate(edge_index, x=x, edge_weight=edge_weight)

    def message(self, x_i, x_j, edge_weight):
        out = torch.relu(self.rel(x_j - x_i))
        return out if edge_weight is None else edge_weight.view(-1, 1) * out


videos = SyntheticInteractions(4, seed=0)
regions = Batch.from_data_list([vg.build_graph(v.regions()) for v in videos])       # x = mean RGB, 3 channels
tubelets = Batch.from_data_list([vg.build_graph(v.tubelets()) for v in videos])

strg = STRG(3, num_classes=9,
            conv=lambda i, o: MaxRelation(i, o),                  # front/back branch: gets edge_weight
            sim_conv=lambda i, o: GATConv(i, o, heads=1))          # similarity branch: attention instead of phi/phi'
gcn = GCN(3, num_classes=9, conv=lambda i, o: SAGEConv(i, o), edge_key="dense_edge_index")
print(strg, strg(regions).shape)
print(gcn, gcn(tubelets).shape)
