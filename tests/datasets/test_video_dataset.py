import csv
import json
import os

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
