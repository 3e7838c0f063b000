"""Graph construction speed: videograph.build_graph against a brute-force loop of the paper definitions.

    python benchmarks/build_graph.py [--quick]

Writes results/bench_build_graph.json and results/bench_build_graph.png.
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

RESULTS = os.path.join(os.path.dirname(__file__), "..", "results")


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


def median_ms(fn, repeat):
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    args = parser.parse_args()
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    repeat = 3 if args.quick else 11
    sizes = [100, 500, 2000] if args.quick else [100, 500, 1000, 2000, 5000, 10000]
    loop_sizes = {100, 500, 2000} if args.quick else {100, 500, 1000, 2000}
    results, table = {}, []
    for n in sizes:
        video = proposals(n, generator)
        ours = median_ms(lambda: build_graph(video), repeat)
        edges = build_graph(video).num_edges
        # Without features there are no cosine weights: the graph structure alone.
        structure = Proposals(video.segments)
        results[f"proposals_{n}_structure_ms"] = median_ms(lambda: build_graph(structure), repeat)
        # P-GCN's reference setting: frame units, at most 8 contextual and 2 surrounding sources per node.
        frames = Proposals((video.segments * 30).round(), video.features)
        results[f"proposals_{n}_official_ms"] = median_ms(lambda: build_graph(frames, pgcn_official=True), repeat)
        loop = median_ms(lambda: loop_proposal_graph(video), 1) if n in loop_sizes else None
        results[f"proposals_{n}_ms"] = ours
        results[f"proposals_{n}_edges"] = edges
        if loop is not None:
            results[f"loop_proposals_{n}_ms"] = loop
            results[f"speedup_vs_loop_{n}"] = loop / ours
        table.append(("proposals", n, edges, ours, loop))
    for per_frame in ([10, 50] if args.quick else [10, 20, 30, 40, 50]):
        video = regions(per_frame, generator)
        ours = median_ms(lambda: build_graph(video), repeat)
        loop = median_ms(lambda: loop_region_graph(video), 1)
        results[f"regions_16x{per_frame}_ms"] = ours
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

    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "bench_build_graph.json"), "w") as handle:
        json.dump(results, handle, indent=1)
    plot(table, results, os.path.join(RESULTS, "bench_build_graph.png"))


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
