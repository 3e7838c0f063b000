r"""ActivityNet's temporal action detection mAP (the protocol of the official ``eval_detection.py``), vectorised.

Protocol, per class and tIoU threshold :math:`\theta`:

1. the class's predictions are ranked by decreasing score (ties: the order of the predictions file, video by
   video, then list order);
2. each prediction, in rank order, is matched to the ground truth of its video and class of highest tIoU that is
   still free and has :math:`\mathrm{tIoU} \ge \theta`: taken ground truth is skipped and the next best is tried
   (ties of tIoU: the ground truth listed first); a match is a true positive and takes that ground truth, anything
   else (including every prediction in a video without ground truth of its class) is a false positive;
3. AP is the all-point interpolated area under the precision/recall curve, recall over all ground truth of the
   class: :math:`\mathrm{AP} = \sum_k (r_k - r_{k-1}) \max_{j \ge k} p_j`;

and the mAP at :math:`\theta` is the mean AP over the classes of the subset's ground truth (a class without
predictions has AP 0); ``average_mAP`` is the mean over the thresholds.

Only the matching is sequential, and only within one (video, class): predictions are grouped by (video, class),
their candidate ground truth (tIoU at least the smallest threshold) listed best first, and step ``r`` matches the
``r``-th relevant prediction of *every* group at once, for every threshold (a ``[T, groups, candidates]`` block).
"""
from typing import List, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from .anet_format import JsonInput, load_ground_truth, load_predictions

__all__ = ["DetectionResult", "detection_map", "parse_thresholds"]

DEFAULT_TIOU = tuple(np.linspace(0.5, 0.95, 10).tolist())


class DetectionResult(NamedTuple):
    """The result of :func:`detection_map`."""
    ap: Tensor                 #: ``[T, C]`` average precision per threshold and class
    mAP: Tensor                #: ``[T]`` mean over the classes
    average_mAP: float         #: mean of ``mAP`` over the thresholds
    classes: List[str]         #: the ``C`` classes (the subset's ground-truth labels, sorted)
    tiou_thresholds: Tensor    #: ``[T]``

    def table(self) -> str:
        """The mAP per threshold and the average, as a text table (percent)."""
        lines = [f"{'tIoU':>6} {'mAP (%)':>9}"]
        lines += [f"{t:>6.2f} {100 * m:>9.2f}" for t, m in zip(self.tiou_thresholds.tolist(), self.mAP.tolist())]
        lines.append(f"{'avg':>6} {100 * self.average_mAP:>9.2f}")
        return "\n".join(lines)


def parse_thresholds(value: Union[str, Sequence[float], np.ndarray, Tensor, float]) -> np.ndarray:
    """``"0.5:0.95:0.05"`` (start:stop:step, stop included), ``"0.3,0.5"``, a number or a sequence -> float64 [T]."""
    if isinstance(value, str):
        if ":" in value:
            parts = value.split(":")
            if len(parts) != 3:
                raise ValueError(f"tIoU thresholds {value!r}: expected start:stop:step")
            start, stop, step = map(float, parts)
            if step <= 0 or stop < start:
                raise ValueError(f"tIoU thresholds {value!r}: need step > 0 and stop >= start")
            out = np.linspace(start, stop, int(round((stop - start) / step)) + 1)
        else:
            out = np.array([float(v) for v in value.split(",")])
    else:
        out = np.atleast_1d(np.asarray(value.tolist() if isinstance(value, Tensor) else value, dtype=np.float64))
    if out.ndim != 1 or out.size == 0 or not np.isfinite(out).all() or (out < 0).any() or (out > 1).any():
        raise ValueError(f"'tiou_thresholds' must be a non-empty 1-D list in [0, 1], got {value!r}")
    return out.astype(np.float64)


def pair_tiou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Row-wise tIoU of ``[K, 2]`` predictions and ``[K, 2]`` ground truth, in the official code's order of
    operations (``union = len_gt + len_pred - inter``); ``0 / 0`` (two zero-length segments) is 0."""
    inter = np.clip(np.minimum(pred[:, 1], gt[:, 1]) - np.maximum(pred[:, 0], gt[:, 0]), 0, None)
    union = (gt[:, 1] - gt[:, 0]) + (pred[:, 1] - pred[:, 0]) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match(gt_key: np.ndarray, gt_segment: np.ndarray, pred_key: np.ndarray, pred_segment: np.ndarray,
          thresholds: np.ndarray) -> np.ndarray:
    """``[T, P]`` true positives of predictions already in rank order; ``*_key`` is the (video, class) group of
    each row (``-1``: a prediction whose video has no ground truth)."""
    num_t, num_p = thresholds.size, pred_key.size
    tp = np.zeros((num_t, num_p), dtype=bool)
    gt_order = np.argsort(gt_key, kind="stable")
    sorted_key = gt_key[gt_order]
    lo = np.searchsorted(sorted_key, pred_key, "left")
    count = np.where(pred_key >= 0, np.searchsorted(sorted_key, pred_key, "right") - lo, 0)
    if not count.any():
        return tp
    # every (prediction, ground truth of its group) pair
    pair_pred = np.repeat(np.arange(num_p), count)
    first = np.cumsum(count) - count
    pair_gt = gt_order[lo[pair_pred] + np.arange(pair_pred.size) - first[pair_pred]]
    tiou = pair_tiou(pred_segment[pair_pred], gt_segment[pair_gt])
    # only candidates that can match at some threshold matter; list them best first (ties: ground truth order)
    useful = tiou >= thresholds.min()
    pair_pred, pair_gt, tiou = pair_pred[useful], pair_gt[useful], tiou[useful]
    if not pair_pred.size:
        return tp
    order = np.lexsort((pair_gt, -tiou, pair_pred))
    pair_pred, pair_gt, tiou = pair_pred[order], pair_gt[order], tiou[order]
    relevant, start, width = np.unique(pair_pred, return_index=True, return_counts=True)
    # rank of each relevant prediction within its group (rows are in rank order, so a stable sort by group)
    group = pred_key[relevant]
    by_group = np.argsort(group, kind="stable")
    sorted_group = group[by_group]
    group_start = np.searchsorted(sorted_group, sorted_group, "left")
    rank = np.empty(relevant.size, dtype=np.int64)
    rank[by_group] = np.arange(relevant.size) - group_start
    # padded candidates [R, K]
    k_max = int(width.max())
    slot = np.arange(k_max)
    valid = slot[None, :] < width[:, None]
    flat = np.minimum(start[:, None] + slot[None, :], pair_pred.size - 1)
    cand_gt = np.where(valid, pair_gt[flat], -1)
    cand_tiou = np.where(valid, tiou[flat], -1.0)
    ok = cand_tiou[None, :, :] >= thresholds[:, None, None]           # [T, R, K]
    locked = np.zeros((num_t, gt_key.size + 1), dtype=bool)           # the last column absorbs padding
    cand_lock = np.where(valid, cand_gt, gt_key.size)
    t_index = np.arange(num_t)[:, None]
    step_rows = np.argsort(rank, kind="stable")
    bounds = np.cumsum(np.bincount(rank))
    begin = 0
    for end in bounds:
        rows = step_rows[begin:end]
        begin = end
        lock_index = cand_lock[rows]                                  # [S, K]
        free = ok[:, rows] & ~locked[:, lock_index]                   # [T, S, K]
        pick = free.argmax(2)                                         # the first free candidate is the best
        s_index = np.arange(rows.size)[None, :]
        hit = free[t_index, s_index, pick]                            # [T, S]
        taken = lock_index[s_index, pick]
        tp[:, relevant[rows]] = hit
        ti, si = np.nonzero(hit)
        locked[ti, taken[ti, si]] = True
    return tp


def average_precision(tp: np.ndarray, label: np.ndarray, num_positive: np.ndarray) -> np.ndarray:
    """``[T, C]`` all-point interpolated AP of rows sorted by (class, rank); ``tp`` is ``[T, P]``."""
    num_t, num_c = tp.shape[0], num_positive.size
    ap = np.zeros((num_t, num_c))
    if not tp.shape[1]:
        return ap
    class_start = np.searchsorted(label, np.arange(num_c), "left")
    position = np.arange(label.size) - class_start[label]             # rank within the class
    cum = np.cumsum(tp, axis=1, dtype=np.int64)
    before = np.where(class_start[label] > 0, cum[:, np.maximum(class_start[label] - 1, 0)], 0)
    tp_cum = (cum - before).astype(np.float64)
    precision = tp_cum / (position + 1)
    recall = tp_cum / num_positive[label]
    previous = np.where(position > 0, np.roll(recall, 1, axis=1), 0.0)
    step = recall - previous
    # suffix maximum of precision within each class: offset the classes so none leaks into the previous one
    # (precision is in [0, 1]; the offset's rounding is below 1e-12 for fewer than 10^3 classes)
    offset = 2.0 * (num_c - label)
    suffix = np.maximum.accumulate((precision + offset)[:, ::-1], axis=1)[:, ::-1] - offset
    contribution = step * suffix
    for t in range(num_t):
        ap[t] = np.bincount(label, weights=contribution[t], minlength=num_c)
    return ap


def detection_map(ground_truth: JsonInput, predictions: JsonInput, *,
                  tiou_thresholds: Union[str, Sequence[float], np.ndarray, Tensor] = DEFAULT_TIOU,
                  subset: Optional[str] = None, zero_length: str = "raise") -> DetectionResult:
    r"""Temporal action detection mAP with ActivityNet's protocol (see the module docstring).

    Args:
        ground_truth: path or dict ``{"database": {video: {"subset", "annotations": [{"segment", "label"}]}}}``.
        predictions: path or dict ``{"results": {video: [{"segment", "label", "score"}]}}``. Predictions of
            videos outside the subset's ground truth count as false positives, as in the official code.
        tiou_thresholds: thresholds (``"0.5:0.95:0.05"``, a list, ...). Default ``0.5, 0.55, ..., 0.95``.
        subset: the ground truth's ``"subset"`` to evaluate (``"validation"``, ``"test"``, ...); ``None``: all.
        zero_length: a segment with ``start == end`` raises (``"raise"``, default), or is kept (``"keep"``) as
            an instance that overlaps nothing (the official code's ``0 / 0`` makes two zero-length segments of
            one video and class match at every threshold; here they never match).

    Returns:
        :class:`DetectionResult` with ``ap [T, C]``, ``mAP [T]``, ``average_mAP``, ``classes``.

    Raises:
        ValueError: naming the video and field of a bad entry (missing field, unknown label, start >= end,
            non-finite score), or an unknown subset.
    """
    thresholds = parse_thresholds(tiou_thresholds)
    gt = load_ground_truth(ground_truth, subset, zero_length=zero_length)
    pred = load_predictions(predictions, gt.classes, zero_length=zero_length)
    num_c = len(gt.classes)
    video_index = {v: i for i, v in enumerate(gt.videos)}
    pred_video = np.array([video_index.get(v, -1) for v in pred.videos], dtype=np.int64)[pred.video]
    order = np.lexsort((np.arange(pred.score.size), -pred.score, pred.label))
    label = pred.label[order]
    pred_key = np.where(pred_video[order] >= 0, pred_video[order] * num_c + label, -1)
    tp = match(gt.video * num_c + gt.label, gt.segment, pred_key, pred.segment[order], thresholds)
    num_positive = np.bincount(gt.label, minlength=num_c).astype(np.float64)
    ap = torch.from_numpy(average_precision(tp, label, num_positive))
    mean = ap.mean(1)
    return DetectionResult(ap, mean, float(mean.mean()), list(gt.classes), torch.from_numpy(thresholds))
