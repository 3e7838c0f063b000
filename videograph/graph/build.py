r"""``build_graph``: one entry point from a video description to a PyG graph."""
import os
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple, Union

import torch
from torch_geometric.data import Batch, Data

from ..data import Proposals, Regions, Tubelets
from ..io import FrameFolder, VideoReader
from .edge_type import EdgeType
from .proposal import proposal_graph
from .region import region_graph
from .tubelet import tubelet_graph

__all__ = ["build_graph", "EDGE_KINDS"]

Video = Union[Tubelets, Regions, Proposals]

#: The edge kinds each input builds, in the order they are merged into ``edge_index``.
EDGE_KINDS: Dict[type, Tuple[str, ...]] = {
    Tubelets: ("dense",),
    Regions: ("front", "back"),
    Proposals: ("contextual", "surrounding"),
}
_BUILDERS = {Tubelets: tubelet_graph, Regions: region_graph, Proposals: proposal_graph}


def _merge_edges(data: Data, kinds: Sequence[str]) -> Data:
    """Concatenates the ``<kind>_edge_*`` sets into ``edge_index``, ``edge_type``, ``edge_weight``."""
    indices, weights, attrs = [], [], []
    for kind in kinds:
        index = data[f"{kind}_edge_index"]
        indices.append(index)
        weight = data.get(f"{kind}_edge_weight")
        weights.append(weight if weight is not None else torch.ones(index.size(1), device=index.device))
        attrs.append(data.get(f"{kind}_edge_attr"))
    data.edge_index = torch.cat(indices, dim=1)
    data.edge_type = torch.empty(data.edge_index.size(1), dtype=torch.long, device=data.edge_index.device)
    offset = 0
    for kind, index in zip(kinds, indices):  # one allocation, each value written once
        data.edge_type[offset:offset + index.size(1)] = int(EdgeType[kind.upper()])
        offset += index.size(1)
    data.edge_weight = torch.cat(weights)
    if all(attr is not None for attr in attrs) and len({attr.size(-1) for attr in attrs}) == 1:
        data.edge_attr = torch.cat(attrs)
    return data


def _check_edges(video: Video, edges: Optional[Iterable[str]]) -> Tuple[str, ...]:
    available = EDGE_KINDS[type(video)]
    if edges is None:
        return available
    if isinstance(edges, str):
        edges = (edges,)
    edges = tuple(edges)
    unknown = [kind for kind in edges if kind not in available]
    if unknown:
        raise ValueError(f"'edges' has {unknown} for a {type(video).__name__} video, which builds "
                         f"{list(available)}")
    return tuple(kind for kind in available if kind in edges)


def build_graph(video: Union[Video, Sequence[Video]], *, edges: Optional[Iterable[str]] = None,
                **options: Any) -> Union[Data, Batch]:
    r"""Turns a video description into a :class:`torch_geometric.data.Data` graph.

    * :class:`~videograph.data.Tubelets`: MUSLE's complete tubelet graph (``dense`` edges), see
      :func:`~videograph.graph.tubelet_graph`.
    * :class:`~videograph.data.Regions`: the space-time region graph's ``front`` and ``back`` IoU graphs, see
      :func:`~videograph.graph.region_graph` (options ``iou_threshold``).
    * :class:`~videograph.data.Proposals`: P-GCN's ``contextual`` and ``surrounding`` edges, see
      :func:`~videograph.graph.proposal_graph` (options ``theta_ctx``, ``theta_sur``, ``max_contextual``,
      ``max_surrounding``, ``pgcn_official``, ``chunk_size``).
    * a video file (a path or a :class:`~videograph.io.VideoReader`) or a folder of frame images (a path or a
      :class:`~videograph.io.FrameFolder`): sampled clips are decoded, detected (or read from ground-truth
      ``boxes``) and linked into a tubelet or region graph, see :func:`~videograph.video.video_graph` (options
      ``kind``, ``detector``, ``boxes``, ``linker``, ``num_clips``, ``clip_len``, ``top_m``, ``frame_interval``,
      ``mode``, ``backbone``, ``generator``, ``progress``, ``label``).

    Each kind's edges are stored as ``<kind>_edge_index`` with ``<kind>_edge_weight`` or
    ``<kind>_edge_attr``, and merged into ``edge_index``, ``edge_type`` (:class:`EdgeType` values) and
    ``edge_weight``, so any PyG convolution (or :class:`~torch_geometric.nn.conv.RGCNConv`) consumes the graph
    directly. Every key holding node indices contains ``index``, so :class:`~torch_geometric.data.Batch`
    offsets it.

    Args:
        video: one video description, or a list of them (of one kind) to get a
            :class:`~torch_geometric.data.Batch`.
        edges: the edge kinds to build (default: all of the input's kinds).
        **options: passed to the builder of the input's kind.

    Example:
        >>> tubelets = Tubelets(boxes, clip, features, frame_size=(224, 224))
        >>> data = build_graph(tubelets)
        >>> GCNConv(data.num_features, 64)(data.x, data.edge_index, data.edge_weight)
    """
    if isinstance(video, (list, tuple)):
        if len(video) == 0:
            raise ValueError("'video' is an empty list: pass at least one video")
        kinds = {"video file" if isinstance(v, (str, os.PathLike, VideoReader, FrameFolder)) else type(v).__name__
                 for v in video}
        if len(kinds) > 1:
            raise TypeError(f"'video' mixes kinds {sorted(kinds)}: batch one kind at a time")
        return Batch.from_data_list([build_graph(v, edges=edges, **options) for v in video])
    if isinstance(video, (str, os.PathLike, VideoReader, FrameFolder)):
        from ..video.build import video_graph
        if edges is not None:
            raise ValueError("'edges' is not an option for a video file: it builds all of its kind's edges")
        return video_graph(video, **options)
    builder = _BUILDERS.get(type(video))
    if builder is None:
        raise TypeError(f"'video' must be Tubelets, Regions, Proposals, a video path, a VideoReader or a "
                        f"FrameFolder (or a list of them), got {type(video).__name__}")
    kinds = _check_edges(video, edges)
    try:
        data = builder(video, edges=kinds, **options)
    except TypeError as error:
        if "unexpected keyword argument" in str(error):
            raise TypeError(f"build_graph got an option that {type(video).__name__} graphs do not take: {error}") \
                from None
        raise
    return _merge_edges(data, kinds)
