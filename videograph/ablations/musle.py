r"""MUSLE's recognition ablation (its table 1) on synthetic interaction videos: ``python -m videograph ablation
musle``. Rows Base, GCN, STRG, the single-scale sub-graph rows, +Node coord, +Edge coord and Multi-scale; writes
``ablation_musle.json`` (all test videos), ``ablation_musle_closer_apart.json`` (the ``move_closer`` /
``move_apart`` videos only), ``ablation_musle_auxiliary_head.json``, ``training_curves.png`` and
``best_subgraphs.png``."""
import os
import time
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from tqdm import tqdm

from ..data import Regions
from ..datasets import SyntheticInteractions
from ..graph import build_graph
from . import summarize

__all__ = ["DESCRIPTION", "DEFAULT_SEEDS", "MUSLE_TRAINING", "ROWS", "prepare_videos", "ablation_rows", "run"]

DESCRIPTION = "MUSLE table 1 on synthetic interaction videos (Base, GCN, STRG, sub-graph rows, Multi-scale)"
DEFAULT_SEEDS = (0, 1, 2)

#: How the demo trains MUSLE (see docs/models.md): encoders shaped by an auxiliary max-over-sub-graphs classifier,
#: each class's mixtures fitted on the top sub-graph of each of its training videos (ranked by that classifier),
#: scores = log-likelihood ratio against a background mixture of all sub-graphs, per-scale maxima combined by a
#: calibrated map fitted on the training set; the last two epochs fine-tune the encoders with the cross-entropy
#: of those scores (mixtures refitted and the map recalibrated every epoch).
MUSLE_TRAINING = dict(aux_weight=1.0, fit_top=1, background=True, generative_features=False, ce_weight=1.0,
                      ce_start=10, train_subgraphs=128, scale_reduce="learned")

#: Rows of the ablation table (MUSLE table 1) in print order.
ROWS = ("Base", "GCN", "STRG", "Sub-graph k=3", "Sub-graph k=4", "Sub-graph k=5", "+Node coord", "+Edge coord",
        "Multi-scale")



@torch.no_grad()
def prepare_videos(dataset: SyntheticInteractions, encoder, num_clips: int = 4, region_stride: int = 2,
                   progress: bool = False) -> Tuple[list, list]:
    r"""Tubelet graphs (MUSLE, Base, GCN) and region graphs (STRG) of every video, with visual features from
    ``encoder`` (a :class:`~videograph.nn.encoders.RoIFeatures`): ``x`` = RoI features max-pooled over space (and
    a tubelet's frames), ``global_x`` = the backbone map's global average. Region graphs keep every
    ``region_stride``-th frame (renumbered consecutively, so front/back edges link the kept frames)."""
    from ..nn.encoders import tubelet_frame_index

    tubelets, regions = [], []
    for video in tqdm(dataset, desc="features", disable=not progress, leave=False):
        feature_map = encoder.feature_map(video.frames)
        size = video.frame_size
        global_x = feature_map.mean(dim=(0, 2, 3))[None]
        tube = build_graph(video.tubelets(num_clips=num_clips))
        tube.x = encoder.pool(feature_map, tube.boxes, tubelet_frame_index(tube.clip, tube.boxes.size(1)), size)
        tube.global_x = global_x
        full = video.regions(features=False)
        keep = full.frame % region_stride == 0
        kept = Regions(full.boxes[keep], full.frame[keep] // region_stride, None, full.scores[keep],
                       label=video.label, frame_size=size)
        region = build_graph(kept)
        region.x = encoder.pool(feature_map, kept.boxes, full.frame[keep], size)
        region.global_x = global_x
        del region.boxes, region.pos
        tubelets.append(tube)
        regions.append(region)
    return tubelets, regions


def ablation_rows(num_classes: int, visual: int, coord: int) -> Dict[str, Tuple[str, dict]]:
    """Row name -> (input kind, model factory keyword arguments) of the ablation."""
    musle = dict(num_classes=num_classes, visual_channels=visual, coord_channels=coord, **MUSLE_TRAINING)
    visual_only = dict(node_coord=False, edge_coord=False)
    return {
        "Base": ("base", {}),
        "GCN": ("gcn", {}),
        "STRG": ("strg", {}),
        "Sub-graph k=3": ("musle", dict(musle, scales=(3,), **visual_only)),
        "Sub-graph k=4": ("musle", dict(musle, scales=(4,), **visual_only)),
        "Sub-graph k=5": ("musle", dict(musle, scales=(5,), **visual_only)),
        "+Node coord": ("musle", dict(musle, scales=(4,), node_coord=True, edge_coord=False)),
        "+Edge coord": ("musle", dict(musle, scales=(4,), node_coord=True, edge_coord=True)),
        "Multi-scale": ("musle", dict(musle, scales=(3, 4, 5), node_coord=True, edge_coord=True)),
    }


def _build(kind: str, options: dict, num_classes: int, visual: int):
    from ..models import GCN, MUSLE, STRG, Base
    if kind == "base":
        return Base(visual, num_classes)
    if kind == "gcn":
        return GCN(visual, num_classes, edge_key="dense_edge_index")
    if kind == "strg":
        return STRG(visual, num_classes, global_channels=visual)
    return MUSLE(**options)


def _accuracies(pred: torch.Tensor, labels: torch.Tensor) -> Tuple[float, float]:
    closer_apart = labels <= 1          # move_closer, move_apart
    return float((pred == labels).float().mean()), float((pred[closer_apart] == labels[closer_apart]).float().mean())


@torch.no_grad()
def _aux_predict(model, dataset: list, batch_size: int = 32) -> torch.Tensor:
    from torch_geometric.loader import DataLoader
    model.eval()
    return torch.cat([model.aux_scores(batch).argmax(-1) for batch in DataLoader(dataset, batch_size=batch_size)])


def _draw_curves(curves: Dict[str, dict], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, history in curves.items():
        epochs = range(1, len(history["loss"]) + 1)
        loss = torch.tensor(history["loss"])
        axes[0].plot(epochs, (loss - loss.min()) / (loss.max() - loss.min()).clamp_min(1e-12), label=name)
        axes[1].plot(epochs, history["train_accuracy"], label=name)
    axes[0].set(title="training loss (min-max scaled per model)", xlabel="epoch")
    axes[1].set(title="training accuracy (MUSLE: on the sampled sub-graphs)", xlabel="epoch", ylim=(0, 1))
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@torch.no_grad()
def _draw_best_subgraphs(model, graphs: list, dataset: SyntheticInteractions, path: str, count: int = 3) -> None:
    """MUSLE fig. 3: the highest-scoring sub-graph of the predicted class on the middle frame of each clip."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torch_geometric.data import Batch

    from ..viz import draw_box_graph

    # one video of each of the first `count` classes, closer / apart first
    chosen = []
    for label in range(count):
        index = next((i for i, g in enumerate(graphs) if int(g.y) == label), None)
        if index is not None:
            chosen.append(index)
    model.eval()
    num_clips = int(graphs[0].clip.max()) + 1
    fig, axes = plt.subplots(len(chosen), num_clips, figsize=(3 * num_clips, 3.2 * len(chosen)), squeeze=False)
    for row, index in enumerate(chosen):
        data = graphs[index]
        scores, best = model(Batch.from_data_list([data]), return_best=True)
        pred = int(scores.argmax())
        nodes = best.nodes[0, pred]
        nodes = nodes[nodes >= 0]
        video = dataset[index]
        per_clip = data.boxes.size(1)
        for clip in range(num_clips):
            ax = axes[row, clip]
            in_clip = nodes[data.clip[nodes] == clip]
            draw_box_graph(data, video.frames[clip * per_clip + per_clip // 2], nodes=in_clip, ax=ax)
            title = f"clip {clip}"
            if clip == 0:
                title = (f"{video.class_name} -> {dataset.classes[pred]}\n"
                         f"k={int(best.scale[0, pred])}, nodes {nodes.tolist()}")
            ax.set_title(title, fontsize=8)
    fig.suptitle("highest-scoring sub-graph of the predicted class (MUSLE, multi-scale)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _run_seed(seed: int, out: str, num_train: int, num_test: int, epochs: int, num_clips: int, progress: bool,
              log: bool, threads: Optional[int], draw: bool) -> Dict:
    """Every row of the ablation for one seed (run in a worker process when seeds run in parallel)."""
    from ..nn.encoders import RoIFeatures
    from ..train import TrainConfig, fit, predict

    if threads:
        torch.set_num_threads(threads)
    seed_start = time.perf_counter()
    torch.manual_seed(seed)
    encoder = RoIFeatures().eval()
    train_videos, test_videos = SyntheticInteractions.splits(num_train, num_test, seed=seed)
    train_tubes, train_regions = prepare_videos(train_videos, encoder, num_clips, progress=progress)
    test_tubes, test_regions = prepare_videos(test_videos, encoder, num_clips, progress=progress)
    if log:
        print(f"seed {seed}: features of {num_train + num_test} videos in {time.perf_counter() - seed_start:.1f} s",
              flush=True)
    labels = torch.tensor([int(g.y) for g in test_tubes])
    visual, coord = train_tubes[0].x.size(1), train_tubes[0].coord.size(1)
    rows = ablation_rows(train_videos.num_classes, visual, coord)
    result: Dict[str, Dict] = {"accuracy": {}, "closer_apart": {}, "seconds": {}, "auxiliary": {}, "curves": {}}
    for name in tqdm(ROWS, desc=f"seed {seed}", disable=not progress, leave=False):
        kind, options = rows[name]
        torch.manual_seed(seed)
        model = _build(kind, options, train_videos.num_classes, visual)
        train, test = (train_regions, test_regions) if kind == "strg" else (train_tubes, test_tubes)
        config = TrainConfig(epochs=epochs if kind != "strg" else max(epochs // 2, 1), batch_size=32, lr=1e-2,
                             lr_step=MUSLE_TRAINING["ce_start"] if kind == "musle" else None, seed=seed,
                             progress=False)
        tic = time.perf_counter()
        history = fit(model, train, config)
        if kind == "musle":
            if MUSLE_TRAINING["ce_start"] > epochs:   # end_epoch has not re-estimated the mixtures yet
                model.refit_(train)
            result["auxiliary"][name] = _accuracies(_aux_predict(model, test), labels)[0]
        all_acc, pair_acc = _accuracies(predict(model, test, batch_size=32), labels)
        result["seconds"][name] = time.perf_counter() - tic
        result["accuracy"][name], result["closer_apart"][name] = all_acc, pair_acc
        result["curves"][name] = history.as_dict()
        if log:
            print(f"seed {seed} {name:<16} test {100 * all_acc:5.1f} %  closer/apart {100 * pair_acc:5.1f} %  "
                  f"({result['seconds'][name]:.1f} s)", flush=True)
        if draw and name == "Multi-scale":
            _draw_best_subgraphs(model, test_tubes, test_videos, os.path.join(out, "best_subgraphs.png"))
    return result


def run(seeds: Sequence[int] = DEFAULT_SEEDS, out: str = "results", *, progress: bool = True,
        jobs: Optional[int] = None, num_train: int = 2160, num_test: int = 270, epochs: int = 12,
        num_clips: int = 2, log: bool = True, threads: Optional[int] = 1) -> Dict[str, Dict]:
    r"""The recognition ablation (MUSLE table 1) on synthetic interaction videos, over ``seeds``.

    Per seed: ``num_train`` / ``num_test`` videos (the seed picks the videos, the frozen backbone's
    initialisation, the models' initialisation and the training order), visual features from a frozen, randomly
    initialised :class:`~videograph.nn.encoders.SmallCNN` through :class:`~videograph.nn.encoders.RoIFeatures`
    (computed once, so every model trains in seconds), then every row of :data:`ROWS` is trained with
    :func:`videograph.train.fit` and tested. Seeds run in ``jobs`` processes (default: one per CPU core, at most
    one per seed), each with ``threads`` torch threads. Returns the tables ``{"": top-1 of all test videos,
    "closer_apart": top-1 on move_closer / move_apart, "auxiliary_head": the auxiliary classifier's top-1}`` and
    writes ``<out>/training_curves.png`` and ``<out>/best_subgraphs.png`` (first seed).
    """
    os.makedirs(out, exist_ok=True)
    seeds = list(seeds)
    if not seeds:
        raise ValueError("'seeds' is empty")
    jobs = min(jobs or os.cpu_count() or 1, len(seeds))
    arguments = [(seed, out, num_train, num_test, epochs, num_clips, progress and jobs == 1, log, threads,
                  seed == seeds[0]) for seed in seeds]
    if jobs == 1:
        results = [_run_seed(*a) for a in arguments]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(_run_seed, *zip(*arguments)))
    table = {name: summarize([r["accuracy"][name] for r in results]) for name in ROWS}
    pairs = {name: summarize([r["closer_apart"][name] for r in results]) for name in ROWS}
    auxiliary = {f"{name} (auxiliary head)": summarize([r["auxiliary"][name] for r in results])
                 for name in ROWS if name in results[0]["auxiliary"]}
    _draw_curves(results[0]["curves"], os.path.join(out, "training_curves.png"))
    if log:
        seconds = {name: sum(r["seconds"][name] for r in results) for name in ROWS}
        print(f"\nSynthetic interactions: {num_train} train / {num_test} test videos per seed, 9 classes "
              f"(chance 11.1 %), seeds {seeds}; train+test seconds per row: "
              + ", ".join(f"{name} {s:.0f}" for name, s in seconds.items()))
    return {"": table, "closer_apart": pairs, "auxiliary_head": auxiliary}
