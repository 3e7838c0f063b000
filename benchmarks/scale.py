"""Past one machine: GraphStore reads, sharded preprocessing and the DDP step time.

    python benchmarks/scale.py [--quick | --smoke] [--out DIR]

Writes <out>/bench_scale.json and <out>/bench_scale.png (default results/), one thread per process.

* Store reads: MUSLE-sized tubelet graphs (32 nodes, 512-d float32 features, 4 x 16 boxes, 992 dense edges with
  8-d attributes). The same shuffled order of single-graph reads from a GraphStore (SQLite shards of PyG's
  OnDiskDataset) and from one .pt file per graph (torch.load, weights_only=True), interleaved, medians over
  rounds; and the bytes on disk against the raw tensor bytes.
* Preprocessing: `python -m videograph preprocess` of a written SSN-format proposal list (P-GCN graphs of
  200-600 proposals per video) as one process, then as two processes side by side (--shard-index 0/1 of 2),
  wall time of the whole command including start-up, one torch thread per process (OMP_NUM_THREADS=1: both
  runs use one thread per process; a second intra-op thread spins on a loaded machine), medians of interleaved
  rounds. Every command starts in its own session, as commands typed in two terminals or started on
  two machines do: Linux's autogroup scheduler shares the CPU between sessions, not processes, so on a machine
  that others load, two processes of one session get the CPU time of one. The same holds for a CPU-bound
  reference (a Python loop: one process doing 2 N steps against two doing N each) measured in the same run, whose
  ratio is the most 2 processes could gain on the machine at that moment (`cpu_ceiling_2_procs`); the load
  average and the CPU seconds of both runs are recorded with it.
* DDP: `torchrun --nproc-per-node=K -m videograph train --model strg` (gloo), K = 1 and 2, the same batch per
  rank: seconds per optimiser step and graphs per second.
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
        "store_disk_ratio", "pt_files_bytes", "num_graphs", "preprocess_serial_s", "preprocess_2_shards_s",
        "preprocess_speedup_2_shards", "preprocess_serial_cpu_s", "preprocess_2_shards_cpu_s", "cpu_ceiling_2_procs",
        "load_average", "ddp_step_ms_1_rank", "ddp_step_ms_2_ranks", "ddp_graphs_per_s_1_rank",
        "ddp_graphs_per_s_2_ranks")

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def tubelet_graph(generator: torch.Generator, i: int) -> Data:
    n = 32
    row, col = torch.triu_indices(n, n, 1)
    edge_index = torch.cat([torch.stack([row, col]), torch.stack([col, row])], 1)
    return Data(x=torch.randn(n, 512, generator=generator), boxes=torch.rand(n, 16, 4, generator=generator),
                dense_edge_index=edge_index, dense_edge_attr=torch.randn(edge_index.size(1), 8, generator=generator),
                clip=torch.arange(n) // 8, y=i % 9)


def raw_bytes(data: Data) -> int:
    return sum(v.numel() * v.element_size() for v in data.to_dict().values() if isinstance(v, torch.Tensor))


def write_proposal_list(path: str, num_videos: int, generator: torch.Generator) -> None:
    """An SSN-format normalised proposal list: per video 200-600 proposals around 20 actions."""
    lines = []
    for v in range(num_videos):
        count = int(torch.randint(200, 600, (1,), generator=generator))
        centre = torch.rand(20, generator=generator)
        length = 0.01 + 0.04 * torch.rand(20, generator=generator)
        which = torch.randint(0, 20, (count,), generator=generator)
        c = centre[which] + 0.3 * length[which] * torch.randn(count, generator=generator)
        half = length[which] * (0.5 + 0.3 * torch.rand(count, generator=generator))
        start, end = (c - half).clamp(0, 0.999), (c + half).clamp(0.001, 1)
        end = torch.maximum(end, start + 0.001)
        lines += [f"# {v}", f"video_{v}", "1000", "1", "1", f"1 {float(centre[0]):.4f} {float(centre[0] + 0.02):.4f}",
                  str(count)]
        lines += [f"1 0.5000 0.5000 {float(a):.4f} {float(b):.4f}" for a, b in zip(start, end)]
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")


def _timed(commands, env, *, cpu: bool = False):
    """Wall seconds of ``commands`` run side by side (each in its own session), and with ``cpu`` their CPU
    seconds (user + system of the children)."""
    import resource
    import subprocess
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    tic = time.perf_counter()
    running = [subprocess.Popen(c, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True) for c in commands]
    for process in running:
        _, err = process.communicate()
        if process.returncode:
            raise RuntimeError(f"{' '.join(commands[0])} failed: {err.decode()[-2000:]}")
    wall = time.perf_counter() - tic
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return (wall, used) if cpu else wall


SPIN = "import sys\nx = 0\nfor i in range(int(sys.argv[1])):\n    x += i * i\n"


def cpu_ceiling(steps: int) -> float:
    """One process looping 2 ``steps`` times against two looping ``steps`` times each: the speed-up two processes
    get from the machine right now (2.0 on two idle cores)."""
    one = _timed([[sys.executable, "-c", SPIN, str(2 * steps)]], os.environ)
    two = _timed([[sys.executable, "-c", SPIN, str(steps)]] * 2, os.environ)
    return one / two


def preprocessing(work: str, num_videos: int, generator: torch.Generator, rounds: int, spin: int) -> dict:
    listing = os.path.join(work, "list.txt")
    write_proposal_list(listing, num_videos, generator)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    base = [sys.executable, "-m", "videograph", "preprocess", listing, "--kind", "proposals", "--no-progress",
            "--shard-size", str(max(num_videos // 8, 1))]
    runs, ceilings, loads = [], [], []
    for r in range(rounds):
        loads.append(os.getloadavg()[0])
        ceilings.append(cpu_ceiling(spin))
        serial = _timed([base + ["--out", os.path.join(work, f"serial{r}")]], env, cpu=True)
        two = _timed([base + ["--out", os.path.join(work, f"two{r}"), "--shard-index", str(i), "--num-shards", "2"]
                      for i in (0, 1)], env, cpu=True)
        runs.append((serial, two))
        shutil.rmtree(os.path.join(work, f"serial{r}")), shutil.rmtree(os.path.join(work, f"two{r}"))
    median = statistics.median
    return {"preprocess_serial_s": median(s[0] for s, _ in runs), "preprocess_2_shards_s": median(t[0] for _, t in runs),
            "preprocess_speedup_2_shards": median(s[0] / t[0] for s, t in runs),
            "preprocess_serial_cpu_s": median(s[1] for s, _ in runs),
            "preprocess_2_shards_cpu_s": median(t[1] for _, t in runs),
            "cpu_ceiling_2_procs": median(ceilings), "load_average": median(loads)}


def ddp_steps(work: str, steps: int, batch_size: int, num_videos: int) -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    out = {}
    for ranks, name in ((1, "1_rank"), (2, "2_ranks")):
        folder = os.path.join(work, f"ddp{ranks}")
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}", "-m",
                   "videograph", "train", "--model", "strg", "--steps", str(steps), "--batch-size", str(batch_size),
                   "--num-videos", str(num_videos), "--no-progress", "--out", folder]
        _timed([command], env)
        with open(os.path.join(folder, "metrics.json")) as handle:
            metrics = json.load(handle)
        out[f"ddp_step_ms_{name}"] = 1e3 * metrics["seconds"] / metrics["steps"]
        out[f"ddp_graphs_per_s_{name}"] = metrics["graphs"] / metrics["seconds"]
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer graphs and rounds")
    size.add_argument("--smoke", action="store_true", help="tiny, seconds: checks the benchmark runs")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "results"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    count, reads, rounds = (40, 20, 2) if args.smoke else (500, 200, 3) if args.quick else (2000, 500, 5)
    videos, steps, ddp_videos = (8, 3, 32) if args.smoke else (2000, 20, 128) if args.quick else (4000, 40, 256)
    prep_rounds, spin = (1, 10 ** 5) if args.smoke else (3, 2 * 10 ** 7) if args.quick else (3, 3 * 10 ** 7)
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
        scaling = preprocessing(work, videos, generator, prep_rounds, spin)
        scaling.update(ddp_steps(work, steps, 8, ddp_videos))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = {"store_read_us": store_us, "torch_load_read_us": files_us, "store_read_speedup": files_us / store_us,
               "store_bytes": store_bytes, "raw_tensor_bytes": raw, "store_disk_ratio": store_bytes / raw,
               "pt_files_bytes": pt_bytes, "num_graphs": count, **scaling}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench_scale.json"), "w") as handle:
        json.dump(results, handle, indent=1)
    plot(results, os.path.join(args.out, "bench_scale.png"))
    print(f"{count} tubelet graphs ({raw / count / 1024:.0f} KiB of tensors each), {reads} random reads x {rounds}:")
    print(f"  GraphStore   {store_us:8.1f} us/graph   ({results['store_read_speedup']:.2f}x per-file torch.load)")
    print(f"  torch.load   {files_us:8.1f} us/graph")
    print(f"  disk: store {store_bytes / raw:.3f}x the raw tensor bytes, .pt files {pt_bytes / raw:.3f}x")
    print(f"preprocess {videos} proposal videos: 1 process {results['preprocess_serial_s']:.1f} s "
          f"({results['preprocess_serial_cpu_s']:.1f} s CPU), 2 shards {results['preprocess_2_shards_s']:.1f} s "
          f"({results['preprocess_2_shards_cpu_s']:.1f} s CPU): {results['preprocess_speedup_2_shards']:.2f}x; "
          f"a CPU-bound loop gets {results['cpu_ceiling_2_procs']:.2f}x from 2 processes now (load "
          f"{results['load_average']:.1f})")
    print(f"DDP STRG step (batch 8 per rank): 1 rank {results['ddp_step_ms_1_rank']:.1f} ms "
          f"({results['ddp_graphs_per_s_1_rank']:.0f} graphs/s), 2 ranks {results['ddp_step_ms_2_ranks']:.1f} ms "
          f"({results['ddp_graphs_per_s_2_ranks']:.0f} graphs/s)")


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.5))
    axes[0].bar(["GraphStore", "torch.load per file"], [results["store_read_us"], results["torch_load_read_us"]],
                color=["tab:blue", "tab:gray"])
    axes[0].set(ylabel="µs per random read", title=f"random reads ({results['store_read_speedup']:.2f}x)")
    axes[1].bar(["GraphStore", ".pt files"], [results["store_disk_ratio"],
                                              results["pt_files_bytes"] / results["raw_tensor_bytes"]],
                color=["tab:blue", "tab:gray"])
    axes[1].axhline(1.0, color="k", lw=0.8)
    axes[1].set(ylabel="bytes on disk / raw tensor bytes", title="size on disk")
    axes[2].bar(["1 process", "2 shards"], [results["preprocess_serial_s"], results["preprocess_2_shards_s"]],
                color=["tab:gray", "tab:blue"])
    axes[2].set(ylabel="s", title=f"preprocessing {results['preprocess_speedup_2_shards']:.2f}x "
                                  f"(CPU ceiling {results['cpu_ceiling_2_procs']:.2f}x)")
    axes[3].bar(["1 rank", "2 ranks"], [results["ddp_graphs_per_s_1_rank"], results["ddp_graphs_per_s_2_ranks"]],
                color=["tab:gray", "tab:blue"])
    axes[3].set(ylabel="graphs / s", title="DDP training throughput (STRG)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
