r"""Ground-truth boxes in place of a detector: annotated tracks (Something-Else's per-frame hand and object boxes,
:class:`~videograph.datasets.SomethingElseVideo`) give the tubelets or regions of the sampled frames directly.

A *box source* is any object with the fields of :class:`~videograph.datasets.SomethingElseVideo`: ``frames``
``[F]`` the numbers of the annotated frames (ascending), ``boxes`` ``[B, 4]`` ``xyxy`` pixels, ``frame`` ``[B]``
the position in ``frames`` of each box's frame and ``identity`` ``[B]`` the track of each box (an object keeps
its identity over the video: ``"object hand"``, ``"object 0"``, ...). :func:`ground_truth` checks it against the
frames of a video once; :func:`truth_tubes` and :func:`truth_regions` read a clip's boxes from it.
"""
from typing import Any, NamedTuple, Tuple

import torch
from torch import Tensor

from .linking import Tubes

__all__ = ["GroundTruth", "ground_truth", "truth_tubes", "truth_regions"]


class GroundTruth(NamedTuple):
    r"""A box source checked against the frames of one video.

    Attributes:
        positions: ``long [F]`` index in the video (its reader's frame numbering) of each annotated frame,
            ascending.
        table: ``long [F, K]`` row of ``boxes`` of track ``k`` in annotated frame ``f``, ``-1`` where the track
            has no box there.
        boxes: ``float [B, 4]`` ``xyxy`` pixels, clamped into the frame.
    """
    positions: Tensor
    table: Tensor
    boxes: Tensor


def _tensor(source: Any, name: str, what: str) -> Tensor:
    value = getattr(source, name, None)
    if not isinstance(value, Tensor):
        raise TypeError(f"'boxes' must be a box source with tensor fields frames, boxes, frame, identity (a "
                        f"videograph.datasets.SomethingElseVideo); {what} has no tensor '{name}'")
    return value


def ground_truth(source: Any, num_frames: int, frame_size: Tuple[int, int], *, start_index: int = 1,
                 what: str = "the video") -> GroundTruth:
    r"""Checks a box source against a video of ``num_frames`` frames of ``frame_size`` ``(H, W)``.

    Annotated frame number ``n`` is the video's frame ``n - start_index`` (Something-Else numbers the frames of
    a video from 1, as its ``0001.jpg`` names say; a :class:`~videograph.io.FrameFolder` passes its own
    ``start_index``). Boxes are clamped into ``[0, W] x [0, H]`` (Something-Else has boxes a rounding error past
    the border); a box that is inverted (``x2 < x1`` or ``y2 < y1``), not finite, or wholly outside the frame
    raises, as does an annotated frame the video does not have.

    Raises:
        TypeError: ``source`` lacks a field.
        ValueError: malformed fields, a bad box, or frame numbers outside the video (``what`` names it).
    """
    frames, boxes = _tensor(source, "frames", what).long(), _tensor(source, "boxes", what).float()
    frame, identity = _tensor(source, "frame", what).long(), _tensor(source, "identity", what).long()
    if frames.dim() != 1 or frames.numel() == 0:
        raise ValueError(f"'boxes' of {what} must annotate at least one frame ('frames' [F]), got "
                         f"{tuple(frames.shape)}")
    if frames.numel() > 1 and bool((frames[1:] <= frames[:-1]).any()):
        raise ValueError(f"'boxes' of {what}: 'frames' must be strictly increasing frame numbers")
    if boxes.dim() != 2 or boxes.size(1) != 4 or frame.shape != (boxes.size(0),) or \
            identity.shape != (boxes.size(0),):
        raise ValueError(f"'boxes' of {what} must hold boxes [B, 4], frame [B] and identity [B], got "
                         f"{tuple(boxes.shape)}, {tuple(frame.shape)}, {tuple(identity.shape)}")
    if boxes.size(0) and (int(frame.min()) < 0 or int(frame.max()) >= frames.numel() or int(identity.min()) < 0):
        raise ValueError(f"'boxes' of {what}: 'frame' must index 'frames' and 'identity' be >= 0")
    positions = frames - start_index
    outside = (positions < 0) | (positions >= num_frames)
    if bool(outside.any()):
        raise ValueError(f"'boxes' of {what} annotate frame number {int(frames[outside][0])}, but the video has "
                         f"{num_frames} frames numbered from {start_index}")
    height, width = frame_size
    if not bool(torch.isfinite(boxes).all()):
        raise ValueError(f"'boxes' of {what} hold NaN or inf")
    inverted = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if bool(inverted.any()):
        b = int(inverted.nonzero()[0])
        raise ValueError(f"'boxes' of {what}: frame number {int(frames[frame[b]])} has an inverted box "
                         f"{boxes[b].tolist()} (expected xyxy, x2 >= x1 and y2 >= y1)")
    away = (boxes[:, 0] > width) | (boxes[:, 2] < 0) | (boxes[:, 1] > height) | (boxes[:, 3] < 0)
    if bool(away.any()):
        b = int(away.nonzero()[0])
        raise ValueError(f"'boxes' of {what}: frame number {int(frames[frame[b]])} has a box {boxes[b].tolist()} "
                         f"wholly outside the {width}x{height} frame")
    clamped = torch.stack([boxes[:, 0].clamp(0, width), boxes[:, 1].clamp(0, height),
                           boxes[:, 2].clamp(0, width), boxes[:, 3].clamp(0, height)], dim=1)
    num_tracks = int(identity.max()) + 1 if identity.numel() else 0
    table = torch.full((frames.numel(), num_tracks), -1, dtype=torch.long)
    table[frame, identity] = torch.arange(boxes.size(0))
    if int((table >= 0).sum()) != boxes.size(0):
        raise ValueError(f"'boxes' of {what}: a track has two boxes in one frame")
    return GroundTruth(positions, table, clamped)


def truth_tubes(truth: GroundTruth, rows: Tensor) -> Tuple[Tubes, Tensor]:
    r"""The tubelets of one clip: every track with a box in one of the clip's annotated frames ``rows``
    (``long [T]``, rows of ``truth.table``) is a tubelet, tracks in ascending order. Where a track has no box in
    a frame of the clip it takes the box of the nearest frame of the clip that has one (the earlier on a tie),
    with ``matched`` ``False`` there. Scores are ``1``.

    Returns:
        :class:`~videograph.video.Tubes` (``boxes [M, T, 4]``, ``matched [M, T]``, ``scores [M]``) and the
        ``long [M]`` track of each tubelet.
    """
    window = truth.table[rows]                                              # [T, K]
    present = window >= 0
    tracks = present.any(0).nonzero().flatten()
    window, present = window[:, tracks], present[:, tracks]                 # [T, M]
    steps = torch.arange(rows.numel())
    distance = (steps[:, None] - steps[None, :]).abs()                      # [T, T]: |t - s|
    # nearest[t, m]: the frame s of the clip closest to t where track m has a box.
    cost = torch.where(present.t()[:, None, :], distance[None], rows.numel())  # [M, T, T]
    nearest = cost.argmin(-1).t()                                           # [T, M], argmin takes the first
    rows_of = window.gather(0, nearest)                                     # [T, M]
    boxes = truth.boxes[rows_of].permute(1, 0, 2).contiguous()              # [M, T, 4]
    tubes = Tubes(boxes, present.t().contiguous(), torch.ones(tracks.numel()))
    return tubes, tracks


def truth_regions(truth: GroundTruth, rows: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    r"""The regions of one clip: every box of the clip's annotated frames ``rows`` (``long [T]``), frame by
    frame, tracks in ascending order within a frame.

    Returns:
        ``boxes [R, 4]``, ``where [R]`` (position in the clip of each box's frame) and ``track [R]``.
    """
    where, track = (truth.table[rows] >= 0).nonzero(as_tuple=True)
    return truth.boxes[truth.table[rows][where, track]], where, track
