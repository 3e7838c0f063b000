r"""Neighbour sampling for mini-batch training on large graphs (GraphSAGE, P-GCN)."""
from videograph.sampler.grouped_uniform import GroupedUniform
from videograph.sampler.segment_sample import segment_sample
from videograph.sampler.neighbor_sampler import NeighborSampler
from videograph.sampler.neighbor_loader import NeighborLoader, subgraph_from_sample

__all__ = ["GroupedUniform", "segment_sample", "NeighborSampler", "NeighborLoader", "subgraph_from_sample"]
