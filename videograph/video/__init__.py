r"""Pixels to graphs: detectors, tubelet linking and :func:`video_graph` (``build_graph`` on a video file)."""
from .detector import Detections, Detector, TorchvisionDetector, check_detections, check_frames
from .linking import IoULinker, Linker, Tubes, top_regions
from .build import VideoGraph, default_features, video_graph

__all__ = ["Detections", "Detector", "TorchvisionDetector", "check_frames", "check_detections", "Linker", "Tubes",
           "IoULinker", "top_regions", "VideoGraph", "video_graph", "default_features"]
