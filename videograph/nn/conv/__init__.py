r"""Graph convolution layers (PyG :class:`~torch_geometric.nn.conv.MessagePassing`)."""
from videograph.nn.conv.pgcn_conv import PGCN, PGCNConv
from videograph.nn.conv.strg_conv import SimilarityConv, STRGConv, complete_edge_index

__all__ = ["PGCNConv", "PGCN", "STRGConv", "SimilarityConv", "complete_edge_index"]
