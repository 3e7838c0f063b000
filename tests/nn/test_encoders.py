import pytest
import torch
from torch import nn

from videograph.nn.encoders import NodeEncoder, PairEncoder, RoIFeatures, SmallCNN, tubelet_frame_index


class _Pool(nn.Module):
    """A stride-2 'backbone' that keeps piecewise-constant images piecewise constant."""
    out_channels = 3

    def forward(self, frames):
        return nn.functional.avg_pool2d(frames, 2)


def _frames():
    # Two 32x32 frames: a block of value 3 at x, y in [4, 20) in frame 0 and of value 5 at [12, 28) in frame 1.
    # RoIAlign averages bilinear samples, so the boxes below keep every sample's neighbours inside one block.
    frames = torch.zeros(2, 3, 32, 32)
    frames[0, :, 4:20, 4:20] = 3.0
    frames[1, :, 12:28, 12:28] = 5.0
    return frames


def test_roi_features_pool_each_box_on_its_frame_and_max_over_time():
    roi = RoIFeatures(_Pool(), normalize=False)
    boxes = torch.tensor([[[8., 8., 16., 16.], [16., 16., 24., 24.]],   # on both blocks
                          [[8., 8., 16., 16.], [0., 0., 6., 6.]],       # on block 0, then off
                          [[26., 0., 32., 4.], [0., 0., 4., 4.]]])      # misses both blocks
    frame_index = tubelet_frame_index(torch.tensor([0, 0, 0]), 2)
    out = roi(_frames(), boxes, frame_index)
    assert out.shape == (3, 3)
    torch.testing.assert_close(out[:, 0], torch.tensor([5.0, 3.0, 0.0]))


def test_roi_features_on_regions_and_uint8_frames():
    roi = RoIFeatures(_Pool(), normalize=False)
    frames = (_frames() * 10).to(torch.uint8).permute(0, 2, 3, 1)       # [F, H, W, 3] uint8
    out = roi(frames, torch.tensor([[8., 8., 16., 16.], [16., 16., 24., 24.]]), torch.tensor([0, 1]))
    torch.testing.assert_close(out[:, 0], torch.tensor([30 / 255, 50 / 255]))


def test_roi_features_train_the_backbone_end_to_end(generator):
    roi = RoIFeatures(SmallCNN(3, 8))
    frames = torch.rand(4, 3, 32, 32, generator=generator)
    boxes = torch.tensor([[[2., 2., 20., 20.]] * 2, [[10., 4., 30., 16.]] * 2])
    roi(frames, boxes, torch.tensor([[0, 1], [2, 3]])).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in roi.backbone.parameters())


def test_roi_features_reject_bad_input():
    roi = RoIFeatures(_Pool(), normalize=False)
    with pytest.raises(ValueError, match="frame_index"):
        roi(_frames(), torch.zeros(2, 4), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="boxes"):
        roi(_frames(), torch.zeros(2, 5), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="out_channels"):
        RoIFeatures(nn.Identity())


def test_node_encoder_parts_switch_off():
    torch.manual_seed(0)
    x, coord = torch.randn(6, 5), torch.randn(6, 8)
    coord_only = NodeEncoder(5, 8, visual_out=3, coord_out=4, use_visual=False).eval()
    assert coord_only.out_channels == 4
    torch.testing.assert_close(coord_only(x, coord), coord_only(torch.randn(6, 5), coord))
    both = NodeEncoder(5, 8, visual_out=3, coord_out=4).eval()
    assert both(x, coord).shape == (6, 7)
    with pytest.raises(ValueError, match="use_visual"):
        NodeEncoder(5, 8, use_visual=False, use_coord=False)


def test_pair_encoder_semantic_vector_sums_to_the_dot_product():
    torch.manual_seed(0)
    x, coord = torch.randn(5, 6), torch.randn(5, 8)
    pairs = torch.tensor([[0, 1], [0, 4], [2, 3]])
    vector = PairEncoder(6, 8, semantic_out=4, use_coord=False, normalize=False, unit_semantic=False)
    scalar = PairEncoder(6, 8, semantic_out=4, use_coord=False, normalize=False, semantic="scalar",
                         unit_semantic=False)
    scalar.load_state_dict(vector.state_dict())
    phi = vector.phi(x)
    expected = torch.stack([phi[i] @ phi[j] for i, j in pairs.tolist()])
    torch.testing.assert_close(vector(x, coord, pairs).sum(-1), expected)
    torch.testing.assert_close(scalar(x, coord, pairs).view(-1), expected)


def test_pair_encoder_coordinate_part_is_mlp_of_the_coordinate_change():
    torch.manual_seed(0)
    x, coord = torch.randn(5, 6), torch.randn(5, 8)
    pairs = torch.tensor([[0, 1], [3, 4]])
    enc = PairEncoder(6, 8, coord_out=3, use_semantic=False, normalize=False)
    torch.testing.assert_close(enc(x, coord, pairs), enc.coord(coord[pairs[:, 0]] - coord[pairs[:, 1]]))
    with pytest.raises(ValueError, match="pairs"):
        enc(x, coord, torch.tensor([0, 1]))
