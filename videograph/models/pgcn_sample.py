r"""P-GCN's training mini-batches, drawn per video from a generator keyed on ``(seed, epoch, video id)``
(:func:`videograph.distributed.keyed_generator`): what a video contributes to an epoch does not depend on the
other videos of its mini-batch, on its position there, nor, under DDP, on the rank that draws it, so K ranks
draw exactly what one process draws on the union of their videos.

* :func:`sample_video`: one video's fg : incomplete : bg seeds
  (:func:`~videograph.models.pgcn_targets.sample_proposals`) and their sampled neighbourhoods
  (:class:`~videograph.sampler.NeighborSampler`, P-GCN's ``N_s`` per layer from per-kind candidates), both from
  the video's own keyed generator.
* :func:`merge_samples`: several videos' samples as one mini-batch ordered hop by hop (all seeds first, then
  every video's first hop, ...), the layout :class:`~videograph.models.PGCNLocalizer` trims layer by layer.
* :class:`KeyedSampleCollate`: both, as the ``collate_fn`` of a :class:`torch.utils.data.DataLoader` over
  per-video graphs (``set_epoch`` every epoch, like :class:`~torch.utils.data.DistributedSampler`).
* :func:`split_videos`: a :func:`~videograph.models.pgcn_train.proposal_batch` as per-video graphs.
"""
import copy
from typing import Dict, List, Mapping, Optional, Sequence

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data
from torch_geometric.sampler import NodeSamplerInput

from ..distributed import keyed_generator
from ..graph import EdgeType
from ..sampler.neighbor_loader import subgraph_from_sample
from ..sampler.neighbor_sampler import NeighborSampler
from .pgcn_targets import sample_proposals

__all__ = ["DEFAULT_QUOTAS", "sample_video", "merge_samples", "KeyedSampleCollate", "split_videos"]

#: Candidates per edge kind before the draw of ``N_s`` (the reference code's 8 contextual, 2 surrounding).
DEFAULT_QUOTAS: Dict[str, int] = {"contextual": 8, "surrounding": 2}

_SAMPLE_KEYS = ("n_id", "e_id", "num_sampled_nodes", "num_sampled_edges", "input_id", "seed_time", "batch_size")


def _edge_types(quotas: Mapping[str, int]) -> Dict[int, int]:
    try:
        return {int(EdgeType[kind.upper()]): int(quota) for kind, quota in quotas.items()}
    except KeyError as error:
        raise ValueError(f"'quotas' names an unknown edge kind {error}; use e.g. {DEFAULT_QUOTAS}") from None


def sample_video(graph: Data, *, seed: int, epoch: int, num_neighbors: Sequence[int] = (4, 4),
                 quotas: Mapping[str, int] = DEFAULT_QUOTAS, ratio: Sequence[int] = (1, 6, 1)) -> Data:
    r"""One epoch's training sample of one video: ``ratio = (fg, incomplete, bg)`` seed proposals and their
    ``num_neighbors`` neighbourhoods, drawn from ``keyed_generator(seed, epoch, graph.video_id)`` in that order.

    ``graph`` is one video's proposal graph with ``category`` (and the other node targets) and a ``video_id``
    (``long [1]``, stable over epochs and processes). Returns the sampled sub-graph as
    :class:`~videograph.sampler.NeighborLoader` builds it: the seeds are its first ``batch_size`` nodes (a seed
    drawn twice keeps both positions), ``kind`` their slot's category (a fall-back slot is foreground), the
    per-hop counts in ``num_sampled_nodes`` / ``num_sampled_edges``."""
    for key in ("category", "video_id"):
        if key not in graph:
            raise ValueError(f"'graph' has no '{key}': build the graphs with proposal_batch(videos, ground_truth) "
                             f"and split_videos")
    video = int(graph.video_id.view(-1)[0])
    generator = keyed_generator(seed, epoch, video)
    index, kind = sample_proposals(graph.category, torch.zeros(graph.num_nodes, dtype=torch.long), 1,
                                   ratio=tuple(ratio), generator=generator)
    sampler = NeighborSampler(graph, list(num_neighbors), edge_types=_edge_types(quotas), generator=generator)
    sample = subgraph_from_sample(graph, sampler.sample_from_nodes(NodeSamplerInput(torch.arange(index.numel()), index)))
    sample.kind = torch.cat([kind, torch.full((sample.num_nodes - kind.numel(),), -1, dtype=torch.long)])
    return sample


def merge_samples(samples: Sequence[Data]) -> Data:
    r"""Several videos' samples (:func:`sample_video`) as one mini-batch, ordered hop by hop: the seeds of every
    video (video by video), then every video's first-hop nodes, and so on; edges likewise. So the seeds are the
    first ``batch_size`` nodes and ``num_sampled_nodes`` / ``num_sampled_edges`` count per hop over all videos,
    as :func:`torch_geometric.utils.trim_to_layer` expects; ``batch`` tells each node's video (its position in
    ``samples``). Graph-level attributes (``duration``, ``video_id``) are stacked per video."""
    if len(samples) == 0:
        raise ValueError("'samples' is empty")
    nodes = torch.tensor([list(s.num_sampled_nodes) for s in samples])           # [V, H + 1]
    edges = torch.tensor([list(s.num_sampled_edges) for s in samples])           # [V, H]
    if nodes.dim() != 2 or edges.size(1) != nodes.size(1) - 1:
        raise ValueError("every sample must have the same number of hops")
    stripped = []
    for sample in samples:
        sample = copy.copy(sample)
        for key in _SAMPLE_KEYS:
            if key in sample:
                del sample[key]
        stripped.append(sample)
    merged = Batch.from_data_list(stripped)
    # Hop of every node / edge in the video-major batch; a stable sort by hop gives the hop-major order.
    node_hop = torch.arange(nodes.size(1)).repeat(len(samples)).repeat_interleave(nodes.view(-1))
    edge_hop = torch.arange(edges.size(1)).repeat(len(samples)).repeat_interleave(edges.view(-1))
    node_order = torch.argsort(node_hop, stable=True)
    edge_order = torch.argsort(edge_hop, stable=True)
    position = torch.empty_like(node_order)
    position[node_order] = torch.arange(node_order.numel())
    node_slices = merged.ptr
    out = Data()
    for key, value in merged.items():
        if key == "ptr":
            continue
        if key == "edge_index":
            out.edge_index = position[value[:, edge_order]]
        elif isinstance(value, Tensor) and key.startswith("edge_"):
            out[key] = value[edge_order]
        elif isinstance(value, Tensor) and (key == "batch" or torch.equal(merged._slice_dict[key], node_slices)):
            out[key] = value[node_order]
        else:
            out[key] = value
    out.num_nodes = int(nodes.sum())
    out.num_sampled_nodes = nodes.sum(0).tolist()
    out.num_sampled_edges = edges.sum(0).tolist()
    out.batch_size = int(nodes[:, 0].sum())
    return out


class KeyedSampleCollate:
    r"""``collate_fn`` of a :class:`torch.utils.data.DataLoader` over per-video proposal graphs: every video of a
    mini-batch sampled by :func:`sample_video` with this epoch's key, merged by :func:`merge_samples`. Call
    :meth:`set_epoch` at the start of every epoch.

    The draws happen in the calling process: keyed draws cannot be reproduced inside data-loading workers
    (:class:`~videograph.sampler.NeighborSampler` re-seeds itself per worker), so a call from a worker raises
    (use ``num_workers=0``).

    Args:
        seed (int): the run's seed, first part of every key.
        num_neighbors (Sequence[int], optional): neighbours drawn per node and layer. (default: :obj:`(4, 4)`)
        quotas (Mapping[str, int], optional): candidates per edge kind. (default: :data:`DEFAULT_QUOTAS`)
        ratio (Sequence[int], optional): fg, incomplete, bg seeds per video. (default: :obj:`(1, 6, 1)`)
    """

    def __init__(self, seed: int, num_neighbors: Sequence[int] = (4, 4),
                 quotas: Optional[Mapping[str, int]] = None, ratio: Sequence[int] = (1, 6, 1)):
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"'seed' must be a non-negative int, got {seed!r}")
        self.seed, self.epoch = seed, 0
        self.num_neighbors, self.ratio = tuple(num_neighbors), tuple(ratio)
        self.quotas = dict(DEFAULT_QUOTAS if quotas is None else quotas)
        _edge_types(self.quotas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __call__(self, graphs: Sequence[Data]) -> Data:
        if torch.utils.data.get_worker_info() is not None:
            raise ValueError("KeyedSampleCollate draws in the main process: use the DataLoader with num_workers=0")
        return merge_samples([sample_video(g, seed=self.seed, epoch=self.epoch, num_neighbors=self.num_neighbors,
                                           quotas=self.quotas, ratio=self.ratio) for g in graphs])

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(seed={self.seed}, num_neighbors={self.num_neighbors}, "
                f"quotas={self.quotas}, ratio={self.ratio})")


def split_videos(data: Batch) -> List[Data]:
    """The per-video graphs of a :func:`~videograph.models.pgcn_train.proposal_batch` (its ``stats`` left on
    the batch)."""
    if not isinstance(data, Batch):
        raise TypeError(f"'data' must be a torch_geometric.data.Batch of proposal graphs, got {type(data).__name__}")
    data = copy.copy(data)
    if "stats" in data:
        del data.stats
    return data.to_data_list()
