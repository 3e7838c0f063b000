"""Benchmark of videograph.ops against the PyTorch / PyG ops they compete with.

Run ``python benchmarks/ops.py [--quick | --smoke] [--out DIR]`` (``--quick``
for a smaller, faster run; ``--smoke`` for tiny sizes that only check that it
runs). On one CPU thread it times, round-robin and reporting medians:

- ``gather_sum`` (S=200000, W=15, F=64, M=10000) against
  ``F.embedding_bag(mode='sum')`` and the materialising
  ``table[index].sum(1)``, forward and forward + backward;
- ``scatter`` sum/mean/max against ``index_add_``, ``scatter_reduce_`` and
  ``torch_geometric.utils.scatter`` (and torch-scatter when installed);
- ``segment`` sum/max against ``torch.segment_reduce``,
  ``torch_geometric.utils.segment`` and ``index_add_`` on the sorted index;
- ``torch.clone`` of the scatter input as copy bandwidth.

GB/s counts the logical bytes an op must read and write (index, every
gathered or scattered value, output); cache hits can make this exceed copy
bandwidth. Peak memory is the growth of the process' peak RSS (``VmHWM``,
reset through ``/proc/self/clear_refs``) while one call runs, each in a fresh
subprocess (with ``--smoke``, all in one subprocess). Writes
``DIR/bench_ops.json`` and ``DIR/bench_ops.png`` (default ``results/``).

The Triton kernels are not timed: they only run on CUDA, and there is no GPU
here (under ``TRITON_INTERPRET=1`` they are interpreted and meaningless to
time).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch_geometric.utils as pyg_utils  # noqa: E402

import videograph.typing  # noqa: E402
from videograph.ops import gather_sum, scatter, segment  # noqa: E402

GATHER = dict(S=200_000, W=15, F=64, M=10_000)
SCATTER = dict(E=1_000_000, F=32, N=50_000)
QUICK_SCALE = 10
SMOKE_SCALE = 1000
_GATHER_CONTENDERS = ('gather_sum', 'embedding_bag', 'materialised')
_TABLES = {'scatter_sum': ('videograph', 'scatter_reduce', 'pyg', 'index_add'),
           'scatter_mean': ('videograph', 'scatter_reduce', 'pyg'),
           'scatter_max': ('videograph', 'scatter_reduce', 'pyg'),
           'segment_sum': ('videograph', 'segment_reduce', 'pyg', 'scatter_reduce_sorted'),
           'segment_max': ('videograph', 'segment_reduce', 'pyg', 'scatter_reduce_sorted')}
#: The keys bench_ops.json always has.
KEYS = (('threads', 'with_torch_scatter', 'reps', 'quick', 'smoke') +
        tuple(f'gather_{k}' for k in GATHER) +
        tuple(f'scatter_{k}' for k in SCATTER) +
        ('copy_ms', 'copy_gbps', 'gather_sum_gbps', 'embedding_bag_gbps',
         'gather_sum_vs_best', 'gather_sum_vs_materialised',
         'gather_sum_fwd_bwd_gather_sum_ms',
         'gather_sum_fwd_bwd_embedding_bag_ms', 'gather_sum_fwd_bwd_vs_best',
         'gathered_intermediate_mb') +
        tuple(f'gather_sum_fwd_{name}_ms' for name in _GATHER_CONTENDERS) +
        tuple(f'peak_mb_{name}' for name in _GATHER_CONTENDERS) +
        ('peak_mb_gather_sum_fwd_bwd', 'peak_mb_embedding_bag_fwd_bwd') +
        tuple(f'{label}_{suffix}' for label, names in _TABLES.items()
              for suffix in [f'{n}_ms' for n in names] +
              ['gbps', 'best_baseline', 'vs_best']))
#: Keys that are written (numbers) whenever the named package is importable.
EXT_KEYS = {'torch_scatter': tuple(f'{label}_torch_scatter_ms'
                                   for label in _TABLES)}


def median_ms(times):
    return 1e3 * statistics.median(times)


def time_round_robin(contenders, reps, progress):
    """Times every contender ``reps`` times, interleaved so that load from
    other processes hits them alike, and rotating the order because the
    first call of a round measures slower here; returns medians in
    milliseconds."""
    names = list(contenders)
    times = {name: [] for name in names}
    for fn in contenders.values():
        fn()  # warm-up
    for rep in range(reps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            contenders[name]()
            times[name].append(time.perf_counter() - start)
        progress.update(1)
    return {name: median_ms(ts) for name, ts in times.items()}


def gather_inputs(S, W, F_, M, requires_grad=False):
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(M, F_, generator=gen).requires_grad_(requires_grad)
    index = torch.randint(0, M, (S, W), generator=gen)
    return table, index


def scatter_inputs(E, F_, N, sort=False):
    gen = torch.Generator().manual_seed(0)
    src = torch.randn(E, F_, generator=gen)
    index = torch.randint(0, N, (E, ), generator=gen)
    if sort:
        index = index.sort().values
    return src, index


def bench_gather_sum(sizes, reps, progress):
    S, W, F_, M = sizes['S'], sizes['W'], sizes['F'], sizes['M']
    table, index = gather_inputs(S, W, F_, M)
    fwd = time_round_robin({
        'gather_sum': lambda: gather_sum(table, index),
        'embedding_bag': lambda: F.embedding_bag(index, table, mode='sum'),
    }, reps, progress)
    # The materialising version allocates [S, W, F]: time it a few times only.
    fwd.update(time_round_robin({
        'materialised': lambda: table[index].sum(1),
    }, min(reps, 3), progress))

    leaf, _ = gather_inputs(S, W, F_, M, requires_grad=True)
    grad_out = torch.randn(S, F_, generator=torch.Generator().manual_seed(1))

    def backward_of(fn):
        def run():
            fn().backward(grad_out)
            leaf.grad = None
        return run

    bwd = time_round_robin({
        'gather_sum': backward_of(lambda: gather_sum(leaf, index)),
        'embedding_bag': backward_of(
            lambda: F.embedding_bag(index, leaf, mode='sum')),
    }, max(3, reps // 2), progress)
    logical = (index.numel() * index.element_size() + S * W * F_ * 4 +
               S * F_ * 4)
    return fwd, bwd, logical


def bench_scatter(sizes, reps, progress):
    E, F_, N = sizes['E'], sizes['F'], sizes['N']
    src, index = scatter_inputs(E, F_, N)
    expanded = index.view(-1, 1).expand_as(src)
    out = {}
    for reduce in ('sum', 'mean', 'max'):
        name = {'sum': 'sum', 'mean': 'mean', 'max': 'amax'}[reduce]
        contenders = {
            'videograph': lambda r=reduce: scatter(src, index, 0, N, r),
            'scatter_reduce': lambda n=name: src.new_zeros(N, F_)
            .scatter_reduce_(0, expanded, src, n, include_self=False),
            'pyg': lambda r=reduce: pyg_utils.scatter(src, index, 0, N, r),
        }
        if reduce == 'sum':
            contenders['index_add'] = lambda: src.new_zeros(N, F_).index_add_(
                0, index, src)
        if videograph.typing.WITH_TORCH_SCATTER:
            contenders['torch_scatter'] = lambda r=reduce: (
                videograph.typing.torch_scatter.scatter(src, index, 0,
                                                        dim_size=N, reduce=r))
        out[reduce] = time_round_robin(contenders, reps, progress)
    out['copy'] = time_round_robin({'clone': src.clone}, reps, progress)
    logical = src.numel() * 4 + index.numel() * 8 + N * F_ * 4
    return out, logical, src.numel() * 4


def bench_segment(sizes, reps, progress):
    E, F_, N = sizes['E'], sizes['F'], sizes['N']
    src, index = scatter_inputs(E, F_, N, sort=True)
    ptr = torch.cat([index.new_zeros(1),
                     torch.bincount(index, minlength=N).cumsum(0)])
    out = {}
    for reduce in ('sum', 'max'):
        contenders = {
            'videograph': lambda r=reduce: segment(src, ptr, r),
            'segment_reduce': lambda r=reduce: torch.segment_reduce(
                src, r, offsets=ptr, axis=0),
            'pyg': lambda r=reduce: pyg_utils.segment(src, ptr, r),
            'scatter_reduce_sorted': lambda r=reduce: src.new_zeros(N, F_)
            .scatter_reduce_(0, index.view(-1, 1).expand_as(src), src,
                             'a' + r if r == 'max' else r,
                             include_self=False),
        }
        if videograph.typing.WITH_TORCH_SCATTER:
            contenders['torch_scatter'] = lambda r=reduce: (
                videograph.typing.torch_scatter.segment_csr(src, ptr,
                                                            reduce=r))
        out[reduce] = time_round_robin(contenders, reps, progress)
    logical = src.numel() * 4 + ptr.numel() * 8 + N * F_ * 4
    return out, logical


PEAK_SNIPPET = r"""
import sys, json
import torch
import torch.nn.functional as F
sys.path.insert(0, {root!r})
from videograph.ops import gather_sum
torch.set_num_threads(1)

def rss_kb(key):
    for line in open('/proc/self/status'):
        if line.startswith(key):
            return int(line.split()[1])

S, W, Fd, M = {S}, {W}, {F}, {M}
peaks = []
for name, backward in {cases!r}:
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(M, Fd, generator=gen).requires_grad_(backward)
    index = torch.randint(0, M, (S, W), generator=gen)
    grad_out = torch.randn(S, Fd, generator=gen)
    run = {{
        'gather_sum': lambda: gather_sum(table, index),
        'embedding_bag': lambda: F.embedding_bag(index, table, mode='sum'),
        'materialised': lambda: table[index].sum(1),
    }}[name]
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # resets VmHWM to the current RSS
    before = rss_kb('VmRSS')
    out = run()
    if backward:
        out.backward(grad_out)
    peaks.append((rss_kb('VmHWM') - before) / 1024)
    del out, table, index, grad_out
print(json.dumps(peaks))
"""


def peak_memory_mb(cases, sizes):
    """Peak RSS growth (MB) of one call of each ``(name, backward)`` case, all in one fresh subprocess (so
    only the first is clean unless ``cases`` has one entry)."""
    code = PEAK_SNIPPET.format(root=ROOT, cases=list(cases), **sizes)
    ran = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, check=True)
    return json.loads(ran.stdout.strip().splitlines()[-1])


def plot(results, gbps, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401

    fig, (ax_bw, ax_mem) = plt.subplots(
        1, 2, figsize=(14, 5), gridspec_kw=dict(width_ratios=[3, 1]))
    labels, values, colors = [], [], []
    for op, contenders in gbps.items():
        for name, value in contenders.items():
            labels.append(f'{op}\n{name}')
            values.append(value)
            colors.append('tab:blue' if name in ('gather_sum', 'videograph')
                          else 'tab:gray')
    ax_bw.bar(range(len(values)), values, color=colors)
    ax_bw.axhline(results['copy_gbps'], color='tab:red', linestyle='--',
                  label=f"torch.clone ({results['copy_gbps']:.1f} GB/s)")
    ax_bw.set_xticks(range(len(values)), labels, rotation=90, fontsize=7)
    ax_bw.set_yscale('log')
    ax_bw.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax_bw.set_ylabel('logical GB/s (median, 1 thread, log scale)')
    ax_bw.set_title('videograph.ops (blue) vs baselines (gray)')
    ax_bw.legend()

    bars = {
        'gather_sum\nfwd': results['peak_mb_gather_sum'],
        'embedding_bag\nfwd': results['peak_mb_embedding_bag'],
        'materialised\nfwd': results['peak_mb_materialised'],
        'gather_sum\nfwd+bwd': results['peak_mb_gather_sum_fwd_bwd'],
        'embedding_bag\nfwd+bwd': results['peak_mb_embedding_bag_fwd_bwd'],
    }
    ax_mem.bar(range(len(bars)), list(bars.values()),
               color=['tab:blue', 'tab:gray', 'tab:gray', 'tab:blue',
                      'tab:gray'])
    ax_mem.axhline(results['gathered_intermediate_mb'], color='tab:red',
                   linestyle='--', label='size of [S, W, F]')
    ax_mem.set_xticks(range(len(bars)), list(bars), rotation=90, fontsize=7)
    ax_mem.set_ylabel('peak RSS growth of one call (MB)')
    ax_mem.set_title('gather_sum memory')
    ax_mem.legend(loc='center left', fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument('--quick', action='store_true',
                      help=f'sizes / {QUICK_SCALE} and fewer repetitions')
    size.add_argument('--smoke', action='store_true',
                      help='tiny sizes, one repetition: checks that it runs')
    parser.add_argument('--reps', type=int, default=None)
    parser.add_argument('--no-progress', action='store_true')
    parser.add_argument('--out', default=os.path.join(ROOT, 'results'))
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    gather_sizes, scatter_sizes = dict(GATHER), dict(SCATTER)
    if args.quick:
        gather_sizes['S'] //= QUICK_SCALE
        scatter_sizes['E'] //= QUICK_SCALE
    if args.smoke:
        gather_sizes['S'] //= SMOKE_SCALE
        gather_sizes['M'] //= SMOKE_SCALE
        scatter_sizes['E'] //= SMOKE_SCALE
        scatter_sizes['N'] //= SMOKE_SCALE
    reps = args.reps or (1 if args.smoke else 5 if args.quick else 11)

    steps = (reps + min(reps, 3) + max(3, reps // 2) + 4 * reps + 2 * reps +
             6)
    progress = tqdm(total=steps, desc='bench ops', disable=args.no_progress)

    fwd, bwd, gather_bytes = bench_gather_sum(gather_sizes, reps, progress)
    scat, scatter_bytes, copy_bytes = bench_scatter(scatter_sizes, reps,
                                                    progress)
    seg, segment_bytes = bench_segment(scatter_sizes, reps, progress)

    results = dict(threads=torch.get_num_threads(),
                   with_torch_scatter=videograph.typing.WITH_TORCH_SCATTER,
                   reps=reps, quick=args.quick, smoke=args.smoke,
                   **{f'gather_{k}': v for k, v in gather_sizes.items()},
                   **{f'scatter_{k}': v for k, v in scatter_sizes.items()})

    def gbps(num_bytes, ms):
        return num_bytes / (ms * 1e-3) / 1e9

    # Copy bandwidth: clone reads and writes the scatter input once.
    results['copy_ms'] = scat.pop('copy')['clone']
    results['copy_gbps'] = gbps(2 * copy_bytes, results['copy_ms'])

    all_gbps = {}
    for name, ms in fwd.items():
        results[f'gather_sum_fwd_{name}_ms'] = ms
    results['gather_sum_gbps'] = gbps(gather_bytes, fwd['gather_sum'])
    results['embedding_bag_gbps'] = gbps(gather_bytes, fwd['embedding_bag'])
    results['gather_sum_vs_best'] = fwd['embedding_bag'] / fwd['gather_sum']
    results['gather_sum_vs_materialised'] = (fwd['materialised'] /
                                             fwd['gather_sum'])
    for name, ms in bwd.items():
        results[f'gather_sum_fwd_bwd_{name}_ms'] = ms
    results['gather_sum_fwd_bwd_vs_best'] = (bwd['embedding_bag'] /
                                             bwd['gather_sum'])
    all_gbps['gather_sum'] = {
        name: gbps(gather_bytes, ms) for name, ms in fwd.items()}

    for label, table, num_bytes in (
        [(f'scatter_{r}', t, scatter_bytes) for r, t in scat.items()] +
        [(f'segment_{r}', t, segment_bytes) for r, t in seg.items()]):
        ours = table['videograph']
        best_name = min((n for n in table if n != 'videograph'),
                        key=table.get)
        for name, ms in table.items():
            results[f'{label}_{name}_ms'] = ms
        results[f'{label}_gbps'] = gbps(num_bytes, ours)
        results[f'{label}_best_baseline'] = best_name
        results[f'{label}_vs_best'] = table[best_name] / ours
        all_gbps[label] = {n: gbps(num_bytes, ms) for n, ms in table.items()}

    results['gathered_intermediate_mb'] = (
        gather_sizes['S'] * gather_sizes['W'] * gather_sizes['F'] * 4 / 2**20)
    cases = {f'peak_mb_{name}': (name, False) for name in _GATHER_CONTENDERS}
    cases.update({f'peak_mb_{name}_fwd_bwd': (name, True)
                  for name in ('gather_sum', 'embedding_bag')})
    if args.smoke:  # one subprocess for all: only checks that it runs
        results.update(zip(cases, peak_memory_mb(cases.values(),
                                                 gather_sizes)))
        progress.update(len(cases))
    else:
        for key, case in cases.items():
            results[key] = peak_memory_mb([case], gather_sizes)[0]
            progress.update(1)
    progress.close()

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, 'bench_ops.json'), 'w') as f:
        json.dump(results, f, indent=2)
    plot(results, all_gbps, os.path.join(args.out, 'bench_ops.png'))

    for key in sorted(results):
        if key.endswith(('_vs_best', '_gbps', '_ms', 'vs_materialised')) or \
                key.startswith('peak_mb') or key.endswith('_baseline'):
            value = results[key]
            print(f'{key:45s} {value:10.3f}' if isinstance(value, float) else
                  f'{key:45s} {value:>10}')


if __name__ == '__main__':
    main()
