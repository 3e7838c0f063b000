r"""``python -m videograph demo``: the main job from pixels on the built-in synthetic data (synthetic videos written
as mp4 files, detected, linked into tubelets, MUSLE and baselines trained on them, see
:mod:`videograph.video.demo`; MUSLE's full table is ``python -m videograph ablation musle``);
``python -m videograph graphs``: a summary and a picture of every graph kind."""
import json
import os
import time
from typing import Dict, List, Optional, Sequence

from tqdm import tqdm

from .data import Proposals, Regions, Tubelets
from .datasets import SyntheticInteractions, SyntheticUntrimmed
from .graph import EDGE_KINDS, build_graph

__all__ = ["graph_summary", "run_graphs", "run_demo", "register"]

# ---------------------------------------------------------------------------------------------------------------
# graph summary (the former demo)
# ---------------------------------------------------------------------------------------------------------------


def graph_summary(videos: Sequence, **options) -> Dict[str, float]:
    """Builds the graph of every video (one kind) and returns mean nodes, mean edges per kind and ms per graph."""
    kinds = EDGE_KINDS[type(videos[0])]
    nodes, edges, seconds = 0, {kind: 0 for kind in kinds}, 0.0
    for video in videos:
        start = time.perf_counter()
        data = build_graph(video, **options)
        seconds += time.perf_counter() - start
        nodes += data.num_nodes
        for kind in kinds:
            edges[kind] += data[f"{kind}_edge_index"].size(1)
    count = len(videos)
    summary = {"graphs": count, "nodes": nodes / count, "ms_per_graph": 1e3 * seconds / count}
    summary.update({f"{kind}_edges": total / count for kind, total in edges.items()})
    return summary


def _draw_graphs(trimmed, untrimmed, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .viz import draw_box_graph, draw_proposal_graph

    video = trimmed[0]
    fig, axes = plt.subplots(1, 3, figsize=(15, 5))
    tubelets = build_graph(video.tubelets())
    clip = int(tubelets.clip.max()) // 2
    frames_per_clip = tubelets.boxes.size(1)
    middle = clip * frames_per_clip + frames_per_clip // 2
    draw_box_graph(tubelets, video.frames[middle], nodes=(tubelets.clip == clip).nonzero().flatten(),
                   ax=axes[0], title=f"tubelet graph, clip {clip} ({video.class_name}): dense edges")
    regions = build_graph(video.regions())
    t = video.num_frames // 2
    draw_box_graph(regions, video.frames[t], nodes=((regions.frame == t) | (regions.frame == t + 1)).nonzero().flatten(),
                   ax=axes[1], title=f"region graph, frames {t} and {t + 1}: front/back IoU edges")
    long_video = untrimmed[0]
    proposals = build_graph(long_video.proposals())
    draw_proposal_graph(proposals, ground_truth=long_video.ground_truth[0], ax=axes[2],
                        title="proposal graph: contextual (red), surrounding (blue)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_graphs(out: str = "results", num_videos: int = 64, seed: int = 0, progress: bool = True) -> Dict:
    """Generates the synthetic sets, builds every graph kind, prints a table and writes a PNG and a JSON."""
    os.makedirs(out, exist_ok=True)
    start = time.perf_counter()
    trimmed = SyntheticInteractions(num_videos, seed=seed)
    untrimmed = SyntheticUntrimmed(max(1, num_videos // 4), seed=seed)
    tubelets: List[Tubelets] = []
    regions: List[Regions] = []
    proposals: List[Proposals] = []
    for video in tqdm(trimmed, desc="synthetic videos", disable=not progress):
        tubelets.append(video.tubelets())
        regions.append(video.regions())
    for video in tqdm(untrimmed, desc="untrimmed videos", disable=not progress):
        proposals.append(video.proposals())
    generated = time.perf_counter() - start

    rows = {"tubelets (MUSLE)": graph_summary(tubelets), "regions (STRG)": graph_summary(regions),
            "proposals (P-GCN)": graph_summary(proposals)}
    print(f"\nGenerated {len(trimmed)} trimmed and {len(untrimmed)} untrimmed synthetic videos in "
          f"{generated:.1f} s (seed {seed}).\n")
    print(f"{'graph':<18} {'graphs':>6} {'nodes':>7}  {'edges per kind (mean)':<40} {'ms/graph':>8}")
    for name, row in rows.items():
        kinds = ", ".join(f"{k[:-6]} {v:.0f}" for k, v in row.items() if k.endswith("_edges"))
        print(f"{name:<18} {row['graphs']:>6} {row['nodes']:>7.1f}  {kinds:<40} {row['ms_per_graph']:>8.2f}")
    picture = os.path.join(out, "demo_graphs.png")
    _draw_graphs(trimmed, untrimmed, picture)
    with open(os.path.join(out, "demo_graphs.json"), "w") as handle:
        json.dump(rows, handle, indent=1)
    print(f"\nWrote {picture} and {os.path.join(out, 'demo_graphs.json')}.")
    return rows


def run_demo(out: str = "results", *, seed: int = 0, num_train: int = 2160, num_test: int = 270, epochs: int = 12,
             num_clips: int = 2, top_m: int = 8, score_threshold: float = 0.5, video_dir: Optional[str] = None,
             progress: bool = True, threads: Optional[int] = 1) -> Dict:
    """The main job from pixels: synthetic mp4s -> detected, linked tubelet graphs -> MUSLE and baselines
    (:mod:`videograph.video.demo`); writes ``<out>/demo.json`` and ``<out>/demo_tubelets.png``."""
    from .video.demo import run_pixels_demo
    return run_pixels_demo(out, seed=seed, num_train=num_train, num_test=num_test, epochs=epochs,
                           num_clips=num_clips, top_m=top_m, score_threshold=score_threshold, video_dir=video_dir,
                           progress=progress, threads=threads)


def register(commands) -> None:
    """Adds ``demo`` and ``graphs`` to the CLI's sub-commands."""
    demo = commands.add_parser("demo", help="the main job from pixels: synthetic mp4s -> detector -> tubelets -> "
                                            "MUSLE and baselines (writes results/demo.json and a PNG)")
    demo.add_argument("--out", default="results", help="output folder (default: results)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the videos, detector and models (default: 0)")
    demo.add_argument("--num-train", type=int, default=2160, help="training videos (default: 2160)")
    demo.add_argument("--num-test", type=int, default=270, help="test videos (default: 270)")
    demo.add_argument("--epochs", type=int, default=12, help="training epochs of the graph models (default: 12)")
    demo.add_argument("--video-dir", default=None, help="where the mp4s go (default: a temporary folder)")
    demo.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")
    demo.set_defaults(func=lambda args: run_demo(args.out, seed=args.seed, num_train=args.num_train,
                                                 num_test=args.num_test, epochs=args.epochs,
                                                 video_dir=args.video_dir, progress=not args.no_progress,
                                                 threads=args.threads))
    graphs = commands.add_parser("graphs", help="synthetic videos -> graphs of every kind, a summary and a PNG")
    graphs.add_argument("--out", default="results", help="output folder (default: results)")
    graphs.add_argument("--num-videos", type=int, default=64, help="trimmed synthetic videos (default: 64)")
    graphs.add_argument("--seed", type=int, default=0)
    graphs.add_argument("--no-progress", action="store_true", help="hide progress bars")
    graphs.set_defaults(func=lambda args: run_graphs(args.out, args.num_videos, args.seed,
                                                     progress=not args.no_progress))
