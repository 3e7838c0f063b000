from typing import Any, Optional, Tuple

import torch
from torch import Tensor

import videograph.typing
from videograph.ops._dispatch import (
    check_index_dtype,
    check_index_range,
    check_reduce,
    check_same_device,
    check_tensor,
    load_triton,
    resolve_backend,
)
from videograph.ops._library import Op


def scatter(
    src: Tensor,
    index: Tensor,
    dim: int = 0,
    dim_size: Optional[int] = None,
    reduce: str = 'sum',
    backend: Optional[str] = None,
) -> Tensor:
    r"""Reduces all slices of :obj:`src` along :obj:`dim` into the slots
    given by :obj:`index`:

    .. math::
        \mathrm{out}_{\ldots, i, \ldots} = \bigoplus_{n \,:\, \mathrm{index}_n
        = i} \mathrm{src}_{\ldots, n, \ldots}

    with :math:`\bigoplus` one of sum, mean, max or min. Slots that receive
    nothing hold :obj:`0`, for every reduction, as in
    :func:`torch_geometric.utils.scatter`. For ``'max'``/``'min'`` the
    gradient is shared evenly between tied maxima, as in
    :meth:`torch.Tensor.scatter_reduce_`.

    Backends (see :func:`videograph.ops.resolve_backend`): ``'torch'`` uses
    :meth:`~torch.Tensor.index_add_` (sum, mean) and
    :meth:`~torch.Tensor.scatter_reduce_` with ``include_self=False``
    (max, min) and runs anywhere; ``'triton'`` runs one atomic kernel per call
    and only pays off on CUDA (a claim not measured here: this package was
    built on a CPU-only machine, where the kernel runs in triton's
    interpreter for testing only); ``'torch_scatter'`` calls
    :func:`torch_scatter.scatter` when that package is installed.

    Args:
        src (torch.Tensor): The values to reduce.
        index (torch.Tensor): The target slot of every slice of :obj:`src`
            along :obj:`dim` (``int32`` or ``int64``, non-negative).
        dim (int, optional): The dimension to reduce along. (default: ``0``)
        dim_size (int, optional): The size of the output along :obj:`dim`;
            :obj:`None` means ``index.max() + 1``, which reads :obj:`index`
            back to the host (one synchronisation on CUDA, a graph break
            under :func:`torch.compile`); give it where known.
            (default: :obj:`None`)
        reduce (str, optional): ``'sum'``, ``'mean'``, ``'max'`` or ``'min'``.
            (default: ``'sum'``)
        backend (str, optional): ``'auto'``, ``'torch'``, ``'triton'`` or
            ``'torch_scatter'``; :obj:`None` means ``'auto'``.
            (default: :obj:`None`)

    Shapes:
        - **src:** :math:`(*_1, N, *_2)`, any numeric dtype (floating point
          for ``'mean'`` and for the Triton backend)
        - **index:** :math:`(N)`
        - **output:** :math:`(*_1, \text{dim_size}, *_2)`, dtype of
          :obj:`src`

    Example:
        >>> src = torch.tensor([1., 2., 3., 4.])
        >>> index = torch.tensor([0, 0, 2, 2])
        >>> scatter(src, index, dim_size=4, reduce='max')
        tensor([2., 0., 4., 0.])
    """
    src = check_tensor(src, 'src')
    index = check_tensor(index, 'index')
    check_reduce(reduce)
    check_index_dtype(index, 'index')
    check_same_device(src, index, 'src', 'index')
    if index.dim() != 1:
        raise ValueError(f"`index` must be one-dimensional "
                         f"(got shape {tuple(index.shape)})")
    if src.dim() == 0:
        raise ValueError("`src` must have at least one dimension")
    if not -src.dim() <= dim < src.dim():
        raise ValueError(f"`dim` must lie in [{-src.dim()}, {src.dim() - 1}] "
                         f"for `src` of shape {tuple(src.shape)} (got {dim})")
    dim = dim % src.dim()
    if index.numel() != src.size(dim):
        raise ValueError(f"`index` must have one entry per slice of `src` "
                         f"along dim={dim} (got {index.numel()} entries for "
                         f"`src` of shape {tuple(src.shape)})")
    if dim_size is not None and dim_size < 0:
        raise ValueError(f"`dim_size` must be non-negative (got {dim_size})")
    if reduce == 'mean' and not (src.is_floating_point()
                                 or src.is_complex()):
        raise ValueError(f"`reduce='mean'` needs a floating-point `src` "
                         f"(got {src.dtype})")
    if dim_size is None:  # the output shape depends on the values
        dim_size = check_index_range(index, None, 'index', 'dim_size')

    backend = resolve_backend('scatter', backend, (src, index), reduce)
    return _SCATTER(src, index, dim, dim_size, reduce, backend)


def _scatter_kernel(src: Tensor, index: Tensor, dim: int, dim_size: int,
                    reduce: str, backend: str) -> Tensor:
    r"""The kernel of ``videograph::scatter``, behind :func:`scatter`: arguments are
    checked, ``dim`` is non-negative and ``backend`` resolved; the values of
    ``index`` are checked here (see
    :func:`~videograph.ops._dispatch.check_index_range`)."""
    check_index_range(index, dim_size, 'index', 'dim_size')
    if backend == 'triton':
        out, _ = load_triton((src, index)).scatter_forward(
            src, index, dim, dim_size, reduce)
        return out
    if backend == 'torch_scatter':
        return videograph.typing.torch_scatter.scatter(
            src, index.long(), dim, dim_size=dim_size, reduce=reduce)
    return scatter_torch(src, index, dim, dim_size, reduce)


def _scatter_fake(src: Tensor, index: Tensor, dim: int, dim_size: int,
                  reduce: str, backend: str) -> Tensor:
    return src.new_empty(_out_shape(src, dim, dim_size))


def _setup_scatter(ctx: Any, inputs: Tuple, output: Tensor) -> None:
    src, index, ctx.dim, ctx.dim_size, ctx.reduce, _ = inputs
    extremum = ctx.reduce in ('max', 'min')
    ctx.save_for_backward(src if extremum else None, index,
                          output if extremum else None)


def _scatter_grad(ctx: Any, grad_out: Tensor):
    src, index, out = ctx.saved_tensors
    count = None
    if ctx.reduce == 'mean':  # static shape, unlike bincount
        count = grad_out.new_zeros(ctx.dim_size, dtype=torch.long).index_add_(
            0, index, torch.ones_like(index, dtype=torch.long))
    grad_src = scatter_backward(grad_out, src, index, ctx.dim, out, count,
                                ctx.reduce)
    return grad_src, None, None, None, None, None


_SCATTER = Op('scatter', _scatter_kernel, _scatter_fake, _setup_scatter,
              _scatter_grad)


def _out_shape(src: Tensor, dim: int, dim_size: int) -> Tuple[int, ...]:
    return tuple(src.shape[:dim]) + (dim_size, ) + tuple(src.shape[dim + 1:])


def _broadcast_shape(src: Tensor, dim: int) -> Tuple[int, ...]:
    return (1, ) * dim + (-1, ) + (1, ) * (src.dim() - dim - 1)


def scatter_torch(src: Tensor, index: Tensor, dim: int, dim_size: int,
                  reduce: str) -> Tensor:
    r"""The PyTorch path of :func:`scatter`; inputs are assumed checked."""
    size = _out_shape(src, dim, dim_size)
    if reduce in ('sum', 'mean'):
        out = src.new_zeros(size).index_add_(dim, index, src)
        if reduce == 'mean':
            count = torch.bincount(index, minlength=dim_size).clamp_(min=1)
            out = out / count.to(out.dtype).view(_broadcast_shape(src, dim))
        return out
    expanded = index.long().view(_broadcast_shape(src, dim)).expand_as(src)
    return src.new_zeros(size).scatter_reduce_(dim, expanded, src,
                                               reduce='a' + reduce,
                                               include_self=False)


def scatter_backward(grad_out: Tensor, src: Optional[Tensor], index: Tensor,
                     dim: int, out: Optional[Tensor], count: Optional[Tensor],
                     reduce: str) -> Tensor:
    r"""Gradient of :func:`scatter` w.r.t. :obj:`src`, with the conventions
    of the PyTorch path (ties of max/min share the gradient evenly). Made of
    differentiable PyTorch operations with static shapes, so it has a
    gradient itself and traces under :func:`torch.compile`. :obj:`src` and
    :obj:`out` are needed for ``'max'``/``'min'``, :obj:`count` (targets'
    sizes) for ``'mean'``."""
    shape = _broadcast_shape(grad_out, dim)
    if reduce == 'mean':
        grad_out = grad_out / count.clamp(min=1).to(grad_out.dtype).view(shape)
    if reduce in ('sum', 'mean'):
        return grad_out.index_select(dim, index)
    is_arg = src == out.index_select(dim, index)
    ties = torch.zeros_like(out).index_add_(dim, index, is_arg.to(out.dtype))
    grad_out = grad_out / ties.clamp(min=1)
    return grad_out.index_select(dim, index) * is_arg


class Scatter(torch.nn.Module):
    r"""Module form of :func:`scatter`.

    Args:
        reduce (str, optional): ``'sum'``, ``'mean'``, ``'max'`` or ``'min'``.
            (default: ``'sum'``)
        dim (int, optional): The dimension to reduce along. (default: ``0``)
        backend (str, optional): See :func:`scatter`. (default: :obj:`None`)
    """
    def __init__(self, reduce: str = 'sum', dim: int = 0,
                 backend: Optional[str] = None) -> None:
        super().__init__()
        check_reduce(reduce)
        self.reduce = reduce
        self.dim = dim
        self.backend = backend

    def forward(self, src: Tensor, index: Tensor,
                dim_size: Optional[int] = None) -> Tensor:
        return scatter(src, index, self.dim, dim_size, self.reduce,
                       self.backend)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(reduce={self.reduce}, '
                f'dim={self.dim})')
