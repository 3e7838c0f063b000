"""P-GCN temporal action localisation end to end on synthetic untrimmed videos: train on sampled neighbourhoods,
localise, evaluate (ActivityNet protocol, THUMOS14's tIoU thresholds) and draw detections against the ground
truth on a timeline.

    python examples/pgcn.py                       # ~1 min on 2 cores
    python examples/pgcn.py --num-train 40 --epochs 2 --hidden 64    # seconds
"""
import argparse
import json
import os

import matplotlib
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from videograph.ablations.pgcn import DATA, GRAPH, TIOU, ground_truth_json  # noqa: E402
from videograph.datasets import SyntheticUntrimmed  # noqa: E402
from videograph.eval import detection_map  # noqa: E402
from videograph.models import PGCNLocalizer  # noqa: E402
from videograph.models.pgcn_train import PGCNTrainConfig, detect, fit_pgcn, proposal_batch, to_activitynet  # noqa


def draw_timeline(dataset, detections, class_names, path, num_videos=4, per_video=6):
    """Ground truth (top row of each video) against its best detections (below, opacity = score)."""
    colours = plt.get_cmap("tab10")
    fig, axes = plt.subplots(num_videos, 1, figsize=(10, 1.3 * num_videos), sharex=True, squeeze=False)
    for v, ax in enumerate(axes[:, 0]):
        video = dataset[v]
        for (s, e), c in zip(video.segments.tolist(), video.labels.tolist()):
            ax.barh(1, e - s, left=s, height=0.6, color=colours(c - 1))
            ax.text((s + e) / 2, 1, class_names[c - 1], ha="center", va="center", fontsize=7)
        mine = (detections.video == v).nonzero().view(-1)[:per_video]
        for row, i in enumerate(mine.tolist()):
            s, e = detections.segments[i].tolist()
            c, score = int(detections.labels[i]), float(detections.scores[i])
            ax.barh(-row * 0.5, e - s, left=s, height=0.4, color=colours(c - 1),
                    alpha=max(0.15, min(1.0, score / float(detections.scores.max()))))
        ax.set_yticks([1, 0], ["truth", "detections"], fontsize=7)
        ax.set_xlim(0, video.duration)
    axes[-1, 0].set_xlabel("time (snippets)")
    fig.suptitle("P-GCN detections (colour = class) against the ground truth")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-train", type=int, default=200)
    parser.add_argument("--num-test", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    os.makedirs(args.out, exist_ok=True)

    train_set, test_set = SyntheticUntrimmed.splits(args.num_train, args.num_test, seed=args.seed, **DATA)
    ground_truth = [video.ground_truth for video in train_set]
    train = proposal_batch([v.proposals(with_ground_truth=True) for v in train_set], ground_truth, **GRAPH)
    test = proposal_batch([v.proposals() for v in test_set], **GRAPH)
    torch.manual_seed(args.seed)
    model = PGCNLocalizer(train_set.feature_dim, train_set.num_classes, hidden_channels=args.hidden)
    history = fit_pgcn(model, train, PGCNTrainConfig(epochs=args.epochs, videos_per_batch=8, lr=2e-3,
                                                     seed=args.seed, progress=True))
    print(f"training loss: {history[0]:.3f} -> {history[-1]:.3f}")

    detections = detect(model, test, train.stats)
    class_names = [f"class_{k}" for k in range(1, train_set.num_classes + 1)]
    ids = [f"test_{i}" for i in range(len(test_set))]
    predictions = to_activitynet(detections, ids, class_names)
    with open(os.path.join(args.out, "pgcn_detections.json"), "w") as handle:
        json.dump(predictions, handle)
    result = detection_map(ground_truth_json(test_set, ids, class_names), predictions, tiou_thresholds=TIOU)
    print("mAP per tIoU: " + ", ".join(f"{t:.1f}: {100 * float(m):.1f}" for t, m in zip(TIOU, result.mAP)))
    picture = os.path.join(args.out, "pgcn_detections.png")
    draw_timeline(test_set, detections, class_names, picture)
    print(f"test mAP@0.5: {float(result.mAP[-1]):.3f} (average over 0.1-0.5: {float(result.mAP.mean()):.3f}); "
          f"wrote {picture}")


if __name__ == "__main__":
    main()
