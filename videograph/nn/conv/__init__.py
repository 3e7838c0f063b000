r"""Graph convolution layers (PyG :class:`~torch_geometric.nn.conv.MessagePassing`)."""
from videograph.nn.conv.pgcn_conv import PGCN, PGCNConv

__all__ = ["PGCNConv", "PGCN"]
