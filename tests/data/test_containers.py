import numpy as np
import pytest
import torch

from videograph.data import Proposals, Regions, Tubelets

BOX = [1.0, 2.0, 5.0, 6.0]


def tubelets(**override):
    kwargs = dict(boxes=[[BOX, BOX], [BOX, BOX]], clip=[0, 1], frame_size=(10, 10))
    kwargs.update(override)
    return Tubelets(**kwargs)


def regions(**override):
    kwargs = dict(boxes=[BOX, BOX], frame=[0, 1], frame_size=(10, 10))
    kwargs.update(override)
    return Regions(**kwargs)


def proposals(**override):
    kwargs = dict(segments=[[0.0, 1.0], [0.5, 2.0]])
    kwargs.update(override)
    return Proposals(**kwargs)


def test_converts_numpy_and_lists():
    video = Tubelets(np.array([[BOX, BOX]]), np.array([0]), features=[[1.0, 2.0]], frame_size=(10, 10))
    assert video.boxes.dtype == torch.float32 and video.clip.dtype == torch.long
    assert video.features.shape == (1, 2) and len(video) == 1 and video.num_frames == 2
    assert torch.equal(regions().frame, torch.tensor([0, 1]))
    # A float64 tensor keeps its precision: seconds of long videos need it.
    assert proposals(segments=torch.tensor([[0.0, 1.0]], dtype=torch.float64)).segments.dtype == torch.float64


@pytest.mark.parametrize("make, field, kwargs, match", [
    (tubelets, "boxes", dict(boxes=np.zeros((0, 2, 4)), clip=[]), "empty"),
    (tubelets, "boxes", dict(boxes=[BOX, BOX]), r"\[N, T, 4\]"),
    (tubelets, "boxes", dict(boxes=[[BOX, [1, 2, float("nan"), 6]], [BOX, BOX]]), "NaN"),
    (tubelets, "boxes", dict(boxes=[[BOX, [-1, 2, 5, 6]], [BOX, BOX]]), "negative"),
    (tubelets, "boxes", dict(boxes=[[BOX, [5, 2, 1, 6]], [BOX, BOX]]), "inverted"),
    (tubelets, "boxes", dict(boxes=[[BOX, [1, 6, 5, 2]], [BOX, BOX]]), "inverted"),
    (tubelets, "clip", dict(clip=[1, 0]), "non-decreasing"),
    (tubelets, "clip", dict(clip=[-1, 0]), "negative"),
    (tubelets, "clip", dict(clip=[0, 0, 1]), r"\[N\]"),
    (tubelets, "features", dict(features=torch.zeros(3, 2)), r"\[N, D\]"),
    (tubelets, "scores", dict(scores=[0.5, float("inf")]), "NaN or inf"),
    (tubelets, "frame_size", dict(frame_size=None), "required"),
    (tubelets, "frame_size", dict(frame_size=(0, 10)), "positive"),
    (regions, "boxes", dict(boxes=torch.zeros(0, 4), frame=[]), "empty"),
    (regions, "boxes", dict(boxes=[[1, 2, 3], [1, 2, 3]]), r"\[N, 4\]"),
    (regions, "boxes", dict(boxes=[BOX, [3, 2, 1, 6]]), "inverted"),
    (regions, "frame", dict(frame=[2, 1]), "non-decreasing"),
    (regions, "features", dict(features=[[1.0], [float("nan")]]), "NaN"),
    (proposals, "segments", dict(segments=torch.zeros(0, 2)), "empty"),
    (proposals, "segments", dict(segments=[[1.0, 1.0]]), "start < end"),
    (proposals, "segments", dict(segments=[[2.0, 1.0]]), "start < end"),
    (proposals, "segments", dict(segments=[[-1.0, 1.0]]), "negative"),
    (proposals, "segments", dict(segments=[[0.0, float("nan")]]), "NaN"),
    (proposals, "segments", dict(segments=[0.0, 1.0]), r"\[N, 2\]"),
    (proposals, "extended_features", dict(extended_features=torch.zeros(3, 4)), r"\[N, D\]"),
    (proposals, "labels", dict(labels=[1]), r"\[N\]"),
    (proposals, "duration", dict(duration=0), "positive"),
])
def test_bad_input_names_the_field(make, field, kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        make(**kwargs)
    assert f"'{field}'" in str(info.value)


@pytest.mark.parametrize("make, field, kwargs", [
    (tubelets, "clip", dict(clip=[0.0, 1.0])),
    (regions, "frame", dict(frame=torch.tensor([0.5, 1.0]))),
    (proposals, "segments", dict(segments=[["a", "b"]])),
    (tubelets, "frame_size", dict(frame_size="big")),
    (proposals, "labels", dict(labels=[True, False])),
])
def test_wrong_kind_raises_type_error(make, field, kwargs):
    with pytest.raises(TypeError, match=f"'{field}'"):
        make(**kwargs)


def test_to_moves_every_tensor():
    video = tubelets(features=torch.ones(2, 3)).to("cpu")
    assert video.features.device.type == "cpu" and video.frame_size == (10, 10)
