r"""P-GCN's proposal graph (Zeng et al., ICCV 2019, sec. 3.3)."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data

from ..data import Proposals

__all__ = ["proposal_graph", "OFFICIAL_MAX_CONTEXTUAL", "OFFICIAL_MAX_SURROUNDING"]

#: Candidates per node in P-GCN's reference code (``iou_num`` and ``dis_num`` of its dataset_cfg.yaml).
OFFICIAL_MAX_CONTEXTUAL = 8
OFFICIAL_MAX_SURROUNDING = 2


def _keep_best(mask: Tensor, key: Tensor, k: Optional[int], descending: bool) -> Tensor:
    """Narrows each row of ``mask`` to its ``k`` entries with the best ``key`` (ties: smaller column first).

    Dense and sort-free: the k-th best key of each row comes from ``topk``; entries strictly better are kept,
    and entries equal to it fill the remaining places from the left.
    """
    if k is None or k >= mask.size(1):
        return mask
    worst = float("-inf") if descending else float("inf")
    key = key.masked_fill(~mask, worst)
    kth = key.topk(k, dim=1, largest=descending).values[:, -1:]
    better = (key > kth) if descending else (key < kth)
    tie = (key == kth) & mask
    room = k - better.sum(1, keepdim=True)
    crowded = (tie.sum(1, keepdim=True) > room).flatten().nonzero().flatten()
    if crowded.numel():  # only rows with more ties than places pay for the running count
        tie[crowded] &= tie[crowded].cumsum(1) <= room[crowded]
    return better | tie


def _cosine(targets: Tensor, sources: Tensor, row: Tensor, col: Tensor, chunk: int = 8192) -> Tensor:
    """Cosine similarity of unit-norm rows ``targets[row]`` and ``sources[col]``.

    The block product costs ``rows * window * D`` but streams through memory at matrix-multiply speed;
    gathering costs ``E * D`` with two random row reads per edge. The product wins unless the edges fill only
    a small fraction of the block (capped graphs).
    """
    if row.numel() * 64 >= targets.size(0) * sources.size(0):
        return (targets @ sources.t()).view(-1).take(row * sources.size(0) + col)
    return torch.cat([(targets[r] * sources[c]).sum(-1) for r, c in zip(row.split(chunk), col.split(chunk))]) \
        if row.numel() else targets.new_zeros(0)


def _source_window(start: Tensor, end: Tensor, length: Tensor, edges: Tuple[str, ...], theta_sur: float,
                   official: bool) -> Tuple[Tensor, Tensor]:
    """Per target, a range of source start times that contains every possible neighbour.

    A contextual source overlaps the target, so it starts within ``(start - max_length, end]``. A surrounding
    source's centre lies within ``R`` of the target's, where ``|c_i - c_j| < theta (l_i + l_j)`` gives
    ``R = theta (l_i + max_length)`` and, with the span as U (``span = |c_i - c_j| + (l_i + l_j) / 2`` for
    disjoint segments), ``R = theta / (1 - theta) (l_i + max_length) / 2``, unbounded for theta >= 1.
    """
    longest = length.max()
    low, high = start - longest - 1, end + 1
    if "surrounding" in edges:
        centre = (start + end) / 2
        if not official:
            radius = theta_sur * (length + longest)
        elif theta_sur < 1:
            radius = theta_sur / (1 - theta_sur) * (length + longest) / 2
        else:
            radius = torch.full_like(length, float("inf"))
        low = torch.minimum(low, centre - radius - longest)
        high = torch.maximum(high, centre + radius + 1)
    return low, high


def _check_count(name: str, value: Optional[int]) -> Optional[int]:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ValueError(f"'{name}' must be None or a positive integer, got {value!r}")
    return value


def proposal_graph(video: Proposals, *, edges: Tuple[str, ...] = ("contextual", "surrounding"),
                   theta_ctx: float = 0.7, theta_sur: float = 1.0, max_contextual: Optional[int] = None,
                   max_surrounding: Optional[int] = None, pgcn_official: bool = False,
                   chunk_size: int = 256) -> Data:
    r"""Builds P-GCN's graph of a video's temporal proposals.

    * Contextual edges link proposals whose tIoU exceeds :math:`\theta_{ctx}`.
    * Surrounding edges link disjoint proposals (tIoU = 0) whose normalised centre distance
      :math:`d = |c_i - c_j| / U(p_i, p_j)` is below :math:`\theta_{sur}`, :math:`U` the length of the union
      of the two segments, the measure used in tIoU (:func:`~videograph.graph.segment_distance`).

    Both relations are symmetric, so every edge is present in both directions; there are no self-loops.
    ``max_contextual`` / ``max_surrounding`` keep, for each target node, only its best sources (highest tIoU,
    nearest centre; ties go to the earlier start, then the smaller index), which makes the graph directed.
    Edge weights (``<kind>_edge_weight``) are the cosine similarity of the two proposals' features (P-GCN's
    adjacency) when features are given, else one. Cosine weights can be negative: feed them to layers that take
    any weight (:class:`~videograph.nn.conv.PGCNConv`, :class:`~torch_geometric.nn.conv.GraphConv`), not to
    :class:`~torch_geometric.nn.conv.GCNConv`, whose degree normalisation needs non-negative weights. Edges are
    grouped by target, targets and the sources of each in order of start time (ties by index).

    ``pgcn_official=True`` reproduces the reference code (Alvin-Zeng/PGCN, ``ops/detection_metrics.py`` and
    ``pgcn_dataset.py``): segments in integer frames with both end frames counted (lengths ``end - start + 1``,
    so segments sharing a frame overlap), :math:`U` the span from the earliest start to the latest end, and at
    most 8 contextual and 2 surrounding sources per node unless ``max_*`` say otherwise. (The span always
    exceeds the centre distance of two disjoint segments, so :math:`\theta_{sur} = 1` keeps every disjoint
    pair there, as the reference code's ``dis_threshold = 0`` does.) The reference code additionally repeats
    candidates, or the node itself, when it has fewer than the quota, which is a sampling choice left to
    :mod:`videograph.sampler`.

    Pairwise work runs in blocks of ``chunk_size`` targets (in order of start time) against the window of
    sources that can reach them, so memory is :math:`O(\text{chunk} \cdot \text{window} + E)`.

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

    # Every pairwise quantity is computed with the expression of segment_iou / segment_distance (frame-inclusive
    # counting adds 1 per segment; for disjoint segments U is the summed lengths or the span), so thresholds
    # and ties decide exactly as `segment_iou(a, b) > theta_ctx` and `segment_distance(a, b) < theta_sur` do.
    # Work happens in order of start time, so a block of targets only meets the window of sources that can
    # reach it in time, instead of all N.
    one = 1.0 if pgcn_official else 0.0
    order = torch.sort(segments[:, 0], stable=True).indices
    start_time, end_time = segments[order, 0], segments[order, 1]
    length = end_time - start_time + one
    centre2 = start_time + end_time
    low, high = _source_window(start_time, end_time, length, edges, theta_sur, pgcn_official)
    unit = F.normalize(video.features[order], dim=-1) if video.features is not None else None
    want = {kind: kind in edges for kind in ("contextual", "surrounding")}
    found = {kind: ([], [], []) for kind in want}
    for first in range(0, num_nodes, chunk_size):
        last = min(first + chunk_size, num_nodes)
        begin = int(torch.searchsorted(start_time, low[first:last].min()))
        finish = int(torch.searchsorted(start_time, high[first:last].max(), right=True))
        window = slice(begin, finish)
        inter = torch.minimum(end_time[first:last, None], end_time[window]) \
            - torch.maximum(start_time[first:last, None], start_time[window]) + one
        length_sum = length[first:last, None] + length[window]
        rows = torch.arange(last - first, device=segments.device)
        selected = {}
        if want["contextual"]:
            tiou = inter / (length_sum - inter)  # segment_iou's expression, so ties compare as it does
            mask = tiou > theta_ctx
            mask[rows, rows + first - begin] = False
            if max_contextual is not None:
                mask = _keep_best(mask, tiou, max_contextual, descending=True)
            selected["contextual"] = mask.nonzero(as_tuple=True)
        if want["surrounding"]:
            union = torch.maximum(end_time[first:last, None], end_time[window]) \
                - torch.minimum(start_time[first:last, None], start_time[window]) + one if pgcn_official \
                else length_sum
            # gap / union is exactly twice segment_distance's |c_i - c_j| / U (halving is exact in floating
            # point), so `< 2 theta` decides ties as `segment_distance(a, b) < theta` does.
            distance2 = (centre2[first:last, None] - centre2[window]).abs_().div_(union)
            mask = (inter <= 0) & (distance2 < 2.0 * theta_sur)
            if max_surrounding is not None:
                mask = _keep_best(mask, distance2, max_surrounding, descending=False)
            selected["surrounding"] = mask.nonzero(as_tuple=True)
        for kind, (row, col) in selected.items():
            targets, sources, weights = found[kind]
            targets.append(row + first)
            sources.append(col + begin)
            if unit is not None:
                weights.append(_cosine(unit[first:last], unit[window], row, col))

    for kind, (targets, sources, weights) in found.items():
        if not want[kind]:
            continue
        data[f"{kind}_edge_index"] = torch.stack([order[torch.cat(sources)], order[torch.cat(targets)]])
        data[f"{kind}_edge_weight"] = torch.cat(weights) if unit is not None else \
            torch.ones(data[f"{kind}_edge_index"].size(1), device=segments.device)
    return data
