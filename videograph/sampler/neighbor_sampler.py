import threading
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.sampler import (
    BaseSampler,
    EdgeSamplerInput,
    NegativeSampling,
    NodeSamplerInput,
    SamplerOutput,
)
from torch_geometric.sampler.base import NumNeighbors
from torch_geometric.sampler.neighbor_sampler import edge_sample, node_sample

from videograph.sampler.grouped_uniform import GroupedUniform
from videograph.sampler.segment_sample import segment_sample

__all__ = ["NeighborSampler"]

# A node's slot in the relabel buffer holds its local id, UNSET when it is not in the
# mini-batch, and FIRST + position while a hop looks for each new node's first occurrence.
_UNSET = 1 << 62
_FIRST = 1 << 61
_MAX_WORKERS = 1024


class NeighborSampler(BaseSampler):
    r"""The GraphSAGE neighbour sampler from the `"Inductive Representation
    Learning on Large Graphs" <https://arxiv.org/abs/1706.02216>`_ paper, as
    used by P-GCN (`"Graph Convolutional Networks for Temporal Action
    Localization" <https://arxiv.org/abs/1909.03252>`_, Sec. 3.5), in pure
    PyTorch.

    Implements PyG's :class:`~torch_geometric.sampler.BaseSampler` contract,
    so :class:`torch_geometric.loader.NodeLoader` (and
    :class:`~torch_geometric.loader.LinkLoader`) turn it into a loader of
    ordinary PyG mini-batches without :obj:`pyg-lib` or :obj:`torch-sparse`.

    Starting from the seed nodes, hop :math:`h` draws for every node of the
    previous hop's frontier :math:`\min(\deg(i), N_s^{(h)})` of its incoming
    neighbours :math:`j` (edges :math:`j \to i`, :obj:`edge_index[0]` is
    :math:`j`) uniformly without replacement (:math:`N_s^{(h)}` with
    replacement if :obj:`replace=True`; all of them if :math:`N_s^{(h)} = -1`
    or :obj:`sample=False`). Draws are vectorised over the whole frontier on
    a CSC (in-edges grouped by target) built once in the constructor; new
    nodes are deduplicated across hops, so every node appears once per
    mini-batch (a seed listed twice keeps both of its positions, so that the
    first :obj:`batch_size` outputs line up with the input).

    The output follows PyG's directional, non-disjoint convention: local node
    ids with the seeds first in input order, then each hop's new nodes in the
    order they were first drawn; :obj:`row` holds the sampled neighbour
    :math:`j`, :obj:`col` the node :math:`i` it was drawn for, grouped by
    :math:`i`; :obj:`edge` holds the ids of the drawn edges in the input
    :obj:`edge_index` (no permutation); :obj:`num_sampled_nodes` and
    :obj:`num_sampled_edges` count them per hop, as
    :func:`torch_geometric.utils.trim_to_layer` expects.

    With :obj:`edge_types`, P-GCN's two-stage draw is applied per node and
    hop: first up to :obj:`edge_types[t]` candidates uniformly from the
    neighbours reached over edges of type :math:`t` (the value in
    :obj:`data.edge_type`, e.g. :obj:`{3: 8, 4: 2}` for up to 8 contextual
    and 2 surrounding candidates), then :math:`N_s^{(h)}` of the candidates
    uniformly. Edges of types not listed are never drawn. (The official P-GCN
    code takes the candidates with the highest tIoU / smallest distance and
    repeats them when there are too few; this sampler draws them uniformly.)

    Args:
        data (torch_geometric.data.Data): The graph, e.g. a
            :class:`~torch_geometric.data.Batch` of per-video proposal graphs.
        num_neighbors (List[int]): The number of neighbours :math:`N_s` to draw
            for each node in each hop; :obj:`-1` takes all of them.
            (default: :obj:`[4, 4]`)
        edge_key (str, optional): The attribute holding the edges to sample
            over. (default: :obj:`"edge_index"`)
        replace (bool, optional): If set to :obj:`True`, draws with
            replacement. (default: :obj:`False`)
        edge_types (Dict[int, int], optional): Candidate quotas per edge type
            value (:obj:`-1`: all neighbours of that type), read from
            :obj:`data.edge_type`. (default: :obj:`None`)
        sample (bool, optional): If set to :obj:`False`, takes every
            neighbourhood whole (P-GCN does not sample at test time); can be
            switched later through the :obj:`sample` attribute.
            (default: :obj:`True`)
        generator (torch.Generator or GroupedUniform, optional): The source
            of randomness. A :class:`~videograph.sampler.GroupedUniform`
            (with every node's :obj:`group`) draws each group's nodes exactly
            as a call on that group's seeds alone with that group's generator
            would (groups must not share edges; main process only). In
            data-loading worker :math:`w` of the :math:`e`-th epoch (of
            :math:`W` workers), the sampler draws from a generator seeded
            with a number drawn from its copy of this one plus
            :math:`eW + w` (as :class:`torch.utils.data.DataLoader` seeds
            its workers), so this seed alone decides the draws of every
            worker. (default: :obj:`None`)
    """
    def __init__(
        self,
        data: Data,
        num_neighbors: Union[Sequence[int], NumNeighbors] = (4, 4),
        *,
        edge_key: str = "edge_index",
        replace: bool = False,
        edge_types: Optional[Mapping[int, int]] = None,
        sample: bool = True,
        generator: Optional[Union[torch.Generator, GroupedUniform]] = None,
    ):
        if not isinstance(data, Data):
            raise TypeError(f"'data' must be a torch_geometric.data.Data or Batch (got {type(data).__name__})")
        if generator is not None and not isinstance(generator, (torch.Generator, GroupedUniform)):
            raise TypeError(f"'generator' must be a torch.Generator or GroupedUniform "
                            f"(got {type(generator).__name__})")
        self.num_neighbors = num_neighbors
        self.replace = bool(replace)
        self.sample = bool(sample)
        self.generator = generator
        self.edge_key = edge_key
        self.num_nodes = int(data.num_nodes)

        edge_index = _get_edge_index(data, edge_key, self.num_nodes)
        self.num_edges = edge_index.size(1)
        src, dst = edge_index[0], edge_index[1]
        edge_id = None
        if edge_types is None:
            self.quota: Optional[Tensor] = None
            num_types = 1
            key = dst
        else:
            types, self.quota = _parse_edge_types(edge_types)
            edge_type = _get_edge_type(data, edge_index.size(1))
            type_index = torch.searchsorted(types, edge_type)
            keep = (type_index < types.numel()) & (types[type_index.clamp(max=types.numel() - 1)] == edge_type)
            edge_id = keep.nonzero().view(-1)
            src, dst, type_index = src[edge_id], dst[edge_id], type_index[edge_id]
            num_types = types.numel()
            key = dst * num_types + type_index
        self.edge_types = None if edge_types is None else dict(edge_types)
        self.num_types = num_types

        # In-edges grouped by target (and edge type): `ptr[v]:ptr[v + 1]` with
        # v = i * num_types + t indexes `row` (sources) and `perm` (edge ids).
        perm = torch.argsort(key, stable=True)
        self.row = src[perm].contiguous()
        self.perm = (perm if edge_id is None else edge_id[perm]).contiguous()
        self.ptr = torch.zeros(self.num_nodes * num_types + 1, dtype=torch.long)
        torch.cumsum(torch.bincount(key, minlength=self.num_nodes * num_types), 0, out=self.ptr[1:])
        self._init_state()

    def _init_state(self):
        self._buffers: List[Tensor] = []
        self._lock = threading.Lock()
        self._worker_seed: Optional[int] = None
        # How many processes have served as data-loading worker w (shared with them, see below).
        self._incarnations = torch.zeros(_MAX_WORKERS, dtype=torch.long).share_memory_()

    @classmethod
    def cat(cls, samplers: Sequence["NeighborSampler"], *,
            generator: Optional[Union[torch.Generator, GroupedUniform]] = None) -> "NeighborSampler":
        r"""The sampler of :obj:`Batch.from_data_list(graphs)` from the samplers of the :obj:`graphs`
        (all with the same settings), without grouping the edges again: it draws exactly what
        :obj:`NeighborSampler(batch, ...)` would."""
        samplers = list(samplers)
        if len(samplers) == 0 or not all(isinstance(s, cls) for s in samplers):
            raise TypeError(f"'samplers' must be a non-empty sequence of {cls.__name__}")
        if generator is not None and not isinstance(generator, (torch.Generator, GroupedUniform)):
            raise TypeError(f"'generator' must be a torch.Generator or GroupedUniform "
                            f"(got {type(generator).__name__})")
        first = samplers[0]
        settings = ("_num_neighbors", "replace", "sample", "edge_key", "edge_types", "num_types")
        for i, other in enumerate(samplers[1:], 1):
            if any(getattr(other, a) != getattr(first, a) for a in settings):
                raise ValueError(f"'samplers[{i}]' does not share the settings of 'samplers[0]' ({first!r})")
        self = cls.__new__(cls)
        for a in settings + ("quota", ):
            setattr(self, a, getattr(first, a))
        self.generator = generator
        nodes = torch.tensor([0] + [s.num_nodes for s in samplers]).cumsum(0)
        edges = torch.tensor([0] + [s.num_edges for s in samplers]).cumsum(0)
        kept = torch.tensor([0] + [s.row.numel() for s in samplers]).cumsum(0)
        self.num_nodes, self.num_edges = int(nodes[-1]), int(edges[-1])
        self.row = torch.cat([s.row + nodes[i] for i, s in enumerate(samplers)])
        self.perm = torch.cat([s.perm + edges[i] for i, s in enumerate(samplers)])
        self.ptr = torch.cat([first.ptr[:1]] + [s.ptr[1:] + kept[i] for i, s in enumerate(samplers)])
        self._init_state()
        return self

    # Configuration ###########################################################

    @property
    def num_neighbors(self) -> List[int]:
        return list(self._num_neighbors)

    @num_neighbors.setter
    def num_neighbors(self, num_neighbors: Union[Sequence[int], NumNeighbors]):
        if isinstance(num_neighbors, NumNeighbors):
            num_neighbors = num_neighbors.values
        if isinstance(num_neighbors, (dict, str)) or not isinstance(num_neighbors, Sequence):
            raise ValueError(f"'num_neighbors' must be a list of ints, one per hop (got {num_neighbors!r})")
        values = list(num_neighbors)
        if any(isinstance(v, bool) or not isinstance(v, int) or v < -1 for v in values):
            raise ValueError(f"'num_neighbors' must hold non-negative ints or -1 (all neighbours), "
                             f"one per hop (got {values})")
        self._num_neighbors = values

    @property
    def num_hops(self) -> int:
        return len(self._num_neighbors)

    @property
    def edge_permutation(self) -> None:
        # `SamplerOutput.edge` already holds ids of the input `edge_index`.
        return None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_buffers"] = []
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        extra = f", edge_types={self.edge_types}" if self.edge_types is not None else ""
        return (f"{self.__class__.__name__}(num_neighbors={self.num_neighbors}, edge_key={self.edge_key!r}, "
                f"replace={self.replace}, sample={self.sample}{extra})")

    # Sampling ################################################################

    def sample_from_nodes(self, inputs: NodeSamplerInput, **kwargs) -> SamplerOutput:
        r"""Samples the neighbourhoods of :obj:`inputs.node`; PyG's
        :meth:`~torch_geometric.sampler.BaseSampler.sample_from_nodes`."""
        if inputs.input_type is not None:
            raise ValueError(f"'{self.__class__.__name__}' samples homogeneous graphs "
                             f"(got input_type={inputs.input_type!r})")
        return node_sample(inputs, self._sample)

    def sample_from_edges(
        self,
        inputs: EdgeSamplerInput,
        neg_sampling: Optional[NegativeSampling] = None,
    ) -> SamplerOutput:
        r"""Samples the neighbourhoods of the end points of :obj:`inputs`
        (merged, as in PyG's non-disjoint link sampling); PyG's
        :meth:`~torch_geometric.sampler.BaseSampler.sample_from_edges`.
        Negative sampling, if asked for, uses PyG's own routine and its global
        random state."""
        if inputs.input_type is not None:
            raise ValueError(f"'{self.__class__.__name__}' samples homogeneous graphs "
                             f"(got input_type={inputs.input_type!r})")
        return edge_sample(inputs, self._sample, self.num_nodes, False, None, neg_sampling)

    def _sample(self, seed: Tensor, seed_time: Optional[Tensor] = None, **kwargs) -> SamplerOutput:
        if seed_time is not None:
            raise ValueError(f"'{self.__class__.__name__}' does not do temporal sampling (got seed times)")
        seed = self._check_seeds(seed)
        self._fork_generator_in_worker()
        local = self._acquire()
        nodes = [seed]
        rows: List[Tensor] = []
        cols: List[Tensor] = []
        edges: List[Tensor] = []
        num_sampled_nodes = [seed.numel()]
        num_sampled_edges: List[int] = []
        num_local = seed.numel()
        try:
            local.scatter_reduce_(0, seed, torch.arange(num_local), "amin")
            frontier, begin = seed, 0
            for k in self._num_neighbors:
                target, pos = self._draw(frontier, k)
                source = self.row.index_select(0, pos)
                source_local, new = _relabel(local, source, num_local)
                nodes.append(new)
                rows.append(source_local)
                cols.append(target + begin)
                edges.append(pos)
                num_sampled_nodes.append(new.numel())
                num_sampled_edges.append(pos.numel())
                begin, num_local, frontier = num_local, num_local + new.numel(), new
            node = torch.cat(nodes)
            local.index_fill_(0, node, _UNSET)
        except BaseException:
            local.fill_(_UNSET)
            raise
        finally:
            self._release(local)

        if edges:
            row, col, edge = torch.cat(rows), torch.cat(cols), self.perm.index_select(0, torch.cat(edges))
        else:
            row = col = edge = torch.empty(0, dtype=torch.long)
        return SamplerOutput(node=node, row=row, col=col, edge=edge, batch=None,
                             num_sampled_nodes=num_sampled_nodes, num_sampled_edges=num_sampled_edges)

    def _draw(self, frontier: Tensor, k: int) -> Tuple[Tensor, Tensor]:
        # Returns, for every drawn edge, the frontier index of its target and its CSC position.
        if not self.sample:
            k = -1
        if frontier.numel() == 0 or k == 0:
            empty = torch.empty(0, dtype=torch.long)
            return empty, empty
        if self.quota is None:
            start = self.ptr.index_select(0, frontier)
            count = self.ptr.index_select(0, frontier + 1) - start
            target, offset, _ = segment_sample(count, k, self.replace, self.generator, group=self._group(frontier))
            return target, start.index_select(0, target) + offset

        num_types = self.num_types
        virtual = (frontier.unsqueeze(-1) * num_types + torch.arange(num_types)).view(-1)
        start = self.ptr.index_select(0, virtual)
        count = self.ptr.index_select(0, virtual + 1) - start
        quota = self.quota.repeat(frontier.numel()) if self.sample else -1
        group = self._group(frontier)
        segment, offset, num = segment_sample(count, quota, self.replace, self.generator,
                                              group=None if group is None else group.repeat_interleave(num_types))
        candidate = start.index_select(0, segment) + offset
        num_candidates = num.view(-1, num_types).sum(-1)
        target, offset, _ = segment_sample(num_candidates, k, self.replace, self.generator, group=group)
        first = num_candidates.cumsum(0) - num_candidates
        return target, candidate.index_select(0, first.index_select(0, target) + offset)

    def _group(self, node: Tensor) -> Optional[Tensor]:
        if not isinstance(self.generator, GroupedUniform):
            return None
        if self.generator.group is None or self.generator.group.numel() != self.num_nodes:
            raise ValueError(f"a GroupedUniform 'generator' needs 'group' with one group id per node "
                             f"({self.num_nodes})")
        return self.generator.group.index_select(0, node)

    def _fork_generator_in_worker(self):
        # Data-loading workers receive copies of the generator in one state and would all draw the same
        # numbers. As torch's DataLoader seeds worker w with base_seed + w, base_seed drawn from its own
        # generator, the e-th process to serve as worker w seeds its stream with base + e * num_workers + w,
        # base drawn from its copy of the user's generator: the user's seed alone decides every worker's
        # draws (not the loader's seed, nor the global RNG), and each epoch's fresh workers get fresh
        # streams. e is counted per worker id in memory shared with the workers, so it does not depend
        # on which worker starts first.
        info = torch.utils.data.get_worker_info()
        if self.generator is None or info is None or self._worker_seed == info.seed:
            return
        if isinstance(self.generator, GroupedUniform):
            raise ValueError(f"'{self.__class__.__name__}' draws from a GroupedUniform in the main process only: "
                             f"use num_workers=0")
        if info.id >= self._incarnations.numel():
            raise ValueError(f"'{self.__class__.__name__}' supports at most {self._incarnations.numel()} "
                             f"data-loading workers (got worker id {info.id})")
        epoch = int(self._incarnations[info.id])
        self._incarnations[info.id] += 1
        base = int(torch.empty((), dtype=torch.int64).random_(generator=self.generator))
        self.generator = torch.Generator().manual_seed((base + epoch * info.num_workers + info.id) % 2**64)
        self._worker_seed = info.seed

    def _check_seeds(self, seed: Tensor) -> Tensor:
        if not isinstance(seed, Tensor) or seed.dtype != torch.long:
            raise ValueError(f"Seed nodes must be a torch.long tensor "
                             f"(got {seed.dtype if isinstance(seed, Tensor) else type(seed).__name__})")
        seed = seed.view(-1).cpu()
        if seed.numel() > 0 and (int(seed.min()) < 0 or int(seed.max()) >= self.num_nodes):
            raise ValueError(f"Seed nodes must lie in [0, {self.num_nodes}) "
                             f"(got values in [{int(seed.min())}, {int(seed.max())}])")
        return seed

    def _acquire(self) -> Tensor:
        # One relabel buffer per concurrent call; each is all-UNSET between calls.
        with self._lock:
            if self._buffers:
                return self._buffers.pop()
        return torch.full((self.num_nodes, ), _UNSET, dtype=torch.long)

    def _release(self, buffer: Tensor):
        with self._lock:
            self._buffers.append(buffer)


def _relabel(local: Tensor, node: Tensor, num_local: int) -> Tuple[Tensor, Tensor]:
    # Maps global ids `node` to local ids, giving nodes not yet in the mini-batch the ids
    # num_local, num_local + 1, ... in the order of their first occurrence.
    is_new = local.index_select(0, node) == _UNSET
    candidate = node.masked_select(is_new)
    if candidate.numel() > 0:
        position = torch.arange(_FIRST, _FIRST + candidate.numel())
        local.scatter_reduce_(0, candidate, position, "amin")
        new = candidate.masked_select(local.index_select(0, candidate) == position)
        local.index_copy_(0, new, torch.arange(num_local, num_local + new.numel()))
    else:
        new = candidate
    return local.index_select(0, node), new


def _get_edge_index(data: Data, edge_key: str, num_nodes: int) -> Tensor:
    if not isinstance(edge_key, str) or edge_key not in data:
        keys = sorted(k for k in data.keys() if k.endswith("edge_index"))
        raise ValueError(f"'edge_key' {edge_key!r} is not an attribute of 'data' (edge sets present: {keys})")
    edge_index = data[edge_key]
    if not isinstance(edge_index, Tensor):
        raise ValueError(f"'data.{edge_key}' must be a tensor (got {type(edge_index).__name__})")
    edge_index = edge_index.as_subclass(Tensor) if type(edge_index) is not Tensor else edge_index
    if edge_index.dtype != torch.long:
        raise ValueError(f"'data.{edge_key}' must hold torch.long node ids (got {edge_index.dtype})")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"'data.{edge_key}' must have shape [2, num_edges] (got {tuple(edge_index.shape)})")
    edge_index = edge_index.cpu()
    if edge_index.numel() > 0 and (int(edge_index.min()) < 0 or int(edge_index.max()) >= num_nodes):
        raise ValueError(f"'data.{edge_key}' holds node ids outside [0, {num_nodes}) "
                         f"(got values in [{int(edge_index.min())}, {int(edge_index.max())}])")
    return edge_index


def _get_edge_type(data: Data, num_edges: int) -> Tensor:
    edge_type = getattr(data, "edge_type", None)
    if not isinstance(edge_type, Tensor):
        raise ValueError("'edge_types' quotas need 'data.edge_type' (one type value per edge)")
    if edge_type.dtype.is_floating_point or edge_type.dtype == torch.bool or edge_type.dim() != 1:
        raise ValueError(f"'data.edge_type' must be a 1-D integer tensor (got {edge_type.dtype}, "
                         f"shape {tuple(edge_type.shape)})")
    if edge_type.numel() != num_edges:
        raise ValueError(f"'data.edge_type' must have one entry per edge ({num_edges}, got {edge_type.numel()})")
    return edge_type.cpu().long()


def _parse_edge_types(edge_types: Mapping[int, int]) -> Tuple[Tensor, Tensor]:
    if not isinstance(edge_types, Mapping) or len(edge_types) == 0:
        raise ValueError(f"'edge_types' must be a non-empty dict {{edge type value: quota}} (got {edge_types!r})")
    items: Dict[int, int] = {}
    for t, q in edge_types.items():
        if isinstance(t, bool) or not isinstance(t, int) or isinstance(q, bool) or not isinstance(q, int) or q < -1:
            raise ValueError(f"'edge_types' must map int edge type values to non-negative int quotas or -1 "
                             f"(got {t!r}: {q!r})")
        items[int(t)] = int(q)
    types = sorted(items)
    return torch.tensor(types, dtype=torch.long), torch.tensor([items[t] for t in types], dtype=torch.long)
