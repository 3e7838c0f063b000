r"""Neural network layers for video graphs."""
from . import functional
from .conv import PGCN, PGCNConv, SimilarityConv, STRGConv
from .encoders import NodeEncoder, PairEncoder, RoIFeatures, SmallCNN
from .gmm import GaussianMixture

__all__ = ["functional", "GaussianMixture", "PGCNConv", "PGCN", "STRGConv", "SimilarityConv", "RoIFeatures",
           "SmallCNN", "NodeEncoder", "PairEncoder"]
