r"""Reading and checking ActivityNet-format JSON: ground truth ``{"database": {video: {"subset", "annotations":
[{"segment": [start, end], "label"}]}}}`` and predictions ``{"results": {video: [{"segment", "label", "score"}]}}``
(proposals are predictions without ``label``)."""
import json
import math
import os
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Union

import numpy as np

__all__ = ["GroundTruth", "Predictions", "load_ground_truth", "load_predictions"]

JsonInput = Union[str, os.PathLike, Dict[str, Any]]


class GroundTruth(NamedTuple):
    """Ground-truth instances of one subset, in file order (video order, then annotation order)."""
    videos: List[str]          #: the subset's videos (those without annotations included)
    classes: List[str]         #: the subset's labels, sorted
    video: np.ndarray          #: ``[G]`` index into ``videos``
    label: np.ndarray          #: ``[G]`` index into ``classes`` (``-1`` when labels are not read)
    segment: np.ndarray        #: ``[G, 2]`` float64


class Predictions(NamedTuple):
    """Predictions in file order (video order, then list order)."""
    videos: List[str]          #: the videos of ``results``, in file order
    video: np.ndarray          #: ``[P]`` index into ``videos``
    label: np.ndarray          #: ``[P]`` index into the ground truth's classes (``-1`` when labels are not read)
    segment: np.ndarray        #: ``[P, 2]`` float64
    score: np.ndarray          #: ``[P]`` float64


def _load(source: JsonInput, key: str, what: str) -> Dict[str, Any]:
    if isinstance(source, (str, os.PathLike)):
        if not os.path.isfile(source):
            raise FileNotFoundError(f"{what} file {os.fspath(source)!r} does not exist")
        with open(source) as f:
            source = json.load(f)
    if not isinstance(source, dict):
        raise TypeError(f"{what} must be a JSON path or a dict, got {type(source).__name__}")
    if key not in source or not isinstance(source[key], dict):
        raise ValueError(f"{what} must have a {key!r} mapping of video id to entries (ActivityNet format)")
    return source[key]


class _Entries:
    """The entries of all videos as one flat list, and the (video, position) of each for error messages."""

    def __init__(self, what: str, videos: List[str], lists: List[list]) -> None:
        self.what, self.videos = what, videos
        self.items = [item for items in lists for item in items]
        self.counts = np.array([len(items) for items in lists], dtype=np.int64)
        self.first = np.cumsum(self.counts) - self.counts

    def where(self, k: int) -> str:
        v = int(np.searchsorted(self.first, k, "right")) - 1
        while self.counts[v] == 0:                   # empty videos share their first index with the next one
            v += 1
        return f"{self.what} of video {self.videos[v]!r}, entry {k - int(self.first[v])}"

    def field(self, name: str) -> list:
        try:
            return [item[name] for item in self.items]
        except (KeyError, TypeError):
            for k, item in enumerate(self.items):
                if not isinstance(item, dict) or name not in item:
                    raise ValueError(f"{self.where(k)}: missing field {name!r}") from None
            raise


def _segments(entries: _Entries, zero_length: str) -> np.ndarray:
    """``[len(entries), 2]`` float64 segments; a ValueError names the first video whose segment is bad."""
    raw = entries.field("segment")
    try:
        out = np.array(raw, dtype=np.float64).reshape(len(raw), 2)
    except (TypeError, ValueError):
        out = np.empty((len(raw), 2), dtype=np.float64)
        for k, segment in enumerate(raw):
            try:
                start, end = segment
                out[k] = float(start), float(end)
            except (TypeError, ValueError):
                raise ValueError(f"{entries.where(k)}: field 'segment' must be [start, end] numbers, "
                                 f"got {segment!r}") from None
    bad = ~np.isfinite(out).all(1) | (out[:, 0] > out[:, 1])
    if zero_length == "raise":
        bad |= out[:, 0] == out[:, 1]
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        rule = "start < end (or zero_length='keep')" if zero_length == "raise" else "start <= end"
        raise ValueError(f"{entries.where(k)}: field 'segment' must be finite with {rule}, got {raw[k]!r}")
    return out


def _scores(entries: _Entries) -> np.ndarray:
    raw = entries.field("score")
    if {type(value) for value in raw} <= {int, float}:
        score = np.array(raw, dtype=np.float64)
        if np.isfinite(score).all():
            return score
    for k, value in enumerate(raw):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{entries.where(k)}: field 'score' must be a finite number, "
                             f"got {'nothing' if value is None else repr(value)}")
    raise AssertionError("unreachable")


def check_zero_length(zero_length: str) -> None:
    if zero_length not in ("raise", "keep"):
        raise ValueError(f"'zero_length' must be 'raise' or 'keep', got {zero_length!r}")


def _labels(entries: _Entries) -> List[str]:
    labels = [item.get("label") for item in entries.items]
    if {type(label) for label in labels} <= {str}:
        return labels
    k = next(k for k, label in enumerate(labels) if not isinstance(label, str))
    raise ValueError(f"{entries.where(k)}: field 'label' must be a string, "
                     f"got {'nothing' if labels[k] is None else repr(labels[k])}")


def load_ground_truth(source: JsonInput, subset: Optional[str] = None, *, labels: bool = True,
                      zero_length: str = "raise") -> GroundTruth:
    """Reads ``source["database"]``, keeping the videos whose ``"subset"`` is ``subset`` (all when ``None``).
    A segment with ``start == end`` raises unless ``zero_length="keep"``; ``start > end`` always raises."""
    check_zero_length(zero_length)
    database = _load(source, "database", "ground truth")
    videos, lists = [], []
    for video, info in database.items():
        if not isinstance(info, dict):
            raise ValueError(f"ground truth video {video!r}: entry must be a mapping")
        if subset is not None:
            if "subset" not in info:
                raise ValueError(f"ground truth video {video!r}: missing field 'subset'")
            if info["subset"] != subset:
                continue
        annotations = info.get("annotations")
        if not isinstance(annotations, list):
            raise ValueError(f"ground truth video {video!r}: missing field 'annotations' (a list)")
        videos.append(video)
        lists.append(annotations)
    if not videos:
        raise ValueError(f"ground truth has no video in subset {subset!r}")
    entries = _Entries("ground truth", videos, lists)
    video = np.repeat(np.arange(len(videos), dtype=np.int64), entries.counts)
    segment = _segments(entries, zero_length)
    if labels:
        names = _labels(entries)
        classes = sorted(set(names))
        lookup = {c: i for i, c in enumerate(classes)}
        label = np.fromiter((lookup[n] for n in names), dtype=np.int64, count=len(names))
    else:
        classes, label = [], np.full(len(entries.items), -1, dtype=np.int64)
    return GroundTruth(videos, classes, video, label, segment)


def load_predictions(source: JsonInput, classes: Optional[Sequence[str]] = None, *,
                     zero_length: str = "raise") -> Predictions:
    """Reads ``source["results"]``; labels are looked up in ``classes`` (not read when ``None``)."""
    check_zero_length(zero_length)
    results = _load(source, "results", "predictions")
    for video, items in results.items():
        if not isinstance(items, list):
            raise ValueError(f"predictions of video {video!r}: must be a list of entries")
    videos = list(results)
    entries = _Entries("prediction", videos, list(results.values()))
    video = np.repeat(np.arange(len(videos), dtype=np.int64), entries.counts)
    segment = _segments(entries, zero_length)
    score = _scores(entries)
    if classes is None:
        label = np.full(len(entries.items), -1, dtype=np.int64)
    else:
        lookup = {c: i for i, c in enumerate(classes)}
        names = _labels(entries)
        label = np.fromiter((lookup.get(n, -1) for n in names), dtype=np.int64, count=len(names))
        if (label < 0).any():
            k = int(np.flatnonzero(label < 0)[0])
            raise ValueError(f"{entries.where(k)}: field 'label' {names[k]!r} is not a class of the ground truth's "
                             f"subset")
    return Predictions(videos, video, label, segment, score)
