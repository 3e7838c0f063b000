"""The P-GCN ablation runs end to end on a tiny setting and returns the home's table format."""
import pytest

from videograph import ablations
from videograph.ablations import pgcn


def test_pgcn_ablation_is_discovered():
    assert "pgcn" in ablations.available()
    assert pgcn.DEFAULT_SEEDS == (0, 1, 2) and list(pgcn.ROWS) == ["MLP", "Contextual only", "Surrounding only",
                                                                   "P-GCN"]


def test_tiny_run_gives_both_tables(tmp_path):
    tables = pgcn.run([3], str(tmp_path), progress=False, jobs=1, log=False, num_train=8, num_test=4,
                      model=dict(hidden_channels=16), training=dict(epochs=1))
    assert set(tables) == {"", "avg"}
    for table in tables.values():
        assert list(table) == list(pgcn.ROWS)
        for row in table.values():
            assert set(row) == {"mean", "std", "per_seed"} and len(row["per_seed"]) == 1
            assert 0.0 <= row["mean"] <= 1.0


def test_ground_truth_json_lists_every_action():
    dataset = pgcn.SyntheticUntrimmed(3, seed=1)
    names = [f"c{k}" for k in range(1, dataset.num_classes + 1)]
    gt = pgcn.ground_truth_json(dataset, ["a", "b", "c"], names)
    for name, video in zip("abc", dataset):
        entries = gt["database"][name]["annotations"]
        assert [e["segment"] for e in entries] == video.segments.tolist()
        assert [e["label"] for e in entries] == [names[c - 1] for c in video.labels.tolist()]


def test_empty_seeds():
    with pytest.raises(ValueError, match="seeds"):
        pgcn.run([], "unused")
