import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import Bottleneck

from videograph.nn import KernelizedClassifier, LGDBlock, LowRankLinear, P3DBottleneck, TensorSketch


def _params(module):
    return sum(p.numel() for p in module.parameters())


def _randomize(module, gen):
    # Non-trivial weights everywhere (W^{x,g} included, unless a test zeroes it) and BN statistics.
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        for m in module.modules():
            if isinstance(m, (nn.BatchNorm3d, nn.BatchNorm2d)):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    return module


def _block(variant, c_in=32, c_out=32, stride=1, seed=0):
    gen = torch.Generator().manual_seed(seed)
    local = P3DBottleneck(c_in, c_out // 4, stride)
    return LGDBlock(local, c_in, c_out, variant).eval(), gen


def test_low_rank_linear_is_w1_w2():
    gen = torch.Generator().manual_seed(0)
    layer = _randomize(LowRankLinear(12, 20, 3), gen)
    x = torch.randn(5, 12, generator=gen)
    torch.testing.assert_close(layer(x), x @ (layer.up.weight @ layer.down.weight).T)
    assert _params(layer) == 3 * (12 + 20)
    assert torch.count_nonzero(LowRankLinear(4, 4, 1, zero_init=True)(torch.randn(2, 4))) == 0


@pytest.mark.parametrize("variant,extra", [("p3d", 0), ("v1", 1), ("v2", 3), ("lgd", 3)])
@pytest.mark.parametrize("channels", [64, 256])
def test_global_path_parameter_count(variant, extra, channels):
    block = LGDBlock(P3DBottleneck(channels, channels // 4), channels, channels, variant)
    assert _params(block) - _params(block.local) == extra * channels ** 2 // 8    # 3 C^2 / 8 for LGD


@pytest.mark.parametrize("variant", ["v1", "lgd"])
def test_zero_w_xg_gives_the_plain_p3d_block_independent_of_g(variant):
    block, gen = _block(variant)
    _randomize(block, gen)
    block.w_xg.reset_parameters()                          # W^{x,g} = 0, as initialised
    assert torch.count_nonzero(block.w_xg.up.weight) == 0
    plain = LGDBlock(block.local, 32, 32, "p3d").eval()
    x = torch.randn(2, 32, 4, 6, 6, generator=gen)
    g1, g2 = torch.randn(2, 32, generator=gen), torch.randn(2, 32, generator=gen) * 5
    out1, out2 = block.local_update(x, g1), block.local_update(x, g2)
    torch.testing.assert_close(out1, plain(x)[0])
    torch.testing.assert_close(out1, out2)
    # ... and with W^{x,g} != 0 it does depend on g.
    _randomize(block.w_xg, gen)
    assert not torch.allclose(block.local_update(x, g1), block.local_update(x, g2))


def test_equations_against_dense_matrices():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 16, 2, 5, 5, generator=gen)
    g = torch.randn(2, 16, generator=gen)
    dense = lambda m: m.up.weight @ m.down.weight  # noqa: E731
    for variant in ("v1", "v2", "lgd"):
        block = _randomize(LGDBlock(P3DBottleneck(16, 8, stride=2), 16, 32, variant), gen).eval()
        local = block.local(x)
        residual = (g @ dense(block.w_xg).T)[:, :, None, None, None]
        expected_x = F.relu(local * torch.sigmoid(residual)) if variant == "v2" else F.relu(local + residual)
        out_x, out_g = block(x, g)
        torch.testing.assert_close(out_x, expected_x)
        pooled = expected_x.mean(dim=(2, 3, 4))
        expected_g = pooled if variant == "v1" else F.relu(pooled @ dense(block.w_gx).T + g @ dense(block.w_gg).T)
        torch.testing.assert_close(out_g, expected_g)
        assert out_x.shape == (2, 32, 2, 3, 3) and out_g.shape == (2, 32)


@pytest.mark.parametrize("variant", ["v1", "v2", "lgd"])
def test_global_update_is_invariant_to_permuting_positions(variant):
    block, gen = _block(variant)
    _randomize(block, gen)
    x = torch.relu(torch.randn(3, 32, 4, 5, 6, generator=gen))
    g = torch.randn(3, 32, generator=gen)
    perm = torch.randperm(4 * 5 * 6, generator=gen)
    shuffled = x.flatten(2)[:, :, perm].view_as(x)
    torch.testing.assert_close(block.global_update(shuffled, g), block.global_update(x, g))


def test_temporal_identity_reproduces_its_input_and_reduces_to_torchvision_bottleneck():
    gen = torch.Generator().manual_seed(2)
    p3d = _randomize(P3DBottleneck(16, 8, stride=2), gen)
    p3d.init_temporal_identity()
    x = torch.randn(2, 8, 5, 7, 7, generator=gen)
    torch.testing.assert_close(p3d.conv_t(x), x)
    # With an identity temporal conv and an identity BN after it, P3D-A is torchvision's 2D bottleneck per frame.
    p3d.bn_t.reset_parameters()
    p3d.eval().bn_t.eps = 0.0
    ref = Bottleneck(16, 8, stride=2, downsample=nn.Sequential(nn.Conv2d(16, 32, 1, stride=2, bias=False),
                                                               nn.BatchNorm2d(32))).eval()
    pairs = [(ref.conv1, p3d.conv1), (ref.conv2, p3d.conv2), (ref.conv3, p3d.conv3), (ref.downsample[0],
                                                                                       p3d.shortcut[0])]
    with torch.no_grad():
        for conv2d, conv3d in pairs:
            conv2d.weight.copy_(conv3d.weight[:, :, 0])
        for bn2d, bn3d in ((ref.bn1, p3d.bn1), (ref.bn2, p3d.bn2), (ref.bn3, p3d.bn3),
                           (ref.downsample[1], p3d.shortcut[1])):
            bn2d.load_state_dict(bn3d.state_dict())
    clip = torch.randn(2, 16, 3, 9, 9, generator=gen)
    frames = clip.transpose(1, 2).reshape(6, 16, 9, 9)
    expected = ref(frames).view(2, 3, 32, 5, 5).transpose(1, 2)
    torch.testing.assert_close(F.relu(p3d(clip)), expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="temporal"):
        P3DBottleneck(16, 4, temporal=False).init_temporal_identity()


@pytest.mark.parametrize("variant", ["p3d", "v1", "v2", "lgd"])
def test_forward_backward(variant):
    block, gen = _block(variant, 16, 32, stride=2)
    block.train()
    x = torch.randn(2, 16, 4, 8, 8, generator=gen, requires_grad=True)
    g = torch.randn(2, 16, generator=gen, requires_grad=True)
    out_x, out_g = block(x, g)
    (out_x.square().mean() + out_g.square().mean()).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    if variant in ("v2", "lgd"):
        assert g.grad.abs().sum() > 0          # the global path reads g_{l-1}
    assert repr(block) == f"LGDBlock(16, 32, variant={variant})"


def test_kernelized_classifier_against_a_loop_over_locations():
    gen = torch.Generator().manual_seed(3)
    head = KernelizedClassifier(6, 4, sketch_channels=10, generator=gen).double()
    x = torch.randn(2, 6, 2, 3, 3, generator=gen, dtype=torch.float64)
    g = torch.randn(2, 6, generator=gen, dtype=torch.float64)
    sketch = TensorSketch(6, 10).double()
    sketch.load_state_dict(head.sketch.state_dict())

    def power_l2(z):
        z = z.sign() * ((z.abs() + 1e-8).sqrt() - 1e-4)
        return z / z.norm()

    for b in range(2):
        locations = [sketch(x[b, :, t, i, j]) for t in range(2) for i in range(3) for j in range(3)]
        expected = torch.cat([power_l2(torch.stack(locations).mean(0)), power_l2(sketch(g[b]))])
        torch.testing.assert_close(head.features(x, g)[b], expected, rtol=1e-9, atol=1e-9)
    assert head(x, g).shape == (2, 4)
    with pytest.raises(ValueError, match="'g'"):
        head(x, torch.randn(2, 5, dtype=torch.float64))


def test_bad_arguments():
    with pytest.raises(ValueError, match="variant"):
        LGDBlock(nn.Identity(), 4, 4, "v3")
    block = LGDBlock(P3DBottleneck(16, 4), 16, 16, "lgd")
    with pytest.raises(ValueError, match="'g'"):
        block(torch.randn(1, 16, 2, 3, 3), torch.randn(1, 8))
    with pytest.raises(ValueError, match="planes"):
        P3DBottleneck(4, 0)
