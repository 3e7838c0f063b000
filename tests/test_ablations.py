import json
import subprocess
import sys
import types

import pytest

from videograph import ablations
from videograph.cli import main


def test_musle_is_available():
    assert "musle" in ablations.available()
    assert all(not name.startswith("_") for name in ablations.available())


@pytest.mark.parametrize("values", [[0.5], [0.2, 0.4, 0.9]])
def test_summarize_matches_numpy(values):
    import numpy as np
    row = ablations.summarize(values)
    assert row["per_seed"] == values
    assert row["mean"] == pytest.approx(np.mean(values)) and row["std"] == pytest.approx(np.std(values))


def test_summarize_rejects_empty():
    with pytest.raises(ValueError, match="values"):
        ablations.summarize([])


@pytest.fixture
def fake(monkeypatch):
    calls = []

    def run(seeds, out, *, progress=True, jobs=None):
        calls.append((list(seeds), out, progress, jobs))
        row = ablations.summarize([0.1 * s for s in seeds])
        return {"": {"A": row}, "extra": {"B": row}}

    module = types.SimpleNamespace(DEFAULT_SEEDS=(0, 1, 2), run=run, DESCRIPTION="fake")
    monkeypatch.setattr(ablations, "available", lambda: ["fake"])
    monkeypatch.setattr(ablations, "_module", lambda name: module)
    return calls


def test_home_writes_one_json_per_table(fake, tmp_path, capsys):
    written = ablations.run_ablation("fake", [1, 2], str(tmp_path), progress=False)
    assert fake == [([1, 2], str(tmp_path), False, None)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ablation_fake.json", "ablation_fake_extra.json"]
    table = json.loads((tmp_path / "ablation_fake.json").read_text())
    assert table == {"A": {"mean": pytest.approx(0.15), "std": pytest.approx(0.05), "per_seed": [0.1, 0.2]}}
    assert len(written) == 2 and "A" in capsys.readouterr().out


def test_home_default_seeds_and_bad_seeds(fake, tmp_path):
    ablations.run_ablation("fake", None, str(tmp_path), progress=False)
    assert fake[-1][0] == [0, 1, 2]
    with pytest.raises(ValueError, match="seeds"):
        ablations.run_ablation("fake", [], str(tmp_path))
    with pytest.raises(ValueError, match="seeds"):
        ablations.run_ablation("fake", [1, 1], str(tmp_path))


def test_unknown_ablation_names_the_choices():
    with pytest.raises(ValueError, match="musle"):
        ablations.run_ablation("no-such-table")


def test_cli_dispatches_to_the_home(fake, tmp_path):
    main(["ablation", "fake", "--seeds", "3", "--out", str(tmp_path), "--no-progress"])
    assert fake == [([3], str(tmp_path), False, None)]


def test_cli_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "videograph", "--help"], capture_output=True, text=True, check=True)
    for command in ("demo", "graphs", "ablation"):
        assert command in out.stdout
