r"""Datasets: seeded synthetic videos, and readers of real annotation formats."""
from .formats import (ProposalListEntry, SomethingElseVideo, TemporalAnnotation, read_activitynet_json,
                      read_proposal_list, read_something_else, read_thumos14_annotations)
from .store import GraphStore
from .synthetic import ACTORS_PER_CLASS, CLASSES, PALETTE, SHAPES, SyntheticInteractions, SyntheticVideo
from .synthetic_confusable import SyntheticConfusable, confusable_classes
from .synthetic_global import HFLIP_LABEL, PAN_CLASSES, SyntheticCameraPan
from .synthetic_untrimmed import SyntheticUntrimmed, UntrimmedVideo
from .video_dataset import (VideoDataset, VideoEntry, read_charades_csv, read_kinetics_csv, read_label_map,
                            read_ssv2_split)

__all__ = [
    "CLASSES", "ACTORS_PER_CLASS", "SHAPES", "PALETTE", "SyntheticVideo", "SyntheticInteractions",
    "UntrimmedVideo", "SyntheticUntrimmed", "SyntheticConfusable", "confusable_classes", "GraphStore",
    "SyntheticCameraPan", "PAN_CLASSES", "HFLIP_LABEL",
    "TemporalAnnotation", "ProposalListEntry", "SomethingElseVideo", "read_activitynet_json",
    "read_thumos14_annotations", "read_proposal_list", "read_something_else",
    "VideoDataset", "VideoEntry", "read_label_map", "read_kinetics_csv", "read_charades_csv", "read_ssv2_split",
]
