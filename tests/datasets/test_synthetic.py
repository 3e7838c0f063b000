import math

import numpy as np
import pytest
import torch
from scipy import stats

from videograph.data import Regions, Tubelets
from videograph.datasets import ACTORS_PER_CLASS, CLASSES, SyntheticInteractions, SyntheticVideo


@pytest.fixture(scope="module")
def clean():
    """Two videos of every class without pixel noise (exact colours)."""
    return SyntheticInteractions(2 * len(CLASSES), noise=0.0, seed=3)


@pytest.fixture(scope="module")
def noisy():
    return SyntheticInteractions(len(CLASSES), seed=4)


def colour_mask(video: SyntheticVideo, obj: int, tolerance: int) -> torch.Tensor:
    """``[T, H, W]`` pixels whose colour is within ``tolerance`` (every channel) of object ``obj``'s colour."""
    diff = (video.frames.to(torch.int16) - video.colours[obj].to(torch.int16)).abs()
    return (diff <= tolerance).all(dim=-1)


def box_centres(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[..., :2] + boxes[..., 2:]) / 2


def pixel_centroids(mask: torch.Tensor) -> torch.Tensor:
    """``[T, 2]`` (x, y) centroid of the pixel centres of a ``[T, H, W]`` mask."""
    ys, xs = torch.meshgrid(torch.arange(mask.size(1)) + 0.5, torch.arange(mask.size(2)) + 0.5, indexing="ij")
    count = mask.sum(dim=(1, 2)).clamp(min=1)
    return torch.stack([(mask * xs).sum(dim=(1, 2)) / count, (mask * ys).sum(dim=(1, 2)) / count], dim=-1)


# --------------------------------------------------------------------------------------------- trimmed videos

@pytest.mark.parametrize("num_frames,frame_size,num_objects", [(16, (64, 64), (3, 5)), (8, (40, 56), 4)])
def test_shapes_and_dtypes(num_frames, frame_size, num_objects):
    dataset = SyntheticInteractions(3, num_frames=num_frames, frame_size=frame_size, num_objects=num_objects)
    for video in dataset:
        assert video.frames.dtype == torch.uint8
        assert video.frames.shape == (num_frames, *frame_size, 3)
        count = video.num_objects
        low, high = (num_objects, num_objects) if isinstance(num_objects, int) else num_objects
        assert low <= count <= high
        assert video.boxes.shape == (count, num_frames, 4) and video.boxes.dtype == torch.float32
        assert video.roles.shape == video.shapes.shape == (count,)
        assert video.colours.shape == (count, 3)
        assert len({tuple(c) for c in video.colours.tolist()}) == count          # distinct colours
        assert video.class_name == dataset.classes[video.label]


@pytest.mark.parametrize("fixture,tolerance", [("clean", 0), ("noisy", 30)])
def test_object_pixels_lie_inside_its_box(request, fixture, tolerance):
    dataset = request.getfixturevalue(fixture)
    for video in dataset:
        T, H, W, _ = video.frames.shape
        boxes = video.boxes
        assert bool((boxes[..., 0] >= 0).all() and (boxes[..., 1] >= 0).all())
        assert bool((boxes[..., 2] <= W).all() and (boxes[..., 3] <= H).all())
        assert bool((boxes[..., 2] > boxes[..., 0]).all() and (boxes[..., 3] > boxes[..., 1]).all())
        for obj in range(video.num_objects):
            mask = colour_mask(video, obj, tolerance)
            t, i, j = mask.nonzero(as_tuple=True)
            x, y = j + 0.5, i + 0.5
            box = boxes[obj, t]
            assert bool(((x >= box[:, 0]) & (x <= box[:, 2]) & (y >= box[:, 1]) & (y <= box[:, 3])).all()), \
                f"{video.class_name}: object {obj}'s colour appears outside its box"
            # Visible: some pixels of the object in most frames (others may briefly cover part of it).
            assert int((mask.sum(dim=(1, 2)) > 0).sum()) >= T // 2


def test_unoccluded_object_fills_its_shape(clean):
    """Pixel count of an object that overlaps no other box equals the area of its shape (to rasterisation)."""
    checked = 0
    for video in clean:
        boxes = video.boxes
        for obj in range(video.num_objects):
            mask = colour_mask(video, obj, 0)
            for t in range(video.num_frames):
                others = torch.cat([boxes[:obj, t], boxes[obj + 1:, t]])
                b = boxes[obj, t]
                overlap = ((torch.minimum(others[:, 2], b[2]) > torch.maximum(others[:, 0], b[0]))
                           & (torch.minimum(others[:, 3], b[3]) > torch.maximum(others[:, 1], b[1])))
                if bool(overlap.any()):
                    continue
                side = float(b[2] - b[0])
                area = {"square": side ** 2, "disc": math.pi * side ** 2 / 4, "triangle": side ** 2 / 2,
                        "diamond": side ** 2 / 2}[("square", "disc", "triangle", "diamond")[int(video.shapes[obj])]]
                pixels = int(mask[t].sum())
                assert abs(pixels - area) <= 2 * side + 2, (pixels, area)
                checked += 1
    assert checked > 100


def test_roles_match_class(clean):
    for video in clean:
        need = ACTORS_PER_CLASS[video.class_name]
        assert sorted(video.roles[video.actors].tolist()) == list(range(need))
        assert int((~video.actors).sum()) == video.num_objects - need
        assert bool((video.roles[~video.actors] == -1).all())


def actor_distances(video: SyntheticVideo, a: int, b: int, from_pixels: bool) -> torch.Tensor:
    ia, ib = (int((video.roles == r).nonzero()) for r in (a, b))
    if from_pixels:
        ca, cb = pixel_centroids(colour_mask(video, ia, 0)), pixel_centroids(colour_mask(video, ib, 0))
    else:
        ca, cb = box_centres(video.boxes[ia]), box_centres(video.boxes[ib])
    return (ca - cb).norm(dim=-1)


@pytest.fixture(scope="module")
def relational():
    return SyntheticInteractions(120, classes=("move_closer", "move_apart"), noise=0.0, seed=5)


@pytest.mark.parametrize("from_pixels", [False, True])
def test_closer_and_apart_change_the_actor_distance(relational, from_pixels):
    L = 64
    for video in relational:
        distance = actor_distances(video, 0, 1, from_pixels)
        change = float(distance[-1] - distance[0])
        if video.class_name == "move_closer":
            assert change < -0.15 * L
        else:
            assert change > 0.15 * L


def object_statistics(dataset, role):
    """Per-object summaries of the object with ``role`` in each video, by class."""
    out = {}
    for video in dataset:
        i = int((video.roles == role).nonzero())
        c = box_centres(video.boxes[i])
        start, stop = c[0], c[-1]
        frame_centre = torch.tensor([32.0, 32.0])
        inward = float(torch.dot(stop - start, frame_centre - start) / (frame_centre - start).norm())
        speed = float((c[1:] - c[:-1]).norm(dim=-1).mean())
        size = float(video.boxes[i, 0, 2] - video.boxes[i, 0, 0])
        summary = dict(start_x=float(start[0]), start_y=float(start[1]), stop_x=float(stop[0]),
                       mean_x=float(c[:, 0].mean()), inward=inward, speed=speed, size=size)
        for key, value in summary.items():
            out.setdefault((video.class_name, key), []).append(value)
    return out


@pytest.mark.parametrize("role", [0, 1])
def test_closer_and_apart_have_the_same_per_object_statistics(relational, role):
    """Each actor on its own (position, speed, whether it heads to the frame centre, size) follows the same law in
    both classes: only the relation between the two tells them apart."""
    summaries = object_statistics(relational, role)
    for key in ("start_x", "start_y", "stop_x", "mean_x", "inward", "speed", "size"):
        closer, apart = summaries[("move_closer", key)], summaries[("move_apart", key)]
        assert stats.ks_2samp(closer, apart).pvalue > 1e-3, key


def test_actor_speeds_exceed_distractor_drift(relational):
    for video in relational:
        c = box_centres(video.boxes)
        travel = (c[:, -1] - c[:, 0]).norm(dim=-1)
        mover = int((video.roles == 0).nonzero())
        assert float(travel[mover]) > 0.2 * 64
        assert bool((travel[~video.actors] < 0.15 * 64).all())


def test_pass_between_goes_between_two_other_actors():
    dataset = SyntheticInteractions(12, classes=("pass_between", "pass_by"), seed=6, noise=0.0)
    for video in dataset:
        centres = {int(r): box_centres(video.boxes[int((video.roles == r).nonzero())])
                   for r in video.roles[video.actors]}
        a = centres[0]
        direction = a[-1] - a[0]
        sides = []
        for role in (1, 2):
            if role not in centres:
                continue
            # Side of A's straight path the partner sits on (2D cross product), and where A passes it.
            offset = centres[role][a.size(0) // 2] - a[0]
            sides.append(float(direction[0] * offset[1] - direction[1] * offset[0]))
            along = float(torch.dot(offset, direction) / direction.norm() ** 2)
            assert 0.2 < along < 0.8
        if video.class_name == "pass_between":
            assert len(sides) == 3 - 1 and sides[0] * sides[1] < 0
        else:
            assert len(sides) == 1


@pytest.fixture(scope="module")
def motions():
    return SyntheticInteractions(40, classes=("orbit", "follow", "hit", "swap", "jump"), seed=8)


def test_classes_do_what_their_names_say(motions):
    L = 64.0
    for video in motions:
        c = {int(r): box_centres(video.boxes[int((video.roles == r).nonzero())]) for r in video.roles[video.actors]}
        a = c[0]
        half = video.num_frames // 2
        travel = lambda p, t0, t1: float((p[t1] - p[t0]).norm())       # noqa: E731
        if video.class_name == "orbit":
            offset = a - c[1]
            angle = np.unwrap(torch.atan2(offset[:, 1], offset[:, 0]).numpy())
            assert abs(angle[-1] - angle[0]) > 1.2 * np.pi
        elif video.class_name == "follow":
            b = c[1]
            assert travel(a, 0, -1) > 0.3 * L and travel(b, 0, -1) > 0.3 * L
            heading = torch.nn.functional.cosine_similarity(a[-1] - a[0], b[-1] - b[0], dim=0)
            assert float(heading) > 0.8
            # A is behind B: nearer to where B was earlier than to where B is now.
            nearest = (a[-1][None] - b).norm(dim=-1).argmin()
            assert int(nearest) < video.num_frames - 1
        elif video.class_name == "hit":
            b = c[1]
            assert travel(a, 0, half - 1) > 0.2 * L and travel(a, half, -1) < 0.1 * L
            assert travel(b, 0, half - 1) < 0.1 * L and travel(b, half, -1) > 0.1 * L
        elif video.class_name == "swap":
            b = c[1]
            assert travel(a, 0, -1) > 0.25 * L
            assert float((a[-1] - b[0]).norm()) < 0.15 * L and float((b[-1] - a[0]).norm()) < 0.15 * L
        else:
            assert video.class_name == "jump"
            assert float(a[:, 1].min()) < float(a[0, 1]) - 0.15 * L
            assert abs(float(a[-1, 1] - a[0, 1])) < 0.1 * L


def test_labels_are_balanced():
    dataset = SyntheticInteractions(50, seed=7)
    counts = torch.bincount(dataset.labels, minlength=len(CLASSES))
    assert int(counts.max() - counts.min()) <= 1
    for prefix in (9, 18, 27):
        assert torch.equal(torch.bincount(dataset.labels[:prefix], minlength=9), torch.full((9,), prefix // 9))
    assert [dataset[i].label for i in range(9)] == dataset.labels[:9].tolist()


def test_same_seed_same_videos_in_any_order():
    first = SyntheticInteractions(6, seed=11)
    second = SyntheticInteractions(20, seed=11)
    for i in reversed(range(6)):
        a, b = first[i], second[i]
        assert torch.equal(a.frames, b.frames) and torch.equal(a.boxes, b.boxes)
        assert a.label == b.label and torch.equal(a.roles, b.roles)
    assert torch.equal(first[-1].frames, first[5].frames)


@pytest.mark.parametrize("other", [dict(seed=12), dict(seed=11, split="test")])
def test_other_seed_or_split_gives_other_videos(other):
    a = SyntheticInteractions(4, seed=11)
    b = SyntheticInteractions(4, **other)
    for i in range(4):
        assert a[i].boxes.shape != b[i].boxes.shape or not torch.equal(a[i].boxes, b[i].boxes)
        assert not torch.equal(a[i].frames, b[i].frames)


def test_splits_are_disjoint_streams():
    train, test = SyntheticInteractions.splits(3, 2, seed=1, num_frames=8)
    assert (len(train), len(test)) == (3, 2) and train.split == "train" and test.split == "test"
    assert train.num_frames == test.num_frames == 8
    assert not torch.equal(train[0].frames, test[0].frames)


def test_tubelets_split_tracks_into_clips(clean):
    video = clean[0]
    tubelets = video.tubelets(num_clips=4)
    O, T = video.num_objects, video.num_frames
    assert isinstance(tubelets, Tubelets)
    assert tubelets.boxes.shape == (4 * O, T // 4, 4) and tubelets.frame_size == video.frame_size
    assert tubelets.label == video.label
    for n in range(4 * O):
        clip, obj = divmod(n, O)
        assert int(tubelets.clip[n]) == clip
        assert torch.equal(tubelets.boxes[n], video.boxes[obj, clip * (T // 4):(clip + 1) * (T // 4)])
        # Mean RGB of the pixels whose centres lie in the boxes, by a loop over frames.
        total, count = torch.zeros(3), 0
        for t in range(clip * (T // 4), (clip + 1) * (T // 4)):
            x1, y1, x2, y2 = video.boxes[obj, t].tolist()
            frame_total, frame_count = torch.zeros(3), 0
            for i in range(video.frame_size[0]):
                for j in range(video.frame_size[1]):
                    if x1 <= j + 0.5 <= x2 and y1 <= i + 0.5 <= y2:
                        frame_total += video.frames[t, i, j].float()
                        frame_count += 1
            total += frame_total / frame_count / 255
            count += 1
        torch.testing.assert_close(tubelets.features[n], total / count)


def test_tubelet_features_tell_objects_apart(clean):
    """The cheap appearance descriptor is stable along an object's track and differs between objects."""
    for video in clean:
        features = video.tubelets(num_clips=2).features
        O = video.num_objects
        distance = torch.cdist(features[:O], features[O:])          # clip 0 against clip 1
        assert torch.equal(distance.argmin(dim=1), torch.arange(O))


def test_tubelets_reject_clips_that_do_not_divide(clean):
    with pytest.raises(ValueError, match="num_clips"):
        clean[0].tubelets(num_clips=3)


def test_jitter_is_seeded_and_keeps_boxes_valid(clean):
    video = clean[1]
    a = video.tubelets(jitter=0.2, generator=torch.Generator().manual_seed(0))
    b = video.tubelets(jitter=0.2, generator=torch.Generator().manual_seed(0))
    c = video.tubelets(jitter=0.2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.boxes, b.boxes) and not torch.equal(a.boxes, c.boxes)
    assert torch.equal(video.tubelets(jitter=0.2).boxes, video.tubelets(jitter=0.2).boxes)
    assert not torch.equal(a.boxes, video.tubelets().boxes)
    with pytest.raises(ValueError, match="jitter"):
        video.tubelets(jitter=-1.0)


@pytest.mark.parametrize("num_false", [0, 3])
def test_regions_hold_every_object_per_frame(clean, num_false):
    video = clean[2]
    regions = video.regions(num_false=num_false, generator=torch.Generator().manual_seed(0))
    O, T = video.num_objects, video.num_frames
    assert isinstance(regions, Regions)
    assert regions.boxes.shape == (T * (O + num_false), 4)
    assert torch.equal(regions.frame, torch.arange(T).repeat_interleave(O + num_false))
    per_frame = regions.boxes.view(T, O + num_false, 4)
    assert torch.equal(per_frame[:, :O], video.boxes.transpose(0, 1))
    scores = regions.scores.view(T, O + num_false)
    assert bool((scores[:, :O] >= 0.6).all() and (scores[:, O:] < 0.6).all())
    H, W = video.frame_size
    assert bool((per_frame[..., 2] <= W).all() and (per_frame[..., 3] <= H).all())
    assert regions.features.shape == (T * (O + num_false), 3)


def test_dataloader_batches_videos():
    loader = torch.utils.data.DataLoader(SyntheticInteractions(4, num_frames=8), batch_size=2, collate_fn=list)
    batches = list(loader)
    assert len(batches) == 2 and all(isinstance(v, SyntheticVideo) for batch in batches for v in batch)


@pytest.mark.parametrize("kwargs,name", [
    (dict(num_videos=0), "num_videos"),
    (dict(num_videos=4, num_objects=(2, 4)), "num_objects"),
    (dict(num_videos=4, num_objects=2, classes=("move_closer", "jump")), None),
    (dict(num_videos=4, num_objects=(3, 9)), "num_objects"),
    (dict(num_videos=4, frame_size=(24, 64)), "frame_size"),
    (dict(num_videos=4, num_frames=2), "num_frames"),
    (dict(num_videos=4, classes=("move_closer", "dance")), "classes"),
    (dict(num_videos=4, split="dev"), "split"),
    (dict(num_videos=4, noise=-0.1), "noise"),
    (dict(num_videos=4, object_size=(0.05, 0.3)), "object_size"),
    (dict(num_videos=4, seed=-1), "seed"),
])
def test_bad_arguments_name_the_argument(kwargs, name):
    if name is None:        # a valid combination: two objects suffice for these classes
        assert len(SyntheticInteractions(**kwargs)[0].roles) == 2
        return
    with pytest.raises(ValueError, match=name):
        SyntheticInteractions(**kwargs)


def test_index_errors():
    dataset = SyntheticInteractions(2)
    with pytest.raises(IndexError):
        dataset[2]
    with pytest.raises(TypeError, match="index"):
        dataset["0"]
