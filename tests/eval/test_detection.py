import json
import math
import os

import numpy as np
import pytest

from videograph.eval import detection_map
from videograph.eval.detection import parse_thresholds

from .oracles import brute_map

TIOU = np.linspace(0.5, 0.95, 10)


def gt(*videos, subset="validation"):
    """{"database": ...} from (video, [(label, start, end), ...]) pairs."""
    return {"database": {v: {"subset": subset, "annotations": [{"label": c, "segment": [s, e]} for c, s, e in items]}
                         for v, items in videos}}


def pred(*videos):
    return {"results": {v: [{"label": c, "segment": [s, e], "score": p} for c, s, e, p in items]
                        for v, items in videos}}


def ap(ground_truth, predictions, thresholds, **kwargs):
    return detection_map(ground_truth, predictions, tiou_thresholds=thresholds, **kwargs).ap.numpy()


def test_mmaction2_reference_values(shared_data):
    """mmaction2's own test of its ActivityNet evaluator on these two files (open-mmlab/mmaction2,
    ``test_activitynet_detection``) expects these mAPs: data used as an oracle."""
    folder = os.path.join(shared_data, "activitynet", "mmaction2_eval_localization")
    with open(os.path.join(folder, "gt.json")) as f:
        database = {video[2:]: info for video, info in json.load(f).items()}     # its ids carry a "v_" prefix
    result = detection_map({"database": database}, os.path.join(folder, "result.json"), tiou_thresholds=TIOU)
    expected = [0.71428571, 0.71428571, 0.71428571, 0.6875, 0.6875, 0.59722222, 0.52083333, 0.52083333,
                0.52083333, 0.5]
    np.testing.assert_allclose(result.mAP.numpy(), expected, atol=1e-8)
    assert result.average_mAP == pytest.approx(0.6177579365079365, abs=1e-12)
    assert result.classes == ["Cleaning shoes", "Wakeboarding"]


def test_all_point_interpolation():
    # TP, FP, TP over 2 instances: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1
    truth = gt(("a", [("x", 0, 10), ("x", 20, 30)]))
    predictions = pred(("a", [("x", 0, 10, 0.9), ("x", 40, 50, 0.8), ("x", 20, 30, 0.7)]))
    assert ap(truth, predictions, [0.5])[0, 0] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # FP first: the interpolated precision at recall 1/2 is max(1/2, 2/3)
    predictions = pred(("a", [("x", 40, 50, 0.95), ("x", 0, 10, 0.9), ("x", 20, 30, 0.7)]))
    assert ap(truth, predictions, [0.5])[0, 0] == pytest.approx(0.5 * 2 / 3 + 0.5 * 2 / 3)


def test_match_at_tiou_equal_to_the_threshold():
    truth = gt(("a", [("x", 0.0, 2.0)]))
    predictions = pred(("a", [("x", 1.0, 2.0, 0.9)]))             # tIoU exactly 1/2
    np.testing.assert_array_equal(ap(truth, predictions, [0.5, 0.5000001]), [[1.0], [0.0]])


def test_taken_ground_truth_falls_through_to_the_next_best():
    truth = gt(("a", [("x", 0, 10), ("x", 5, 15)]))
    # p1 takes g1; p2's best is g1 (9/11), taken, so it takes g2 (6/14 = 0.43) where that clears the threshold
    predictions = pred(("a", [("x", 0, 10, 0.9), ("x", 1, 11, 0.8)]))
    result = ap(truth, predictions, [0.4, 0.5])
    np.testing.assert_allclose(result[:, 0], [1.0, 0.5])


def test_duplicates_are_false_positives():
    truth = gt(("a", [("x", 0, 10)]))
    predictions = pred(("a", [("x", 0, 10, 0.9), ("x", 0, 10, 0.8), ("x", 0.5, 10, 0.7)]))
    assert ap(truth, predictions, [0.5])[0, 0] == 1.0
    predictions = pred(("a", [("x", 0, 10, 0.5), ("x", 0.5, 10, 0.9)]))
    assert ap(truth, predictions, [0.5, 0.99]).tolist() == [[1.0], [0.5]]


def test_predictions_in_videos_without_ground_truth_are_false_positives():
    truth = gt(("a", [("x", 0, 10)]), ("b", [("y", 0, 10)]))
    clean = pred(("a", [("x", 0, 10, 0.5)]))
    assert ap(truth, clean, [0.5])[0].tolist() == [1.0, 0.0]
    # the same segment in a video without ground truth, one without "x", and a video outside the subset
    for video in ("c", "b"):
        noisy = pred(("a", [("x", 0, 10, 0.5)]), (video, [("x", 0, 10, 0.9)]))
        assert ap(truth, noisy, [0.5])[0, 0] == 0.5


def test_mean_over_the_subset_classes():
    truth = gt(("a", [("x", 0, 10)]), ("b", [("y", 0, 10)]))
    truth["database"]["t"] = {"subset": "training", "annotations": [{"label": "z", "segment": [0, 1]}]}
    result = detection_map(truth, pred(("a", [("x", 0, 10, 0.5)])), tiou_thresholds=[0.5, 0.7], subset="validation")
    assert result.classes == ["x", "y"]                         # "z" is in the training subset only
    assert result.ap.tolist() == [[1.0, 0.0], [1.0, 0.0]]       # "y" has no prediction: AP 0, in the mean
    assert result.mAP.tolist() == [0.5, 0.5] and result.average_mAP == 0.5
    with pytest.raises(ValueError, match="'z'"):
        detection_map(truth, pred(("t", [("z", 0, 1, 0.5)])), subset="validation")
    assert detection_map(truth, pred(("t", [("z", 0, 1, 0.5)])), tiou_thresholds=[0.5]).ap.tolist() == [[0, 0, 1]]


def test_equal_scores_keep_the_file_order():
    truth = gt(("a", [("x", 0, 10)]))
    hit_first = pred(("a", [("x", 0, 10, 0.5), ("x", 50, 60, 0.5)]))
    miss_first = pred(("a", [("x", 50, 60, 0.5), ("x", 0, 10, 0.5)]))
    assert ap(truth, hit_first, [0.5])[0, 0] == 1.0
    assert ap(truth, miss_first, [0.5])[0, 0] == 0.5
    # across videos: the order of the results mapping, then list order
    truth = gt(("a", [("x", 0, 10)]), ("b", [("x", 0, 10)]))
    assert ap(truth, pred(("b", [("x", 50, 60, 0.5)]), ("a", [("x", 0, 10, 0.5)])), [0.5])[0, 0] == 0.25


def test_equal_tiou_takes_the_ground_truth_listed_first():
    # p1 has tIoU 3/5 with both; it takes the first listed, so p2 (which only fits g1) finds g1 taken or free
    predictions = pred(("a", [("x", 1, 5, 0.9), ("x", 0, 4, 0.8)]))
    g1_first = gt(("a", [("x", 0, 4), ("x", 2, 6)]))
    g2_first = gt(("a", [("x", 2, 6), ("x", 0, 4)]))
    assert ap(g1_first, predictions, [0.5])[0, 0] == 0.5
    assert ap(g2_first, predictions, [0.5])[0, 0] == 1.0


@pytest.mark.parametrize("seed", range(5))
def test_matches_brute_force_on_random_data(seed):
    rng = np.random.default_rng(seed)
    videos = []
    for v in range(8):
        items = []
        for _ in range(int(rng.integers(0, 6))):
            s = float(rng.uniform(0, 80))
            items.append((f"c{int(rng.integers(4))}", s, s + float(rng.uniform(1, 20))))
        videos.append((f"v{v}", items))
    truth = gt(*videos)
    predicted = []
    for v in range(10):                                          # v8, v9: no ground truth
        items = []
        for _ in range(int(rng.integers(0, 25))):
            s = float(rng.uniform(0, 80))
            items.append((f"c{int(rng.integers(4))}", s, s + float(rng.uniform(1, 20)), float(rng.integers(10)) / 10))
        predicted.append((f"v{v}", items))
    predictions = pred(*predicted)
    thresholds = [0.1, 0.3, 0.5, 0.7, 0.9]
    expected, classes = brute_map(truth, predictions, thresholds)
    result = detection_map(truth, predictions, tiou_thresholds=thresholds)
    assert result.classes == classes
    np.testing.assert_allclose(result.ap.numpy(), expected, rtol=0, atol=1e-12)


def perturbed(database, subset, rng, *, per_instance=3, noise=0.15, wrong_label=0.1, labels=None):
    """Predictions around every instance of the subset: jittered boundaries, random scores with ties, some wrong
    labels, plus some pure false positives."""
    labels = labels or sorted({a["label"] for info in database.values() for a in info["annotations"]})
    results = {}
    for video, info in database.items():
        if info["subset"] != subset:
            continue
        items = []
        for a in info["annotations"]:
            start, end = a["segment"]
            length = max(end - start, 1e-3)
            for _ in range(per_instance):
                s, e = start + rng.normal(0, noise) * length, end + rng.normal(0, noise) * length
                if e > s:
                    label = a["label"] if rng.random() > wrong_label else labels[int(rng.integers(len(labels)))]
                    items.append({"segment": [s, e], "label": label, "score": float(rng.integers(100)) / 100})
        for _ in range(int(rng.integers(0, 3))):
            s = float(rng.uniform(0, 100))
            items.append({"segment": [s, s + 5], "label": labels[int(rng.integers(len(labels)))],
                          "score": float(rng.random())})
        results[video] = items
    return {"results": results}


def test_thumos14_ground_truth_with_perturbed_predictions(shared_data):
    with open(os.path.join(shared_data, "thumos14", "thumos14_gt_anet_format_float.json")) as f:
        truth = json.load(f)
    rng = np.random.default_rng(0)
    predictions = perturbed(truth["database"], "test", rng, per_instance=2)
    thresholds = [0.3, 0.5, 0.7]
    expected, classes = brute_map(truth, predictions, thresholds, subset="test")
    result = detection_map(truth, predictions, tiou_thresholds=thresholds, subset="test")
    assert len(classes) == 20 and result.classes == classes
    np.testing.assert_allclose(result.ap.numpy(), expected, rtol=0, atol=1e-12)
    assert 0.2 < result.average_mAP < 0.95


def test_activitynet_ground_truth_with_perturbed_predictions(shared_data):
    path = os.path.join(shared_data, "activitynet", "bmn", "anet13_trainval_gt_anet_format_DERIVED.json")
    with open(path) as f:
        truth = json.load(f)
    # 600 validation videos without zero-length instances (the file has a few [0, 0] segments)
    keep = [v for v, info in truth["database"].items() if info["subset"] == "validation"
            and all(a["segment"][0] < a["segment"][1] for a in info["annotations"])][:600]
    small = {"database": {v: truth["database"][v] for v in keep}}
    rng = np.random.default_rng(1)
    predictions = perturbed(small["database"], "validation", rng, per_instance=4, noise=0.1)
    expected, classes = brute_map(small, predictions, TIOU, subset="validation")
    result = detection_map(small, predictions, tiou_thresholds=TIOU, subset="validation")
    assert result.classes == classes and len(classes) > 150
    np.testing.assert_allclose(result.ap.numpy(), expected, rtol=0, atol=1e-12)


def test_activitynet_sample_predictions_need_zero_length_keep(shared_data):
    truth = os.path.join(shared_data, "activitynet", "bmn", "anet13_trainval_gt_anet_format_DERIVED.json")
    sample = os.path.join(shared_data, "activitynet", "sample_detection_prediction.json")
    with pytest.raises(ValueError, match="zero_length"):
        detection_map(truth, sample, subset="validation")
    result = detection_map(truth, sample, subset="validation", zero_length="keep")
    assert len(result.classes) == 200 and 0.5 < result.average_mAP <= 1.0


def test_zero_length_segments_match_nothing():
    truth = gt(("a", [("x", 3, 3), ("x", 0, 10)]))
    predictions = pred(("a", [("x", 3, 3, 0.9), ("x", 0, 10, 0.8)]))
    result = ap(truth, predictions, [0.5], zero_length="keep")
    assert result[0, 0] == pytest.approx(0.5 * 0.5)     # FP then TP over 2 instances


def test_reads_json_paths(tmp_path):
    truth, predictions = gt(("a", [("x", 0, 10)])), pred(("a", [("x", 1, 10, 0.3)]))
    (tmp_path / "gt.json").write_text(json.dumps(truth))
    (tmp_path / "pred.json").write_text(json.dumps(predictions))
    from_files = detection_map(str(tmp_path / "gt.json"), tmp_path / "pred.json", tiou_thresholds="0.5:0.95:0.05")
    assert from_files.ap.tolist() == detection_map(truth, predictions).ap.tolist()
    with pytest.raises(FileNotFoundError, match="missing.json"):
        detection_map(str(tmp_path / "missing.json"), predictions)


def _bad(where, **change):
    truth, predictions = gt(("a", [("x", 0, 10)])), pred(("a", [("x", 1, 10, 0.3)]))
    entry = truth["database"]["a"]["annotations"][0] if where == "gt" else predictions["results"]["a"][0]
    for key, value in change.items():
        if value is None:
            del entry[key]
        else:
            entry[key] = value
    return truth, predictions


@pytest.mark.parametrize("where, change, match", [
    ("pred", dict(label="y"), r"video 'a', entry 0: field 'label' 'y' is not a class"),
    ("pred", dict(segment=[5, 5]), r"video 'a', entry 0: field 'segment'.*start < end"),
    ("pred", dict(segment=[6, 5]), r"video 'a', entry 0: field 'segment'"),
    ("gt", dict(segment=[6, 5]), r"ground truth of video 'a', entry 0: field 'segment'"),
    ("pred", dict(score=math.nan), r"video 'a', entry 0: field 'score' must be a finite number"),
    ("pred", dict(score="high"), r"field 'score'"),
    ("pred", dict(score=None), r"video 'a', entry 0: missing field 'score'"),
    ("pred", dict(segment=None), r"video 'a', entry 0: missing field 'segment'"),
    ("gt", dict(label=None), r"ground truth of video 'a', entry 0: field 'label'"),
    ("pred", dict(label=None), r"video 'a', entry 0: field 'label'"),
    ("gt", dict(segment=[1]), r"field 'segment' must be \[start, end\]"),
    ("gt", dict(segment="ab"), r"field 'segment' must be \[start, end\]"),
])
def test_bad_entries_name_the_video_and_field(where, change, match):
    truth, predictions = _bad(where, **change)
    with pytest.raises(ValueError, match=match):
        detection_map(truth, predictions)


def test_errors_name_the_right_video_among_many():
    truth = gt(("a", [("x", 0, 10)]), ("b", [("x", 0, 10)]))
    predictions = pred(("a", [("x", 0, 10, 0.5)]), ("empty", []), ("c", [("x", 0, 10, 0.5), ("x", 0, 10, 0.5)]))
    predictions["results"]["c"][1]["score"] = float("inf")
    with pytest.raises(ValueError, match=r"video 'c', entry 1: field 'score'"):
        detection_map(truth, predictions)
    truth["database"]["b"]["annotations"][0]["segment"] = [3, 2]
    with pytest.raises(ValueError, match=r"ground truth of video 'b', entry 0: field 'segment'"):
        detection_map(truth, predictions)


def test_bad_containers():
    with pytest.raises(ValueError, match="'database'"):
        detection_map({"videos": {}}, pred())
    with pytest.raises(ValueError, match="'results'"):
        detection_map(gt(("a", [("x", 0, 1)])), {"a": []})
    with pytest.raises(ValueError, match="missing field 'subset'"):
        detection_map({"database": {"a": {"annotations": []}}}, pred(), subset="validation")
    with pytest.raises(ValueError, match="missing field 'annotations'"):
        detection_map({"database": {"a": {"subset": "validation"}}}, pred())
    with pytest.raises(ValueError, match="no video in subset 'test'"):
        detection_map(gt(("a", [("x", 0, 1)])), pred(), subset="test")
    with pytest.raises(TypeError, match="JSON path or a dict"):
        detection_map([1, 2], pred())


@pytest.mark.parametrize("text, expected", [
    ("0.5:0.95:0.05", np.linspace(0.5, 0.95, 10)), ("0.1:0.5:0.1", [0.1, 0.2, 0.3, 0.4, 0.5]),
    ("0.3,0.5", [0.3, 0.5]), (0.5, [0.5]), ([0.1, 0.7], [0.1, 0.7])])
def test_parse_thresholds(text, expected):
    np.testing.assert_allclose(parse_thresholds(text), expected)


@pytest.mark.parametrize("text", ["0.5:0.1:0.05", "1.5", "", "0.5:0.9", []])
def test_parse_thresholds_rejects(text):
    with pytest.raises(ValueError):
        parse_thresholds(text)
