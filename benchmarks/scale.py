"""Past one machine: GraphStore random reads against per-file torch.load, and the store's size on disk.

    python benchmarks/scale.py [--quick | --smoke] [--out DIR]

Writes <out>/bench_scale.json and <out>/bench_scale.png (default results/). Workload: MUSLE-sized tubelet graphs
(32 nodes, 512-d float32 features, 4 x 16 boxes, 992 dense edges with 8-d attributes), one thread. Random reads:
the same shuffled order of single-graph reads from a GraphStore (SQLite shards of PyG's OnDiskDataset) and from
one .pt file per graph (torch.load, weights_only=True), interleaved, medians over rounds.
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from torch_geometric.data import Data  # noqa: E402

from videograph.datasets import GraphStore  # noqa: E402

KEYS = ("store_read_us", "torch_load_read_us", "store_read_speedup", "store_bytes", "raw_tensor_bytes",
        "store_disk_ratio", "pt_files_bytes", "num_graphs")


def tubelet_graph(generator: torch.Generator, i: int) -> Data:
    n = 32
    row, col = torch.triu_indices(n, n, 1)
    edge_index = torch.cat([torch.stack([row, col]), torch.stack([col, row])], 1)
    return Data(x=torch.randn(n, 512, generator=generator), boxes=torch.rand(n, 16, 4, generator=generator),
                dense_edge_index=edge_index, dense_edge_attr=torch.randn(edge_index.size(1), 8, generator=generator),
                clip=torch.arange(n) // 8, y=i % 9)


def raw_bytes(data: Data) -> int:
    return sum(v.numel() * v.element_size() for v in data.to_dict().values() if isinstance(v, torch.Tensor))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer graphs and rounds")
    size.add_argument("--smoke", action="store_true", help="tiny, seconds: checks the benchmark runs")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "results"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    count, reads, rounds = (40, 20, 2) if args.smoke else (500, 200, 3) if args.quick else (2000, 500, 5)
    generator = torch.Generator().manual_seed(0)
    graphs = [tubelet_graph(generator, i) for i in range(count)]
    work = tempfile.mkdtemp(prefix="bench_scale_")
    try:
        store = GraphStore(os.path.join(work, "store"), graphs, shard_size=max(count // 4, 1), progress=False)
        files = os.path.join(work, "pt")
        os.makedirs(files)
        for i, graph in enumerate(graphs):
            torch.save(graph.to_dict(), os.path.join(files, f"{i}.pt"))
        order = torch.randperm(count, generator=generator)[:reads].tolist()

        def read_store():
            for i in order:
                store[i]

        def read_files():
            for i in order:
                Data.from_dict(torch.load(os.path.join(files, f"{i}.pt"), weights_only=True))

        timings = {"store": [], "files": []}
        read_store(), read_files()                       # warm the page cache and the connections
        for _ in range(rounds):
            for name, run in (("store", read_store), ("files", read_files)):
                tic = time.perf_counter()
                run()
                timings[name].append((time.perf_counter() - tic) / reads * 1e6)
        store_us, files_us = statistics.median(timings["store"]), statistics.median(timings["files"])
        store_bytes = sum(os.path.getsize(os.path.join(store.store_root, f)) for f in os.listdir(store.store_root))
        raw = sum(raw_bytes(g) for g in graphs)
        pt_bytes = sum(os.path.getsize(os.path.join(files, f)) for f in os.listdir(files))
        store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = {"store_read_us": store_us, "torch_load_read_us": files_us, "store_read_speedup": files_us / store_us,
               "store_bytes": store_bytes, "raw_tensor_bytes": raw, "store_disk_ratio": store_bytes / raw,
               "pt_files_bytes": pt_bytes, "num_graphs": count}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench_scale.json"), "w") as handle:
        json.dump(results, handle, indent=1)
    plot(results, os.path.join(args.out, "bench_scale.png"))
    print(f"{count} tubelet graphs ({raw / count / 1024:.0f} KiB of tensors each), {reads} random reads x {rounds}:")
    print(f"  GraphStore   {store_us:8.1f} us/graph   ({results['store_read_speedup']:.2f}x per-file torch.load)")
    print(f"  torch.load   {files_us:8.1f} us/graph")
    print(f"  disk: store {store_bytes / raw:.3f}x the raw tensor bytes, .pt files {pt_bytes / raw:.3f}x")


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    axes[0].bar(["GraphStore", "torch.load per file"], [results["store_read_us"], results["torch_load_read_us"]],
                color=["tab:blue", "tab:gray"])
    axes[0].set(ylabel="µs per random read", title=f"random reads ({results['store_read_speedup']:.2f}x)")
    axes[1].bar(["GraphStore", ".pt files"], [results["store_disk_ratio"],
                                              results["pt_files_bytes"] / results["raw_tensor_bytes"]],
                color=["tab:blue", "tab:gray"])
    axes[1].axhline(1.0, color="k", lw=0.8)
    axes[1].set(ylabel="bytes on disk / raw tensor bytes", title="size on disk")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
