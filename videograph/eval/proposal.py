r"""ActivityNet's proposal metric: average recall against the average number of proposals per video (AR@AN), the
protocol of the official ``eval_proposal.py``, vectorised.

Protocol. Let :math:`V` be the ground truth's videos that have instances and :math:`N` the number of proposals in
the file. Every video keeps its top ``min(int(n_v * ratio), n_v)`` proposals by score (``ratio = AN_max * V / N``;
ties: file order), :math:`n'_v` of them, :math:`N'` in all. At the grid ``pcn_j = j / 100 * AN_max * V / N'``
(``j = 1..100``) a video keeps its top ``min(int(n'_v * pcn_j), n'_v)``, and a ground-truth instance is recalled at
threshold :math:`\theta` when one of those has :math:`\mathrm{tIoU} \ge \theta` with it (a proposal may recall
several instances). Recall is over all instances of :math:`V`; the AR is its mean over the thresholds, plotted
against ``AN_j = pcn_j N' / V``; the AUC is the area under that curve (trapezoids) over ``AN_max``.
"""
from typing import NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from .anet_format import JsonInput, load_ground_truth, load_predictions
from .detection import DEFAULT_TIOU, pair_tiou, parse_thresholds

__all__ = ["ProposalResult", "average_recall"]

#: Points of the AR-AN curve (the official code's ``np.arange(1, 101) / 100``).
_GRID = np.arange(1, 101) / 100.0


class ProposalResult(NamedTuple):
    """The result of :func:`average_recall`."""
    recall: Tensor                 #: ``[T, 100]`` recall per threshold along the AN grid
    average_recall: Tensor         #: ``[100]`` mean over the thresholds
    proposals_per_video: Tensor    #: ``[100]`` the AN grid
    auc: float                     #: area under the AR-AN curve divided by the largest AN (in ``[0, 1]``)
    tiou_thresholds: Tensor        #: ``[T]``

    def at(self, num_proposals: float) -> float:
        """AR at the grid point ``AN`` nearest ``num_proposals`` (``AR@1``, ``AR@100``, ... when every video has
        ``AN_max`` proposals, where the grid is ``1, 2, ..., AN_max`` for ``AN_max = 100``)."""
        index = int(torch.argmin((self.proposals_per_video - float(num_proposals)).abs()))
        return float(self.average_recall[index])

    def table(self) -> str:
        lines = [f"{'AN':>7} {'AR (%)':>8}"]
        an = self.proposals_per_video.tolist()
        for j in sorted({0, 4, 9, 49, len(an) - 1}):
            lines.append(f"{an[j]:>7.2f} {100 * float(self.average_recall[j]):>8.2f}")
        lines.append(f"{'AUC':>7} {100 * self.auc:>8.2f}")
        return "\n".join(lines)


def average_recall(ground_truth: JsonInput, proposals: JsonInput, *, max_avg_proposals: Optional[float] = 100,
                   tiou_thresholds: Union[str, Sequence[float], np.ndarray, Tensor] = DEFAULT_TIOU,
                   subset: Optional[str] = None, zero_length: str = "raise") -> ProposalResult:
    r"""Average recall against the average number of proposals per video (ActivityNet's proposal protocol; see
    the module docstring). Labels are ignored.

    Args:
        ground_truth: path or dict in ActivityNet format (``{"database": ...}``).
        proposals: path or dict ``{"results": {video: [{"segment", "score"}]}}``.
        max_avg_proposals: ``AN_max`` (default 100; ``None``: the file's proposals per ground-truth video).
        tiou_thresholds: thresholds in ``(0, 1]``; default ``0.5:0.95:0.05``.
        subset: the ground truth's ``"subset"`` (``None``: all videos).
        zero_length: ``"raise"`` (default) or ``"keep"`` zero-length segments (see :func:`detection_map`).

    Returns:
        :class:`ProposalResult` (``recall [T, 100]``, ``average_recall [100]``, ``proposals_per_video [100]``,
        ``auc``, and ``.at(AN)``).
    """
    thresholds = parse_thresholds(tiou_thresholds)
    if (thresholds <= 0).any():
        raise ValueError("'tiou_thresholds' must be > 0 for the proposal recall")
    gt = load_ground_truth(ground_truth, subset, labels=False, zero_length=zero_length)
    prop = load_predictions(proposals, zero_length=zero_length)
    # the videos with instances, in ground-truth order, and each instance's index among them
    present, gt_video = np.unique(gt.video, return_inverse=True)
    names = [gt.videos[i] for i in present]
    num_v, num_all = len(names), prop.score.size
    if max_avg_proposals is None:
        max_avg_proposals = num_all / num_v
    if max_avg_proposals <= 0:
        raise ValueError(f"'max_avg_proposals' must be positive, got {max_avg_proposals}")
    ratio = max_avg_proposals * float(num_v) / num_all if num_all else 0.0
    index = {v: i for i, v in enumerate(names)}
    prop_video = np.array([index.get(v, -1) for v in prop.videos], dtype=np.int64)[prop.video]
    inside = np.flatnonzero(prop_video >= 0)
    # proposals of the ground truth's videos by (video, decreasing score, file order); each one's rank
    order = inside[np.lexsort((inside, -prop.score[inside], prop_video[inside]))]
    video = prop_video[order]
    count = np.bincount(video, minlength=num_v)
    first = np.cumsum(count) - count
    rank = np.arange(order.size) - first[video]
    kept_count = np.minimum((count * ratio).astype(np.int64), count)   # int() of each product, as the official
    total = int(kept_count.sum())
    if total == 0:
        raise ValueError("proposals: none is left in the ground truth's videos")
    keep = rank < kept_count[video]
    order, video, rank = order[keep], video[keep], rank[keep]
    kept_first = np.cumsum(kept_count) - kept_count
    # every (instance, kept proposal of its video) pair, instance-major then rank
    per_gt = kept_count[gt_video]
    pair_gt = np.repeat(np.arange(gt_video.size), per_gt)
    pair_offset = np.arange(pair_gt.size) - (np.cumsum(per_gt) - per_gt)[pair_gt]
    pair_prop = order[kept_first[gt_video[pair_gt]] + pair_offset]
    tiou = pair_tiou(prop.segment[pair_prop], gt.segment[pair_gt])
    # the rank of each instance's first proposal at tIoU >= threshold ([G, T]; large when there is none)
    big = np.iinfo(np.int64).max
    first_hit = np.full((gt_video.size, thresholds.size), big, dtype=np.int64)
    has = np.flatnonzero(per_gt > 0)
    if has.size:
        starts = (np.cumsum(per_gt) - per_gt)[has]
        for t, threshold in enumerate(thresholds):
            first_hit[has, t] = np.minimum.reduceat(np.where(tiou >= threshold, pair_offset, big), starts)
    pcn = _GRID * (max_avg_proposals * float(num_v) / total)
    shown = np.minimum((kept_count[:, None] * pcn[None, :]).astype(np.int64), kept_count[:, None])   # [V, 100]
    recalled = (first_hit[:, :, None] < shown[gt_video][:, None, :]).sum(0)                        # [T, 100]
    recall = recalled / float(gt_video.size)
    mean = recall.mean(0)
    per_video = pcn * (float(total) / num_v)
    auc = float(np.trapezoid(mean, per_video)) / per_video[-1]
    return ProposalResult(torch.from_numpy(recall), torch.from_numpy(mean), torch.from_numpy(per_video), auc,
                          torch.from_numpy(thresholds))
