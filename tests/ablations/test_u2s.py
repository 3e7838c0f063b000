import json

from videograph.ablations import run_ablation, u2s


def test_u2s_ablation_writes_every_row_on_a_tiny_run(monkeypatch, tmp_path):
    monkeypatch.setattr(u2s, "SETTINGS", dict(u2s.SETTINGS, num_train=24, num_val=24, num_test=24, epochs=(1, 1, 1),
                                              batch_size=12, width=4))
    run_ablation("u2s", [0], str(tmp_path), progress=False, jobs=1)
    for name in ("ablation_u2s.json", "ablation_u2s_confusable.json"):
        table = json.loads((tmp_path / name).read_text())
        assert list(table) == list(u2s.ROWS)
        assert all(0.0 <= row["mean"] <= 1.0 and len(row["per_seed"]) == 1 for row in table.values())
    assert (tmp_path / "u2s_confusion.png").stat().st_size > 0
