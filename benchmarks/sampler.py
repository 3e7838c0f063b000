"""Neighbour-sampling throughput: videograph's NeighborSampler against a naive per-node loop and PyG.

    python benchmarks/sampler.py [--quick | --smoke] [--out DIR] [--no-progress]

Writes DIR/bench_sampler.json (default results/; medians over mini-batches, seeds per second, one thread) and
DIR/bench_sampler.png. Workloads: a uniform random graph (100 k nodes, 1 M edges) and a batch of 64
synthetic P-GCN proposal graphs (2 000 proposals each); num_neighbors [4, 4], 1 024 seeds per mini-batch.
PyG's NeighborSampler / NeighborLoader are timed when pyg-lib or torch-sparse is installed (else null).
``--smoke`` runs tiny workloads in seconds, to check that the benchmark runs (its figures mean nothing).
"""
import argparse
import json
import os
import statistics
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch_geometric.typing  # noqa: E402
from torch_geometric.data import Batch, Data  # noqa: E402
from torch_geometric.loader import NodeLoader  # noqa: E402
from torch_geometric.sampler import NodeSamplerInput  # noqa: E402
from tqdm import tqdm  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from videograph import Proposals, build_graph  # noqa: E402
from videograph.sampler import NeighborLoader, NeighborSampler  # noqa: E402

NUM_NEIGHBORS = [4, 4]
BATCH_SIZE = 1024
NUM_FEATURES = 64
WORKLOADS = ("random", "proposals")
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "results")
_PER_WORKLOAD = ("seeds_per_s", "loader_seeds_per_s", "neighbor_loader_seeds_per_s", "naive_seeds_per_s",
                 "pyg_seeds_per_s", "pyg_loader_seeds_per_s", "speedup_vs_naive", "speedup_vs_pyg",
                 "loader_speedup_vs_pyg", "build_s", "num_nodes", "num_edges")
#: The keys bench_sampler.json always has (the PyG ones are null without pyg-lib / torch-sparse).
KEYS = ("threads", "batch_size", "num_neighbors", "num_features", "quick", "smoke", "num_videos", "naive_note",
        "pyg_note", "speedup_vs_pyg") + tuple(f"{key}_{w}" for w in WORKLOADS for key in _PER_WORKLOAD)
#: Keys that are numbers, not null, whenever the named package is importable (``make test-ext`` checks them).
EXT_KEYS = {"torch_sparse": tuple(f"{key}_{w}" for w in WORKLOADS for key in (
    "pyg_seeds_per_s", "pyg_loader_seeds_per_s", "speedup_vs_pyg", "loader_speedup_vs_pyg"))}


def random_graph(num_nodes, num_edges, generator):
    edge_index = torch.randint(0, num_nodes, (2, num_edges), generator=generator)
    return Data(x=torch.randn(num_nodes, NUM_FEATURES, generator=generator), edge_index=edge_index,
                y=torch.randint(0, 10, (num_nodes, ), generator=generator))


def proposal_graph(num_proposals, generator, duration=4000.0, num_actions=100):
    # Proposals jitter action instances (or lie anywhere, for background); P-GCN's edges from build_graph.
    action_centre = torch.rand(num_actions, generator=generator) * duration
    action_length = 5 + torch.rand(num_actions, generator=generator) * 25
    which = torch.randint(-num_actions // 4, num_actions, (num_proposals, ), generator=generator)
    is_action = which >= 0
    a = which.clamp(min=0)
    jitter = 0.4 * (torch.rand(num_proposals, 2, generator=generator) - 0.5)
    centre = torch.where(is_action, action_centre[a] + jitter[:, 0] * action_length[a],
                         torch.rand(num_proposals, generator=generator) * duration)
    length = torch.where(is_action, action_length[a] * (1 + jitter[:, 1]),
                         5 + torch.rand(num_proposals, generator=generator) * 25)
    segments = torch.stack([centre - length / 2, centre + length / 2], dim=-1)
    segments = segments - segments.min().clamp(max=0)
    x = torch.randn(num_proposals, NUM_FEATURES, generator=generator)
    return build_graph(Proposals(segments, x, labels=torch.where(is_action, a % 20 + 1, torch.zeros_like(a))))


def naive_sample(colptr, row, seeds, num_neighbors, generator):
    # The textbook loop: one torch.randperm per node, a dict for relabelling.
    node = seeds.tolist()
    local = {v: i for i, v in enumerate(node)}
    rows, cols, edges = [], [], []
    begin, end = 0, len(node)
    for k in num_neighbors:
        for i in range(begin, end):
            lo, hi = int(colptr[node[i]]), int(colptr[node[i] + 1])
            pick = torch.randperm(hi - lo, generator=generator)[:k] + lo
            for e in pick.tolist():
                j = int(row[e])
                if j not in local:
                    local[j] = len(node)
                    node.append(j)
                rows.append(local[j])
                cols.append(i)
                edges.append(e)
        begin, end = end, len(node)
    return torch.tensor(node), torch.tensor(rows), torch.tensor(cols), torch.tensor(edges)


class LoaderStep:
    """One mini-batch per call from a loader, restarting it when it runs out; returns its number of seeds."""

    def __init__(self, loader):
        self.loader, self.iterator = loader, iter(loader)

    def __call__(self, seeds):
        try:
            mb = next(self.iterator)
        except StopIteration:
            self.iterator = iter(self.loader)
            mb = next(self.iterator)
        return mb.input_id.numel()  # not `batch_size`: a property of Batch


def interleaved_medians(steps, batches, rounds, warmup, progress, desc):
    """Per-method median of the seconds per seed of each call.

    ``steps`` maps a name to ``(step, num_seeds, every)``: ``step(seeds)`` samples ``seeds[:num_seeds]`` (the
    loaders draw their own) and returns the number of seeds it sampled, every ``every``-th round. Only calls
    that sampled ``num_seeds`` are counted (a loader's last, smaller mini-batch is not). Round-robin over the
    methods, so that load from other processes on this shared machine hits them alike.
    """
    per_seed = {name: [] for name in steps}
    for r in tqdm(range(warmup + rounds), desc=desc, disable=not progress, leave=False):
        for name, (step, num_seeds, every) in steps.items():
            if r % every:
                continue
            t = time.perf_counter()
            n = step(batches[r % len(batches)][:num_seeds])
            elapsed = time.perf_counter() - t
            if not isinstance(n, int):
                raise TypeError(f"step {name!r} must return its number of seeds, got {type(n).__name__}")
            if r >= warmup and n == num_seeds:
                per_seed[name].append(elapsed / num_seeds)
    empty = [name for name, v in per_seed.items() if not v]
    if empty:
        raise RuntimeError(f"no complete timed call for {empty}: more rounds are needed")
    return {name: statistics.median(v) for name, v in per_seed.items()}


def sizes(args):
    """(random graph nodes, edges, proposal graphs, proposals each, seeds per mini-batch, rounds, warm-up,
    naive seeds, naive every)."""
    if args.smoke:
        return 4_000, 40_000, 2, 300, 128, 4, 1, 8, 1
    if args.quick:
        return 100_000, 1_000_000, 16, 2000, BATCH_SIZE, 20, 5, 32, 5
    return 100_000, 1_000_000, 64, 2000, BATCH_SIZE, 100, 5, 128, 5


def run_workload(name, data, args, generator):
    _, _, _, _, batch_size, rounds, warmup, naive_seeds, naive_every = sizes(args)
    t = time.perf_counter()
    sampler = NeighborSampler(data, NUM_NEIGHBORS, generator=generator)
    build = time.perf_counter() - t
    perm = torch.randperm(data.num_nodes, generator=generator)
    batches = [perm[b * batch_size:(b + 1) * batch_size] for b in range(data.num_nodes // batch_size)]

    def ours(seeds):
        sampler.sample_from_nodes(NodeSamplerInput(None, seeds))
        return seeds.numel()

    def naive(seeds):
        naive_sample(sampler.ptr, sampler.row, seeds, NUM_NEIGHBORS, generator)
        return seeds.numel()

    steps = {
        "ours": (ours, batch_size, 1),
        "loader": (LoaderStep(NodeLoader(data, node_sampler=sampler, batch_size=batch_size, shuffle=True,
                                         generator=generator)), batch_size, 1),
        "neighbor_loader": (LoaderStep(NeighborLoader(data, NUM_NEIGHBORS, batch_size=batch_size, shuffle=True,
                                                      generator=generator)), batch_size, 1),
        "naive": (naive, naive_seeds, naive_every),
    }
    if torch_geometric.typing.WITH_PYG_LIB or torch_geometric.typing.WITH_TORCH_SPARSE:
        from torch_geometric.loader import NeighborLoader as PyGNeighborLoader
        from torch_geometric.sampler import NeighborSampler as PyGNeighborSampler
        pyg_sampler = PyGNeighborSampler(data, NUM_NEIGHBORS)

        def pyg(seeds):
            pyg_sampler.sample_from_nodes(NodeSamplerInput(None, seeds))  # a SamplerOutput
            return seeds.numel()

        steps["pyg"] = (pyg, batch_size, 1)
        steps["pyg_loader"] = (LoaderStep(PyGNeighborLoader(data, NUM_NEIGHBORS, batch_size=batch_size,
                                                            shuffle=True)), batch_size, 1)
    sec = interleaved_medians(steps, batches, rounds, warmup, args.progress, name)

    def rate(key):
        return 1 / sec[key] if key in sec else None

    return {
        f"seeds_per_s_{name}": rate("ours"),
        f"loader_seeds_per_s_{name}": rate("loader"),
        f"neighbor_loader_seeds_per_s_{name}": rate("neighbor_loader"),
        f"naive_seeds_per_s_{name}": rate("naive"),
        f"pyg_seeds_per_s_{name}": rate("pyg"),
        f"pyg_loader_seeds_per_s_{name}": rate("pyg_loader"),
        f"speedup_vs_naive_{name}": sec["naive"] / sec["ours"],
        f"speedup_vs_pyg_{name}": sec["pyg"] / sec["ours"] if "pyg" in sec else None,
        f"loader_speedup_vs_pyg_{name}": sec["pyg_loader"] / sec["loader"] if "pyg_loader" in sec else None,
        f"build_s_{name}": build,
        f"num_nodes_{name}": int(data.num_nodes),
        f"num_edges_{name}": int(data.edge_index.size(1)),
    }


def plot(results, path):
    methods = [("videograph sample_from_nodes", "seeds_per_s"),
               ("NodeLoader + videograph", "loader_seeds_per_s"),
               ("videograph NeighborLoader", "neighbor_loader_seeds_per_s"),
               ("naive randperm loop", "naive_seeds_per_s"),
               ("PyG NeighborSampler", "pyg_seeds_per_s")]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.16
    for m, (label, key) in enumerate(methods):
        values = [results.get(f"{key}_{w}") or 0 for w in ("random", "proposals")]
        if not any(values):
            label += " (not installed)"
        bars = ax.bar([w + (m - 2) * width for w in range(2)], values, width, label=label)
        for bar, v in zip(bars, values):
            if v:
                ax.annotate(f"{v / 1e3:.0f}k", (bar.get_x() + width / 2, v), ha="center", va="bottom", fontsize=7)
    ax.axhline(300e3, color="grey", linestyle="--", linewidth=0.8, label="goal 300k seeds/s")
    ax.set_yscale("log")
    ax.set_xticks(range(2), [f"random {results['num_nodes_random'] // 1000}k nodes / "
                             f"{results['num_edges_random'] / 1e6:.2g}M edges",
                             f"{results['num_videos']} proposal graphs x {results['num_proposals']}"])
    ax.set_ylabel("seeds / s (1 thread, median)")
    ax.set_title(f"Neighbour sampling {NUM_NEIGHBORS}, {results['batch_size']} seeds per mini-batch")
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer mini-batches and a smaller proposal batch")
    size.add_argument("--smoke", action="store_true", help="tiny workloads, seconds: checks that it runs")
    parser.add_argument("--out", default=RESULTS, help="folder for bench_sampler.json / .png (default results/)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)

    num_nodes, num_edges, num_videos, num_proposals, batch_size, _, _, naive_seeds, naive_every = sizes(args)
    random_data = random_graph(num_nodes, num_edges, generator)
    duration = 4000.0 * num_proposals / 2000  # the same density of proposals
    graphs = [proposal_graph(num_proposals, generator, duration=duration)
              for _ in tqdm(range(num_videos), desc="proposal graphs", disable=not args.progress, leave=False)]
    proposals = Batch.from_data_list(graphs)

    results = {"threads": torch.get_num_threads(), "batch_size": batch_size, "num_neighbors": NUM_NEIGHBORS,
               "num_features": NUM_FEATURES, "quick": args.quick, "smoke": args.smoke, "num_videos": num_videos,
               "num_proposals": num_proposals,
               "naive_note": f"naive loop timed on the first {naive_seeds} seeds of 1 in {naive_every} "
               "mini-batches, seeds/s scaled from that subset",
               "pyg_note": None if torch_geometric.typing.WITH_PYG_LIB or torch_geometric.typing.WITH_TORCH_SPARSE
               else "PyG's NeighborSampler needs pyg-lib or torch-sparse; neither is installed, so null"}
    results.update(run_workload("random", random_data, args, generator))
    results.update(run_workload("proposals", proposals, args, generator))
    results["speedup_vs_pyg"] = results["speedup_vs_pyg_random"]

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench_sampler.json"), "w") as f:
        json.dump(results, f, indent=2)
    plot(results, os.path.join(args.out, "bench_sampler.png"))
    for key, value in results.items():
        print(f"{key:40s} {value:,.1f}" if isinstance(value, float) else f"{key:40s} {value}")


if __name__ == "__main__":
    main()
