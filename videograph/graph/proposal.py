r"""P-GCN's proposal graph (Zeng et al., ICCV 2019, sec. 3.3)."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.utils import cumsum

from ..data import Proposals
from .segments import segment_distance, segment_iou

__all__ = ["proposal_graph", "OFFICIAL_MAX_CONTEXTUAL", "OFFICIAL_MAX_SURROUNDING"]

#: Candidates per node in P-GCN's reference code (``iou_num`` and ``dis_num`` of its dataset_cfg.yaml).
OFFICIAL_MAX_CONTEXTUAL = 8
OFFICIAL_MAX_SURROUNDING = 2


def _keep_best(row: Tensor, col: Tensor, key: Tensor, k: Optional[int], descending: bool
               ) -> Tuple[Tensor, Tensor]:
    """Keeps, for every row, the ``k`` entries with the best key (ties: smaller column first).

    ``row`` must be sorted and ``col`` ascending within each row, as ``nonzero`` returns them.
    """
    if k is None or row.numel() == 0:
        return row, col
    order = torch.sort(key, descending=descending, stable=True).indices
    order = order[torch.sort(row[order], stable=True).indices]
    row, col = row[order], col[order]
    counts = torch.bincount(row - row[0])
    start = cumsum(counts)[:-1].repeat_interleave(counts)
    rank = torch.arange(row.numel(), device=row.device) - start
    keep = rank < k
    return row[keep], col[keep]


def _cosine(x: Tensor, src: Tensor, dst: Tensor, chunk: int = 1 << 16) -> Tensor:
    unit = F.normalize(x, dim=-1)
    return torch.cat([(unit[s] * unit[d]).sum(-1) for s, d in zip(src.split(chunk), dst.split(chunk))]) \
        if src.numel() else x.new_zeros(0)


def _check_count(name: str, value: Optional[int]) -> Optional[int]:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ValueError(f"'{name}' must be None or a positive integer, got {value!r}")
    return value


def proposal_graph(video: Proposals, *, edges: Tuple[str, ...] = ("contextual", "surrounding"),
                   theta_ctx: float = 0.7, theta_sur: float = 1.0, max_contextual: Optional[int] = None,
                   max_surrounding: Optional[int] = None, pgcn_official: bool = False,
                   chunk_size: int = 1024) -> Data:
    r"""Builds P-GCN's graph of a video's temporal proposals.

    * Contextual edges link proposals whose tIoU exceeds :math:`\theta_{ctx}`.
    * Surrounding edges link disjoint proposals (tIoU = 0) whose normalised centre distance
      :math:`d = |c_i - c_j| / U(p_i, p_j)` is below :math:`\theta_{sur}`, :math:`U` the length of the union
      of the two segments, the measure used in tIoU (:func:`~videograph.graph.segment_distance`).

    Both relations are symmetric, so every edge is present in both directions; there are no self-loops.
    ``max_contextual`` / ``max_surrounding`` keep, for each target node, only its best sources (highest tIoU,
    nearest centre; ties go to the smaller index), which makes the graph directed. Edge weights
    (``<kind>_edge_weight``) are the cosine similarity of the two proposals' features (P-GCN's adjacency) when
    features are given, else one. Cosine weights can be negative: feed them to layers that take any weight
    (:class:`~videograph.nn.conv.PGCNConv`, :class:`~torch_geometric.nn.conv.GraphConv`), not to
    :class:`~torch_geometric.nn.conv.GCNConv`, whose degree normalisation needs non-negative weights. Edges are
    sorted by target, then source.

    ``pgcn_official=True`` reproduces the reference code (Alvin-Zeng/PGCN, ``ops/detection_metrics.py`` and
    ``pgcn_dataset.py``): segments in integer frames with both end frames counted (lengths ``end - start + 1``,
    so segments sharing a frame overlap), :math:`U` the span from the earliest start to the latest end, and at
    most 8 contextual and 2 surrounding sources per node unless ``max_*`` say otherwise. (The span always
    exceeds the centre distance of two disjoint segments, so :math:`\theta_{sur} = 1` keeps every disjoint
    pair there, as the reference code's ``dis_threshold = 0`` does.) The reference code additionally repeats
    candidates, or the node itself, when it has fewer than the quota, which is a sampling choice left to
    :mod:`videograph.sampler`.

    Pairwise work runs in blocks of ``chunk_size`` rows, so memory is :math:`O(\text{chunk} \cdot N + E)`.

    Node keys: ``x`` (features), ``x_ext`` (extended features), ``segments``, ``score``, ``y`` (labels).
    """
    if not 0.0 <= theta_ctx <= 1.0:
        raise ValueError(f"'theta_ctx' must lie in [0, 1], got {theta_ctx!r}")
    if not theta_sur > 0.0:
        raise ValueError(f"'theta_sur' must be positive, got {theta_sur!r}")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"'chunk_size' must be a positive integer, got {chunk_size!r}")
    max_contextual = _check_count("max_contextual", max_contextual)
    max_surrounding = _check_count("max_surrounding", max_surrounding)
    if pgcn_official:
        max_contextual = OFFICIAL_MAX_CONTEXTUAL if max_contextual is None else max_contextual
        max_surrounding = OFFICIAL_MAX_SURROUNDING if max_surrounding is None else max_surrounding

    segments = video.segments
    num_nodes = video.num_nodes
    data = Data(num_nodes=num_nodes, segments=segments)
    if video.features is not None:
        data.x = video.features
    if video.extended_features is not None:
        data.x_ext = video.extended_features
    if video.scores is not None:
        data.score = video.scores
    if video.labels is not None:
        data.y = video.labels

    want_ctx, want_sur = "contextual" in edges, "surrounding" in edges
    found = {"contextual": ([], []), "surrounding": ([], [])}
    for start in range(0, num_nodes, chunk_size):
        block = segments[start:start + chunk_size]
        iou = segment_iou(block, segments, frame_inclusive=pgcn_official)
        local = torch.arange(block.size(0), device=segments.device)
        not_self = torch.ones_like(iou, dtype=torch.bool)
        not_self[local, local + start] = False
        if want_ctx:
            row, col = ((iou > theta_ctx) & not_self).nonzero(as_tuple=True)
            row, col = _keep_best(row, col, iou[row, col], max_contextual, descending=True)
            found["contextual"][0].append(row + start)
            found["contextual"][1].append(col)
        if want_sur:
            distance = segment_distance(block, segments, union="span" if pgcn_official else "union",
                                        frame_inclusive=pgcn_official)
            row, col = ((iou <= 0) & (distance < theta_sur) & not_self).nonzero(as_tuple=True)
            row, col = _keep_best(row, col, distance[row, col], max_surrounding, descending=False)
            found["surrounding"][0].append(row + start)
            found["surrounding"][1].append(col)

    for kind, (targets, sources) in found.items():
        if kind not in edges:
            continue
        dst, src = torch.cat(targets), torch.cat(sources)
        order = torch.argsort(dst * num_nodes + src)
        dst, src = dst[order], src[order]
        data[f"{kind}_edge_index"] = torch.stack([src, dst])
        weight = _cosine(video.features, src, dst) if video.features is not None else \
            torch.ones(src.numel(), device=segments.device)
        data[f"{kind}_edge_weight"] = weight
    return data
