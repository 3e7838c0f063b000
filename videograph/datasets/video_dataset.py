r"""Graphs of real videos (files or frame folders), built lazily: :class:`VideoDataset` over ``(path, label)``
entries, and readers of the list formats of Kinetics-400 (CSV), Charades (CSV) and Something-Something v2 (label
map + Something-Else split JSON; :func:`~videograph.datasets.read_something_else` reads its per-frame boxes, from
which :class:`VideoDataset` builds graphs in place of a detector)."""
import csv
import json
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["VideoEntry", "read_label_map", "read_kinetics_csv", "read_charades_csv", "read_ssv2_split",
           "VideoDataset"]


@dataclass
class VideoEntry:
    """One video of a list: its file, its label(s) and the list's own fields.

    Attributes:
        path: the video file (``root`` joined with the list's name for it).
        label: the class index, or for multi-label lists (Charades) the sorted class indices.
        video_id: the list's id of the video.
        info: the list's other fields (e.g. Charades' action segments, Kinetics' start and end).
    """
    path: str
    label: Union[int, List[int], None]
    video_id: str
    info: Dict[str, Any] = field(default_factory=dict)


def read_label_map(path: str) -> List[str]:
    """A class list, one name a line (MMAction2's ``label_map*.txt``); blank lines are skipped."""
    with open(path) as handle:
        return [line.strip() for line in handle if line.strip()]


def read_kinetics_csv(path: str, root: str = "", *, classes: Optional[Sequence[str]] = None, ext: str = ".mp4"
                      ) -> Tuple[List[VideoEntry], List[str]]:
    """Kinetics' CSV (``label,youtube_id,time_start,time_end,split[,is_cc]``; the test list has no label).

    Files are ``<root>/<youtube_id>_<start:06d>_<end:06d><ext>`` (the crawler's naming). Labels index
    ``classes`` (default: the sorted names in the file). Returns the entries and the classes.
    """
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and not {"youtube_id", "time_start", "time_end"} <= set(rows[0]):
        raise ValueError(f"'{path}' is not a Kinetics CSV (needs youtube_id, time_start, time_end columns)")
    labelled = bool(rows) and "label" in rows[0]
    if classes is None:
        classes = sorted({row["label"] for row in rows}) if labelled else []
    index = {name: i for i, name in enumerate(classes)}
    entries = []
    for row in rows:
        start, end = int(float(row["time_start"])), int(float(row["time_end"]))
        name = f"{row['youtube_id']}_{start:06d}_{end:06d}{ext}"
        label = None
        if labelled:
            if row["label"] not in index:
                raise ValueError(f"'{path}': label {row['label']!r} is not in 'classes'")
            label = index[row["label"]]
        entries.append(VideoEntry(os.path.join(root, name), label, row["youtube_id"],
                                  {"time_start": start, "time_end": end, "split": row.get("split")}))
    return entries, list(classes)


def read_charades_csv(path: str, root: str = "", *, ext: str = ".mp4", num_classes: int = 157
                      ) -> List[VideoEntry]:
    """Charades' CSV (``id,...,actions,length``; ``actions`` = ``c092 11.90 21.20;c147 0.00 12.60``).

    Each entry's ``label`` is the sorted list of its classes (``cNNN`` → ``NNN``); ``info["actions"]`` holds the
    ``(class, start, end)`` instances in seconds and ``info["length"]`` the duration. Files are
    ``<root>/<id><ext>``.
    """
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and not {"id", "actions"} <= set(rows[0]):
        raise ValueError(f"'{path}' is not a Charades CSV (needs id and actions columns)")
    entries = []
    for row in rows:
        actions = []
        for item in filter(None, (row["actions"] or "").split(";")):
            parts = item.split()
            if len(parts) != 3 or not parts[0].startswith("c"):
                raise ValueError(f"'{path}': video {row['id']}: malformed action {item!r}")
            cls = int(parts[0][1:])
            if not 0 <= cls < num_classes:
                raise ValueError(f"'{path}': video {row['id']}: class {parts[0]} outside c000-c{num_classes - 1:03d}")
            actions.append((cls, float(parts[1]), float(parts[2])))
        length = float(row["length"]) if row.get("length") else None
        entries.append(VideoEntry(os.path.join(root, row["id"] + ext), sorted({a[0] for a in actions}), row["id"],
                                  {"actions": actions, "length": length, "scene": row.get("scene")}))
    return entries


def read_ssv2_split(path: str, label_map: str, root: str = "", *, ext: str = ".webm") -> List[VideoEntry]:
    """A Something-Something v2 / Something-Else split (JSON list of ``{"id", "template", "placeholders",
    ...}``) labelled by the official label map (``template`` without brackets). Files are ``<root>/<id><ext>``
    (``ext=""`` for folders of frames, such as Something-Else's ``annotated_videos/<id>/``); ``info`` holds the
    template and placeholders (the boxes of Something-Else's ``annotations.json`` are read by
    :func:`~videograph.datasets.read_something_else` with the same ids: pass them to :class:`VideoDataset` as
    ``boxes``)."""
    classes = read_label_map(label_map)
    index = {name: i for i, name in enumerate(classes)}
    with open(path) as handle:
        items = json.load(handle)
    if not isinstance(items, list):
        raise ValueError(f"'{path}' is not a Something-Something split (expected a JSON list)")
    entries = []
    for item in items:
        template = item["template"].replace("[", "").replace("]", "")
        if template not in index:
            raise ValueError(f"'{path}': video {item['id']}: template {item['template']!r} is not in {label_map!r}")
        entries.append(VideoEntry(os.path.join(root, str(item["id"]) + ext), index[template], str(item["id"]),
                                  {"template": item["template"], "placeholders": item.get("placeholders", [])}))
    return entries


class VideoDataset(Dataset):
    r"""Graphs of videos, built when an item is read (:func:`videograph.build_graph` on its path: a video file or
    a folder of frame images, see :class:`~videograph.io.FrameFolder`).

    The boxes come from a ``detector``, or from ground truth: ``boxes`` maps each entry's ``video_id`` to its box
    source (:func:`~videograph.datasets.read_something_else`'s dict of
    :class:`~videograph.datasets.SomethingElseVideo`), whose tracks are the tubelets and whose boxes are the
    regions of the sampled frames (see :func:`~videograph.video.video_graph`).

    .. code-block:: python

        root = "ssv2/something_else"
        entries = read_ssv2_split(f"{root}/dataset_splits/fewshot/base_validation_set.json",
                                  "ssv2/mmaction2/sthv2_label_map.txt", f"{root}/annotated_videos", ext="")
        dataset = VideoDataset(entries, boxes=read_something_else(f"{root}/annotations.json"),
                               missing_boxes="skip", kind="tubelets", num_clips=2, clip_len=8)

    Item ``i`` samples its clips with a :class:`torch.Generator` seeded from ``(seed, epoch, i)`` alone, so it is
    the same in any process and any order (safe in :class:`~torch.utils.data.DataLoader` workers: every item
    opens and closes its own reader); :meth:`set_epoch` draws new clips for training.

    Args:
        entries: :class:`VideoEntry` items, or ``(path, label)`` pairs (whose ``video_id`` is the path).
        detector: the detector (see :func:`~videograph.video.video_graph`).
        boxes: in place of ``detector``, a mapping from ``video_id`` to the video's ground-truth box source.
        missing_boxes: what an entry whose ``video_id`` is not in ``boxes`` does: ``"raise"`` (a
            :class:`ValueError` naming the ids, when the dataset is built) or ``"skip"`` (the entry is left out
            with a :class:`UserWarning` saying how many; their ids are in :attr:`skipped`). Default ``"raise"``.
        kind: ``"tubelets"`` or ``"regions"``. Default ``"tubelets"``.
        num_classes: for multi-label entries, the size of the multi-hot ``y`` (``[1, num_classes]``).
        seed: root seed of the clip sampler. Default ``0``.
        **options: passed to :func:`~videograph.build_graph` (``num_clips``, ``clip_len``, ``frame_interval``,
            ``mode`` (default ``"segment"``), ``backbone``, and with a detector ``top_m`` and ``linker``).
    """

    def __init__(self, entries: Sequence[Union[VideoEntry, Tuple[str, Any]]], *, detector=None,
                 boxes: Optional[Mapping[str, Any]] = None, missing_boxes: str = "raise", kind: str = "tubelets",
                 num_classes: Optional[int] = None, seed: int = 0, **options):
        if boxes is None:
            if not callable(detector):
                raise TypeError("'detector' must be a callable (the detector contract of videograph.video), "
                                "or pass ground-truth 'boxes'")
        else:
            if detector is not None:
                raise ValueError("pass 'detector' or 'boxes' (ground truth), not both")
            if not isinstance(boxes, Mapping):
                raise TypeError(f"'boxes' must map video ids to box sources (read_something_else's dict), got "
                                f"{type(boxes).__name__}")
            for name in ("linker", "top_m"):
                if name in options:
                    raise ValueError(f"'{name}' is for detections: ground-truth 'boxes' keep every track and box")
        if missing_boxes not in ("raise", "skip"):
            raise ValueError(f"'missing_boxes' must be 'raise' or 'skip', got {missing_boxes!r}")
        for bad in ("generator", "progress", "label", "detector", "boxes"):
            if bad in options:
                raise TypeError(f"VideoDataset sets '{bad}' itself")
        self.entries = [e if isinstance(e, VideoEntry) else VideoEntry(os.fspath(e[0]), e[1], os.fspath(e[0]))
                        for e in entries]
        if not self.entries:
            raise ValueError("'entries' is empty")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"'seed' must be a non-negative int, got {seed!r}")
        #: ids of the entries left out for want of boxes (``missing_boxes="skip"``).
        self.skipped: List[str] = []
        self.boxes: Optional[Dict[str, Any]] = None
        if boxes is not None:
            self.skipped = [e.video_id for e in self.entries if e.video_id not in boxes]
            if self.skipped and missing_boxes == "raise":
                raise ValueError(f"'boxes' has no boxes for {len(self.skipped)} of the {len(self.entries)} videos "
                                 f"(ids {self.skipped[:5]}{' ...' if len(self.skipped) > 5 else ''}); pass "
                                 f"missing_boxes='skip' to leave them out")
            if self.skipped:
                warnings.warn(f"VideoDataset: {len(self.skipped)} of the {len(self.entries)} videos have no "
                              f"'boxes' and are left out (see .skipped)", UserWarning, stacklevel=2)
                self.entries = [e for e in self.entries if e.video_id in boxes]
                if not self.entries:
                    raise ValueError("no entry of 'entries' has 'boxes'")
            self.boxes = {e.video_id: boxes[e.video_id] for e in self.entries}  # only these travel to workers
        self.detector, self.kind, self.num_classes, self.seed = detector, kind, num_classes, seed
        self.options = dict(options)
        self.options.setdefault("mode", "segment")
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Items read after this draw the clips of ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.entries)

    def _label(self, label) -> Optional[torch.Tensor]:
        if label is None:
            return None
        if isinstance(label, (list, tuple)):
            if self.num_classes is None:
                raise ValueError("multi-label entries need 'num_classes'")
            y = torch.zeros(1, self.num_classes)
            y[0, list(label)] = 1.0
            return y
        return torch.tensor([int(label)])

    def __getitem__(self, index: int):
        from ..graph import build_graph

        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"'index' must be an integer, got {type(index).__name__}")
        if not -len(self) <= index < len(self):
            raise IndexError(f"'index' {index} is out of range for {len(self)} videos")
        index = int(index) % len(self)
        entry = self.entries[index]
        state = np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(2, dtype=np.uint32)
        generator = torch.Generator().manual_seed((int(state[0]) << 32) | int(state[1]))
        source = {"detector": self.detector} if self.boxes is None else {"boxes": self.boxes[entry.video_id]}
        data = build_graph(entry.path, kind=self.kind, generator=generator, progress=False, **source,
                           **self.options)
        y = self._label(entry.label)
        if y is not None:
            data.y = y
        return data

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)}, kind={self.kind!r}, seed={self.seed})"
