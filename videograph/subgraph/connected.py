r"""Connected induced k-node sub-graphs, batched and vectorised over ESU frontiers.

Implements Wernicke's ESU (`"Efficient Detection of Network Motifs"
<https://doi.org/10.1109/TCBB.2006.51>`_, 2006) breadth-first: each level turns
*all* frontier states into their children with tensor ops. A state is a node set
:math:`V_{sub}` (its first node :math:`v` is :math:`\min V_{sub}`) and an ordered
extension list :math:`V_{ext}`. The child made by taking the :math:`p`-th element
:math:`w` of :math:`V_{ext}` is

.. math::
    \bigl(V_{sub} \cup \{w\},\; V_{ext}[p+1:] \cup
    \{u \in N(w) : u > v,\ u \notin V_{sub} \cup N(V_{sub})\}\bigr),

which yields every connected induced k-set exactly once (rooted at its minimum).
The graph is treated as undirected, without self-loops or multi-edges.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Sequence

import torch
from torch import Tensor


def _take(src: Tensor, index: Tensor) -> Tensor:
    """``src[index]`` for a 1-D ``src`` (``index_select`` is several times faster than
    advanced indexing on CPU)."""
    return src.index_select(0, index.reshape(-1)).view(index.shape)


def _where(mask: Tensor) -> Tensor:
    return mask.nonzero().view(-1)


DENSE_LIMIT = 1 << 22  # pair slots (sum of n_g^2) up to which lookups use a dense table


class PairLookup:
    r"""Constant-time queries on node pairs of one graph batch.

    With :math:`\sum_g n_g^2 \le` ``DENSE_LIMIT`` each graph gets a dense
    ``n_g x n_g`` block (row ``u``, column ``w``, local ids); larger batches fall back
    to binary search over sorted ``u * N + w`` keys. Both answer queries ``(u, w)``
    within one graph.
    """

    def __init__(self, node_ptr: Tensor, num_nodes: int):
        sizes = node_ptr.diff()
        self.num_nodes = num_nodes
        self.dense = int((sizes * sizes).sum()) <= DENSE_LIMIT
        if self.dense and sizes.numel() == 1:
            self.row_base = torch.arange(num_nodes) * num_nodes
            self.num_slots = num_nodes * num_nodes
        elif self.dense:
            # slot(u, w) = row_base[u] + w = block[g] + (u - ptr[g]) * n_g + (w - ptr[g])
            area = sizes * sizes
            block = torch.cumsum(area, 0) - area
            graph = torch.repeat_interleave(sizes)
            start = node_ptr[:-1]
            per_graph = block - start * sizes - start
            self.row_base = torch.arange(num_nodes) * sizes.index_select(0, graph) \
                + per_graph.index_select(0, graph)
            self.num_slots = int(area.sum())

    def slot(self, u: Tensor, w: Tensor) -> Tensor:
        return _take(self.row_base, u) + w if self.dense else u * self.num_nodes + w

    def row_slots(self, nodes: Tensor, i: Sequence[int], j: Sequence[int]) -> Tensor:
        """Slots of the pairs ``(nodes[:, i[p]], nodes[:, j[p]])`` of every row, ``[S, len(i)]``."""
        base = _take(self.row_base, nodes) if self.dense else nodes * self.num_nodes
        if not i:
            return nodes.new_empty(nodes.size(0), 0)
        return torch.stack([base[:, a] + nodes[:, b] for a, b in zip(i, j)], 1)

    def table(self, u: Tensor, w: Tensor, value: Tensor, fill: int,
              decode: Optional[Callable[[Tensor], Tensor]] = None) -> 'PairTable':
        """Map ``(u[i], w[i]) -> decode(value[i])``, the smallest value among duplicates,
        ``fill`` for absent pairs."""
        return PairTable(self, self.slot(u, w), value, fill, decode)


class PairTable:
    """``slot -> value`` map of a :class:`PairLookup`; see :meth:`PairLookup.table`."""

    def __init__(self, lookup: PairLookup, slot: Tensor, value: Tensor, fill: int,
                 decode: Optional[Callable[[Tensor], Tensor]] = None):
        self.lookup, self.fill = lookup, fill
        if lookup.dense:
            # Reduce duplicates with a scatter-min, then decode only the E winners (a
            # full-table pass of division or where costs more than two fills).
            values = torch.full((lookup.num_slots,), torch.iinfo(value.dtype).max, dtype=value.dtype)
            values.scatter_reduce_(0, slot, value, 'amin')
            winner = values.index_select(0, slot)
            values.fill_(fill).scatter_(0, slot, winner if decode is None else decode(winner))
            self.values = values
        else:
            order = torch.argsort(value)
            order = order.index_select(0, torch.argsort(slot.index_select(0, order), stable=True))
            # Among duplicate slots the smallest value comes first, where searchsorted lands.
            self.keys, self.sorted_values = slot.index_select(0, order), value.index_select(0, order)
            if decode is not None:
                self.sorted_values = decode(self.sorted_values)

    def __call__(self, u: Tensor, w: Tensor) -> Tensor:
        return self.at(self.lookup.slot(u, w))

    def at(self, slot: Tensor) -> Tensor:
        if self.lookup.dense:
            return _take(self.values, slot)
        out = torch.full(slot.shape, self.fill, dtype=self.sorted_values.dtype)
        if self.keys.numel() == 0:
            return out
        pos = torch.searchsorted(self.keys, slot.contiguous()).clamp_(max=self.keys.numel() - 1)
        hit = _take(self.keys, pos) == slot
        return torch.where(hit, _take(self.sorted_values, pos), out)


class UndirectedAdjacency(NamedTuple):
    """CSR of the undirected simple graph and an adjacency test on node pairs."""
    rowptr: Tensor
    col: Tensor
    adjacent: PairTable
    num_nodes: int


def undirected_adjacency(edge_index: Tensor, num_nodes: int,
                         lookup: Optional[PairLookup] = None) -> UndirectedAdjacency:
    if lookup is None:
        lookup = PairLookup(torch.tensor([0, num_nodes]), num_nodes)
    src, dst = edge_index[0].long(), edge_index[1].long()
    keep = _where(src != dst)
    src, dst = src.index_select(0, keep), dst.index_select(0, keep)
    keys = torch.unique(torch.cat([src * num_nodes + dst, dst * num_nodes + src]))
    row, col = keys // num_nodes, keys % num_nodes
    rowptr = row.new_zeros(num_nodes + 1)
    torch.cumsum(torch.bincount(row, minlength=num_nodes), 0, out=rowptr[1:])
    adjacent = lookup.table(row, col, torch.ones(row.numel(), dtype=torch.int8), fill=0)
    return UndirectedAdjacency(rowptr, col, adjacent, num_nodes)


def _neighbours(adj: UndirectedAdjacency, nodes: Tensor):
    """``(owner, neighbour)`` for every neighbour of every entry of ``nodes``."""
    start = adj.rowptr.index_select(0, nodes)
    deg = adj.rowptr.index_select(0, nodes + 1) - start
    owner = torch.repeat_interleave(deg)
    first = torch.cumsum(deg, 0) - deg
    pos = (start - first).index_select(0, owner) + torch.arange(owner.numel())
    return owner, adj.col.index_select(0, pos)


def connected_sets(adj: UndirectedAdjacency, roots: Tensor, k: int) -> Tensor:
    """All connected induced k-sets whose minimum node is in ``roots``.

    Returns:
        LongTensor ``[S, k]``, rows in ESU order, nodes in insertion order (unsorted).
    """
    sub = roots.view(-1, 1)
    if k == 1:
        return sub.clone()
    owner, ext = _neighbours(adj, roots)
    keep = _where(ext > roots.index_select(0, owner))
    owner, ext = owner.index_select(0, keep), ext.index_select(0, keep)
    for level in range(1, k):
        # One child per extension entry e (state owner[e], node ext[e]).
        child_sub = torch.cat([sub.index_select(0, owner), ext.view(-1, 1)], 1)
        if level == k - 1:
            return child_sub
        num_children = child_sub.size(0)
        ext_end = torch.cumsum(torch.bincount(owner, minlength=sub.size(0)), 0)
        tail_len = ext_end.index_select(0, owner) - torch.arange(1, num_children + 1)

        # Exclusive neighbours u of w = ext[e]: above the root, outside V_sub and N(V_sub).
        cand_owner, cand = _neighbours(adj, ext)
        parent_sub = sub.index_select(0, owner.index_select(0, cand_owner))
        ok = cand > parent_sub[:, 0]
        for c in range(level):
            column = parent_sub[:, c]
            ok &= cand != column
            ok &= adj.adjacent.at(adj.adjacent.lookup.slot(column, cand)) == 0
        keep = _where(ok)
        cand_owner, cand = cand_owner.index_select(0, keep), cand.index_select(0, keep)
        new_len = torch.bincount(cand_owner, minlength=num_children)

        # Child e's extension list: the parent's entries after e (tail), then its new
        # exclusive neighbours; one gather from cat(ext, cand). States with an empty
        # list have no descendants and are dropped.
        length = tail_len + new_len
        alive = _where(length > 0)
        alive_len = length.index_select(0, alive)
        next_owner = torch.repeat_interleave(alive_len)
        rank = torch.arange(next_owner.numel()) - (torch.cumsum(alive_len, 0) - alive_len).index_select(0, next_owner)
        child = alive.index_select(0, next_owner)
        tail = tail_len.index_select(0, child)
        new_start = ext.numel() + torch.cumsum(new_len, 0) - new_len - tail_len
        source = torch.where(rank < tail, child + 1, new_start.index_select(0, child)) + rank
        ext = torch.cat([ext, cand]).index_select(0, source)
        sub, owner = child_sub.index_select(0, alive), next_owner
    raise AssertionError('unreachable')  # pragma: no cover


def sort_rows(rows: Tensor, num_nodes: int) -> Tensor:
    """Sort node ids within each row, then rows lexicographically."""
    rows = rows.sort(1).values
    if rows.size(0) <= 1:
        return rows
    k = rows.size(1)
    if num_nodes ** k <= 2**63 - 1:
        key = rows[:, 0].clone()
        for c in range(1, k):
            key.mul_(num_nodes).add_(rows[:, c])
        return rows.index_select(0, key.argsort())
    order = torch.arange(rows.size(0))
    for c in range(k - 1, -1, -1):
        order = order[rows[order, c].argsort(stable=True)]
    return rows.index_select(0, order)


def edge_id_table(edge_index: Tensor, lookup: PairLookup) -> PairTable:
    """Table answering, for ``u < w``, the id of edge ``u -> w`` in ``edge_index``,
    else of ``w -> u``, else ``-1``; the smallest id among duplicate edges."""
    src, dst = edge_index[0].long(), edge_index[1].long()
    num_edges = src.numel()
    # Key every edge at (min, max); code = backward * E + id, so the minimum code is
    # the smallest forward id when a forward edge exists, else the smallest backward id.
    lo, hi = torch.minimum(src, dst), torch.maximum(src, dst)
    code = (src > dst).long() * num_edges + torch.arange(num_edges)
    return lookup.table(lo, hi, code, fill=-1, decode=lambda c: c % max(num_edges, 1))


def edge_ids(table: PairTable, u: Tensor, w: Tensor) -> Tensor:
    """Edge ids of the pairs ``u < w`` from :func:`edge_id_table` (``-1``: no edge)."""
    return table(u, w)
