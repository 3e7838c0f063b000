r"""``python -m videograph train --model pgcn``: what :mod:`videograph.launch` needs for P-GCN (see
docs/scale.md).

* :func:`synthetic_graphs`: per-video training proposal graphs of :class:`~videograph.datasets.SyntheticUntrimmed`
  videos, built as the P-GCN ablation builds them (``DATA``, ``GRAPH`` of :mod:`videograph.ablations.pgcn`,
  :func:`~videograph.models.pgcn_train.proposal_batch` with ground truth), each with its ``video_id``.
* :func:`check_graphs`: the keys a training graph needs (a store is read as it is).
* :func:`build_model`: the seeded :class:`~videograph.models.PGCNLocalizer` (:data:`MODEL`).
* :func:`collate`: the keyed per-video sampling (:class:`~videograph.models.pgcn_sample.KeyedSampleCollate`).
"""
from typing import List, Sequence

import torch

__all__ = ["MODEL", "REQUIRED", "synthetic_graphs", "check_graphs", "num_classes", "build_model", "collate"]

#: The localiser :command:`train` builds: the paper's width and depth, and no dropout: dropout masks come from
#: each process's own random stream, so with dropout K ranks would match one process only in distribution.
MODEL = dict(hidden_channels=512, num_layers=2, dropout=0.0)

#: Keys every training graph must hold.
REQUIRED = ("x", "x_ext", "edge_index", "edge_type", "category", "label", "reg_target", "video_id")


def synthetic_graphs(num_videos: int, seed: int) -> List:
    """``num_videos`` seeded synthetic training videos (the ablation's settings) as per-video proposal graphs
    with ``category``, ``label``, ``reg_target`` (normalised by the statistics of these videos) and ``video_id``."""
    from .ablations.pgcn import DATA, GRAPH
    from .datasets import SyntheticUntrimmed
    from .models.pgcn_sample import split_videos
    from .models.pgcn_train import proposal_batch

    videos = SyntheticUntrimmed(num_videos, seed=seed, split="train", **DATA)
    batch = proposal_batch([v.proposals(with_ground_truth=True) for v in videos],
                           [v.ground_truth for v in videos], **GRAPH)
    return split_videos(batch)


def check_graphs(graphs: Sequence) -> None:
    """Raises a ``ValueError`` naming the first key a training graph lacks, or a repeated ``video_id``."""
    for i, graph in enumerate(graphs):
        missing = [key for key in REQUIRED if key not in graph]
        if missing:
            raise ValueError(f"P-GCN training graph {i} has no {missing}: it needs {list(REQUIRED)}, as "
                             f"videograph.launch_pgcn.synthetic_graphs builds them (a proposal list's graphs from "
                             f"'preprocess --kind proposals' carry no features nor targets)")
    ids = torch.cat([graph.video_id.view(-1) for graph in graphs])
    if ids.unique().numel() != ids.numel():
        raise ValueError("P-GCN training graphs must have distinct 'video_id's (they key the sampling)")


def num_classes(graphs: Sequence) -> int:
    """The number of action classes ``K`` (labels are ``1 … K``)."""
    return int(max(int(graph.label.max()) for graph in graphs))


def build_model(example, num_classes: int, seed: int) -> torch.nn.Module:
    """A seeded :class:`~videograph.models.PGCNLocalizer` (:data:`MODEL`) for graphs like ``example``."""
    from .models import PGCNLocalizer

    torch.manual_seed(seed)
    return PGCNLocalizer(example.x.size(1), num_classes, **MODEL)


def collate(seed: int):
    """The ``collate_fn`` of the training loader: P-GCN's draws, keyed on ``(seed, epoch, video_id)``."""
    from .models.pgcn_sample import KeyedSampleCollate

    return KeyedSampleCollate(seed)
