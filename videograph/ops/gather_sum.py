from typing import Any, Optional, Tuple

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
from videograph.ops._library import Op


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
    On every backend the backward is the operator
    ``videograph::gather_sum_backward``, whose own gradient is
    :func:`gather_sum`, so derivatives of every order are exact.

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
    return _GATHER_SUM(table, index, backend)


def _gather_sum_kernel(table: Tensor, index: Tensor, backend: str) -> Tensor:
    r"""The kernel of ``videograph::gather_sum``: arguments are
    checked and ``backend`` resolved; the values of ``index`` are checked
    here."""
    if backend == 'torch' and index.device.type == 'cpu':
        # On CPU embedding_bag checks every index itself, so the separate
        # pass over `index` (a few % of the op) runs only to word the error.
        try:
            return _gather_sum_torch(table, index)
        except RuntimeError as error:
            failure = error
        check_index_range(index, table.size(0), 'index', 'table.size(0)')
        raise failure
    check_index_range(index, table.size(0), 'index', 'table.size(0)')
    if backend == 'triton':
        return load_triton((table, index)).gather_sum_forward(table, index)
    return _gather_sum_torch(table, index)


def _gather_sum_fake(table: Tensor, index: Tensor, backend: str) -> Tensor:
    return table.new_empty(index.size(0), table.size(1))


def _gather_sum_backward_kernel(grad_out: Tensor, index: Tensor,
                                num_rows: int, backend: str) -> Tensor:
    r"""The kernel of ``videograph::gather_sum_backward``:
    ``grad_table[m] = sum_{(s, w): index[s, w] = m} grad_out[s]``, the
    gradient of :func:`gather_sum` (the values of ``index`` were checked by
    the forward). It is linear in ``grad_out`` and its own gradient is
    :func:`gather_sum` again, so every order of derivative is exact, on
    every backend."""
    if backend == 'triton':
        return load_triton((grad_out, index)).gather_sum_backward(
            grad_out, index, num_rows, grad_out.dtype)
    # One index_add_ per slot keeps the work at O(S * F) memory; a single
    # call would need grad_out expanded to [S * W, F].
    grad_table = grad_out.new_zeros(num_rows, grad_out.size(1))
    for w in range(index.size(1)):
        grad_table.index_add_(0, index[:, w], grad_out)
    return grad_table


def _gather_sum_backward_fake(grad_out: Tensor, index: Tensor,
                              num_rows: int, backend: str) -> Tensor:
    return grad_out.new_empty(num_rows, grad_out.size(1))


def _setup_gather_sum(ctx: Any, inputs: Tuple, output: Tensor) -> None:
    table, index, ctx.backend = inputs
    ctx.num_rows = table.size(0)
    ctx.save_for_backward(index)


def _gather_sum_grad(ctx: Any, grad_out: Tensor):
    index, = ctx.saved_tensors
    if not ctx.needs_input_grad[0]:
        return None, None, None
    grad_table = _GATHER_SUM_BACKWARD(grad_out, index, ctx.num_rows,
                                      ctx.backend)
    return grad_table, None, None


def _setup_gather_sum_backward(ctx: Any, inputs: Tuple,
                               output: Tensor) -> None:
    _, index, _, ctx.backend = inputs
    ctx.save_for_backward(index)


def _gather_sum_backward_grad(ctx: Any, grad_grad_table: Tensor):
    index, = ctx.saved_tensors
    if not ctx.needs_input_grad[0]:
        return None, None, None, None
    grad_grad_out = _GATHER_SUM(grad_grad_table, index, ctx.backend)
    return grad_grad_out, None, None, None


_GATHER_SUM = Op('gather_sum', _gather_sum_kernel, _gather_sum_fake,
                 _setup_gather_sum, _gather_sum_grad)
_GATHER_SUM_BACKWARD = Op('gather_sum_backward', _gather_sum_backward_kernel,
                          _gather_sum_backward_fake,
                          _setup_gather_sum_backward,
                          _gather_sum_backward_grad)


def _gather_sum_torch(table: Tensor, index: Tensor) -> Tensor:
    (S, W), F_ = index.shape, table.size(1)
    if S == 0 or W == 0:
        return table.new_zeros(S, F_)
    # embedding_bag is ~8x slower on a strided table than a copy + call.
    return F.embedding_bag(index.contiguous(), table.contiguous(),
                           mode='sum')


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
