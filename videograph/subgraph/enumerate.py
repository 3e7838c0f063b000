r"""Batched enumeration of k-node sub-graphs: complete or connected, full or streamed.

MUSLE (`Li et al., CVPR 2021 <https://arxiv.org/abs/2201.04027>`_) scores every
k-node subset of a video's node set, :math:`k \in \{3, 4, 5\}`; proposal and region
graphs (P-GCN, STRG) are sparse, so only connected induced sub-graphs matter.
"""
from __future__ import annotations

from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch_geometric.data import Batch
from torch_geometric.data.data import BaseData
from tqdm.auto import tqdm

from . import combinations as comb
from .connected import (PairLookup, PairTable, UndirectedAdjacency, connected_sets, edge_id_table,
                        sort_rows, undirected_adjacency)
from .subgraphs import MODES, Subgraphs, pair_ptr as make_pair_ptr

SMALL_GRAPHS = ('raise', 'empty')


class _Input:
    """Validated view of the input graph batch."""

    def __init__(self, data, k, mode, edge_key, max_per_graph, small_graphs):
        if not isinstance(data, BaseData):
            raise TypeError(f"'data' must be a torch_geometric Data or Batch (got {type(data).__name__})")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"'k' must be an integer >= 1 (got {k!r})")
        if mode not in MODES:
            raise ValueError(f"'mode' must be one of {MODES} (got {mode!r})")
        if max_per_graph is not None and (isinstance(max_per_graph, bool) or not isinstance(max_per_graph, int)
                                          or max_per_graph < 1):
            raise ValueError(f"'max_per_graph' must be None or an integer >= 1 (got {max_per_graph!r})")
        if small_graphs not in SMALL_GRAPHS:
            raise ValueError(f"'small_graphs' must be one of {SMALL_GRAPHS} (got {small_graphs!r})")
        num_nodes = data.num_nodes
        if num_nodes is None:
            raise ValueError("'data' has no nodes: set 'num_nodes' or 'x'")
        if isinstance(data, Batch) and getattr(data, 'ptr', None) is not None:
            node_ptr = data.ptr.detach().cpu().long()
        else:
            node_ptr = torch.tensor([0, num_nodes])
        self.device = next((v.device for _, v in data if isinstance(v, Tensor)), torch.device('cpu'))
        sizes = node_ptr.diff()
        small = (sizes < k).nonzero().view(-1)
        if small.numel() > 0 and small_graphs == 'raise':
            g = int(small[0])
            raise ValueError(f"'k'={k} exceeds the number of nodes ({int(sizes[g])}) of graph {g}"
                             f"{f' (and {small.numel() - 1} more graphs)' if small.numel() > 1 else ''}; "
                             "pass small_graphs='empty' to give such graphs no sub-graphs")
        self.k, self.mode, self.max_per_graph = k, mode, max_per_graph
        self.node_ptr, self.sizes, self.num_nodes = node_ptr, sizes, int(num_nodes)
        self.num_graphs = sizes.numel()
        self.pair_ptr = make_pair_ptr(node_ptr) if mode == 'complete' else None
        self.edge_index = None
        self.adj: Optional[UndirectedAdjacency] = None
        self._lookup: Optional[PairLookup] = None
        self._edge_table: Optional[PairTable] = None
        if mode == 'connected':
            self.edge_index = _checked_edge_index(data, edge_key, self.num_nodes, node_ptr)

    def adjacency(self) -> UndirectedAdjacency:
        if self.adj is None:
            self.adj = undirected_adjacency(self.edge_index, self.num_nodes, self.lookup())
        return self.adj

    def lookup(self) -> PairLookup:
        if self._lookup is None:
            self._lookup = PairLookup(self.node_ptr, self.num_nodes)
        return self._lookup

    def edge_table(self) -> PairTable:
        if self._edge_table is None:
            self._edge_table = edge_id_table(self.edge_index, self.lookup())
        return self._edge_table

    def node_graph(self) -> Tensor:
        return torch.repeat_interleave(torch.arange(self.num_graphs), self.sizes)


def _checked_edge_index(data, edge_key: str, num_nodes: int, node_ptr: Tensor) -> Tensor:
    if edge_key not in data:
        raise ValueError(f"'edge_key'={edge_key!r} is not an attribute of 'data' "
                         f"(mode='connected' needs an edge index; keys: {sorted(data.keys())})")
    edge_index = data[edge_key]
    if not isinstance(edge_index, Tensor) or edge_index.dim() != 2 or edge_index.size(0) != 2:
        shape = tuple(edge_index.shape) if isinstance(edge_index, Tensor) else type(edge_index).__name__
        raise ValueError(f"data[{edge_key!r}] must be an edge index of shape [2, num_edges] (got {shape})")
    if edge_index.dtype.is_floating_point or edge_index.dtype.is_complex or edge_index.dtype == torch.bool:
        raise ValueError(f"data[{edge_key!r}] must hold integer node ids (got dtype {edge_index.dtype})")
    edge_index = edge_index.detach().cpu().long()
    if edge_index.numel() > 0:
        lo, hi = int(edge_index.min()), int(edge_index.max())
        if lo < 0 or hi >= num_nodes:
            raise ValueError(f"data[{edge_key!r}] holds node ids in [{lo}, {hi}], "
                             f"outside the {num_nodes} nodes of 'data'")
    if edge_index.numel() > 0 and node_ptr.numel() > 2:
        graph = torch.bucketize(edge_index.contiguous(), node_ptr[1:].contiguous(), right=True)
        if not torch.equal(graph[0], graph[1]):
            e = int((graph[0] != graph[1]).nonzero()[0])
            raise ValueError(f"data[{edge_key!r}] edge {e} joins graphs {int(graph[0, e])} and "
                             f"{int(graph[1, e])} of the batch")
    return edge_index


def _ptr(counts: Tensor) -> Tensor:
    ptr = counts.new_zeros(counts.numel() + 1)
    torch.cumsum(counts, 0, out=ptr[1:])
    return ptr


def _complete_counts(inp: _Input) -> List[int]:
    counts = [comb.binom(n, inp.k) for n in inp.sizes.tolist()]
    for g, count in enumerate(counts):
        if count > comb.INT64_MAX:
            raise ValueError(f"'k'={inp.k} gives graph {g} ({int(inp.sizes[g])} nodes) more than "
                             "2**63 - 1 sub-graphs, beyond int64 ranks")
    if inp.max_per_graph is None and sum(counts) > comb.INT64_MAX:
        raise ValueError(f"'k'={inp.k} gives more than 2**63 - 1 sub-graphs in total; pass max_per_graph")
    return counts


def _complete_from_ranks(inp: _Input, graph: Tensor, rank: Tensor) -> Tuple[Tensor, Tensor]:
    """Nodes and pair ids of the complete-mode sub-graphs ``(graph, rank)``: rows of
    the cached tables when they fit the cache budget, else unranked."""
    k = inp.k
    n = inp.sizes.index_select(0, graph)
    sizes = torch.unique(n).tolist()
    if all(comb.is_cacheable(size, k) for size in sizes):
        local = torch.empty(rank.numel(), k, dtype=torch.long)
        pairs = torch.empty(rank.numel(), comb.num_pairs(k), dtype=torch.long)
        for size in sizes:
            table = comb.combination_table(size, k)
            if len(sizes) == 1:
                local.copy_(table.nodes.index_select(0, rank))
                pairs.copy_(table.pairs.index_select(0, rank))
            else:
                rows = (n == size).nonzero().view(-1)
                local[rows] = table.nodes.index_select(0, rank.index_select(0, rows)).long()
                pairs[rows] = table.pairs.index_select(0, rank.index_select(0, rows)).long()
    else:
        local = comb.unrank(rank, n, k)
        pairs = comb._pair_table(local, n)
    pairs += inp.pair_ptr.index_select(0, graph).view(-1, 1)
    return local.add_(inp.node_ptr.index_select(0, graph).view(-1, 1)), pairs


def _complete_all(inp: _Input, counts: List[int]) -> Tuple[Tensor, Tensor, Tensor]:
    """All complete-mode sub-graphs (nodes, pair ids, batch) from the cached tables."""
    k, sizes = inp.k, inp.sizes
    pptr = inp.pair_ptr
    live = [g for g, c in enumerate(counts) if c > 0]
    live_sizes = sorted({int(sizes[g]) for g in live})
    if len(live_sizes) == 1:
        table = comb.combination_table(live_sizes[0], k)
        idx = torch.tensor(live)
        per_graph = table.nodes.size(0)
        rows = idx.numel() * per_graph
        # Each graph is the shared table shifted by its offsets: one widening copy + one add.
        nodes = _shifted(table.nodes, inp.node_ptr.index_select(0, idx))
        pairs = _shifted(table.pairs, pptr.index_select(0, idx))
        batch = idx.view(-1, 1).expand(-1, per_graph).reshape(rows)
        return nodes, pairs, batch
    if not live:
        empty = torch.empty(0, dtype=torch.long)
        return empty.view(0, k), empty.view(0, comb.num_pairs(k)), empty
    tables = {n: comb.combination_table(n, k) for n in live_sizes}
    nodes = torch.cat([_shifted(tables[int(sizes[g])].nodes, inp.node_ptr[g:g + 1]) for g in live])
    pairs = torch.cat([_shifted(tables[int(sizes[g])].pairs, pptr[g:g + 1]) for g in live])
    batch = torch.repeat_interleave(torch.tensor(live), torch.tensor([counts[g] for g in live]))
    return nodes, pairs, batch


def _shifted(table: Tensor, offsets: Tensor) -> Tensor:
    """``cat([table + o for o in offsets])`` as a new int64 tensor."""
    out = torch.empty(offsets.numel(), *table.shape, dtype=torch.long)
    out.copy_(table.unsqueeze(0).expand_as(out))
    out.add_(offsets.view(-1, *([1] * table.dim())))
    return out.view(offsets.numel() * table.size(0), *table.shape[1:])


def _connected_pairs(inp: _Input, nodes: Tensor) -> Tensor:
    i, j = comb.slot_pair_columns(inp.k)
    table = inp.edge_table()
    return table.at(table.lookup.row_slots(nodes, i.tolist(), j.tolist()))


def _package(inp: _Input, nodes: Tensor, pairs: Tensor, batch: Tensor,
             counts: Optional[Tensor] = None) -> Subgraphs:
    if counts is None:
        counts = torch.bincount(batch, minlength=inp.num_graphs)
    pptr = inp.pair_ptr if inp.mode == 'complete' else None
    out = Subgraphs(nodes, pairs, batch, _ptr(counts), inp.node_ptr.clone(), inp.k, inp.mode, pptr)
    return out if inp.device.type == 'cpu' else out.to(inp.device)


def enumerate_subgraphs(data: BaseData, k: int, *, mode: str = 'complete', edge_key: str = 'edge_index',
                        max_per_graph: Optional[int] = None, generator: Optional[torch.Generator] = None,
                        small_graphs: str = 'raise') -> Subgraphs:
    r"""Enumerate the k-node sub-graphs of every graph of a PyG ``Data`` or ``Batch``.

    * ``mode='complete'``: all :math:`\binom{n_g}{k}` node subsets of each graph, in
      :func:`itertools.combinations` order, from cached per-``(n, k)`` tables built by
      appending larger indices to (k-1)-subsets (vectorised, no loop over sub-graphs).
      ``pair_index`` holds dense pair ids (:func:`~videograph.subgraph.pair_nodes`).
    * ``mode='connected'``: every node set of size k whose induced sub-graph of
      ``data[edge_key]`` is connected, exactly once, via a breadth-first vectorised
      ESU over the whole batch. Edges are read as undirected; self-loops and duplicate
      edges are ignored. ``pair_index`` holds edge ids of ``data[edge_key]`` (``-1``: no edge).

    Rows are sorted lexicographically by global node id (so grouped by graph).

    Args:
        data (Data or Batch): input graph(s); only ``num_nodes``, ``ptr`` and, in
            connected mode, ``data[edge_key]`` are read.
        k (int): nodes per sub-graph, ``k >= 1``.
        mode (str, optional): ``'complete'`` or ``'connected'``. (default: ``'complete'``)
        edge_key (str, optional): edge index used in connected mode. (default: ``'edge_index'``)
        max_per_graph (int, optional): keep a uniformly random subset (without
            replacement) of this many sub-graphs from each graph that has more, in the
            same sorted order. Complete mode samples ranks and reads them from the
            cached table, or unranks them when the table exceeds the cache budget, so huge
            sets are never enumerated. (default: :obj:`None`, keep all)
        generator (torch.Generator, optional): randomness for ``max_per_graph``; or a
            sequence of one generator per graph (keyed sampling: each graph's draw is
            independent of the rest of its batch).
        small_graphs (str, optional): what a graph with fewer than ``k`` nodes does:
            ``'raise'`` a :class:`ValueError` naming it, or give it ``'empty'`` output.
            (default: ``'raise'``)

    Returns:
        :class:`~videograph.subgraph.Subgraphs` with ``nodes`` ``[S, k]``,
        ``pair_index`` ``[S, k(k-1)/2]``, ``batch`` ``[S]``, ``ptr`` ``[B + 1]``.
    """
    inp = _Input(data, k, mode, edge_key, max_per_graph, small_graphs)
    if mode == 'complete':
        counts = _complete_counts(inp)
        if max_per_graph is None or max(counts, default=0) <= max_per_graph:
            nodes, pairs, batch = _complete_all(inp, counts)
            return _package(inp, nodes, pairs, batch, torch.tensor(counts, dtype=torch.long))
        batch, rank = comb.sample_ranks(counts, max_per_graph, generator)
        nodes, pairs = _complete_from_ranks(inp, batch, rank)
        return _package(inp, nodes, pairs, batch)

    nodes = _connected_rows(inp, torch.arange(inp.num_nodes))
    batch = inp.node_graph().index_select(0, nodes[:, 0].contiguous())
    if max_per_graph is not None:
        counts = torch.bincount(batch, minlength=inp.num_graphs)
        graph, rank = comb.sample_ranks(counts.tolist(), max_per_graph, generator)
        keep = _ptr(counts)[graph] + rank
        nodes, batch = nodes.index_select(0, keep), batch.index_select(0, keep)
    return _package(inp, nodes, _connected_pairs(inp, nodes), batch)


def _connected_rows(inp: _Input, roots: Tensor) -> Tensor:
    rows = connected_sets(inp.adjacency(), roots, inp.k)
    return sort_rows(rows, inp.num_nodes)


def iter_subgraphs(data: BaseData, k: int, *, mode: str = 'complete', edge_key: str = 'edge_index',
                   max_per_graph: Optional[int] = None, generator: Optional[torch.Generator] = None,
                   small_graphs: str = 'raise', chunk_size: int = 65536,
                   progress: bool = False) -> Iterator[Subgraphs]:
    r"""Stream :func:`enumerate_subgraphs` in chunks of ``chunk_size`` rows.

    Every chunk but the last holds exactly ``chunk_size`` sub-graphs; ``chunk.ptr``
    and ``chunk.batch`` describe the chunk's own rows (``ptr`` still has ``B + 1``
    entries). ``Subgraphs.cat(list(iter_subgraphs(...)))`` equals
    :func:`enumerate_subgraphs` with the same arguments (and an equally seeded
    ``generator``).

    Memory: complete mode gathers each chunk's ranks from the cached table when it
    fits the cache budget and otherwise unranks them (combinatorial number system), so
    it is :math:`O(\text{chunk\_size} \cdot k^2)` whatever :math:`\binom{n}{k}` is (plus
    the sampled ranks with ``max_per_graph``). Connected mode runs ESU for
    groups of root nodes (a sub-graph's root is its minimum node, so groups come out
    in sorted order), sized adaptively to about ``chunk_size`` outputs; one root's
    sub-graphs are never split across ESU runs. With ``max_per_graph`` it enumerates
    twice: once to count, once to emit the sampled rows.

    Args:
        chunk_size (int, optional): rows per chunk. (default: ``65536``)
        progress (bool, optional): show a tqdm progress bar. (default: :obj:`False`)

    See :func:`enumerate_subgraphs` for the other arguments.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"'chunk_size' must be an integer >= 1 (got {chunk_size!r})")
    inp = _Input(data, k, mode, edge_key, max_per_graph, small_graphs)
    return _iter_complete(inp, generator, chunk_size, progress) if mode == 'complete' else \
        _iter_connected(inp, generator, chunk_size, progress)


def _iter_complete(inp: _Input, generator, chunk_size: int, progress: bool) -> Iterator[Subgraphs]:
    counts = _complete_counts(inp)
    sampled = inp.max_per_graph is not None and max(counts, default=0) > inp.max_per_graph
    if sampled:
        graph_of, rank_of = comb.sample_ranks(counts, inp.max_per_graph, generator)
        total = graph_of.numel()
    else:
        row_ptr = _ptr(torch.tensor(counts, dtype=torch.long))
        total = sum(counts)
    with tqdm(total=total, disable=not progress, unit='subgraph', desc=f'complete k={inp.k}') as bar:
        for start in range(0, total, chunk_size):
            stop = min(start + chunk_size, total)
            if sampled:
                graph, rank = graph_of[start:stop], rank_of[start:stop]
            else:
                row = torch.arange(start, stop)
                graph = torch.searchsorted(row_ptr, row, right=True) - 1
                rank = row - row_ptr[graph]
            nodes, pairs = _complete_from_ranks(inp, graph, rank)
            bar.update(stop - start)
            yield _package(inp, nodes, pairs, graph)


def _iter_connected(inp: _Input, generator, chunk_size: int, progress: bool) -> Iterator[Subgraphs]:
    node_graph = inp.node_graph()
    keep_sorted: Optional[Tensor] = None
    if inp.max_per_graph is not None:
        counts = torch.zeros(inp.num_graphs, dtype=torch.long)
        for _, rows in _esu_groups(inp, chunk_size):
            counts += torch.bincount(node_graph[rows[:, 0]], minlength=inp.num_graphs)
        graph, rank = comb.sample_ranks(counts.tolist(), inp.max_per_graph, generator)
        keep_sorted = _ptr(counts)[graph] + rank
    pending: List[Tensor] = []
    num_pending = 0
    seen = 0  # rows of the full (unsampled) enumeration passed so far
    with tqdm(total=inp.num_nodes, disable=not progress, unit='root', desc=f'connected k={inp.k}') as bar:
        for roots, rows in _esu_groups(inp, chunk_size):
            rows = sort_rows(rows, inp.num_nodes)
            if keep_sorted is not None:
                a, b = torch.searchsorted(keep_sorted, torch.tensor([seen, seen + rows.size(0)])).tolist()
                rows, seen = rows[keep_sorted[a:b] - seen], seen + rows.size(0)
            bar.update(roots.numel())
            pending.append(rows)
            num_pending += rows.size(0)
            while num_pending >= chunk_size:
                merged = torch.cat(pending)
                yield _connected_chunk(inp, merged[:chunk_size], node_graph)
                pending, num_pending = [merged[chunk_size:]], merged.size(0) - chunk_size
    if num_pending > 0:
        yield _connected_chunk(inp, torch.cat(pending), node_graph)


def _connected_chunk(inp: _Input, nodes: Tensor, node_graph: Tensor) -> Subgraphs:
    return _package(inp, nodes, _connected_pairs(inp, nodes), node_graph.index_select(0, nodes[:, 0].contiguous()))


def _esu_groups(inp: _Input, chunk_size: int) -> Iterator[Tuple[Tensor, Tensor]]:
    """ESU over consecutive root ranges, each sized from the previous range's output
    rate to emit about ``chunk_size`` rows (growing at most 4x per step)."""
    start, group = 0, 1
    while start < inp.num_nodes:
        roots = torch.arange(start, min(start + group, inp.num_nodes))
        rows = connected_sets(inp.adjacency(), roots, inp.k)
        yield roots, rows
        start += roots.numel()
        rate = rows.size(0) / roots.numel()
        group = max(1, min(4 * group, int(chunk_size / rate) if rate > 0 else 4 * group))


def multiscale(data: BaseData, ks: Sequence[int] = (3, 4, 5), *, mode: str = 'complete',
               edge_key: str = 'edge_index', max_per_graph: Optional[int] = None,
               generator: Optional[torch.Generator] = None, small_graphs: str = 'raise') -> Dict[int, Subgraphs]:
    r"""One :func:`enumerate_subgraphs` per scale: a ``dict`` ``{k: Subgraphs}`` in the
    order of ``ks`` (MUSLE's multi-scale sub-graphs, :math:`k \in \{3, 4, 5\}`).

    In complete mode the k-table is built from the cached (k-1)-table, so asking for
    consecutive scales costs about as much as the largest one. With ``max_per_graph``
    the scales are sampled one after another from the same ``generator``.
    """
    ks = list(ks)
    if not ks or len(set(ks)) != len(ks):
        raise ValueError(f"'ks' must be a non-empty sequence of distinct sizes (got {ks!r})")
    return {k: enumerate_subgraphs(data, k, mode=mode, edge_key=edge_key, max_per_graph=max_per_graph,
                                   generator=generator, small_graphs=small_graphs) for k in ks}
