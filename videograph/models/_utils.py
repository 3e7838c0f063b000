r"""Helpers shared by the recognition models."""
import inspect
from typing import Callable, Optional

from torch import Tensor, nn

ConvFactory = Callable[[int, int], nn.Module]


def accepted_arguments(module: nn.Module) -> frozenset:
    """Names of the keyword arguments ``module.forward`` takes (so any PyG conv fits a conv slot)."""
    params = inspect.signature(module.forward).parameters
    return frozenset(params)


def call_conv(conv: nn.Module, x: Tensor, edge_index: Tensor, edge_weight: Optional[Tensor] = None,
              edge_type: Optional[Tensor] = None) -> Tensor:
    """Calls a conv with the edge weights / types its ``forward`` accepts (``edge_weight`` or ``edge_type``);
    convs that take neither (e.g. :class:`~torch_geometric.nn.conv.GATConv`) get the edges alone."""
    names = getattr(conv, "_videograph_arguments", None)
    if names is None:
        names = accepted_arguments(conv)
        conv._videograph_arguments = names
    kwargs = {}
    if edge_weight is not None and "edge_weight" in names:
        kwargs["edge_weight"] = edge_weight
    if edge_type is not None and "edge_type" in names:
        kwargs["edge_type"] = edge_type
    out = conv(x, edge_index, **kwargs)
    return out[0] if isinstance(out, tuple) else out


def positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"'{name}' must be a positive int, got {value!r}")
    return value


def graph_count(data) -> int:
    return int(data.num_graphs) if hasattr(data, "num_graphs") else 1


def batch_vector(data) -> Tensor:
    batch = getattr(data, "batch", None)
    if batch is None:
        import torch
        return torch.zeros(data.num_nodes, dtype=torch.long, device=data.x.device if data.x is not None else None)
    return batch
