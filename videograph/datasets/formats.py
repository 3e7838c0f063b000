r"""Readers of real annotation formats, turned into videograph's containers.

* ActivityNet-style ground-truth JSON (ActivityNet v1.3, and THUMOS14 converted to it, e.g. ``thumos_gt.json``):
  :func:`read_activitynet_json`.
* THUMOS14's per-class temporal annotation files (``<Class>_<split>.txt``, lines ``video start end``):
  :func:`read_thumos14_annotations`.
* SSN / P-GCN proposal lists (``# idx``, video, frames, scale, ground truth, proposals):
  :func:`read_proposal_list`.
* Something-Else per-frame hand and object boxes (``annotations.json``): :func:`read_something_else`.

Nothing here downloads anything; every reader parses JSON or text (never pickles).
"""
import json
import os
from dataclasses import dataclass
from itertools import groupby
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from ..data import Proposals, Regions, Tubelets

__all__ = [
    "TemporalAnnotation",
    "ProposalListEntry",
    "SomethingElseVideo",
    "read_activitynet_json",
    "read_thumos14_annotations",
    "read_proposal_list",
    "read_something_else",
]


@dataclass
class TemporalAnnotation:
    """Ground-truth action instances of one untrimmed video.

    Attributes:
        segments: ``[G, 2]`` ``(start, end)`` in seconds.
        labels: the ``G`` class names.
        duration: the video's length in seconds, when the file gives it.
        subset: the split the file assigns the video to, when it gives one.
    """
    segments: Tensor
    labels: List[str]
    duration: Optional[float] = None
    subset: Optional[str] = None

    def proposals(self, classes: Sequence[str]) -> Proposals:
        """The ground truth as :class:`Proposals`, ``labels`` = 1 + index in ``classes`` (0 is background)."""
        index = {name: i + 1 for i, name in enumerate(classes)}
        missing = sorted(set(self.labels) - set(index))
        if missing:
            raise ValueError(f"'classes' lacks {missing}")
        return Proposals(self.segments, labels=torch.tensor([index[n] for n in self.labels], dtype=torch.long),
                         duration=self.duration)


def read_activitynet_json(path: str, *, subset: Optional[str] = None) -> Dict[str, TemporalAnnotation]:
    """Reads an ActivityNet-format ground-truth file (``{"database": {video: {"annotations": [...]}}}``).

    Segments given as strings (as in THUMOS14's ``thumos_gt.json``) are parsed as numbers. Videos without
    annotations are kept, with an empty ``[0, 2]`` segment tensor.

    Args:
        path: the JSON file.
        subset: keep only videos of this subset (e.g. ``"validation"``, ``"test"``).
    """
    with open(path) as handle:
        database = json.load(handle)
    if "database" not in database:
        raise ValueError(f"'{path}' is not an ActivityNet-format file: it has no 'database' key")
    result = {}
    for video, entry in database["database"].items():
        if subset is not None and entry.get("subset") != subset:
            continue
        annotations = entry.get("annotations", [])
        segments = torch.tensor([[float(a["segment"][0]), float(a["segment"][1])] for a in annotations],
                                dtype=torch.float64).reshape(-1, 2)
        duration = entry.get("duration")
        result[video] = TemporalAnnotation(segments, [a["label"] for a in annotations],
                                           None if duration is None else float(duration), entry.get("subset"))
    return result


def read_thumos14_annotations(directory: str, *, split: str = "test", include_ambiguous: bool = False
                              ) -> Dict[str, TemporalAnnotation]:
    """Reads THUMOS14's temporal annotation folder (one ``<Class>_<split>.txt`` per class).

    THUMOS14's ``Ambiguous`` file marks stretches that are neither action nor background; evaluation ignores
    them, so they are read only with ``include_ambiguous=True`` (then with label ``"Ambiguous"``).
    """
    suffix = f"_{split}.txt"
    names = sorted(name for name in os.listdir(directory) if name.endswith(suffix))
    if not names:
        raise ValueError(f"'directory' {directory!r} has no '*{suffix}' files")
    rows: Dict[str, List[Tuple[float, float, str]]] = {}
    for name in names:
        label = name[:-len(suffix)]
        if label == "Ambiguous" and not include_ambiguous:
            continue
        with open(os.path.join(directory, name)) as handle:
            for line in handle:
                parts = line.split()
                if parts:
                    rows.setdefault(parts[0], []).append((float(parts[1]), float(parts[2]), label))
    result = {}
    for video in sorted(rows):
        instances = sorted(rows[video])
        segments = torch.tensor([[s, e] for s, e, _ in instances], dtype=torch.float64)
        result[video] = TemporalAnnotation(segments, [label for _, _, label in instances], subset=split)
    return result


@dataclass
class ProposalListEntry:
    """One video of an SSN / P-GCN proposal list.

    Attributes:
        video: the video's path or id as written.
        num_frames: ``frames * scale`` from the header (1 for normalised lists, whose times are fractions).
        gt_labels: ``[G]`` classes of the ground truth (1-based; 0 is background).
        gt_segments: ``[G, 2]`` ground-truth ``(start, end)``.
        labels: ``[P]`` class of each proposal's best-matching ground truth.
        best_iou: ``[P]`` tIoU with that ground truth.
        overlap_self: ``[P]`` intersection over the proposal's own length.
        segments: ``[P, 2]`` proposal ``(start, end)``.
    """
    video: str
    num_frames: float
    gt_labels: Tensor
    gt_segments: Tensor
    labels: Tensor
    best_iou: Tensor
    overlap_self: Tensor
    segments: Tensor

    def proposals(self) -> Proposals:
        """The proposals as :class:`Proposals` (validated: a zero-length proposal raises)."""
        return Proposals(self.segments, labels=self.labels, duration=self.num_frames)


def _numbers(rows: List[str], columns: int) -> Tensor:
    """The first ``columns`` numbers of each whitespace-separated row, ``float64 [len(rows), columns]`` (NumPy's C
    reader; a row with fewer numbers, or a field that is not a number, raises a ``ValueError``)."""
    if not rows:
        return torch.zeros(0, columns, dtype=torch.float64)
    table = np.loadtxt(rows, dtype=np.float64, comments=None, usecols=range(columns), ndmin=2)
    return torch.from_numpy(table)


def parse_proposal_block(lines: List[str], path: str) -> ProposalListEntry:
    """One video's block of a proposal list (see :func:`proposal_list_blocks`)."""
    try:
        num_gt = int(lines[3])
        gt_table = _numbers(lines[4:4 + num_gt], 3)
        num_proposals = int(lines[4 + num_gt])
        rows = lines[5 + num_gt:5 + num_gt + num_proposals]
        if len(rows) != num_proposals:
            raise ValueError(f"{num_proposals} proposals announced, {len(rows)} found")
        table = _numbers(rows, 5)
        return ProposalListEntry(lines[0], float(lines[1]) * float(lines[2]), gt_table[:, 0].long(),
                                 gt_table[:, 1:], table[:, 0].long(), table[:, 1], table[:, 2], table[:, 3:])
    except (IndexError, ValueError) as error:
        raise ValueError(f"'{path}': malformed block for video {lines[:1]}: {error}") from None


def read_proposal_list(path: str) -> List[ProposalListEntry]:
    """Reads an SSN / P-GCN proposal list (the format of ``ops/io.py:load_proposal_file`` in P-GCN)."""
    return [parse_proposal_block(block, path) for block in proposal_list_blocks(path)]


def proposal_list_blocks(path: str) -> List[List[str]]:
    """The unparsed blocks of an SSN / P-GCN proposal list, one list of non-empty lines per video (cheap: parse
    the ones you need with :func:`parse_proposal_block`)."""
    with open(path) as handle:
        lines = [line.strip() for line in handle]
    blocks = [[line for line in group if line] for is_header, group in groupby(lines, lambda x: x.startswith("#"))
              if not is_header]
    return [block for block in blocks if block]


@dataclass
class SomethingElseVideo:
    """Per-frame boxes of one Something-Else video.

    Attributes:
        frames: ``[F]`` frame numbers (from the image names), ascending.
        boxes: ``[B, 4]`` ``xyxy`` boxes in pixels, grouped by frame.
        frame: ``[B]`` position in ``frames`` of each box's frame.
        identity: ``[B]`` index into ``names`` of each box's object (a hand or an object placeholder).
        names: the object identities (``gt_annotation``: ``"object hand"``, ``"object 0"``, ...).
        categories: each identity's category name.
    """
    frames: Tensor
    boxes: Tensor
    frame: Tensor
    identity: Tensor
    names: List[str]
    categories: List[str]

    def regions(self, frame_size: Tuple[int, int]) -> Regions:
        """Every annotated box as a region node (space-time region graphs)."""
        return Regions(self.boxes, self.frame, frame_size=frame_size)

    def tubelets(self, frame_size: Tuple[int, int], num_clips: int = 4, frames_per_clip: int = 4) -> Tubelets:
        """Each object's track in each of ``num_clips`` clips as a tubelet (MUSLE).

        Clip ``c`` takes ``frames_per_clip`` consecutive annotated frames starting at
        ``round(c * (F - frames_per_clip) / (num_clips - 1))``, so the clips span the video evenly. An object
        missing from a frame of a clip takes its box from the nearest frame of that clip where it is annotated;
        an object absent from a whole clip has no tubelet there.
        """
        num_frames = self.frames.numel()
        if frames_per_clip < 1 or num_clips < 1:
            raise ValueError(f"'num_clips' and 'frames_per_clip' must be positive, got {num_clips}, "
                             f"{frames_per_clip}")
        if frames_per_clip > num_frames:
            raise ValueError(f"'frames_per_clip' = {frames_per_clip} exceeds the {num_frames} annotated frames")
        starts = torch.linspace(0, num_frames - frames_per_clip, num_clips).round().long()
        num_objects = len(self.names)
        # dense[f, o] = index of object o's box in frame f, or -1.
        dense = torch.full((num_frames, num_objects), -1, dtype=torch.long)
        dense[self.frame, self.identity] = torch.arange(self.boxes.size(0))
        position = torch.arange(frames_per_clip)
        tubes, clips = [], []
        for c, start in enumerate(starts.tolist()):
            window = dense[start:start + frames_per_clip]  # [T, O]
            present = window >= 0
            for o in present.any(0).nonzero().flatten().tolist():
                have = present[:, o].nonzero().flatten()
                nearest = have[(position[:, None] - have[None, :]).abs().argmin(1)]
                tubes.append(self.boxes[window[nearest, o]])
                clips.append(c)
        return Tubelets(torch.stack(tubes), torch.tensor(clips), frame_size=frame_size)


def read_something_else(path: str, video_ids: Optional[Sequence[str]] = None) -> Dict[str, SomethingElseVideo]:
    """Reads Something-Else's ``annotations.json`` (per-frame ``box2d`` of hands and objects).

    Args:
        path: the JSON file.
        video_ids: keep only these videos (default: all).
    """
    with open(path) as handle:
        database = json.load(handle)
    wanted = database.keys() if video_ids is None else [str(v) for v in video_ids]
    result = {}
    for video in wanted:
        if video not in database:
            raise ValueError(f"'video_ids' has {video!r}, which '{path}' does not annotate")
        entries = sorted(database[video], key=lambda e: int(e["name"].split("/")[-1].split(".")[0]))
        names: List[str] = []
        categories: List[str] = []
        frames, boxes, frame, identity = [], [], [], []
        for position, entry in enumerate(entries):
            frames.append(int(entry["name"].split("/")[-1].split(".")[0]))
            for label in entry["labels"]:
                name = label["gt_annotation"]
                if name not in names:
                    names.append(name)
                    categories.append(label["category"])
                box = label["box2d"]
                boxes.append([box["x1"], box["y1"], box["x2"], box["y2"]])
                frame.append(position)
                identity.append(names.index(name))
        result[video] = SomethingElseVideo(torch.tensor(frames), torch.tensor(boxes, dtype=torch.float32),
                                           torch.tensor(frame), torch.tensor(identity), names, categories)
    return result
