r"""Linking per-frame detections into tubelets (MUSLE's nodes) and picking per-frame regions (STRG's nodes).

A *linker* is a callable ``linker(frames, detections, top_m) -> Tubes`` on one clip: ``frames`` ``uint8
[T, H, W, 3]``, ``detections`` ``T`` dicts of torchvision's detection output, and :class:`Tubes` holding ``M <=
top_m`` tubelets seeded by the top-``M`` detections of the clip's first frame. :class:`Linker` is the base class
(a learned linker, such as a tubelet proposal network, subclasses it); :class:`IoULinker` follows each seed by
Hungarian matching on IoU.
"""
import abc
from typing import List, NamedTuple, Sequence, Tuple

import torch
from torch import Tensor, nn
from torchvision.ops import box_iou

from .detector import Detections, check_detections, check_frames

__all__ = ["Tubes", "Linker", "IoULinker", "top_regions"]


class Tubes(NamedTuple):
    r"""Tubelets of one clip.

    Attributes:
        boxes: ``float [M, T, 4]`` ``xyxy`` pixel box of every tubelet in every frame of the clip.
        matched: ``bool [M, T]``: whether the box is a detection (``True``) or was carried forward.
        scores: ``float [M]`` tubelet scores.
    """
    boxes: Tensor
    matched: Tensor
    scores: Tensor


def _check_top(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"'{name}' must be a positive int, got {value!r}")
    return value


class Linker(nn.Module, abc.ABC):
    r"""Base class of linkers: ``forward(frames, detections, top_m) -> Tubes`` on one clip.

    Calling a linker validates its inputs (``frames`` ``uint8 [T, H, W, 3]``, ``T`` detection dicts, ``top_m``
    a positive int) before :meth:`forward` sees them, and checks the :class:`Tubes` it returns: ``boxes
    [M, T, 4]``, ``matched [M, T]``, ``scores [M]`` with ``M <= top_m``.
    """

    def __call__(self, frames: Tensor, detections: Sequence[Detections], top_m: int) -> Tubes:
        check_frames(frames)
        detections = check_detections(detections, frames.size(0))
        _check_top("top_m", top_m)
        tubes = super().__call__(frames, detections, top_m)
        num = tubes.boxes.size(0) if isinstance(tubes, Tubes) else -1
        if num < 0 or tubes.boxes.shape != (num, frames.size(0), 4) or \
                tubes.matched.shape != (num, frames.size(0)) or tubes.scores.shape != (num,) or num > top_m:
            raise RuntimeError(f"{type(self).__name__} returned malformed Tubes for a clip of {frames.size(0)} "
                               f"frames and top_m={top_m}")
        return tubes

    @abc.abstractmethod
    def forward(self, frames: Tensor, detections: List[Detections], top_m: int) -> Tubes:
        """Links the detections of one clip into at most ``top_m`` tubelets."""


class IoULinker(Linker):
    r"""MUSLE's tubelets by Hungarian IoU matching: the ``top_m`` best-scoring detections of the clip's first
    frame seed the tubelets; at every next frame :math:`t`, each tubelet's box is predicted at constant velocity,

    .. math::
        \hat b_{m,t} = b_{m,t-1} + (v_m, v_m),

    the last box translated by the velocity :math:`v_m` of its centre, which averages (weight ``momentum`` on the
    past) the centre's displacements per frame between the tubelet's consecutive matched detections,

    and tubelets and detections are matched one to one by :func:`scipy.optimize.linear_sum_assignment` on the
    cost :math:`1 - \mathrm{IoU}(\hat b_{m,t}, d_{k,t})`. A match with IoU at least ``iou_threshold`` is accepted
    (the tubelet takes the detection's box, ``matched[m, t] = True``); an unmatched tubelet keeps the predicted
    box, clipped to the frame. A tubelet's score is the mean score of its matched detections.

    Args:
        iou_threshold (float, optional): the least IoU of an accepted match. (default: :obj:`0.3`)
        use_velocity (bool, optional): predict at constant velocity (:obj:`False`: the last box).
            (default: :obj:`True`)
        momentum (float, optional): weight of the past velocity when a new displacement is measured (the first
            measurement is taken as is). (default: :obj:`0.5`)
        same_label (bool, optional): only match detections of the seed's label. (default: :obj:`False`)
    """

    def __init__(self, iou_threshold: float = 0.3, use_velocity: bool = True, momentum: float = 0.5,
                 same_label: bool = False):
        super().__init__()
        if isinstance(iou_threshold, bool) or not isinstance(iou_threshold, (int, float)) or \
                not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"'iou_threshold' must be a number in (0, 1], got {iou_threshold!r}")
        self.iou_threshold = float(iou_threshold)
        self.use_velocity = bool(use_velocity)
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0.0 <= momentum < 1.0:
            raise ValueError(f"'momentum' must be a number in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)
        self.same_label = bool(same_label)

    def forward(self, frames: Tensor, detections: List[Detections], top_m: int) -> Tubes:
        from scipy.optimize import linear_sum_assignment     # here: the package imports without SciPy's cost

        length, height, width = frames.shape[:3]
        first = detections[0]
        seeds = torch.argsort(first["scores"], descending=True, stable=True)[:top_m]
        num = seeds.numel()
        boxes = torch.zeros(num, length, 4)
        matched = torch.zeros(num, length, dtype=torch.bool)
        score_sum = torch.zeros(num)
        if num == 0:
            return Tubes(boxes, matched, score_sum)
        boxes[:, 0] = first["boxes"][seeds]
        matched[:, 0] = True
        score_sum += first["scores"][seeds]
        labels = first["labels"][seeds]
        velocity = torch.zeros(num, 2)
        measured = torch.zeros(num, dtype=torch.bool)
        last_box, last_frame = boxes[:, 0].clone(), torch.zeros(num)
        limit = torch.tensor([width, height, width, height], dtype=torch.float32)
        for t in range(1, length):
            predicted = boxes[:, t - 1] + velocity.repeat(1, 2) if self.use_velocity else boxes[:, t - 1].clone()
            predicted = torch.minimum(predicted.clamp(min=0), limit)
            predicted = torch.cat([predicted[:, :2], torch.maximum(predicted[:, 2:], predicted[:, :2])], dim=1)
            boxes[:, t] = predicted
            current = detections[t]
            if current["boxes"].size(0) == 0:
                continue
            iou = box_iou(predicted, current["boxes"]).nan_to_num_(0.0)
            if self.same_label:
                iou = iou * (labels[:, None] == current["labels"][None, :])
            rows, cols = linear_sum_assignment((1.0 - iou).numpy())
            rows, cols = torch.from_numpy(rows).long(), torch.from_numpy(cols).long()
            accept = iou[rows, cols] >= self.iou_threshold
            rows, cols = rows[accept], cols[accept]
            new = current["boxes"][cols]
            step = ((new[:, :2] + new[:, 2:]) - (last_box[rows, :2] + last_box[rows, 2:])) / 2 \
                / (t - last_frame[rows])[:, None]
            weight = torch.where(measured[rows], self.momentum, 0.0)[:, None]
            velocity[rows] = weight * velocity[rows] + (1 - weight) * step
            measured[rows] = True
            last_box[rows], last_frame[rows] = new, float(t)
            boxes[rows, t] = new
            matched[rows, t] = True
            score_sum[rows] += current["scores"][cols]
        return Tubes(boxes, matched, score_sum / matched.sum(dim=1))

    def extra_repr(self) -> str:
        return (f"iou_threshold={self.iou_threshold}, use_velocity={self.use_velocity}, momentum={self.momentum}, "
                f"same_label={self.same_label}")


def top_regions(detections: Sequence[Detections], top_r: int) -> Tuple[Tensor, Tensor, Tensor]:
    r"""STRG's regions: the ``top_r`` best-scoring detections of every frame.

    Args:
        detections: ``T`` detection dicts.
        top_r: regions kept per frame.

    Returns:
        ``boxes [R, 4]``, ``frame [R]`` (position of each box's frame in ``detections``, non-decreasing) and
        ``scores [R]``; within a frame, boxes by decreasing score.
    """
    _check_top("top_r", top_r)
    if not isinstance(detections, (list, tuple)):
        raise TypeError(f"'detections' must be a list of detection dicts, got {type(detections).__name__}")
    detections = check_detections(detections, len(detections))
    boxes, frame, scores = [], [], []
    for t, item in enumerate(detections):
        keep = torch.argsort(item["scores"], descending=True, stable=True)[:top_r]
        boxes.append(item["boxes"][keep])
        scores.append(item["scores"][keep])
        frame.append(torch.full((keep.numel(),), t, dtype=torch.long))
    if not boxes:
        return torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), torch.zeros(0)
    return torch.cat(boxes), torch.cat(frame), torch.cat(scores)
