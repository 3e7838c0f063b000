import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_geometric.utils import scatter as pyg_scatter

import videograph.typing
from videograph.ops import Scatter, scatter

REDUCES = ['sum', 'mean', 'max', 'min']
BACKENDS = ['torch'] + (['triton'] if videograph.typing.WITH_TRITON else [])
needs_torch_scatter = pytest.mark.skipif(
    not videograph.typing.WITH_TORCH_SCATTER,
    reason="torch-scatter is not installed (`make test-ext` installs it)")


def scatter_loop(src, index, dim, dim_size, reduce):
    """Brute force: one target slot at a time."""
    moved = src.movedim(dim, 0)
    out = torch.zeros((dim_size, ) + moved.shape[1:], dtype=src.dtype)
    for i in range(dim_size):
        rows = moved[index == i]
        if rows.size(0) == 0:
            continue
        if reduce == 'sum':
            out[i] = rows.sum(0)
        elif reduce == 'mean':
            out[i] = rows.sum(0) / rows.size(0)
        elif reduce == 'max':
            out[i] = rows.amax(0)
        else:
            out[i] = rows.amin(0)
    return out.movedim(0, dim)


def scatter_reduce_oracle(src, index, dim, dim_size, reduce):
    size = list(src.shape)
    size[dim] = dim_size
    shape = [1] * src.dim()
    shape[dim] = -1
    expanded = index.view(shape).expand_as(src)
    name = {'sum': 'sum', 'mean': 'mean', 'max': 'amax', 'min': 'amin'}
    return src.new_zeros(size).scatter_reduce(dim, expanded, src,
                                              name[reduce],
                                              include_self=False)


def tolerances(dtype):
    return dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else {}


def test_hand_built_example():
    src = torch.tensor([[1., 10.], [2., 20.], [3., 30.], [4., 40.]])
    index = torch.tensor([0, 0, 2, 2])
    expected = {
        'sum': [[3., 30.], [0., 0.], [7., 70.], [0., 0.]],
        'mean': [[1.5, 15.], [0., 0.], [3.5, 35.], [0., 0.]],
        'max': [[2., 20.], [0., 0.], [4., 40.], [0., 0.]],
        'min': [[1., 10.], [0., 0.], [3., 30.], [0., 0.]],
    }
    for backend in BACKENDS:
        for reduce, value in expected.items():
            out = scatter(src, index, dim_size=4, reduce=reduce,
                          backend=backend)
            assert out.tolist() == value, (backend, reduce)


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('reduce', REDUCES)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('dim', [0, 1, -1])
def test_matches_oracles(backend, reduce, dtype, dim, generator):
    src = torch.randn(6, 9, 5, generator=generator, dtype=dtype)
    # 12 slots for at most 9 entries: some slots stay empty, others repeat.
    index = torch.randint(0, 12, (src.size(dim), ), generator=generator)
    out = scatter(src, index, dim, 12, reduce, backend=backend)
    tol = tolerances(dtype)
    torch.testing.assert_close(
        out, scatter_loop(src, index, dim % 3, 12, reduce), **tol)
    torch.testing.assert_close(
        out, scatter_reduce_oracle(src, index, dim, 12, reduce), **tol)
    torch.testing.assert_close(out, pyg_scatter(src, index, dim, 12, reduce),
                               **tol)


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('reduce', REDUCES)
def test_non_contiguous_inputs(backend, reduce, generator):
    src = torch.randn(7, 10, generator=generator).t()  # [10, 7], strided
    index = torch.randint(0, 4, (20, ), generator=generator)[::2]
    assert not src.is_contiguous() and not index.is_contiguous()
    out = scatter(src, index, 0, 5, reduce, backend=backend)
    torch.testing.assert_close(out, scatter_loop(src, index, 0, 5, reduce))


@pytest.mark.parametrize('backend', BACKENDS)
def test_dim_size_defaults_to_max_index_plus_one(backend):
    out = scatter(torch.ones(3), torch.tensor([4, 1, 4]), backend=backend)
    assert out.tolist() == [0., 1., 0., 0., 2.]


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('reduce', REDUCES)
def test_empty_input(backend, reduce):
    src = torch.empty(0, 3)
    index = torch.empty(0, dtype=torch.long)
    assert scatter(src, index, reduce=reduce, backend=backend).shape == (0, 3)
    out = scatter(src, index, dim_size=2, reduce=reduce, backend=backend)
    assert out.tolist() == [[0.] * 3] * 2


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('reduce', REDUCES)
def test_gradcheck(backend, reduce, generator):
    src = torch.randn(8, 3, generator=generator, dtype=torch.float64,
                      requires_grad=True)
    index = torch.tensor([0, 2, 2, 2, 4, 0, 2, 4])
    torch.autograd.gradcheck(
        lambda x: scatter(x, index, 0, 6, reduce, backend=backend), (src, ))


@pytest.mark.parametrize('reduce', ['max', 'min'])
def test_tied_extrema_share_the_gradient(reduce):
    # Integer-valued floats make exact ties; torch.scatter_reduce splits the
    # gradient evenly between them, every backend must do the same.
    src = torch.tensor([[1., 3.], [3., 3.], [3., 0.], [2., 2.]],
                       dtype=torch.float64)
    if reduce == 'min':
        src = -src
    index = torch.tensor([0, 0, 0, 1])
    grad_out = torch.tensor([[6., 12.], [5., 7.]], dtype=torch.float64)
    x = src.clone().requires_grad_()
    scatter_reduce_oracle(x, index, 0, 2, reduce).backward(grad_out)
    assert x.grad.tolist() == [[0., 6.], [3., 6.], [3., 0.], [5., 7.]]
    for backend in BACKENDS:
        y = src.clone().requires_grad_()
        scatter(y, index, 0, 2, reduce, backend=backend).backward(grad_out)
        assert torch.equal(y.grad, x.grad), backend


@settings(max_examples=15, deadline=None)
@given(
    num_rows=st.integers(0, 40),
    num_cols=st.integers(1, 5),
    dim_size=st.integers(1, 12),
    reduce=st.sampled_from(REDUCES),
    seed=st.integers(0, 2**16),
)
def test_backends_agree_on_random_shapes(num_rows, num_cols, dim_size, reduce,
                                         seed):
    gen = torch.Generator().manual_seed(seed)
    src = torch.randn(num_rows, num_cols, generator=gen, dtype=torch.float64)
    index = torch.randint(0, dim_size, (num_rows, ), generator=gen)
    expected = scatter_loop(src, index, 0, dim_size, reduce)
    for backend in BACKENDS:
        out = scatter(src, index, 0, dim_size, reduce, backend=backend)
        torch.testing.assert_close(out, expected)


@pytest.mark.parametrize('backend', BACKENDS)
def test_int32_index(backend, generator):
    src = torch.randn(10, 2, generator=generator)
    index = torch.randint(0, 3, (10, ), generator=generator)
    torch.testing.assert_close(
        scatter(src, index.int(), 0, 3, 'mean', backend=backend),
        scatter_loop(src, index, 0, 3, 'mean'))


@pytest.mark.parametrize('reduce', ['sum', 'max', 'min'])
def test_integer_src_on_torch_path(reduce):
    src = torch.tensor([3, 1, 4, 1, 5])
    index = torch.tensor([1, 1, 0, 0, 1])
    out = scatter(src, index, 0, 3, reduce)
    assert out.dtype == torch.int64
    assert torch.equal(out, scatter_loop(src, index, 0, 3, reduce))


@needs_torch_scatter
@pytest.mark.parametrize('reduce', REDUCES)
def test_torch_scatter_backend_matches_torch(reduce, generator):
    src = torch.randn(20, 4, generator=generator)
    index = torch.randint(0, 9, (20, ), generator=generator)
    torch.testing.assert_close(
        scatter(src, index, 0, 9, reduce, backend='torch_scatter'),
        scatter(src, index, 0, 9, reduce, backend='torch'))


@pytest.mark.parametrize('kwargs, match', [
    (dict(index=torch.tensor([0., 1., 2.])), '`index` must be an integer'),
    (dict(index=torch.tensor([0, -1, 2])), '`index` must be non-negative'),
    (dict(index=torch.tensor([0, 1, 5]), dim_size=3), '`index` is out of'),
    (dict(index=torch.tensor([[0, 1, 2]])), '`index` must be one-dim'),
    (dict(index=torch.tensor([0, 1])), '`index` must have one entry'),
    (dict(dim=2), '`dim` must lie in'),
    (dict(dim_size=-1), '`dim_size` must be non-negative'),
    (dict(reduce='prod'), '`reduce` must be one of'),
    (dict(reduce='mean', src=torch.tensor([1, 2, 3])), "needs a floating"),
    (dict(backend='cuda'), '`backend` must be one of'),
])
def test_bad_input_raises_value_error(kwargs, match):
    args = dict(src=torch.ones(3, 2), index=torch.tensor([0, 1, 2]))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        scatter(**args)


def test_non_tensor_raises_type_error():
    with pytest.raises(TypeError, match='`index` must be a torch.Tensor'):
        scatter(torch.ones(3), [0, 1, 2])


def test_module(generator):
    module = Scatter(reduce='max', dim=1)
    assert repr(module) == 'Scatter(reduce=max, dim=1)'
    src = torch.randn(2, 5, generator=generator)
    index = torch.tensor([0, 1, 1, 3, 0])
    torch.testing.assert_close(module(src, index, dim_size=4),
                               scatter_loop(src, index, 1, 4, 'max'))
    with pytest.raises(ValueError, match='`reduce` must be one of'):
        Scatter(reduce='median')


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('reduce', REDUCES)
def test_spans_several_kernel_blocks(backend, reduce, generator):
    # 70 rows and 130 columns cover several of the kernel's 32 x 128 tiles.
    src = torch.randn(70, 130, generator=generator)
    index = torch.randint(0, 5, (70, ), generator=generator)
    torch.testing.assert_close(scatter(src, index, 0, 6, reduce, backend),
                               scatter_loop(src, index, 0, 6, reduce))


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_precision(backend, dtype, generator):
    src = torch.randn(30, 4, generator=generator)
    index = torch.randint(0, 6, (30, ), generator=generator)
    for reduce in REDUCES:
        out = scatter(src.to(dtype), index, 0, 6, reduce, backend)
        assert out.dtype == dtype
        expected = scatter_loop(src.to(dtype).double(), index, 0, 6, reduce)
        torch.testing.assert_close(out.double(), expected, rtol=2e-2,
                                   atol=2e-2)


def test_docstring_example():
    import doctest
    import importlib

    # The package re-exports the function under the module's name.
    module = importlib.import_module('videograph.ops.scatter')
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
