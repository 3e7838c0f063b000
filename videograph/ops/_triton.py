"""Triton kernels for :mod:`videograph.ops` and the launchers that call them.

This module is imported lazily, on the first call that resolves to the
``'triton'`` backend. Triton decides between compiling for the GPU and running
its CPU interpreter when a ``@triton.jit`` function is *defined*, i.e. when
this module is imported: set ``TRITON_INTERPRET=1`` before that to run the
kernels on CPU tensors (that is how the tests check them).

The kernels only earn their place on CUDA, where they save the launches and
the ``[S, W, F]`` / broadcast-index intermediates of the PyTorch
compositions. That claim cannot be measured on the CPU-only machine this
package was written on; under the interpreter they are orders of magnitude
slower than PyTorch and exist there only to be tested.

Floating-point reductions accumulate in ``float32`` (``float64`` for
``float64`` inputs). Sums over atomics (``scatter``, ``gather_sum`` backward)
are order-dependent on the GPU, so they are not bitwise reproducible there.
"""
from typing import Optional, Tuple

import torch
import triton
import triton.language as tl
from torch import Tensor

# Reduction codes shared by the kernels and their launchers.
SUM, MEAN, MAX, MIN = 0, 1, 2, 3
REDUCE_CODE = {'sum': SUM, 'mean': MEAN, 'max': MAX, 'min': MIN}


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _block(n: int, cap: int, floor: int = 16) -> int:
    return max(floor, min(cap, triton.next_power_of_2(max(n, 1))))


# gather_sum ##################################################################


@triton.jit
def _gather_sum_fwd_kernel(
    table_ptr, index_ptr, out_ptr,
    S, W, F,
    stride_tm, stride_tf, stride_is, stride_iw, stride_os, stride_of,
    IS_FP64: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_F: tl.constexpr,
):
    rs = (tl.program_id(0) * BLOCK_S + tl.arange(0, BLOCK_S)).to(tl.int64)
    rf = (tl.program_id(1) * BLOCK_F + tl.arange(0, BLOCK_F)).to(tl.int64)
    mask_s = rs < S
    mask = mask_s[:, None] & (rf < F)[None, :]
    if IS_FP64:
        acc = tl.zeros((BLOCK_S, BLOCK_F), dtype=tl.float64)
    else:
        acc = tl.zeros((BLOCK_S, BLOCK_F), dtype=tl.float32)
    for w in range(0, W):
        row = tl.load(index_ptr + rs * stride_is + w * stride_iw, mask=mask_s,
                      other=0).to(tl.int64)
        val = tl.load(table_ptr + row[:, None] * stride_tm +
                      rf[None, :] * stride_tf, mask=mask, other=0.0)
        acc += val.to(acc.dtype)
    tl.store(out_ptr + rs[:, None] * stride_os + rf[None, :] * stride_of,
             acc.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _gather_sum_bwd_kernel(
    grad_out_ptr, index_ptr, grad_table_ptr,
    S, W, F,
    stride_gs, stride_gf, stride_is, stride_iw, stride_tm,
    BLOCK_S: tl.constexpr, BLOCK_F: tl.constexpr,
):
    rs = (tl.program_id(0) * BLOCK_S + tl.arange(0, BLOCK_S)).to(tl.int64)
    rf = (tl.program_id(1) * BLOCK_F + tl.arange(0, BLOCK_F)).to(tl.int64)
    mask_s = rs < S
    mask = mask_s[:, None] & (rf < F)[None, :]
    grad = tl.load(grad_out_ptr + rs[:, None] * stride_gs +
                   rf[None, :] * stride_gf, mask=mask, other=0.0)
    grad = grad.to(grad_table_ptr.dtype.element_ty)
    for w in range(0, W):
        row = tl.load(index_ptr + rs * stride_is + w * stride_iw, mask=mask_s,
                      other=0).to(tl.int64)
        tl.atomic_add(grad_table_ptr + row[:, None] * stride_tm + rf[None, :],
                      grad, mask=mask, sem='relaxed')


def gather_sum_forward(table: Tensor, index: Tensor) -> Tensor:
    r"""``out[s] = sum_w table[index[s, w]]``; inputs are checked by the
    caller."""
    (_, F), (S, W) = table.shape, index.shape
    out = table.new_empty(S, F)
    if S == 0 or F == 0:
        return out
    BLOCK_S, BLOCK_F = 32, _block(F, 128)
    grid = (triton.cdiv(S, BLOCK_S), triton.cdiv(F, BLOCK_F))
    _gather_sum_fwd_kernel[grid](
        table, index, out, S, W, F,
        table.stride(0), table.stride(1), index.stride(0), index.stride(1),
        out.stride(0), out.stride(1),
        IS_FP64=table.dtype == torch.float64, BLOCK_S=BLOCK_S,
        BLOCK_F=BLOCK_F)
    return out


def gather_sum_backward(grad_out: Tensor, index: Tensor, num_rows: int,
                        dtype: torch.dtype) -> Tensor:
    r"""``grad_table[m] = sum_{(s, w): index[s, w] = m} grad_out[s]``."""
    (S, F), W = grad_out.shape, index.size(1)
    grad_table = grad_out.new_zeros(num_rows, F, dtype=_acc_dtype(dtype))
    if S > 0 and W > 0 and F > 0:
        BLOCK_S, BLOCK_F = 32, _block(F, 128)
        grid = (triton.cdiv(S, BLOCK_S), triton.cdiv(F, BLOCK_F))
        _gather_sum_bwd_kernel[grid](
            grad_out, index, grad_table, S, W, F,
            grad_out.stride(0), grad_out.stride(1), index.stride(0),
            index.stride(1), grad_table.stride(0),
            BLOCK_S=BLOCK_S, BLOCK_F=BLOCK_F)
    return grad_table.to(dtype)


# Whether the kernels above were defined for triton's CPU interpreter.
INTERPRETED = type(_gather_sum_fwd_kernel).__name__ == 'InterpretedFunction'

# scatter #####################################################################


@triton.jit
def _scatter_kernel(
    src_ptr, index_ptr, out_ptr,
    N, B, num_n_blocks,
    stride_sa, stride_sn, stride_sb, stride_i, stride_oa, stride_on,
    REDUCE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_B: tl.constexpr,
):
    # Axis 0 enumerates (outer position a, block of N); axis 1 blocks of B.
    pid = tl.program_id(0)
    a = (pid // num_n_blocks).to(tl.int64)
    rn = ((pid % num_n_blocks) * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
    rb = (tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    mask_n = rn < N
    mask = mask_n[:, None] & (rb < B)[None, :]
    row = tl.load(index_ptr + rn * stride_i, mask=mask_n, other=0)
    val = tl.load(src_ptr + a * stride_sa + rn[:, None] * stride_sn +
                  rb[None, :] * stride_sb, mask=mask, other=0.0)
    val = val.to(out_ptr.dtype.element_ty)
    dst = (out_ptr + a * stride_oa + row.to(tl.int64)[:, None] * stride_on +
           rb[None, :])
    if REDUCE == 2:
        tl.atomic_max(dst, val, mask=mask, sem='relaxed')
    elif REDUCE == 3:
        tl.atomic_min(dst, val, mask=mask, sem='relaxed')
    else:
        tl.atomic_add(dst, val, mask=mask, sem='relaxed')


def scatter_forward(src: Tensor, index: Tensor, dim: int, dim_size: int,
                    reduce: str) -> Tuple[Tensor, Optional[Tensor]]:
    r"""Returns the reduction and, except for ``'sum'``, the per-target
    ``count`` (as ``src``'s dtype); empty targets hold ``0``."""
    shape = src.shape
    A, N, B = shape[:dim].numel(), shape[dim], shape[dim + 1:].numel()
    src3 = src.reshape(A, N, B)
    code = REDUCE_CODE[reduce]
    acc_dtype = _acc_dtype(src.dtype)
    fill = {SUM: 0.0, MEAN: 0.0, MAX: float('-inf'), MIN: float('inf')}[code]
    out = src.new_full((A, dim_size, B), fill, dtype=acc_dtype)
    count = None
    if code != SUM:  # mean divides by it, max/min zero the empty slots
        count = torch.bincount(index, minlength=dim_size).to(src.dtype)
    if A * N * B > 0:
        BLOCK_N, BLOCK_B = 32, _block(B, 128, floor=1)
        num_n_blocks = triton.cdiv(N, BLOCK_N)
        grid = (A * num_n_blocks, triton.cdiv(B, BLOCK_B))
        _scatter_kernel[grid](
            src3, index, out, N, B, num_n_blocks,
            src3.stride(0), src3.stride(1), src3.stride(2), index.stride(0),
            out.stride(0), out.stride(1),
            REDUCE=code, BLOCK_N=BLOCK_N, BLOCK_B=BLOCK_B)
    if count is not None:
        count_b = count.to(acc_dtype).view(1, dim_size, 1)
        if code == MEAN:
            out = out / count_b.clamp(min=1)
        else:
            out = out.masked_fill(count_b == 0, 0.0)
    out_shape = shape[:dim] + (dim_size, ) + shape[dim + 1:]
    return out.to(src.dtype).view(out_shape), count


# segment #####################################################################


@triton.jit
def _segment_kernel(
    src_ptr, ptr_ptr, out_ptr,
    B,
    stride_p, stride_sn, stride_sb, stride_os, stride_ob,
    REDUCE: tl.constexpr, IS_FP64: tl.constexpr,
    BLOCK_R: tl.constexpr, BLOCK_B: tl.constexpr,
):
    # One program per (segment, block of B): walk the segment's rows.
    seg = tl.program_id(0).to(tl.int64)
    rb = (tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    mask_b = rb < B
    start = tl.load(ptr_ptr + seg * stride_p).to(tl.int64)
    end = tl.load(ptr_ptr + (seg + 1) * stride_p).to(tl.int64)
    if REDUCE == 2:
        init = float('-inf')
    elif REDUCE == 3:
        init = float('inf')
    else:
        init = 0.0
    if IS_FP64:
        acc = tl.full((BLOCK_R, BLOCK_B), init, dtype=tl.float64)
    else:
        acc = tl.full((BLOCK_R, BLOCK_B), init, dtype=tl.float32)
    for r0 in range(start, end, BLOCK_R):
        rows = r0 + tl.arange(0, BLOCK_R)
        mask = (rows < end)[:, None] & mask_b[None, :]
        val = tl.load(src_ptr + rows[:, None] * stride_sn +
                      rb[None, :] * stride_sb, mask=mask, other=init)
        val = val.to(acc.dtype)
        if REDUCE == 2:
            acc = tl.maximum(acc, val)
        elif REDUCE == 3:
            acc = tl.minimum(acc, val)
        else:
            acc += val
    if REDUCE == 2:
        res = tl.max(acc, axis=0)
    elif REDUCE == 3:
        res = tl.min(acc, axis=0)
    else:
        res = tl.sum(acc, axis=0)
    count = end - start
    if REDUCE == 1:
        res = res / tl.maximum(count, 1).to(res.dtype)
    res = tl.where(count > 0, res, 0.0)
    tl.store(out_ptr + seg * stride_os + rb * stride_ob,
             res.to(out_ptr.dtype.element_ty), mask=mask_b)


def segment_forward(src: Tensor, ptr: Tensor, reduce: str) -> Tensor:
    r"""Reduces ``src[ptr[i]:ptr[i + 1]]`` for every segment ``i``; empty
    segments hold ``0``."""
    num_segments = ptr.numel() - 1
    B = src.shape[1:].numel()
    src2 = src.reshape(src.size(0), B)
    out = src.new_empty(num_segments, B)
    if num_segments > 0 and B > 0:
        BLOCK_R, BLOCK_B = 16, _block(B, 128, floor=1)
        grid = (num_segments, triton.cdiv(B, BLOCK_B))
        _segment_kernel[grid](
            src2, ptr, out, B, ptr.stride(0),
            src2.stride(0), src2.stride(1), out.stride(0), out.stride(1),
            REDUCE=REDUCE_CODE[reduce],
            IS_FP64=src.dtype == torch.float64,
            BLOCK_R=BLOCK_R, BLOCK_B=BLOCK_B)
    return out.view((num_segments, ) + src.shape[1:])
