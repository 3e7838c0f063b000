r"""Neural network layers for video graphs."""
from . import functional
from .conv import PGCN, PGCNConv
from .gmm import GaussianMixture

__all__ = ["functional", "GaussianMixture", "PGCNConv", "PGCN"]
