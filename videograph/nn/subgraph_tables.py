r"""Slot tables for fused sub-graph scoring (MUSLE, Li et al., CVPR 2021).

A k-node sub-graph with nodes :math:`v_1 < \dots < v_k` is represented by

.. math::
    x = [f(v_1), \dots, f(v_k), e(v_1, v_2), \dots, e(v_{k-1}, v_k)]

(``k`` node slots, then the ``k(k-1)/2`` pair slots :math:`(i, j)`, :math:`i < j`, in lexicographic order), so
:math:`\dim(x) = k D_n + k(k-1)/2 \, D_e`. Any function that is a sum over slots — a linear layer, a diagonal
Mahalanobis distance — is a sum of rows of one table that stacks ``node_table [N, k, G]`` (row ``v * k + i``:
node ``v`` in node slot ``i``) and ``pair_table [P, k(k-1)/2, G]`` (row ``N * k + p * k(k-1)/2 + j``: pair id
``p`` in pair slot ``j``). :func:`slot_rows` gives every sub-graph's ``k + k(k-1)/2`` rows of that stacked table;
:func:`videograph.ops.gather_sum` then sums them without materialising ``x``.
"""
from typing import Tuple

import torch
from torch import Tensor
from torch_geometric.utils import to_dense_batch

from videograph.ops import scatter
from videograph.subgraph import Subgraphs, slot_pairs

__all__ = ["slot_rows", "prefix_rows", "scatter_rows", "materialise", "per_graph_matmul",
           "per_graph_inner", "stack_tables"]


def stack_tables(node_table: Tensor, pair_table: Tensor) -> Tensor:
    """``[N * k + P * k(k-1)/2, G]``: the row layout :func:`slot_rows` indexes."""
    return torch.cat([node_table.reshape(-1, node_table.size(-1)), pair_table.reshape(-1, pair_table.size(-1))])


def slot_rows(nodes: Tensor, pair_index: Tensor, num_nodes: int) -> Tensor:
    """Rows ``[S, k + k(k-1)/2]`` of the stacked slot table (see the module doc) of every sub-graph.

    Args:
        nodes: ``[S, k]`` node ids, ascending per row.
        pair_index: ``[S, k(k-1)/2]`` complete-mode pair ids (:func:`videograph.subgraph.pair_nodes`).
        num_nodes: ``N``, the number of rows of the node table's first axis.
    """
    k, num_pair_slots = nodes.size(1), pair_index.size(1)
    node_rows = nodes * k + torch.arange(k, device=nodes.device)
    pair_rows = num_nodes * k + pair_index * num_pair_slots + torch.arange(num_pair_slots, device=nodes.device)
    return torch.cat([node_rows, pair_rows], 1)


def prefix_rows(k: int, device=None) -> Tuple[Tensor, Tensor]:
    r"""Columns of :func:`slot_rows` shared by all sub-graphs with one (k-1)-prefix, and the rest.

    Returns ``(prefix_columns, tail_columns)``: node slots ``0..k-2`` and pair slots ``(i, j)`` with ``j < k-1``
    (:math:`(k-1) + (k-1)(k-2)/2` columns), then node slot ``k-1`` and the pair slots ``(i, k-1)`` (``k``
    columns).
    """
    pairs = slot_pairs(k).to(device)
    node_cols = torch.arange(k, device=device)
    pair_cols = k + torch.arange(pairs.size(0), device=device)
    last = pairs[:, 1] == k - 1
    return torch.cat([node_cols[:-1], pair_cols[~last]]), torch.cat([node_cols[-1:], pair_cols[last]])


def scatter_rows(src: Tensor, rows: Tensor, num_rows: int) -> Tensor:
    r"""The transpose of :func:`videograph.ops.gather_sum`: ``out[r] = sum over (s, w) with rows[s, w] = r of
    src[s]``, ``[num_rows, F]``. One :func:`videograph.ops.scatter` per column keeps memory at
    :math:`O(S F)` (a single call would need ``src`` repeated ``W`` times)."""
    out = src.new_zeros(num_rows, src.size(1))
    for w in range(rows.size(1)):
        out = out + scatter(src, rows[:, w], dim=0, dim_size=num_rows)
    return out


def materialise(node_x: Tensor, pair_x: Tensor, nodes: Tensor, pair_index: Tensor) -> Tensor:
    """``[..., k * D_n + k(k-1)/2 * D_e]``: the explicit sub-graph representations (the oracle path)."""
    return torch.cat([node_x[nodes].flatten(-2), pair_x[pair_index].flatten(-2)], -1)


def per_graph_matmul(x: Tensor, batch: Tensor, weight: Tensor) -> Tensor:
    """``out[r] = x[r] @ weight[batch[r]]`` for rows grouped by graph (``batch`` sorted), ``[R, O]``.

    Rows are padded per graph (:func:`torch_geometric.utils.to_dense_batch`) and multiplied with one
    :func:`torch.bmm`, so no ``[R, F, O]`` gather of the weights is formed.

    Args:
        x: ``[R, F]``. batch: ``[R]`` sorted graph ids. weight: ``[B, F, O]``.
    """
    dense, mask = to_dense_batch(x, batch, batch_size=weight.size(0))
    return torch.bmm(dense, weight)[mask]


def per_graph_inner(a: Tensor, x: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    """``out[b] = sum over rows r of graph b of outer(a[r], x[r])``, ``[B, P, Q]`` (``batch`` sorted).

    Args:
        a: ``[R, P]``. x: ``[R, Q]``. batch: ``[R]``.
    """
    dense_a, _ = to_dense_batch(a, batch, batch_size=num_graphs)
    dense_x, _ = to_dense_batch(x, batch, batch_size=num_graphs)
    return torch.bmm(dense_a.transpose(1, 2), dense_x)


def graph_of_rows(ptr: Tensor) -> Tensor:
    """``[ptr[-1]]`` graph id of every row from offsets ``ptr [B + 1]``."""
    return torch.repeat_interleave(torch.arange(ptr.numel() - 1, device=ptr.device), ptr.diff())


def check_complete(sub: Subgraphs, k: int, node_ptr: Tensor) -> None:
    if not isinstance(sub, Subgraphs):
        raise TypeError(f"'subgraphs[{k}]' must be a videograph.subgraph.Subgraphs, got {type(sub).__name__}")
    if sub.mode != "complete" or sub.k != k:
        raise ValueError(f"'subgraphs[{k}]' must be complete-mode {k}-node sub-graphs, got {sub!r}")
    if not torch.equal(sub.node_ptr.cpu(), node_ptr.cpu()):
        raise ValueError(f"'subgraphs[{k}]' was enumerated on other graphs: its node_ptr differs from 'node_ptr'")
