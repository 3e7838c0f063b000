"""Benchmark of k-node sub-graph enumeration (videograph.subgraph), one thread.

Complete mode (MUSLE's k = 3, 4, 5 sub-graphs of a 32-node video graph) against
``itertools.combinations`` (converted to a tensor) and ``torch.combinations``;
connected mode on 200-node sparse graphs against an ESU written on networkx's
adjacency. Writes ``results/bench_subgraphs.json`` (flat dict, medians in ms) and
``results/bench_subgraphs.png`` (time vs k, time vs nodes).

Cold = the (n, k) table cache emptied before every run; warm = cache filled (the
32-node case is then a table lookup plus the per-graph offset add).

``connected_speedup_vs_networkx`` is measured on a batch of 16 such graphs (k = 3 and 4);
``connected_single_speedup_vs_networkx`` on one graph, where fixed per-call overhead
weighs more.

Usage: python benchmarks/subgraphs.py [--quick | --smoke] [--out DIR]  (DIR defaults to results/; ``--smoke``
runs one repetition of small sizes, to check that the benchmark runs: its figures mean nothing)
"""
from __future__ import annotations

import argparse
import gc
import itertools
import json
import math
import os
import statistics
import sys
import time
from typing import Callable, Dict, List

import networkx as nx
import torch
from torch_geometric.data import Batch, Data

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from videograph.subgraph import clear_cache, enumerate_subgraphs, iter_subgraphs, multiscale

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'results')
COLLECT = True
#: The keys bench_subgraphs.json always has.
KEYS = ('complete_32_num_subgraphs', 'itertools_32_k345_ms', 'itertools_list_only_32_k345_ms',
        'torch_combinations_32_k345_ms', 'complete_32_k345_ms', 'complete_32_k345_warm_ms', 'speedup_vs_itertools',
        'speedup_vs_itertools_warm', 'speedup_vs_torch_combinations', 'complete_batch16_k345_ms',
        'complete_batch16_k345_warm_ms', 'complete_batch16_k345_streamed_ms', 'batch16_over_single',
        'batch16_over_single_warm', 'connected_200_k3_num_subgraphs', 'connected_200_k3_networkx_ms',
        'connected_200_k3_ms', 'connected_200_k3_speedup_vs_networkx', 'connected_200_k4_num_subgraphs',
        'connected_200_k4_networkx_ms', 'connected_200_k4_ms', 'connected_200_k4_speedup_vs_networkx',
        'connected_200_mean_degree', 'connected_single_speedup_vs_networkx', 'connected_batch16_k34_ms',
        'connected_batch16_k34_networkx_ms', 'connected_speedup_vs_networkx', 'smoke')


def median_ms(fn: Callable[[], object], reps: int, setup: Callable[[], None] = lambda: None) -> float:
    """Median wall time in ms; like :mod:`timeit`, the garbage collector is off while timing."""
    if COLLECT:  # a full collection takes up to a second here: skipped with --smoke
        gc.collect()
    gc.disable()
    try:
        times = []
        for _ in range(reps):
            setup()
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    finally:
        gc.enable()
    return 1e3 * statistics.median(times)


def itertools_tensor(n: int, ks) -> List[torch.Tensor]:
    return [torch.tensor(list(itertools.combinations(range(n), k))) for k in ks]


def torch_combinations(n: int, ks) -> List[torch.Tensor]:
    nodes = torch.arange(n)
    return [torch.combinations(nodes, k) for k in ks]


def networkx_esu(G: nx.Graph, k: int) -> List[tuple]:
    """Wernicke's ESU on networkx adjacency: every connected induced k-set once."""
    out, adj = [], G.adj

    def extend(sub, ext, excluded, root):
        if len(sub) == k:
            out.append(tuple(sorted(sub)))
            return
        ext = list(ext)
        while ext:
            w = ext.pop()
            new = [u for u in adj[w] if u > root and u not in excluded]
            extend(sub + [w], ext + new, excluded | adj[w].keys() | {w}, root)

    for v in G.nodes:
        extend([v], [u for u in adj[v] if u > v], set(adj[v]) | {v}, v)
    return out


def sparse_graph(n: int, degree: float, seed: int) -> nx.Graph:
    return nx.gnp_random_graph(n, degree / (n - 1), seed=seed)


def to_data(G: nx.Graph) -> Data:
    edge_index = torch.tensor(list(G.edges()), dtype=torch.long).t().reshape(2, -1).contiguous()
    return Data(edge_index=edge_index, num_nodes=G.number_of_nodes())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument('--quick', action='store_true', help='fewer repetitions and sizes')
    size.add_argument('--smoke', action='store_true', help='one repetition of small sizes: checks that it runs')
    parser.add_argument('--out', default=RESULTS, help='folder for bench_subgraphs.json / .png (default results/)')
    args = parser.parse_args(argv)
    args.quick = args.quick or args.smoke
    global COLLECT
    COLLECT = not args.smoke
    torch.set_num_threads(1)
    reps = 1 if args.smoke else 5 if args.quick else 15

    def times(n: int) -> int:  # repetitions of a slow case: one with --smoke
        return 1 if args.smoke else n

    res: Dict[str, float] = {}
    ks = (3, 4, 5)

    # ------------------------------------------------------------ complete, 32 nodes
    video = Data(num_nodes=32)
    total = sum(len(s) for s in multiscale(video, ks).values())
    assert total == 242_296, total
    for k in ks:  # identical output to the itertools oracle
        assert torch.equal(enumerate_subgraphs(video, k).nodes, itertools_tensor(32, [k])[0])
    res['complete_32_num_subgraphs'] = total
    res['itertools_32_k345_ms'] = median_ms(lambda: itertools_tensor(32, ks), times(max(3, reps // 3)))
    res['itertools_list_only_32_k345_ms'] = median_ms(
        lambda: [list(itertools.combinations(range(32), k)) for k in ks], reps)
    res['torch_combinations_32_k345_ms'] = median_ms(lambda: torch_combinations(32, ks), times(1 if args.quick else 3))
    res['complete_32_k345_ms'] = median_ms(lambda: multiscale(video, ks), reps, setup=clear_cache)
    multiscale(video, ks)
    res['complete_32_k345_warm_ms'] = median_ms(lambda: multiscale(video, ks), reps)
    res['speedup_vs_itertools'] = res['itertools_32_k345_ms'] / res['complete_32_k345_ms']
    res['speedup_vs_itertools_warm'] = res['itertools_32_k345_ms'] / res['complete_32_k345_warm_ms']
    res['speedup_vs_torch_combinations'] = res['torch_combinations_32_k345_ms'] / res['complete_32_k345_ms']

    batch = Batch.from_data_list([Data(num_nodes=32) for _ in range(16)])
    batch_reps = 1 if args.smoke else max(3, reps // 3)
    res['complete_batch16_k345_ms'] = median_ms(lambda: multiscale(batch, ks), batch_reps, setup=clear_cache)
    multiscale(batch, ks)
    res['complete_batch16_k345_warm_ms'] = median_ms(lambda: multiscale(batch, ks), batch_reps)
    res['complete_batch16_k345_streamed_ms'] = median_ms(
        lambda: [len(c) for k in ks for c in iter_subgraphs(batch, k, chunk_size=65536)], batch_reps)
    res['batch16_over_single'] = res['complete_batch16_k345_ms'] / res['complete_32_k345_ms']
    res['batch16_over_single_warm'] = res['complete_batch16_k345_warm_ms'] / res['complete_32_k345_warm_ms']

    # Time vs k (32 nodes) and vs nodes (k = 4).
    k_sweep = list(range(1, 4 if args.smoke else 6 if args.quick else 7))
    vs_k = {'k': k_sweep, 'cold': [], 'warm': [], 'itertools': [], 'torch.combinations': []}
    for k in k_sweep:
        vs_k['cold'].append(median_ms(lambda: enumerate_subgraphs(video, k), reps, setup=clear_cache))
        enumerate_subgraphs(video, k)
        vs_k['warm'].append(median_ms(lambda: enumerate_subgraphs(video, k), reps))
        vs_k['itertools'].append(median_ms(lambda: itertools_tensor(32, [k]), times(1 if k > 5 else 3)))
        vs_k['torch.combinations'].append(
            median_ms(lambda: torch_combinations(32, [k]), 1) if k <= 5 else math.nan)
    n_sweep = [8, 16] if args.smoke else [8, 16, 32] if args.quick else [8, 16, 24, 32, 40]
    vs_n = {'n': n_sweep, 'cold': [], 'warm': [], 'itertools': []}
    for n in n_sweep:
        graph = Data(num_nodes=n)
        vs_n['cold'].append(median_ms(lambda: enumerate_subgraphs(graph, 4), reps, setup=clear_cache))
        vs_n['warm'].append(median_ms(lambda: enumerate_subgraphs(graph, 4), reps))
        vs_n['itertools'].append(median_ms(lambda: itertools_tensor(n, [4]), times(3)))

    # ------------------------------------------------------------ connected, 200 nodes
    degree = 4.0
    G = sparse_graph(200, degree, seed=0)
    data = to_data(G)
    nx_total = ours_total = 0.0
    for k in (3, 4):
        ours = enumerate_subgraphs(data, k, mode='connected')
        assert [tuple(r) for r in ours.nodes.tolist()] == sorted(networkx_esu(G, k))
        res[f'connected_200_k{k}_num_subgraphs'] = len(ours)
        t_nx = median_ms(lambda: networkx_esu(G, k), times(max(3, reps // 2)))
        t_ours = median_ms(lambda: enumerate_subgraphs(data, k, mode='connected'), reps)
        res[f'connected_200_k{k}_networkx_ms'] = t_nx
        res[f'connected_200_k{k}_ms'] = t_ours
        res[f'connected_200_k{k}_speedup_vs_networkx'] = t_nx / t_ours
        nx_total += t_nx
        ours_total += t_ours
    res['connected_200_mean_degree'] = 2 * G.number_of_edges() / G.number_of_nodes()
    res['connected_single_speedup_vs_networkx'] = nx_total / ours_total

    graphs = [sparse_graph(200, degree, seed=s) for s in range(2 if args.smoke else 16)]
    cbatch = Batch.from_data_list([to_data(g) for g in graphs])
    res['connected_batch16_k34_ms'] = median_ms(
        lambda: [enumerate_subgraphs(cbatch, k, mode='connected') for k in (3, 4)], times(max(3, reps // 3)))
    res['connected_batch16_k34_networkx_ms'] = median_ms(
        lambda: [networkx_esu(g, k) for g in graphs for k in (3, 4)], 3 if not args.quick else 1)
    # Headline: the batched use (16 graphs of 200 nodes, k = 3 and 4), what connected mode is for.
    res['connected_speedup_vs_networkx'] = res['connected_batch16_k34_networkx_ms'] / res['connected_batch16_k34_ms']
    res['smoke'] = args.smoke  # with --smoke, the batches hold 2 graphs, not 16

    c_sweep = [50] if args.smoke else [50, 200] if args.quick else [50, 100, 200, 400]
    vs_cn = {'n': c_sweep, 'ours': [], 'networkx': []}
    for n in c_sweep:
        Gn = sparse_graph(n, degree, seed=1)
        dn = to_data(Gn)
        vs_cn['ours'].append(median_ms(lambda: enumerate_subgraphs(dn, 4, mode='connected'), reps))
        vs_cn['networkx'].append(median_ms(lambda: networkx_esu(Gn, 4), times(3)))

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, 'bench_subgraphs.json'), 'w') as f:
        json.dump({key: round(v, 4) if isinstance(v, float) else v for key, v in res.items()}, f, indent=2)
    plot(vs_k, vs_n, vs_cn, os.path.join(args.out, 'bench_subgraphs.png'))
    for key, value in res.items():
        print(f'{key:45s} {value:12.3f}' if isinstance(value, float) else f'{key:45s} {value:12d}')


def plot(vs_k, vs_n, vs_cn, path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    for name in ('cold', 'warm', 'itertools', 'torch.combinations'):
        label = f'videograph ({name} cache)' if name in ('cold', 'warm') else name
        ax.plot(vs_k['k'], vs_k[name], marker='o', label=label)
    ax.set(title='complete, 32 nodes: time vs k', xlabel='k', ylabel='median time [ms]', yscale='log')
    ax.legend()
    ax = axes[1]
    for name in ('cold', 'warm', 'itertools'):
        label = f'videograph ({name} cache)' if name in ('cold', 'warm') else name
        ax.plot(vs_n['n'], vs_n[name], marker='o', label=label)
    ax.set(title='complete, k = 4: time vs nodes', xlabel='nodes', ylabel='median time [ms]', yscale='log')
    ax.legend()
    ax = axes[2]
    ax.plot(vs_cn['n'], vs_cn['ours'], marker='o', label='videograph (batched ESU)')
    ax.plot(vs_cn['n'], vs_cn['networkx'], marker='o', label='ESU on networkx')
    ax.set(title='connected, k = 4, mean degree 4: time vs nodes', xlabel='nodes',
           ylabel='median time [ms]', xscale='log', yscale='log')
    ax.legend()
    fig.suptitle('videograph.subgraph, 1 thread')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == '__main__':
    main()
