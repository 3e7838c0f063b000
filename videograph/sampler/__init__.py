r"""Neighbour sampling for mini-batch training on large graphs (GraphSAGE, P-GCN)."""
from videograph.sampler.segment_sample import segment_sample
from videograph.sampler.neighbor_sampler import NeighborSampler
from videograph.sampler.neighbor_loader import NeighborLoader, subgraph_from_sample

__all__ = ["segment_sample", "NeighborSampler", "NeighborLoader", "subgraph_from_sample"]
