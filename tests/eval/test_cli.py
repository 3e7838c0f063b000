import json

import pytest

from videograph.cli import main
from videograph.eval import average_recall, detection_map

TRUTH = {"database": {"a": {"subset": "validation", "annotations": [{"segment": [0, 10], "label": "x"},
                                                                     {"segment": [20, 30], "label": "y"}]},
                      "b": {"subset": "training", "annotations": [{"segment": [0, 10], "label": "x"}]}}}
PREDICTIONS = {"results": {"a": [{"segment": [1, 10], "label": "x", "score": 0.9},
                                 {"segment": [22, 40], "label": "y", "score": 0.8},
                                 {"segment": [20, 29], "label": "x", "score": 0.7}]}}


@pytest.fixture
def files(tmp_path):
    (tmp_path / "gt.json").write_text(json.dumps(TRUTH))
    (tmp_path / "pred.json").write_text(json.dumps(PREDICTIONS))
    return str(tmp_path / "gt.json"), str(tmp_path / "pred.json"), tmp_path


def test_eval_prints_the_table(files, capsys):
    gt, pred, folder = files
    main(["eval", gt, pred, "--subset", "validation", "--tiou", "0.5:0.95:0.05", "--json", str(folder / "out.json")])
    printed = capsys.readouterr().out.splitlines()
    expected = detection_map(TRUTH, PREDICTIONS, subset="validation", tiou_thresholds="0.5:0.95:0.05")
    assert printed[0].split() == ["tIoU", "mAP", "(%)"] and len(printed) == 12
    assert [float(line.split()[1]) for line in printed[1:11]] == pytest.approx(
        (100 * expected.mAP).tolist(), abs=0.005)
    assert printed[-1].split() == ["avg", f"{100 * expected.average_mAP:.2f}"]
    written = json.loads((folder / "out.json").read_text())
    assert written["average_mAP"] == pytest.approx(expected.average_mAP)


def test_eval_proposals(files, capsys):
    gt, pred, _ = files
    main(["eval", gt, pred, "--proposals", "--max-proposals", "3", "--tiou", "0.5,0.7"])
    out = capsys.readouterr().out
    expected = average_recall(TRUTH, PREDICTIONS, max_avg_proposals=3, tiou_thresholds=[0.5, 0.7])
    assert out.splitlines()[-1].split() == ["AUC", f"{100 * expected.auc:.2f}"]


def test_eval_bad_input_exits_with_the_message(files):
    gt, _, folder = files
    bad = dict(PREDICTIONS, results={"a": [{"segment": [1, 10], "label": "z", "score": 0.9}]})
    (folder / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(SystemExit, match="video 'a', entry 0: field 'label' 'z'"):
        main(["eval", gt, str(folder / "bad.json")])
