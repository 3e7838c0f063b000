r"""Typed, validated inputs of :func:`videograph.build_graph`.

Three kinds of video description are turned into graphs:

* :class:`Tubelets` (MUSLE): boxes linked over the frames of a clip, one node per tubelet.
* :class:`Regions` (space-time region graphs): per-frame boxes, one node per box.
* :class:`Proposals` (P-GCN): temporal segments of an untrimmed video, one node per segment.

Every container converts numpy arrays and plain lists to tensors and validates on construction, raising
:class:`ValueError` (or :class:`TypeError` for a value of the wrong kind) that names the offending field.
Boxes are ``xyxy`` in pixels of a frame of size ``frame_size = (H, W)``; segments are ``(start, end)`` in the
unit of ``duration`` (seconds unless said otherwise; frames for ``pgcn_official`` graphs).
"""
from dataclasses import dataclass, field, fields
from typing import Any, Optional, Tuple

import torch
from torch import Tensor

__all__ = ["Tubelets", "Regions", "Proposals"]


def _as_tensor(name: str, value: Any, dtype: torch.dtype) -> Tensor:
    """Converts ``value`` to a tensor of ``dtype``; a floating tensor keeps its precision (float64 in, float64
    out), while numpy arrays and lists follow ``dtype``."""
    given_tensor = isinstance(value, Tensor)
    if not given_tensor:
        try:
            value = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError) as error:
            raise TypeError(f"'{name}' must be a tensor, numpy array or nested list of numbers "
                            f"({error})") from None
    if value.dtype == torch.bool or value.is_complex():
        raise TypeError(f"'{name}' must hold real numbers, got dtype {value.dtype}")
    if dtype.is_floating_point:
        return value if value.is_floating_point() and given_tensor else value.to(dtype)
    if value.is_floating_point():
        raise TypeError(f"'{name}' must hold integers, got dtype {value.dtype}")
    return value.to(dtype)


def _check_shape(name: str, tensor: Tensor, shape: Tuple[Optional[int], ...], spec: str) -> None:
    ok = tensor.dim() == len(shape) and all(s is None or s == t for s, t in zip(shape, tensor.shape))
    if not ok:
        raise ValueError(f"'{name}' must have shape {spec}, got {tuple(tensor.shape)}")


def _check_finite(name: str, tensor: Tensor) -> None:
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"'{name}' contains NaN or inf")


def _check_boxes(name: str, boxes: Tensor) -> None:
    _check_finite(name, boxes)
    if bool((boxes < 0).any()):
        raise ValueError(f"'{name}' contains negative coordinates (expected xyxy pixels >= 0)")
    if bool((boxes[..., 2] < boxes[..., 0]).any()) or bool((boxes[..., 3] < boxes[..., 1]).any()):
        raise ValueError(f"'{name}' contains inverted boxes (expected x2 >= x1 and y2 >= y1)")


def _check_sorted_index(name: str, index: Tensor) -> None:
    if bool((index < 0).any()):
        raise ValueError(f"'{name}' contains negative indices")
    if index.numel() > 1 and bool((index[1:] < index[:-1]).any()):
        raise ValueError(f"'{name}' must be sorted in non-decreasing order (group the nodes of each "
                         f"{name} together, in temporal order)")


def _check_frame_size(frame_size: Any) -> Tuple[int, int]:
    if frame_size is None:
        raise ValueError("'frame_size' is required: pass (H, W) of the frames the boxes live in")
    try:
        height, width = (int(v) for v in frame_size)
    except (TypeError, ValueError):
        raise TypeError(f"'frame_size' must be a pair (H, W) of integers, got {frame_size!r}") from None
    if height <= 0 or width <= 0:
        raise ValueError(f"'frame_size' must be positive, got {(height, width)}")
    return height, width


class _Container:
    """Shared conversion of the optional per-node fields and device moves."""

    def _optional_nodes(self, num_nodes: int, name: str, ndim: int, dtype: torch.dtype) -> None:
        value = getattr(self, name)
        if value is None:
            return
        tensor = _as_tensor(name, value, dtype)
        spec = "[N]" if ndim == 1 else "[N, D]"
        _check_shape(name, tensor, (num_nodes,) + (None,) * (ndim - 1), spec + f" with N = {num_nodes}")
        if ndim == 2 and tensor.size(1) == 0:
            raise ValueError(f"'{name}' must have at least one feature column")
        _check_finite(name, tensor)
        setattr(self, name, tensor)

    def _check_box_video(self, index_name: str) -> None:
        """The checks boxes-based videos share: box values, the sorted time index, optional fields."""
        _check_boxes("boxes", self.boxes)
        index = _as_tensor(index_name, getattr(self, index_name), torch.long)
        _check_shape(index_name, index, (self.num_nodes,), f"[N] with N = {self.num_nodes}")
        _check_sorted_index(index_name, index)
        setattr(self, index_name, index)
        self._optional_nodes(self.num_nodes, "features", 2, torch.float32)
        self._optional_nodes(self.num_nodes, "scores", 1, torch.float32)
        self.frame_size = _check_frame_size(self.frame_size)  # type: ignore[attr-defined]

    @property
    def num_nodes(self) -> int:
        raise AttributeError

    def __len__(self) -> int:
        return self.num_nodes

    def to(self, device: Any) -> "_Container":
        """Returns a copy with every tensor moved to ``device``."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]
        values = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in values.items()}
        return type(self)(**values)


@dataclass(eq=False)
class Tubelets(_Container):
    r"""Tubelets of a video (MUSLE): ``N`` boxes, each tracked over the ``T`` frames of its clip.

    Args:
        boxes: ``[N, T, 4]`` per-frame ``xyxy`` boxes in pixels.
        clip: ``[N]`` index of the clip each tubelet belongs to, non-decreasing (clips in temporal order).
        features: optional ``[N, D]`` visual features.
        scores: optional ``[N]`` detection scores.
        label: optional video-level class (becomes ``data.y``).
        frame_size: ``(H, W)`` of the frames, keyword only and required.
    """
    boxes: Tensor
    clip: Tensor
    features: Optional[Tensor] = None
    scores: Optional[Tensor] = None
    label: Optional[int] = None
    frame_size: Tuple[int, int] = field(default=None, kw_only=True)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.boxes = _as_tensor("boxes", self.boxes, torch.float32)
        if self.boxes.dim() != 3 or self.boxes.size(-1) != 4:
            raise ValueError(f"'boxes' must have shape [N, T, 4], got {tuple(self.boxes.shape)}")
        if self.boxes.size(0) == 0 or self.boxes.size(1) == 0:
            raise ValueError(f"'boxes' is empty (shape {tuple(self.boxes.shape)}): a video needs at least "
                             "one tubelet of at least one frame")
        self._check_box_video("clip")

    @property
    def num_nodes(self) -> int:
        return self.boxes.size(0)

    @property
    def num_frames(self) -> int:
        """Frames per clip (``T``)."""
        return self.boxes.size(1)


@dataclass(eq=False)
class Regions(_Container):
    r"""Per-frame region boxes of a video (space-time region graphs): one node per box.

    Args:
        boxes: ``[N, 4]`` ``xyxy`` boxes in pixels.
        frame: ``[N]`` frame index of each box, non-decreasing.
        features: optional ``[N, D]`` region features (e.g. RoIAlign of a backbone map).
        scores: optional ``[N]`` detection scores.
        label: optional video-level class (becomes ``data.y``).
        frame_size: ``(H, W)`` of the frames, keyword only and required.
    """
    boxes: Tensor
    frame: Tensor
    features: Optional[Tensor] = None
    scores: Optional[Tensor] = None
    label: Optional[int] = None
    frame_size: Tuple[int, int] = field(default=None, kw_only=True)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.boxes = _as_tensor("boxes", self.boxes, torch.float32)
        _check_shape("boxes", self.boxes, (None, 4), "[N, 4]")
        if self.boxes.size(0) == 0:
            raise ValueError("'boxes' is empty: a video needs at least one region")
        self._check_box_video("frame")

    @property
    def num_nodes(self) -> int:
        return self.boxes.size(0)


@dataclass(eq=False)
class Proposals(_Container):
    r"""Temporal action proposals of an untrimmed video (P-GCN): one node per segment.

    Args:
        segments: ``[N, 2]`` ``(start, end)`` with ``0 <= start < end``.
        features: optional ``[N, D]`` features of each proposal (P-GCN's GCN_1 input).
        extended_features: optional ``[N, D']`` features of each proposal extended by half its length on both
            sides (P-GCN's GCN_2 input).
        scores: optional ``[N]`` proposal scores (actionness).
        labels: optional ``[N]`` class of each proposal (becomes ``data.y``; 0 = background by convention).
        duration: optional length of the video, in the unit of ``segments``.
    """
    segments: Tensor
    features: Optional[Tensor] = None
    extended_features: Optional[Tensor] = None
    scores: Optional[Tensor] = None
    labels: Optional[Tensor] = None
    duration: Optional[float] = None

    def __post_init__(self) -> None:
        self.segments = _as_tensor("segments", self.segments, torch.float32)
        _check_shape("segments", self.segments, (None, 2), "[N, 2]")
        if self.segments.size(0) == 0:
            raise ValueError("'segments' is empty: a video needs at least one proposal")
        _check_finite("segments", self.segments)
        if bool((self.segments[:, 0] < 0).any()):
            raise ValueError("'segments' contains a negative start time")
        if bool((self.segments[:, 0] >= self.segments[:, 1]).any()):
            bad = int((self.segments[:, 0] >= self.segments[:, 1]).nonzero()[0, 0])
            raise ValueError(f"'segments' must have start < end, but row {bad} is "
                             f"{self.segments[bad].tolist()}")
        self._optional_nodes(self.num_nodes, "features", 2, torch.float32)
        self._optional_nodes(self.num_nodes, "extended_features", 2, torch.float32)
        self._optional_nodes(self.num_nodes, "scores", 1, torch.float32)
        if self.labels is not None:
            self.labels = _as_tensor("labels", self.labels, torch.long)
            _check_shape("labels", self.labels, (self.num_nodes,), f"[N] with N = {self.num_nodes}")
        if self.duration is not None:
            duration = float(self.duration)
            if not duration > 0 or duration == float("inf"):
                raise ValueError(f"'duration' must be a positive finite number, got {self.duration!r}")
            self.duration = duration

    @property
    def num_nodes(self) -> int:
        return self.segments.size(0)
