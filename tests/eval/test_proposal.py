import json
import os

import numpy as np
import pytest

from videograph.eval import average_recall

from .oracles import brute_recall


def test_hand_built_recall_curve():
    truth = {"database": {"a": {"subset": "s", "annotations": [{"segment": [0, 10], "label": "x"},
                                                              {"segment": [20, 30], "label": "x"}]},
                          "b": {"subset": "s", "annotations": [{"segment": [0, 10], "label": "y"}]},
                          "empty": {"subset": "s", "annotations": []}}}
    # a: the best proposal hits instance 1, the second instance 2; b: only the second one hits
    proposals = {"results": {"a": [{"segment": [0, 10], "score": 0.9}, {"segment": [21, 30], "score": 0.8}],
                             "b": [{"segment": [50, 60], "score": 0.9}, {"segment": [0, 9], "score": 0.1}]}}
    result = average_recall(truth, proposals, max_avg_proposals=2, tiou_thresholds=[0.5, 0.95])
    an = result.proposals_per_video.numpy()
    np.testing.assert_allclose(an, np.arange(1, 101) / 50)          # every video keeps its 2 proposals
    # AN = 1: a recalls 1 of 2 at both thresholds, b none -> 1/3; AN = 2: all 3 at 0.5, 1 + 0 + 0 at 0.95
    assert result.recall[:, 49].tolist() == pytest.approx([1 / 3, 1 / 3])
    assert result.recall[:, 99].tolist() == pytest.approx([1.0, 1 / 3])
    assert result.at(2) == pytest.approx((1 + 1 / 3) / 2) and result.at(1) == pytest.approx(1 / 3)
    assert result.recall[:, :49].max() == 0                         # fewer than one proposal shown per video
    assert 0 < result.auc < 1


@pytest.mark.parametrize("max_avg, seed", [(100, 0), (20, 1), (None, 2)])
def test_matches_brute_force_on_thumos14(shared_data, max_avg, seed):
    with open(os.path.join(shared_data, "thumos14", "thumos14_gt_anet_format_float.json")) as f:
        database = json.load(f)["database"]
    videos = [v for v, info in database.items() if info["subset"] == "test"][:15]
    truth = {"database": {v: database[v] for v in videos}}
    rng = np.random.default_rng(seed)
    results = {}
    for v in videos + ["not_in_ground_truth"]:
        annotations = database.get(v, {"annotations": [{"segment": [0, 50]}]})["annotations"]
        items = []
        for _ in range(int(rng.integers(0, 80))):
            a = annotations[int(rng.integers(len(annotations)))]
            start, end = a["segment"]
            s, e = start + rng.normal(0, 0.3) * (end - start), end + rng.normal(0, 0.3) * (end - start)
            if e > s:
                items.append({"segment": [s, e], "score": float(rng.integers(20)) / 20})
        results[v] = items
    proposals = {"results": results}
    thresholds = [0.3, 0.5, 0.7, 0.9]
    result = average_recall(truth, proposals, max_avg_proposals=max_avg, tiou_thresholds=thresholds, subset="test")
    average = max_avg if max_avg is not None else sum(map(len, results.values())) / len(videos)
    expected, per_video = brute_recall(truth, proposals, thresholds, average, subset="test")
    np.testing.assert_allclose(result.recall.numpy(), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.proposals_per_video.numpy(), per_video, rtol=1e-12)
    np.testing.assert_allclose(result.average_recall.numpy(), expected.mean(0), atol=1e-12)


def test_bad_input():
    truth = {"database": {"a": {"subset": "s", "annotations": [{"segment": [0, 10], "label": "x"}]}}}
    with pytest.raises(ValueError, match="> 0"):
        average_recall(truth, {"results": {"a": [{"segment": [0, 1], "score": 1}]}}, tiou_thresholds=[0.0, 0.5])
    with pytest.raises(ValueError, match="none is left"):
        average_recall(truth, {"results": {"b": [{"segment": [0, 1], "score": 1}]}})
    with pytest.raises(ValueError, match="video 'a', entry 0: missing field 'score'"):
        average_recall(truth, {"results": {"a": [{"segment": [0, 1]}]}})
    with pytest.raises(ValueError, match="max_avg_proposals"):
        average_recall(truth, {"results": {"a": [{"segment": [0, 1], "score": 1}]}}, max_avg_proposals=0)
