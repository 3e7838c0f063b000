r"""Neural network layers for video graphs."""
from videograph.nn.conv import PGCN, PGCNConv

__all__ = ["PGCNConv", "PGCN"]
