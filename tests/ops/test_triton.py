"""Checks of videograph/ops/_triton.py beyond the per-op tests.

The per-op tests run the kernels in triton's CPU interpreter, which executes
them as NumPy code. Here every kernel specialisation the launchers use is also
compiled for a CUDA target (sm_80) down to a cubin, which needs triton's
bundled toolchain but no GPU: this catches code the interpreter accepts but
the compiler rejects.
"""
import os
import subprocess
import sys
import textwrap

import pytest

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
