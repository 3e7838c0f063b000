r"""``python -m videograph eval GT.json PRED.json [--subset validation] [--tiou 0.5:0.95:0.05] [--proposals]``:
ActivityNet's detection mAP (or, with ``--proposals``, AR@AN) of an ActivityNet-format predictions file."""
import argparse
import json

from .detection import detection_map
from .proposal import average_recall

__all__ = ["register"]


def run(args: argparse.Namespace) -> None:
    try:
        evaluate(args)
    except (ValueError, TypeError, FileNotFoundError) as error:
        raise SystemExit(f"python -m videograph eval: error: {error}") from None


def evaluate(args: argparse.Namespace) -> None:
    common = dict(tiou_thresholds=args.tiou, subset=args.subset, zero_length=args.zero_length)
    if args.proposals:
        result = average_recall(args.ground_truth, args.predictions, max_avg_proposals=args.max_proposals, **common)
        print(result.table())
        summary = {"auc": result.auc, **{f"AR@{n}": result.at(n) for n in (1, 5, 10, 100)
                                          if n <= args.max_proposals}}
    else:
        result = detection_map(args.ground_truth, args.predictions, **common)
        print(result.table())
        summary = {"mAP": dict(zip((f"{t:.2f}" for t in result.tiou_thresholds.tolist()), result.mAP.tolist())),
                   "average_mAP": result.average_mAP}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)


def register(commands) -> None:
    """Adds ``eval`` to the CLI's sub-commands."""
    parser = commands.add_parser("eval", help="ActivityNet detection mAP (or proposal AR@AN) of a predictions file",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ground_truth", help="ground truth, ActivityNet format ({'database': ...})")
    parser.add_argument("predictions", help="predictions, ActivityNet format ({'results': ...})")
    parser.add_argument("--subset", default=None, help="the ground truth's subset, e.g. validation (default: all)")
    parser.add_argument("--tiou", default="0.5:0.95:0.05",
                        help="tIoU thresholds: start:stop:step (stop included) or a comma list (default 0.5:0.95:0.05)")
    parser.add_argument("--proposals", action="store_true", help="evaluate proposals: AR@AN instead of mAP")
    parser.add_argument("--max-proposals", type=float, default=100, help="AN_max of --proposals (default 100)")
    parser.add_argument("--zero-length", choices=("raise", "keep"), default="raise",
                        help="segments with start == end: raise (default) or keep as matching nothing")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    parser.set_defaults(func=run)
