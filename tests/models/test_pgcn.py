import json

import pytest
import torch

from videograph.datasets import SyntheticUntrimmed
from videograph.eval import detection_map
from videograph.models import PGCNLocalizer
from videograph.models.pgcn_train import (Detections, PGCNTrainConfig, detect, fit_pgcn, proposal_batch,
                                          to_activitynet)
from videograph.nn.conv import PGCN


@pytest.fixture(scope="module")
def videos():
    dataset = SyntheticUntrimmed(6, num_classes=4, num_proposals=32, seed=7)
    return dataset, [v.proposals(with_ground_truth=True) for v in dataset], [v.ground_truth for v in dataset]


def test_heads_shapes_and_backward(videos):
    dataset, proposals, gt = videos
    batch = proposal_batch(proposals, gt)
    model = PGCNLocalizer(32, 4, hidden_channels=16)
    activity, completeness, regression = model(batch)
    n = batch.num_nodes
    assert activity.shape == (n, 5) and completeness.shape == (n, 4) and regression.shape == (n, 4, 2)
    (activity.sum() + completeness.sum() + regression.sum()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert repr(model) == "PGCNLocalizer(32, num_classes=4, hidden_channels=16, num_layers=2)"


@pytest.mark.parametrize("clamp", [False, True])
def test_forward_is_two_pgcns_and_linear_heads(videos, clamp):
    _, proposals, gt = videos
    batch = proposal_batch(proposals, gt)
    model = PGCNLocalizer(32, 4, hidden_channels=16, dropout=0.0, clamp_negative=clamp).eval()
    weight = batch.edge_weight.clamp(min=0) if clamp else batch.edge_weight
    h1 = model.gcn1(batch.x, batch.edge_index, weight)
    h2 = model.gcn2(batch.x_ext, batch.edge_index, weight)
    activity, completeness, regression = model(batch)
    torch.testing.assert_close(activity, model.activity(h1))
    torch.testing.assert_close(completeness, model.completeness(h2))
    torch.testing.assert_close(regression, model.regression(h2).view(-1, 4, 2))
    assert isinstance(model.gcn1, PGCN) and h1.size(1) == 64          # last output concatenated with the input


def test_graph_without_edges_is_a_per_proposal_mlp(videos):
    _, proposals, gt = videos
    batch = proposal_batch(proposals, gt, edges=())
    assert batch.edge_index.size(1) == 0
    model = PGCNLocalizer(32, 4, hidden_channels=16, dropout=0.0).eval()
    full = model(batch)[0]
    alone = model(proposal_batch(proposals[:1], gt[:1], edges=()))[0]
    torch.testing.assert_close(full[:alone.size(0)], alone)


def test_sampled_batches_give_seed_outputs_and_training_is_seeded(videos):
    _, proposals, gt = videos
    batch = proposal_batch(proposals, gt)
    config = PGCNTrainConfig(epochs=2, videos_per_batch=3, seed=5)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = PGCNLocalizer(32, 4, hidden_channels=16)
        history = fit_pgcn(model, batch, config)
        runs.append((history, [p.detach().clone() for p in model.parameters()]))
    assert len(runs[0][0]) == 2 and all(torch.isfinite(torch.tensor(runs[0][0])))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


def test_training_needs_targets(videos):
    _, proposals, _ = videos
    with pytest.raises(ValueError, match="category"):
        fit_pgcn(PGCNLocalizer(32, 4, hidden_channels=8), proposal_batch(proposals))


def test_detection_is_deterministic_and_sorted(videos):
    _, proposals, gt = videos
    train = proposal_batch(proposals, gt)
    torch.manual_seed(0)
    model = PGCNLocalizer(32, 4, hidden_channels=16)
    fit_pgcn(model, train, PGCNTrainConfig(epochs=1))
    model.train()                                            # detect switches to eval itself
    test = proposal_batch(proposals)
    a = detect(model, test, train.stats, top_k=20)
    b = detect(model, test, train.stats, top_k=20)
    assert model.training
    for x, y in zip((a.segments, a.scores, a.labels, a.video), (b.segments, b.scores, b.labels, b.video)):
        assert torch.equal(x, y)
    for v in range(len(proposals)):
        scores = a.scores[a.video == v]
        assert scores.numel() <= 20 and bool((scores[1:] <= scores[:-1]).all())
        assert bool((a.segments[a.video == v, 0] >= 0).all())
        assert bool((a.segments[a.video == v, 1] <= proposals[v].duration).all())
    assert bool((a.video[1:] >= a.video[:-1]).all()) and bool((a.labels >= 1).all() and (a.labels <= 4).all())


def test_detect_applies_nms_then_regression(videos):
    _, proposals, gt = videos
    train = proposal_batch(proposals, gt)
    torch.manual_seed(1)
    model = PGCNLocalizer(32, 4, hidden_channels=16)
    test = proposal_batch(proposals[:2])
    plain = detect(model, test, train.stats, top_k=1000, nms_threshold=1.0, regress=False)
    # Without NMS or regression: every (proposal, class) pair, its score = softmax(activity)[1:] * exp(comp).
    activity, completeness, _ = model.eval()(test)
    scores = (activity.softmax(-1)[:, 1:] * completeness.exp()).reshape(-1)
    torch.testing.assert_close(plain.scores.sort().values, scores.sort().values)
    nms = detect(model, test, train.stats, top_k=1000, nms_threshold=0.3, regress=False)
    moved = detect(model, test, train.stats, top_k=1000, nms_threshold=0.3, regress=True)
    assert nms.scores.numel() < plain.scores.numel()
    torch.testing.assert_close(moved.scores, nms.scores)                  # regression moves, keeps the NMS set
    assert not torch.equal(moved.segments, nms.segments)


def test_activitynet_round_trip(videos, tmp_path):
    dataset, _, _ = videos
    names = ["a", "b", "c", "d"]
    ids = [f"v{i}" for i in range(len(dataset))]
    gt = {"version": "VERSION 1.3", "database": {
        vid: {"subset": "test", "duration": video.duration, "annotations": [
            {"segment": s, "label": names[c - 1]} for s, c in zip(video.segments.tolist(), video.labels.tolist())]}
        for vid, video in zip(ids, dataset)}}
    # The ground truth as detections (score decreasing with the index) is a perfect result; a shifted copy of
    # half of them loses recall at high tIoU.
    segments = torch.cat([v.segments for v in dataset])
    labels = torch.cat([v.labels for v in dataset])
    video = torch.cat([torch.full((v.segments.size(0),), i) for i, v in enumerate(dataset)])
    scores = torch.linspace(1, 0.1, segments.size(0))
    perfect = to_activitynet(Detections(segments, scores, labels, video), ids, names)
    path = tmp_path / "pred.json"
    path.write_text(json.dumps(perfect))
    reread = json.loads(path.read_text())
    assert reread["results"]["v0"][0]["label"] == names[int(dataset[0].labels[0]) - 1]
    result = detection_map(gt, str(path), tiou_thresholds=[0.5, 0.9])
    torch.testing.assert_close(torch.as_tensor(result.mAP, dtype=torch.float64), torch.ones(2, dtype=torch.float64))
    length = segments[:, 1] - segments[:, 0]
    shifted = segments + (0.3 * length)[:, None] * (torch.arange(segments.size(0)) % 2)[:, None]
    result = detection_map(gt, to_activitynet(Detections(shifted, scores, labels, video), ids, names),
                           tiou_thresholds=[0.5, 0.9])
    assert float(result.mAP[0]) == pytest.approx(1.0) and float(result.mAP[1]) < 0.9
    with pytest.raises(ValueError, match="repeated"):
        to_activitynet(Detections(segments, scores, labels, video), ["x", "x"] + ids[2:], names)
