import pytest
import torch
from torchvision.models.detection import RetinaNet, fasterrcnn_mobilenet_v3_large_320_fpn

from videograph.video import TorchvisionDetector
from videograph.video.shape_detector import (ShapeBackbone, detection_map50, load_shape_detector,
                                             save_shape_detector, shape_detection_frames, shape_detector_model,
                                             train_shape_detector)


def tiny_model(kind):
    torch.manual_seed(0)
    if kind == "fcos":
        return shape_detector_model((48, 64), score_thresh=0.0)
    if kind == "retinanet":
        from torchvision.models.detection.anchor_utils import AnchorGenerator
        backbone = ShapeBackbone(16)
        return RetinaNet(backbone, num_classes=3, min_size=48, max_size=64, score_thresh=0.0,
                         anchor_generator=AnchorGenerator(((8,),), ((0.5, 1.0),)))
    return fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=3,
                                                 box_score_thresh=0.0, min_size=64, max_size=64)


def frames(n=3, generator=None):
    g = generator or torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 48, 64, 3), dtype=torch.uint8, generator=g)


@pytest.mark.parametrize("kind", ["fcos", "retinanet", "fasterrcnn"])
def test_output_contract_against_the_raw_model(kind):
    model = tiny_model(kind).eval()
    detector = TorchvisionDetector(model, score_threshold=0.0, batch_size=3)
    x = frames()
    out = detector(x)
    with torch.no_grad():
        raw = model(list(x.permute(0, 3, 1, 2).float() / 255))
    assert len(out) == 3
    for got, want in zip(out, raw):
        assert set(got) == {"boxes", "scores", "labels"}
        assert got["boxes"].dtype == torch.float32 and got["labels"].dtype == torch.int64
        assert got["boxes"].shape == (got["scores"].numel(), 4)
        assert torch.allclose(got["boxes"], want["boxes"], atol=1e-4)
        assert torch.equal(got["labels"], want["labels"])


@pytest.mark.parametrize("threshold,classes", [(0.0, [1]), (0.3, None), (0.1, [2])])
def test_threshold_and_classes_filter_the_raw_output(threshold, classes):
    model = tiny_model("retinanet").eval()
    x = frames()
    with torch.no_grad():
        raw = model(list(x.permute(0, 3, 1, 2).float() / 255))
    out = TorchvisionDetector(model, score_threshold=threshold, classes=classes)(x)
    for got, want in zip(out, raw):
        keep = want["scores"] >= threshold
        if classes is not None:
            keep &= torch.isin(want["labels"], torch.tensor(classes))
        assert torch.allclose(got["scores"], want["scores"][keep])
        assert bool((got["scores"] >= threshold).all())


def test_batch_size_does_not_change_the_output():
    model = tiny_model("fcos").eval()
    x = frames(5)
    a = TorchvisionDetector(model, score_threshold=0.0, batch_size=1)(x)
    b = TorchvisionDetector(model, score_threshold=0.0, batch_size=4)(x)
    for p, q in zip(a, b):
        assert torch.allclose(p["boxes"], q["boxes"], atol=1e-4) and torch.allclose(p["scores"], q["scores"], atol=1e-5)


def test_weights_are_a_state_dict_file(tmp_path):
    trained = tiny_model("fcos")
    path = tmp_path / "weights.pt"
    torch.save(trained.state_dict(), path)
    torch.manual_seed(1)
    fresh = shape_detector_model((48, 64), score_thresh=0.0)
    x = frames()
    loaded = TorchvisionDetector(fresh, weights=path, score_threshold=0.0)(x)
    expected = TorchvisionDetector(trained, score_threshold=0.0)(x)
    assert all(torch.equal(p["scores"], q["scores"]) for p, q in zip(loaded, expected))
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        TorchvisionDetector(fresh, weights=tmp_path / "nowhere.pt")


@pytest.mark.parametrize("options,error", [
    (dict(score_threshold=1.5), ValueError), (dict(score_threshold="0.5"), ValueError),
    (dict(batch_size=0), ValueError), (dict(classes=[]), ValueError),
])
def test_bad_arguments(options, error):
    with pytest.raises(error):
        TorchvisionDetector(tiny_model("fcos"), **options)
    with pytest.raises(TypeError, match="model"):
        TorchvisionDetector("fcos")


@pytest.mark.parametrize("x", [torch.zeros(2, 8, 8, 3), torch.zeros(2, 3, 8, 8, dtype=torch.uint8),
                               torch.zeros(8, 8, 3, dtype=torch.uint8)])
def test_bad_frames(x):
    with pytest.raises(ValueError, match="frames"):
        TorchvisionDetector(tiny_model("fcos"))(x)


def test_shape_detector_trains_saves_and_loads(tmp_path):
    model, info = train_shape_detector(4, frames_per_video=1, steps=2, batch_size=2, seed=0, progress=False)
    assert info["seconds"] > 0 and info["loss"] > 0
    path = tmp_path / "shapes.pt"
    save_shape_detector(model, path, (64, 64))
    detector = load_shape_detector(path, score_threshold=0.0)
    x, targets = shape_detection_frames(2, frames_per_video=2, seed=0, split="test")
    with torch.no_grad():
        raw = model(list(x.permute(0, 3, 1, 2).float() / 255))
    assert all(torch.allclose(d["scores"], r["scores"]) for d, r in zip(detector(x), raw))
    again, _ = train_shape_detector(4, frames_per_video=1, steps=2, batch_size=2, seed=0, progress=False)
    assert all(torch.equal(p, q) for p, q in zip(model.state_dict().values(), again.state_dict().values()))
    with pytest.raises(FileNotFoundError):
        load_shape_detector(tmp_path / "none.pt")


def test_map50_oracle_scores_the_truth_as_perfect():
    x, targets = shape_detection_frames(3, frames_per_video=2, seed=0, split="test")
    perfect = lambda f: [{"boxes": t["boxes"], "scores": torch.ones(len(t["boxes"])), "labels": t["labels"]}
                         for t in targets]
    assert detection_map50(perfect, x, targets) == pytest.approx(1.0)
    shifted = lambda f: [{"boxes": t["boxes"] + 6, "scores": torch.ones(len(t["boxes"])), "labels": t["labels"]}
                         for t in targets]
    assert detection_map50(shifted, x, targets) < 0.5
