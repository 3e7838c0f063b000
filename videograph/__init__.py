"""videograph: graph learning for video understanding on PyTorch Geometric."""
from . import datasets, nn, ops, sampler, subgraph
from .data import Proposals, Regions, Tubelets
from .graph import EdgeType, build_graph
from .nn import PrototypeBank

__version__ = "0.1.0"

__all__ = [
    "build_graph",
    "EdgeType",
    "Tubelets",
    "Regions",
    "Proposals",
    "PrototypeBank",
    "datasets",
    "nn",
    "ops",
    "sampler",
    "subgraph",
    "__version__",
]
