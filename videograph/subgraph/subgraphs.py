"""The :class:`Subgraphs` container and pair-numbering helpers."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import NamedTuple, Optional, Sequence

import torch
from torch import Tensor

from .combinations import num_pairs, slot_pair_columns

MODES = ('complete', 'connected')


def slot_pairs(k: int) -> Tensor:
    """Slot positions ``(i, j)``, ``i < j``, of the ``k(k-1)/2`` pair slots of a
    k-node sub-graph in lexicographic order, as a LongTensor ``[k(k-1)/2, 2]``.

    Column ``p`` of :attr:`Subgraphs.pair_index` is the pair of nodes
    ``(nodes[:, i], nodes[:, j])`` with ``(i, j) = slot_pairs(k)[p]``.
    """
    i, j = slot_pair_columns(k)
    return torch.stack([i, j], 1)


def pair_ptr(node_ptr: Tensor) -> Tensor:
    r"""Offsets ``[B + 1]`` of each graph's dense pair numbering:
    graph ``g`` with :math:`n_g` nodes owns pair ids
    ``pair_ptr[g] : pair_ptr[g] + n_g (n_g - 1) / 2``."""
    n = node_ptr.diff()
    out = node_ptr.new_zeros(n.numel() + 1)
    torch.cumsum(n * (n - 1) // 2, 0, out=out[1:])
    return out


def pair_nodes(node_ptr: Tensor) -> Tensor:
    r"""The global node pair ``(u, w)``, ``u < w``, of every pair id of a batch.

    Pair ids number each graph's node pairs densely (see :func:`pair_ptr`): the local
    pair ``u < w`` of graph ``g`` (``n_g`` nodes) has id

    .. math::
        \mathrm{pair\_ptr}[g] + u \, n_g - u(u+1)/2 + (w - u - 1),

    the row-major order of ``torch.triu_indices(n_g, n_g, 1)``. Build a per-pair
    feature table ``T[pair_nodes(node_ptr)]``-style (``[num_pairs, ...]``) and gather it
    with :attr:`Subgraphs.pair_index` in ``mode='complete'``.

    Args:
        node_ptr (LongTensor): ``[B + 1]`` node offsets (``Batch.ptr``).

    Returns:
        LongTensor ``[num_pairs, 2]`` of global node ids.
    """
    n = node_ptr.diff()
    offsets = pair_ptr(node_ptr)
    out = node_ptr.new_empty(int(offsets[-1]), 2)
    for size in torch.unique(n).tolist():
        if size < 2:
            continue
        graphs = (n == size).nonzero().view(-1)
        local = torch.triu_indices(size, size, 1, dtype=torch.long).t().contiguous()
        rows = offsets[graphs].view(-1, 1) + torch.arange(local.size(0)).view(1, -1)
        out[rows.view(-1)] = (local.unsqueeze(0) + node_ptr[graphs].view(-1, 1, 1)).view(-1, 2)
    return out


class Prefixes(NamedTuple):
    """The distinct (k-1)-node prefixes of a :class:`Subgraphs`' rows.

    Attributes:
        nodes (LongTensor): ``[P, k - 1]`` distinct prefixes ``nodes[:, :-1]``, in row order.
        index (LongTensor): ``[S]`` prefix of every sub-graph (non-decreasing).
        first (LongTensor): ``[P]`` row of the first sub-graph with each prefix, e.g.
            ``pair_index[first][:, cols]`` gives the prefix's pair slots.
    """
    nodes: Tensor
    index: Tensor
    first: Tensor


@dataclass(repr=False, eq=False)
class Subgraphs:
    r"""k-node sub-graphs of a graph batch, one row each.

    Rows are sorted lexicographically by global node ids, hence grouped by graph
    (graph ``g`` owns rows ``ptr[g]:ptr[g + 1]``) and, per graph, in
    :func:`itertools.combinations` order.

    Attributes:
        nodes (LongTensor): ``[S, k]`` global node ids (into the batch), ascending per row.
        pair_index (LongTensor): ``[S, k(k-1)/2]``, one column per pair slot ``(i, j)``,
            ``i < j``, lexicographic (:func:`slot_pairs`). ``mode='complete'``: the dense
            pair id of ``(nodes[:, i], nodes[:, j])`` (:func:`pair_nodes`, offsets
            :attr:`pair_ptr`). ``mode='connected'``: the id (column) in ``data[edge_key]``
            of the edge ``nodes[:, i] -> nodes[:, j]``, else of ``nodes[:, j] -> nodes[:, i]``,
            the smallest id among duplicates, or ``-1`` when the pair is not adjacent.
        batch (LongTensor): ``[S]`` graph of each sub-graph.
        ptr (LongTensor): ``[B + 1]`` sub-graph offsets per graph.
        node_ptr (LongTensor): ``[B + 1]`` node offsets of the input batch.
        k (int): nodes per sub-graph.
        mode (str): ``'complete'`` or ``'connected'``.
        pair_ptr (LongTensor, optional): ``[B + 1]`` pair-id offsets (``mode='complete'``).
    """
    nodes: Tensor
    pair_index: Tensor
    batch: Tensor
    ptr: Tensor
    node_ptr: Tensor
    k: int
    mode: str
    pair_ptr: Optional[Tensor] = None
    _prefixes: Optional[Prefixes] = field(default=None, init=False)

    @property
    def num_subgraphs(self) -> Tensor:
        """LongTensor ``[B]``: sub-graphs per graph."""
        return self.ptr.diff()

    @property
    def num_graphs(self) -> int:
        return self.ptr.numel() - 1

    @property
    def num_pair_slots(self) -> int:
        return num_pairs(self.k)

    def __len__(self) -> int:
        return self.nodes.size(0)

    def pair_nodes(self) -> Tensor:
        """``[num_pairs, 2]`` global nodes of every pair id (``mode='complete'``);
        see :func:`pair_nodes`."""
        if self.mode != 'complete':
            raise ValueError(f"pair_nodes() needs mode='complete' (got mode='{self.mode}'); "
                             "in 'connected' mode pair_index holds edge ids of the input")
        return pair_nodes(self.node_ptr)

    def prefixes(self) -> Prefixes:
        """The distinct (k-1)-prefixes ``nodes[:, :-1]`` and each row's prefix.

        Rows sharing a prefix are consecutive (rows are lexicographically sorted),
        so the prefix structure is a run-length pass, computed once and memoised.
        A sub-graph's score can then be the prefix's score plus one node slot and the
        ``k - 1`` pair slots ``(i, k - 1)``.
        """
        if self._prefixes is None:
            head = self.nodes[:, :-1]
            new_run = torch.ones(head.size(0), dtype=torch.bool, device=head.device)
            if head.size(0) > 1:
                # A run also ends at a graph boundary (matters for k = 1, where prefixes are empty).
                new_run[1:] = self.batch[1:] != self.batch[:-1]
                if self.k > 1:
                    new_run[1:] |= (head[1:] != head[:-1]).any(1)
            first = new_run.nonzero().view(-1)
            index = torch.cumsum(new_run, 0) - 1
            self._prefixes = Prefixes(head[first], index, first)
        return self._prefixes

    def to(self, device, non_blocking: bool = False) -> 'Subgraphs':
        """Copy of ``self`` with every tensor moved to ``device``."""
        moved = {}
        for f in fields(self):
            if not f.init:
                continue
            value = getattr(self, f.name)
            moved[f.name] = value.to(device, non_blocking=non_blocking) if isinstance(value, Tensor) else value
        return Subgraphs(**moved)

    def select(self, mask: Tensor) -> 'Subgraphs':
        """The rows where the boolean ``mask [S]`` is true, in their order (still sorted, ``ptr`` recounted),
        e.g. each video's best sub-graphs by some score."""
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.shape != (len(self),):
            raise ValueError(f"'mask' must be a boolean tensor of shape [{len(self)}] (one entry per sub-graph), "
                             f"got {getattr(mask, 'dtype', type(mask).__name__)} "
                             f"{tuple(getattr(mask, 'shape', ()))}")
        mask = mask.to(self.nodes.device)
        counts = torch.bincount(self.batch[mask], minlength=self.num_graphs)
        ptr = self.ptr.new_zeros(self.num_graphs + 1)
        torch.cumsum(counts, 0, out=ptr[1:])
        return Subgraphs(self.nodes[mask], self.pair_index[mask], self.batch[mask], ptr, self.node_ptr, self.k,
                         self.mode, self.pair_ptr)

    @classmethod
    def cat(cls, chunks: Sequence['Subgraphs']) -> 'Subgraphs':
        """Concatenate consecutive chunks of one enumeration (e.g. from
        :func:`iter_subgraphs`) into one :class:`Subgraphs`."""
        chunks = list(chunks)
        if not chunks:
            raise ValueError("'chunks' must hold at least one Subgraphs")
        head = chunks[0]
        for c in chunks[1:]:
            if c.k != head.k or c.mode != head.mode or not torch.equal(c.node_ptr, head.node_ptr):
                raise ValueError("'chunks' must come from one enumeration (same k, mode and graphs)")
        counts = torch.stack([c.num_subgraphs for c in chunks]).sum(0)
        ptr = head.ptr.new_zeros(counts.numel() + 1)
        torch.cumsum(counts, 0, out=ptr[1:])
        return cls(torch.cat([c.nodes for c in chunks]), torch.cat([c.pair_index for c in chunks]),
                   torch.cat([c.batch for c in chunks]), ptr, head.node_ptr, head.k, head.mode,
                   head.pair_ptr)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(k={self.k}, mode={self.mode}, '
                f'num_subgraphs={len(self)}, num_graphs={self.num_graphs})')
