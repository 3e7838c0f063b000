r"""``build_graph`` on a video file: sampled clips are decoded, detected, linked into tubelets (or kept as per-frame
regions), pooled into node features, and turned into the same graph as from
:class:`~videograph.data.Tubelets` / :class:`~videograph.data.Regions`."""
import os
import time
from contextlib import contextmanager
from typing import Any, Dict, Optional, Union

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from ..data import Regions, Tubelets
from ..io import FrameFolder, VideoReader, clip_indices
from ..nn.encoders import RoIFeatures, SmallCNN
from .detector import check_detections
from .linking import IoULinker, Linker, top_regions
from .truth import ground_truth, truth_regions, truth_tubes

__all__ = ["VideoGraph", "video_graph", "default_features"]

KINDS = ("tubelets", "regions")
MODES = ("uniform", "segment", "random")


class VideoGraph(Data):
    r"""The graph of a video file: a :class:`~torch_geometric.data.Data` whose ``frame_index`` (``[num_clips,
    clip_len]`` frame numbers of the video) is stacked, not offset, when graphs are batched (a
    :class:`~torch_geometric.data.Batch` of ``B`` videos holds ``[B * num_clips, clip_len]``)."""

    def __inc__(self, key: str, value: Any, *args, **kwargs) -> Any:
        if key == "frame_index":
            return 0
        return super().__inc__(key, value, *args, **kwargs)

    def __cat_dim__(self, key: str, value: Any, *args, **kwargs) -> Any:
        if key == "frame_index":
            return 0
        return super().__cat_dim__(key, value, *args, **kwargs)


_DEFAULT: Dict[str, RoIFeatures] = {}


def default_features() -> RoIFeatures:
    """The default node features: :class:`~videograph.nn.encoders.RoIFeatures` on a :class:`SmallCNN` initialised
    from seed ``0`` (the same weights in every process), in eval mode."""
    if "features" not in _DEFAULT:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            _DEFAULT["features"] = RoIFeatures(SmallCNN()).eval()
    return _DEFAULT["features"]


def _features(backbone: Optional[nn.Module], frame: Tensor) -> RoIFeatures:
    if backbone is None:
        return default_features()
    if isinstance(backbone, RoIFeatures):
        return backbone
    if not isinstance(backbone, nn.Module):
        raise TypeError(f"'backbone' must be an nn.Module giving a feature map (or RoIFeatures), got "
                        f"{type(backbone).__name__}")
    channels = getattr(backbone, "out_channels", None)
    if not isinstance(channels, int):
        with torch.no_grad():
            probe = RoIFeatures(backbone, out_channels=1).feature_map(frame[None])
        if probe.dim() != 4:
            raise ValueError(f"'backbone' must map [F, 3, H, W] frames to a [F, C, h, w] map, got "
                             f"{tuple(probe.shape)}")
        channels = int(probe.size(1))
    return RoIFeatures(backbone, out_channels=channels)


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"'{name}' must be a positive int, got {value!r}")
    return value


@contextmanager
def _timed(timings: Optional[Dict[str, float]], key: str):
    start = time.perf_counter()
    yield
    if timings is not None:
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - start


@torch.no_grad()
def video_graph(video: Union[str, os.PathLike, VideoReader, FrameFolder], *, kind: str = "tubelets",
                detector=None, boxes=None, linker: Optional[Linker] = None, num_clips: int = 4, clip_len: int = 16,
                top_m: Optional[int] = None, frame_interval: int = 1, mode: str = "uniform",
                backbone: Optional[nn.Module] = None, generator: Optional[torch.Generator] = None,
                progress: bool = True, label: Optional[int] = None,
                timings: Optional[Dict[str, float]] = None) -> VideoGraph:
    r"""The tubelet or region graph of a video file (what :func:`videograph.build_graph` does on a path).

    ``num_clips`` clips of ``clip_len`` frames ``frame_interval`` apart are picked by
    :func:`~videograph.io.clip_indices` (``mode``, ``generator``); only those frames are decoded
    (:meth:`~videograph.io.VideoReader.get_frames_at`). The boxes of the sampled frames come from one of:

    * ``detector`` (the detector contract: ``uint8 [N, H, W, 3]`` → ``N`` dicts of ``boxes`` / ``scores`` /
      ``labels``). For ``kind="tubelets"`` each clip's detections are linked by ``linker`` (default
      :class:`~videograph.video.IoULinker`) into at most ``top_m`` (default ``8``) tubelets; for
      ``kind="regions"`` the ``top_m`` best detections of every sampled frame are the nodes.
    * ``boxes``, ground truth: a box source of :mod:`videograph.video.truth` (a
      :class:`~videograph.datasets.SomethingElseVideo`), checked by :func:`~videograph.video.truth.ground_truth`
      (boxes clamped into the frame; annotated frame ``n`` is the video's frame ``n - 1``, or ``n -
      start_index`` of a :class:`~videograph.io.FrameFolder`). Clips are sampled among the annotated frames
      (``clip_indices`` over their count; frames without annotation are never sampled). Every track of a clip
      is a tubelet (:func:`~videograph.video.truth.truth_tubes`, no linker), or every box of a sampled frame a
      region; ``top_m`` and ``linker`` are not taken. ``data.track`` holds each node's track (``identity``).

    Front / back edges of regions link consecutive frames of a clip, never two clips. Node features ``x`` are
    :class:`~videograph.nn.encoders.RoIFeatures` on ``backbone`` (any module mapping ``[F, 3, H, W]`` to a feature
    map, or an :class:`RoIFeatures`; default: :func:`default_features`), one clip at a time.

    Returns the graph of :func:`~videograph.graph.tubelet_graph` / :func:`~videograph.graph.region_graph` with
    ``data.boxes`` in pixels (``[N, clip_len, 4]`` / ``[N, 4]``, node order), ``data.score``, ``data.matched``
    (tubelets: ``[N, clip_len]``, which boxes are detections or annotations), ``data.frame`` (regions: position
    of each box's frame in ``frame_index.flatten()``) and ``data.frame_index`` ``[num_clips, clip_len]``.

    Args:
        video: a path (a video file, or a folder of frame images read by :class:`~videograph.io.FrameFolder`),
            or an open :class:`~videograph.io.VideoReader` / :class:`~videograph.io.FrameFolder` (left open).
        kind: ``"tubelets"`` or ``"regions"``.
        detector: the detector (this or ``boxes`` is required).
        boxes: the ground-truth box source of this video, in place of a detector.
        linker: a :class:`~videograph.video.Linker` (detected tubelets only). Default :class:`IoULinker` ``()``.
        num_clips, clip_len, frame_interval, mode, generator: the clip sampler's arguments.
        top_m: detected tubelets per clip, or regions per frame. Default ``8``.
        backbone: the feature network.
        progress: show a tqdm bar over the clips.
        label: optional class of the video (``data.y``).
        timings: a dict that receives the seconds spent in ``decode``, ``detect`` (reading ``boxes``),
            ``link`` and ``features``.
    """
    from tqdm import tqdm

    from ..graph import build_graph

    if kind not in KINDS:
        raise ValueError(f"'kind' must be one of {KINDS}, got {kind!r}")
    if mode not in MODES:
        raise ValueError(f"'mode' must be one of {MODES}, got {mode!r}")
    if boxes is not None:
        if detector is not None:
            raise ValueError("pass 'detector' or 'boxes' (ground truth), not both")
        for name, value in (("linker", linker), ("top_m", top_m)):
            if value is not None:
                raise ValueError(f"'{name}' is for detections: ground-truth 'boxes' keep every track and box")
    elif detector is None or not callable(detector):
        raise TypeError("'detector' is required: a callable mapping uint8 frames [N, H, W, 3] to a list of N "
                        "dicts {'boxes', 'scores', 'labels'} (e.g. a videograph.video.TorchvisionDetector), "
                        "unless ground-truth 'boxes' are given")
    if top_m is None:
        top_m = 8
    for name, value in (("num_clips", num_clips), ("clip_len", clip_len), ("top_m", top_m),
                        ("frame_interval", frame_interval)):
        _positive(name, value)
    if linker is None:
        linker = IoULinker()
    elif kind == "regions":
        raise ValueError("'linker' is for kind='tubelets'; regions are not linked")
    elif not callable(linker):
        raise TypeError(f"'linker' must be a videograph.video.Linker, got {type(linker).__name__}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"'generator' must be a torch.Generator, got {type(generator).__name__}")

    own = not isinstance(video, (VideoReader, FrameFolder))
    if own and not isinstance(video, (str, os.PathLike)):
        raise TypeError(f"'video' must be a path, a VideoReader or a FrameFolder, got {type(video).__name__}")
    reader = (FrameFolder(video) if os.path.isdir(video) else VideoReader(video)) if own else video
    try:
        height, width = reader.metadata.height, reader.metadata.width
        truth = None
        if boxes is not None:
            start = reader.start_index if isinstance(reader, FrameFolder) else 1
            truth = ground_truth(boxes, len(reader), (height, width), start_index=start, what=repr(reader.path))
            rows = clip_indices(truth.positions.numel(), num_clips, clip_len, frame_interval=frame_interval,
                                mode=mode, generator=generator)
            frame_index = truth.positions[rows]
        else:
            frame_index = clip_indices(len(reader), num_clips, clip_len, frame_interval=frame_interval, mode=mode,
                                       generator=generator)
        encoder = None
        boxes_, group, scores, features, matched, tracks = [], [], [], [], [], []
        for c in tqdm(range(num_clips), desc="clips", disable=not progress, leave=False):
            with _timed(timings, "decode"):
                frames = reader.get_frames_at(frame_index[c])
            if truth is not None:
                with _timed(timings, "detect"):
                    if kind == "tubelets":
                        tubes, track = truth_tubes(truth, rows[c])
                    else:
                        clip_boxes, where, track = truth_regions(truth, rows[c])
                        clip_scores = torch.ones(clip_boxes.size(0))
                    tracks.append(track)
            else:
                with _timed(timings, "detect"):
                    detections = check_detections(detector(frames), clip_len, "detector output")
                with _timed(timings, "link"):
                    if kind == "tubelets":
                        tubes = linker(frames, detections, top_m)
                    else:
                        clip_boxes, where, clip_scores = top_regions(detections, top_m)
            if kind == "tubelets":
                clip_boxes, where = tubes.boxes, torch.arange(clip_len).expand(tubes.boxes.size(0), -1)
                scores.append(tubes.scores)
                matched.append(tubes.matched)
                group.append(torch.full((clip_boxes.size(0),), c, dtype=torch.long))
            else:
                scores.append(clip_scores)
                group.append(where + c * clip_len)
            with _timed(timings, "features"):
                if encoder is None:
                    encoder = _features(backbone, frames[0])
                if clip_boxes.size(0):
                    features.append(encoder(frames, clip_boxes, where))
                else:
                    features.append(torch.zeros(0, encoder.out_channels))
            boxes_.append(clip_boxes)
    finally:
        if own:
            reader.close()

    boxes_t, group_t, scores_t, x = torch.cat(boxes_), torch.cat(group), torch.cat(scores), torch.cat(features)
    if boxes_t.size(0) == 0:
        source = "the ground truth has no box" if truth is not None else "the detector found nothing"
        where = "in the first frame of any clip" if kind == "tubelets" and truth is None else \
            "in any sampled frame"
        raise ValueError(f"{source} {where} of {getattr(reader, 'path', video)!r}: no nodes")
    with _timed(timings, "link"):
        if kind == "tubelets":
            data = build_graph(Tubelets(boxes_t, group_t, x, scores_t, label=label, frame_size=(height, width)))
            data.matched = torch.cat(matched)[data.perm]
            if truth is not None:
                data.track = torch.cat(tracks)[data.perm]
        else:
            # Build with a one-frame gap between clips, so front / back edges never join two clips.
            spaced = group_t + group_t // clip_len
            data = build_graph(Regions(boxes_t, spaced, x, scores_t, label=label, frame_size=(height, width)))
            data.frame = group_t
            if truth is not None:
                data.track = torch.cat(tracks)
    graph = VideoGraph(**{key: value for key, value in data.items()})
    graph.num_nodes = data.num_nodes
    graph.frame_index = frame_index
    return graph
