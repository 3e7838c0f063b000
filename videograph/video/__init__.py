r"""Pixels to graphs: detectors, tubelet linking and :func:`video_graph` (``build_graph`` on a video file)."""
from .detector import Detections, Detector, TorchvisionDetector, check_detections, check_frames
from .linking import IoULinker, Linker, Tubes, top_regions

__all__ = ["Detections", "Detector", "TorchvisionDetector", "check_frames", "check_detections", "Linker", "Tubes",
           "IoULinker", "top_regions"]
