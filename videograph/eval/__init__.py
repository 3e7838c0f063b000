r"""Temporal action localization evaluation: temporal NMS and soft-NMS, ActivityNet's detection mAP and
proposal AR@AN."""
from .detection import DetectionResult, detection_map
from .nms import TemporalNMS, soft_nms, temporal_nms

__all__ = ["temporal_nms", "soft_nms", "TemporalNMS", "detection_map", "DetectionResult"]
