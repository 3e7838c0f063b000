r"""The one home of every paper's ablation table: ``python -m videograph ablation NAME [--seeds ...] [--out ...]``.

Each ablation is a module of this package (``musle``, and beside it ``pgcn``, ``lgd``, ``u2s`` as they land),
found by name, with:

* ``DESCRIPTION``: one line for ``--help``;
* ``DEFAULT_SEEDS``: the seeds of the reported table (usually ``(0, 1, 2)``);
* ``run(seeds, out, *, progress=True, jobs=None) -> Dict[str, Dict[str, Dict]]``: trains and tests every row for
  every seed and returns ``{suffix: table}``, a table being ``row -> summarize(per-seed values)``. The home
  writes ``<out>/ablation_<name>.json`` for the suffix ``""`` and ``<out>/ablation_<name>_<suffix>.json`` for the
  others, then prints every table. ``run`` may write its own PNGs into ``out``.
"""
import argparse
import importlib
import json
import os
import pkgutil
import statistics
import time
from typing import Dict, List, Optional, Sequence

__all__ = ["available", "summarize", "run_ablation", "format_table", "register"]

Table = Dict[str, Dict]


def available() -> List[str]:
    """The names of the ablations of this package (its public modules), sorted."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def summarize(values: Sequence[float]) -> Dict:
    """``{"mean", "std", "per_seed"}`` of one row (population std; 0 for a single seed)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("'values' is empty: a row needs at least one seed")
    return {"mean": statistics.fmean(values), "std": statistics.pstdev(values) if len(values) > 1 else 0.0,
            "per_seed": values}


def _module(name: str):
    if name not in available():
        raise ValueError(f"unknown ablation {name!r}: expected one of {available()}")
    return importlib.import_module(f"{__name__}.{name}")


def format_table(table: Table, *, scale: float = 100.0, unit: str = "%") -> str:
    """One line per row: ``mean ± std`` and the per-seed values (multiplied by ``scale``)."""
    width = max(len(row) for row in table)
    lines = []
    for row, entry in table.items():
        seeds = " / ".join(f"{scale * v:.1f}" for v in entry["per_seed"])
        lines.append(f"{row:<{width}}  {scale * entry['mean']:6.1f} ± {scale * entry['std']:4.1f} {unit}   ({seeds})")
    return "\n".join(lines)


def run_ablation(name: str, seeds: Optional[Sequence[int]] = None, out: str = "results", *, progress: bool = True,
                 jobs: Optional[int] = None) -> Dict[str, Table]:
    """Runs ablation ``name`` over ``seeds`` (default: its ``DEFAULT_SEEDS``), writes its JSON files into ``out``
    and prints its tables. Returns ``{path: table}``."""
    module = _module(name)
    seeds = list(module.DEFAULT_SEEDS if seeds is None else seeds)
    if not seeds:
        raise ValueError("'seeds' is empty")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"'seeds' has repeated values: {seeds}")
    os.makedirs(out, exist_ok=True)
    start = time.perf_counter()
    tables = module.run(seeds, out, progress=progress, jobs=jobs)
    written = {}
    for suffix, table in tables.items():
        path = os.path.join(out, f"ablation_{name}{'_' + suffix if suffix else ''}.json")
        with open(path, "w") as handle:
            json.dump(table, handle, indent=1)
        written[path] = table
    for path, table in written.items():
        print(f"\n{path} (mean ± std over seeds {seeds}):\n{format_table(table)}")
    print(f"\nablation {name}: {time.perf_counter() - start:.0f} s")
    return written


def register(commands) -> None:
    """Adds ``ablation`` to the CLI's sub-commands."""
    parser = commands.add_parser("ablation", help="run one paper's ablation table (writes <out>/ablation_<name>.json)",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=available(), help="which ablation")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default: the ablation's own)")
    parser.add_argument("--out", default="results", help="output folder (default: results)")
    parser.add_argument("--jobs", type=int, default=None, help="processes (default: one per core, <= seeds)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(func=lambda args: run_ablation(args.name, args.seeds, args.out,
                                                       progress=not args.no_progress, jobs=args.jobs))
