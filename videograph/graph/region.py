r"""The space-time region graph's front and back graphs (Wang & Gupta, ECCV 2018, sec. 4.2)."""
from typing import Tuple

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.utils import scatter
from torchvision.ops import box_iou

from ..data import Regions
from .tubelet import box_coordinates

__all__ = ["region_graph"]


def _consecutive_frame_overlaps(boxes: Tensor, frame: Tensor, threshold: float) -> Tuple[Tensor, Tensor, Tensor]:
    """Pairs (i in frame t, j in frame t + 1) with IoU > threshold, and their IoU."""
    frames, counts = torch.unique_consecutive(frame, return_counts=True)
    ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)]).tolist()
    frames = frames.tolist()
    rows, cols, values = [], [], []
    # One IoU block per pair of consecutive frames: a loop over frames, never over boxes.
    for f in range(len(frames) - 1):
        if frames[f + 1] != frames[f] + 1:
            continue
        iou = box_iou(boxes[ptr[f]:ptr[f + 1]], boxes[ptr[f + 1]:ptr[f + 2]]).nan_to_num_(0.0)
        i, j = (iou > threshold).nonzero(as_tuple=True)
        rows.append(i + ptr[f])
        cols.append(j + ptr[f + 1])
        values.append(iou[i, j])
    if not rows:
        empty = frame.new_zeros(0)
        return empty, empty, boxes.new_zeros(0)
    return torch.cat(rows), torch.cat(cols), torch.cat(values)


def _row_normalised(src: Tensor, dst: Tensor, weight: Tensor, num_nodes: int) -> Tuple[Tensor, Tensor]:
    """Edges src -> dst whose weights sum to one over each target's incoming edges (a row of G)."""
    total = scatter(weight, dst, dim=0, dim_size=num_nodes, reduce="sum")
    order = torch.argsort(dst * num_nodes + src)
    return torch.stack([src[order], dst[order]]), (weight / total[dst])[order]


def region_graph(video: Regions, *, edges: Tuple[str, ...] = ("front", "back"), iou_threshold: float = 0.0
                 ) -> Data:
    r"""Builds the front and back graphs of a video's region boxes.

    With :math:`\sigma_{ij}` the IoU of box :math:`i` in frame :math:`t` and box :math:`j` in frame
    :math:`t + 1`, the paper's front graph is :math:`G^{front}_{ij} \propto \sigma_{ij}` with rows summing to
    one, applied as :math:`Z = G^{front} X W`: box :math:`i` gathers from the boxes of the next frame that it
    overlaps. Following PyG's flow (``edge_index[0]`` is the source :math:`j`, ``edge_index[1]`` the target
    :math:`i`), ``front_edge_index`` holds the edges :math:`j \rightarrow i` and ``front_edge_weight`` sums to
    one over the incoming edges of each target, so ``propagate`` with these weights computes
    :math:`G^{front} X` exactly. ``back_edge_index`` holds the reversed relation (a box of frame :math:`t + 1`
    gathers from the overlapping boxes of frame :math:`t`), normalised over its own targets. Frames that are
    not consecutive integers are not linked. Node keys: ``x`` (features, when given), ``boxes``, ``frame``,
    ``pos`` (normalised box centre), ``coord`` (normalised ``(cx, cy, h, w)``), ``score`` (when given).

    Args:
        video: the regions.
        edges: which of ``"front"`` and ``"back"`` to build.
        iou_threshold: boxes are linked when their IoU exceeds it. Default ``0.0``.
    """
    num_nodes = video.num_nodes
    coord = box_coordinates(video.boxes, video.frame_size)
    data = Data(num_nodes=num_nodes, boxes=video.boxes, frame=video.frame, coord=coord, pos=coord[:, :2])
    if video.features is not None:
        data.x = video.features
    if video.scores is not None:
        data.score = video.scores
    if video.label is not None:
        data.y = torch.tensor([int(video.label)])

    if not {"front", "back"}.isdisjoint(edges):
        earlier, later, iou = _consecutive_frame_overlaps(video.boxes, video.frame, iou_threshold)
        if "front" in edges:
            data.front_edge_index, data.front_edge_weight = _row_normalised(later, earlier, iou, num_nodes)
        if "back" in edges:
            data.back_edge_index, data.back_edge_weight = _row_normalised(earlier, later, iou, num_nodes)
    return data
