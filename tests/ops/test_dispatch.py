import importlib.util
import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest
import torch

import videograph.typing
from videograph.ops import ENV_VAR, gather_sum, resolve_backend, scatter

needs_triton = pytest.mark.skipif(not videograph.typing.WITH_TRITON,
                                  reason="triton is not installed")


def fake_tensor(is_cuda=True, dtype=torch.float32, requires_grad=False):
    # resolve_backend only reads these attributes; there is no GPU here.
    return SimpleNamespace(is_cuda=is_cuda, dtype=dtype,
                           requires_grad=requires_grad)


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


@pytest.mark.parametrize('module, flag', [
    ('torch_scatter', 'WITH_TORCH_SCATTER'),
    ('torch_sparse', 'WITH_TORCH_SPARSE'),
    ('triton', 'WITH_TRITON'),
])
def test_flags_match_installed_packages(module, flag):
    installed = importlib.util.find_spec(module) is not None
    assert getattr(videograph.typing, flag) is installed


@pytest.mark.usefixtures('no_env')
def test_auto_uses_torch_on_cpu():
    for op in ('scatter', 'segment', 'gather_sum'):
        assert resolve_backend(op, None, [torch.ones(2)], 'max') == 'torch'
        assert resolve_backend(op, 'auto', [torch.ones(2)], 'sum') == 'torch'


@pytest.mark.usefixtures('no_env')
def test_auto_rules_on_cuda(monkeypatch):
    monkeypatch.setattr(videograph.typing, 'WITH_TRITON', True)
    assert resolve_backend('gather_sum', None, [fake_tensor()]) == 'triton'
    # Triton has no integer kernels: integers stay on PyTorch.
    assert resolve_backend('scatter', None, [fake_tensor(dtype=torch.int64)],
                           'sum') == 'torch'

    monkeypatch.setattr(videograph.typing, 'WITH_TRITON', False)
    monkeypatch.setattr(videograph.typing, 'WITH_TORCH_SCATTER', True)
    grad = fake_tensor(requires_grad=True)
    assert resolve_backend('scatter', None, [grad], 'max') == 'torch_scatter'
    assert resolve_backend('segment', None, [grad], 'min') == 'torch_scatter'
    assert resolve_backend('scatter', None, [grad], 'sum') == 'torch'
    assert resolve_backend('gather_sum', None, [grad]) == 'torch'
    assert resolve_backend('scatter', None, [fake_tensor(is_cuda=False,
                                                         requires_grad=True)],
                           'max') == 'torch'


def test_environment_variable_forces_a_backend(monkeypatch):
    monkeypatch.setenv(ENV_VAR, 'torch')
    monkeypatch.setattr(videograph.typing, 'WITH_TRITON', True)
    assert resolve_backend('gather_sum', None, [fake_tensor()]) == 'torch'
    # An explicit argument beats the environment.
    monkeypatch.setenv(ENV_VAR, 'triton')
    assert resolve_backend('gather_sum', 'torch', [torch.ones(1)]) == 'torch'


def test_bad_environment_variable_is_named(monkeypatch):
    monkeypatch.setenv(ENV_VAR, 'cuda')
    with pytest.raises(ValueError, match=ENV_VAR):
        scatter(torch.ones(2), torch.tensor([0, 1]))


@pytest.mark.usefixtures('no_env')
def test_unavailable_backends_raise(monkeypatch):
    monkeypatch.setattr(videograph.typing, 'WITH_TRITON', False)
    with pytest.raises(ValueError, match='triton is not importable'):
        resolve_backend('scatter', 'triton', [torch.ones(1)], 'sum')
    monkeypatch.setattr(videograph.typing, 'WITH_TORCH_SCATTER', False)
    with pytest.raises(ValueError, match='torch-scatter is not installed'):
        resolve_backend('scatter', 'torch_scatter', [torch.ones(1)], 'sum')
    monkeypatch.setattr(videograph.typing, 'WITH_TORCH_SCATTER', True)
    with pytest.raises(ValueError, match='no gather_sum kernel'):
        gather_sum(torch.ones(2, 2), torch.tensor([[0]]),
                   backend='torch_scatter')


@needs_triton
@pytest.mark.usefixtures('no_env')
def test_forced_triton_checks_dtype_and_interpreter(monkeypatch):
    with pytest.raises(ValueError, match='floating-point values'):
        resolve_backend('scatter', 'triton',
                        [torch.ones(1, dtype=torch.int64)], 'sum')
    monkeypatch.setenv('TRITON_INTERPRET', '0')
    with pytest.raises(ValueError, match='TRITON_INTERPRET=1'):
        resolve_backend('scatter', 'triton', [torch.ones(1)], 'sum')


def run_python(code, **env):
    root = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    environ = {k: v for k, v in os.environ.items()
               if k not in ('TRITON_INTERPRET', ENV_VAR)}
    environ.update(env, PYTHONPATH=root)
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)],
                          env=environ, capture_output=True, text=True,
                          timeout=120)


@needs_triton
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU path")
def test_environment_forces_triton_in_a_fresh_process():
    code = """
        import torch
        from videograph.ops import gather_sum
        from videograph.ops import _triton
        table = torch.arange(6.).view(3, 2)
        print(_triton.INTERPRETED, gather_sum(table, torch.tensor([[2, 2]])))
    """
    ran = run_python(code, TRITON_INTERPRET='1', **{ENV_VAR: 'triton'})
    assert ran.returncode == 0, ran.stderr
    assert 'True tensor([[ 8., 10.]])' in ran.stdout

    # Without the interpreter the same call must refuse, not crash.
    ran = run_python(code, **{ENV_VAR: 'triton'})
    assert ran.returncode != 0
    assert 'ValueError' in ran.stderr and 'TRITON_INTERPRET=1' in ran.stderr

    # Kernels defined before the interpreter was switched on stay GPU kernels.
    late = """
        import os
        import torch
        from videograph.ops import _triton, gather_sum
        os.environ['TRITON_INTERPRET'] = '1'
        gather_sum(torch.ones(3, 2), torch.tensor([[2, 2]]), backend='triton')
    """
    ran = run_python(late)
    assert ran.returncode != 0
    assert 'compiled for the GPU' in ran.stderr


@pytest.fixture
def deterministic():
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


@pytest.mark.usefixtures('no_env', 'deterministic')
def test_auto_avoids_atomic_sums_in_deterministic_mode(monkeypatch):
    monkeypatch.setattr(videograph.typing, 'WITH_TRITON', True)
    monkeypatch.setattr(videograph.typing, 'WITH_TORCH_SCATTER', False)
    # Atomic additions: scatter sum/mean, gather_sum's backward.
    for reduce in ('sum', 'mean'):
        assert resolve_backend('scatter', None, [fake_tensor()],
                               reduce) == 'torch'
    assert resolve_backend('gather_sum', None,
                           [fake_tensor(requires_grad=True)]) == 'torch'
    # Order-independent kernels stay: atomic max/min, segment, a gather.
    for reduce in ('max', 'min'):
        assert resolve_backend('scatter', None, [fake_tensor()],
                               reduce) == 'triton'
    for reduce in ('sum', 'mean', 'max', 'min'):
        assert resolve_backend('segment', None, [fake_tensor()],
                               reduce) == 'triton'
    assert resolve_backend('gather_sum', None, [fake_tensor()]) == 'triton'
    with torch.no_grad():
        assert resolve_backend('gather_sum', None,
                               [fake_tensor(requires_grad=True)]) == 'triton'


@pytest.mark.usefixtures('no_env', 'deterministic')
def test_forced_atomic_sums_refuse_in_deterministic_mode(monkeypatch):
    monkeypatch.setattr(videograph.typing, 'WITH_TRITON', True)
    with pytest.raises(ValueError, match='not deterministic'):
        resolve_backend('scatter', 'triton', [fake_tensor()], 'sum')
    monkeypatch.setenv(ENV_VAR, 'triton')
    with pytest.raises(ValueError, match='not deterministic'):
        resolve_backend('gather_sum', None, [fake_tensor(requires_grad=True)])
    # Like PyTorch's own alerts, warn_only=True turns the error into a warning.
    torch.use_deterministic_algorithms(True, warn_only=True)
    with pytest.warns(UserWarning, match='not deterministic'):
        assert resolve_backend('scatter', 'triton', [fake_tensor()],
                               'mean') == 'triton'


@pytest.mark.usefixtures('no_env', 'deterministic')
def test_deterministic_mode_changes_nothing_on_cpu(generator):
    # CPU kernels (PyTorch's and the interpreter's) are serial.
    src = torch.randn(20, 3, generator=generator)
    index = torch.randint(0, 4, (20, ), generator=generator)
    assert resolve_backend('scatter', None, [src], 'sum') == 'torch'
    if videograph.typing.WITH_TRITON and not torch.cuda.is_available():
        torch.testing.assert_close(
            scatter(src, index, 0, 4, backend='triton'),
            scatter(src, index, 0, 4, backend='torch'))


def test_index_checks_never_read_values_when_the_size_is_given():
    # On the meta device values cannot be read at all (as a host read of a
    # CUDA tensor would synchronise); with the output size given, every op
    # must run there without reading them.
    src = torch.empty(10, 4, device='meta')
    index = torch.empty(10, dtype=torch.long, device='meta')
    assert scatter(src, index, 0, 7, 'max').shape == (7, 4)
    from videograph.ops import segment
    ptr = torch.empty(4, dtype=torch.long, device='meta')
    assert segment(src, ptr, 'sum').shape == (3, 4)
    slots = torch.empty(5, 3, dtype=torch.long, device='meta')
    assert gather_sum(src, slots).shape == (5, 4)


def test_index_range_check_reads_the_host_only_when_needed(monkeypatch):
    from videograph.ops._dispatch import check_index_range
    reads, queued = [], []
    tolist = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, 'tolist',
                        lambda self: reads.append(1) or tolist(self))
    monkeypatch.setattr(torch, '_assert_async',
                        lambda *args: queued.append(args))
    meta = torch.empty(8, dtype=torch.long, device='meta')
    # A device tensor with the size given: queued on the device, no read.
    assert check_index_range(meta, 5, 'index', 'dim_size') == 5
    assert reads == [] and len(queued) == 1
    assert 'dim_size=5' in queued[0][1]
    # CPU tensors are checked on the host (no device to wait for) ...
    with pytest.raises(ValueError, match='out of range'):
        check_index_range(torch.tensor([0, 5]), 5, 'index', 'dim_size')
    assert len(reads) == 1
    # ... and without a size the values decide the output shape.
    assert check_index_range(torch.tensor([0, 5]), None, 'index',
                             'dim_size') == 6
    assert len(reads) == 2 and len(queued) == 1
