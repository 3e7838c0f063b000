r"""Drawing videograph graphs with matplotlib: box graphs over a frame, proposal graphs over a timeline."""
from typing import Any, Optional, Sequence

import torch
from torch import Tensor
from torch_geometric.data import Data

from .graph.edge_type import EdgeType

__all__ = ["draw_box_graph", "draw_proposal_graph"]

_EDGE_COLOURS = {EdgeType.DENSE: "tab:orange", EdgeType.FRONT: "tab:green", EdgeType.BACK: "tab:purple",
                 EdgeType.CONTEXTUAL: "tab:red", EdgeType.SURROUNDING: "tab:blue"}


def _axes(ax: Optional[Any]) -> Any:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt
    return plt.subplots(figsize=(5, 5))[1]


def draw_box_graph(data: Data, frame: Optional[Tensor] = None, *, nodes: Optional[Tensor] = None,
                   time: Optional[int] = None, ax: Optional[Any] = None, max_edges: int = 400,
                   title: Optional[str] = None) -> Any:
    r"""Draws the boxes of a tubelet or region graph on a frame, with the edges between the chosen nodes.

    Args:
        data: a graph from :func:`~videograph.build_graph` on :class:`~videograph.Tubelets` or
            :class:`~videograph.Regions` (it needs ``boxes``).
        frame: optional ``[H, W, 3]`` ``uint8`` image to draw on.
        nodes: the nodes to draw (default: all). For tubelets, each node's box at ``time``.
        time: which frame of a tubelet's clip to draw (default: the middle one).
        ax: a matplotlib axes (default: a new figure).
        max_edges: draw at most this many edges (the first ones), to keep dense graphs readable.
        title: optional axes title.

    Returns:
        The matplotlib axes.
    """
    ax = _axes(ax)
    boxes = data.boxes
    if boxes.dim() == 3:
        boxes = boxes[:, boxes.size(1) // 2 if time is None else time]
    chosen = torch.arange(boxes.size(0)) if nodes is None else torch.as_tensor(nodes).flatten()
    if frame is not None:
        ax.imshow(frame.cpu().numpy())
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    keep = torch.zeros(boxes.size(0), dtype=torch.bool)
    keep[chosen] = True
    src, dst = data.edge_index
    edges = (keep[src] & keep[dst]).nonzero().flatten()[:max_edges]
    edge_type = data.get("edge_type")
    for e in edges.tolist():
        j, i = int(src[e]), int(dst[e])
        colour = _EDGE_COLOURS.get(EdgeType(int(edge_type[e])), "k") if edge_type is not None else "k"
        ax.plot([centre[j, 0], centre[i, 0]], [centre[j, 1], centre[i, 1]], "-", color=colour, lw=1, alpha=0.6)
    from matplotlib.patches import Rectangle
    for node in chosen.tolist():
        x1, y1, x2, y2 = boxes[node].tolist()
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color="yellow", lw=1.5))
        ax.annotate(str(node), (x1, y1), color="yellow", fontsize=8, va="bottom")
    ax.set_axis_off()
    if frame is None:
        ax.invert_yaxis()
        ax.set_aspect("equal")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def draw_proposal_graph(data: Data, *, ground_truth: Optional[Tensor] = None, ax: Optional[Any] = None,
                        nodes: Optional[Sequence[int]] = None, title: Optional[str] = None) -> Any:
    r"""Draws a proposal graph on a timeline: one row per proposal (sorted by start), edges as arcs.

    Args:
        data: a graph from :func:`~videograph.build_graph` on :class:`~videograph.Proposals`.
        ground_truth: optional ``[G, 2]`` action segments, shaded.
        ax: a matplotlib axes (default: a new figure).
        nodes: the proposals to draw (default: all); edges between them are drawn.
        title: optional axes title.
    """
    ax = _axes(ax)
    segments = data.segments.double()
    chosen = torch.arange(segments.size(0)) if nodes is None else torch.as_tensor(list(nodes))
    row = torch.full((segments.size(0),), -1, dtype=torch.long)
    row[chosen[torch.argsort(segments[chosen, 0])]] = torch.arange(chosen.numel())
    if ground_truth is not None:
        for start, end in ground_truth.tolist():
            ax.axvspan(start, end, color="0.85", zorder=0)
    for node in chosen.tolist():
        start, end = segments[node].tolist()
        ax.plot([start, end], [row[node], row[node]], "-", color="k", lw=2)
    src, dst = data.edge_index
    for e in ((row[src] >= 0) & (row[dst] >= 0)).nonzero().flatten().tolist():
        j, i = int(src[e]), int(dst[e])
        if j < i:
            continue  # both directions exist: draw each pair once
        colour = _EDGE_COLOURS[EdgeType(int(data.edge_type[e]))]
        cj, ci = segments[j].mean().item(), segments[i].mean().item()
        ax.plot([cj, ci], [row[j], row[i]], "-", color=colour, lw=0.6, alpha=0.5)
    ax.set_xlabel("time")
    ax.set_ylabel("proposal (by start)")
    if title:
        ax.set_title(title, fontsize=9)
    return ax
