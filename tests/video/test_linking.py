import itertools

import pytest
import torch
from torchvision.ops import box_iou

from videograph.video import IoULinker, Linker, Tubes, top_regions


def frames_of(length, size=64):
    return torch.zeros(length, size, size, 3, dtype=torch.uint8)


def dets(boxes, scores=None):
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    scores = torch.linspace(0.9, 0.5, boxes.size(0)) if scores is None else torch.as_tensor(scores).float()
    return {"boxes": boxes, "scores": scores, "labels": torch.ones(boxes.size(0), dtype=torch.long)}


def random_boxes(n, generator, spread=6.0, side=(6.0, 10.0)):
    """Boxes clustered in a small area, so every pair overlaps."""
    centre = 30 + spread * torch.rand(n, 2, generator=generator)
    half = (side[0] + (side[1] - side[0]) * torch.rand(n, 2, generator=generator)) / 2
    return torch.cat([centre - half, centre + half], 1)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("num_tubes,num_dets", [(1, 3), (2, 2), (3, 2), (3, 4), (4, 4), (4, 5)])
def test_hungarian_matching_is_optimal_against_brute_force(seed, num_tubes, num_dets):
    g = torch.Generator().manual_seed(seed)
    seeds = random_boxes(num_tubes, g)
    candidates = random_boxes(num_dets, g)
    iou = box_iou(seeds, candidates)
    assert bool((iou > 0).all())
    tubes = IoULinker(iou_threshold=1e-6)(frames_of(2), [dets(seeds), dets(candidates)], top_m=num_tubes)
    assert bool(tubes.matched[:, 1].sum() == min(num_tubes, num_dets))
    # which detection each matched tube took
    taken = [(m, int((candidates == tubes.boxes[m, 1]).all(1).nonzero()[0])) for m in range(num_tubes)
             if tubes.matched[m, 1]]
    assert len({k for _, k in taken}) == len(taken)
    linker_total = sum(float(iou[m, k]) for m, k in taken)
    # brute force: every one-to-one assignment of min(M, K) pairs
    best = 0.0
    if num_tubes <= num_dets:
        for chosen in itertools.permutations(range(num_dets), num_tubes):
            best = max(best, sum(float(iou[m, k]) for m, k in enumerate(chosen)))
    else:
        for chosen in itertools.permutations(range(num_tubes), num_dets):
            best = max(best, sum(float(iou[m, k]) for k, m in enumerate(chosen)))
    assert linker_total == pytest.approx(best, abs=1e-5)


def test_seeds_are_the_top_m_detections_of_the_first_frame():
    g = torch.Generator().manual_seed(0)
    first = random_boxes(6, g, spread=40)
    scores = torch.rand(6, generator=g)
    tubes = IoULinker()(frames_of(3), [dets(first, scores), dets(first), dets(first)], top_m=4)
    order = torch.argsort(scores, descending=True)[:4]
    assert torch.equal(tubes.boxes[:, 0], first[order])
    assert bool(tubes.matched.all())


def _tracks(generator, num_objects=4, length=24, size=128):
    """Objects on parallel horizontal lanes (they never cross), moving with noisy speed."""
    lanes = torch.linspace(16, size - 16, num_objects)
    x0 = 12 + 20 * torch.rand(num_objects, generator=generator)
    speed = 0.5 + 1.5 * torch.rand(num_objects, generator=generator)
    steps = speed[:, None] * (1 + 0.2 * torch.randn(num_objects, length, generator=generator))
    steps[:, 0] = 0
    cx = x0[:, None] + steps.cumsum(1)
    cy = lanes[:, None].expand(num_objects, length)
    half = 5.0
    return torch.stack([cx - half, cy - half, cx + half, cy + half], -1)   # [O, T, 4]


@pytest.mark.parametrize("seed", range(12))
def test_no_identity_switch_with_jitter_misses_and_false_positives(seed):
    g = torch.Generator().manual_seed(seed)
    truth = _tracks(g)
    num_objects, length = truth.shape[:2]
    detections = []
    for t in range(length):
        keep = torch.ones(num_objects, dtype=torch.bool) if t == 0 else torch.rand(num_objects, generator=g) > 0.25
        boxes = truth[keep, t] + 0.4 * torch.randn(int(keep.sum()), 4, generator=g)
        corner = torch.rand(2, 2, generator=g) * 110
        false = torch.cat([corner, corner + 10], 1)
        scores = torch.cat([0.7 + 0.3 * torch.rand(boxes.size(0), generator=g), 0.1 + 0.4 * torch.rand(2, generator=g)])
        detections.append(dets(torch.cat([boxes, false]), scores))
    tubes = IoULinker()(frames_of(length, 128), detections, top_m=num_objects)
    assert tubes.boxes.shape == (num_objects, length, 4)
    # identity of each tube = object its seed lies on; it must stay the closest object in every frame
    identity = box_iou(tubes.boxes[:, 0], truth[:, 0]).argmax(1)
    assert sorted(identity.tolist()) == list(range(num_objects))
    on_own = torch.zeros(num_objects, length, dtype=torch.bool)
    for t in range(length):
        iou = box_iou(tubes.boxes[:, t], truth[:, t])
        best = iou.max(1)
        overlapping = best.values > 0
        assert torch.equal(best.indices[overlapping], identity[overlapping]), f"identity switch at frame {t}"
        on_own[:, t] = best.values > 0.3
    assert float(on_own.float().mean()) > 0.6
    assert float(tubes.matched.float().mean()) > 0.5


def test_constant_velocity_carries_a_missed_object_exactly():
    step = torch.tensor([2.0, 1.0, 2.0, 1.0])  # a translation
    truth = torch.tensor([10.0, 10.0, 20.0, 20.0]) + step * torch.arange(6.0)[:, None]
    detections = [dets(truth[t]) if t not in (3, 4) else dets(torch.zeros(0, 4)) for t in range(6)]
    tubes = IoULinker()(frames_of(6), detections, top_m=3)
    assert tubes.boxes.shape == (1, 6, 4)
    assert torch.allclose(tubes.boxes[0], truth)
    assert tubes.matched[0].tolist() == [True, True, True, False, False, True]
    still = IoULinker(use_velocity=False)(frames_of(6), detections, top_m=3)
    assert torch.equal(still.boxes[0, 3], truth[2]) and torch.equal(still.boxes[0, 4], truth[2])


def test_carried_boxes_stay_in_the_frame():
    truth = torch.tensor([40.0, 10.0, 50.0, 20.0]) + torch.tensor([8.0, 0, 8.0, 0]) * torch.arange(3.0)[:, None]
    detections = [dets(truth[0]), dets(truth[1])] + [dets(torch.zeros(0, 4))] * 4
    tubes = IoULinker()(frames_of(6), detections, top_m=1)
    assert float(tubes.boxes[..., 2].max()) <= 64 and bool((tubes.boxes[..., 2:] >= tubes.boxes[..., :2]).all())


def test_empty_first_frame_gives_no_tubes():
    tubes = IoULinker()(frames_of(3), [dets(torch.zeros(0, 4)), dets([[1, 1, 5, 5]]), dets([[1, 1, 5, 5]])], 4)
    assert tubes.boxes.shape == (0, 3, 4) and tubes.matched.shape == (0, 3) and tubes.scores.shape == (0,)


def test_same_label_keeps_tubes_on_their_class():
    box = [[10.0, 10.0, 20.0, 20.0]]
    first = {"boxes": torch.tensor(box), "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}
    other = {"boxes": torch.tensor(box), "scores": torch.tensor([0.9]), "labels": torch.tensor([2])}
    assert bool(IoULinker()(frames_of(2), [first, other], 1).matched[0, 1])
    assert not bool(IoULinker(same_label=True)(frames_of(2), [first, other], 1).matched[0, 1])


@pytest.mark.parametrize("call,error", [
    (lambda l: l(torch.zeros(2, 8, 8, 3), [dets([[0, 0, 1, 1]])] * 2, 1), ValueError),
    (lambda l: l(frames_of(2), [dets([[0, 0, 1, 1]])], 1), ValueError),
    (lambda l: l(frames_of(2), [dets([[0, 0, 1, 1]])] * 2, 0), ValueError),
    (lambda l: l(frames_of(2), [{"boxes": torch.zeros(1, 3), "scores": torch.zeros(1)}] * 2, 1), ValueError),
    (lambda l: l("frames", [dets([[0, 0, 1, 1]])] * 2, 1), TypeError),
])
def test_bad_inputs(call, error):
    with pytest.raises(error):
        call(IoULinker())


@pytest.mark.parametrize("threshold", [0.0, 1.5, "0.3"])
def test_bad_threshold(threshold):
    with pytest.raises(ValueError, match="iou_threshold"):
        IoULinker(iou_threshold=threshold)


def test_a_learned_linker_plugs_in_and_is_checked():
    class FirstFrameOnly(Linker):
        def forward(self, frames, detections, top_m):
            boxes = detections[0]["boxes"][:top_m]
            return Tubes(boxes[:, None].expand(-1, frames.size(0), 4), torch.ones(boxes.size(0), frames.size(0),
                                                                                  dtype=torch.bool),
                         detections[0]["scores"][:top_m])

    class Broken(Linker):
        def forward(self, frames, detections, top_m):
            return Tubes(torch.zeros(top_m + 1, 1, 4), torch.zeros(top_m + 1, 1, dtype=torch.bool),
                         torch.zeros(top_m + 1))

    d = [dets([[1, 1, 5, 5], [8, 8, 12, 12]])] * 3
    assert FirstFrameOnly()(frames_of(3), d, 1).boxes.shape == (1, 3, 4)
    with pytest.raises(RuntimeError, match="malformed"):
        Broken()(frames_of(3), d, 1)
    with pytest.raises(TypeError):
        Linker()


@pytest.mark.parametrize("top_r", [1, 2, 5])
def test_top_regions_against_a_sorting_loop(generator, top_r):
    detections = [dets(random_boxes(k, generator, spread=40), torch.rand(k, generator=generator)) for k in (3, 0, 6, 1)]
    boxes, frame, scores = top_regions(detections, top_r)
    expected = []
    for t, d in enumerate(detections):
        ranked = sorted(range(d["scores"].numel()), key=lambda i: -float(d["scores"][i]))[:top_r]
        expected += [(t, d["boxes"][i].tolist(), float(d["scores"][i])) for i in ranked]
    assert [(int(f), b.tolist(), float(s)) for f, b, s in zip(frame, boxes, scores)] == expected
