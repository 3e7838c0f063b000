"""Checks of videograph/ops/_triton.py: the launchers' values, and the
kernels' compilation for CUDA.

Without a GPU the kernels run in triton's CPU interpreter (tests/conftest.py
sets TRITON_INTERPRET=1), which executes them as NumPy code: the launchers
are called directly here, with int32 and int64 indices and unit and
non-unit strides in every pointer argument, and compared with the PyTorch
path and brute-force loops. Every kernel specialisation the launchers use is
also compiled for a CUDA target (sm_80) down to a cubin, which needs triton's
bundled toolchain but no GPU: this catches code the interpreter accepts but
the compiler rejects.
"""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import videograph.typing

pytestmark = pytest.mark.skipif(not videograph.typing.WITH_TRITON,
                                reason="triton is not installed")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

COMPILE_ALL = """
    import inspect
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from videograph.ops import _triton as K

    assert not K.INTERPRETED
    FLOAT = ('fp16', 'bf16', 'fp32', 'fp64')

    def compile_kernel(kernel, pointers, constexprs):
        names = inspect.signature(kernel.fn).parameters
        signature = {
            name: 'constexpr' if name in constexprs else
            pointers.get(name, 'i64') for name in names}
        source = ASTSource(fn=kernel, signature=signature,
                           constexprs=constexprs)
        compiled = triton.compile(source, target=GPUTarget('cuda', 80, 32))
        assert compiled.asm['cubin'], kernel.fn.__name__

    for dtype in FLOAT:
        acc = 'fp64' if dtype == 'fp64' else 'fp32'
        compile_kernel(K._gather_sum_fwd_kernel, dict(
            table_ptr='*' + dtype, index_ptr='*i64', out_ptr='*' + dtype),
            dict(IS_FP64=dtype == 'fp64', BLOCK_S=32, BLOCK_F=64))
        compile_kernel(K._gather_sum_bwd_kernel, dict(
            grad_out_ptr='*' + dtype, index_ptr='*i32',
            grad_table_ptr='*' + acc),
            dict(BLOCK_S=32, BLOCK_F=64))
        for code in (K.SUM, K.MAX, K.MIN):
            compile_kernel(K._scatter_kernel, dict(
                src_ptr='*' + dtype, index_ptr='*i64', out_ptr='*' + acc),
                dict(REDUCE=code, BLOCK_N=32, BLOCK_B=64))
        for code in (K.SUM, K.MEAN, K.MAX, K.MIN):
            compile_kernel(K._segment_kernel, dict(
                src_ptr='*' + dtype, ptr_ptr='*i64', out_ptr='*' + dtype),
                dict(REDUCE=code, IS_FP64=dtype == 'fp64', BLOCK_R=16,
                     BLOCK_B=64))
    print('compiled')
"""


def test_every_kernel_compiles_for_cuda(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != 'TRITON_INTERPRET'}
    env.update(PYTHONPATH=ROOT, TRITON_CACHE_DIR=str(tmp_path))
    ran = subprocess.run([sys.executable, '-c', textwrap.dedent(COMPILE_ALL)],
                         env=env, capture_output=True, text=True, timeout=300)
    if 'No module named' in ran.stderr and 'nvidia' in ran.stderr:
        pytest.skip("triton's CUDA backend is not installed")
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert 'compiled' in ran.stdout


def test_kernels_run_in_the_interpreter_here():
    # tests/ops/conftest.py switches the interpreter on before the kernels
    # are defined; without that the per-op tests could not run them.
    import torch
    from videograph.ops import gather_sum
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the kernels are compiled for it")
    gather_sum(torch.ones(1, 1), torch.zeros(1, 1, dtype=torch.long),
               backend='triton')
    from videograph.ops import _triton
    assert _triton.INTERPRETED


DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'
INDEX_DTYPES = [torch.int32, torch.int64]
STRIDES = ['unit', 'strided']


@pytest.fixture
def kernels():
    from videograph.ops import _triton
    return _triton


def layout(tensor, stride):
    """The same values, contiguous or as a view with no unit stride."""
    if stride == 'unit':
        return tensor.contiguous()
    # Every second element of a buffer twice as wide: stride 2 in the last
    # dimension, and a transposed layout for 2-D tensors.
    wide = torch.stack([tensor, torch.full_like(tensor, 7)], dim=-1)
    view = wide[..., 0]
    if tensor.dim() == 2:
        view = wide.transpose(0, 1).contiguous().transpose(0, 1)[..., 0]
    assert torch.equal(view, tensor) and all(s != 1 for s in view.stride())
    return view


def to(tensor, stride, dtype=None):
    return layout(tensor.to(DEVICE, dtype), stride)


@pytest.mark.parametrize('index_dtype', INDEX_DTYPES)
@pytest.mark.parametrize('stride', STRIDES)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_gather_sum_launchers(kernels, index_dtype, stride, dtype, generator):
    # float32 accumulates in float32, float64 in float64 (IS_FP64).
    # S = 37, F = 130: a partial second block in both grid dimensions.
    table = torch.randn(11, 130, generator=generator, dtype=dtype)
    index = torch.randint(0, 11, (37, 5), generator=generator)
    grad_out = torch.randn(37, 130, generator=generator, dtype=dtype)
    out = kernels.gather_sum_forward(to(table, stride),
                                     to(index, stride, index_dtype))
    torch.testing.assert_close(out.cpu(), table[index].sum(1))
    grad = kernels.gather_sum_backward(to(grad_out, stride),
                                       to(index, stride, index_dtype), 11,
                                       dtype)
    expected = torch.zeros_like(table)
    for s in range(37):
        for w in range(5):
            expected[index[s, w]] += grad_out[s]
    torch.testing.assert_close(grad.cpu(), expected)


@pytest.mark.filterwarnings('ignore:index_reduce\\(\\) is in beta')
@pytest.mark.parametrize('index_dtype', INDEX_DTYPES)
@pytest.mark.parametrize('stride', STRIDES)
@pytest.mark.parametrize('reduce', ['sum', 'mean', 'max', 'min'])
@pytest.mark.parametrize('dim', [0, 1])
def test_scatter_launcher(kernels, index_dtype, stride, reduce, dim,
                          generator):
    from videograph.ops.scatter import scatter_torch
    # N = 45 rows straddle the 32-row block; slot 6 stays empty.
    src = torch.randn(3, 45, generator=generator, dtype=torch.float64)
    if dim == 0:
        src = src.t()  # [45, 3]
    index = torch.randint(0, 6, (45, ), generator=generator)
    index[:6] = torch.arange(6)
    out, count = kernels.scatter_forward(to(src, stride),
                                         to(index, stride, index_dtype), dim,
                                         7, reduce)
    expected = scatter_torch(src, index, dim, 7, reduce)
    torch.testing.assert_close(out.cpu(), expected)
    # An independent oracle: torch's index_add_ / index_reduce_ (its
    # include_self=False leaves empty slots at the initial 0).
    oracle = torch.zeros_like(expected)
    if reduce == 'sum':
        oracle.index_add_(dim, index, src)
    else:
        oracle.index_reduce_(dim, index, src, 'a' + reduce if reduce != 'mean'
                             else 'mean', include_self=False)
    torch.testing.assert_close(out.cpu(), oracle)
    if reduce != 'sum':
        assert count.cpu().tolist() == torch.bincount(index, minlength=7) \
            .double().tolist()


@pytest.mark.parametrize('index_dtype', INDEX_DTYPES)
@pytest.mark.parametrize('stride', STRIDES)
@pytest.mark.parametrize('reduce', ['sum', 'mean', 'max', 'min'])
def test_segment_launcher(kernels, index_dtype, stride, reduce, generator):
    # A 37-row segment spans three 16-row blocks; segments 1 and 4 are empty.
    ptr = torch.tensor([0, 3, 3, 40, 41, 41, 50])
    src = torch.randn(50, 3, generator=generator, dtype=torch.float64)
    out = kernels.segment_forward(to(src, stride),
                                  to(ptr, stride, index_dtype), reduce)
    expected = torch.zeros(6, 3, dtype=torch.float64)
    for i in range(6):
        rows = src[int(ptr[i]):int(ptr[i + 1])]
        if len(rows):
            expected[i] = {'sum': rows.sum(0), 'mean': rows.mean(0),
                           'max': rows.amax(0), 'min': rows.amin(0)}[reduce]
    torch.testing.assert_close(out.cpu(), expected)
