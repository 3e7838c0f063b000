r"""P-GCN's training mini-batches, drawn per video from a generator keyed on ``(seed, epoch, video id)``
(:func:`videograph.distributed.keyed_generator`): what a video contributes to an epoch does not depend on the
other videos of its mini-batch, on its position there, nor, under DDP, on the rank that draws it, so K ranks
draw exactly what one process draws on the union of their videos.

* :func:`sample_videos`: every video's fg : incomplete : bg seeds
  (:func:`~videograph.models.pgcn_targets.sample_proposals`) and their sampled neighbourhoods
  (:class:`~videograph.sampler.NeighborSampler`, P-GCN's ``N_s`` per layer from per-kind candidates), both from
  the video's own keyed generator (one :class:`~videograph.sampler.GroupedUniform` stream per video, one
  vectorised sampler call per mini-batch), as one mini-batch ordered hop by hop (all seeds first, then every video's
  first hop, ...), the layout :class:`~videograph.models.PGCNLocalizer` trims layer by layer.
* :class:`KeyedSampleCollate`: the same as the ``collate_fn`` of a :class:`torch.utils.data.DataLoader` over
  per-video graphs (``set_epoch`` every epoch, like :class:`~torch.utils.data.DistributedSampler`).
* :func:`split_videos`: a :func:`~videograph.models.pgcn_train.proposal_batch` as per-video graphs.
"""
import copy
from typing import Dict, List, Mapping, MutableMapping, Optional, Sequence

import torch
from torch_geometric.data import Batch, Data
from torch_geometric.sampler import NodeSamplerInput

from ..distributed import keyed_generator
from ..graph import EdgeType
from ..sampler.grouped_uniform import GroupedUniform
from ..sampler.neighbor_loader import subgraph_from_sample
from ..sampler.neighbor_sampler import NeighborSampler
from ..sampler.segment_sample import FLOYD_MAX_K
from .pgcn_targets import sample_proposals

__all__ = ["DEFAULT_QUOTAS", "sample_videos", "KeyedSampleCollate", "split_videos"]

#: Candidates per edge kind before the draw of ``N_s`` (the reference code's 8 contextual, 2 surrounding).
DEFAULT_QUOTAS: Dict[str, int] = {"contextual": 8, "surrounding": 2}

def _edge_types(quotas: Mapping[str, int]) -> Dict[int, int]:
    try:
        return {int(EdgeType[kind.upper()]): int(quota) for kind, quota in quotas.items()}
    except KeyError as error:
        raise ValueError(f"'quotas' names an unknown edge kind {error}; use e.g. {DEFAULT_QUOTAS}") from None


def sample_videos(graphs: Sequence[Data], *, seed: int, epoch: int, num_neighbors: Sequence[int] = (4, 4),
                  quotas: Mapping[str, int] = DEFAULT_QUOTAS, ratio: Sequence[int] = (1, 6, 1),
                  cache: Optional[MutableMapping[int, NeighborSampler]] = None) -> Data:
    r"""One epoch's training mini-batch of ``graphs`` (per-video proposal graphs with ``category``, the other node
    targets and a ``video_id``: ``long [1]``, stable over epochs and processes).

    For every video, ``ratio = (fg, incomplete, bg)`` seed proposals
    (:func:`~videograph.models.pgcn_targets.sample_proposals`) and their ``num_neighbors`` neighbourhoods
    (:class:`~videograph.sampler.NeighborSampler`, ``quotas`` candidates per edge kind) are drawn, in that order,
    from ``keyed_generator(seed, epoch, video_id)`` alone, exactly as a sampler called on the video alone with
    that generator would draw them, yet in one vectorised call over the batch: every video's numbers come from
    its own stream (:class:`~videograph.sampler.GroupedUniform`; the draws only read the video's own in-edges).
    The samples are laid out hop by hop: the seeds of every video (video by video), then every
    video's first-hop nodes, and so on, edges likewise, so the seeds are the first ``batch_size`` nodes and
    ``num_sampled_nodes`` / ``num_sampled_edges`` count per hop over all videos, as
    :func:`torch_geometric.utils.trim_to_layer` expects. Returns the sub-graph as
    :class:`~videograph.sampler.NeighborLoader` builds it, plus ``kind`` (the seeds' slot categories, a
    fall-back slot is foreground; ``-1`` for the other nodes); ``batch`` tells each node's video (its position
    in ``graphs``).

    ``cache`` (video id → that video's :class:`~videograph.sampler.NeighborSampler`, built with these
    ``num_neighbors`` and ``quotas``) keeps every video's in-edges grouped from one call to the next (filled as
    videos come; :class:`KeyedSampleCollate` keeps one), so a mini-batch's sampler is their concatenation
    (:meth:`~videograph.sampler.NeighborSampler.cat`) instead of a sort of all its edges."""
    if len(graphs) == 0:
        raise ValueError("'graphs' is empty")
    for i, graph in enumerate(graphs):
        for key in ("category", "video_id"):
            if key not in graph:
                raise ValueError(f"'graphs[{i}]' has no '{key}': build the graphs with proposal_batch(videos, "
                                 f"ground_truth) and split_videos")
    batch = Batch.from_data_list(list(graphs))
    num_slots, types = sum(ratio), _edge_types(quotas)
    video_ids = [int(graph.video_id.view(-1)[0]) for graph in graphs]
    generators = [keyed_generator(seed, epoch, video_id) for video_id in video_ids]
    # Each video's stream: its seed slots' floats, then the doubles of its neighbour draws (GroupedUniform).
    uniform = torch.cat([torch.rand(1, num_slots, generator=g) for g in generators])
    index, kind = sample_proposals(batch.category, batch.batch, len(graphs), ratio=tuple(ratio), uniform=uniform)
    streams = GroupedUniform(generators, batch.batch, _stream_size(num_slots, num_neighbors, types.values(),
                                                                   int(batch.ptr.diff().max())))
    cache = {} if cache is None else cache
    parts = []
    for video_id, graph in zip(video_ids, graphs):
        part = cache.get(video_id)
        if part is None or part.num_nodes != graph.num_nodes or part.num_edges != graph.edge_index.size(1) \
                or part.num_neighbors != list(num_neighbors) or part.edge_types != types:
            part = cache[video_id] = NeighborSampler(graph, list(num_neighbors), edge_types=types)
        parts.append(part)
    sampler = NeighborSampler.cat(parts, generator=streams)
    out = sampler.sample_from_nodes(NodeSamplerInput(torch.arange(index.numel()), index))
    sample = subgraph_from_sample(batch, out)
    sample.kind = torch.cat([kind, torch.full((sample.num_nodes - kind.numel(),), -1, dtype=torch.long)])
    return sample


def _stream_size(num_seeds: int, num_neighbors: Sequence[int], quotas, max_nodes: int) -> int:
    # Doubles a video's Floyd draws read at most: per hop, [quota, frontier * kinds] then [N_s, frontier].
    size, frontier = 0, num_seeds
    caps = [q if 0 <= q <= FLOYD_MAX_K else FLOYD_MAX_K for q in quotas]
    for k in num_neighbors:
        k_cap = k if 0 <= k <= FLOYD_MAX_K else FLOYD_MAX_K
        size += frontier * (len(caps) * max(caps, default=0) + k_cap)
        frontier = min(frontier * k if k >= 0 else max_nodes, max_nodes)
    return min(size, 4096)


class KeyedSampleCollate:
    r"""``collate_fn`` of a :class:`torch.utils.data.DataLoader` over per-video proposal graphs: every video of a
    mini-batch sampled by :func:`sample_videos` with this epoch's keys. Call
    :meth:`set_epoch` at the start of every epoch.

    Every video's in-edges are grouped once and kept by video id (the ``cache`` of :func:`sample_videos`), so
    a video id must name one graph. The draws happen in the calling process: keyed draws cannot be reproduced
    inside data-loading workers (:class:`~videograph.sampler.NeighborSampler` re-seeds itself per worker), so a
    call from a worker raises (use ``num_workers=0``).

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
        self._cache: Dict[int, NeighborSampler] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __call__(self, graphs: Sequence[Data]) -> Data:
        if torch.utils.data.get_worker_info() is not None:
            raise ValueError("KeyedSampleCollate draws in the main process: use the DataLoader with num_workers=0")
        return sample_videos(graphs, seed=self.seed, epoch=self.epoch, num_neighbors=self.num_neighbors,
                             quotas=self.quotas, ratio=self.ratio, cache=self._cache)

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
