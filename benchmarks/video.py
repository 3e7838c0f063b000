"""Video decoding: VideoReader against naive PyAV loops, and torchcodec beside PyAV where it is installed.

    python benchmarks/video.py [--quick | --smoke] [--out DIR] [--no-progress]

Writes <out>/bench_video.json (the flat dict of KEYS; null where a figure was not measured) and
<out>/bench_video.png. Medians over rounds interleaved across the methods, so that load from other
processes hits them alike; wall-clock seconds (and the process's CPU seconds, all threads, for the full
decode: on a machine shared with other jobs FFmpeg's threads buy wall time only where cores are idle);
torch uses one thread, FFmpeg its default threads.

* decode: a full decode of the 1080p clip ../shared/data/videos/mmaction2/S001C001P001R001A001_rgb.avi
  (--smoke: a tiny clip this script writes) by ``VideoReader(path)[:]`` against the naive PyAV loop
  (``to_ndarray`` per frame of ``container.decode``, PyAV's default threading). Goal: >= 1.5x.
  Each result is dropped once timed, as a caller done with it would: glibc recycles the naive loop's
  per-frame buffers and the reader its output buffer (``videograph/io/_buffers.py``); "fresh" is the
  reader with its buffer pool emptied before each read (the cost of a first read: fresh memory).
  The median minor page faults of each say which memory was fresh.
  torchcodec's own decoder is timed beside them, frame by frame up to its first failure, compared per
  frame decoded (its frames of that AVI are not in display order, so the reader refuses torchcodec
  for it, see docs/io.md); null where torchcodec is absent.
* sparse: MUSLE's sampling, 4 clips x 16 frames (``clip_indices(mode="uniform")``), from a long video
  this script writes (2 min at 25 fps, 320x240 H.264, a keyframe every 2 s as streaming encoders
  write; --quick 1 min, --smoke 4 s at 64x48) by ``reader.get_frames_at`` against decoding the whole
  video with the naive loop and keeping those frames. Goal: >= 3x. The reader's torchcodec backend
  beside it, null where absent.

* graph: video -> tubelet graph per video (``videograph.build_graph(path, kind="tubelets")``, 4 clips x 16
  frames of 64-frame 128x128 synthetic videos this script writes; --quick 4 videos, full 8, --smoke one
  16-frame 64x64 video, 2 clips x 4), seconds per video split into decode, detect, link (IoULinker and the
  graph) and features (RoIFeatures on the default SmallCNN). The detector is the FCOS of
  ``videograph.video.shape_detector`` untrained (seeded), keeping its 32 best boxes per frame: the timing of a
  trained one with a busy scene (32 boxes to link per frame, top_m = 8).

--smoke neither reads ../shared nor imports torchcodec (its torchcodec figures are null).
The data files are looked up in $VIDEOGRAPH_SHARED_DATA, else ../shared/data beside the repository;
where the 1080p clip is absent the decode figures are null (decode_video says so).
"""
import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time

import matplotlib

matplotlib.use("Agg")
import av  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from videograph.io import VideoReader, clip_indices, write_video  # noqa: E402
from videograph.io import _buffers  # noqa: E402
from videograph.io._torchcodec import torchcodec_available  # noqa: E402

SHARED_DATA = os.environ.get("VIDEOGRAPH_SHARED_DATA", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data"))
CLIP_1080P = os.path.join("videos", "mmaction2", "S001C001P001R001A001_rgb.avi")
NUM_CLIPS, CLIP_LEN = 4, 16

KEYS = (
    "mode", "cpu_count", "load_avg_1min", "pyav_version", "torchcodec_version",
    # full decode
    "decode_video", "decode_frames", "decode_width", "decode_height",
    "decode_naive_s", "decode_reader_s", "decode_reader_fresh_s", "decode_torchcodec_s",
    "decode_naive_cpu_s", "decode_reader_cpu_s", "decode_reader_fresh_cpu_s",
    "decode_naive_page_faults", "decode_reader_page_faults", "decode_reader_fresh_page_faults",
    "decode_torchcodec_frames", "decode_naive_fps", "decode_reader_fps", "decode_torchcodec_fps",
    "decode_speedup_vs_naive", "decode_fresh_speedup_vs_naive", "decode_torchcodec_speedup_vs_naive",
    # sparse clips from a long video
    "sparse_video_seconds", "sparse_video_frames", "sparse_width", "sparse_height", "sparse_gop",
    "sparse_num_clips", "sparse_clip_len", "sparse_frames_requested",
    "sparse_whole_s", "sparse_reader_s", "sparse_torchcodec_s",
    "sparse_speedup_vs_whole", "sparse_torchcodec_speedup_vs_whole",
    # video -> tubelet graph
    "graph_videos", "graph_frames_per_video", "graph_size", "graph_nodes", "graph_decode_s", "graph_detect_s",
    "graph_link_s", "graph_features_s", "graph_total_s",
)


def minor_faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def interleaved_medians(steps, rounds, warmup, progress, desc, faults=None):
    """Median wall and CPU (all threads of this process) seconds of each step, round-robin; with a
    ``faults`` dict, the median minor page faults of each step go in it (the result is dropped inside
    the step's timing, as a caller that is done with it drops it)."""
    wall = {name: [] for name in steps}
    cpu = {name: [] for name in steps}
    flt = {name: [] for name in steps}
    for r in tqdm(range(warmup + rounds), desc=desc, disable=not progress, leave=False):
        for name, step in steps.items():
            f, t, c = minor_faults(), time.perf_counter(), time.process_time()
            step()
            if r >= warmup:
                wall[name].append(time.perf_counter() - t)
                cpu[name].append(time.process_time() - c)
                flt[name].append(minor_faults() - f)
    if faults is not None:
        faults.update({name: int(statistics.median(v)) for name, v in flt.items()})
    return ({name: statistics.median(v) for name, v in wall.items()},
            {name: statistics.median(v) for name, v in cpu.items()})


def naive_decode(path, keep=None):
    """The textbook loop: every frame of container.decode to an RGB array (PyAV's default threads);
    keeps all of them, or those whose index is in ``keep``."""
    frames = []
    with av.open(path) as container:
        for i, frame in enumerate(container.decode(video=0)):
            array = frame.to_ndarray(format="rgb24")
            if keep is None or i in keep:
                frames.append(array)
    return frames


def moving_shapes(num_frames, height, width, seed=0):
    """Frames of coloured rectangles moving over a fixed gradient: what the synthetic videos hold."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    background = np.stack([xx * 255 // max(width - 1, 1), yy * 255 // max(height - 1, 1),
                           np.full_like(xx, 96)], axis=-1).astype(np.uint8)
    k = 4
    size = rng.integers(height // 8 + 2, height // 3 + 3, size=(k, 2))
    pos = rng.uniform(0, 1, size=(k, 2)) * [height, width]
    vel = rng.uniform(-2, 2, size=(k, 2))
    colour = rng.integers(0, 256, size=(k, 3), dtype=np.uint8)
    for _ in range(num_frames):
        frame = background.copy()
        for j in range(k):
            y, x = (pos[j] % [height, width]).astype(int)
            frame[y:y + size[j, 0], x:x + size[j, 1]] = colour[j]
        pos += vel
        yield frame


def bench_decode(args, path, results):
    if path is None:
        return
    with VideoReader(path) as reader:
        m = reader.metadata
    results.update(decode_frames=m.num_frames, decode_width=m.width, decode_height=m.height)
    def fresh():  # the reader without recycled output memory: what a first read costs
        _buffers.clear()
        VideoReader(path)[:]
    steps = {"naive": lambda: naive_decode(path), "reader": lambda: VideoReader(path)[:], "fresh": fresh}
    tc_frames = None
    if args.torchcodec:
        from torchcodec.decoders import VideoDecoder

        def torchcodec_decode():
            # torchcodec's own decoder, frame after frame until the end or its first failure (0.17 stops
            # three frames short of the end of the 1080p AVI, whose frames it numbers out of display
            # order): the decoding work is what is timed, per frame decoded.
            decoder = VideoDecoder(path, dimension_order="NHWC", seek_mode="exact")
            frames = []
            try:
                for i in range(len(decoder)):
                    frames.append(decoder[i])
            except RuntimeError:
                pass
            return frames
        tc_frames = len(torchcodec_decode())
        steps["torchcodec"] = torchcodec_decode
    faults = {}
    sec, cpu = interleaved_medians(steps, args.rounds, 1, args.progress, "decode", faults)
    n = m.num_frames
    results.update(decode_naive_s=sec["naive"], decode_reader_s=sec["reader"],
                   decode_reader_fresh_s=sec["fresh"],
                   decode_naive_cpu_s=cpu["naive"], decode_reader_cpu_s=cpu["reader"],
                   decode_reader_fresh_cpu_s=cpu["fresh"], decode_naive_page_faults=faults["naive"],
                   decode_reader_page_faults=faults["reader"], decode_reader_fresh_page_faults=faults["fresh"],
                   decode_naive_fps=n / sec["naive"], decode_reader_fps=n / sec["reader"],
                   decode_speedup_vs_naive=sec["naive"] / sec["reader"],
                   decode_fresh_speedup_vs_naive=sec["naive"] / sec["fresh"])
    if "torchcodec" in sec:
        results.update(decode_torchcodec_s=sec["torchcodec"], decode_torchcodec_frames=tc_frames,
                       decode_torchcodec_fps=tc_frames / sec["torchcodec"],
                       decode_torchcodec_speedup_vs_naive=tc_frames / sec["torchcodec"] / (n / sec["naive"]))


def bench_sparse(args, tmp, results):
    fps, gop = 25, 50
    seconds, height, width = {"smoke": (4, 48, 64), "quick": (60, 240, 320), "full": (120, 240, 320)}[args.mode]
    num_frames = seconds * fps
    path = os.path.join(tmp, "long.mp4")
    write_video(path, tqdm(moving_shapes(num_frames, height, width), total=num_frames, desc="write long video",
                           disable=not args.progress, leave=False), fps,
                options={"g": str(gop), "keyint_min": str(gop), "preset": "veryfast"})
    clip_len = CLIP_LEN if args.mode != "smoke" else 4
    index = clip_indices(num_frames, NUM_CLIPS, clip_len, mode="uniform").flatten()
    keep = set(index.tolist())
    reader = VideoReader(path)
    assert len(reader) == num_frames
    steps = {"whole": lambda: naive_decode(path, keep),
             "reader": lambda: VideoReader(path).get_frames_at(index)}
    expected = torch.from_numpy(np.stack(naive_decode(path, keep)))
    assert torch.equal(VideoReader(path).get_frames_at(index.unique()), expected)  # the same frames
    if args.torchcodec:
        steps["torchcodec"] = lambda: VideoReader(path, backend="torchcodec").get_frames_at(index)
        assert torch.equal(VideoReader(path, backend="torchcodec").get_frames_at(index.unique()), expected)
    reader.close()
    sec, _ = interleaved_medians(steps, args.rounds, 1, args.progress, "sparse")
    results.update(sparse_video_seconds=seconds, sparse_video_frames=num_frames, sparse_width=width,
                   sparse_height=height, sparse_gop=gop, sparse_num_clips=NUM_CLIPS, sparse_clip_len=clip_len,
                   sparse_frames_requested=int(index.numel()), sparse_whole_s=sec["whole"],
                   sparse_reader_s=sec["reader"], sparse_speedup_vs_whole=sec["whole"] / sec["reader"])
    if "torchcodec" in sec:
        results.update(sparse_torchcodec_s=sec["torchcodec"],
                       sparse_torchcodec_speedup_vs_whole=sec["whole"] / sec["torchcodec"])


def bench_graph(args, tmp, results):
    """Video -> tubelet graph, seconds per video by stage (means over the videos)."""
    from videograph import build_graph
    from videograph.datasets import SyntheticInteractions
    from videograph.video import TorchvisionDetector
    from videograph.video.shape_detector import shape_detector_model

    count, frames, size, clips, clip_len = {"smoke": (1, 16, 64, 2, 4), "quick": (4, 64, 128, 4, 16),
                                            "full": (8, 64, 128, 4, 16)}[args.mode]
    torch.manual_seed(0)
    model = shape_detector_model((size, size), score_thresh=0.0, detections_per_img=32)
    detector = TorchvisionDetector(model, score_threshold=0.0, batch_size=16)
    videos = SyntheticInteractions(count, num_frames=frames, frame_size=(size, size), seed=0)
    paths = []
    for i, video in enumerate(videos):
        paths.append(os.path.join(tmp, f"graph_{i}.mp4"))
        write_video(paths[-1], video.frames, 25)
    build_graph(paths[0], detector=detector, num_clips=clips, clip_len=clip_len, progress=False)  # warm-up
    timings, nodes, tic = {}, 0, time.perf_counter()
    for path in tqdm(paths, desc="video -> graph", disable=not args.progress, leave=False):
        nodes += build_graph(path, detector=detector, num_clips=clips, clip_len=clip_len, top_m=8,
                             progress=False, timings=timings).num_nodes
    total = time.perf_counter() - tic
    results.update(graph_videos=count, graph_frames_per_video=frames, graph_size=f"{size}x{size}",
                   graph_nodes=nodes / count, graph_total_s=total / count,
                   **{f"graph_{k}_s": timings[k] / count for k in ("decode", "detect", "link", "features")})


def plot_graph(results, ax):
    stages = ("decode", "detect", "link", "features")
    values = [results.get(f"graph_{k}_s") or 0 for k in stages]
    ax.bar(range(4), values, color="tab:green")
    ax.set_xticks(range(4), stages, fontsize=8)
    ax.set_ylabel("seconds per video (mean)")
    ax.set_title(f"video -> tubelet graph ({results['graph_size']}, {results['graph_frames_per_video']} frames)\n"
                 f"{results['graph_total_s']:.2f} s per video, {results['graph_nodes']:.0f} nodes", fontsize=9)


def plot(results, path):
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    plot_graph(results, axes[2])
    panels = [("decode", f"full decode, {results['decode_video'] or 'not measured'}",
               [("naive PyAV loop", "decode_naive_s"), ("VideoReader (PyAV)", "decode_reader_s"),
                ("VideoReader,\nfresh memory", "decode_reader_fresh_s"), ("torchcodec", "decode_torchcodec_s")],
               1.5, "decode_speedup_vs_naive"),
              ("sparse", f"{results['sparse_num_clips']} clips x {results['sparse_clip_len']} frames of a "
                         f"{results['sparse_video_seconds']} s video",
               [("decode whole (naive)", "sparse_whole_s"), ("VideoReader (PyAV)", "sparse_reader_s"),
                ("VideoReader (torchcodec)", "sparse_torchcodec_s")], 3.0, "sparse_speedup_vs_whole")]
    for ax, (_, title, bars, goal, speed_key) in zip(axes, panels):
        labels = [label + ("" if results.get(key) is not None else "\n(not measured)") for label, key in bars]
        values = [results.get(key) or 0 for _, key in bars]
        colors = ["grey", "tab:blue"] + ["tab:cyan"] * (len(bars) - 3) + ["tab:orange"]
        rects = ax.bar(range(len(bars)), values, color=colors)
        for rect, v in zip(rects, values):
            if v:
                ax.annotate(f"{v:.2f} s", (rect.get_x() + rect.get_width() / 2, v), ha="center", va="bottom",
                            fontsize=8)
        ax.set_xticks(range(len(bars)), labels, fontsize=8)
        ax.set_ylabel("seconds (median)")
        speed = results.get(speed_key)
        ax.set_title(f"{title}\nspeed-up {speed:.2f}x (goal {goal}x)" if speed else title, fontsize=9)
    fig.suptitle(f"VideoReader, {results['cpu_count']} cores, load {results['load_avg_1min']:.1f}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer rounds, a 1 min long video")
    size.add_argument("--smoke", action="store_true", help="tiny written clips only, done in seconds")
    parser.add_argument("--out", default="results", help="output folder (default: results/)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")
    args = parser.parse_args(argv)
    args.mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    args.rounds = {"smoke": 1, "quick": 3, "full": 5}[args.mode]
    torch.set_num_threads(1)
    results = {key: None for key in KEYS}
    results.update(mode=args.mode, cpu_count=os.cpu_count(), load_avg_1min=os.getloadavg()[0],
                   pyav_version=av.__version__)
    args.torchcodec = not args.smoke and torchcodec_available()  # smoke: no torchcodec import (seconds)
    if args.torchcodec:
        import torchcodec
        results["torchcodec_version"] = torchcodec.__version__
    with tempfile.TemporaryDirectory() as tmp:
        if args.smoke:  # never reads ../shared: a tiny clip of its own
            path = os.path.join(tmp, "tiny.mp4")
            write_video(path, moving_shapes(24, 48, 64), 25)
            results["decode_video"] = "written 64x48, 24 frames"
        else:
            path = os.path.join(SHARED_DATA, CLIP_1080P)
            results["decode_video"] = os.path.basename(path) if os.path.exists(path) else None
            path = path if os.path.exists(path) else None
        bench_decode(args, path, results)
        bench_sparse(args, tmp, results)
        bench_graph(args, tmp, results)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench_video.json"), "w") as f:
        json.dump(results, f, indent=2)
    plot(results, os.path.join(args.out, "bench_video.png"))
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
