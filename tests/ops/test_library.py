"""The ops as registered torch.library operators: opcheck (schema, fake
kernel, autograd registration, AOT dispatch) and torch.compile on CPU."""
import pytest
import torch

import videograph.typing
from videograph.ops import gather_sum, scatter, segment

BACKENDS = ['torch'] + (['triton'] if videograph.typing.WITH_TRITON else [])


def _randn(*shape, generator):
    return torch.randn(*shape, generator=generator, dtype=torch.float64,
                       requires_grad=True)


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('reduce, dim', [('sum', 0), ('mean', 1),
                                         ('max', 0), ('min', 1)])
def test_opcheck_scatter(backend, reduce, dim, generator):
    src = _randn(3, 9, 2, generator=generator) if dim == 1 else \
        _randn(9, 4, generator=generator)
    index = torch.tensor([0, 2, 2, 5, 0, 1, 5, 5, 2])  # slots 3, 4 empty
    torch.library.opcheck(torch.ops.videograph.scatter.default,
                          (src, index, dim, 6, reduce, backend))


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('reduce', ['sum', 'mean', 'max'])
def test_opcheck_segment(backend, reduce, generator):
    src = _randn(7, 3, generator=generator)
    ptr = torch.tensor([0, 2, 2, 6, 7], dtype=torch.int32)  # one empty
    torch.library.opcheck(torch.ops.videograph.segment.default,
                          (src, ptr, reduce, backend))


@pytest.mark.parametrize('backend', BACKENDS)
def test_opcheck_gather_sum_and_its_backward(backend, generator):
    table = _randn(5, 3, generator=generator)
    index = torch.tensor([[0, 4, 4], [2, 1, 0], [3, 3, 3], [1, 0, 2]])
    torch.library.opcheck(torch.ops.videograph.gather_sum.default,
                          (table, index, backend))
    grad_out = _randn(4, 3, generator=generator)
    torch.library.opcheck(torch.ops.videograph.gather_sum_backward.default,
                          (grad_out, index, 5, backend))


class Pooling(torch.nn.Module):
    """A small model built on the three ops (the shape of a graph pooling
    layer with a slot table)."""
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)
        self.table = torch.nn.Parameter(torch.randn(6, 4))

    def forward(self, x, index, ptr, slots):
        h = self.lin(x).relu()
        pooled = (scatter(h, index, 0, 5, 'mean') +
                  scatter(h, index, 0, 5, 'max') + segment(h, ptr, 'sum'))
        return pooled, gather_sum(self.table, slots) * pooled[:3]


def test_torch_compile_traces_the_ops_and_matches_eager(generator):
    torch.manual_seed(0)
    model = Pooling()
    x = torch.randn(10, 4, generator=generator)
    index = torch.randint(0, 5, (10, ), generator=generator)
    index[-1] = 4
    ptr = torch.tensor([0, 2, 2, 5, 9, 10])
    slots = torch.randint(0, 6, (3, 4), generator=generator).int()
    grad = [torch.randn(5, 4, generator=generator),
            torch.randn(3, 4, generator=generator)]

    def run(fn):
        model.zero_grad()
        out = fn(x, index, ptr, slots)
        torch.autograd.backward(out, grad)
        return out, [p.grad.clone() for p in model.parameters()]

    expected, expected_grads = run(model)
    # fullgraph: a graph break (a host read of index values, an untraceable
    # op) fails the test instead of falling back to eager.
    out, grads = run(torch.compile(model, fullgraph=True))
    for a, b in zip(out + tuple(grads), expected + tuple(expected_grads)):
        torch.testing.assert_close(a, b)
