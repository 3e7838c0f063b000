"""Graph construction speed: videograph.build_graph against a dense all-pairs version and a brute-force loop.

    python benchmarks/build_graph.py [--quick | --smoke] [--out DIR]

Writes DIR/bench_build_graph.json and DIR/bench_build_graph.png (default results/). Headline figures (issue 12):
``proposals_2000_ms`` (2 000 proposals, 256-d cosine weights) and ``proposals_10000_official_ms``
(``pgcn_official=True``, 10 000 proposals in frames, 8 contextual and 2 surrounding sources per node), each
against ``dense_*``: every pair at once from ``segment_iou`` / ``segment_distance`` and one cosine product (the
quadratic, obvious vectorised version), timed in the same run, whose edges the benchmark also checks against
build_graph's. ``--smoke`` times the headline cases once and skips the baselines (null): it only checks that
the benchmark runs.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from videograph import Proposals, Regions, build_graph  # noqa: E402
from videograph.graph import segment_distance, segment_iou  # noqa: E402

RESULTS = os.path.join(os.path.dirname(__file__), "..", "results")
#: The keys bench_build_graph.json always has (the baselines are null with --smoke).
KEYS = ("proposals_2000_ms", "proposals_2000_edges", "proposals_2000_structure_ms", "proposals_2000_official_ms",
        "dense_proposals_2000_ms", "speedup_vs_dense_2000", "loop_proposals_2000_ms", "speedup_vs_loop_2000",
        "proposals_10000_official_ms", "proposals_10000_official_edges", "dense_proposals_10000_official_ms",
        "speedup_vs_dense_10000_official", "regions_16x10_ms", "regions_16x50_ms", "threads", "quick", "smoke")


def proposals(n, generator, dim=256):
    """Proposals spread over a video of n / 10 seconds, 1 to 30 s long, with features (P-GCN's setting)."""
    start = torch.rand(n, generator=generator) * n / 10
    length = 1 + torch.rand(n, generator=generator) * 29
    return Proposals(torch.stack([start, start + length], 1), torch.randn(n, dim, generator=generator))


def regions(per_frame, generator, frames=16):
    frame = torch.arange(frames).repeat_interleave(per_frame)
    corner = torch.rand(frame.numel(), 2, generator=generator) * 200
    size = 10 + torch.rand(frame.numel(), 2, generator=generator) * 50
    return Regions(torch.cat([corner, corner + size], 1), frame, torch.randn(frame.numel(), 256, generator=generator),
                   frame_size=(256, 256))


def loop_proposal_graph(video, theta_ctx=0.7, theta_sur=1.0):
    """P-GCN's definitions over every ordered pair, one pair at a time."""
    segs = video.segments.tolist()
    x = torch.nn.functional.normalize(video.features, dim=1)
    ctx, sur = [], []
    for i, (si, ei) in enumerate(segs):
        for j, (sj, ej) in enumerate(segs):
            if i == j:
                continue
            inter = max(0.0, min(ei, ej) - max(si, sj))
            union = (ei - si) + (ej - sj) - inter
            if inter / union > theta_ctx:
                ctx.append((j, i))
            elif inter == 0 and abs((si + ei) - (sj + ej)) / 2 / union < theta_sur:
                sur.append((j, i))
    edges = torch.tensor(ctx + sur, dtype=torch.long).reshape(-1, 2).t()
    return edges, (x[edges[0]] * x[edges[1]]).sum(1)


def loop_region_graph(video):
    boxes, frame = video.boxes.tolist(), video.frame.tolist()
    front = []
    for i, a in enumerate(boxes):
        for j, b in enumerate(boxes):
            if frame[j] != frame[i] + 1:
                continue
            w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
            h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
            union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
            if w * h > 0:
                front.append((j, i, w * h / union))
    totals = {}
    for j, i, v in front:
        totals[i] = totals.get(i, 0.0) + v
    return [(j, i, v / totals[i]) for j, i, v in front]


def keep_best(mask, key, k, descending):
    """Each row's k best entries of ``mask`` by ``key``, ties to the smaller column (columns in start order)."""
    if k >= mask.size(1):
        return mask
    key = key.masked_fill(~mask, float("-inf") if descending else float("inf"))
    kth = key.topk(k, dim=1, largest=descending).values[:, -1:]
    better = (key > kth) if descending else (key < kth)
    tie = (key == kth) & mask
    return better | (tie & (tie.cumsum(1) <= k - better.sum(1, keepdim=True)))


def dense_proposal_graph(video, official=False, theta_ctx=0.7, theta_sur=1.0, rows=500):
    """P-GCN's graph from all pairs at once (blocks of ``rows`` targets against all N sources): edge sets
    ``{kind: set((source, target))}`` and the cosine weights, quadratic in N."""
    order = torch.sort(video.segments[:, 0], stable=True).indices
    segments = video.segments[order]
    unit = torch.nn.functional.normalize(video.features[order], dim=1)
    edges, weights = {}, {}
    for kind in ("contextual", "surrounding"):
        found, cosines = [], []
        for first in range(0, len(segments), rows):
            block = segments[first:first + rows]
            iou = segment_iou(block, segments, frame_inclusive=official)
            if kind == "contextual":
                mask = iou > theta_ctx
                mask[torch.arange(len(block)), torch.arange(first, first + len(block))] = False
                if official:
                    mask = keep_best(mask, iou, 8, True)
            else:
                distance = segment_distance(block, segments, union="span" if official else "union",
                                            frame_inclusive=official)
                mask = (iou <= 0) & (distance < theta_sur)
                if official:
                    mask = keep_best(mask, distance, 2, False)
            target, source = mask.nonzero(as_tuple=True)
            found.append(torch.stack([order[source], order[target + first]]))
            cosines.append((unit[first:first + rows] @ unit.t())[target, source])
        edges[kind] = torch.cat(found, 1)
        weights[kind] = torch.cat(cosines)
    return edges, weights


def same_edges(data, dense):
    return all(set(map(tuple, data[f"{kind}_edge_index"].t().tolist())) == set(map(tuple, dense[kind].t().tolist()))
               for kind in dense)


def median_ms(fn, repeat):
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    size.add_argument("--smoke", action="store_true", help="the headline cases once, no baselines: checks it runs")
    parser.add_argument("--out", default=RESULTS, help="folder for the JSON and the PNG (default results/)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    repeat = 1 if args.smoke else 3 if args.quick else 11
    sizes = [2000] if args.smoke else [100, 500, 2000] if args.quick else [100, 500, 1000, 2000, 5000, 10000]
    loop_sizes = set() if args.smoke else {100, 500, 2000} if args.quick else {100, 500, 1000, 2000}
    results = {"threads": 1, "quick": args.quick, "smoke": args.smoke}
    results.update({key: None for key in KEYS if key.startswith(("dense_", "speedup_", "loop_"))})
    table = []
    for n in sorted(set(sizes) | {10000}):
        video = proposals(n, generator)
        # P-GCN's reference setting: frame units, at most 8 contextual and 2 surrounding sources per node.
        frames = Proposals((video.segments * 30).round(), video.features)
        results[f"proposals_{n}_official_ms"] = median_ms(lambda: build_graph(frames, pgcn_official=True), repeat)
        if n == 10000:
            results["proposals_10000_official_edges"] = build_graph(frames, pgcn_official=True).num_edges
            if not args.smoke:
                dense, _ = dense_proposal_graph(frames, official=True)
                assert same_edges(build_graph(frames, pgcn_official=True), dense)
                results["dense_proposals_10000_official_ms"] = median_ms(
                    lambda: dense_proposal_graph(frames, official=True), 1)
                results["speedup_vs_dense_10000_official"] = \
                    results["dense_proposals_10000_official_ms"] / results["proposals_10000_official_ms"]
        if n not in sizes:
            continue
        ours = median_ms(lambda: build_graph(video), repeat)
        edges = build_graph(video).num_edges
        # Without features there are no cosine weights: the graph structure alone.
        structure = Proposals(video.segments)
        results[f"proposals_{n}_structure_ms"] = median_ms(lambda: build_graph(structure), repeat)
        results[f"proposals_{n}_ms"] = ours
        results[f"proposals_{n}_edges"] = edges
        if n == 2000 and not args.smoke:
            dense, _ = dense_proposal_graph(video)
            assert same_edges(build_graph(video), dense)
            results["dense_proposals_2000_ms"] = median_ms(lambda: dense_proposal_graph(video), max(1, repeat // 3))
            results["speedup_vs_dense_2000"] = results["dense_proposals_2000_ms"] / ours
        loop = median_ms(lambda: loop_proposal_graph(video), 1) if n in loop_sizes else None
        if loop is not None:
            results[f"loop_proposals_{n}_ms"] = loop
            results[f"speedup_vs_loop_{n}"] = loop / ours
        table.append(("proposals", n, edges, ours, loop))
    for per_frame in ([10, 50] if args.smoke or args.quick else [10, 20, 30, 40, 50]):
        video = regions(per_frame, generator)
        ours = median_ms(lambda: build_graph(video), repeat)
        loop = None if args.smoke else median_ms(lambda: loop_region_graph(video), 1)
        results[f"regions_16x{per_frame}_ms"] = ours
        if loop is not None:
            results[f"loop_regions_16x{per_frame}_ms"] = loop
            results[f"regions_speedup_vs_loop_16x{per_frame}"] = loop / ours
        table.append(("regions 16x", per_frame, build_graph(video).num_edges, ours, loop))

    print(f"{'graph':<12} {'nodes':>6} {'edges':>9} {'ours ms':>9} {'loop ms':>10} {'speedup':>8}"
          f"   (ours: with 256-d cosine weights)")
    for kind, n, edges, ours, loop in table:
        speed = f"{loop / ours:8.0f}" if loop else "       -"
        loop_text = f"{loop:10.1f}" if loop else "         -"
        extra = ""
        if kind == "proposals":
            extra = (f"   structure only {results[f'proposals_{n}_structure_ms']:.1f} ms, "
                     f"official capped {results[f'proposals_{n}_official_ms']:.1f} ms")
        print(f"{kind:<12} {n:>6} {edges:>9} {ours:9.2f} {loop_text} {speed}{extra}")
    for key in ("dense_proposals_2000_ms", "speedup_vs_dense_2000", "proposals_10000_official_ms",
                "dense_proposals_10000_official_ms", "speedup_vs_dense_10000_official"):
        print(f"{key:<36} {results[key]:.1f}" if results[key] is not None else f"{key:<36} -")

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench_build_graph.json"), "w") as handle:
        json.dump(results, handle, indent=1)
    plot(table, results, os.path.join(args.out, "bench_build_graph.png"))


def plot(table, results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, kind, xlabel in ((axes[0], "proposals", "proposals"), (axes[1], "regions 16x", "boxes per frame")):
        rows = [r for r in table if r[0] == kind]
        ax.plot([r[1] for r in rows], [r[3] for r in rows], "o-", label="videograph.build_graph")
        if kind == "proposals":
            ax.plot([r[1] for r in rows], [results[f"proposals_{r[1]}_structure_ms"] for r in rows], "^:",
                    label="build_graph, no features")
            ax.plot([r[1] for r in rows], [results[f"proposals_{r[1]}_official_ms"] for r in rows], "v:",
                    label="build_graph, pgcn_official")
        looped = [r for r in rows if r[4]]
        ax.plot([r[1] for r in looped], [r[4] for r in looped], "s--", label="brute-force loop")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("median ms (1 thread)")
        ax.set_title(f"{kind.strip()} graphs")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
