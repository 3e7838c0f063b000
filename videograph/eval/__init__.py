r"""Temporal action localization evaluation: temporal NMS and soft-NMS, ActivityNet's detection mAP and
proposal AR@AN (``python -m videograph eval GT.json PRED.json``)."""
from .detection import DetectionResult, detection_map
from .nms import TemporalNMS, soft_nms, temporal_nms
from .proposal import ProposalResult, average_recall

__all__ = ["temporal_nms", "soft_nms", "TemporalNMS", "detection_map", "DetectionResult", "average_recall",
           "ProposalResult"]
