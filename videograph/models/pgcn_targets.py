r"""P-GCN's training targets: proposal categories (SSN / P-GCN), regression targets and their normalisation, and
the per-video fg : incomplete : bg sampling of training proposals. Everything is vectorised over the proposals
of a whole :class:`~torch_geometric.data.Batch` (``batch`` tells each proposal's video)."""
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

__all__ = ["FOREGROUND", "INCOMPLETE", "BACKGROUND", "IGNORED", "ProposalTargets", "proposal_targets",
           "RegressionStats", "encode_regression", "decode_regression", "sample_proposals"]

#: Proposal categories (``ProposalTargets.category``).
FOREGROUND, INCOMPLETE, BACKGROUND, IGNORED = 0, 1, 2, -1


@dataclass
class ProposalTargets:
    """Per-proposal targets of :func:`proposal_targets`.

    Attributes:
        category: ``long [N]``: :data:`FOREGROUND`, :data:`INCOMPLETE`, :data:`BACKGROUND` or :data:`IGNORED`.
        label: ``long [N]`` class (``1 … K``) of the ground truth of best tIoU (``0`` when the video has none).
        best_iou: ``[N]`` best tIoU with the video's ground truth.
        overlap_self: ``[N]`` largest intersection with one ground truth over the proposal's length.
        regression: ``[N, 2]`` raw regression targets towards the best ground truth (zeros where it has none).
    """
    category: Tensor
    label: Tensor
    best_iou: Tensor
    overlap_self: Tensor
    regression: Tensor


def encode_regression(segments: Tensor, targets: Tensor) -> Tensor:
    r"""SSN / P-GCN regression targets of ``segments [N, 2]`` towards ``targets [N, 2]``:
    :math:`((c_{gt} - c) / l, \log(l_{gt} / l))`, ``c`` the centre and ``l`` the length."""
    length = segments[:, 1] - segments[:, 0]
    centre = segments.mean(1)
    return torch.stack([(targets.mean(1) - centre) / length, torch.log((targets[:, 1] - targets[:, 0]) / length)], 1)


def decode_regression(segments: Tensor, offsets: Tensor) -> Tensor:
    """Inverse of :func:`encode_regression`: the segments ``[N, 2]`` that ``offsets [N, 2]`` move ``segments`` to."""
    length = segments[:, 1] - segments[:, 0]
    centre = segments.mean(1) + offsets[:, 0] * length
    half = length * torch.exp(offsets[:, 1]) / 2
    return torch.stack([centre - half, centre + half], 1)


@dataclass
class RegressionStats:
    """Mean and std of the foreground regression targets of a training set (the losses see
    ``(target - mean) / std``, the detector undoes it)."""
    mean: Tensor
    std: Tensor

    @classmethod
    def fit(cls, targets: ProposalTargets, eps: float = 1e-6) -> "RegressionStats":
        fg = targets.category == FOREGROUND
        if not bool(fg.any()):
            raise ValueError("'targets' has no foreground proposal: regression statistics need at least one")
        values = targets.regression[fg]
        std = values.std(0, unbiased=False) if values.size(0) > 1 else torch.ones(2)
        return cls(values.mean(0), std.clamp(min=eps))

    def normalise(self, values: Tensor) -> Tensor:
        return (values - self.mean) / self.std

    def denormalise(self, values: Tensor) -> Tensor:
        return values * self.std + self.mean


def _check_segments(name: str, segments: Tensor) -> None:
    if not isinstance(segments, Tensor) or segments.dim() != 2 or segments.size(1) != 2:
        got = type(segments).__name__ if not isinstance(segments, Tensor) else tuple(segments.shape)
        raise ValueError(f"'{name}' must be a [N, 2] tensor of (start, end), got {got}")
    if segments.numel() and bool((segments[:, 1] <= segments[:, 0]).any()):
        raise ValueError(f"'{name}' must have start < end in every row")


def proposal_targets(segments: Tensor, batch: Tensor, gt_segments: Tensor, gt_labels: Tensor, gt_batch: Tensor,
                     duration: Tensor, *, fg_iou: float = 0.7, incomplete_iou: float = 0.3,
                     incomplete_overlap: float = 0.01, bg_iou: float = 0.01, bg_coverage: float = 0.02
                     ) -> ProposalTargets:
    r"""Categorises proposals as SSN / P-GCN do, against the ground truth of their own video.

    * foreground: best tIoU ``> fg_iou`` (a ground-truth segment listed as a proposal is one, tIoU 1);
    * incomplete: best tIoU ``< incomplete_iou`` and overlap with itself (largest intersection with one ground
      truth over the proposal's length) ``> incomplete_overlap``;
    * background: not incomplete, best tIoU ``< bg_iou`` and coverage (length over the video's duration)
      ``> bg_coverage``;
    * ignored: the rest.

    Args:
        segments: ``[N, 2]`` proposals; ``batch``: ``long [N]`` their video.
        gt_segments: ``[G, 2]`` ground truth; ``gt_labels``: ``long [G]`` classes ``1 … K``; ``gt_batch``:
            ``long [G]`` their video.
        duration: ``[B]`` length of each video (same unit as the segments).
    """
    _check_segments("segments", segments)
    _check_segments("gt_segments", gt_segments)
    if batch.shape != segments.shape[:1] or gt_batch.shape != gt_segments.shape[:1] \
            or gt_labels.shape != gt_segments.shape[:1]:
        raise ValueError("'batch' must have one entry per proposal, 'gt_labels' and 'gt_batch' one per ground truth")
    # Dense [N, G] against every ground truth, masked to the proposal's own video.
    inter = (torch.minimum(segments[:, None, 1], gt_segments[None, :, 1])
             - torch.maximum(segments[:, None, 0], gt_segments[None, :, 0])).clamp(min=0)
    length = segments[:, 1] - segments[:, 0]
    gt_length = gt_segments[:, 1] - gt_segments[:, 0]
    same = batch[:, None] == gt_batch[None, :]
    iou = torch.where(same, inter / (length[:, None] + gt_length[None, :] - inter), -1.0)
    overlap = torch.where(same, inter / length[:, None], 0.0)
    n = segments.size(0)
    if gt_segments.size(0):
        best_iou, best = iou.max(1)
        has_gt = best_iou >= 0
        best_iou = best_iou.clamp(min=0)
        overlap_self = overlap.max(1).values
        label = torch.where(has_gt, gt_labels[best], 0)
        regression = torch.where(has_gt[:, None], encode_regression(segments, gt_segments[best]), 0.0)
    else:
        best_iou, overlap_self = segments.new_zeros(n), segments.new_zeros(n)
        label, regression = torch.zeros(n, dtype=torch.long), segments.new_zeros(n, 2)
    coverage = length / duration[batch]
    category = torch.full((n,), IGNORED, dtype=torch.long)
    incomplete = (best_iou < incomplete_iou) & (overlap_self > incomplete_overlap)
    category[(best_iou < bg_iou) & (coverage > bg_coverage) & ~incomplete] = BACKGROUND
    category[incomplete] = INCOMPLETE
    category[best_iou > fg_iou] = FOREGROUND
    return ProposalTargets(category, label, best_iou, overlap_self, regression)


def sample_proposals(category: Tensor, batch: Tensor, num_videos: int, *, ratio: Sequence[int] = (1, 6, 1),
                     generator: Optional[torch.Generator] = None,
                     uniform: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    r"""Draws, per video, ``ratio = (fg, incomplete, bg)`` training proposals uniformly with replacement from each
    category, as P-GCN's ``_video_centric_sampling`` does; a slot whose category is empty in its video takes a
    foreground proposal instead (the reference code's fall-back, for incomplete and background alike).

    Returns ``(index [B * sum(ratio)], kind [B * sum(ratio)])``: the drawn proposals, grouped by video (video 0
    first) and within a video by slot (fg, incomplete, bg), and the category each was drawn as (a fall-back
    slot is :data:`FOREGROUND`). Every video must have a foreground proposal (list the ground truth among its
    proposals, or leave videos without ground truth out of training, as the reference code does).
    """
    if len(ratio) != 3 or any(isinstance(r, bool) or not isinstance(r, int) or r < 0 for r in ratio) \
            or ratio[0] < 1:
        raise ValueError(f"'ratio' must be three non-negative ints (fg >= 1, incomplete, bg), got {ratio!r}")
    category, batch = category.view(-1), batch.view(-1)
    if category.shape != batch.shape:
        raise ValueError("'category' and 'batch' must have one entry per proposal")
    kinds = torch.tensor([FOREGROUND, INCOMPLETE, BACKGROUND])
    counts = torch.zeros(num_videos, 3, dtype=torch.long)
    valid = category >= 0
    key = batch[valid] * 3 + category[valid]
    counts.view(-1).index_add_(0, key, torch.ones_like(key))
    if bool((counts[:, 0] == 0).any()):
        video = int((counts[:, 0] == 0).nonzero()[0, 0])
        raise ValueError(f"video {video} has no foreground proposal: list its ground truth among its proposals or "
                         f"leave it out of training")
    # Proposals grouped by (video, category): pool (v, k) is order[start[v, k] : start[v, k] + counts[v, k]].
    order = valid.nonzero().view(-1)[torch.argsort(key, stable=True)]
    start = (counts.view(-1).cumsum(0) - counts.view(-1)).view(num_videos, 3)
    slot_kind = kinds.repeat_interleave(torch.tensor(list(ratio)))              # [S]
    slot_kind = slot_kind.repeat(num_videos, 1)                                  # [B, S]
    video = torch.arange(num_videos)[:, None].expand_as(slot_kind)
    empty = counts.gather(1, slot_kind) == 0
    slot_kind = torch.where(empty, FOREGROUND, slot_kind)
    size = counts.gather(1, slot_kind)
    if uniform is None:
        uniform = torch.rand(slot_kind.shape, generator=generator)
    elif not isinstance(uniform, Tensor) or uniform.shape != slot_kind.shape:
        raise ValueError(f"'uniform' must be a tensor of shape {tuple(slot_kind.shape)} (videos, slots), got "
                         f"{tuple(uniform.shape) if isinstance(uniform, Tensor) else type(uniform).__name__}")
    draw = (uniform * size).long().clamp(max=size - 1)
    index = order[start[video, slot_kind] + draw]
    return index.view(-1), slot_kind.reshape(-1)
