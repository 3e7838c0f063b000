from .build import EDGE_KINDS, build_graph
from .edge_type import EdgeType
from .proposal import proposal_graph
from .region import region_graph
from .segments import segment_distance, segment_iou
from .tubelet import box_coordinates, tubelet_graph, tubelet_order

__all__ = [
    "build_graph",
    "EdgeType",
    "EDGE_KINDS",
    "tubelet_graph",
    "region_graph",
    "proposal_graph",
    "tubelet_order",
    "box_coordinates",
    "segment_iou",
    "segment_distance",
]
