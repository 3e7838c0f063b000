r"""``python -m videograph preprocess LIST --kind tubelets|regions|proposals --out STORE``: inputs -> graphs -> a
:class:`~videograph.datasets.GraphStore`, in shards that several processes write side by side.

    python -m videograph preprocess LIST --kind proposals --out STORE                       # one process
    python -m videograph preprocess LIST --kind proposals --out STORE --shard-index 1 --num-shards 2
    torchrun --nproc-per-node=2 -m videograph preprocess LIST --kind proposals --out STORE   # RANK / WORLD_SIZE

``LIST`` is, for ``proposals``, an SSN / P-GCN proposal list (one graph per video: its proposals with the list's
labels); for ``tubelets`` / ``regions``, a video list in MMAction2's format (``path [label]`` a line, paths
relative to the list's folder), each video built with ``videograph.build_graph(path, kind=...)`` and the detector
of ``--detector NAME --weights FILE`` (:func:`video_detector`).

The items are cut into consecutive blocks of ``shard_size``; block ``b`` is written by process
``b mod num_shards`` as the store's shard ``b`` (:func:`~videograph.datasets.store.write_shard`), so the
store's order is the list's whatever the number of processes, and n processes give the same store as one. A
finished block has its shard JSON and is skipped when the command runs again, so a crashed run resumes where it
stopped (losing at most one block per process). The process that finds every block finished writes the manifest.
``<STORE>/source.json`` records the list (its SHA-256), the kind and the block size; a rerun with other inputs
into the same folder is refused rather than mixed.
"""
import argparse
import hashlib
import json
import os
from typing import Callable, List, Optional

from tqdm import tqdm

from .datasets.store import MANIFEST, finalize_store, shard_name, write_shard

__all__ = ["KINDS", "read_items", "intra_op_threads", "preprocess", "video_detector", "register"]

KINDS = ("tubelets", "regions", "proposals")


def read_items(list_path: str, kind: str) -> list:
    """The items of ``list_path``: for ``proposals`` the unparsed block of each video (lines; see
    :func:`~videograph.datasets.formats.proposal_list_blocks`), else ``(path, label or None)`` pairs."""
    if kind not in KINDS:
        raise ValueError(f"'kind' must be one of {KINDS}, got {kind!r}")
    if not os.path.isfile(list_path):
        raise FileNotFoundError(f"list file {list_path!r} does not exist")
    if kind == "proposals":             # parsed when built: each process parses only its own blocks
        from .datasets.formats import proposal_list_blocks
        return proposal_list_blocks(list_path)
    root, items = os.path.dirname(os.path.abspath(list_path)), []
    with open(list_path) as handle:
        for number, line in enumerate(handle, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) > 2:
                raise ValueError(f"{list_path}:{number}: expected 'path [label]', got {line.strip()!r}")
            label = None
            if len(fields) == 2:
                try:
                    label = int(fields[1])
                except ValueError:
                    raise ValueError(f"{list_path}:{number}: the label must be an integer, got {fields[1]!r}") from None
            items.append((os.path.join(root, fields[0]), label))
    return items


def _builder(kind: str, options: dict) -> Callable:
    from .graph import build_graph

    if kind == "proposals":
        from .datasets.formats import parse_proposal_block

        def build(block):
            entry = parse_proposal_block(block, "proposal list")
            data = build_graph(entry.proposals())
            data.video = str(entry.video)
            return data
        return build

    def build_video(item):
        path, label = item
        data = build_graph(path, kind=kind, progress=False, **options)
        data.video = os.path.basename(path)
        if label is not None:
            import torch
            data.y = torch.tensor([label])
        return data
    return build_video


def intra_op_threads(num_shards: int, environ=None, cores: Optional[int] = None) -> Optional[int]:
    """The torch intra-op threads of one of ``num_shards`` processes: this machine's cores split between the
    shard processes on it (torchrun's ``LOCAL_WORLD_SIZE``, else all ``num_shards``), at least 1. :obj:`None`
    (leave torch's default) for one process or when ``OMP_NUM_THREADS`` is set."""
    environ = os.environ if environ is None else environ
    if num_shards == 1 or "OMP_NUM_THREADS" in environ:
        return None
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    local = min(num_shards, int(environ.get("LOCAL_WORLD_SIZE", num_shards)))
    return max(1, cores // max(local, 1))


def _fingerprint(list_path: str, kind: str, shard_size: int, count: int) -> dict:
    digest = hashlib.sha256()
    with open(list_path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return {"list_sha256": digest.hexdigest(), "kind": kind, "shard_size": shard_size, "items": count}


def preprocess(list_path: str, kind: str, out: str, *, shard_index: Optional[int] = None,
               num_shards: Optional[int] = None, shard_size: int = 256, progress: bool = True,
               **options) -> Optional[dict]:
    """Writes this process's blocks of ``list_path`` into the store ``out`` (see the module docstring). Shard
    index and count default to ``RANK`` / ``WORLD_SIZE`` (torchrun), else 0 / 1. ``options`` go to
    ``build_graph`` (e.g. ``detector=`` for videos). With several shards, each process runs
    :func:`intra_op_threads` torch threads unless ``OMP_NUM_THREADS`` is set. Returns the manifest when this call
    finished the store, else :obj:`None`."""
    if shard_index is None:
        shard_index = int(os.environ.get("RANK", "0"))
    if num_shards is None:
        num_shards = int(os.environ.get("WORLD_SIZE", "1"))
    if isinstance(num_shards, bool) or not isinstance(num_shards, int) or num_shards < 1:
        raise ValueError(f"'num_shards' must be a positive int, got {num_shards!r}")
    if isinstance(shard_index, bool) or not isinstance(shard_index, int) or not 0 <= shard_index < num_shards:
        raise ValueError(f"'shard_index' must be an int in [0, {num_shards}), got {shard_index!r}")
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise ValueError(f"'shard_size' must be a positive int, got {shard_size!r}")
    threads = intra_op_threads(num_shards)
    if threads is None:
        return _preprocess(list_path, kind, out, shard_index, num_shards, shard_size, progress, options)
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(threads)      # n processes x all cores each would oversubscribe the machine
    try:
        return _preprocess(list_path, kind, out, shard_index, num_shards, shard_size, progress, options)
    finally:
        torch.set_num_threads(before)


def _preprocess(list_path: str, kind: str, out: str, shard_index: int, num_shards: int, shard_size: int,
                progress: bool, options: dict) -> Optional[dict]:
    items = read_items(list_path, kind)
    if not items:
        raise ValueError(f"list file {list_path!r} has no items")
    os.makedirs(out, exist_ok=True)
    source = _fingerprint(list_path, kind, shard_size, len(items))
    source_path = os.path.join(out, "source.json")
    if os.path.exists(source_path):
        with open(source_path) as handle:
            known = json.load(handle)
        if known != source:
            raise ValueError(f"the store {out!r} was preprocessed from other inputs ({known}); remove it or choose "
                             "another --out")
    else:
        tmp = f"{source_path}.tmp-{os.getpid()}"
        with open(tmp, "w") as handle:
            json.dump(source, handle, indent=1)
        os.replace(tmp, source_path)
    num_blocks = -(-len(items) // shard_size)
    mine = [b for b in range(shard_index, num_blocks, num_shards)
            if not os.path.exists(os.path.join(out, f"{shard_name(b)}.json"))]
    build = _builder(kind, options)
    bar = tqdm(total=sum(min(shard_size, len(items) - b * shard_size) for b in mine), disable=not progress,
               desc=f"preprocess {shard_index}/{num_shards}", unit="graph")

    def graphs(block: int):
        for item in items[block * shard_size:(block + 1) * shard_size]:
            yield build(item)
            bar.update(1)

    for block in mine:
        write_shard(out, block, graphs(block))
    bar.close()
    done = all(os.path.exists(os.path.join(out, f"{shard_name(b)}.json")) for b in range(num_blocks))
    if done and not os.path.exists(os.path.join(out, MANIFEST)):
        return finalize_store(out, num_blocks)
    return None


def video_detector(name: str, weights: Optional[str], score_threshold: float = 0.5):
    """The detector of ``--detector NAME --weights FILE``: ``shapes`` reads a file of
    :func:`~videograph.video.shape_detector.save_shape_detector` (what ``python -m videograph graph`` caches as
    ``shape_detector_seed0.pt``), any other name is a ``torchvision.models.detection`` builder whose state dict is
    ``FILE``. Nothing is downloaded."""
    if weights is None:
        raise ValueError(f"'--detector {name}' needs '--weights FILE' (a state dict; nothing is downloaded)")
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"detector weights file {weights!r} does not exist")
    if name == "shapes":
        from .video.shape_detector import load_shape_detector
        return load_shape_detector(weights, score_threshold=score_threshold)
    from .video.cli import _detector
    return _detector(name, weights, "", score_threshold, False)


def _run(args) -> Optional[dict]:
    options = {}
    if args.kind != "proposals":
        if args.detector is None:
            raise ValueError(f"'--kind {args.kind}' needs '--detector NAME --weights FILE' to find the objects")
        options = dict(detector=video_detector(args.detector, args.weights, args.score_threshold),
                       num_clips=args.num_clips, clip_len=args.clip_len, top_m=args.top_m)
    return preprocess(args.list, args.kind, args.out, shard_index=args.shard_index, num_shards=args.num_shards,
                      shard_size=args.shard_size, progress=not args.no_progress, **options)


def register(commands) -> None:
    """Adds ``preprocess`` to the CLI's sub-commands."""
    parser = commands.add_parser("preprocess", help="inputs -> graphs -> a sharded GraphStore (resumable)",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("list", help="proposal list (proposals) or video list 'path [label]' (tubelets, regions)")
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument("--out", required=True, help="the store folder")
    parser.add_argument("--shard-index", type=int, default=None, help="this process's index (default: RANK or 0)")
    parser.add_argument("--num-shards", type=int, default=None, help="processes (default: WORLD_SIZE or 1)")
    parser.add_argument("--shard-size", type=int, default=256, help="graphs per store shard (default: 256)")
    videos = parser.add_argument_group("videos (tubelets, regions)")
    videos.add_argument("--detector", default=None,
                        help="'shapes' (a shape-detector file) or a torchvision.models.detection builder name")
    videos.add_argument("--weights", default=None, help="the detector's state-dict file")
    videos.add_argument("--score-threshold", type=float, default=0.5)
    videos.add_argument("--num-clips", type=int, default=4)
    videos.add_argument("--clip-len", type=int, default=16)
    videos.add_argument("--top-m", type=int, default=8, help="tubelets per clip / regions per frame (default: 8)")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=_run)
