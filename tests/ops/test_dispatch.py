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
