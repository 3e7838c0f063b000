import pytest
import torch

from videograph.nn import TensorSketch
from videograph.nn.tensor_sketch import count_sketch, signed_sqrt_l2


def _outer_count_sketch(x, y, sketch):
    """Brute force: the count sketch of x ⊗ y with H = (h1_i + h2_j) mod d and S = s1_i s2_j, one loop per pair."""
    d = sketch.out_channels
    out = torch.zeros(*x.shape[:-1], d, dtype=x.dtype)
    for i in range(x.size(-1)):
        for j in range(y.size(-1)):
            k = int(sketch.index1[i] + sketch.index2[j]) % d
            out[..., k] += float(sketch.sign1[i] * sketch.sign2[j]) * x[..., i] * y[..., j]
    return out


@pytest.mark.parametrize("d", [7, 8, 13, 16])
@pytest.mark.parametrize("channels2", [None, 5])
def test_equals_count_sketch_of_outer_product(d, channels2):
    gen = torch.Generator().manual_seed(d)
    sketch = TensorSketch(6, d, in_channels2=channels2, generator=gen).double()
    x = torch.randn(2, 3, 6, dtype=torch.float64, generator=gen)
    y = torch.randn(2, 3, channels2 or 6, dtype=torch.float64, generator=gen)
    torch.testing.assert_close(sketch(x, y), _outer_count_sketch(x, y, sketch), rtol=0, atol=1e-10)
    if channels2 is None:
        torch.testing.assert_close(sketch(x), _outer_count_sketch(x, x, sketch), rtol=0, atol=1e-10)


def test_count_sketch_is_a_signed_scatter():
    gen = torch.Generator().manual_seed(0)
    index, sign = torch.randint(5, (9,), generator=gen), torch.randint(2, (9,), generator=gen) * 2.0 - 1
    x = torch.randn(4, 9, generator=gen)
    dense = torch.zeros(9, 5)
    dense[torch.arange(9), index] = sign     # the C x d matrix the layer never builds
    torch.testing.assert_close(count_sketch(x, index, sign, 5), x @ dense)


def _inner_products(x, y, draws, shared=False, d=16):
    values = []
    for seed in range(draws):
        sketch = TensorSketch(x.numel(), d, generator=torch.Generator().manual_seed(seed)).double()
        if shared:      # one hash for both inputs: a biased sketch
            sketch.index2.copy_(sketch.index1)
            sketch.sign2.copy_(sketch.sign1)
        values.append(float(sketch(x) @ sketch(y)))
    values = torch.tensor(values, dtype=torch.float64)
    return values.mean(), values.std() / draws ** 0.5


def test_inner_product_estimates_the_bilinear_kernel_without_bias():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(6, dtype=torch.float64, generator=gen)
    y = x + 0.5 * torch.randn(6, dtype=torch.float64, generator=gen)
    truth = float(x @ y) ** 2
    mean, stderr = _inner_products(x, y, 3000)
    assert abs(mean - truth) < 4 * stderr
    biased, biased_err = _inner_products(x, y, 3000, shared=True)
    assert abs(biased - truth) > 8 * max(stderr, biased_err)


@pytest.mark.parametrize("normalize", [False, True])
def test_gradcheck(normalize):
    gen = torch.Generator().manual_seed(2)
    sketch = TensorSketch(5, 8, in_channels2=3, normalize=normalize, eps=1e-3, generator=gen).double()
    x = torch.randn(2, 5, dtype=torch.float64, requires_grad=True, generator=gen)
    y = torch.randn(2, 3, dtype=torch.float64, requires_grad=True, generator=gen)
    assert torch.autograd.gradcheck(sketch, (x, y))


def test_normalize_is_signed_sqrt_then_l2_and_finite_at_zero():
    gen = torch.Generator().manual_seed(3)
    plain = TensorSketch(4, 10, generator=torch.Generator().manual_seed(0))
    normed = TensorSketch(4, 10, normalize=True, generator=torch.Generator().manual_seed(0))
    x = torch.randn(3, 4, generator=gen)
    raw = plain(x)
    expected = raw.sign() * ((raw.abs() + 1e-8).sqrt() - 1e-4)
    torch.testing.assert_close(normed(x), expected / expected.norm(dim=-1, keepdim=True))
    zero = torch.zeros(1, 4, requires_grad=True)
    signed_sqrt_l2(plain(zero) + 1.0).sum().backward()
    zero2 = torch.zeros(1, 4, requires_grad=True)
    normed(zero2).sum().backward()
    assert torch.isfinite(zero2.grad).all()


def test_seeded_and_state_dict():
    a = TensorSketch(7, 11, generator=torch.Generator().manual_seed(5))
    b = TensorSketch(7, 11, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.index1, b.index1) and torch.equal(a.sign2, b.sign2)
    assert not torch.equal(a.index1, a.index2) or not torch.equal(a.sign1, a.sign2)
    c = TensorSketch(7, 11, generator=torch.Generator().manual_seed(6))
    c.load_state_dict(a.state_dict())
    x = torch.randn(2, 7)
    torch.testing.assert_close(c(x), a(x))
    assert repr(a) == "TensorSketch(7, 11, normalize=False)"


def test_bad_input():
    with pytest.raises(ValueError, match="out_channels"):
        TensorSketch(4, 0)
    sketch = TensorSketch(4, 8, in_channels2=3)
    with pytest.raises(ValueError, match="'y' is required"):
        sketch(torch.randn(2, 4))
    with pytest.raises(ValueError, match="'x' must have 4"):
        sketch(torch.randn(2, 5), torch.randn(2, 3))
