"""PrototypeBank at MUSLE's paper scale: fused vs materialised sub-graph scoring and training.

One video of 32 nodes, node features 256-d, pair features 64-d, 174 classes x K = 6 diagonal Gaussians per scale,
k in {3, 4, 5} (242 296 sub-graphs). Every case runs in its own subprocess on one thread, so its peak RSS
(``resource.getrusage``) is its own; ``*_extra_gib`` subtracts the RSS measured after imports, model and inputs
(the part the operation itself adds). Times are medians.

    python benchmarks/gmm.py [--quick | --smoke] [--out DIR]

writes ``DIR/bench_gmm.json`` and ``DIR/bench_gmm.png`` (default ``results/``). ``--smoke`` runs every case at a
tiny size (8 nodes, 4 classes), all in one subprocess, to check that the benchmark runs; its figures mean nothing.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIB = 1024 ** 3
#: The keys bench_gmm.json always has (``materialised_*_k4`` are null with ``--quick`` and ``--smoke``).
KEYS = ("fused_s_per_video", "fused_peak_gib", "fused_extra_gib", "fused_train_s_per_video", "fused_train_peak_gib",
        "fused_peak_gib_k4", "fused_extra_gib_k4", "materialised_peak_gib_k4", "materialised_extra_gib_k4",
        "memory_ratio_k4", "memory_ratio_extra_k4", "fused_train_s_k4", "materialised_train_s_k4",
        "fused_scores_s_k3", "materialised_scores_s_k3", "scores_speedup_k3", "fused_train_extra_gib_k3",
        "materialised_train_extra_gib_k3", "fused_train_s_k3", "materialised_train_s_k3", "nodes", "classes",
        "components", "node_channels", "pair_channels", "quick", "smoke")


def rss_gib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / GIB


def worker(spec: dict) -> dict:
    import torch

    sys.path.insert(0, ROOT)
    from videograph.nn import PrototypeBank
    from videograph.subgraph import pair_ptr

    torch.set_num_threads(1)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    nodes = spec["nodes"]
    node_ptr = torch.tensor([0, nodes])
    node_x = torch.randn(nodes, 256, generator=generator)
    pair_x = torch.randn(int(pair_ptr(node_ptr)[-1]), 64, generator=generator)
    y = torch.tensor([7])
    bank = PrototypeBank(spec["classes"], 256, 64, scales=tuple(spec["scales"]), num_components=6)
    for k in bank.scales:  # a spread of running mixtures, as after training
        stack = bank.stack(k)
        stack.running_mu.normal_(generator=generator)
        stack.running_cov.uniform_(0.5, 2.0, generator=generator)
    fused = spec["path"] == "fused"

    def run():
        if spec["op"] == "scores":
            bank.eval()
            with torch.no_grad():
                bank.class_scores(node_x, pair_x, node_ptr, fused=fused)
        else:
            bank.train()
            x, e = node_x.clone().requires_grad_(), pair_x.clone().requires_grad_()
            bank.loss(x, e, node_ptr, y, fused=fused).backward()
            bank.zero_grad(set_to_none=True)

    base = rss_gib()
    times = []
    for _ in range(spec["repeats"]):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB
    return {"s": statistics.median(times), "peak_gib": peak, "extra_gib": peak - base}


def measure(specs: list) -> list:
    """Runs the cases in one fresh subprocess (so only the first one's memory is its own)."""
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(specs)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        print(f"  {specs}: failed ({out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode})")
        return [{"s": None, "peak_gib": None, "extra_gib": None} for _ in specs]
    results = json.loads(out.stdout.strip().splitlines()[-1])
    for spec, result in zip(specs, results):
        print(f"  {spec['path']:>12} {spec['op']:>6} k={spec['scales']} C={spec['classes']}: "
              f"{result['s']:.3f} s, peak {result['peak_gib']:.3f} GiB (+{result['extra_gib']:.3f})", flush=True)
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer repeats, no materialised k = 4")
    size.add_argument("--smoke", action="store_true", help="tiny sizes in one subprocess: checks that it runs")
    parser.add_argument("--out", default=os.path.join(ROOT, "results"),
                        help="folder for bench_gmm.json / .png (default results/)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps([worker(spec) for spec in json.loads(args.worker)]))
        return
    repeats = 1 if args.quick or args.smoke else 3
    paper = {"nodes": 8 if args.smoke else 32, "classes": 4 if args.smoke else 174, "repeats": repeats}
    cases = {
        "fused_scores": dict(paper, path="fused", op="scores", scales=[3, 4, 5]),
        "fused_train": dict(paper, path="fused", op="train", scales=[3, 4, 5], repeats=1),
        "fused_scores_k3": dict(paper, path="fused", op="scores", scales=[3]),
        "materialised_scores_k3": dict(paper, path="materialised", op="scores", scales=[3], repeats=1),
        "fused_train_k3": dict(paper, path="fused", op="train", scales=[3], repeats=1),
        "materialised_train_k3": dict(paper, path="materialised", op="train", scales=[3], repeats=1),
        "fused_train_k4": dict(paper, path="fused", op="train", scales=[4], repeats=1),
    }
    if not args.quick and not args.smoke:
        cases["materialised_train_k4"] = dict(paper, path="materialised", op="train", scales=[4], repeats=1)
    if args.smoke:
        results = dict(zip(cases, measure(list(cases.values()))))
    else:
        results = {name: measure([spec])[0] for name, spec in cases.items()}

    def ratio(a, b):
        return a / b if a is not None and b else None

    fused_k4 = results["fused_train_k4"]
    mat_k4 = results.get("materialised_train_k4", {"peak_gib": None, "extra_gib": None, "s": None})
    figures = {
        "fused_s_per_video": results["fused_scores"]["s"],
        "fused_peak_gib": results["fused_scores"]["peak_gib"],
        "fused_extra_gib": results["fused_scores"]["extra_gib"],
        "fused_train_s_per_video": results["fused_train"]["s"],
        "fused_train_peak_gib": results["fused_train"]["peak_gib"],
        "fused_peak_gib_k4": fused_k4["peak_gib"],
        "fused_extra_gib_k4": fused_k4["extra_gib"],
        "materialised_peak_gib_k4": mat_k4["peak_gib"],
        "materialised_extra_gib_k4": mat_k4["extra_gib"],
        "memory_ratio_k4": ratio(mat_k4["peak_gib"], fused_k4["peak_gib"]),
        "memory_ratio_extra_k4": ratio(mat_k4["extra_gib"], fused_k4["extra_gib"]),
        "fused_train_s_k4": fused_k4["s"],
        "materialised_train_s_k4": mat_k4["s"],
        "fused_scores_s_k3": results["fused_scores_k3"]["s"],
        "materialised_scores_s_k3": results["materialised_scores_k3"]["s"],
        "scores_speedup_k3": ratio(results["materialised_scores_k3"]["s"], results["fused_scores_k3"]["s"]),
        "fused_train_extra_gib_k3": results["fused_train_k3"]["extra_gib"],
        "materialised_train_extra_gib_k3": results["materialised_train_k3"]["extra_gib"],
        "fused_train_s_k3": results["fused_train_k3"]["s"],
        "materialised_train_s_k3": results["materialised_train_k3"]["s"],
        "nodes": paper["nodes"], "classes": paper["classes"], "components": 6, "node_channels": 256,
        "pair_channels": 64, "quick": args.quick, "smoke": args.smoke,
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench_gmm.json"), "w") as f:
        json.dump(figures, f, indent=2)
    print(json.dumps(figures, indent=2))
    plot(results, os.path.join(args.out, "bench_gmm.png"), paper["nodes"], paper["classes"])


def plot(results: dict, path: str, nodes: int, classes: int) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n, r in results.items() if r["s"] is not None]
    colours = ["tab:blue" if n.startswith("fused") else "tab:red" for n in names]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, label in ((axes[0], "s", "seconds per video (median, 1 thread)"),
                           (axes[1], "extra_gib", "peak RSS above baseline (GiB)")):
        ax.barh(names, [results[n][key] for n in names], color=colours)
        ax.set_xlabel(label)
        ax.set_xscale("log")
        ax.invert_yaxis()
    fig.suptitle(f"PrototypeBank, {nodes} nodes, {classes} classes x K=6, node 256-d, pair 64-d "
                 "(blue fused, red materialised)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
