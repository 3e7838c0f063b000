r"""``python -m videograph COMMAND`` (also the ``videograph`` console script).

Each command lives in its own module, which defines ``register(commands)``: it adds its parser to the
sub-parsers and sets ``func`` (called with the parsed arguments)."""
import argparse
import importlib
from typing import Optional, Sequence

__all__ = ["COMMAND_MODULES", "main"]

#: The modules that register sub-commands, in ``--help`` order.
COMMAND_MODULES = (
    "videograph.demo",        # demo, graphs
    "videograph.ablations",   # ablation NAME
    "videograph.video.cli",   # graph VIDEO
)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m videograph", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(commands)
    args = parser.parse_args(argv)
    args.func(args)
