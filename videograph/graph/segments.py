r"""Pairwise relations between temporal segments (the 1-D counterpart of :mod:`torchvision.ops.boxes`)."""
from typing import Tuple

import torch
from torch import Tensor

__all__ = ["segment_iou", "segment_distance"]


def _check_segments(name: str, segments: Tensor) -> None:
    if not isinstance(segments, Tensor):
        raise TypeError(f"'{name}' must be a tensor, got {type(segments).__name__}")
    if segments.dim() != 2 or segments.size(-1) != 2:
        raise ValueError(f"'{name}' must have shape [N, 2], got {tuple(segments.shape)}")


def _intersection_union(a: Tensor, b: Tensor, frame_inclusive: bool) -> Tuple[Tensor, Tensor, Tensor]:
    one = 1.0 if frame_inclusive else 0.0
    inter = (torch.minimum(a[:, None, 1], b[None, :, 1]) - torch.maximum(a[:, None, 0], b[None, :, 0]) + one)
    inter = inter.clamp_(min=0)
    length_a = a[:, 1] - a[:, 0] + one
    length_b = b[:, 1] - b[:, 0] + one
    union = length_a[:, None] + length_b[None, :] - inter
    span = torch.maximum(a[:, None, 1], b[None, :, 1]) - torch.minimum(a[:, None, 0], b[None, :, 0]) + one
    return inter, union, span


def segment_iou(a: Tensor, b: Tensor, *, frame_inclusive: bool = False) -> Tensor:
    r"""Temporal intersection over union of every pair of segments.

    .. math::
        r(p_i, p_j) = \frac{|p_i \cap p_j|}{|p_i \cup p_j|}

    Args:
        a: ``[N, 2]`` segments ``(start, end)``.
        b: ``[M, 2]`` segments ``(start, end)``.
        frame_inclusive: count both end frames, as P-GCN's reference code does for integer frame indices
            (lengths ``end - start + 1``; segments that share one frame overlap). Default ``False``.

    Returns:
        ``[N, M]`` tIoU in ``[0, 1]``.
    """
    _check_segments("a", a)
    _check_segments("b", b)
    inter, union, _ = _intersection_union(a, b, frame_inclusive)
    return inter / union


def segment_distance(a: Tensor, b: Tensor, *, union: str = "union", frame_inclusive: bool = False) -> Tensor:
    r"""P-GCN's normalised centre distance of every pair of segments (eq. 3).

    .. math::
        d(p_i, p_j) = \frac{|c_i - c_j|}{U(p_i, p_j)}

    Args:
        a: ``[N, 2]`` segments.
        b: ``[M, 2]`` segments.
        union: ``"union"`` takes :math:`U` as the length of the union of the two segments (the measure of
            tIoU; for disjoint segments the sum of their lengths), ``"span"`` as the length from the earliest
            start to the latest end (P-GCN's reference code). Default ``"union"``.
        frame_inclusive: count both end frames (see :func:`segment_iou`).

    Returns:
        ``[N, M]`` distances.
    """
    _check_segments("a", a)
    _check_segments("b", b)
    if union not in ("union", "span"):
        raise ValueError(f"'union' must be 'union' or 'span', got {union!r}")
    _, union_length, span = _intersection_union(a, b, frame_inclusive)
    centre_a = (a[:, 0] + a[:, 1]) / 2
    centre_b = (b[:, 0] + b[:, 1]) / 2
    return (centre_a[:, None] - centre_b[None, :]).abs() / (union_length if union == "union" else span)
