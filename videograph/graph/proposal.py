r"""P-GCN's proposal graph (Zeng et al., ICCV 2019, sec. 3.3)."""
from typing import Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data

from ..data import Proposals

__all__ = ["proposal_graph", "OFFICIAL_MAX_CONTEXTUAL", "OFFICIAL_MAX_SURROUNDING"]

#: Candidates per node in P-GCN's reference code (``iou_num`` and ``dis_num`` of its dataset_cfg.yaml).
OFFICIAL_MAX_CONTEXTUAL = 8
OFFICIAL_MAX_SURROUNDING = 2


def _nonzero(mask: Tensor) -> Tuple[Tensor, Tensor]:
    """``mask.nonzero(as_tuple=True)`` of a 2-D mask (row-major order); on CPU through NumPy's ``flatnonzero``,
    several times faster."""
    if mask.device.type != "cpu":
        return mask.nonzero(as_tuple=True)
    row, col = np.divmod(np.flatnonzero(mask.numpy()), mask.size(1))
    return torch.from_numpy(row), torch.from_numpy(col)


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


def _block_cosines(unit: Tensor, first: int, last: int, selected: Dict[str, Tuple[Tensor, Tensor]],
                   span: Tuple[int, int], block: int, tiles: Dict[int, Tuple[int, Tensor]], symmetric: bool,
                   chunk: int) -> Dict[str, Tensor]:
    """Cosine similarity of unit-norm rows for the selected ``(row, col)`` pairs of one block of targets.

    ``row`` counts from ``first``, ``col`` is global (start order); ``span`` is the block's range of columns.
    The block product costs ``rows * window * D`` but streams through memory at matrix-multiply speed;
    gathering costs ``E * D`` with two random row reads per edge. The product wins unless the edges fill only
    a small fraction of the block (capped graphs). With ``symmetric``, the product covers only the columns from
    ``first`` on and is kept in ``tiles``; earlier columns come transposed from the earlier blocks' products.
    """
    begin, finish = span
    total = sum(row.numel() for row, _ in selected.values())
    if total * 64 < (last - first) * (finish - begin):
        return {kind: torch.cat([(unit[r + first] * unit[c]).sum(-1) for r, c in zip(row.split(8192),
                                                                                     col.split(8192))])
                if row.numel() else unit.new_zeros(0) for kind, (row, col) in selected.items()}
    if not symmetric:
        block_cosine = unit[first:last] @ unit[begin:finish].t()
    else:
        upper = unit[first:last] @ unit[first:finish].t()
        tiles[block] = (finish, upper)
        pieces = []
        for earlier in range(begin // chunk, block):
            top = max(begin, earlier * chunk)
            bottom = min((earlier + 1) * chunk, first)
            if earlier in tiles:  # rows top:bottom x columns first:last of an earlier product, transposed
                tile_finish, tile = tiles[earlier]
                part = tile[top - earlier * chunk:bottom - earlier * chunk,
                            first - earlier * chunk:min(last, tile_finish) - earlier * chunk]
                pieces.append(F.pad(part, (0, last - first - part.size(1))).t())
            else:
                pieces.append(unit[first:last] @ unit[top:bottom].t())
        block_cosine = torch.cat(pieces + [upper], 1) if pieces else upper
    width = finish - begin
    flat = block_cosine.reshape(-1)
    return {kind: flat.take(row * width + (col - begin)) for kind, (row, col) in selected.items()}


def _source_windows(start: Tensor, end: Tensor, length: Tensor, want: dict, theta_ctx: float, theta_sur: float,
                    official: bool, max_surrounding: Optional[int]) -> Tuple[Tuple[Tensor, Tensor], ...]:
    r"""Per target and kind, a range ``[low, high]`` of source start times that contains every neighbour.

    Necessary conditions, in float64 and widened by a margin that covers rounding of the pairwise tests:

    * contextual: tIoU > theta needs ``|s_i - s_j| + |e_i - e_j| = U - I < (1 / theta - 1) I``, so
      ``|s_i - s_j| < (1 / theta - 1) l_i``; theta = 0 needs an overlap, ``s_j`` in ``(s_i - max_length, e_i]``;
    * surrounding, ``U`` the union: ``|c_i - c_j| < theta (l_i + l_j)`` with ``s_j = c_j - l_j / 2``;
    * surrounding, ``U`` the span (``pgcn_official``): for disjoint segments ``span = |c_i - c_j| + (l_i + l_j)
      / 2``, so ``|c_i - c_j| < k (l_i + l_j) / 2`` with ``k = theta / (1 - theta)``, unbounded for theta >= 1.
      With a cap of K sources, the nearest disjoint candidates bound it instead (:func:`_nearest_disjoint_bound`).
    """
    start, end, length = start.double(), end.double(), length.double()
    longest = float(length.max())
    margin = 1e-4 * (float(end.abs().max()) + 1.0)
    one = 1.0 if official else 0.0
    windows = {}
    if want["contextual"]:
        if theta_ctx > 0:
            reach = (1.0 / (theta_ctx * (1 - 1e-4)) - 1.0) * length + margin
            low, high = torch.maximum(start - reach, start - longest - margin), start + reach
        else:
            low, high = start - longest - margin, end + one + margin
        windows["contextual"] = (low, high)
    if want["surrounding"]:
        centre = (start + end) / 2
        if not official:
            theta = theta_sur * (1 + 1e-4)
            low = centre - theta * length - (theta + 0.5) * longest - margin
            high = centre + theta * length + max(theta - 0.5, 0.0) * longest + margin
        elif theta_sur < 1:
            k = theta_sur * (1 + 1e-4) / (1 - theta_sur * (1 + 1e-4)) if theta_sur * (1 + 1e-4) < 1 else float("inf")
            low = centre - k * length / 2 - (k + 1) * longest / 2 - margin
            high = centre + k * length / 2 + max(k - 1, 0.0) * longest / 2 + 1 + margin
        else:
            low = torch.full_like(start, float("-inf"))
            high = torch.full_like(start, float("inf"))
        if official and max_surrounding is not None:
            reach = _nearest_disjoint_bound(start, end, length, theta_sur, max_surrounding, longest)
            low = torch.maximum(low, start - reach - longest - 1 - margin)
            high = torch.minimum(high, end + 1 + reach + margin)
        windows["surrounding"] = (low, high)
    return tuple(windows.get(kind) for kind in ("contextual", "surrounding"))


def _official_distance2(start: Tensor, end: Tensor, length: Tensor, target: Tensor, source: Tensor) -> Tensor:
    """Twice P-GCN's official distance of pairs, ``inf`` for pairs that overlap (the pairwise test's expressions)."""
    inter = torch.minimum(end[target], end[source]) - torch.maximum(start[target], start[source]) + 1.0
    span = torch.maximum(end[target], end[source]) - torch.minimum(start[target], start[source]) + 1.0
    distance2 = ((start[target] + end[target]) - (start[source] + end[source])).abs_().div_(span)
    return distance2.masked_fill_(inter > 0, float("inf"))


def _nearest_disjoint_bound(start: Tensor, end: Tensor, length: Tensor, theta_sur: float, k: int,
                            longest: float) -> Tensor:
    r"""Per target, how far (in frames between the two segments) its ``k`` nearest surrounding sources can lie.

    With the span as U, a source after the target with ``g`` frames between them has ``2 d = 1 + g / (g + l_i +
    l_j)``. The ``k`` nearest disjoint segments on either side (``searchsorted`` on the sorted starts and ends)
    give an upper bound ``tau`` of the k-th smallest ``2 d``; a source can only tie or beat it if ``g / (g + l_i
    + max_length) <= tau - 1``, i.e. within ``G = t (l_i + max_length) / (1 - t)`` frames, ``t = tau - 1``
    (``inf`` where fewer than ``k`` candidates are found). Exact: every source that can be among the ``k``
    best, ties included, lies within that reach; the candidates only set the bound.
    """
    n = start.numel()
    if k >= n:  # every disjoint source is among the k best
        return torch.full_like(start, float("inf"))
    by_end = torch.sort(end, stable=True)
    steps = torch.arange(k, device=start.device)
    # Sources after the target (start order) and before it (end order), nearest first.
    right = torch.searchsorted(start, end + 1 - 1e-6 * (end.abs() + 1))[:, None] + steps
    left = torch.searchsorted(by_end.values, start - 1 + 1e-6 * (start.abs() + 1), right=True)[:, None] - 1 - steps
    valid = torch.cat([right < n, left >= 0], 1)
    source = torch.cat([right.clamp(max=n - 1), by_end.indices[left.clamp(min=0)]], 1)
    target = torch.arange(n, device=start.device)[:, None].expand_as(source)
    distance2 = _official_distance2(start, end, length, target, source)
    distance2 = distance2.masked_fill_(~valid | (distance2 >= 2 * theta_sur), float("inf"))
    tau = distance2.kthvalue(k, dim=1).values
    t = (tau - 1 + 1e-5).clamp_(min=0)
    return torch.where(t < 1, t * (length + longest) / (1 - t).clamp_(min=1e-12), torch.full_like(t, float("inf")))


def _block_ranges(sorted_start: Tensor, window: Optional[Tuple[Tensor, Tensor]], chunk: int) -> list:
    """``[begin, finish)`` positions (in start order) of the sources each block of ``chunk`` targets can reach."""
    if window is None:
        return None
    low, high = window
    blocks = (low.numel() + chunk - 1) // chunk
    pad = blocks * chunk - low.numel()
    low = F.pad(low, (0, pad), value=float("inf")).view(blocks, chunk).amin(1)
    high = F.pad(high, (0, pad), value=float("-inf")).view(blocks, chunk).amax(1)
    begin = torch.searchsorted(sorted_start, low)
    finish = torch.searchsorted(sorted_start, high, right=True)
    return list(zip(begin.tolist(), finish.tolist()))


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

    Thresholds are strict and decide ties as ``segment_iou(a, b) > theta_ctx`` and
    ``segment_distance(a, b) < theta_sur`` do (the same expressions, in the segments' dtype).

    Pairwise work runs in blocks of ``chunk_size`` targets (in order of start time) against, per kind, the
    window of sources that can reach them (see ``docs/graphs.md``); with ``pgcn_official`` and a cap on
    surrounding sources, a nearest-disjoint search bounds that window, so the work is no longer quadratic for
    :math:`\theta_{sur} \geq 1`. Memory is :math:`O(\text{chunk} \cdot \text{window} + E)` plus the
    cosine products of the earlier blocks a later one still reaches.

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
    # reach it in time (per kind), instead of all N.
    one = 1.0 if pgcn_official else 0.0
    order = torch.sort(segments[:, 0], stable=True).indices
    start, end = segments[order, 0], segments[order, 1]
    length = end - start + one
    centre2 = start + end
    want = {kind: kind in edges for kind in ("contextual", "surrounding")}
    windows = _source_windows(start, end, length, want, theta_ctx, theta_sur, pgcn_official, max_surrounding)
    start64 = start.double()
    ranges = [_block_ranges(start64, window, chunk_size) for window in windows]
    # Cosines are symmetric: a block takes those with earlier sources from the blocks before it (transposed),
    # which is exact when each block's range holds all of its targets' neighbours (not with the nearest-disjoint
    # bound, which holds only the best ones).
    symmetric = not (pgcn_official and max_surrounding is not None and want["surrounding"])
    unit = F.normalize(video.features[order], dim=-1) if video.features is not None else None
    present = [r for r in ranges if r is not None]
    spans = [(min(r[b][0] for r in present), max(r[b][1] for r in present))
             for b in range(len(present[0]) if present else 0)]
    still_needed = [min(begin for begin, _ in spans[b:]) for b in range(len(spans))]  # suffix minima
    tiles = {}
    found = {kind: [] for kind in want}
    for block, first in enumerate(range(0, num_nodes if present else 0, chunk_size)):
        last = min(first + chunk_size, num_nodes)
        rows = slice(first, last)
        selected = {}
        if want["contextual"]:
            begin, finish = ranges[0][block]
            inter = torch.minimum(end[rows, None], end[begin:finish]) - torch.maximum(start[rows, None],
                                                                                     start[begin:finish])
            if one:
                inter += one
            tiou = inter.div_(length[rows, None] + length[begin:finish] - inter)  # segment_iou's expression
            mask = tiou > theta_ctx
            diagonal = torch.arange(first, last, device=segments.device)
            mask[diagonal - first, diagonal - begin] = False
            if max_contextual is not None:
                mask = _keep_best(mask, tiou, max_contextual, descending=True)
            row, col = _nonzero(mask)
            selected["contextual"] = (row, col.add_(begin))
        if want["surrounding"]:
            begin, finish = ranges[1][block]
            window = slice(begin, finish)
            # segment_iou's intersection test, `min(e) - max(s) (+ 1) > 0`, negated; without the frame, `x - y > 0`
            # is exactly `x > y` (subnormals on), which saves a pass
            if one:
                disjoint = (torch.minimum(end[rows, None], end[window])
                            - torch.maximum(start[rows, None], start[window])) <= -one
            else:
                disjoint = torch.minimum(end[rows, None], end[window]) <= torch.maximum(start[rows, None], start[window])
            if pgcn_official:
                union = torch.maximum(end[rows, None], end[window]) - torch.minimum(start[rows, None], start[window])
                union += one
            else:
                union = length[rows, None] + length[window]
            # Twice segment_distance's |c_i - c_j| / U (halving is exact in floating point): `< 2 theta` decides
            # ties as `segment_distance(a, b) < theta_sur` does.
            distance2 = (centre2[rows, None] - centre2[window]).abs_().div_(union)
            mask = distance2 < 2.0 * theta_sur
            mask &= disjoint
            if max_surrounding is not None:
                mask = _keep_best(mask, distance2, max_surrounding, descending=False)
            row, col = _nonzero(mask)
            selected["surrounding"] = (row, col.add_(begin))
        weights = {}
        if unit is not None and selected:
            weights = _block_cosines(unit, first, last, selected, spans[block], block, tiles, symmetric, chunk_size)
            for earlier in [b for b in tiles if (b + 1) * chunk_size <= still_needed[min(block + 1, len(spans) - 1)]]:
                del tiles[earlier]
        for kind, (row, col) in selected.items():
            found[kind].append((row.add_(first), col, weights.get(kind)))

    # One allocation per output, each edge written once (fresh large buffers cost page faults).
    for kind, parts in found.items():
        if not want[kind]:
            continue
        total = sum(row.numel() for row, _, _ in parts)
        index = torch.empty(2, total, dtype=torch.long, device=segments.device)
        weight = torch.empty(total, dtype=unit.dtype, device=segments.device) if unit is not None else \
            torch.ones(total, device=segments.device)
        offset = 0
        for row, col, block_weight in parts:
            stop = offset + row.numel()
            torch.index_select(order, 0, col, out=index[0, offset:stop])
            torch.index_select(order, 0, row, out=index[1, offset:stop])
            if block_weight is not None:
                weight[offset:stop] = block_weight
            offset = stop
        data[f"{kind}_edge_index"] = index
        data[f"{kind}_edge_weight"] = weight
    return data
