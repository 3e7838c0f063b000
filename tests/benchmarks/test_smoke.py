"""Every benchmark in benchmarks/ runs at its --smoke size and writes the keys it promises (no timing asserted).

Benchmarks are found by globbing, so a new ``benchmarks/<name>.py`` joins this test without editing it. Each
defines ``KEYS`` (the keys of ``<out>/bench_<name>.json`` it always writes) and may define ``EXT_KEYS``
(``{package: keys}``: keys that must be numbers whenever that package is importable, so ``make test-ext``
checks that the benchmark took its torch-scatter / PyG branch).
"""
import glob
import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCHMARKS = sorted(glob.glob(os.path.join(ROOT, "benchmarks", "*.py")))


def load(path):
    """The benchmark module, imported from its path without running ``main``."""
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def importable(package):
    return importlib.util.find_spec(package) is not None


def test_benchmarks_are_found():
    assert len(BENCHMARKS) >= 5


@pytest.mark.parametrize("path", BENCHMARKS, ids=[os.path.basename(p) for p in BENCHMARKS])
def test_smoke_run_writes_its_keys(path, tmp_path):
    name = os.path.splitext(os.path.basename(path))[0]
    module = load(path)
    assert isinstance(module.KEYS, tuple) and module.KEYS, f"{name}: KEYS must be a non-empty tuple"
    assert callable(module.main)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    ran = subprocess.run([sys.executable, path, "--smoke", "--out", str(tmp_path)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, f"{name} --smoke failed:\n{ran.stderr[-3000:]}"
    with open(tmp_path / f"bench_{name}.json") as handle:
        results = json.load(handle)
    missing = [key for key in module.KEYS if key not in results]
    assert not missing, f"{name}: bench_{name}.json lacks {missing}"
    assert (tmp_path / f"bench_{name}.png").is_file()
    for package, keys in getattr(module, "EXT_KEYS", {}).items():
        if importable(package):
            absent = [key for key in keys if not isinstance(results.get(key), (int, float))]
            assert not absent, f"{name}: with {package} installed, {absent} should be measured"
