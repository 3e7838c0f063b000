r"""P-GCN's edge ablation (its tables 3 and 6) on synthetic untrimmed videos: ``python -m videograph ablation
pgcn``. Rows ``MLP`` (no edges), ``Contextual only``, ``Surrounding only``, ``P-GCN`` (both); writes
``ablation_pgcn.json`` (mAP at tIoU 0.5) and ``ablation_pgcn_avg.json`` (mAP averaged over tIoU 0.1-0.5,
THUMOS14's protocol)."""
import os
import time
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from tqdm import tqdm

from ..datasets import SyntheticUntrimmed
from ..models.pgcn import PGCNLocalizer
from ..models.pgcn_train import PGCNTrainConfig, detect, fit_pgcn, proposal_batch, to_activitynet
from . import summarize

__all__ = ["DESCRIPTION", "DEFAULT_SEEDS", "ROWS", "DATA", "GRAPH", "MODEL", "TRAINING", "TIOU", "ground_truth_json",
           "run_seed", "run"]

DESCRIPTION = "P-GCN tables 3 / 6 on synthetic untrimmed videos (MLP, contextual only, surrounding only, P-GCN)"
DEFAULT_SEEDS = (0, 1, 2)

#: Row -> the edge kinds of its graph.
ROWS: Dict[str, Tuple[str, ...]] = {
    "MLP": (),
    "Contextual only": ("contextual",),
    "Surrounding only": ("surrounding",),
    "P-GCN": ("contextual", "surrounding"),
}

#: Settings of the synthetic videos (see docs/synthetic.md: the class needs the scene around the action, the
#: features of one proposal are a noisy measurement that its overlapping proposals repeat).
DATA = dict(num_classes=6, num_scenes=2, duration=128, feature_dim=32, num_proposals=64, signal=3.0,
            scene_signal=3.0, proposal_noise=0.75, common_signal=4.0)
#: Graph settings: the reference code's candidates (at most 8 contextual and 2 surrounding sources per node, the
#: best ones), so the full neighbourhoods of testing are those the training draws its N_s = 4 from.
GRAPH = dict(theta_ctx=0.7, theta_sur=1.0, max_contextual=8, max_surrounding=2)
#: Model settings (hidden 512 as in the paper; dropout lower than its 0.8 for the small synthetic set).
MODEL = dict(hidden_channels=512, num_layers=2, dropout=0.5, clamp_negative=False)
#: Training settings (see :class:`~videograph.models.pgcn_train.PGCNTrainConfig`).
TRAINING = dict(epochs=15, videos_per_batch=8, lr=2e-3, weight_decay=1e-4)
#: THUMOS14's tIoU thresholds.
TIOU = (0.1, 0.2, 0.3, 0.4, 0.5)


def ground_truth_json(dataset: SyntheticUntrimmed, video_ids: Sequence[str], class_names: Sequence[str],
                      subset: str = "test") -> Dict:
    """The ground truth of ``dataset`` in ActivityNet format (``{"database": {video: {...}}}``)."""
    database = {}
    for name, video in zip(video_ids, dataset):
        database[name] = {"subset": subset, "duration": video.duration, "annotations": [
            {"segment": segment, "label": class_names[label - 1]}
            for segment, label in zip(video.segments.tolist(), video.labels.tolist())]}
    return {"version": "VERSION 1.3", "database": database}


def run_seed(seed: int, rows: Sequence[str] = tuple(ROWS), *, num_train: int = 200, num_test: int = 100,
             data: Optional[dict] = None, graph: Optional[dict] = None, model: Optional[dict] = None, training: Optional[dict] = None,
             threads: Optional[int] = 1, progress: bool = False) -> Dict[str, Dict[str, float]]:
    """Trains and tests every row of ``rows`` on the videos of ``seed``; returns ``{row: {"map50", "avg",
    "seconds"}}``."""
    from ..eval import detection_map

    if threads is not None:
        torch.set_num_threads(threads)
    data = dict(DATA, **(data or {}))
    train_set, test_set = SyntheticUntrimmed.splits(num_train, num_test, seed=seed, **data)
    train_videos = [v.proposals(with_ground_truth=True) for v in train_set]
    test_videos = [v.proposals() for v in test_set]
    ground_truth = [v.ground_truth for v in train_set]
    class_names = [f"class_{k}" for k in range(1, train_set.num_classes + 1)]
    ids = [f"video_{seed}_{i}" for i in range(num_test)]
    gt_json = ground_truth_json(test_set, ids, class_names)
    result = {}
    for name in tqdm(rows, desc=f"seed {seed}", disable=not progress, leave=False):
        tic = time.perf_counter()
        options = dict(GRAPH, **(graph or {}))
        train = proposal_batch(train_videos, ground_truth, edges=ROWS[name], **options)
        test = proposal_batch(test_videos, edges=ROWS[name], **options)
        torch.manual_seed(seed)
        net = PGCNLocalizer(train_set.feature_dim, train_set.num_classes, **dict(MODEL, **(model or {})))
        fit_pgcn(net, train, PGCNTrainConfig(seed=seed, **dict(TRAINING, **(training or {}))))
        detections = detect(net, test, train.stats)
        predictions = to_activitynet(detections, ids, class_names)
        maps = detection_map(gt_json, predictions, tiou_thresholds=TIOU).mAP
        result[name] = {"map50": float(maps[-1]), "avg": float(maps.mean()), "seconds": time.perf_counter() - tic}
    return result


def run(seeds: Sequence[int] = DEFAULT_SEEDS, out: str = "results", *, progress: bool = True,
        jobs: Optional[int] = None, log: bool = True, **options) -> Dict[str, Dict]:
    r"""The edge ablation over ``seeds``: per seed, ``num_train`` / ``num_test`` synthetic untrimmed videos
    (:data:`DATA`), every row of :data:`ROWS` trained with :func:`~videograph.models.pgcn_train.fit_pgcn` and
    tested with :func:`~videograph.models.pgcn_train.detect` and :func:`videograph.eval.detection_map`. Seeds run
    in ``jobs`` processes (default: one per CPU core, at most one per seed). ``options`` go to :func:`run_seed`.
    Returns ``{"": mAP@0.5, "avg": mAP over tIoU 0.1-0.5}``."""
    os.makedirs(out, exist_ok=True)
    seeds = list(seeds)
    if not seeds:
        raise ValueError("'seeds' is empty")
    jobs = min(jobs or os.cpu_count() or 1, len(seeds))
    if jobs == 1:
        results = [run_seed(seed, progress=progress, **options) for seed in seeds]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(run_seed, seed, **options) for seed in seeds]
            results = [f.result() for f in futures]
    rows: List[str] = list(results[0])
    if log:
        for seed, result in zip(seeds, results):
            print(f"seed {seed}: " + ", ".join(f"{row} {100 * r['map50']:.1f} ({r['seconds']:.0f} s)"
                                               for row, r in result.items()))
    return {"": {row: summarize([r[row]["map50"] for r in results]) for row in rows},
            "avg": {row: summarize([r[row]["avg"] for r in results]) for row in rows}}
