import pytest

from videograph import ablations
from videograph.ablations import lgd

TINY = dict(num_train=8, num_test=8, epochs=1, kernel_epochs=1, batch_size=8, sketch_channels=16, widths=(4, 4),
            stem_channels=4)


def test_lgd_is_discovered():
    assert "lgd" in ablations.available()
    assert lgd.DEFAULT_SEEDS == (0, 1, 2) and lgd.DESCRIPTION


def test_run_gives_every_row_for_every_seed(tmp_path):
    tables = lgd.run([5], str(tmp_path), progress=False, jobs=1, settings=TINY)
    table = tables[""]
    assert list(table) == ["P3D", "LGD-v1", "LGD-v2", "LGD", "LGD + kernel"]
    for row in table.values():
        assert len(row["per_seed"]) == 1 and 0.0 <= row["mean"] <= 1.0
        # 8 test clips: accuracies are multiples of 1/8.
        assert row["mean"] * 8 == pytest.approx(round(row["mean"] * 8))
    assert (tmp_path / "lgd_training_curves.png").stat().st_size > 0


def test_train_variant_is_seeded():
    a = lgd.train_variant("v2", 4, TINY)
    b = lgd.train_variant("v2", 4, TINY)
    assert a == b and set(a) == {"top1", "loss"}
