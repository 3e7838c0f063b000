import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_geometric.utils import segment as pyg_segment

import videograph.typing
from videograph.ops import Segment, scatter, segment

REDUCES = ['sum', 'mean', 'max', 'min']
BACKENDS = ['torch'] + (['triton'] if videograph.typing.WITH_TRITON else [])


def segment_loop(src, ptr, reduce):
    """Brute force: one slice per segment."""
    out = torch.zeros((ptr.numel() - 1, ) + src.shape[1:], dtype=src.dtype)
    for i in range(ptr.numel() - 1):
        rows = src[int(ptr[i]):int(ptr[i + 1])]
        if rows.size(0) == 0:
            continue
        out[i] = {
            'sum': lambda: rows.sum(0),
            'mean': lambda: rows.mean(0),
            'max': lambda: rows.amax(0),
            'min': lambda: rows.amin(0),
        }[reduce]()
    return out


def random_ptr(num_rows, num_segments, generator):
    cuts = torch.randint(0, num_rows + 1, (num_segments - 1, ),
                         generator=generator).sort().values
    return torch.cat([torch.tensor([0]), cuts, torch.tensor([num_rows])])


def test_hand_built_example():
    src = torch.tensor([1., 2., 3., 4.])
    ptr = torch.tensor([0, 3, 3, 4])
    for backend in BACKENDS:
        assert segment(src, ptr, 'sum', backend).tolist() == [6., 0., 4.]
        assert segment(src, ptr, 'mean', backend).tolist() == [2., 0., 4.]
        assert segment(src, ptr, 'max', backend).tolist() == [3., 0., 4.]
        assert segment(src, ptr, 'min', backend).tolist() == [1., 0., 4.]


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('reduce', REDUCES)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_matches_loop_scatter_and_pyg(backend, reduce, dtype, generator):
    # 40 rows in 9 segments: some segments span several kernel row blocks,
    # some are empty.
    src = torch.randn(40, 3, 2, generator=generator, dtype=dtype)
    ptr = torch.tensor([0, 0, 2, 19, 19, 19, 21, 37, 40, 40])
    out = segment(src, ptr, reduce, backend)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else {}
    torch.testing.assert_close(out, segment_loop(src, ptr, reduce), **tol)
    index = torch.repeat_interleave(ptr.diff())
    torch.testing.assert_close(out, scatter(src, index, 0, 9, reduce), **tol)
    torch.testing.assert_close(out, pyg_segment(src, ptr, reduce), **tol)



@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('reduce', REDUCES)
def test_spans_several_kernel_blocks(backend, reduce, generator):
    # 130 columns and a 40-row segment cover several 16 x 128 tiles.
    src = torch.randn(45, 130, generator=generator)
    ptr = torch.tensor([0, 40, 40, 45])
    torch.testing.assert_close(segment(src, ptr, reduce, backend),
                               segment_loop(src, ptr, reduce))

@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('reduce', REDUCES)
def test_non_contiguous_inputs(backend, reduce, generator):
    src = torch.randn(4, 12, generator=generator).t()
    ptr = torch.tensor([0, 0, 5, 5, 6, 6, 12, 12])[::2]  # [0, 5, 6, 12]
    assert not src.is_contiguous() and not ptr.is_contiguous()
    torch.testing.assert_close(segment(src, ptr, reduce, backend),
                               segment_loop(src, ptr, reduce))


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('reduce', REDUCES)
def test_gradcheck(backend, reduce, generator):
    src = torch.randn(9, 2, generator=generator, dtype=torch.float64,
                      requires_grad=True)
    ptr = torch.tensor([0, 4, 4, 5, 9])
    torch.autograd.gradcheck(lambda x: segment(x, ptr, reduce, backend),
                             (src, ))


@pytest.mark.parametrize('backend', BACKENDS)
def test_tied_maxima_share_the_gradient(backend):
    src = torch.tensor([2., 5., 5., 1.], dtype=torch.float64,
                       requires_grad=True)
    segment(src, torch.tensor([0, 3, 4]), 'max', backend).backward(
        torch.tensor([4., 3.], dtype=torch.float64))
    assert src.grad.tolist() == [0., 2., 2., 3.]


@pytest.mark.parametrize('backend', BACKENDS)
def test_no_rows(backend):
    out = segment(torch.empty(0, 2), torch.tensor([0, 0, 0]), 'max', backend)
    assert out.tolist() == [[0., 0.], [0., 0.]]
    assert segment(torch.empty(0), torch.tensor([0])).shape == (0, )


@settings(max_examples=15, deadline=None)
@given(
    num_rows=st.integers(0, 50),
    num_segments=st.integers(1, 8),
    reduce=st.sampled_from(REDUCES),
    seed=st.integers(0, 2**16),
)
def test_backends_agree_on_random_shapes(num_rows, num_segments, reduce,
                                         seed):
    gen = torch.Generator().manual_seed(seed)
    src = torch.randn(num_rows, 3, generator=gen, dtype=torch.float64)
    ptr = random_ptr(num_rows, num_segments, gen)
    expected = segment_loop(src, ptr, reduce)
    for backend in BACKENDS:
        torch.testing.assert_close(segment(src, ptr, reduce, backend),
                                   expected)


@pytest.mark.skipif(not videograph.typing.WITH_TORCH_SCATTER,
                    reason="torch-scatter is not installed "
                    "(`make test-ext` installs it)")
@pytest.mark.parametrize('reduce', REDUCES)
def test_torch_scatter_backend_matches_torch(reduce, generator):
    src = torch.randn(20, 4, generator=generator)
    ptr = torch.tensor([0, 3, 3, 11, 20])
    torch.testing.assert_close(segment(src, ptr, reduce, 'torch_scatter'),
                               segment(src, ptr, reduce, 'torch'))


@pytest.mark.parametrize('kwargs, match', [
    (dict(ptr=torch.tensor([0., 2., 4.])), '`ptr` must be an integer'),
    (dict(ptr=torch.tensor([1, 2, 4])), '`ptr` must start at 0'),
    (dict(ptr=torch.tensor([0, 2, 3])), 'end at src.size'),
    (dict(ptr=torch.tensor([0, 3, 1, 4])), '`ptr` must be non-decreasing'),
    (dict(ptr=torch.tensor([[0, 4]])), '`ptr` must be one-dimensional'),
    (dict(ptr=torch.empty(0, dtype=torch.long)), 'at least one entry'),
    (dict(reduce='sum_'), '`reduce` must be one of'),
    (dict(backend='gpu'), '`backend` must be one of'),
])
def test_bad_input_raises_value_error(kwargs, match):
    args = dict(src=torch.ones(4, 2), ptr=torch.tensor([0, 2, 4]))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        segment(**args)


def test_module():
    module = Segment('mean')
    assert repr(module) == 'Segment(reduce=mean)'
    assert module(torch.tensor([1., 3., 5.]),
                  torch.tensor([0, 2, 3])).tolist() == [2., 5.]


def test_docstring_example():
    import doctest
    import importlib

    # The package re-exports the function under the module's name.
    module = importlib.import_module('videograph.ops.segment')
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
