r"""Temporal non-maximum suppression: greedy (SSN / P-GCN) and Gaussian soft-NMS (Bodla et al.), batched over
(video, class) groups the way :func:`torchvision.ops.batched_nms` batches over box categories.

Every group is run at once: the items are sorted by (group, decreasing score) and each step of the greedy pass
settles one rank in every group with tensor operations. No Python loop visits a video or a class.
"""
from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import nms as _box_nms

__all__ = ["temporal_nms", "soft_nms", "TemporalNMS"]

#: Elements of one ``[G, M]`` block of soft-NMS (groups of similar size advance together).
_BLOCK_ELEMENTS = 1 << 23
#: Groups larger than this go through :func:`torchvision.ops.nms` (one C++ pass) instead of the sparse pass.
_MAX_SPARSE_GROUP = 2048


def _check(segments: Tensor, scores: Tensor, classes: Optional[Tensor], batch: Optional[Tensor]) -> None:
    if not isinstance(segments, Tensor) or not isinstance(scores, Tensor):
        raise TypeError("'segments' and 'scores' must be tensors")
    if segments.dim() != 2 or segments.size(1) != 2:
        raise ValueError(f"'segments' must have shape [N, 2], got {tuple(segments.shape)}")
    if scores.shape != (segments.size(0),):
        raise ValueError(f"'scores' must have shape [{segments.size(0)}], got {tuple(scores.shape)}")
    if not segments.is_floating_point() or not scores.is_floating_point():
        raise TypeError("'segments' and 'scores' must be floating point")
    if not bool(torch.isfinite(scores).all()):
        raise ValueError(f"'scores' must be finite; got nan/inf at index {int((~torch.isfinite(scores)).nonzero()[0])}")
    if not bool(torch.isfinite(segments).all()):
        raise ValueError("'segments' must be finite")
    bad = segments[:, 1] < segments[:, 0]
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise ValueError(f"'segments' must have start <= end; segment {i} is {segments[i].tolist()}")
    for name, ids in (("classes", classes), ("batch", batch)):
        if ids is None:
            continue
        if not isinstance(ids, Tensor) or ids.dtype not in (torch.int32, torch.int64, torch.uint8, torch.int16):
            raise TypeError(f"'{name}' must be an integer tensor")
        if ids.shape != scores.shape:
            raise ValueError(f"'{name}' must have shape [{scores.size(0)}], got {tuple(ids.shape)}")
        if ids.numel() and int(ids.min()) < 0:
            raise ValueError(f"'{name}' must be non-negative")


def _radix_argsort(key: np.ndarray) -> np.ndarray:
    """Stable argsort of non-negative integers below 2^30: one or two passes of NumPy's radix sort (15 bits)."""
    low = np.argsort((key & 0x7FFF).astype(np.int16), kind="stable")
    if key.size == 0 or int(key.max()) < 2 ** 15:
        return low
    return low[np.argsort((key[low] >> 15).astype(np.int16), kind="stable")]


def _stable_argsort_int(key: Tensor) -> Tensor:
    """Stable argsort of non-negative integers: radix passes on CPU below 2^30, else torch's sort."""
    if key.device.type == "cpu" and (key.numel() == 0 or int(key.max()) < 2 ** 30):
        return torch.from_numpy(_radix_argsort(key.numpy()))
    return torch.sort(key, stable=True).indices


def _argsort_descending(values: np.ndarray) -> np.ndarray:
    """Stable argsort by decreasing value (ties by index): NumPy's quicksort when no two values tie (then every
    order is the stable one), else its stable sort."""
    order = np.argsort(-values)
    ordered = values[order]
    if bool((ordered[1:] == ordered[:-1]).any()):
        order = np.argsort(-values, kind="stable")
    return order


def _group_order(scores: Tensor, classes: Optional[Tensor], batch: Optional[Tensor]
                 ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Items sorted by (group, decreasing score, index); returns that order, each sorted item's group (0, 1, ...
    in (batch, class) order), the group sizes, and the order by (decreasing score, index) alone."""
    n = scores.numel()
    key = torch.zeros(n, dtype=torch.long, device=scores.device)
    if batch is not None:
        key = batch.long()
    if classes is not None:
        key = key * (int(classes.max()) + 1 if n else 1) + classes.long()
    if scores.device.type == "cpu":
        by_score = torch.from_numpy(_argsort_descending(scores.detach().numpy()))
    else:
        by_score = torch.sort(scores, descending=True, stable=True).indices
    order = by_score.index_select(0, _stable_argsort_int(key.index_select(0, by_score)))
    sorted_key = key.index_select(0, order)
    group = torch.zeros(n, dtype=torch.long, device=scores.device)
    if n > 1:
        group[1:] = torch.cumsum(sorted_key[1:] != sorted_key[:-1], 0)
    sizes = torch.bincount(group, minlength=int(group[-1]) + 1 if n else 0)
    return order, group, sizes, by_score


def _overlapping_pairs(start: np.ndarray, end: np.ndarray, group: np.ndarray, iou_threshold: float
                       ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions ``(p, q)`` in (group, start) order (and that order) of the pairs ``(a, b)`` of rows of one group that may have a tIoU above the threshold: ``b`` starts in
    ``[start_a, end_a - threshold * len_a)`` (necessary, as ``tIoU <= (end_a - start_b) / len_a``; the bound is
    loosened by far more than rounding), after ``a`` in (group, start) order. Sorts and binary searches, no
    ``M x M`` matrix."""
    n = start.size
    by_start = np.argsort(start)                        # any order of equal starts enumerates the same pairs
    ordered = start[by_start]
    by_start = by_start[_stable_argsort_int(torch.from_numpy(group[by_start])).numpy()]   # (group, start) order
    length = end - start
    slack = 1e-9 * (np.abs(start) + np.abs(end) + length)
    stop = np.maximum(end - iou_threshold * length + slack, start)
    # (group, start) and (group, stop) as exact int64 keys: a value's position among all starts orders it
    g = group[by_start]
    key = g * (n + 1) + np.searchsorted(ordered, start[by_start], "left")
    limit = g * (n + 1) + np.searchsorted(ordered, stop[by_start], "left")
    position = np.arange(n)
    count = np.maximum(np.searchsorted(key, limit, "left") - position - 1, 0)
    first = np.repeat(position, count)
    second = np.arange(first.size) - (np.cumsum(count) - count)[first] + first + 1
    return first, second, by_start


def _sparse_greedy(start: np.ndarray, end: np.ndarray, group: np.ndarray, rank: np.ndarray,
                   iou_threshold: float) -> np.ndarray:
    """Greedy NMS of rows sorted by (group, decreasing score): the suppression edges are the overlapping pairs
    above the threshold, and step ``r`` settles the ``r``-th row of every group at once."""
    n = start.size
    p, q, by_start = _overlapping_pairs(start, end, group, iou_threshold)
    s, e = start[by_start], end[by_start]               # in (group, start) order: p and q are close, gathers local
    inter = np.clip(np.minimum(e[p], e[q]) - np.maximum(s[p], s[q]), 0, None)
    union = (e[p] - s[p]) + (e[q] - s[q]) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        over = inter / union > iou_threshold
    a, b = by_start[p[over]], by_start[q[over]]
    source, target = np.minimum(a, b), np.maximum(a, b)                 # earlier in the order suppresses
    steps = int(rank.max()) + 1
    by_rank = _radix_argsort(rank[source])                               # ranks < 2 048 + 1
    source, target = source[by_rank], target[by_rank]
    edge_ptr = np.cumsum(np.bincount(rank[source], minlength=steps))
    rows = _radix_argsort(rank)                                           # rank-major
    row_ptr = np.cumsum(np.bincount(rank, minlength=steps))
    suppressed = np.zeros(n, dtype=bool)
    kept = np.zeros(n, dtype=bool)
    row_begin = edge_begin = 0
    for r in range(steps):
        these = rows[row_begin:row_ptr[r]]
        kept[these] = ~suppressed[these]
        if edge_ptr[r] > edge_begin:
            src, dst = source[edge_begin:edge_ptr[r]], target[edge_begin:edge_ptr[r]]
            suppressed[dst[kept[src]]] = True
        row_begin, edge_begin = row_ptr[r], edge_ptr[r]
    return kept


def temporal_nms(segments: Tensor, scores: Tensor, iou_threshold: float, *, classes: Optional[Tensor] = None,
                 batch: Optional[Tensor] = None) -> Tensor:
    r"""Greedy temporal NMS, independently within every (``batch``, ``classes``) group.

    Within a group, segments are visited in decreasing score; a segment is kept unless a kept segment of the
    group has a tIoU *strictly greater* than ``iou_threshold`` with it (SSN's and P-GCN's ``temporal_nms``
    rule: it keeps ``IoU <= thresh``).

    .. math::
        \mathrm{tIoU}(p, q) = \frac{|p \cap q|}{|p| + |q| - |p \cap q|}

    Ties: equal scores are visited in increasing index order (a stable sort). A zero-length segment overlaps
    nothing (its ``0 / 0`` tIoU with another zero-length segment is not above any threshold).

    The groups are computed together. The only pairs that can suppress are those that intersect: sorting by
    (group, start) and one binary search list them (a segment against those starting inside it), with no
    ``M x M`` matrix; the greedy pass then settles the ``r``-th ranked segment of every group in step ``r`` (a
    Python loop over ranks, as long as the largest group, never over groups). Groups of more than 2048 segments
    go through :func:`torchvision.ops.nms` instead, each group on its own unit strip ``y in [g, g+1]`` of the
    plane, so that its box IoU equals the tIoU exactly and groups never overlap.

    Args:
        segments: ``[N, 2]`` ``(start, end)`` with ``start <= end``.
        scores: ``[N]`` finite scores.
        iou_threshold: suppress a segment whose tIoU with a kept one is above this.
        classes: ``[N]`` class of each segment (optional).
        batch: ``[N]`` video of each segment (optional).

    Returns:
        LongTensor of the kept indices, in decreasing score order (ties by index).
    """
    _check(segments, scores, classes, batch)
    iou_threshold = float(iou_threshold)
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"'iou_threshold' must be in [0, 1], got {iou_threshold}")
    n = scores.numel()
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=scores.device)
    order, group, sizes, by_score = _group_order(scores, classes, batch)
    seg = segments.detach().double()[order]
    ptr = torch.cumsum(sizes, 0) - sizes
    rank = torch.arange(n, device=scores.device) - ptr[group]
    kept = torch.zeros(n, dtype=torch.bool, device=scores.device)
    small = (sizes[group] <= _MAX_SPARSE_GROUP).nonzero().flatten()
    if small.numel():
        # the index-heavy pass runs in NumPy (its gathers are several times faster than tensor indexing on CPU)
        rows = small.cpu().numpy()
        cols = seg.cpu().numpy()
        # keep group ids dense so that their (group, start) keys stay small
        dense = group.cpu().numpy() if small.numel() == n else \
            np.unique(group[small].cpu().numpy(), return_inverse=True)[1].reshape(-1)
        flags = _sparse_greedy(np.ascontiguousarray(cols[rows, 0]), np.ascontiguousarray(cols[rows, 1]), dense,
                               rank[small].cpu().numpy(), iou_threshold)
        kept[small[torch.from_numpy(flags).to(kept.device)]] = True
    large = (sizes > _MAX_SPARSE_GROUP).nonzero().flatten()
    if large.numel():
        member = torch.isin(group, large)
        pos = member.nonzero().flatten()
        g = group[pos].double()
        boxes = torch.stack([seg[pos, 0], g, seg[pos, 1], g + 1], 1)
        # Scores that reproduce the (group, decreasing score, index) order exactly, whatever nms's sort does.
        rank_score = -torch.arange(pos.numel(), dtype=torch.float64, device=scores.device)
        kept[pos[_box_nms(boxes, rank_score, iou_threshold)]] = True

    flags = torch.zeros(n, dtype=torch.bool, device=scores.device)
    flags[order[kept]] = True
    return by_score[flags.index_select(0, by_score)]


def _decay_windows(start: np.ndarray, end: np.ndarray, group: np.ndarray, ptr: np.ndarray, iou_threshold: float
                   ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every row (sorted by group), the range ``[lo, hi)`` of positions in (group, start) order (returned
    too) of the rows of its group that may have a tIoU above the threshold with it. Necessary conditions:
    ``tIoU(a, b) <= (end_a - start_b) / len_a`` for ``b`` starting after ``a``, and ``<= 1 - (start_a - start_b)
    / len_b`` for ``b`` starting before, with ``len_b`` at most the group's longest; the bounds are loosened by
    far more than rounding. Sorts and binary searches (of nearly sorted queries), no ``M x M`` matrix."""
    n = start.size
    by_value = np.argsort(start)                        # any order of equal starts gives the same windows
    ordered = start[by_value]
    # (group, start) as exact int64 keys: a value's position among all starts (the first of its equals) orders it
    first = np.arange(n)
    first[1:][ordered[1:] == ordered[:-1]] = 0
    rank = np.empty(n, dtype=np.int64)
    rank[by_value] = np.maximum.accumulate(first)
    length = end - start
    longest = np.maximum.reduceat(length, ptr)[group]
    threshold = min(max(iou_threshold, 0.0), 1.0)      # decays at a tIoU of at most 0 multiply by exactly 1
    slack = 1e-9 * (np.abs(start) + np.abs(end) + length + longest)
    bounds = np.empty((2, n), dtype=np.int64)
    for row, bound in enumerate((start - (1.0 - threshold) * longest - slack,
                                 np.maximum(end - threshold * length + slack, start))):
        bounds[row, by_value] = np.searchsorted(ordered, bound[by_value], "left")    # queries in start order
    by_start = by_value[_radix_argsort(group[by_value])]                    # (group, start) order
    base = group[by_start] * (n + 1)
    key = base + rank[by_start]
    lo, hi = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    lo[by_start] = np.searchsorted(key, base + bounds[0, by_start], "left")   # queries in (group, start) order
    hi[by_start] = np.searchsorted(key, base + bounds[1, by_start], "left")
    return lo, np.maximum(hi, lo), by_start


def _soft_block(seg: np.ndarray, score: np.ndarray, index: np.ndarray, valid: np.ndarray, windows: tuple,
                steps: int, sigma: float, iou_threshold: float, score_threshold: float, selected_at: np.ndarray,
                new_score: np.ndarray) -> None:
    """Soft-NMS steps of one ``[G, M]`` block of groups (rows of ``index``, rank order). A step selects every
    row's maximum and decays only the segments in the selected ones' windows (:func:`_decay_windows`): the
    block is read once per step (``argmax``), the decay costs the windows' sizes."""
    lo, hi, start_s, end_s, slot_s = windows
    m = index.shape[1]
    current = np.where(valid, score[index], -np.inf)
    current[~(current >= score_threshold)] = -np.inf
    active = np.arange(index.shape[0])                          # rows with something left to select
    for step in range(steps):
        arg = current.argmax(1)                                 # first maximum: the earliest in the order
        best = current[np.arange(active.size), arg]
        live = np.flatnonzero(best > -np.inf)
        if not live.size:
            break
        arg = arg[live]
        chosen = index[active[live], arg]
        selected_at[chosen] = step
        new_score[chosen] = best[live]
        flat = current.reshape(-1)
        flat[live * m + arg] = -np.inf
        count = hi[chosen] - lo[chosen]
        total = int(count.sum())
        offset = np.cumsum(count) - count
        where = np.arange(total) + np.repeat(lo[chosen] - offset, count)        # (group, start) positions
        s0, e0 = np.repeat(seg[chosen, 0], count), np.repeat(seg[chosen, 1], count)
        st, en = start_s[where], end_s[where]
        # the expressions of the reference loop, so that every decay is the same float
        inter = np.clip(np.minimum(e0, en) - np.maximum(s0, st), 0, None)
        union = (e0 - s0) + (en - st) - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        hit = np.flatnonzero(iou > iou_threshold)
        target = np.repeat(live * m, count)[hit] + slot_s[where[hit]]
        with np.errstate(invalid="ignore"):                   # -inf (selected) times a decay that underflowed
            value = flat[target] * np.exp(-iou[hit] ** 2 / sigma)
        value[~(value >= score_threshold)] = -np.inf            # below the threshold, or already selected
        flat[target] = value
        if live.size < 0.75 * active.size:                    # drop the finished groups from the block
            active, current = active[live], current[live]


def soft_nms(segments: Tensor, scores: Tensor, *, sigma: float = 0.5, iou_threshold: float = 0.0,
             score_threshold: float = 0.001, top_k: Optional[int] = None, classes: Optional[Tensor] = None,
             batch: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    r"""Gaussian soft-NMS (Bodla et al., 2017), independently within every (``batch``, ``classes``) group.

    Within a group, repeatedly select the segment of highest current score, then decay the score of every
    remaining segment :math:`q` whose tIoU with the selected :math:`p` is above ``iou_threshold``:

    .. math::
        s_q \leftarrow s_q \exp\left(-\frac{\mathrm{tIoU}(p, q)^2}{\sigma}\right)

    A segment whose current score is below ``score_threshold`` is discarded; at most ``top_k`` segments are
    selected per group. ActionFormer uses ``sigma=0.5``, ``score_threshold=0.001`` and ``top_k`` 200 (THUMOS14)
    or 100 (ActivityNet); BMN uses ``sigma`` ("alpha") ``0.4`` and ``top_k=100`` (and a width-dependent
    ``iou_threshold`` of its own, not provided here).

    Ties: equal current scores select the segment that comes first in (decreasing input score, index) order.
    All groups advance together: one step selects one segment in every group (an ``argmax`` over a ``[G, M]``
    block) and decays only the segments of its group that can overlap it, a window of the group in start order
    found once by binary search (segments starting less than the group's longest length before it, or before
    its end), with the reference loop's expressions, so the decayed scores are the same floats.

    Args:
        segments: ``[N, 2]`` ``(start, end)`` with ``start <= end``.
        scores: ``[N]`` finite scores.
        sigma: the Gaussian's :math:`\sigma` (default 0.5).
        iou_threshold: decay only overlaps above this (default 0: every overlap).
        score_threshold: discard segments whose score falls below this (default 0.001).
        top_k: the most segments selected per group (default: all).
        classes: ``[N]`` class of each segment (optional).
        batch: ``[N]`` video of each segment (optional).

    Returns:
        ``(indices, new_scores)``: the selected indices (LongTensor) and their decayed scores (dtype of
        ``scores``), in decreasing decayed score (ties by the order of selection within a group, then index).
    """
    _check(segments, scores, classes, batch)
    if sigma <= 0:
        raise ValueError(f"'sigma' must be positive, got {sigma}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"'top_k' must be positive, got {top_k}")
    n = scores.numel()
    device = scores.device
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=device), scores.new_zeros(0)
    order, group, sizes, _ = _group_order(scores, classes, batch)
    # the steps run in NumPy (its gathers are several times faster than tensor indexing on CPU)
    seg = segments.detach().double()[order].cpu().numpy()
    score = scores.detach().double()[order].cpu().numpy()
    sizes = sizes.cpu().numpy()
    ptr = np.cumsum(sizes) - sizes
    selected_at = np.full(n, -1, dtype=np.int64)
    new_score = np.zeros(n, dtype=np.float64)
    rows = group.cpu().numpy()
    start, end = np.ascontiguousarray(seg[:, 0]), np.ascontiguousarray(seg[:, 1])
    lo, hi, by_start = _decay_windows(start, end, rows, ptr, float(iou_threshold))
    windows = (lo, hi, start[by_start], end[by_start], by_start - ptr[rows[by_start]])
    padded = np.ones_like(sizes)
    padded[sizes > 1] = 2 ** np.ceil(np.log2(sizes[sizes > 1])).astype(np.int64)
    for m in np.unique(padded).tolist():
        groups = np.flatnonzero(padded == m)
        chunk = max(1, _BLOCK_ELEMENTS // m)
        for first in range(0, groups.size, chunk):
            part = groups[first:first + chunk]
            width = int(sizes[part].max())
            slot = np.arange(width)
            valid = slot[None, :] < sizes[part, None]
            index = np.minimum(ptr[part, None] + slot[None, :], n - 1)             # [G, M]
            steps = width if top_k is None else min(width, top_k)
            _soft_block(seg, score, index, valid, windows, steps, float(sigma), float(iou_threshold),
                        float(score_threshold), selected_at, new_score)
    chosen = np.flatnonzero(selected_at >= 0)
    # decreasing decayed score; ties by selection step, then position in the (group, score, index) order
    chosen = chosen[_radix_argsort(selected_at[chosen])]
    chosen = chosen[_argsort_descending(new_score[chosen])]
    chosen_t = torch.from_numpy(chosen).to(device)
    return order[chosen_t], torch.from_numpy(new_score[chosen]).to(device=device, dtype=scores.dtype)


class TemporalNMS(torch.nn.Module):
    """Module wrapper of :func:`temporal_nms` with a fixed threshold."""

    def __init__(self, iou_threshold: float) -> None:
        super().__init__()
        self.iou_threshold = float(iou_threshold)

    def forward(self, segments: Tensor, scores: Tensor, classes: Optional[Tensor] = None,
                batch: Optional[Tensor] = None) -> Tensor:
        return temporal_nms(segments, scores, self.iou_threshold, classes=classes, batch=batch)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(iou_threshold={self.iou_threshold})"
