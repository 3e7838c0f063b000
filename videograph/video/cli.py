r"""``python -m videograph graph VIDEO``: the tubelet or region graph of a video file, summarised and drawn on its
sampled frames."""
import os
from typing import Dict


__all__ = ["summarize_graph", "run_graph", "register"]


def summarize_graph(data) -> Dict[str, object]:
    """Nodes, edges per kind, the sampled frames and the feature size of a graph of :func:`video_graph`."""
    kinds = {key[:-len("_edge_index")]: int(data[key].size(1)) for key in data.keys()
             if key.endswith("_edge_index") and key != "edge_index"}
    summary = {"nodes": int(data.num_nodes), "edges": int(data.edge_index.size(1)), "edges_per_kind": kinds,
               "features": int(data.x.size(1)), "frame_index": data.frame_index.tolist()}
    if "matched" in data:
        summary["matched_fraction"] = float(data.matched.float().mean())
    return summary


def _detector(name: str, weights, out: str, score_threshold: float, progress: bool):
    from .detector import TorchvisionDetector
    if name == "shapes":
        from .demo import _detector as shape_detector
        return shape_detector(out, 0, score_threshold, progress, print)[0]
    import torchvision.models.detection as detection
    builder = getattr(detection, name, None)
    if builder is None or not callable(builder):
        raise ValueError(f"'--detector' must be 'shapes' or a torchvision.models.detection builder, got {name!r}")
    if weights is None:
        raise ValueError(f"'--detector {name}' needs '--weights PATH' (a state dict; nothing is downloaded)")
    model = builder(weights=None, weights_backbone=None)
    return TorchvisionDetector(model, weights=weights, score_threshold=score_threshold)


def run_graph(video: str, *, kind: str = "tubelets", out: str = "results", detector: str = "shapes",
              weights=None, num_clips: int = 4, clip_len: int = 16, top_m: int = 8, score_threshold: float = 0.5,
              progress: bool = True) -> Dict[str, object]:
    """Builds the graph of ``video``, prints its summary and writes ``<out>/graph_<name>.png``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..graph import build_graph
    from ..io import VideoReader
    from ..viz import draw_box_graph

    if not os.path.isfile(video):
        raise FileNotFoundError(f"video file not found: {video}")
    os.makedirs(out, exist_ok=True)
    found = _detector(detector, weights, out, score_threshold, progress)
    with VideoReader(video) as reader:
        data = build_graph(reader, kind=kind, detector=found, num_clips=num_clips, clip_len=clip_len, top_m=top_m,
                           progress=progress)
        middle = data.frame_index[:, clip_len // 2]
        frames = reader.get_frames_at(middle)
    summary = summarize_graph(data)
    print(f"{video}: {kind} graph, {summary['nodes']} nodes, {summary['edges']} edges "
          f"({', '.join(f'{k} {v}' for k, v in summary['edges_per_kind'].items())}), {summary['features']}-d "
          f"features, {num_clips} clips x {clip_len} frames (first frames {data.frame_index[:, 0].tolist()})")
    print(data)
    fig, axes = plt.subplots(1, num_clips, figsize=(4 * num_clips, 4), squeeze=False)
    for clip in range(num_clips):
        if kind == "tubelets":
            nodes = (data.clip == clip).nonzero().flatten()
            options = dict(time=clip_len // 2)
        else:
            nodes = (data.frame == clip * clip_len + clip_len // 2).nonzero().flatten()
            options = {}
        draw_box_graph(data, frames[clip], nodes=nodes, ax=axes[0, clip], max_edges=60,
                       title=f"clip {clip}, frame {int(middle[clip])}: {nodes.numel()} nodes", **options)
    fig.suptitle(f"{os.path.basename(video)}: {kind} graph", fontsize=10)
    fig.tight_layout()
    picture = os.path.join(out, f"graph_{os.path.splitext(os.path.basename(video))[0]}_{kind}.png")
    fig.savefig(picture, dpi=100)
    plt.close(fig)
    print(f"Wrote {picture}.")
    summary["png"] = picture
    return summary


def register(commands) -> None:
    """Adds ``graph`` to the CLI's sub-commands."""
    parser = commands.add_parser("graph", help="a video file -> its tubelet or region graph: summary and PNG")
    parser.add_argument("video", help="the video file")
    parser.add_argument("--kind", choices=("tubelets", "regions"), default="tubelets")
    parser.add_argument("--out", default="results", help="output folder (default: results)")
    parser.add_argument("--detector", default="shapes",
                        help="'shapes' (the synthetic-shape FCOS, trained and cached in --out on first use) or a "
                             "torchvision.models.detection builder name with --weights")
    parser.add_argument("--weights", default=None, help="state-dict file of the torchvision detector")
    parser.add_argument("--num-clips", type=int, default=4)
    parser.add_argument("--clip-len", type=int, default=16)
    parser.add_argument("--top-m", type=int, default=8, help="tubelets per clip / regions per frame (default: 8)")
    parser.add_argument("--score-threshold", type=float, default=0.5)
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(func=lambda args: run_graph(
        args.video, kind=args.kind, out=args.out, detector=args.detector, weights=args.weights,
        num_clips=args.num_clips, clip_len=args.clip_len, top_m=args.top_m, score_threshold=args.score_threshold,
        progress=not args.no_progress))
