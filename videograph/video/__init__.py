r"""Pixels to graphs: detectors, tubelet linking, ground-truth boxes in place of a detector, and
:func:`video_graph` (``build_graph`` on a video file)."""
from .detector import Detections, Detector, TorchvisionDetector, check_detections, check_frames
from .linking import IoULinker, Linker, Tubes, top_regions
from .truth import GroundTruth, ground_truth, truth_regions, truth_tubes
from .build import VideoGraph, default_features, video_graph

__all__ = ["Detections", "Detector", "TorchvisionDetector", "check_frames", "check_detections", "Linker", "Tubes",
           "IoULinker", "top_regions", "GroundTruth", "ground_truth", "truth_tubes", "truth_regions", "VideoGraph",
           "video_graph", "default_features"]
