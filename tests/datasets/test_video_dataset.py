import csv
import json
import os

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from videograph.datasets import (VideoDataset, VideoEntry, read_charades_csv, read_kinetics_csv, read_label_map,
                                 read_ssv2_split)
from videograph.io import write_video


def test_kinetics_400_lists(shared_data):
    val, classes = read_kinetics_csv(os.path.join(shared_data, "activitynet", "kinetics-400_val.csv"), "/videos")
    label_map = read_label_map(os.path.join(shared_data, "labelmaps_mmaction2", "kinetics_label_map_k400.txt"))
    assert len(classes) == 400 and sorted(classes) == sorted(label_map)       # the 400 classes of the label map
    with open(os.path.join(shared_data, "activitynet", "kinetics-400_val.csv")) as handle:
        rows = list(csv.reader(handle))[1:]
    assert len(val) == len(rows)
    first = rows[0]
    assert val[0].path == f"/videos/{first[1]}_{int(first[2]):06d}_{int(first[3]):06d}.mp4"
    assert classes[val[0].label] == first[0]
    by_map, _ = read_kinetics_csv(os.path.join(shared_data, "activitynet", "kinetics-400_val.csv"), classes=label_map)
    assert all(label_map[e.label] == r[0] for e, r in zip(by_map, rows))
    test, _ = read_kinetics_csv(os.path.join(shared_data, "activitynet", "kinetics-400_test.csv"))
    assert all(e.label is None for e in test) and len(test) > 0


def test_charades_counts_match_sources(shared_data):
    # SOURCES.md: train 7985 videos and 49809 action instances; the test subset 199 videos and 152 classes
    train = read_charades_csv(os.path.join(shared_data, "charades", "Charades_v1_train.csv"), "/c")
    assert len(train) == 7985 and sum(len(e.info["actions"]) for e in train) == 49809
    test = read_charades_csv(os.path.join(shared_data, "charades", "Charades_v1_test_200subset.csv"))
    assert len(test) == 199 and len({c for e in test for c in e.label}) == 152
    first = train[0]
    assert first.path == "/c/46GP8.mp4" and first.label == [92, 147]
    assert first.info["actions"][0] == (92, 11.90, 21.20) and first.info["length"] == pytest.approx(24.83)


def test_ssv2_split_with_the_official_label_map(shared_data):
    label_map = os.path.join(shared_data, "ssv2", "mmaction2", "sthv2_label_map.txt")
    classes = read_label_map(label_map)
    assert len(classes) == 174 and classes == sorted(classes)                 # SOURCES.md: 174, alphabetical
    split = os.path.join(shared_data, "ssv2", "something_else", "dataset_splits", "compositional_oneobject",
                         "train.json")
    entries = read_ssv2_split(split, label_map, "/ssv2")
    with open(split) as handle:
        assert len(entries) == len(json.load(handle))
    video = next(e for e in entries if e.video_id == "57082")                  # SOURCES.md names its label
    assert classes[video.label] == "Dropping something into something"
    assert video.path == "/ssv2/57082.webm"


def test_bad_lists(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="Kinetics"):
        read_kinetics_csv(str(bad))
    with pytest.raises(ValueError, match="Charades"):
        read_charades_csv(str(bad))
    charades = tmp_path / "c.csv"
    charades.write_text("id,actions,length\nX,c999 1 2,3\n")
    with pytest.raises(ValueError, match="c999"):
        read_charades_csv(str(charades))


def _detector(frames):
    """Stub: the box of the bright pixels of each frame."""
    out = []
    for frame in frames:
        ys, xs = (frame.int().sum(-1) > 400).nonzero(as_tuple=True)
        boxes = torch.tensor([[float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]]) \
            if ys.numel() else torch.zeros(0, 4)
        out.append({"boxes": boxes, "scores": torch.ones(boxes.size(0)), "labels": torch.ones(boxes.size(0),
                                                                                               dtype=torch.long)})
    return out


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    entries = []
    for v in range(3):
        frames = torch.full((24, 32, 32, 3), 40, dtype=torch.uint8)
        for t in range(24):
            x = 2 + (t + 3 * v) % 20
            frames[t, 10:20, x:x + 8] = 250
        path = folder / f"v{v}.mp4"
        write_video(path, frames, fps=8)
        entries.append((str(path), v))
    return entries


def test_items_are_seeded_and_safe_in_workers(videos):
    dataset = VideoDataset(videos, detector=_detector, num_clips=2, clip_len=4, seed=1)
    sequential = [dataset[i] for i in range(len(dataset))]
    assert [int(g.y) for g in sequential] == [0, 1, 2]
    again = dataset[1]
    assert torch.equal(again.frame_index, sequential[1].frame_index) and torch.equal(again.boxes, sequential[1].boxes)
    loader = DataLoader(dataset, batch_size=None, num_workers=2, shuffle=False)
    for graph, expected in zip(loader, sequential):
        assert torch.equal(graph.frame_index, expected.frame_index)
        assert torch.allclose(graph.x, expected.x)
    starts = {tuple(dataset[0].frame_index[:, 0].tolist())}
    for epoch in range(1, 6):
        dataset.set_epoch(epoch)
        starts.add(tuple(dataset[0].frame_index[:, 0].tolist()))
    assert len(starts) > 1                                  # segment sampling draws new clips per epoch


def test_multi_label_entries(videos):
    entries = [VideoEntry(videos[0][0], [1, 3], "v0")]
    graph = VideoDataset(entries, detector=_detector, num_classes=5, num_clips=1, clip_len=4)[0]
    assert graph.y.tolist() == [[0.0, 1.0, 0.0, 1.0, 0.0]]
    with pytest.raises(ValueError, match="num_classes"):
        VideoDataset(entries, detector=_detector, num_clips=1, clip_len=4)[0]


def test_bad_dataset_arguments(videos):
    with pytest.raises(TypeError, match="detector"):
        VideoDataset(videos, detector=None)
    with pytest.raises(ValueError, match="empty"):
        VideoDataset([], detector=_detector)
    with pytest.raises(TypeError, match="generator"):
        VideoDataset(videos, detector=_detector, generator=torch.Generator())
    with pytest.raises(IndexError):
        VideoDataset(videos, detector=_detector)[3]
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        VideoDataset([("missing.mp4", 0)], detector=_detector)[0]


# ---------------------------------------------------------------- Something-Else: ground-truth boxes, no detector
SOMETHING_ELSE = ("ssv2", "something_else")
LABEL_MAP = ("ssv2", "mmaction2", "sthv2_label_map.txt")


def something_else(shared_data, *parts):
    return os.path.join(shared_data, *SOMETHING_ELSE, *parts)


def oracle_boxes(shared_data):
    """annotations.json parsed here: {video: {frame number: {gt_annotation: clamped xyxy box}}}."""
    from PIL import Image

    with open(something_else(shared_data, "annotations.json")) as handle:
        database = json.load(handle)
    result = {}
    for video, frames in database.items():
        with Image.open(something_else(shared_data, "annotated_videos", video, "0001.jpg")) as image:
            width, height = image.size
        result[video] = {}
        for entry in frames:
            number = int(entry["name"].split("/")[1].split(".")[0])
            result[video][number] = {
                label["gt_annotation"]: [min(max(label["box2d"][k], 0.0), limit) for k, limit in
                                         (("x1", width), ("y1", height), ("x2", width), ("y2", height))]
                for label in entry["labels"]}
    return result


@pytest.fixture
def annotated(shared_data):
    """Entries of the 13 annotated videos (frame folders), their box sources and the oracle."""
    from videograph.datasets import read_something_else

    boxes = read_something_else(something_else(shared_data, "annotations.json"))
    root = something_else(shared_data, "annotated_videos")
    entries = [VideoEntry(os.path.join(root, video), i, video) for i, video in enumerate(sorted(boxes))]
    return entries, boxes, oracle_boxes(shared_data)


def assert_regions_match(graph, truth, names):
    """Every box of every sampled frame is one node, with the annotation's box."""
    numbers = (graph.frame_index.flatten() + 1).tolist()              # the folders count frames from 0001.jpg
    expected = [(p, name, box) for p, n in enumerate(numbers) for name, box in sorted(truth[n].items())]
    assert graph.num_nodes == len(expected) == graph.boxes.size(0)
    got = sorted(zip(graph.frame.tolist(), [names[k] for k in graph.track.tolist()], graph.boxes.tolist()))
    assert [(p, n) for p, n, _ in got] == [(p, n) for p, n, _ in expected]
    assert torch.allclose(torch.tensor([b for _, _, b in got]), torch.tensor([b for _, _, b in expected]))


def assert_tubelets_match(graph, truth, names):
    """One node per track of each clip; matched boxes are the annotation's, the others its nearest box."""
    clip_len = graph.frame_index.size(1)
    expected = 0
    for c, clip in enumerate(graph.frame_index.tolist()):
        numbers = [f + 1 for f in clip]
        tracks = sorted({name for n in numbers for name in truth[n]})
        nodes = (graph.clip == c).nonzero().flatten().tolist()
        assert sorted(names[graph.track[i]] for i in nodes) == tracks
        expected += len(tracks)
        for i in nodes:
            name = names[graph.track[i]]
            have = [t for t in range(clip_len) if name in truth[numbers[t]]]
            assert graph.matched[i].tolist() == [name in truth[n] for n in numbers]
            for t in range(clip_len):
                s = min(have, key=lambda s: (abs(s - t), s))
                assert torch.allclose(graph.boxes[i, t], torch.tensor(truth[numbers[s]][name]))
    assert graph.num_nodes == expected


@pytest.mark.parametrize("kind", ["tubelets", "regions"])
def test_something_else_graphs_are_the_annotations(annotated, kind):
    entries, boxes, oracle = annotated
    dataset = VideoDataset(entries, boxes=boxes, kind=kind, num_clips=2, clip_len=3, seed=3)
    assert len(dataset) == 13
    for i in (0, 5, 7, 9, 12):                               # 13201, 3201 (one track), 4 (four), 57082, 862
        graph = dataset[i]
        video = entries[i].video_id
        assert int(graph.y) == i and graph.x.shape == (graph.num_nodes, 32)
        check = assert_tubelets_match if kind == "tubelets" else assert_regions_match
        check(graph, oracle[video], boxes[video].names)


def test_clamped_boxes_of_video_2(annotated):
    # video 2 has boxes a rounding error past the 427x240 frame (x2 = 427.00000000000006, y2 = 240.00000000000003);
    # they land on the border (clamping of boxes well outside is tested in tests/video/test_truth.py)
    entries, boxes, oracle = annotated
    graph = VideoDataset([e for e in entries if e.video_id == "2"], boxes=boxes, kind="regions", num_clips=1,
                         clip_len=48, mode="uniform")[0]
    assert graph.frame_index.tolist() == [list(range(48))]
    assert float(graph.boxes[:, 2].max()) == 427.0 and float(graph.boxes[:, 3].max()) == 240.0
    assert_regions_match(graph, oracle["2"], boxes["2"].names)


def test_node_features_pool_the_frames(annotated):
    # x = RoIFeatures of the default backbone on the frames, decoded here by PIL
    from PIL import Image

    from videograph.video import default_features

    entries, boxes, _ = annotated
    entry = next(e for e in entries if e.video_id == "57082")
    graph = VideoDataset([entry], boxes=boxes, kind="regions", num_clips=1, clip_len=2)[0]
    frames = torch.stack([torch.from_numpy(np.array(Image.open(os.path.join(entry.path, f"{f + 1:04d}.jpg"))))
                          for f in graph.frame_index[0].tolist()])
    expected = default_features()(frames, graph.boxes, graph.frame)
    assert torch.allclose(graph.x, expected, atol=1e-5)


def test_something_else_labels_from_the_label_map(shared_data, annotated):
    _, boxes, oracle = annotated
    split = something_else(shared_data, "dataset_splits", "fewshot", "base_validation_set.json")
    label_map = os.path.join(shared_data, *LABEL_MAP)
    entries = read_ssv2_split(split, label_map, something_else(shared_data, "annotated_videos"), ext="")
    with pytest.raises(ValueError, match="no boxes for 12465 of the 12467 videos"):
        VideoDataset(entries, boxes=boxes)
    with pytest.warns(UserWarning, match="12465 of the 12467 videos have no 'boxes'"):
        dataset = VideoDataset(entries, boxes=boxes, missing_boxes="skip", kind="regions", num_clips=1,
                               clip_len=2)
    assert len(dataset.skipped) == 12465 and len(dataset) == 2              # SOURCES.md: 80962 and 2
    with open(split) as handle:
        templates = {str(item["id"]): item["template"] for item in json.load(handle)}
    with open(label_map) as handle:
        classes = [line.strip() for line in handle if line.strip()]
    for i, entry in enumerate(dataset.entries):
        assert entry.video_id in ("80962", "2")
        graph = dataset[i]
        assert classes[int(graph.y)] == templates[entry.video_id].replace("[", "").replace("]", "")
        assert_regions_match(graph, oracle[entry.video_id], boxes[entry.video_id].names)


def test_something_else_seeded_and_safe_in_workers(annotated):
    entries, boxes, _ = annotated
    entries = entries[:4]
    dataset = VideoDataset(entries, boxes=boxes, num_clips=2, clip_len=2, seed=5)
    sequential = [dataset[i] for i in range(len(dataset))]
    again = VideoDataset(entries, boxes=boxes, num_clips=2, clip_len=2, seed=5)[2]
    assert torch.equal(again.frame_index, sequential[2].frame_index) and torch.equal(again.x, sequential[2].x)
    other = [VideoDataset(entries, boxes=boxes, num_clips=2, clip_len=2, seed=s)[2].frame_index for s in range(6)]
    assert len({tuple(f.flatten().tolist()) for f in other}) > 1            # the seed draws the clips
    loader = DataLoader(dataset, batch_size=None, num_workers=2, shuffle=False)
    for graph, expected in zip(loader, sequential):
        assert torch.equal(graph.frame_index, expected.frame_index) and torch.equal(graph.track, expected.track)
        assert torch.equal(graph.boxes, expected.boxes) and torch.allclose(graph.x, expected.x)


def test_frames_from_a_video_file(annotated, tmp_path):
    # the same boxes on an mp4 of the folder's frames: annotated frame n is the video's frame n - 1
    from videograph.io import FrameFolder

    entries, boxes, oracle = annotated
    entry = next(e for e in entries if e.video_id == "13201")                # 320x240: even sides for H.264
    path = tmp_path / "13201.mp4"
    with FrameFolder(entry.path) as frames:
        write_video(path, frames[:], fps=12)
    graph = VideoDataset([(str(path), 0)], boxes={str(path): boxes["13201"]}, num_clips=2, clip_len=4)[0]
    assert_tubelets_match(graph, oracle["13201"], boxes["13201"].names)


def test_frame_count_mismatch(annotated, tmp_path):
    import shutil
    from dataclasses import replace

    entries, boxes, _ = annotated
    entry = next(e for e in entries if e.video_id == "57082")                # 38 frames
    short = tmp_path / "57082"
    short.mkdir()
    for n in range(1, 21):
        shutil.copy(os.path.join(entry.path, f"{n:04d}.jpg"), short / f"{n:04d}.jpg")
    with pytest.raises(ValueError, match="frame number 21, but the video has 20 frames numbered from 1"):
        VideoDataset([VideoEntry(str(short), 0, "57082")], boxes=boxes)[0]
    # frames without annotation are never sampled: keep the boxes of frames 0010-0019 only
    source = boxes["57082"]
    keep = (source.frame >= 9) & (source.frame < 19)
    partial = replace(source, frames=source.frames[9:19], boxes=source.boxes[keep], frame=source.frame[keep] - 9,
                      identity=source.identity[keep])
    dataset = VideoDataset([VideoEntry(entry.path, 0, "57082")], boxes={"57082": partial}, num_clips=4,
                           clip_len=3, mode="random")
    used = []
    for epoch in range(4):
        dataset.set_epoch(epoch)
        used.append(dataset[0].frame_index.flatten())
    used = torch.cat(used)
    assert int(used.min()) >= 9 and int(used.max()) <= 18


def test_bad_ground_truth_arguments(annotated):
    entries, boxes, _ = annotated
    with pytest.raises(ValueError, match="not both"):
        VideoDataset(entries, boxes=boxes, detector=_detector)
    with pytest.raises(TypeError, match="map video ids"):
        VideoDataset(entries, boxes=list(boxes.values()))
    with pytest.raises(ValueError, match="'top_m' is for detections"):
        VideoDataset(entries, boxes=boxes, top_m=3)
    with pytest.raises(ValueError, match="'linker' is for detections"):
        VideoDataset(entries, boxes=boxes, linker=object())
    with pytest.raises(ValueError, match="missing_boxes"):
        VideoDataset(entries, boxes=boxes, missing_boxes="ignore")
    with pytest.raises(ValueError, match=r"no boxes for 1 of the 1 videos \(ids \['/x/57082'\]\)"):
        VideoDataset([("/x/57082", 0)], boxes=boxes)
