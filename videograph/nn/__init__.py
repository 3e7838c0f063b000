r"""Neural network layers for video graphs."""
from . import functional
from .conv import PGCN, PGCNConv, SimilarityConv, STRGConv
from .encoders import NodeEncoder, PairEncoder, RoIFeatures, SmallCNN
from .gmm import GaussianMixture
from .lgd import KernelizedClassifier, LGDBlock, LowRankLinear, P3DBottleneck
from .prototype import BestSubgraphs, PrototypeBank
from .tensor_sketch import TensorSketch

__all__ = ["functional", "GaussianMixture", "PrototypeBank", "BestSubgraphs", "PGCNConv", "PGCN", "STRGConv",
           "SimilarityConv", "RoIFeatures", "SmallCNN", "NodeEncoder", "PairEncoder",
           "TensorSketch", "LGDBlock", "P3DBottleneck", "LowRankLinear", "KernelizedClassifier"]
