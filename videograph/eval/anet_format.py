r"""Reading and checking ActivityNet-format JSON: ground truth ``{"database": {video: {"subset", "annotations":
[{"segment": [start, end], "label"}]}}}`` and predictions ``{"results": {video: [{"segment", "label", "score"}]}}``
(proposals are predictions without ``label``)."""
import json
import math
import os
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

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


def _segments(entries: Sequence[Tuple[str, int, Dict[str, Any]]], what: str, zero_length: str) -> np.ndarray:
    """``[len(entries), 2]`` float64 segments; a ValueError names the first video whose segment is bad."""
    out = np.empty((len(entries), 2), dtype=np.float64)
    for k, (video, i, entry) in enumerate(entries):
        segment = entry.get("segment") if isinstance(entry, dict) else None
        if segment is None:
            raise ValueError(f"{what} of video {video!r}, entry {i}: missing field 'segment'")
        try:
            start, end = segment
            out[k, 0] = start
            out[k, 1] = end
        except (TypeError, ValueError):
            raise ValueError(f"{what} of video {video!r}, entry {i}: field 'segment' must be [start, end] numbers, "
                             f"got {segment!r}") from None
    bad = ~np.isfinite(out).all(1) | (out[:, 0] > out[:, 1])
    if zero_length == "raise":
        bad |= out[:, 0] == out[:, 1]
    if bad.any():
        video, i, entry = entries[int(np.flatnonzero(bad)[0])]
        rule = "start < end (or zero_length='keep')" if zero_length == "raise" else "start <= end"
        raise ValueError(f"{what} of video {video!r}, entry {i}: field 'segment' must be finite with {rule}, "
                         f"got {entry['segment']!r}")
    return out


def check_zero_length(zero_length: str) -> None:
    if zero_length not in ("raise", "keep"):
        raise ValueError(f"'zero_length' must be 'raise' or 'keep', got {zero_length!r}")


def _labels(entries: Sequence[Tuple[str, int, Dict[str, Any]]], what: str) -> List[str]:
    labels = []
    for video, i, entry in entries:
        label = entry.get("label")
        if not isinstance(label, str):
            raise ValueError(f"{what} of video {video!r}, entry {i}: field 'label' must be a string, "
                             f"got {'nothing' if label is None else repr(label)}")
        labels.append(label)
    return labels


def load_ground_truth(source: JsonInput, subset: Optional[str] = None, *, labels: bool = True,
                      zero_length: str = "raise") -> GroundTruth:
    """Reads ``source["database"]``, keeping the videos whose ``"subset"`` is ``subset`` (all when ``None``).
    A segment with ``start == end`` raises unless ``zero_length="keep"``; ``start > end`` always raises."""
    check_zero_length(zero_length)
    database = _load(source, "database", "ground truth")
    videos, entries = [], []
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
        entries.extend((video, i, a) for i, a in enumerate(annotations))
    if not videos:
        raise ValueError(f"ground truth has no video in subset {subset!r}")
    index = {v: i for i, v in enumerate(videos)}
    video = np.fromiter((index[v] for v, _, _ in entries), dtype=np.int64, count=len(entries))
    segment = _segments(entries, "ground truth", zero_length)
    if labels:
        names = _labels(entries, "ground truth")
        classes = sorted(set(names))
        lookup = {c: i for i, c in enumerate(classes)}
        label = np.fromiter((lookup[n] for n in names), dtype=np.int64, count=len(names))
    else:
        classes, label = [], np.full(len(entries), -1, dtype=np.int64)
    return GroundTruth(videos, classes, video, label, segment)


def load_predictions(source: JsonInput, classes: Optional[Sequence[str]] = None, *,
                     zero_length: str = "raise") -> Predictions:
    """Reads ``source["results"]``; labels are looked up in ``classes`` (not read when ``None``)."""
    check_zero_length(zero_length)
    results = _load(source, "results", "predictions")
    videos, entries = [], []
    for video, items in results.items():
        if not isinstance(items, list):
            raise ValueError(f"predictions of video {video!r}: must be a list of entries")
        videos.append(video)
        entries.extend((video, i, p) for i, p in enumerate(items))
    video = np.repeat(np.arange(len(videos), dtype=np.int64), [len(results[v]) for v in videos])
    segment = _segments(entries, "prediction", zero_length)
    score = np.empty(len(entries), dtype=np.float64)
    for k, (name, i, entry) in enumerate(entries):
        value = entry.get("score")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"prediction of video {name!r}, entry {i}: field 'score' must be a finite number, "
                             f"got {'nothing' if value is None else repr(value)}")
        score[k] = value
    if classes is None:
        label = np.full(len(entries), -1, dtype=np.int64)
    else:
        lookup = {c: i for i, c in enumerate(classes)}
        names = _labels(entries, "prediction")
        label = np.fromiter((lookup.get(n, -1) for n in names), dtype=np.int64, count=len(names))
        if (label < 0).any():
            name, i, entry = entries[int(np.flatnonzero(label < 0)[0])]
            raise ValueError(f"prediction of video {name!r}, entry {i}: field 'label' {entry['label']!r} is not a "
                             f"class of the ground truth's subset")
    return Predictions(videos, video, label, segment, score)
