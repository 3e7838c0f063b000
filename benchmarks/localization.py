"""Temporal localization speed: videograph.eval against loop baselines measured in the same run, and build_graph
on P-GCN-sized proposal sets.

    python benchmarks/localization.py [--quick | --smoke] [--out DIR]

* NMS: ``temporal_nms`` / ``soft_nms`` on a THUMOS-like load (213 videos x 2 000 (proposal, class) pairs, 20
  classes) against a per-group NumPy loop of the same algorithm (tests/eval/oracles.py);
* detection mAP: ``detection_map`` on 20 000 predictions over 200 classes (ActivityNet-like, synthetic) against a
  brute-force per-prediction loop written from the protocol (tests/eval/oracles.py; the official evaluator is not
  installable here, so it is *not* the baseline);
* ``build_graph`` of 2 000 proposals with 256-d cosine weights, and ``pgcn_official=True`` at 10 000 proposals.
* P-GCN training throughput (proposals/s: ``fit_pgcn``'s sampling, forward, backward and step on synthetic
  untrimmed videos) against only *building* the reference code's per-proposal 21-node trees (the proposal, 4 of
  its 8 + 2 best contextual / surrounding candidates, 4 of each of theirs) in Python over precomputed tIoU and
  distance matrices, as its data loader does, in the same run.

Writes <out>/bench_localization.json and <out>/bench_localization.png.
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from tests.eval.oracles import batched_nms_loop, brute_map, soft_nms_numpy  # noqa: E402
from videograph import Proposals, build_graph  # noqa: E402
from videograph.eval import detection_map, soft_nms, temporal_nms  # noqa: E402

#: The JSON keys this benchmark always writes (also with --smoke).
KEYS = (
    "nms_items", "nms_ms", "nms_loop_ms", "nms_speedup", "nms_equal",
    "soft_nms_ms", "soft_nms_loop_ms", "soft_nms_speedup", "soft_nms_equal",
    "map_predictions", "map_classes", "map_ms", "map_bruteforce_ms", "map_speedup_vs_bruteforce", "map_max_abs_diff",
    "build_graph_proposals", "build_graph_ms", "pgcn_official_proposals", "pgcn_official_ms",
    "pgcn_train_proposals", "pgcn_train_proposals_per_s", "pgcn_tree_proposals_per_s", "pgcn_train_speedup_vs_trees",
)


def median_ms(fn, repeat):
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def once_ms(fn):
    start = time.perf_counter()
    out = fn()
    return (time.perf_counter() - start) * 1e3, out


def nms_load(videos, proposals, classes, generator):
    """Each video: ``proposals`` segments over 200 s (1-21 s long), each scored for every class: one
    (proposal, class) pair per row, scores uniform."""
    start = torch.rand(videos, proposals, generator=generator, dtype=torch.float64) * 180
    length = 1 + torch.rand(videos, proposals, generator=generator, dtype=torch.float64) * 20
    segments = torch.stack([start, start + length], -1).repeat_interleave(classes, 1).reshape(-1, 2)
    label = torch.arange(classes).repeat(videos * proposals)
    batch = torch.arange(videos).repeat_interleave(proposals * classes)
    scores = torch.rand(segments.size(0), generator=generator, dtype=torch.float64)
    return segments, scores, label, batch


def soft_loop(segments, scores, groups, top_k):
    out = []
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        out += [members[i] for i, _ in soft_nms_numpy(segments[members], scores[members], 0.5, 0.0, 0.001, top_k)]
    return out


def detection_load(videos, per_video, classes, rng):
    """Synthetic ActivityNet-like files: 1-3 instances per video, predictions jittered around them (80% of the
    right class) plus random false positives; two-decimal scores (ties)."""
    database, results, count = {}, {}, 0
    for v in range(videos):
        duration = float(rng.uniform(30, 200))
        annotations = []
        for _ in range(int(rng.integers(1, 4))):
            s = float(rng.uniform(0, duration * 0.8))
            annotations.append({"segment": [s, min(duration, s + float(rng.uniform(2, duration * 0.5)))],
                                "label": f"class {count % classes}"})          # every class, when enough
            count += 1
        database[f"v{v}"] = {"subset": "validation", "annotations": annotations}
    names = sorted({a["label"] for info in database.values() for a in info["annotations"]})
    for v in range(videos):
        annotations, duration = database[f"v{v}"]["annotations"], 200.0
        items = []
        for _ in range(per_video):
            if rng.random() < 0.7:
                a = annotations[int(rng.integers(len(annotations)))]
                start, end = a["segment"]
                s, e = start + rng.normal(0, 0.15) * (end - start), end + rng.normal(0, 0.15) * (end - start)
                label = a["label"] if rng.random() < 0.8 else names[int(rng.integers(len(names)))]
            else:
                s = float(rng.uniform(0, duration))
                e, label = s + float(rng.uniform(1, 30)), names[int(rng.integers(len(names)))]
            if e > s:
                items.append({"segment": [s, e], "label": label, "score": round(float(rng.random()), 2)})
        results[f"v{v}"] = items
    return {"database": database}, {"results": results}


def proposals(n, generator, dim=256):
    """Proposals spread over a video of n / 10 seconds, 1 to 30 s long, with features (P-GCN's setting)."""
    start = torch.rand(n, generator=generator) * n / 10
    length = 1 + torch.rand(n, generator=generator) * 29
    return Proposals(torch.stack([start, start + length], 1), torch.randn(n, dim, generator=generator))


def reference_trees(iou, distance, seeds, rng, features, num_neighbors=4, contextual=8, surrounding=2):
    """The reference code's per-proposal trees in Python: for each seed, its ``contextual`` best-tIoU overlapping
    and ``surrounding`` nearest disjoint candidates, ``num_neighbors`` of them drawn, the same for each of those
    (1 + 4 + 16 = 21 nodes), and the tree's features gathered."""
    trees = []
    for seed in seeds:
        level, nodes = [seed], [seed]
        for _ in range(2):
            nxt = []
            for node in level:
                row = iou[node]
                ctx = [j for j in np.argsort(-row) if j != node and row[j] > 0.7][:contextual]
                sur = [j for j in np.argsort(distance[node]) if row[j] == 0][:surrounding]
                candidates = ctx + sur or [node]
                nxt += [candidates[k] for k in rng.integers(0, len(candidates), num_neighbors)]
            nodes += nxt
            level = nxt
        trees.append(np.stack([features[n] for n in nodes]))
    return trees


def training_throughput(num_videos, num_proposals, epochs, hidden, results):
    """``fit_pgcn`` proposals/s against building the reference code's trees for as many proposals, on videos of
    ``num_proposals`` proposals (THUMOS14's BSN lists hold thousands per video)."""
    from videograph.ablations.pgcn import DATA, GRAPH
    from videograph.datasets import SyntheticUntrimmed
    from videograph.models import PGCNLocalizer
    from videograph.models.pgcn_train import PGCNTrainConfig, fit_pgcn, proposal_batch

    dataset = SyntheticUntrimmed(num_videos, seed=0, **dict(DATA, num_proposals=num_proposals))
    videos = [v.proposals(with_ground_truth=True) for v in dataset]
    data = proposal_batch(videos, [v.ground_truth for v in dataset], **GRAPH)
    torch.manual_seed(0)
    model = PGCNLocalizer(dataset.feature_dim, dataset.num_classes, hidden_channels=hidden)
    config = PGCNTrainConfig(epochs=epochs, videos_per_batch=8, lr=2e-3)
    seeds_per_epoch = num_videos * sum(config.ratio)
    fit_pgcn(model, data, PGCNTrainConfig(epochs=1, videos_per_batch=8))         # warm-up
    start = time.perf_counter()
    fit_pgcn(model, data, config)
    train_s = time.perf_counter() - start
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for video in videos:
        seg = video.segments.numpy().astype(np.float64)
        inter = np.clip(np.minimum(seg[:, None, 1], seg[None, :, 1]) - np.maximum(seg[:, None, 0], seg[None, :, 0]),
                        0, None)
        length = seg[:, 1] - seg[:, 0]
        iou = inter / (length[:, None] + length[None, :] - inter)
        centre = seg.mean(1)
        distance = np.abs(centre[:, None] - centre[None, :]) / (np.maximum(seg[:, None, 1], seg[None, :, 1])
                                                               - np.minimum(seg[:, None, 0], seg[None, :, 0]))
        seeds = rng.integers(0, len(seg), sum(config.ratio) * epochs)
        reference_trees(iou, distance, seeds, rng, video.features.numpy())
    tree_s = time.perf_counter() - start
    total = seeds_per_epoch * epochs
    results["pgcn_train_proposals"] = total
    results["pgcn_train_proposals_per_s"] = total / train_s
    results["pgcn_tree_proposals_per_s"] = total / tree_s
    results["pgcn_train_speedup_vs_trees"] = tree_s / train_s


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [("temporal_nms", "nms_ms", "nms_loop_ms"), ("soft_nms", "soft_nms_ms", "soft_nms_loop_ms"),
            ("detection_map", "map_ms", "map_bruteforce_ms")]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [results[o] for _, o, _ in rows], 0.4, label="videograph.eval")
    ax.bar(x + 0.2, [results[b] for _, _, b in rows], 0.4, label="loop baseline (same run)")
    for i, (_, o, b) in enumerate(rows):
        ax.text(i, max(results[o], results[b]) * 1.1, f"{results[b] / results[o]:.0f}x", ha="center")
    ax.set_xticks(x, [name for name, _, _ in rows])
    ax.set_yscale("log")
    ax.set_ylabel("ms (median)")
    ax.set_title(f"NMS: {results['nms_items']} pairs; mAP: {results['map_predictions']} predictions")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer repeats")
    size.add_argument("--smoke", action="store_true", help="tiny inputs, seconds (for the test suite)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "results"),
                        help="output folder (default: results/)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    if args.smoke:
        videos, per_video, repeat, map_videos, map_per_video = 4, 100, 1, 60, 4
        graph_n, official_n, soft_top_k = 200, 500, 20
        train_videos, train_proposals, train_epochs, hidden = 4, 200, 1, 64
    else:
        videos, per_video, repeat, map_videos, map_per_video = 213, 100, (1 if args.quick else 3), 2000, 10
        graph_n, official_n, soft_top_k = 2000, 10000, 100
        train_videos, train_proposals, train_epochs, hidden = 50, 1000, (2 if args.quick else 4), 512
    classes = 20
    results = {}

    # NMS: 213 videos x (100 proposals x 20 classes) = 2 000 pairs per video
    segments, scores, label, batch = nms_load(videos, per_video, classes, generator)
    groups = (batch * classes + label).numpy()
    results["nms_items"] = int(scores.numel())
    results["nms_ms"] = median_ms(lambda: temporal_nms(segments, scores, 0.5, classes=label, batch=batch), repeat)
    loop_ms, expected = once_ms(lambda: batched_nms_loop(segments.numpy(), scores.numpy(), 0.5, groups))
    results["nms_loop_ms"] = loop_ms
    results["nms_speedup"] = loop_ms / results["nms_ms"]
    results["nms_equal"] = temporal_nms(segments, scores, 0.5, classes=label, batch=batch).tolist() == expected.tolist()
    soft = lambda: soft_nms(segments, scores, top_k=soft_top_k, classes=label, batch=batch)  # noqa: E731
    results["soft_nms_ms"] = median_ms(soft, repeat)
    loop_ms, expected = once_ms(lambda: soft_loop(segments.numpy(), scores.numpy(), groups, soft_top_k))
    results["soft_nms_loop_ms"] = loop_ms
    results["soft_nms_speedup"] = loop_ms / results["soft_nms_ms"]
    results["soft_nms_equal"] = sorted(soft()[0].tolist()) == sorted(int(i) for i in expected)

    # detection mAP: 20 000 predictions over 200 classes
    truth, predictions = detection_load(map_videos, map_per_video, 200, rng)
    thresholds = np.linspace(0.5, 0.95, 10)
    results["map_predictions"] = sum(len(v) for v in predictions["results"].values())
    results["map_ms"] = median_ms(lambda: detection_map(truth, predictions, tiou_thresholds=thresholds), repeat)
    ours = detection_map(truth, predictions, tiou_thresholds=thresholds)
    results["map_classes"] = len(ours.classes)
    brute_ms, (expected, _) = once_ms(lambda: brute_map(truth, predictions, thresholds))
    results["map_bruteforce_ms"] = brute_ms
    results["map_speedup_vs_bruteforce"] = brute_ms / results["map_ms"]
    results["map_max_abs_diff"] = float(np.abs(ours.ap.numpy() - expected).max())

    # build_graph: 2 000 proposals with 256-d cosine weights; pgcn_official=True at 10 000 proposals
    video = proposals(graph_n, generator)
    results["build_graph_proposals"] = graph_n
    results["build_graph_ms"] = median_ms(lambda: build_graph(video), max(repeat, 3))
    big = proposals(official_n, generator)
    frames = Proposals((big.segments * 30).round(), big.features)
    results["pgcn_official_proposals"] = official_n
    results["pgcn_official_ms"] = median_ms(lambda: build_graph(frames, pgcn_official=True), repeat)

    # P-GCN training on sampled neighbourhoods against the reference code's Python trees
    training_throughput(train_videos, train_proposals, train_epochs, hidden, results)

    print(f"{'what':<26} {'load':>8} {'ours ms':>9} {'baseline ms':>12} {'speedup':>8} {'equal':>6}")
    print(f"{'temporal_nms':<26} {results['nms_items']:>8} {results['nms_ms']:>9.1f} {results['nms_loop_ms']:>12.1f} "
          f"{results['nms_speedup']:>7.1f}x {str(results['nms_equal']):>6}")
    print(f"{'soft_nms (top %d)' % soft_top_k:<26} {results['nms_items']:>8} {results['soft_nms_ms']:>9.1f} "
          f"{results['soft_nms_loop_ms']:>12.1f} {results['soft_nms_speedup']:>7.1f}x {str(results['soft_nms_equal']):>6}")
    print(f"{'detection_map (brute)':<26} {results['map_predictions']:>8} {results['map_ms']:>9.1f} "
          f"{results['map_bruteforce_ms']:>12.1f} {results['map_speedup_vs_bruteforce']:>7.1f}x "
          f"{results['map_max_abs_diff']:>6.0e}")
    print(f"{'build_graph (cosine)':<26} {graph_n:>8} {results['build_graph_ms']:>9.1f}")
    print(f"{'build_graph pgcn_official':<26} {official_n:>8} {results['pgcn_official_ms']:>9.1f}")
    print(f"{'P-GCN training (prop/s)':<26} {results['pgcn_train_proposals']:>8} "
          f"{results['pgcn_train_proposals_per_s']:>9.0f} {results['pgcn_tree_proposals_per_s']:>12.0f} "
          f"{results['pgcn_train_speedup_vs_trees']:>7.1f}x")

    os.makedirs(args.out, exist_ok=True)
    missing = set(KEYS) - set(results)
    assert not missing, missing
    with open(os.path.join(args.out, "bench_localization.json"), "w") as f:
        json.dump({key: results[key] for key in KEYS}, f, indent=1)
    plot(results, os.path.join(args.out, "bench_localization.png"))


if __name__ == "__main__":
    main()
