from typing import Callable, Mapping, Optional, Sequence

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.loader import NodeLoader
from torch_geometric.sampler import SamplerOutput
from torch_geometric.typing import InputNodes

from videograph.sampler.neighbor_sampler import NeighborSampler

__all__ = ["NeighborLoader"]


class NeighborLoader(NodeLoader):
    r"""A data loader of GraphSAGE / P-GCN neighbour-sampled mini-batches: a
    :class:`torch_geometric.loader.NodeLoader` driven by
    :class:`videograph.sampler.NeighborSampler`, usable where PyG's own
    :class:`~torch_geometric.loader.NeighborLoader` is not (it needs
    :obj:`pyg-lib` or :obj:`torch-sparse`).

    Every mini-batch is a plain :class:`~torch_geometric.data.Data` holding
    the sampled subgraph, as PyG's loaders produce it: the seeds are the first
    :obj:`batch_size` nodes; :obj:`edge_index` holds the sampled edges
    :math:`j \to i` in local ids; node-level attributes (:obj:`x`, :obj:`y`,
    ...) are those of :obj:`n_id`; :obj:`e_id` are the ids of the sampled
    edges in :obj:`data[edge_key]` and the attributes of that edge set are
    sliced by them (for :obj:`edge_key="contextual_edge_index"`,
    :obj:`contextual_edge_weight` becomes :obj:`edge_weight`);
    :obj:`num_sampled_nodes` / :obj:`num_sampled_edges` count per hop.
    Unlike PyG's :class:`~torch_geometric.loader.NodeLoader`, which would
    carry them over with global ids, the other edge sets of :obj:`data`
    (:obj:`*_edge_index` and their :obj:`*_edge_*` attributes) are left out:
    they describe the full graph, not the sample (recover them through
    :obj:`n_id` / :obj:`e_id` if needed). If :obj:`data` is a
    :class:`~torch_geometric.data.Batch` of several graphs, :obj:`batch`
    keeps telling which graph every sampled node comes from, and its
    graph-level attributes are kept as they are; :obj:`ptr` is dropped.

    Args:
        data (torch_geometric.data.Data): The graph or batch of graphs.
        num_neighbors (List[int]): The number of neighbours to draw per node
            in each hop; :obj:`-1` takes all of them.
        input_nodes (torch.Tensor, optional): The seed nodes (indices or a
            boolean mask); all nodes if :obj:`None`. (default: :obj:`None`)
        edge_key (str, optional): The edge set to sample over.
            (default: :obj:`"edge_index"`)
        replace (bool, optional): Draw with replacement.
            (default: :obj:`False`)
        edge_types (Dict[int, int], optional): Per-edge-type candidate quotas,
            see :class:`~videograph.sampler.NeighborSampler`.
            (default: :obj:`None`)
        sample (bool, optional): If set to :obj:`False`, takes whole
            neighbourhoods. (default: :obj:`True`)
        generator (torch.Generator, optional): The source of randomness of
            both the neighbour draws and the shuffling of seeds.
            (default: :obj:`None`)
        transform (callable, optional): A transform applied to every
            mini-batch. (default: :obj:`None`)
        **kwargs (optional): Further arguments of
            :class:`torch_geometric.loader.NodeLoader` and
            :class:`torch.utils.data.DataLoader`, such as :obj:`batch_size`,
            :obj:`shuffle` or :obj:`num_workers`.
    """
    def __init__(
        self,
        data: Data,
        num_neighbors: Sequence[int],
        input_nodes: InputNodes = None,
        *,
        edge_key: str = "edge_index",
        replace: bool = False,
        edge_types: Optional[Mapping[int, int]] = None,
        sample: bool = True,
        generator: Optional[torch.Generator] = None,
        transform: Optional[Callable] = None,
        **kwargs,
    ):
        sampler = NeighborSampler(data, num_neighbors, edge_key=edge_key, replace=replace, edge_types=edge_types,
                                  sample=sample, generator=generator)
        if isinstance(input_nodes, Tensor) and input_nodes.dtype not in (torch.long, torch.bool):
            raise ValueError(f"'input_nodes' must be a torch.long index or torch.bool mask "
                             f"(got {input_nodes.dtype})")
        self.edge_key = edge_key
        super().__init__(data, node_sampler=sampler, input_nodes=input_nodes, transform=transform,
                         generator=generator, **kwargs)

    def filter_fn(self, out: SamplerOutput) -> Data:
        if self.transform_sampler_output:
            out = self.transform_sampler_output(out)
        batch = subgraph_from_sample(self.data, out, self.edge_key)
        return batch if self.transform is None else self.transform(batch)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.node_sampler})"


def subgraph_from_sample(data: Data, out: SamplerOutput, edge_key: str = "edge_index") -> Data:
    r"""Builds the mini-batch :class:`~torch_geometric.data.Data` of a
    :class:`~torch_geometric.sampler.SamplerOutput` drawn from
    :obj:`data[edge_key]`, as described in
    :class:`~videograph.sampler.NeighborLoader`."""
    # Edge sets are named `<kind>_edge_index`; their attributes `<kind>_edge_<name>`.
    prefixes = sorted((k[:-len("index")] for k in data.keys() if k.endswith("edge_index")), key=len, reverse=True)
    own = edge_key[:-len("index")]
    num_edges = data[edge_key].size(1)
    node, edge = out.node, out.edge
    batch = Data()
    for key, value in data.items():
        if key == edge_key or key == "ptr" or key.endswith("edge_index"):
            continue
        owner = next((p for p in prefixes if key.startswith(p)), None)
        if owner == own and _size(data, key, value) == num_edges:
            batch["edge_" + key[len(own):]] = _select(data, key, value, edge)
        elif owner is not None and owner != own:
            continue  # an attribute of another edge set of the full graph
        elif own == "edge_" and data.is_edge_attr(key):
            batch[key] = _select(data, key, value, edge)
        elif data.is_node_attr(key):
            batch[key] = _select(data, key, value, node)
        else:
            batch[key] = value
    batch.edge_index = torch.stack([out.row, out.col], dim=0)
    batch.num_nodes = node.numel()
    batch.n_id = node
    batch.e_id = edge
    batch.num_sampled_nodes = out.num_sampled_nodes
    batch.num_sampled_edges = out.num_sampled_edges
    batch.input_id = out.metadata[0]
    batch.seed_time = out.metadata[1]
    batch.batch_size = out.metadata[0].size(0)
    return batch


def _size(data: Data, key: str, value) -> Optional[int]:
    if not isinstance(value, Tensor) or value.dim() == 0:
        return None
    return value.size(data.__cat_dim__(key, value))


def _select(data: Data, key: str, value, index: Tensor):
    if isinstance(value, Tensor):
        dim = data.__cat_dim__(key, value)
        return value.index_select(dim, index.to(value.device))
    return [value[i] for i in index.tolist()]
