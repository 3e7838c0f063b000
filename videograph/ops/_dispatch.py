"""Backend selection and input checks shared by every op.

One function, :func:`resolve_backend`, decides which implementation runs:

1. an explicit ``backend=`` argument other than ``'auto'`` wins;
2. otherwise the environment variable ``VIDEOGRAPH_OPS_BACKEND`` (read at
   call time, so tests and benchmarks can set it) forces one;
3. otherwise ``'auto'`` picks Triton for CUDA tensors when triton is
   importable, torch-scatter where it is known to be faster than PyTorch, and
   pure PyTorch everywhere else; under
   :func:`torch.use_deterministic_algorithms` it never picks a kernel that
   sums through atomics.

A forced backend that cannot run the call raises a :class:`ValueError` that
says why; nothing silently falls back.

Value checks of index tensors (:func:`check_index_range`) read values on the
host only where that costs no device synchronisation (CPU tensors) or where
the output shape depends on them (``dim_size=None``); on other devices they
are queued on the device with :func:`torch._assert_async`.
"""
import os
import warnings
from typing import Optional, Sequence

import torch
from torch import Tensor

import videograph.typing

BACKENDS = ('auto', 'torch', 'triton', 'torch_scatter')
REDUCTIONS = ('sum', 'mean', 'max', 'min')
ENV_VAR = 'VIDEOGRAPH_OPS_BACKEND'

INDEX_DTYPES = (torch.int32, torch.int64)
TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def triton_interpret_enabled() -> bool:
    r"""Whether triton currently runs kernels in its CPU interpreter
    (``TRITON_INTERPRET=1``)."""
    if not videograph.typing.WITH_TRITON:
        return False
    from triton import knobs
    return bool(knobs.runtime.interpret)


def _check_backend_name(backend: str, name: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"`{name}` must be one of {BACKENDS} "
                         f"(got '{backend}')")


def resolve_backend(
    op: str,
    backend: Optional[str],
    tensors: Sequence[Tensor],
    reduce: Optional[str] = None,
) -> str:
    r"""Returns the backend that runs ``op`` on ``tensors``.

    Args:
        op (str): ``'scatter'``, ``'segment'`` or ``'gather_sum'``.
        backend (str, optional): ``'auto'``, ``'torch'``, ``'triton'`` or
            ``'torch_scatter'``. :obj:`None` means ``'auto'``.
        tensors (Sequence[torch.Tensor]): The inputs; the first one holds the
            values (its device and dtype decide).
        reduce (str, optional): The reduction, for ops that have one.
    """
    backend = 'auto' if backend is None else backend
    _check_backend_name(backend, 'backend')
    if backend == 'auto':
        forced = os.environ.get(ENV_VAR, '').strip()
        if forced:
            _check_backend_name(forced, ENV_VAR)
            backend = forced

    values = tensors[0]
    if backend == 'auto':
        if values.is_cuda and videograph.typing.WITH_TRITON \
                and values.dtype in TRITON_DTYPES \
                and not (torch.are_deterministic_algorithms_enabled()
                         and atomic_sums('triton', op, values, reduce)):
            return 'triton'
        # PyG's measurements (torch_geometric/utils/_scatter.py): on CUDA with
        # gradients, torch-scatter's min/max beat `scatter_reduce`, whose
        # backward is slow; on CPU PyTorch is as fast. Atomic max/min are
        # order-independent, so this holds in deterministic mode too.
        if (values.is_cuda and videograph.typing.WITH_TORCH_SCATTER
                and op in ('scatter', 'segment') and reduce in ('max', 'min')
                and values.requires_grad):
            return 'torch_scatter'
        return 'torch'

    if torch.are_deterministic_algorithms_enabled() \
            and atomic_sums(backend, op, values, reduce):
        message = (f"`backend='{backend}'` computes {op} with reduce="
                   f"'{reduce or 'sum'}' through atomic additions, which "
                   f"are not deterministic, but "
                   f"torch.use_deterministic_algorithms(True) is set; use "
                   f"backend='torch' or 'auto'")
        if not torch.is_deterministic_algorithms_warn_only_enabled():
            raise ValueError(message)
        warnings.warn(message, stacklevel=3)

    if backend == 'triton':
        if not videograph.typing.WITH_TRITON:
            raise ValueError("`backend='triton'` was requested but triton "
                             "is not importable (pip install triton)")
        if values.dtype not in TRITON_DTYPES:
            raise ValueError(f"`backend='triton'` supports floating-point "
                             f"values {TRITON_DTYPES} (got {values.dtype})")
        on_cpu = [t for t in tensors if not t.is_cuda]
        if on_cpu and not triton_interpret_enabled():
            raise ValueError(
                "`backend='triton'` needs CUDA tensors; CPU tensors run "
                "only in triton's interpreter, enabled by setting the "
                "environment variable TRITON_INTERPRET=1 before the first "
                "triton kernel is defined")
    elif backend == 'torch_scatter':
        if not videograph.typing.WITH_TORCH_SCATTER:
            raise ValueError("`backend='torch_scatter'` was requested but "
                             "torch-scatter is not installed")
        if op == 'gather_sum':
            raise ValueError("`backend='torch_scatter'` has no gather_sum "
                             "kernel; use 'torch' or 'triton'")
    return backend


def atomic_sums(backend: str, op: str, values: Tensor,
                reduce: Optional[str]) -> bool:
    r"""Whether ``backend`` runs ``op`` (or, when :obj:`values` needs a
    gradient, its backward) through atomic additions on CUDA, whose order,
    and so whose rounding, changes from run to run. Atomic max/min do not
    depend on the order."""
    if not values.is_cuda:
        return False  # the interpreter and PyTorch's CPU kernels are serial
    if backend == 'triton':
        if op == 'scatter':
            return reduce in ('sum', 'mean')
        if op == 'gather_sum':  # an atomic backward, a gather forward
            return values.requires_grad and torch.is_grad_enabled()
        return False  # segment: one program per segment, no atomics
    if backend == 'torch_scatter':
        return op == 'scatter' and reduce in ('sum', 'mean')
    return False  # PyTorch enforces its own deterministic mode


def check_tensor(value: object, name: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor "
                        f"(got {type(value).__name__})")
    return value


def check_index_dtype(index: Tensor, name: str) -> None:
    if index.dtype not in INDEX_DTYPES:
        raise ValueError(f"`{name}` must be an integer tensor of dtype "
                         f"int32 or int64 (got {index.dtype})")


def check_same_device(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    if a.device != b.device:
        raise ValueError(f"`{name_a}` and `{name_b}` must be on the same "
                         f"device (got {a.device} and {b.device})")


def check_reduce(reduce: str) -> None:
    if reduce not in REDUCTIONS:
        raise ValueError(f"`reduce` must be one of {REDUCTIONS} "
                         f"(got '{reduce}')")


def check_index_range(index: Tensor, size: Optional[int], name: str,
                      size_name: str) -> int:
    r"""Checks ``0 <= index < size`` and returns ``size`` (or
    ``index.max() + 1`` if ``size`` is :obj:`None`).

    Only ``size=None`` on a device other than the CPU synchronises with the
    host, as :func:`torch_geometric.utils.scatter` does: the output shape
    depends on the values then. With ``size`` given, CPU tensors are checked
    on the host (which waits for nothing) and raise :class:`ValueError`;
    tensors on other devices are checked asynchronously on the device
    (:func:`torch._assert_async`), so an out-of-range value surfaces as a
    device-side error at the next synchronisation.
    """
    if index.numel() == 0:
        return 0 if size is None else size
    if size is not None and index.device.type != 'cpu':
        torch._assert_async(((index >= 0) & (index < size)).all(),
                            f"`{name}` must lie in [0, {size_name}={size})")
        return size
    lo, hi = torch.stack(torch.aminmax(index)).tolist()  # a host read
    if lo < 0:
        raise ValueError(f"`{name}` must be non-negative "
                         f"(found the value {lo})")
    if size is None:
        return hi + 1
    if hi >= size:
        raise ValueError(f"`{name}` is out of range: found the value {hi} "
                         f"but {size_name}={size}")
    return size


def load_triton(tensors: Sequence[Tensor]):
    r"""Imports :mod:`videograph.ops._triton` and checks that its kernels can
    run on ``tensors`` (CPU tensors need the interpreter)."""
    from videograph.ops import _triton
    if any(not t.is_cuda for t in tensors) and not _triton.INTERPRETED:
        raise ValueError(
            "`backend='triton'` got CPU tensors but the triton kernels were "
            "compiled for the GPU: set TRITON_INTERPRET=1 before the first "
            "use of the triton backend (before videograph.ops._triton is "
            "imported)")
    return _triton
