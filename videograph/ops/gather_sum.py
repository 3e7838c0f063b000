from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from videograph.ops._dispatch import (
    check_index_dtype,
    check_index_range,
    check_same_device,
    check_tensor,
    load_triton,
    resolve_backend,
)


def gather_sum(
    table: Tensor,
    index: Tensor,
    backend: Optional[str] = None,
) -> Tensor:
    r"""Sums, for every row of :obj:`index`, the :obj:`table` rows it names,
    without materialising the :math:`(S, W, F)` gathered intermediate:

    .. math::
        \mathrm{out}_s = \sum_{w=0}^{W-1} \mathrm{table}_{\mathrm{index}_{s,w}}

    This is the core of fused sub-graph scoring: the score of a sub-graph is a
    sum of per-slot table entries, one slot per column of :obj:`index`.
    Repeated entries in a row count as often as they appear. The gradient
    w.r.t. :obj:`table` is
    :math:`\partial L / \partial \mathrm{table}_m = \sum_{(s, w) :
    \mathrm{index}_{s,w} = m} \partial L / \partial \mathrm{out}_s`.

    Backends: ``'torch'`` computes the forward with
    :func:`torch.nn.functional.embedding_bag` (``mode='sum'``) and the
    backward as :math:`W` calls of :meth:`~torch.Tensor.index_add_`, which on
    one CPU thread is about 4x faster than ``embedding_bag``'s own backward
    and likewise allocates nothing of size :math:`S \cdot W \cdot F`;
    ``'triton'`` runs one fused kernel for the forward and one atomic kernel
    for the backward. The Triton kernels only pay off on CUDA, where they can
    beat ``embedding_bag``; that could not be measured here (this package was
    built on a CPU-only machine, where the kernels run in triton's
    interpreter for testing only). ``'torch_scatter'`` has no such kernel.

    Args:
        table (torch.Tensor): The rows to gather, floating point.
        index (torch.Tensor): Row numbers into :obj:`table` (``int32`` or
            ``int64``, in :math:`[0, M)`).
        backend (str, optional): ``'auto'``, ``'torch'`` or ``'triton'``;
            :obj:`None` means ``'auto'``. (default: :obj:`None`)

    Shapes:
        - **table:** :math:`(M, F)`
        - **index:** :math:`(S, W)`
        - **output:** :math:`(S, F)`, dtype of :obj:`table`

    Example:
        >>> table = torch.tensor([[1., 10.], [2., 20.], [3., 30.]])
        >>> gather_sum(table, torch.tensor([[0, 2], [1, 1]]))
        tensor([[ 4., 40.],
                [ 4., 40.]])
    """
    table = check_tensor(table, 'table')
    index = check_tensor(index, 'index')
    check_index_dtype(index, 'index')
    check_same_device(table, index, 'table', 'index')
    if table.dim() != 2:
        raise ValueError(f"`table` must be two-dimensional [M, F] "
                         f"(got shape {tuple(table.shape)})")
    if not table.is_floating_point():
        raise ValueError(f"`table` must be floating point (got "
                         f"{table.dtype})")
    if index.dim() != 2:
        raise ValueError(f"`index` must be two-dimensional [S, W] "
                         f"(got shape {tuple(index.shape)})")

    backend = resolve_backend('gather_sum', backend, (table, index))
    if backend == 'torch' and not index.is_cuda:
        # On CPU embedding_bag checks every index itself, so the separate
        # pass over `index` (a few % of the op) runs only to word the error.
        try:
            return _TorchGatherSum.apply(table, index)
        except RuntimeError as error:
            failure = error
        check_index_range(index, table.size(0), 'index', 'table.size(0)')
        raise failure
    check_index_range(index, table.size(0), 'index', 'table.size(0)')
    if backend == 'triton':
        load_triton((table, index))
        return _TritonGatherSum.apply(table, index)
    return _TorchGatherSum.apply(table, index)


def _gather_sum_backward_torch(grad_out: Tensor, index: Tensor,
                               num_rows: int) -> Tensor:
    # One index_add_ per slot keeps the work at O(S * F) memory; a single
    # call would need grad_out expanded to [S * W, F].
    grad_table = grad_out.new_zeros(num_rows, grad_out.size(1))
    for w in range(index.size(1)):
        grad_table.index_add_(0, index[:, w], grad_out)
    return grad_table


class _TorchGatherSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, table: Tensor, index: Tensor) -> Tensor:
        ctx.num_rows = table.size(0)
        ctx.save_for_backward(index)
        (S, W), F_ = index.shape, table.size(1)
        if S == 0 or W == 0:
            return table.new_zeros(S, F_)
        # embedding_bag is ~8x slower on a strided table than a copy + call.
        return F.embedding_bag(index.contiguous(), table.contiguous(),
                               mode='sum')

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor):
        index, = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None
        return _gather_sum_backward_torch(grad_out, index, ctx.num_rows), None


class _TritonGatherSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, table: Tensor, index: Tensor) -> Tensor:
        from videograph.ops import _triton
        ctx.num_rows, ctx.dtype = table.size(0), table.dtype
        ctx.save_for_backward(index)
        return _triton.gather_sum_forward(table, index)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor):
        from videograph.ops import _triton
        index, = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None
        grad_table = _triton.gather_sum_backward(grad_out, index,
                                                 ctx.num_rows, ctx.dtype)
        return grad_table, None


class GatherSum(torch.nn.Module):
    r"""Module form of :func:`gather_sum`.

    Args:
        backend (str, optional): See :func:`gather_sum`.
            (default: :obj:`None`)
    """
    def __init__(self, backend: Optional[str] = None) -> None:
        super().__init__()
        self.backend = backend

    def forward(self, table: Tensor, index: Tensor) -> Tensor:
        return gather_sum(table, index, self.backend)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}()'
