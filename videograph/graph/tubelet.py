r"""MUSLE's tubelet graph (Li et al., CVPR 2021, sec. 3.2)."""
from typing import Tuple

import torch
from torch import Tensor
from torch_geometric.data import Data

from ..data import Tubelets

__all__ = ["tubelet_order", "box_coordinates", "tubelet_graph"]


def tubelet_order(boxes: Tensor, clip: Tensor) -> Tensor:
    r"""MUSLE's node numbering: temporally earlier, then spatially closer to the top-left corner, comes first.

    Tubelets are sorted by clip, then by the Euclidean distance (in pixels) of their mean box centre to the
    frame's top-left corner, ties broken by the centre's ``y`` then ``x``; remaining ties keep the input order.

    Args:
        boxes: ``[N, T, 4]`` ``xyxy`` boxes.
        clip: ``[N]`` clip index.

    Returns:
        ``[N]`` permutation ``perm`` such that new node ``i`` is original tubelet ``perm[i]``.
    """
    centre = ((boxes[..., :2] + boxes[..., 2:]) / 2).mean(dim=1)
    x, y = centre.unbind(-1)
    distance = torch.linalg.vector_norm(centre, dim=-1)
    perm = torch.arange(boxes.size(0), device=boxes.device)
    # Stable sorts from the least to the most significant key form a lexicographic sort.
    for key in (x, y, distance, clip):
        perm = perm[torch.sort(key[perm], stable=True).indices]
    return perm


def box_coordinates(boxes: Tensor, frame_size: Tuple[int, int]) -> Tensor:
    r"""Per-frame ``(cx, cy, h, w)`` of ``xyxy`` boxes, normalised by the frame size.

    Args:
        boxes: ``[..., 4]`` ``xyxy`` boxes in pixels.
        frame_size: ``(H, W)``.

    Returns:
        ``[..., 4]`` ``(cx / W, cy / H, h / H, w / W)``.
    """
    height, width = frame_size
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([(x1 + x2) / (2 * width), (y1 + y2) / (2 * height), (y2 - y1) / height,
                        (x2 - x1) / width], dim=-1)


def tubelet_graph(video: Tubelets, *, edges: Tuple[str, ...] = ("dense",)) -> Data:
    r"""Builds MUSLE's graph of a video's tubelets.

    Nodes are renumbered by :func:`tubelet_order` (``data.perm`` maps new to original index). Node keys:
    ``x`` (visual features, when given), ``coord`` ``[N, 4T]`` (per-frame ``(cx, cy, h, w)`` normalised, frame
    major), ``boxes`` ``[N, T, 4]``, ``clip``, ``score`` (when given). Edges: every ordered pair of distinct
    tubelets in ``dense_edge_index`` with ``dense_edge_attr = coord[src] - coord[dst]``, the relative
    coordinate change of MUSLE's edge feature.
    """
    perm = tubelet_order(video.boxes, video.clip)
    boxes = video.boxes[perm]
    num_nodes = boxes.size(0)
    coord = box_coordinates(boxes, video.frame_size).flatten(1)

    data = Data(num_nodes=num_nodes, perm=perm, boxes=boxes, clip=video.clip[perm], coord=coord)
    if video.features is not None:
        data.x = video.features[perm]
    if video.scores is not None:
        data.score = video.scores[perm]
    if video.label is not None:
        data.y = torch.tensor([int(video.label)])

    if "dense" in edges:
        node = torch.arange(num_nodes, device=boxes.device)
        src = node.repeat_interleave(num_nodes)
        dst = node.repeat(num_nodes)
        keep = src != dst
        data.dense_edge_index = torch.stack([src[keep], dst[keep]])
        data.dense_edge_attr = coord[src[keep]] - coord[dst[keep]]
    return data

