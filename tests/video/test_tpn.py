import pytest
import torch
from torchvision.models.detection._utils import BoxCoder

from videograph.datasets import SyntheticInteractions
from videograph.video import Linker, Tubes
from videograph.video.tpn import TubeletProposalNetwork, fit_tpn


@pytest.fixture(scope="module")
def videos():
    return SyntheticInteractions(4, num_frames=8, seed=3)


def _detections(video, generator):
    return [{"boxes": video.boxes[:, t], "scores": torch.rand(video.num_objects, generator=generator),
             "labels": torch.ones(video.num_objects, dtype=torch.long)} for t in range(video.num_frames)]


def _tpn(**kwargs):
    return TubeletProposalNetwork(sketch_channels=64, hidden=16, generator=torch.Generator().manual_seed(0),
                                  **kwargs).eval()


def test_untrained_network_keeps_the_top_m_seeds_still(videos):
    video, gen = videos[0], torch.Generator().manual_seed(0)
    detections = _detections(video, gen)
    tpn = _tpn()
    assert isinstance(tpn, Linker)
    with torch.no_grad():
        tubes = tpn(video.frames, detections, 2)
    assert isinstance(tubes, Tubes) and tubes.boxes.shape == (2, 8, 4)
    seeds = detections[0]["scores"].argsort(descending=True)[:2]
    torch.testing.assert_close(tubes.scores, detections[0]["scores"][seeds])
    torch.testing.assert_close(tubes.boxes, detections[0]["boxes"][seeds][:, None].expand(-1, 8, -1))
    assert tubes.matched[:, 0].all() and not tubes.matched[:, 1:].any()


def test_rollout_applies_the_regressed_deltas_frame_by_frame(videos):
    video = videos[1]
    tpn = _tpn()
    start = torch.tensor([[10.0, 12.0, 20.0, 24.0]])
    moved = start + torch.tensor([3.0, -1.0, 3.0, -1.0])
    delta = BoxCoder((10.0, 10.0, 5.0, 5.0)).encode_single(moved, start)[0]
    with torch.no_grad():
        tpn.regressor[-1].bias.copy_(delta)           # the same movement whatever the features
        tubes = tpn.rollout(video.frames, start)
    expected = start + torch.arange(8.0)[:, None] * torch.tensor([3.0, -1.0, 3.0, -1.0])
    torch.testing.assert_close(tubes[0], expected, rtol=0, atol=1e-4)


def test_deltas_read_the_next_frame_at_the_same_location(videos):
    video = videos[2]
    tpn = _tpn()
    torch.nn.init.normal_(tpn.regressor[-1].weight)
    frames = video.frames.clone()
    maps = tpn.encoder.feature_map(frames)
    boxes, frame = video.boxes[:, 0], torch.zeros(video.num_objects, dtype=torch.long)
    before = tpn.deltas(maps, boxes, frame, video.frame_size)
    frames[2:] = 0                                    # frames after t + 1 = 1 do not matter
    torch.testing.assert_close(tpn.deltas(tpn.encoder.feature_map(frames), boxes, frame, video.frame_size), before)
    frames[1] = 255 - frames[1]                       # frame t + 1 does
    assert not torch.allclose(tpn.deltas(tpn.encoder.feature_map(frames), boxes, frame, video.frame_size), before)


def test_training_lowers_the_loss_and_weights_round_trip(videos, tmp_path):
    tpn = _tpn()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        before = sum(float(tpn.loss(v.frames, v.boxes, jitter=0.0)) for v in videos)
    history = fit_tpn(tpn, videos, epochs=3, lr=3e-3, generator=gen, progress=False)
    with torch.no_grad():
        after = sum(float(tpn.loss(v.frames, v.boxes, jitter=0.0)) for v in videos)
    assert len(history) == 3 and after < before
    path = tmp_path / "tpn.pt"
    torch.save(tpn.state_dict(), path)
    loaded = _tpn(weights=str(path))
    with torch.no_grad():
        torch.testing.assert_close(loaded.rollout(videos[0].frames, videos[0].boxes[:, 0]),
                                   tpn.rollout(videos[0].frames, videos[0].boxes[:, 0]))
    with pytest.raises(FileNotFoundError, match="weights"):
        _tpn(weights=str(tmp_path / "missing.pt"))


def test_bad_input(videos):
    tpn = _tpn()
    with pytest.raises(ValueError, match="boxes"):
        tpn.loss(videos[0].frames, videos[0].boxes[:, :3])
    with pytest.raises(ValueError, match="context"):
        TubeletProposalNetwork(context=0.5)
