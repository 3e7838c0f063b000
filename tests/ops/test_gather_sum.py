import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.profiler import ProfilerActivity, profile

import videograph.typing
from videograph.ops import GatherSum, gather_sum

BACKENDS = ['torch'] + (['triton'] if videograph.typing.WITH_TRITON else [])


def gather_sum_loop(table, index):
    """Brute force: one output row and one slot at a time."""
    out = torch.zeros(index.size(0), table.size(1), dtype=table.dtype)
    for s in range(index.size(0)):
        for w in range(index.size(1)):
            out[s] += table[int(index[s, w])]
    return out


def grad_table_loop(grad_out, index, num_rows):
    grad = torch.zeros(num_rows, grad_out.size(1), dtype=grad_out.dtype)
    for s in range(index.size(0)):
        for w in range(index.size(1)):
            grad[int(index[s, w])] += grad_out[s]
    return grad


def test_hand_built_example():
    table = torch.tensor([[1., 10.], [2., 20.], [3., 30.]])
    index = torch.tensor([[0, 2], [1, 1], [2, 2]])
    for backend in BACKENDS:
        out = gather_sum(table, index, backend)
        assert out.tolist() == [[4., 40.], [4., 40.], [6., 60.]], backend


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('index_dtype', [torch.int32, torch.int64])
def test_matches_loop_forward_and_backward(backend, dtype, index_dtype,
                                           generator):
    # S = 37 and F = 130 straddle the kernels' 32-row and 128-column blocks.
    table = torch.randn(11, 130, generator=generator, dtype=dtype,
                        requires_grad=True)
    index = torch.randint(0, 11, (37, 6), generator=generator)
    out = gather_sum(table, index.to(index_dtype), backend)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else {}
    torch.testing.assert_close(out, gather_sum_loop(table.detach(), index),
                               **tol)
    torch.testing.assert_close(out, table[index].sum(1), **tol)
    grad_out = torch.randn(37, 130, generator=generator, dtype=dtype)
    out.backward(grad_out)
    torch.testing.assert_close(table.grad,
                               grad_table_loop(grad_out, index, 11), **tol)


@pytest.mark.parametrize('backend', BACKENDS)
def test_gradcheck(backend, generator):
    table = torch.randn(5, 3, generator=generator, dtype=torch.float64,
                        requires_grad=True)
    # Row 4 is never gathered, row 1 twice within one output row.
    index = torch.tensor([[0, 1, 1], [3, 2, 0], [1, 3, 3], [2, 2, 2]])
    torch.autograd.gradcheck(lambda t: gather_sum(t, index, backend),
                             (table, ))


@pytest.mark.parametrize('backend', BACKENDS)
def test_twice_differentiable(backend, generator):
    table = torch.randn(4, 2, generator=generator, dtype=torch.float64,
                        requires_grad=True)
    index = torch.tensor([[0, 3], [3, 3], [1, 2]])
    torch.autograd.gradgradcheck(lambda t: gather_sum(t, index, backend),
                                 (table, ))


@pytest.mark.parametrize('backend', BACKENDS)
def test_second_order_gradient_matches_materialised(backend, generator):
    # The Hessian-vector product of a loss quadratic in the output: zero if
    # the backward were once-differentiable and its graph dropped.
    table = torch.randn(6, 3, generator=generator, dtype=torch.float64,
                        requires_grad=True)
    index = torch.randint(0, 6, (9, 4), generator=generator)
    vector = torch.randn(6, 3, generator=generator, dtype=torch.float64)

    def hvp(fn):
        grad, = torch.autograd.grad(fn(table).pow(2).sum(), table,
                                    create_graph=True)
        return torch.autograd.grad((grad * vector).sum(), table)[0]

    expected = hvp(lambda t: t[index].sum(1))
    assert expected.abs().max() > 0
    torch.testing.assert_close(hvp(lambda t: gather_sum(t, index, backend)),
                               expected)


@pytest.mark.parametrize('backend', BACKENDS)
def test_non_contiguous_inputs(backend, generator):
    table = torch.randn(6, 9, generator=generator).t()  # [9, 6], strided
    index = torch.randint(0, 9, (4, 10), generator=generator)[:, ::2]
    assert not table.is_contiguous() and not index.is_contiguous()
    torch.testing.assert_close(gather_sum(table, index, backend),
                               gather_sum_loop(table, index))


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('shape', [(0, 3), (4, 0), (0, 0)])
def test_empty_index(backend, shape):
    table = torch.randn(3, 2, requires_grad=True)
    out = gather_sum(table, torch.empty(shape, dtype=torch.long), backend)
    assert out.tolist() == [[0., 0.]] * shape[0]
    out.sum().backward()
    assert table.grad.tolist() == [[0., 0.]] * 3


@settings(max_examples=15, deadline=None)
@given(
    num_rows=st.integers(1, 12),
    num_features=st.integers(1, 9),
    num_out=st.integers(0, 40),
    width=st.integers(0, 7),
    seed=st.integers(0, 2**16),
)
def test_backends_agree_on_random_shapes(num_rows, num_features, num_out,
                                         width, seed):
    gen = torch.Generator().manual_seed(seed)
    table = torch.randn(num_rows, num_features, generator=gen,
                        dtype=torch.float64)
    index = torch.randint(0, num_rows, (num_out, width), generator=gen)
    grad_out = torch.randn(num_out, num_features, generator=gen,
                           dtype=torch.float64)
    expected = gather_sum_loop(table, index)
    expected_grad = grad_table_loop(grad_out, index, num_rows)
    for backend in BACKENDS:
        leaf = table.clone().requires_grad_()
        out = gather_sum(leaf, index, backend)
        out.backward(grad_out)
        torch.testing.assert_close(out, expected)
        torch.testing.assert_close(leaf.grad, expected_grad)


def largest_cpu_allocation(fn):
    with profile(activities=[ProfilerActivity.CPU],
                 profile_memory=True) as prof:
        fn()
    return max(event.cpu_memory_usage for event in prof.events())


def test_never_allocates_the_gathered_intermediate(generator):
    S, W, F = 2000, 15, 16
    table = torch.randn(50, F, generator=generator, requires_grad=True)
    index = torch.randint(0, 50, (S, W), generator=generator)
    gathered_bytes = S * W * F * table.element_size()

    def fused():
        gather_sum(table, index, 'torch').sum().backward()

    def materialised():
        table[index].sum(1).sum().backward()

    # The oracle shows the measurement sees an [S, W, F] tensor when one is
    # made; the fused op stays at the size of its output.
    assert largest_cpu_allocation(materialised) >= gathered_bytes
    assert largest_cpu_allocation(fused) < gathered_bytes / 4


@pytest.mark.parametrize('kwargs, match', [
    (dict(index=torch.tensor([[0., 1.]])), '`index` must be an integer'),
    (dict(index=torch.tensor([[0, -2]])), '`index` must be non-negative'),
    (dict(index=torch.tensor([[0, 4]])), 'out of range.*table.size\\(0\\)=4'),
    (dict(index=torch.tensor([0, 1])), '`index` must be two-dimensional'),
    (dict(table=torch.ones(4)), '`table` must be two-dimensional'),
    (dict(table=torch.ones(4, 2, dtype=torch.long)), 'must be floating'),
    (dict(backend='torch_scatter'), 'torch_scatter'),
    (dict(backend='fast'), '`backend` must be one of'),
])
def test_bad_input_raises_value_error(kwargs, match):
    args = dict(table=torch.ones(4, 2), index=torch.tensor([[0, 3]]))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        gather_sum(**args)


def test_module(generator):
    module = GatherSum()
    assert repr(module) == 'GatherSum()'
    table = torch.randn(3, 2, generator=generator)
    index = torch.tensor([[2, 0]])
    torch.testing.assert_close(module(table, index), table[[2]] + table[[0]])


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_precision(backend, dtype, generator):
    table = torch.randn(7, 5, generator=generator).to(dtype)
    index = torch.randint(0, 7, (9, 4), generator=generator)
    out = gather_sum(table, index, backend)
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(),
                               gather_sum_loop(table.double(), index),
                               rtol=2e-2, atol=2e-2)


def test_docstring_example():
    import doctest
    import importlib

    # The package re-exports the function under the module's name.
    module = importlib.import_module('videograph.ops.gather_sum')
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
