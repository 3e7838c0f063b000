r"""Training P-GCN on sampled neighbourhoods and localising actions with it (P-GCN sec. 3.5, 4.2).

* :func:`proposal_batch`: every video's proposal graph (``build_graph``) with its training targets, as one
  :class:`~torch_geometric.data.Batch`.
* :func:`fit_pgcn`: per epoch and video, fg : incomplete : bg = 1 : 6 : 1 proposals drawn
  (:func:`~videograph.models.pgcn_targets.sample_proposals`) as the seeds of a GraphSAGE neighbour sample
  (``N_s = 4`` per layer, from at most 8 contextual and 2 surrounding candidates), both from a generator keyed
  on ``(seed, epoch, video id)`` (:mod:`~videograph.models.pgcn_sample`); ``videos_per_batch`` videos of a
  seeded shuffle form one mini-batch.
* :func:`detect`: full neighbourhoods (no sampling), score = softmax(activity)[1:] × exp(completeness), top-k
  (proposal, class) pairs per video, per-class NMS, regression applied to the kept detections.
* :func:`to_activitynet`: detections as an ActivityNet results dict (``{"results": {video: [...]}}``).
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch_geometric.data import Batch
from tqdm import tqdm

from ..data import Proposals
from ..graph import build_graph
from .pgcn import PGCNLocalizer
from .pgcn_loss import pgcn_loss
from .pgcn_sample import KeyedSampleCollate, split_videos
from .pgcn_targets import RegressionStats, decode_regression, proposal_targets

__all__ = ["PGCNTrainConfig", "proposal_batch", "fit_pgcn", "detect", "Detections", "to_activitynet"]


@dataclass
class PGCNTrainConfig:
    r"""Settings of :func:`fit_pgcn`.

    Args:
        epochs: passes over the training videos. (default: :obj:`30`)
        videos_per_batch: videos per mini-batch. (default: :obj:`16`)
        lr: Adam learning rate. (default: :obj:`1e-3`)
        weight_decay: Adam weight decay. (default: :obj:`1e-4`)
        lr_step: divide the learning rate by 10 every ``lr_step`` epochs (:obj:`None`: constant).
        num_neighbors: neighbours drawn per node and layer (:math:`N_s`). (default: :obj:`(4, 4)`)
        quotas: candidates per edge kind before the draw (the reference code's 8 contextual, 2 surrounding).
        ratio: fg, incomplete and bg proposals drawn per video. (default: :obj:`(1, 6, 1)`)
        seed: keys the proposal and neighbour draws of every (epoch, video) and seeds the video order (that of
            :class:`~torch.utils.data.DistributedSampler` with one replica). (default: :obj:`0`)
        progress: show a tqdm bar. (default: :obj:`False`)
    """
    epochs: int = 30
    videos_per_batch: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    lr_step: Optional[int] = None
    num_neighbors: Tuple[int, ...] = (4, 4)
    quotas: Dict[str, int] = field(default_factory=lambda: {"contextual": 8, "surrounding": 2})
    ratio: Tuple[int, int, int] = (1, 6, 1)
    seed: int = 0
    progress: bool = False

    def __post_init__(self):
        for name in ("epochs", "videos_per_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"'{name}' must be a positive int, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"'lr' must be positive, got {self.lr!r}")


def proposal_batch(videos: Sequence[Proposals], ground_truth: Optional[Sequence[Tuple[Tensor, Tensor]]] = None,
                   *, edges: Sequence[str] = ("contextual", "surrounding"), stats: Optional[RegressionStats] = None,
                   **options) -> Batch:
    r"""The proposal graphs of ``videos`` (``build_graph(video, edges=edges, **options)``) as one
    :class:`~torch_geometric.data.Batch`; ``edges=()`` gives graphs without edges (the MLP baseline). Every video
    needs a ``duration``.

    With ``ground_truth`` (per video ``(segments [G, 2], labels [G])``, classes ``1 … K``) the nodes get
    ``category``, ``label`` and ``reg_target`` (:func:`~videograph.models.pgcn_targets.proposal_targets`,
    regression normalised by ``stats``, fitted on these videos when :obj:`None`; the batch keeps it as
    ``batch.stats``), for :func:`fit_pgcn`. Every graph gets ``video_id`` (``long [1]``: its position in
    ``videos``), the stable id that keys its training draws.
    """
    if len(videos) == 0:
        raise ValueError("'videos' is empty")
    if ground_truth is not None and len(ground_truth) != len(videos):
        raise ValueError(f"'ground_truth' must have one entry per video ({len(videos)}), got {len(ground_truth)}")
    graphs = []
    for i, video in enumerate(videos):
        if video.duration is None:
            raise ValueError(f"'videos[{i}]' has no duration (needed for coverage and clipping)")
        if edges:
            data = build_graph(video, edges=tuple(edges), **options)
        else:
            rest = {k: v for k, v in options.items() if k != "theta_ctx"}
            data = build_graph(video, edges=("contextual",), theta_ctx=1.0, **rest)
            data.edge_index = data.edge_index[:, :0]
            data.edge_type, data.edge_weight = data.edge_type[:0], data.edge_weight[:0]
        for kind in ("contextual", "surrounding"):
            for key in (f"{kind}_edge_index", f"{kind}_edge_weight"):
                if key in data:
                    del data[key]
        data.duration = torch.tensor([video.duration])
        data.video_id = torch.tensor([i])
        graphs.append(data)
    batch = Batch.from_data_list(graphs)
    if ground_truth is not None:
        gt_segments = torch.cat([torch.as_tensor(s, dtype=torch.float32).view(-1, 2) for s, _ in ground_truth])
        gt_labels = torch.cat([torch.as_tensor(l, dtype=torch.long).view(-1) for _, l in ground_truth])
        gt_batch = torch.cat([torch.full((len(l),), i, dtype=torch.long) for i, (_, l) in enumerate(ground_truth)])
        targets = proposal_targets(batch.segments, batch.batch, gt_segments, gt_labels, gt_batch, batch.duration)
        stats = RegressionStats.fit(targets) if stats is None else stats
        # Set per graph and batched again, so that the batch splits back into graphs with their targets.
        sizes = batch.ptr.diff().tolist()
        parts = zip(targets.category.split(sizes), targets.label.split(sizes),
                    stats.normalise(targets.regression).split(sizes))
        for data, (category, label, reg_target) in zip(graphs, parts):
            data.category, data.label, data.reg_target = category, label, reg_target
        batch = Batch.from_data_list(graphs)
        batch.stats = stats
    return batch


def fit_pgcn(model: PGCNLocalizer, data: Batch, config: Optional[PGCNTrainConfig] = None) -> List[float]:
    r"""Trains ``model`` on ``data`` (:func:`proposal_batch` with ground truth): every epoch the videos in a
    seeded shuffle, ``videos_per_batch`` a mini-batch, each video's seeds and neighbourhoods drawn by
    :class:`~videograph.models.pgcn_sample.KeyedSampleCollate`; returns the mean loss of every epoch."""
    from torch.utils.data import DataLoader, DistributedSampler

    config = PGCNTrainConfig() if config is None else config
    for key in ("category", "label", "reg_target"):
        if key not in data:
            raise ValueError(f"'data' has no '{key}': build it with proposal_batch(videos, ground_truth)")
    videos = split_videos(data)
    if "video_id" not in data:
        for i, video in enumerate(videos):
            video.video_id = torch.tensor([i])
    collate = KeyedSampleCollate(config.seed, config.num_neighbors, config.quotas, config.ratio)
    order = DistributedSampler(videos, num_replicas=1, rank=0, shuffle=True, seed=config.seed)
    loader = DataLoader(videos, batch_size=config.videos_per_batch, sampler=order, collate_fn=collate)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, config.lr_step, 0.1) if config.lr_step else None
    history = []
    model.train()
    bar = tqdm(range(config.epochs), desc="P-GCN", disable=not config.progress, leave=False)
    for epoch in bar:
        order.set_epoch(epoch)
        collate.set_epoch(epoch)
        total, steps = 0.0, 0
        for batch in loader:
            size = int(batch.batch_size)
            outputs = model(batch)
            loss, _ = pgcn_loss(outputs, batch.kind[:size], batch.label[:size], batch.reg_target[:size],
                                batch.batch[:size])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, steps = total + float(loss.detach()), steps + 1
        if scheduler is not None:
            scheduler.step()
        history.append(total / max(steps, 1))
        bar.set_postfix(loss=f"{history[-1]:.3f}")
    model.eval()
    return history


@dataclass
class Detections:
    """Detections of :func:`detect`, concatenated over videos: ``segments [M, 2]``, ``scores [M]``, ``labels [M]``
    (classes ``1 … K``) and ``video [M]`` (index in the batch), sorted by video then decreasing score."""
    segments: Tensor
    scores: Tensor
    labels: Tensor
    video: Tensor


@torch.no_grad()
def detect(model: PGCNLocalizer, data: Batch, stats: RegressionStats, *, top_k: int = 200,
           nms_threshold: float = 0.5, regress: bool = True) -> Detections:
    r"""Localises actions in every video of ``data`` (:func:`proposal_batch`), deterministically: full
    neighbourhoods, no dropout; score = softmax(activity)[1:] × exp(completeness) per (proposal, class); the
    ``top_k`` best pairs of each video; per-class NMS at ``nms_threshold``
    (:func:`videograph.eval.temporal_nms`); the kept detections moved by their class's regression
    (``stats`` undoes the normalisation) and clipped to the video."""
    from ..eval import temporal_nms

    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"'top_k' must be a positive int, got {top_k!r}")
    was_training = model.training
    model.eval()
    activity, completeness, regression = model(data)
    model.train(was_training)
    score = activity.softmax(-1)[:, 1:] * completeness.exp()                      # [N, K]
    num_nodes, num_classes = score.shape
    batch = data.batch if "batch" in data else torch.zeros(num_nodes, dtype=torch.long)
    flat = score.reshape(-1)
    node = torch.arange(num_nodes).repeat_interleave(num_classes)
    video = batch[node]
    # Top-k per video: sort by score, then stably by video; rank within each video.
    order = torch.argsort(flat, descending=True, stable=True)
    order = order[torch.argsort(video[order], stable=True)]
    count = torch.bincount(video, minlength=int(data.num_graphs) if "batch" in data else 1)
    rank = torch.arange(order.numel()) - (count.cumsum(0) - count)[video[order]]
    order = order[rank < top_k]
    node, cls = order // num_classes, order % num_classes
    segments = data.segments[node]
    keep = temporal_nms(segments, flat[order], nms_threshold, classes=cls, batch=video[order])
    node, cls, kept_scores = node[keep], cls[keep], flat[order][keep]
    segments = segments[keep]
    if regress:
        offsets = stats.denormalise(regression[node, cls])
        segments = decode_regression(segments, offsets)
    duration = data.duration.view(-1)[batch[node]]
    segments = torch.stack([segments[:, 0].clamp(min=0), torch.minimum(segments[:, 1], duration)], 1)
    # Back to video order, then decreasing score.
    order = torch.argsort(kept_scores, descending=True, stable=True)
    order = order[torch.argsort(batch[node][order], stable=True)]
    return Detections(segments[order], kept_scores[order], cls[order] + 1, batch[node][order])


def to_activitynet(detections: Detections, video_ids: Sequence[str], class_names: Sequence[str], *,
                   version: str = "VERSION 1.3") -> Dict:
    """ActivityNet results JSON (as a dict): ``{"version", "results": {video: [{"label", "score", "segment"}]},
    "external_data"}``; ``class_names[k - 1]`` names class ``k``. Every video of ``video_ids`` is listed."""
    if len(set(video_ids)) != len(video_ids):
        raise ValueError("'video_ids' has repeated names")
    results: Dict[str, List[Dict]] = {name: [] for name in video_ids}
    for segment, score, label, video in zip(detections.segments.tolist(), detections.scores.tolist(),
                                            detections.labels.tolist(), detections.video.tolist()):
        results[video_ids[video]].append({"label": class_names[label - 1], "score": score, "segment": segment})
    return {"version": version, "results": results, "external_data": {}}
