r"""P-GCN's losses (SSN's, which P-GCN's reference code reuses): activity cross-entropy, completeness hinge with
online hard negative mining, class-wise smooth L1 boundary regression. Vectorised over all sampled proposals of
a mini-batch; ``batch`` tells each proposal's video.

Each loss is a sum over its terms divided by their count. :func:`loss_terms` returns the sums and counts, so
that :func:`pgcn_loss` (one process: the mini-batch's means) and :func:`global_pgcn_loss` (under DDP: the sums
of this rank over the counts all-reduced over ranks) share one implementation."""
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .pgcn_targets import BACKGROUND, FOREGROUND, INCOMPLETE

__all__ = ["activity_loss", "completeness_loss", "regression_loss", "loss_terms", "pgcn_loss", "global_pgcn_loss"]

Terms = Dict[str, Tuple[Tensor, int]]


def _activity_terms(activity: Tensor, kind: Tensor, label: Tensor) -> Tuple[Tensor, int]:
    keep = (kind == FOREGROUND) | (kind == BACKGROUND)
    target = torch.where(kind == FOREGROUND, label, 0)
    return F.cross_entropy(activity[keep], target[keep], reduction="sum"), int(keep.sum())


def activity_loss(activity: Tensor, kind: Tensor, label: Tensor) -> Tensor:
    """Cross-entropy over the foreground (target: its class) and background (target 0) proposals; incomplete
    ones do not take part. ``activity [N, K + 1]``, ``kind [N]``, ``label [N]`` in ``1 … K``."""
    return _mean(*_activity_terms(activity, kind, label))


def _completeness_terms(completeness: Tensor, kind: Tensor, label: Tensor, batch: Tensor,
                        ohem_ratio: float) -> Tuple[Tensor, int]:
    if not 0.0 <= ohem_ratio <= 1.0:
        raise ValueError(f"'ohem_ratio' must lie in [0, 1], got {ohem_ratio!r}")
    positive, negative = kind == FOREGROUND, kind == INCOMPLETE
    score = completeness.gather(1, (label.clamp(min=1) - 1)[:, None]).squeeze(1)
    loss = torch.where(positive, (1 - score).clamp(min=0), (1 + score).clamp(min=0))
    # Rank the negatives of each video by decreasing loss: sort by loss, then stably by video.
    neg = negative.nonzero().view(-1)
    order = neg[torch.argsort(loss[neg].detach(), descending=True, stable=True)]
    order = order[torch.argsort(batch[order], stable=True)]
    video = batch[order]
    num_videos = int(batch.max()) + 1 if batch.numel() else 0
    count = torch.bincount(video, minlength=num_videos)
    first = count.cumsum(0) - count
    rank = torch.arange(order.numel()) - first[video]
    quota = (count.double() * ohem_ratio).floor().long().clamp(min=1)
    kept = order[rank < quota[video]]
    return loss[positive].sum() + loss[kept].sum(), int(positive.sum()) + kept.numel()


def completeness_loss(completeness: Tensor, kind: Tensor, label: Tensor, batch: Tensor, *,
                      ohem_ratio: float = 0.17) -> Tensor:
    r"""Hinge loss of the completeness score of each proposal's class, :math:`\max(0, 1 - s)` for foreground
    (complete) and :math:`\max(0, 1 + s)` for incomplete proposals, with online hard negative mining: all
    positives, and per video the ``max(1, floor(ohem_ratio · n))`` incomplete proposals of largest loss, ``n`` its
    incomplete count (SSN's ``OHEMHingeLoss``: ``int(6 · 0.17) = 1`` of P-GCN's six). The sum is divided by the
    number of terms kept. ``completeness [N, K]``, ``kind``, ``label`` (``1 … K``), ``batch`` ``[N]``.

    The selection is per video, so it does not depend on which other videos share the mini-batch (or the rank,
    under DDP, where a video's proposals are all on one rank)."""
    return _mean(*_completeness_terms(completeness, kind, label, batch, ohem_ratio))


def _regression_terms(regression: Tensor, kind: Tensor, label: Tensor, target: Tensor) -> Tuple[Tensor, int]:
    fg = kind == FOREGROUND
    pred = regression[fg].gather(1, (label[fg] - 1)[:, None, None].expand(-1, 1, 2)).squeeze(1)
    return F.smooth_l1_loss(pred, target[fg], reduction="sum"), int(fg.sum())


def regression_loss(regression: Tensor, kind: Tensor, label: Tensor, target: Tensor) -> Tensor:
    """Smooth L1 (beta 1) between the regression of each foreground proposal's class and its normalised target,
    summed over (centre, length) and averaged over the foreground proposals. ``regression [N, K, 2]``,
    ``target [N, 2]``."""
    return _mean(*_regression_terms(regression, kind, label, target))


def _mean(total: Tensor, count: int) -> Tensor:
    return total / count if count else total * 0        # no term: 0, still attached to the graph


def loss_terms(outputs: Tuple[Tensor, Tensor, Tensor], kind: Tensor, label: Tensor, target: Tensor,
               batch: Tensor, *, ohem_ratio: float = 0.17) -> Terms:
    """``{"activity" | "completeness" | "regression": (sum, count)}`` of ``outputs = (activity, completeness,
    regression)`` (each loss above is ``sum / count``)."""
    activity, completeness, regression = outputs
    return {"activity": _activity_terms(activity, kind, label),
            "completeness": _completeness_terms(completeness, kind, label, batch, ohem_ratio),
            "regression": _regression_terms(regression, kind, label, target)}


def pgcn_loss(outputs: Tuple[Tensor, Tensor, Tensor], kind: Tensor, label: Tensor, target: Tensor, batch: Tensor,
              *, completeness_weight: float = 0.5, regression_weight: float = 0.5, ohem_ratio: float = 0.17
              ) -> Tuple[Tensor, Dict[str, float]]:
    """``act + 0.5 · comp + 0.5 · reg`` (the reference code's weights) of ``outputs = (activity, completeness,
    regression)``; returns the total and its parts."""
    terms = loss_terms(outputs, kind, label, target, batch, ohem_ratio=ohem_ratio)
    parts = {name: _mean(total, count) for name, (total, count) in terms.items()}
    total = parts["activity"] + completeness_weight * parts["completeness"] + regression_weight * parts["regression"]
    return total, {name: float(part.detach()) for name, part in parts.items()}


def global_pgcn_loss(outputs: Tuple[Tensor, Tensor, Tensor], kind: Tensor, label: Tensor, target: Tensor,
                     batch: Tensor, *, completeness_weight: float = 0.5, regression_weight: float = 0.5,
                     ohem_ratio: float = 0.17) -> Tuple[Tensor, Tensor]:
    r"""This rank's share of :func:`pgcn_loss` over the global batch (the union of every rank's mini-batch):

    .. math::
        \mathcal{L}_r = \sum_{k} w_k \frac{S_{k,r}}{\sum_{r'} n_{k,r'}},

    :math:`S_{k,r}` the rank's sum of loss :math:`k` (activity, completeness, regression), :math:`n_{k,r}` its
    term count, all-reduced (:func:`videograph.distributed.all_reduce_sum`): the shares of the ranks add up to
    :func:`pgcn_loss` of the global batch (outside a process group the share *is* it). Returns ``(share,
    global counts [3])``."""
    from ..distributed import all_reduce_sum

    terms = loss_terms(outputs, kind, label, target, batch, ohem_ratio=ohem_ratio)
    sums = [total for total, _ in terms.values()]
    counts = all_reduce_sum(torch.tensor([float(count) for _, count in terms.values()], dtype=torch.float64))
    weights = (1.0, completeness_weight, regression_weight)
    share = sum(w * (s / c if c > 0 else s * 0) for w, s, c in zip(weights, sums, counts.tolist()))
    return share, counts
