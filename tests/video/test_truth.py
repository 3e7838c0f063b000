"""Ground-truth box sources: ground_truth / truth_tubes / truth_regions against brute-force loops."""
from dataclasses import dataclass

import pytest
import torch

from videograph.video import ground_truth, truth_regions, truth_tubes

H, W = 48, 64


@dataclass
class Source:
    """A box source with SomethingElseVideo's fields."""
    frames: torch.Tensor
    boxes: torch.Tensor
    frame: torch.Tensor
    identity: torch.Tensor


def random_source(seed, num_frames=12, num_tracks=4, keep=0.6):
    g = torch.Generator().manual_seed(seed)
    frames = torch.sort(torch.randperm(3 * num_frames, generator=g)[:num_frames] + 1).values
    present = torch.rand(num_frames, num_tracks, generator=g) < keep
    frame, identity = present.nonzero(as_tuple=True)
    corner = torch.rand(frame.numel(), 2, generator=g) * torch.tensor([W - 10.0, H - 10.0])
    boxes = torch.cat([corner, corner + 1 + torch.rand(frame.numel(), 2, generator=g) * 9], 1)
    return Source(frames, boxes, frame, identity)


def brute_force(source, rows):
    """Per track present in the clip: boxes [T, 4] with the nearest (earlier on ties) annotated box."""
    lookup = {(int(f), int(k)): source.boxes[b] for b, (f, k) in enumerate(zip(source.frame, source.identity))}
    tubes = {}
    for k in sorted({int(k) for k in source.identity}):
        have = [t for t, r in enumerate(rows.tolist()) if (r, k) in lookup]
        if not have:
            continue
        boxes, matched = [], []
        for t, r in enumerate(rows.tolist()):
            s = min(have, key=lambda s: (abs(s - t), s))
            boxes.append(lookup[(rows[s].item(), k)])
            matched.append((r, k) in lookup)
        tubes[k] = (torch.stack(boxes), torch.tensor(matched))
    return tubes


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("rows", [[0, 1, 2, 3, 4], [3, 3, 7, 8, 11], [5]])
def test_tubes_and_regions_match_brute_force(seed, rows):
    source = random_source(seed)
    truth = ground_truth(source, 40, (H, W))
    assert torch.equal(truth.positions, source.frames - 1)
    rows = torch.tensor(rows)
    tubes, tracks = truth_tubes(truth, rows)
    expected = brute_force(source, rows)
    assert tracks.tolist() == sorted(expected)
    for m, k in enumerate(tracks.tolist()):
        assert torch.equal(tubes.boxes[m], expected[k][0])
        assert torch.equal(tubes.matched[m], expected[k][1])
    assert torch.equal(tubes.scores, torch.ones(len(expected)))
    boxes, where, track = truth_regions(truth, rows)
    listed = [(t, int(k), source.boxes[b]) for t, r in enumerate(rows.tolist())
              for b, (f, k) in enumerate(zip(source.frame, source.identity)) if int(f) == r]
    listed.sort(key=lambda item: (item[0], item[1]))
    assert where.tolist() == [t for t, _, _ in listed] and track.tolist() == [k for _, k, _ in listed]
    assert torch.equal(boxes, torch.stack([b for _, _, b in listed]).reshape(-1, 4))


def test_boxes_are_clamped_into_the_frame():
    source = Source(torch.tensor([1, 2]), torch.tensor([[-3.0, 5.0, 70.0, 47.0], [10.0, -0.5, 20.0, 48.25]]),
                    torch.tensor([0, 1]), torch.tensor([0, 0]))
    truth = ground_truth(source, 2, (H, W))
    assert truth.boxes.tolist() == [[0.0, 5.0, 64.0, 47.0], [10.0, 0.0, 20.0, 48.0]]


def test_start_index_maps_frame_numbers():
    source = random_source(0, num_frames=5)
    assert torch.equal(ground_truth(source, 40, (H, W), start_index=0).positions, source.frames)


def bad(**change):
    source = Source(torch.tensor([1, 2, 3]), torch.tensor([[1.0, 1.0, 5.0, 5.0]] * 3), torch.tensor([0, 1, 2]),
                    torch.tensor([0, 0, 0]))
    for key, value in change.items():
        setattr(source, key, value)
    return source


@pytest.mark.parametrize("source, num_frames, match", [
    (bad(), 2, "frame number 3, but the video has 2 frames"),
    (bad(frames=torch.tensor([1, 3, 3])), 5, "strictly increasing"),
    (bad(boxes=torch.tensor([[1.0, 1.0, 5.0, 5.0], [6.0, 1.0, 5.0, 5.0], [1.0, 1.0, 5.0, 5.0]])), 5,
     "frame number 2 has an inverted box"),
    (bad(boxes=torch.tensor([[1.0, 1.0, 5.0, 5.0]] * 2 + [[70.0, 1.0, 80.0, 5.0]])), 5, "wholly outside"),
    (bad(boxes=torch.tensor([[1.0, 1.0, 5.0, float("nan")]] * 3)), 5, "NaN"),
    (bad(frame=torch.tensor([0, 0, 2])), 5, "two boxes in one frame"),
    (bad(frame=torch.tensor([0, 1, 3])), 5, "must index 'frames'"),
    (bad(identity=torch.tensor([0, 0])), 5, r"identity \[B\]"),
    (bad(frames=torch.zeros(0, dtype=torch.long)), 5, "at least one frame"),
])
def test_bad_sources(source, num_frames, match):
    with pytest.raises(ValueError, match=match):
        ground_truth(source, num_frames, (H, W), what="'clip'")


def test_not_a_source():
    with pytest.raises(TypeError, match="no tensor 'frames'"):
        ground_truth({"boxes": torch.zeros(0, 4)}, 5, (H, W))
