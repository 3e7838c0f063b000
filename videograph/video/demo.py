r"""The pixels-in demo (``python -m videograph demo``): synthetic interaction videos are written as mp4 files, read
back with :class:`~videograph.io.VideoReader`, detected by the small FCOS of :mod:`videograph.video.shape_detector`
(trained here, or loaded from its cache in the output folder), linked into tubelets by
:class:`~videograph.video.IoULinker`, and MUSLE (multi-scale, the recipe of :mod:`videograph.ablations.musle`)
and the Base / GCN baselines are trained and tested on those graphs, beside MUSLE on the ground-truth tubelets of
the same decoded frames."""
import json
import os
import tempfile
import time
from typing import Dict, Optional, Tuple

import torch
from tqdm import tqdm

from ..datasets import SyntheticInteractions
from ..graph import build_graph
from ..io import VideoReader, write_video
from ..nn.encoders import RoIFeatures, tubelet_frame_index
from .shape_detector import (detection_map50, load_shape_detector, save_shape_detector, train_shape_detector)

__all__ = ["DETECTOR_TRAINING", "run_pixels_demo"]

#: How the demo trains its detector (about a minute of CPU time; see docs/video.md).
DETECTOR_TRAINING = dict(num_videos=300, frames_per_video=4, steps=300, batch_size=16, lr=2e-3, channels=32)


def _detector(out: str, seed: int, score_threshold: float, progress: bool, log) -> Tuple[object, Dict]:
    """The trained shape detector, from ``<out>/shape_detector_seed<seed>.pt`` when its settings match."""
    path = os.path.join(out, f"shape_detector_seed{seed}.pt")
    settings_path = path + ".json"
    settings = dict(DETECTOR_TRAINING, seed=seed)
    if os.path.isfile(path) and os.path.isfile(settings_path):
        with open(settings_path) as handle:
            cached = json.load(handle)
        if cached.get("settings") == settings:
            log(f"detector: cached {path} (trained in {cached['seconds']:.0f} s wall, "
                f"{cached['cpu_seconds']:.0f} s CPU)")
            return load_shape_detector(path, score_threshold=score_threshold), dict(cached, cached=True)
    cpu = time.process_time()
    model, info = train_shape_detector(seed=seed, progress=progress, **DETECTOR_TRAINING)
    info = {"settings": settings, "seconds": info["seconds"], "cpu_seconds": time.process_time() - cpu,
            "loss": info["loss"]}
    save_shape_detector(model, path, (64, 64), DETECTOR_TRAINING["channels"])
    with open(settings_path, "w") as handle:
        json.dump(info, handle, indent=1)
    log(f"detector: trained in {info['seconds']:.0f} s wall ({info['cpu_seconds']:.0f} s CPU), saved {path}")
    return load_shape_detector(path, score_threshold=score_threshold), dict(info, cached=False)


@torch.no_grad()
def _graphs(dataset: SyntheticInteractions, folder: str, detector, encoder: RoIFeatures, num_clips: int,
            top_m: int, timings: Dict[str, float], progress: bool) -> Tuple[list, list, list]:
    """Per video: write the mp4, read it back, the detected tubelet graph and the ground-truth one (features of
    both from the decoded frames); also the decoded frames of the first few videos (for the AP and the PNG)."""
    detected, truth, kept = [], [], []
    clip_len = dataset.num_frames // num_clips
    for i, video in enumerate(tqdm(dataset, desc=f"{dataset.split} videos", disable=not progress, leave=False)):
        path = os.path.join(folder, f"{dataset.split}_{i:05d}.mp4")
        tic = time.perf_counter()
        write_video(path, video.frames, fps=8)
        timings["write"] = timings.get("write", 0.0) + time.perf_counter() - tic
        with VideoReader(path, num_threads=1) as reader:     # tiny frames: FFmpeg's thread pool costs more
            graph = build_graph(reader, kind="tubelets", detector=detector, num_clips=num_clips, clip_len=clip_len,
                                top_m=top_m, backbone=encoder, label=video.label, progress=False, timings=timings)
            tic = time.perf_counter()
            frames = reader[:]
            timings["decode"] += time.perf_counter() - tic
        feature_map = encoder.feature_map(frames)
        gt = build_graph(video.tubelets(num_clips=num_clips, features=False))
        gt.x = encoder.pool(feature_map, gt.boxes, tubelet_frame_index(gt.clip, clip_len), video.frame_size)
        gt.global_x = graph.global_x = feature_map.mean(dim=(0, 2, 3))[None]
        del graph.frame_index, graph.matched        # keep the two graph sets alike for the models
        detected.append(graph)
        truth.append(gt)
        if i < 64:
            kept.append(frames)
    return detected, truth, kept


def _rows(num_classes: int, visual: int, coord: int) -> Dict[str, Tuple[str, object]]:
    from ..ablations.musle import ablation_rows
    from ..models import GCN, MUSLE, Base

    multi = ablation_rows(num_classes, visual, coord)["Multi-scale"][1]
    return {
        "Base (detected tubelets)": ("detected", lambda: Base(visual, num_classes)),
        "GCN (detected tubelets)": ("detected", lambda: GCN(visual, num_classes, edge_key="dense_edge_index")),
        "MUSLE multi-scale (detected tubelets)": ("detected", lambda: MUSLE(**multi)),
        "MUSLE multi-scale (ground-truth tubelets)": ("truth", lambda: MUSLE(**multi)),
    }


def _draw(graphs: list, truth: list, frames: list, dataset: SyntheticInteractions, path: str, count: int = 3) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from ..viz import draw_box_graph

    num_clips = int(truth[0].clip.max()) + 1
    fig, axes = plt.subplots(count, num_clips, figsize=(3.2 * num_clips, 3.4 * count), squeeze=False)
    for row in range(count):
        data, gt = graphs[row], truth[row]
        length = data.boxes.size(1)
        for clip in range(num_clips):
            ax = axes[row, clip]
            t = clip * length + length // 2
            for box in gt.boxes[gt.clip == clip, length // 2].tolist():
                ax.add_patch(Rectangle((box[0], box[1]), box[2] - box[0], box[3] - box[1], fill=False,
                                       color="cyan", lw=1, ls="--"))
            draw_box_graph(data, frames[row][t], nodes=(data.clip == clip).nonzero().flatten(), ax=ax,
                           max_edges=0, title=f"{dataset[row].class_name}, clip {clip} (frame {t})")
    fig.suptitle("detected tubelets (yellow, node ids) and ground truth (cyan, dashed) on decoded frames",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_pixels_demo(out: str = "results", *, seed: int = 0, num_train: int = 2160, num_test: int = 270,
                    epochs: int = 12, num_clips: int = 2, top_m: int = 8, score_threshold: float = 0.5,
                    video_dir: Optional[str] = None, progress: bool = True, threads: Optional[int] = 1,
                    log=print) -> Dict:
    r"""Runs the pixels-in demo and writes ``<out>/demo.json`` and ``<out>/demo_tubelets.png``.

    Args:
        out: output folder (also caches the detector).
        seed: seed of the videos, the detector, the frozen feature CNN and the models.
        num_train, num_test: synthetic videos (16 frames of 64 x 64, 9 classes).
        epochs: training epochs of the graph models.
        num_clips: clips per video (``16 / num_clips`` frames each).
        top_m: tubelets seeded per clip.
        score_threshold: the detector's minimum score.
        video_dir: where the mp4 files go (default: a temporary folder, removed afterwards).
        progress: show tqdm bars.
        threads: torch threads (default 1: on a shared machine, more threads mostly spin; None leaves torch's).
    """
    from ..ablations.musle import MUSLE_TRAINING
    from ..train import TrainConfig, fit, predict

    start, cpu_start = time.perf_counter(), time.process_time()
    if threads:
        torch.set_num_threads(threads)
    os.makedirs(out, exist_ok=True)
    detector, detector_info = _detector(out, seed, score_threshold, progress, log)
    torch.manual_seed(seed)
    encoder = RoIFeatures().eval()
    train_set, test_set = SyntheticInteractions.splits(num_train, num_test, seed=seed)
    timings: Dict[str, float] = {"write": 0.0, "decode": 0.0, "detect": 0.0, "link": 0.0, "features": 0.0}
    with tempfile.TemporaryDirectory(prefix="videograph_demo_") as scratch:
        folder = video_dir or scratch
        os.makedirs(folder, exist_ok=True)
        tic = time.perf_counter()
        train_det, train_gt, _ = _graphs(train_set, folder, detector, encoder, num_clips, top_m, timings, progress)
        test_det, test_gt, test_frames = _graphs(test_set, folder, detector, encoder, num_clips, top_m, timings,
                                                 progress)
        pipeline_seconds = time.perf_counter() - tic
    log(f"{num_train + num_test} videos written, decoded, detected and linked in {pipeline_seconds:.0f} s ("
        + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()) + ")")

    # The detector's AP@0.5 on decoded held-out frames, by torchmetrics (pycocotools), when installed.
    ap50 = None
    try:
        frames = torch.cat(test_frames)
        targets = [{"boxes": test_set[i].boxes[:, t], "labels": torch.ones(test_set[i].num_objects, dtype=torch.long)}
                   for i in range(len(test_frames)) for t in range(test_set.num_frames)]
        ap50 = detection_map50(detector, frames, targets)
        log(f"detector AP@0.5 on {frames.size(0)} decoded test frames: {100 * ap50:.1f} %")
    except ImportError as error:
        log(f"detector AP skipped ({error}; install the 'test' extra)")
    nodes = {"detected": sum(g.num_nodes for g in test_det) / num_test,
             "truth": sum(g.num_nodes for g in test_gt) / num_test}

    labels = torch.tensor([int(g.y) for g in test_gt])
    visual, coord = train_gt[0].x.size(1), train_gt[0].coord.size(1)
    table, seconds = {}, {}
    sets = {"detected": (train_det, test_det), "truth": (train_gt, test_gt)}
    for name, (source, make) in tqdm(_rows(train_set.num_classes, visual, coord).items(), desc="models",
                                     disable=not progress, leave=False):
        torch.manual_seed(seed)
        model = make()
        musle = name.startswith("MUSLE")
        config = TrainConfig(epochs=epochs, batch_size=32, lr=1e-2,
                             lr_step=MUSLE_TRAINING["ce_start"] if musle else None, seed=seed, progress=False)
        tic = time.perf_counter()
        train, test = sets[source]
        fit(model, train, config)
        if musle and MUSLE_TRAINING["ce_start"] > epochs:
            model.refit_(train)
        table[name] = float((predict(model, test, batch_size=32) == labels).float().mean())
        seconds[name] = time.perf_counter() - tic
        log(f"{name:<42} test top-1 {100 * table[name]:5.1f} %  ({seconds[name]:.0f} s)")

    picture = os.path.join(out, "demo_tubelets.png")
    _draw(test_det, test_gt, test_frames, test_set, picture)
    gap = table["MUSLE multi-scale (ground-truth tubelets)"] - table["MUSLE multi-scale (detected tubelets)"]
    wall = time.perf_counter() - start
    result = {"table": table, "gap_truth_minus_detected": gap, "detector": dict(detector_info, ap50=ap50),
              "nodes_per_test_video": nodes, "pipeline_seconds": pipeline_seconds, "timings": timings,
              "train_test_seconds": seconds, "wall_seconds": wall, "cpu_seconds": time.process_time() - cpu_start,
              "load_avg_1min": os.getloadavg()[0],
              "settings": dict(seed=seed, num_train=num_train, num_test=num_test, epochs=epochs, num_clips=num_clips,
                               top_m=top_m, score_threshold=score_threshold, threads=torch.get_num_threads())}
    with open(os.path.join(out, "demo.json"), "w") as handle:
        json.dump(result, handle, indent=1)
    log(f"\nSynthetic interactions from mp4 files: {num_train} train / {num_test} test videos, 9 classes "
        f"(chance 11.1 %), seed {seed}")
    log(f"{'row':<42} {'top-1 (%)':>9}")
    for name, value in table.items():
        log(f"{name:<42} {100 * value:9.1f}")
    log(f"MUSLE: ground truth - detected = {100 * gap:.1f} points; "
        f"{nodes['detected']:.1f} detected vs {nodes['truth']:.1f} true tubelets per video")
    log(f"\nWrote {os.path.join(out, 'demo.json')} and {picture} in {wall:.0f} s wall.")
    return result
