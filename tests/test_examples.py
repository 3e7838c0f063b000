"""The examples the README points to run to the end (small settings where they take any)."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("script, arguments, expected", [
    ("custom_layer.py", [], r"GCN\(3, num_classes=9, convs=\['SAGEConv', 'SAGEConv'\]\) torch.Size\(\[4, 9\]\)"),
    ("musle.py", ["--num-train", "54", "--epochs", "2", "--end-to-end"], r"test accuracy: (0|1)\.\d{3} "),
    ("pgcn.py", ["--num-train", "24", "--num-test", "6", "--epochs", "1", "--hidden", "32", "--out", "{tmp}"],
     r"test mAP@0\.5: (0|1)\.\d{3} "),
])
def test_example_runs(script, arguments, expected, tmp_path):
    arguments = [a.replace("{tmp}", str(tmp_path)) for a in arguments]
    result = subprocess.run([sys.executable, os.path.join(ROOT, "examples", script), *arguments], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(expected, result.stdout), result.stdout[-2000:]
