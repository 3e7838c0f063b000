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

from typing import NamedTuple, Optional

import torch
from torch import Tensor


class UndirectedAdjacency(NamedTuple):
    """CSR of the undirected simple graph, plus its sorted ``src * N + dst`` keys."""
    rowptr: Tensor
    col: Tensor
    keys: Tensor
    num_nodes: int


def undirected_adjacency(edge_index: Tensor, num_nodes: int) -> UndirectedAdjacency:
    src, dst = edge_index[0].long(), edge_index[1].long()
    loop = src == dst
    src, dst = src[~loop], dst[~loop]
    keys = torch.unique(torch.cat([src * num_nodes + dst, dst * num_nodes + src]))
    row, col = keys // num_nodes, keys % num_nodes
    rowptr = row.new_zeros(num_nodes + 1)
    torch.cumsum(torch.bincount(row, minlength=num_nodes), 0, out=rowptr[1:])
    return UndirectedAdjacency(rowptr, col, keys, num_nodes)


def _has_edge(adj: UndirectedAdjacency, u: Tensor, w: Tensor) -> Tensor:
    if adj.keys.numel() == 0:
        return torch.zeros(u.shape, dtype=torch.bool)
    query = u * adj.num_nodes + w
    pos = torch.searchsorted(adj.keys, query).clamp_(max=adj.keys.numel() - 1)
    return adj.keys[pos] == query


def _neighbours(adj: UndirectedAdjacency, nodes: Tensor):
    """``(owner, neighbour)`` for every neighbour of every entry of ``nodes``."""
    start = adj.rowptr[nodes]
    deg = adj.rowptr[nodes + 1] - start
    owner = torch.repeat_interleave(deg)
    first = torch.cumsum(deg, 0) - deg
    pos = start.index_select(0, owner) + torch.arange(owner.numel()) - first.index_select(0, owner)
    return owner, adj.col[pos]


def connected_sets(adj: UndirectedAdjacency, roots: Tensor, k: int) -> Tensor:
    """All connected induced k-sets whose minimum node is in ``roots``.

    Returns:
        LongTensor ``[S, k]``, rows in ESU order, nodes in insertion order (unsorted).
    """
    sub = roots.view(-1, 1)
    if k == 1:
        return sub.clone()
    owner, ext = _neighbours(adj, roots)
    keep = ext > roots[owner]
    owner, ext = owner[keep], ext[keep]
    for level in range(1, k):
        # Children = one per extension entry (owner state f, node w at position p).
        if level == k - 1:
            return torch.cat([sub.index_select(0, owner), ext.view(-1, 1)], 1)
        num_states = sub.size(0)
        ext_count = torch.bincount(owner, minlength=num_states)
        ext_end = torch.cumsum(ext_count, 0)
        child_sub = torch.cat([sub.index_select(0, owner), ext.view(-1, 1)], 1)
        num_children = child_sub.size(0)
        entry = torch.arange(num_children)
        tail_len = ext_end.index_select(0, owner) - entry - 1

        # Exclusive neighbours of w: above the root, outside V_sub and N(V_sub).
        cand_owner, cand = _neighbours(adj, ext)
        parent = owner.index_select(0, cand_owner)
        parent_sub = sub.index_select(0, parent)
        ok = cand > parent_sub[:, 0]
        ok &= ~(parent_sub == cand.view(-1, 1)).any(1)
        ok &= ~_has_edge(adj, parent_sub, cand.view(-1, 1).expand_as(parent_sub)).any(1)
        cand_owner, cand = cand_owner[ok], cand[ok]
        new_len = torch.bincount(cand_owner, minlength=num_children)

        length = tail_len + new_len
        alive = length > 0  # States without extensions have no descendants.
        child_index = torch.cumsum(alive, 0) - 1
        start = torch.cumsum(length, 0) - length
        total = int(length.sum())
        next_owner = torch.repeat_interleave(child_index[alive], length[alive])
        next_ext = ext.new_empty(total)
        # Tail: entries owner-positions p+1.. of the parent list, in order.
        tail_owner = torch.repeat_interleave(tail_len)
        tail_rank = torch.arange(tail_owner.numel()) - (torch.cumsum(tail_len, 0) - tail_len)[tail_owner]
        next_ext[start[tail_owner] + tail_rank] = ext[tail_owner + 1 + tail_rank]
        # New exclusive neighbours after the tail.
        new_rank = torch.arange(cand.numel()) - (torch.cumsum(new_len, 0) - new_len)[cand_owner]
        next_ext[start[cand_owner] + tail_len[cand_owner] + new_rank] = cand
        sub, owner, ext = child_sub[alive], next_owner, next_ext
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


def edge_ids(edge_index: Tensor, num_nodes: int, u: Tensor, w: Tensor) -> Tensor:
    """Id of edge ``u -> w`` in ``edge_index``, else of ``w -> u``, else ``-1``;
    the smallest id among duplicate edges."""
    keys = edge_index[0].long() * num_nodes + edge_index[1].long()
    order = keys.argsort(stable=True)
    sorted_keys = keys[order]
    out = torch.full(u.shape, -1, dtype=torch.long)
    if keys.numel() == 0:
        return out
    for a, b in ((w, u), (u, w)):  # u -> w written last so it wins.
        query = a * num_nodes + b
        pos = torch.searchsorted(sorted_keys, query).clamp_(max=keys.numel() - 1)
        hit = sorted_keys[pos] == query
        out = torch.where(hit, order[pos], out)
    return out
