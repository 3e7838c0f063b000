r"""P-GCN's losses (SSN's, which P-GCN's reference code reuses): activity cross-entropy, completeness hinge with
online hard negative mining, class-wise smooth L1 boundary regression. Vectorised over all sampled proposals of
a mini-batch; ``batch`` tells each proposal's video."""
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .pgcn_targets import BACKGROUND, FOREGROUND, INCOMPLETE

__all__ = ["activity_loss", "completeness_loss", "regression_loss", "pgcn_loss"]


def activity_loss(activity: Tensor, kind: Tensor, label: Tensor) -> Tensor:
    """Cross-entropy over the foreground (target: its class) and background (target 0) proposals; incomplete
    ones do not take part. ``activity [N, K + 1]``, ``kind [N]``, ``label [N]`` in ``1 … K``."""
    keep = (kind == FOREGROUND) | (kind == BACKGROUND)
    if not bool(keep.any()):
        return activity.sum() * 0
    target = torch.where(kind == FOREGROUND, label, 0)
    return F.cross_entropy(activity[keep], target[keep])


def completeness_loss(completeness: Tensor, kind: Tensor, label: Tensor, batch: Tensor, *,
                      ohem_ratio: float = 0.17) -> Tensor:
    r"""Hinge loss of the completeness score of each proposal's class, :math:`\max(0, 1 - s)` for foreground
    (complete) and :math:`\max(0, 1 + s)` for incomplete proposals, with online hard negative mining: all
    positives, and per video the ``max(1, floor(ohem_ratio · n))`` incomplete proposals of largest loss, ``n`` its
    incomplete count (SSN's ``OHEMHingeLoss``: ``int(6 · 0.17) = 1`` of P-GCN's six). The sum is divided by the
    number of terms kept. ``completeness [N, K]``, ``kind``, ``label`` (``1 … K``), ``batch`` ``[N]``."""
    if not 0.0 <= ohem_ratio <= 1.0:
        raise ValueError(f"'ohem_ratio' must lie in [0, 1], got {ohem_ratio!r}")
    positive, negative = kind == FOREGROUND, kind == INCOMPLETE
    used = positive | negative
    if not bool(used.any()):
        return completeness.sum() * 0
    score = completeness.gather(1, (label.clamp(min=1) - 1)[:, None]).squeeze(1)
    loss = torch.where(positive, (1 - score).clamp(min=0), (1 + score).clamp(min=0))
    # Rank the negatives of each video by decreasing loss: sort by loss, then stably by video.
    neg = negative.nonzero().view(-1)
    order = neg[torch.argsort(loss[neg].detach(), descending=True, stable=True)]
    order = order[torch.argsort(batch[order], stable=True)]
    video = batch[order]
    num_videos = int(batch.max()) + 1
    count = torch.bincount(video, minlength=num_videos)
    first = count.cumsum(0) - count
    rank = torch.arange(order.numel()) - first[video]
    quota = (count.double() * ohem_ratio).floor().long().clamp(min=1)
    kept = order[rank < quota[video]]
    total = loss[positive].sum() + loss[kept].sum()
    return total / (int(positive.sum()) + kept.numel())


def regression_loss(regression: Tensor, kind: Tensor, label: Tensor, target: Tensor) -> Tensor:
    """Smooth L1 (beta 1) between the regression of each foreground proposal's class and its normalised target,
    summed over (centre, length) and averaged over the foreground proposals. ``regression [N, K, 2]``,
    ``target [N, 2]``."""
    fg = kind == FOREGROUND
    if not bool(fg.any()):
        return regression.sum() * 0
    pred = regression[fg].gather(1, (label[fg] - 1)[:, None, None].expand(-1, 1, 2)).squeeze(1)
    return F.smooth_l1_loss(pred, target[fg], reduction="none").sum(1).mean()


def pgcn_loss(outputs: Tuple[Tensor, Tensor, Tensor], kind: Tensor, label: Tensor, target: Tensor, batch: Tensor,
              *, completeness_weight: float = 0.5, regression_weight: float = 0.5, ohem_ratio: float = 0.17
              ) -> Tuple[Tensor, Dict[str, float]]:
    """``act + 0.5 · comp + 0.5 · reg`` (the reference code's weights) of ``outputs = (activity, completeness,
    regression)``; returns the total and its parts."""
    activity, completeness, regression = outputs
    act = activity_loss(activity, kind, label)
    comp = completeness_loss(completeness, kind, label, batch, ohem_ratio=ohem_ratio)
    reg = regression_loss(regression, kind, label, target)
    total = act + completeness_weight * comp + regression_weight * reg
    return total, {"activity": float(act.detach()), "completeness": float(comp.detach()), "regression": float(reg.detach())}
