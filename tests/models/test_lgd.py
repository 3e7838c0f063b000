import pytest
import torch
from torchvision.ops import roi_align

from videograph.models import LGD2D, LGD3D
from videograph.models.lgd import lgd2d_resnet50, lgd3d_resnet50
from videograph.nn import LGDBlock
from videograph.nn.encoders import RoIFeatures

SMALL = dict(layers=(1, 1), widths=(4, 8), stem_channels=4, sketch_channels=16)


def _stage_shapes(model, video):
    """Output shape of the stem and of the last block of each stage (forward hooks), on the meta device."""
    shapes = {}
    model.stem.register_forward_hook(lambda m, i, o: shapes.__setitem__("stem", tuple(o.shape)))
    ends = torch.cumsum(torch.tensor(model.layers), 0) - 1
    for stage, end in enumerate(ends.tolist()):
        model.blocks[end].register_forward_hook(
            lambda m, i, o, name=f"res{stage + 2}": shapes.__setitem__(name, (tuple(o[0].shape), tuple(o[1].shape))))
    x, g = model.forward_features(video)
    return shapes, tuple(x.shape), tuple(g.shape)


def test_lgd3d_resnet50_shapes_of_table_1():
    with torch.device("meta"):
        model = lgd3d_resnet50(600, sketch_channels=0)
    shapes, x, g = _stage_shapes(model, torch.empty(2, 3, 16, 112, 112, device="meta"))
    assert shapes["stem"] == (2, 64, 8, 56, 56)                               # conv1 16x56x56, pool1 8x56x56
    assert shapes["res2"] == ((2, 256, 8, 56, 56), (2, 256))                  # then pool2: 4 x 56 x 56
    assert shapes["res3"] == ((2, 512, 4, 28, 28), (2, 512))
    assert shapes["res4"] == ((2, 1024, 4, 14, 14), (2, 1024))
    assert shapes["res5"] == ((2, 2048, 4, 7, 7), (2, 2048))
    assert x == (2, 2048, 4, 7, 7) and g == (2, 2048)
    assert [len([b for b in model.blocks if b.out_channels == c]) for c in (256, 512, 1024, 2048)] == [3, 4, 6, 3]
    assert model(torch.empty(2, 3, 16, 112, 112, device="meta")).shape == (2, 600)


def test_lgd2d_resnet50_shapes():
    with torch.device("meta"):
        model = lgd2d_resnet50(400, sketch_channels=0, num_segments=3)
    shapes, x, g = _stage_shapes(model, torch.empty(2, 3, 3, 224, 224, device="meta"))
    assert shapes["stem"] == (2, 64, 3, 56, 56)
    assert shapes["res2"][0] == (2, 256, 3, 56, 56) and shapes["res5"][0] == (2, 2048, 3, 7, 7)
    assert x == (2, 2048, 3, 7, 7) and g == (2, 2048)
    assert not any(block.local.temporal for block in model.blocks)


def test_lgd2d_global_path_pools_over_all_segments():
    torch.manual_seed(0)
    model = LGD2D(5, variant="lgd", num_segments=3, **SMALL).eval()
    video = torch.randn(1, 3, 3, 32, 32)
    changed = video.clone()
    changed[:, :, 2] = torch.randn(3, 32, 32)
    for block in model.blocks:                   # let g reach the local path
        torch.nn.init.normal_(block.w_xg.up.weight)
    x1, _ = model.forward_features(video)
    x2, _ = model.forward_features(changed)
    # Frame 0's local features change when only frame 2 changes: only the global path links the frames.
    assert not torch.allclose(x1[:, :, 0], x2[:, :, 0])
    plain = LGD2D(5, variant="p3d", num_segments=3, **SMALL).eval()
    torch.testing.assert_close(plain.forward_features(video)[0][:, :, 0], plain.forward_features(changed)[0][:, :, 0])


@pytest.mark.parametrize("variant", ["P3D", "LGD-v1", "LGD-v2", "LGD", "lgd"])
@pytest.mark.parametrize("cls", [LGD3D, LGD2D])
def test_forward_backward_both_stages(variant, cls):
    torch.manual_seed(1)
    frames = 8 if cls is LGD3D else 3
    kwargs = {} if cls is LGD3D else {"num_segments": 3}
    model = cls(4, variant=variant, **SMALL, **kwargs)
    video, target = torch.randn(2, 3, frames, 24, 24), torch.tensor([0, 3])
    assert model(video).shape == (2, 4)
    for stage in (1, 2):
        model.zero_grad()
        model.loss(video, target, stage=stage).backward()
        grads = [p.grad for p in model.stem.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
    model.head = "kernel"
    assert model(video).shape == (2, 4)
    assert all(isinstance(b, LGDBlock) and b.variant == model.variant for b in model.blocks)


def test_state_dict_round_trip_with_weights_only(tmp_path):
    torch.manual_seed(2)
    model = LGD3D(3, **SMALL).eval()
    for block in model.blocks:
        torch.nn.init.normal_(block.w_xg.up.weight)
    path = tmp_path / "lgd3d.pt"
    torch.save(model.state_dict(), path)
    loaded = LGD3D(3, **SMALL, weights=str(path)).eval()
    video = torch.randn(2, 3, 8, 24, 24)
    torch.testing.assert_close(loaded(video), model(video))
    loaded.head = model.head = "kernel"
    torch.testing.assert_close(loaded(video), model(video))
    with pytest.raises(FileNotFoundError, match="weights"):
        LGD3D(3, **SMALL, weights=str(tmp_path / "missing.pt"))


def test_as_roi_features_backbone():
    torch.manual_seed(3)
    network = LGD3D(3, **SMALL).eval()
    encoder = RoIFeatures(network.frame_backbone(), output_size=2)
    assert encoder.out_channels == network.out_channels == 32
    frames = torch.randint(0, 256, (8, 32, 48, 3), dtype=torch.uint8)
    fmap = encoder.feature_map(frames)
    assert fmap.shape == (8, 32, 8, 12)                   # stride 4 for two stages
    # One map per frame: the clip's x_L (T / 4 = 2 steps) repeated over the frames of each step.
    x, _ = network.forward_features(((frames.permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25).transpose(0, 1)[None])
    torch.testing.assert_close(fmap, x[0].repeat_interleave(4, dim=1).transpose(0, 1))
    boxes = torch.tensor([[[2.0, 3.0, 20.0, 25.0], [4.0, 3.0, 22.0, 25.0]], [[10.0, 0.0, 47.0, 31.0]] * 2])
    frame_index = torch.tensor([[0, 5], [6, 7]])
    out = encoder.pool(fmap, boxes, frame_index, (32, 48))
    rois = torch.cat([frame_index.reshape(-1, 1).float(), boxes.reshape(-1, 4)], 1)
    expected = roi_align(fmap, rois, 2, spatial_scale=0.25, sampling_ratio=2, aligned=True).amax((2, 3))
    torch.testing.assert_close(out, expected.view(2, 2, -1).amax(1))
    out.sum().backward()
    assert network.stem[0].weight.grad.abs().sum() > 0


def test_bad_input():
    model = LGD3D(3, **SMALL)
    with pytest.raises(ValueError, match="divisible by 4"):
        model(torch.randn(1, 3, 6, 24, 24))
    with pytest.raises(ValueError, match="num_segments"):
        LGD2D(3, num_segments=3, **SMALL)(torch.randn(1, 3, 4, 24, 24))
    with pytest.raises(ValueError, match="variant"):
        LGD3D(3, variant="nonlocal")
    with pytest.raises(ValueError, match="layers"):
        LGD3D(3, layers=(1, 1), widths=(4,))
    with pytest.raises(ValueError, match="sketch_channels"):
        LGD3D(3, **dict(SMALL, sketch_channels=0)).loss(torch.randn(1, 3, 8, 24, 24), torch.tensor([0]), stage=2)
    with pytest.raises(TypeError, match="LGD3D"):
        from videograph.models.lgd import FrameBackbone
        FrameBackbone(LGD2D(3, **SMALL))
