"""Tubelets from noisy detections: MUSLE's Tubelet Proposal Network against the Hungarian IoU linker and the
static first-frame box, on held-out synthetic interaction videos (16 frames, 64 x 64, 3-5 moving objects).

Detector noise, per frame: every box edge jittered (std ``jitter`` x the box side), each object missed with
probability ``miss`` (never in the first frame, whose top-M detections seed the tubelets, M = the number of
objects), ``false_positives`` random boxes with scores below every true detection's. The TPN is trained on
training videos' ground-truth boxes (smooth L1 on the box deltas), saved and reloaded with
``torch.load(weights_only=True)``. The figure is the mean IoU to the ground truth over all frames of all
tubelets (each tubelet is the object its seed came from); ``*_missed`` repeats it at the higher miss rate.

    python benchmarks/tubelets.py [--quick | --smoke] [--out DIR]

writes ``<out>/bench_tubelets.json``, ``<out>/bench_tubelets.png`` and ``<out>/tpn.pt`` (the trained weights).
"""
import argparse
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

KEYS = ("tpn_mean_iou", "iou_linker_mean_iou", "static_mean_iou", "tpn_mean_iou_missed",
        "iou_linker_mean_iou_missed", "static_mean_iou_missed", "miss_rate", "miss_rate_high", "jitter",
        "false_positives", "tpn_minus_static", "tpn_minus_iou_linker_missed", "tpn_tubelets_per_s",
        "iou_linker_tubelets_per_s", "train_s", "train_videos", "test_videos")


def noisy_detections(boxes, frame_size, miss: float, jitter: float, false_positives: int, generator):
    """Detections of one video from its ground-truth ``boxes`` ``[O, T, 4]`` (torchvision's output contract)."""
    import torch

    num, length = boxes.shape[:2]
    height, width = frame_size
    out = []
    for t in range(length):
        keep = torch.rand(num, generator=generator) >= (miss if t else 0.0)
        true = boxes[keep, t]
        side = (true[:, 2:] - true[:, :2]).repeat(1, 2)
        true = true + jitter * side * torch.randn(true.shape, generator=generator)
        size = 6 + 10 * torch.rand(false_positives, 2, generator=generator)
        corner = torch.rand(false_positives, 2, generator=generator) * (torch.tensor([width, height]) - size)
        fake = torch.cat([corner, corner + size], 1)
        out.append({"boxes": torch.cat([true, fake]).float(),
                    "scores": torch.cat([0.6 + 0.4 * torch.rand(true.size(0), generator=generator),
                                         0.5 * torch.rand(false_positives, generator=generator)]),
                    "labels": torch.ones(true.size(0) + false_positives, dtype=torch.long)})
    return out


def tube_iou(tubes, boxes) -> list:
    """Per tubelet: mean IoU over frames to the object whose first-frame box overlaps its seed most."""
    from torchvision.ops import box_iou

    if tubes.boxes.size(0) == 0:
        return []
    owner = box_iou(tubes.boxes[:, 0], boxes[:, 0]).argmax(1)
    target = boxes[owner]                                          # [M, T, 4]
    ious = box_iou(tubes.boxes.reshape(-1, 4), target.reshape(-1, 4)).diagonal()
    return ious.view(tubes.boxes.shape[:2]).mean(1).tolist()


class Static:
    """The first frame's box held still over the clip."""

    def __call__(self, frames, detections, top_m):
        import torch
        from videograph.video import Tubes

        first = detections[0]
        seeds = torch.argsort(first["scores"], descending=True, stable=True)[:top_m]
        boxes = first["boxes"][seeds][:, None].expand(-1, frames.size(0), -1).clone()
        matched = torch.zeros(boxes.shape[:2], dtype=torch.bool)
        matched[:, 0] = True
        return Tubes(boxes, matched, first["scores"][seeds])


def evaluate(linkers: dict, videos, miss: float, jitter: float, false_positives: int, seed: int) -> dict:
    import torch

    scores = {name: [] for name in linkers}
    seconds = {name: 0.0 for name in linkers}
    count = 0
    for index, video in enumerate(videos):
        generator = torch.Generator().manual_seed(seed * 100_003 + index)
        detections = noisy_detections(video.boxes, video.frame_size, miss, jitter, false_positives, generator)
        top_m = video.num_objects
        count += top_m
        for name, linker in linkers.items():
            start = time.perf_counter()
            with torch.no_grad():
                tubes = linker(video.frames, detections, top_m)
            seconds[name] += time.perf_counter() - start
            scores[name] += tube_iou(tubes, video.boxes)
    return {name: (statistics.fmean(values), count / seconds[name]) for name, values in scores.items()}


def plot(figures: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ("tpn", "iou_linker", "static")
    fig, ax = plt.subplots(figsize=(6, 4))
    width = 0.38
    for k, (suffix, label) in enumerate((("", f"miss {figures['miss_rate']:.0%}"),
                                         ("_missed", f"miss {figures['miss_rate_high']:.0%}"))):
        ax.bar([i + k * width for i in range(3)], [figures[f"{n}_mean_iou{suffix}"] for n in names], width,
               label=label)
    ax.set_xticks([i + width / 2 for i in range(3)], ["TPN", "IoU linker", "static box"])
    ax.set(ylabel="mean IoU to ground truth", ylim=(0, 1), title="tubelets from noisy detections")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="fewer training and test videos")
    mode.add_argument("--smoke", action="store_true", help="tiny sizes, seconds")
    parser.add_argument("--out", default="results", help="output folder (default: results/)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import torch

    sys.path.insert(0, ROOT)
    from videograph.datasets import SyntheticInteractions
    from videograph.video import IoULinker
    from videograph.video.tpn import TubeletProposalNetwork, fit_tpn

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    if args.smoke:
        num_train, num_test, epochs, sketch, frames = 2, 2, 1, 128, 8
    elif args.quick:
        num_train, num_test, epochs, sketch, frames = 40, 20, 2, 1024, 16
    else:
        num_train, num_test, epochs, sketch, frames = 150, 60, 4, 1024, 16
    train, test = SyntheticInteractions.splits(num_train, num_test, seed=args.seed, num_frames=frames)
    generator = torch.Generator().manual_seed(args.seed)
    model = TubeletProposalNetwork(sketch_channels=sketch, generator=generator)
    start = time.perf_counter()
    fit_tpn(model, train, epochs=epochs, lr=3e-3, generator=generator, progress=not args.smoke)
    train_s = time.perf_counter() - start
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "tpn.pt")
    torch.save(model.state_dict(), path)
    model = TubeletProposalNetwork(sketch_channels=sketch, weights=path).eval()
    linkers = {"tpn": model, "iou_linker": IoULinker(), "static": Static()}
    noise = dict(jitter=0.1, false_positives=2)
    low = evaluate(linkers, test, miss=0.2, seed=args.seed + 1, **noise)
    high = evaluate(linkers, test, miss=0.5, seed=args.seed + 2, **noise)
    figures = {"miss_rate": 0.2, "miss_rate_high": 0.5, "train_s": train_s, "train_videos": num_train,
               "test_videos": num_test, **noise}
    for name in linkers:
        figures[f"{name}_mean_iou"] = low[name][0]
        figures[f"{name}_mean_iou_missed"] = high[name][0]
    figures["tpn_tubelets_per_s"], figures["iou_linker_tubelets_per_s"] = low["tpn"][1], low["iou_linker"][1]
    figures["tpn_minus_static"] = figures["tpn_mean_iou"] - figures["static_mean_iou"]
    figures["tpn_minus_iou_linker_missed"] = figures["tpn_mean_iou_missed"] - figures["iou_linker_mean_iou_missed"]
    with open(os.path.join(args.out, "bench_tubelets.json"), "w") as handle:
        json.dump({key: figures[key] for key in KEYS}, handle, indent=1)
    plot(figures, os.path.join(args.out, "bench_tubelets.png"))
    for key in KEYS:
        print(f"{key:>30}: {figures[key]:.4g}" if isinstance(figures[key], float) else f"{key:>30}: {figures[key]}")
    return figures


if __name__ == "__main__":
    main()
