import os

import pytest
import torch
import torchvision

from videograph import EdgeType, build_graph
from videograph.datasets.formats import (parse_proposal_block, read_activitynet_json, read_proposal_list,
                                         read_something_else, read_thumos14_annotations)
from videograph.graph import segment_iou


def test_thumos14_ground_truth_as_proposal_graphs(shared_data):
    gt = read_activitynet_json(os.path.join(shared_data, "thumos14", "gtad", "thumos_gt.json"), subset="test")
    # SOURCES.md: thumos_gt.json has 210 test videos with 3311 instances.
    assert len(gt) == 210 and sum(len(v.labels) for v in gt.values()) == 3311
    classes = sorted({label for v in gt.values() for label in v.labels})
    assert len(classes) == 20
    video = gt["video_test_0000004"]
    graph = build_graph(video.proposals(classes))
    iou = segment_iou(video.segments, video.segments)
    expected = int(((iou > 0.7) & ~torch.eye(len(video.labels), dtype=torch.bool)).sum())
    assert graph.contextual_edge_index.size(1) == expected
    assert graph.y.min() >= 1 and graph.num_nodes == len(video.labels)
    batch = build_graph([v.proposals(classes) for v in list(gt.values())[:8]])
    assert batch.num_graphs == 8


def test_thumos14_txt_files_agree_with_their_counts(shared_data):
    folder = os.path.join(shared_data, "thumos14", "ssn_temporal_annotations", "temporal_annotations_test")
    gt = read_thumos14_annotations(folder)
    # SOURCES.md: without Ambiguous, test has 3358 instances in 212 videos.
    assert len(gt) == 212 and sum(len(v.labels) for v in gt.values()) == 3358
    with_ambiguous = read_thumos14_annotations(folder, include_ambiguous=True)
    assert sum(len(v.labels) for v in with_ambiguous.values()) > 3358
    with pytest.raises(ValueError, match="'directory'"):
        read_thumos14_annotations(folder, split="nosuchsplit")


def test_ssn_proposal_lists(shared_data):
    entries = read_proposal_list(os.path.join(shared_data, "pgcn", "mmaction2_ssn_format_examples",
                                              "proposal_test_list.txt"))
    assert len(entries) == 1 and entries[0].num_frames == 5
    assert entries[0].gt_segments.tolist() == [[1, 2], [3, 5]]
    # The file's best_iou column is the tIoU with the best ground truth: recompute it.
    best = segment_iou(entries[0].segments, entries[0].gt_segments).max(1).values
    torch.testing.assert_close(best, entries[0].best_iou, atol=1e-4, rtol=0)
    graph = build_graph(entries[0].proposals())
    assert graph.num_nodes == 10

    anet = read_proposal_list(os.path.join(shared_data, "pgcn", "ssn_activitynet1.2_tag_val_normalized_proposal_list.txt"))
    assert len(anet) == 2383 and anet[0].video == "nEOpfvJ7g_g" and anet[0].segments.shape == (15, 2)
    graph = build_graph(anet[0].proposals(), max_contextual=8, max_surrounding=2)
    assert set(graph.edge_type.tolist()) <= {EdgeType.CONTEXTUAL, EdgeType.SURROUNDING}


@pytest.mark.parametrize("extra", ["", " 7 x"])
def test_proposal_blocks_parse_like_floats(shared_data, extra):
    """The vectorised parse equals Python's float() on every field (extra trailing fields are ignored)."""
    lines = open(os.path.join(shared_data, "pgcn", "ssn_activitynet1.2_tag_val_normalized_proposal_list.txt")
                 ).read().split("\n")[:6000]
    for block in _blocks(lines)[:20]:
        num_gt = int(block[3])
        gt, count = block[4:4 + num_gt], int(block[4 + num_gt])
        rows = [line + extra for line in block[5 + num_gt:5 + num_gt + count]]
        entry = parse_proposal_block(block[:5 + num_gt] + rows, "list")
        table = torch.tensor([[float(v) for v in row.split()[:5]] for row in rows], dtype=torch.float64)
        assert torch.equal(entry.labels, table[:, 0].long()) and torch.equal(entry.best_iou, table[:, 1])
        assert torch.equal(entry.overlap_self, table[:, 2]) and torch.equal(entry.segments, table[:, 3:])
        assert torch.equal(entry.gt_segments, torch.tensor([[float(v) for v in row.split()[1:3]] for row in gt],
                                                           dtype=torch.float64).reshape(-1, 2))
    with pytest.raises(ValueError, match="malformed block for video \\['v'\\]"):
        parse_proposal_block(["v", "10", "1", "0", "1", "1 0.5 0.5 0.1"], "list")        # a missing field
    with pytest.raises(ValueError, match="malformed block"):
        parse_proposal_block(["v", "10", "1", "0", "1", "1 0.5 0.5 0.1 end"], "list")    # not a number


def _blocks(lines):
    blocks, current = [], None
    for line in (line.strip() for line in lines):
        if line.startswith("#"):
            current = []
            blocks.append(current)
        elif line and current is not None:
            current.append(line)
    return blocks


def test_something_else_boxes_as_regions_and_tubelets(shared_data):
    root = os.path.join(shared_data, "ssv2", "something_else")
    videos = read_something_else(os.path.join(root, "annotations.json"))
    assert len(videos) == 13
    video = videos["77005"]
    image = torchvision.io.read_image(os.path.join(root, "annotated_videos", "77005", "0001.jpg"))
    frame_size = tuple(image.shape[1:])
    regions = build_graph(video.regions(frame_size))
    assert regions.num_nodes == video.boxes.size(0)
    assert regions.front_edge_index.size(1) > 0
    tubelets = build_graph(video.tubelets(frame_size, num_clips=4, frames_per_clip=4))
    assert tubelets.boxes.shape[1:] == (4, 4)
    assert tubelets.num_nodes <= 4 * len(video.names)
    # Each tubelet's boxes are boxes the file gives for one object in consecutive annotated frames.
    annotated = {tuple(box) for box in video.boxes.tolist()}
    assert all(tuple(box) in annotated for box in tubelets.boxes.reshape(-1, 4).tolist())
    with pytest.raises(ValueError, match="'video_ids'"):
        read_something_else(os.path.join(root, "annotations.json"), ["no-such-video"])
