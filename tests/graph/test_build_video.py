from dataclasses import dataclass

import pytest
import torch
from torch_geometric.data import Batch
from torchvision.ops import box_iou

from videograph import build_graph
from videograph.io import FrameFolder, VideoReader, write_video
from videograph.video import IoULinker, default_features
from videograph.nn.encoders import RoIFeatures

COLOURS = torch.tensor([[230, 40, 40], [40, 200, 60], [50, 80, 230]], dtype=torch.uint8)
SIZE, LENGTH = 64, 40


def moving_squares():
    """Three squares on straight, non-crossing paths: frames [T, 64, 64, 3] and truth boxes [3, T, 4]."""
    t = torch.arange(LENGTH, dtype=torch.float32)
    starts = torch.tensor([[6.0, 6.0], [6.0, 28.0], [40.0, 48.0]])
    velocity = torch.tensor([[0.8, 0.2], [0.9, 0.0], [-0.7, -0.3]])
    # even corners: H.264's 4:2:0 chroma keeps the colour edges where they are
    corner = ((starts[:, None] + velocity[:, None] * t[None, :, None]) / 2).round() * 2
    boxes = torch.cat([corner, corner + 10], -1)                           # [3, T, 4]
    frames = torch.full((LENGTH, SIZE, SIZE, 3), 110, dtype=torch.uint8)
    for o in range(3):
        for f in range(LENGTH):
            x1, y1, x2, y2 = boxes[o, f].long().tolist()
            frames[f, y1:y2, x1:x2] = COLOURS[o]
    return frames, boxes


def colour_detector(frames):
    """A stub detector: the bounding box of the pixels close to each known colour."""
    out = []
    for frame in frames.int():
        boxes, scores = [], []
        for o, colour in enumerate(COLOURS.int()):
            mask = (frame - colour).abs().amax(-1) < 45
            ys, xs = mask.nonzero(as_tuple=True)
            if ys.numel() > 4:
                boxes.append([float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)])
                scores.append(0.9 - 0.1 * o)
        out.append({"boxes": torch.tensor(boxes).reshape(-1, 4), "scores": torch.tensor(scores),
                    "labels": torch.ones(len(scores), dtype=torch.long)})
    return out


@pytest.fixture(scope="module")
def video_file(tmp_path_factory):
    frames, boxes = moving_squares()
    path = tmp_path_factory.mktemp("videos") / "squares.mp4"
    write_video(path, frames, fps=10)
    return path, boxes


@pytest.mark.parametrize("num_clips,clip_len,interval", [(2, 8, 1), (3, 5, 2), (1, 16, 1)])
def test_tubelet_boxes_follow_the_truth(video_file, num_clips, clip_len, interval):
    path, truth = video_file
    data = build_graph(str(path), kind="tubelets", detector=colour_detector, num_clips=num_clips,
                       clip_len=clip_len, frame_interval=interval, top_m=8, progress=False)
    assert data.frame_index.shape == (num_clips, clip_len)
    assert data.num_nodes == 3 * num_clips and data.boxes.shape == (3 * num_clips, clip_len, 4)
    assert data.x.shape == (data.num_nodes, 32) and data.coord.shape == (data.num_nodes, 4 * clip_len)
    for node in range(data.num_nodes):
        frames = data.frame_index[data.clip[node]]
        iou = box_iou(data.boxes[node], truth[:, frames].reshape(-1, 4)).view(clip_len, 3, clip_len)
        own = iou[torch.arange(clip_len), :, torch.arange(clip_len)]    # [clip_len, 3]
        obj = int(own[0].argmax())
        assert bool((own[:, obj] > 0.8).all()), f"node {node} drifts from object {obj}"
    assert bool(data.matched.all())


def test_dense_edges_count(video_file):
    path, _ = video_file
    data = build_graph(path, detector=colour_detector, num_clips=2, clip_len=4, progress=False)
    n = data.num_nodes
    assert data.dense_edge_index.size(1) == n * (n - 1)


def test_regions_are_the_top_detections_of_every_sampled_frame(video_file):
    path, truth = video_file
    data = build_graph(path, kind="regions", detector=colour_detector, num_clips=2, clip_len=4, top_m=2,
                       progress=False)
    assert data.num_nodes == 2 * 4 * 2 and data.boxes.shape == (16, 4)
    assert torch.equal(data.frame, torch.arange(8).repeat_interleave(2))
    frames = data.frame_index.flatten()[data.frame]
    for node in range(16):
        iou = box_iou(data.boxes[node:node + 1], truth[:2, frames[node]])   # the two best-scoring colours
        assert float(iou.max()) > 0.8
    # front edges join consecutive frames of one clip only
    src, dst = data.front_edge_index
    assert bool(((data.frame[src] - data.frame[dst]).abs() == 1).all())
    assert bool((data.frame[src] // 4 == data.frame[dst] // 4).all())


def test_sparse_clips_decode_only_their_frames(video_file, monkeypatch):
    path, _ = video_file
    asked = []
    reader = VideoReader(path)
    original = reader.get_frames_at
    monkeypatch.setattr(reader, "get_frames_at", lambda idx: asked.append(torch.as_tensor(idx)) or original(idx))
    monkeypatch.setattr(VideoReader, "__getitem__", lambda *a: pytest.fail("decoded by index or slice"))
    data = build_graph(reader, detector=colour_detector, num_clips=2, clip_len=4, progress=False)
    assert torch.equal(torch.cat(asked), data.frame_index.flatten())
    assert torch.cat(asked).numel() == 8 < len(reader)
    reader.close()


def test_a_list_of_paths_gives_a_batch(video_file):
    path, _ = video_file
    single = build_graph(path, detector=colour_detector, num_clips=2, clip_len=4, progress=False)
    batch = build_graph([path, str(path)], detector=colour_detector, num_clips=2, clip_len=4, progress=False)
    assert isinstance(batch, Batch) and batch.num_graphs == 2
    assert batch.frame_index.shape == (4, 4)
    assert torch.equal(batch.frame_index[:2], single.frame_index)
    assert torch.equal(batch.dense_edge_index[:, single.dense_edge_index.size(1):],
                       single.dense_edge_index + single.num_nodes)
    assert torch.allclose(batch.x[:single.num_nodes], single.x)


def test_a_custom_backbone_and_linker(video_file):
    path, _ = video_file
    backbone = torch.nn.Conv2d(3, 5, 3, stride=2, padding=1)           # no out_channels attribute
    data = build_graph(path, detector=colour_detector, num_clips=1, clip_len=4, backbone=backbone,
                       linker=IoULinker(iou_threshold=0.5), progress=False)
    assert data.x.shape == (data.num_nodes, 5)
    encoder = RoIFeatures(torch.nn.Conv2d(3, 7, 1), out_channels=7)
    assert build_graph(path, detector=colour_detector, num_clips=1, clip_len=4, backbone=encoder,
                       progress=False).x.shape[1] == 7


def test_random_mode_follows_the_generator(video_file):
    path, _ = video_file
    a = build_graph(path, detector=colour_detector, num_clips=2, clip_len=4, mode="random",
                    generator=torch.Generator().manual_seed(3), progress=False)
    b = build_graph(path, detector=colour_detector, num_clips=2, clip_len=4, mode="random",
                    generator=torch.Generator().manual_seed(3), progress=False)
    assert torch.equal(a.frame_index, b.frame_index) and torch.equal(a.boxes, b.boxes)


@pytest.mark.parametrize("options,error,match", [
    (dict(), TypeError, "detector"),
    (dict(detector=colour_detector, kind="boxes"), ValueError, "kind"),
    (dict(detector=colour_detector, mode="dense"), ValueError, "mode"),
    (dict(detector=colour_detector, num_clips=0), ValueError, "num_clips"),
    (dict(detector=colour_detector, clip_len=2.5), ValueError, "clip_len"),
    (dict(detector=colour_detector, kind="regions", linker=IoULinker()), ValueError, "linker"),
    (dict(detector=colour_detector, generator=0), TypeError, "generator"),
    (dict(detector=colour_detector, backbone="resnet"), TypeError, "backbone"),
    (dict(detector=lambda frames: [], num_clips=1, clip_len=2), ValueError, "detector output"),
    (dict(detector=lambda frames: [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0)}] * len(frames)),
     ValueError, "found nothing"),
])
def test_bad_inputs(video_file, options, error, match):
    path, _ = video_file
    with pytest.raises(error, match=match):
        build_graph(path, progress=False, **options)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="nowhere.mp4"):
        build_graph("nowhere.mp4", detector=colour_detector)


# ---------------------------------------------------------------- ground-truth boxes in place of the detector
@dataclass
class Tracks:
    """A box source (SomethingElseVideo's fields) of the moving squares: 3 tracks in frames numbered 1.."""
    frames: torch.Tensor
    boxes: torch.Tensor
    frame: torch.Tensor
    identity: torch.Tensor


def square_tracks(boxes, drop=()):
    """The truth boxes [3, T, 4] as a box source, without the (frame, track) pairs in ``drop``."""
    frame, identity = torch.meshgrid(torch.arange(boxes.size(1)), torch.arange(3), indexing="ij")
    keep = torch.tensor([(f, k) not in drop for f, k in zip(frame.flatten().tolist(), identity.flatten().tolist())])
    frame, identity = frame.flatten()[keep], identity.flatten()[keep]
    return Tracks(torch.arange(1, boxes.size(1) + 1), boxes[identity, frame], frame, identity)


@pytest.fixture(scope="module")
def png_folder(tmp_path_factory):
    from PIL import Image

    frames, _ = moving_squares()
    folder = tmp_path_factory.mktemp("png")
    for f, frame in enumerate(frames):
        Image.fromarray(frame.numpy()).save(folder / f"{f + 1:05d}.png")
    return folder


@pytest.mark.parametrize("source", ["mp4", "folder", "FrameFolder"])
def test_ground_truth_tubelets_are_the_tracks(video_file, png_folder, source):
    path, truth = video_file
    video = {"mp4": path, "folder": png_folder, "FrameFolder": FrameFolder(png_folder)}[source]
    tracks = square_tracks(truth, drop={(2, 0), (3, 0), (9, 1)})
    data = build_graph(video, boxes=tracks, num_clips=2, clip_len=6, progress=False)
    assert data.num_nodes == 6 and data.frame_index.tolist() == [list(range(6)), list(range(34, 40))]
    for i in range(data.num_nodes):
        frames = data.frame_index[int(data.clip[i])]
        k = int(data.track[i])
        expected = truth[k, frames]
        if k == 0 and int(data.clip[i]) == 0:                   # frames 2, 3 take their nearest: 1 and 4
            expected = truth[0, torch.tensor([0, 1, 1, 4, 4, 5])]
            assert data.matched[i].tolist() == [True, True, False, False, True, True]
        else:
            assert bool(data.matched[i].all())
        assert torch.equal(data.boxes[i], expected)
    assert torch.equal(data.score, torch.ones(6))
    if source != "mp4":                                         # lossless PNGs: features of the very frames
        frames, _ = moving_squares()
        where = data.clip[:, None] * 6 + torch.arange(6)           # the node's frames in frame_index.flatten()
        x = default_features()(frames[data.frame_index.flatten()], data.boxes, where)
        assert torch.allclose(data.x, x, atol=1e-5)


def test_ground_truth_regions_are_every_box(video_file):
    path, truth = video_file
    tracks = square_tracks(truth, drop={(5, 2)})
    data = build_graph(path, kind="regions", boxes=tracks, num_clips=2, clip_len=3, progress=False)
    frames = data.frame_index.flatten()
    listed = [(p, k) for p, f in enumerate(frames.tolist()) for k in range(3) if (f, k) != (5, 2)]
    assert list(zip(data.frame.tolist(), data.track.tolist())) == listed
    assert torch.equal(data.boxes, truth[data.track, frames[data.frame]])


@pytest.mark.parametrize("options,error,match", [
    (dict(detector=colour_detector), ValueError, "not both"),
    (dict(top_m=2), ValueError, "'top_m' is for detections"),
    (dict(linker=IoULinker()), ValueError, "'linker' is for detections"),
    (dict(kind="regions", mode="dense"), ValueError, "mode"),
])
def test_bad_ground_truth_inputs(video_file, options, error, match):
    path, truth = video_file
    with pytest.raises(error, match=match):
        build_graph(path, boxes=square_tracks(truth), progress=False, **options)


def test_ground_truth_without_a_box_in_the_sampled_frames(video_file):
    path, truth = video_file
    empty = Tracks(torch.tensor([1, 2]), torch.zeros(0, 4), torch.zeros(0, dtype=torch.long),
                   torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="the ground truth has no box in any sampled frame"):
        build_graph(path, boxes=empty, num_clips=1, clip_len=2, progress=False)
    with pytest.raises(ValueError, match="frame number 41, but the video has 40 frames"):
        build_graph(path, boxes=Tracks(torch.tensor([41]), truth[:1, 0], torch.tensor([0]), torch.tensor([0])),
                    progress=False)
