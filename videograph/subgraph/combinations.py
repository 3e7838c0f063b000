r"""Vectorised k-combinations: cached lexicographic tables, unranking and rank sampling.

Every k-subset of :math:`\{0, \dots, n-1\}` has a *rank*: its position in
:func:`itertools.combinations` order (lexicographic over ascending tuples).
Three tools work on ranks:

* :func:`combination_table` builds all k-subsets at once by appending every larger
  index to each (k-1)-subset (no Python loop over subsets) and caches the result in
  an LRU keyed by ``(n, k)``, since videos share graph sizes;
* :func:`unrank` turns arbitrary ranks into subsets (combinatorial number system),
  so streaming and sampling never materialise all :math:`\binom{n}{k}` subsets;
* :func:`sample_ranks` draws per-graph ranks uniformly without replacement.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

INT64_MAX = 2**63 - 1
CACHE_SIZE = 32
CACHE_MAX_ELEMENTS = 1 << 25  # larger tables (128 MiB as int32) are rebuilt, not kept


class CombinationTable(NamedTuple):
    """All k-subsets of ``range(n)`` in :func:`itertools.combinations` order.

    Tables are stored as ``int32`` while pair ids fit (``n <= 46341``; ``int64``
    beyond): half the memory to fill on a cold build and to read on a warm lookup.

    Attributes:
        nodes (IntTensor): ``[C(n, k), k]`` local node ids, ascending per row.
        pairs (IntTensor): ``[C(n, k), k(k-1)/2]`` triangular pair ids
            (see :func:`pair_ids`) of the slot pairs ``(i, j)``, ``i < j``, in
            lexicographic slot order.
        prefix (LongTensor): ``[C(n, k)]`` row of ``nodes[:, :-1]`` in the
            ``(n, k - 1)`` table (all zeros for ``k = 1``).
    """
    nodes: Tensor
    pairs: Tensor
    prefix: Tensor


def num_pairs(k: int) -> int:
    return k * (k - 1) // 2


@lru_cache(maxsize=None)
def slot_pair_columns(k: int) -> Tuple[Tensor, Tensor]:
    """``(i, j)`` slot positions of the ``k(k-1)/2`` pair slots, lexicographic."""
    i, j = torch.triu_indices(k, k, offset=1)
    return i, j


def pair_ids(u: Tensor, w: Tensor, n: Tensor | int) -> Tensor:
    r"""Triangular id of local pairs ``u < w`` in a graph of ``n`` nodes:
    :math:`u n - u(u+1)/2 + (w - u - 1)`, i.e. the row of ``(u, w)`` in
    ``torch.triu_indices(n, n, 1).t()``."""
    return u * n - u * (u + 1) // 2 + (w - u - 1)


def _pair_table(nodes: Tensor, n: Tensor | int) -> Tensor:
    i, j = slot_pair_columns(nodes.size(1))
    return pair_ids(nodes[:, i], nodes[:, j], n if isinstance(n, int) else n.view(-1, 1))


def combination_table(n: int, k: int) -> CombinationTable:
    """Return the :class:`CombinationTable` of ``(n, k)``, cached in an LRU of
    ``CACHE_SIZE`` entries unless it holds more than ``CACHE_MAX_ELEMENTS`` numbers.

    The k-table is built from the (cached) (k-1)-table: each (k-1)-subset ending in
    ``l`` is followed by ``l + 1, ..., n - 1``. Appending in this order preserves
    lexicographic order, so rows equal :func:`itertools.combinations` exactly.
    The returned tensors are shared by the cache: never modify them in place.
    """
    return _cached_table(n, k) if is_cacheable(n, k) else _build_table(n, k)


def is_cacheable(n: int, k: int) -> bool:
    """Whether the ``(n, k)`` table fits the cache budget ``CACHE_MAX_ELEMENTS``."""
    return binom(n, k) * (k + num_pairs(k)) <= CACHE_MAX_ELEMENTS


def _build_table(n: int, k: int) -> CombinationTable:
    if k == 1:
        dtype = torch.int32 if n * n < 2**31 else torch.long
        nodes = torch.arange(n, dtype=dtype).view(-1, 1)
        return CombinationTable(nodes, nodes.new_empty(n, 0), torch.zeros(n, dtype=torch.long))
    parent = combination_table(n, k - 1)
    num_parent = parent.nodes.size(0)
    last = parent.nodes[:, -1].long()
    count = (n - 1) - last
    prefix = torch.repeat_interleave(count)
    total = prefix.numel()
    # new[s] = last[prefix[s]] + 1 + (s - first row of prefix[s]); one gather + one add.
    first = torch.cumsum(count, 0) - count
    new = (last + 1 - first).to(parent.nodes.dtype).index_select(0, prefix)
    new.add_(torch.arange(total, dtype=new.dtype))

    nodes = torch.cat([parent.nodes, parent.nodes.new_zeros(num_parent, 1)], 1)
    nodes = nodes.index_select(0, prefix)
    nodes[:, -1] = new

    # Per-prefix pair template: slots (i, j), j < k - 1, hold the prefix's pair ids;
    # slots (i, k - 1) hold pair_ids(v_i, 0) so adding the new node id completes them.
    i, j = slot_pair_columns(k)
    new_cols = (j == k - 1).nonzero().view(-1).tolist()
    template = parent.nodes.new_empty(num_parent, num_pairs(k))
    template[:, (j < k - 1).nonzero().view(-1)] = parent.pairs
    template[:, new_cols] = pair_ids(parent.nodes, 0, n)
    pairs = template.index_select(0, prefix)
    for col in new_cols:  # k - 1 strided column adds beat one broadcast [S, k(k-1)/2] product.
        pairs[:, col].add_(new)
    return CombinationTable(nodes, pairs, prefix)


_cached_table = lru_cache(maxsize=CACHE_SIZE)(_build_table)


def clear_cache() -> None:
    """Empty the ``(n, k)`` combination-table cache."""
    _cached_table.cache_clear()


def cache_info():
    """:func:`functools.lru_cache` statistics of the combination-table cache."""
    return _cached_table.cache_info()


def binom(n: int, k: int) -> int:
    return math.comb(n, k) if 0 <= k <= n else 0


@lru_cache(maxsize=64)
def _binomial_columns(n_max: int, k: int) -> Tensor:
    """``[k + 1, n_max]`` table ``C(c, i)``, saturated at ``2**63 - 1``."""
    rows = [[min(binom(c, i), INT64_MAX) for c in range(n_max)] for i in range(k + 1)]
    return torch.tensor(rows, dtype=torch.long)


def unrank(rank: Tensor, n: Tensor, k: int) -> Tensor:
    r"""k-subsets of ``range(n)`` with the given lexicographic ranks.

    Uses the combinatorial number system: the lexicographic rank ``r`` of ``A``
    equals :math:`\binom{n}{k} - 1` minus the colexicographic rank of
    ``{n - 1 - a : a in A}``, which unranks greedily, one position per step.

    Args:
        rank (LongTensor): ``[M]`` ranks, ``0 <= rank < C(n, k)``.
        n (LongTensor): ``[M]`` (or broadcastable) set sizes.
        k (int): subset size.

    Returns:
        LongTensor ``[M, k]``, ascending per row.
    """
    m = rank.numel()
    n = n.expand(m) if n.numel() == 1 else n
    n_max = int(n.max()) if m > 0 else 1
    table = _binomial_columns(n_max + 1, k)  # C(c, i) for c <= n_max
    remaining = table[k].index_select(0, n) - 1 - rank
    out = torch.empty(m, k, dtype=torch.long)
    for i in range(k, 0, -1):
        column = table[i, :n_max]  # candidates c < n
        c = torch.searchsorted(column, remaining, right=True) - 1
        remaining = remaining - column.index_select(0, c)
        out[:, k - i] = n - 1 - c
    return out


def sample_ranks(counts: Sequence[int], max_per_graph: Optional[int],
                 generator: Union[None, torch.Generator, Sequence[torch.Generator]] = None
                 ) -> Tuple[Tensor, Tensor]:
    """Per-graph ranks kept by ``max_per_graph``.

    A graph with ``count <= max_per_graph`` keeps all ranks; a larger one keeps a
    uniformly random ``max_per_graph``-subset (without replacement), sorted.
    ``generator`` is one generator for all graphs (drawn from in graph order) or a
    sequence of one per graph (keyed sampling: a graph's draw then does not depend
    on the other graphs of its batch, e.g. :func:`videograph.distributed.keyed_generator`
    per video).

    Returns:
        ``(graph, rank)``: LongTensors ``[M]``, sorted by graph then rank.
    """
    generators = per_graph_generators(generator, len(counts))
    graphs: List[Tensor] = []
    ranks: List[Tensor] = []
    for g, count in enumerate(counts):
        if max_per_graph is None or count <= max_per_graph:
            r = torch.arange(count)
        else:
            r = _sample_without_replacement(count, max_per_graph, generators[g]).sort().values
        ranks.append(r)
        graphs.append(torch.full((r.numel(),), g, dtype=torch.long))
    if not ranks:
        empty = torch.empty(0, dtype=torch.long)
        return empty, empty
    return torch.cat(graphs), torch.cat(ranks)


def per_graph_generators(generator, num_graphs: int) -> List[Optional[torch.Generator]]:
    """``generator`` (one ``torch.Generator`` or ``None``, shared) or a sequence of one
    generator per graph, as a list of ``num_graphs`` entries; anything else is a
    :class:`TypeError` / :class:`ValueError` naming ``generator``."""
    if generator is None or isinstance(generator, torch.Generator):
        return [generator] * num_graphs
    if not isinstance(generator, (list, tuple)) or not all(isinstance(g, torch.Generator) for g in generator):
        raise TypeError(f"'generator' must be a torch.Generator or a sequence of them (one per graph), got "
                        f"{type(generator).__name__}")
    if len(generator) != num_graphs:
        raise ValueError(f"'generator' must hold one generator per graph ({num_graphs}), got {len(generator)}")
    return list(generator)


def _sample_without_replacement(total: int, m: int, generator: Optional[torch.Generator]) -> Tensor:
    if total <= 4 * m:
        return torch.randperm(total, generator=generator)[:m]
    # Sparse case: iid draws until m distinct values, then a uniform m-subset of them.
    # The distinct set is exchangeable over range(total), so the result is uniform.
    seen = torch.empty(0, dtype=torch.long)
    while seen.numel() < m:
        draw = torch.randint(0, total, (2 * (m - seen.numel()) + 8,), generator=generator)
        seen = torch.unique(torch.cat([seen, draw]))
    keep = torch.randperm(seen.numel(), generator=generator)[:m]
    return seen[keep]
