"""Tensor Sketch against the explicit bilinear feature at LGD's scale (LGD-3D's x_L: C = 2048 channels at
4 x 7 x 7 = 196 locations; sketch d = 8192), per clip, one thread.

* explicit: the bilinear feature mean_i x_i x_i^T (C^2 ~ 4.2 M values) and a linear classifier on it;
* sketch: mean_i TS(x_i, x_i) (d values, :class:`videograph.nn.TensorSketch`) and a linear classifier on it.

Times are medians over repeats of a batch of clips, divided by the batch; memory is the bytes of the feature and
of the intermediate tensors each path creates per clip (counted from the tensors themselves), and of the
classifier's weights for ``--classes`` classes (measured) and for Kinetics-400 (400 classes, counted; the
explicit one, 6.7 GB, is not built). ``approx_relative_error`` is the relative error of the sketched kernel
<phi(x), phi(x')> against the exact <x, x'>_2 on random non-negative features.

    python benchmarks/tensor_sketch.py [--quick | --smoke] [--out DIR]

writes ``<out>/bench_tensor_sketch.json`` and ``<out>/bench_tensor_sketch.png``.
"""
import argparse
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MB = 1024 ** 2

KEYS = ("channels", "sketch_channels", "locations", "explicit_feature_values", "sketch_feature_values",
        "explicit_ms_per_clip", "sketch_ms_per_clip", "explicit_classifier_ms_per_clip",
        "sketch_classifier_ms_per_clip", "explicit_feature_mb_per_clip", "sketch_feature_mb_per_clip",
        "explicit_intermediate_mb_per_clip", "sketch_intermediate_mb_per_clip", "explicit_classifier_mb",
        "sketch_classifier_mb", "explicit_classifier_mb_k400", "sketch_classifier_mb_k400", "speedup",
        "memory_ratio", "approx_relative_error", "classes")


def _median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _mb(*tensors) -> float:
    return sum(t.numel() * t.element_size() for t in tensors) / MB


def run(channels: int, sketch_channels: int, locations: int, batch: int, classes: int, repeats: int) -> dict:
    import torch

    sys.path.insert(0, ROOT)
    from videograph.nn import TensorSketch
    from videograph.nn.tensor_sketch import count_sketch

    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    x = torch.relu(torch.randn(batch, locations, channels, generator=gen))       # x_L after its ReLU
    sketch = TensorSketch(channels, sketch_channels, generator=gen)
    explicit_fc = torch.nn.Linear(channels * channels, classes)
    sketch_fc = torch.nn.Linear(sketch_channels, classes)

    def explicit_feature():
        return (x.transpose(1, 2) @ x / locations).flatten(1)                   # [B, C^2]

    def sketch_feature():
        return sketch(x).mean(1)                                                  # [B, d]

    with torch.no_grad():
        f_explicit, f_sketch = explicit_feature(), sketch_feature()
        explicit_ms = _median_ms(explicit_feature, repeats) / batch
        sketch_ms = _median_ms(sketch_feature, repeats) / batch
        explicit_fc_ms = _median_ms(lambda: explicit_fc(f_explicit), repeats) / batch
        sketch_fc_ms = _median_ms(lambda: sketch_fc(f_sketch), repeats) / batch
        # Intermediates of one clip: the sketch path's count sketches, their spectra and per-location sketches.
        one = x[:1]
        cs1 = count_sketch(one, sketch.index1, sketch.sign1, sketch_channels)
        spectrum = torch.fft.rfft(cs1, n=sketch_channels)
        per_location = sketch(one)
        sketch_intermediate = _mb(cs1, cs1, spectrum, spectrum, spectrum, per_location)
        explicit_intermediate = _mb(f_explicit[:1])
        # The kernel approximation on pairs of clips.
        exact = (f_explicit[:-1] * f_explicit[1:]).sum(1) if batch > 1 else (f_explicit * f_explicit).sum(1)
        approx = (f_sketch[:-1] * f_sketch[1:]).sum(1) if batch > 1 else (f_sketch * f_sketch).sum(1)
        error = float(((approx - exact).abs() / exact.abs()).mean())
    figures = {
        "channels": channels, "sketch_channels": sketch_channels, "locations": locations, "classes": classes,
        "explicit_feature_values": channels * channels, "sketch_feature_values": sketch_channels,
        "explicit_ms_per_clip": explicit_ms, "sketch_ms_per_clip": sketch_ms,
        "explicit_classifier_ms_per_clip": explicit_fc_ms, "sketch_classifier_ms_per_clip": sketch_fc_ms,
        "explicit_feature_mb_per_clip": _mb(f_explicit[:1]), "sketch_feature_mb_per_clip": _mb(f_sketch[:1]),
        "explicit_intermediate_mb_per_clip": explicit_intermediate,
        "sketch_intermediate_mb_per_clip": sketch_intermediate,
        "explicit_classifier_mb": _mb(explicit_fc.weight), "sketch_classifier_mb": _mb(sketch_fc.weight),
        "explicit_classifier_mb_k400": 400 * channels * channels * 4 / MB,
        "sketch_classifier_mb_k400": 400 * sketch_channels * 4 / MB,
        "approx_relative_error": error,
    }
    figures["speedup"] = (explicit_ms + explicit_fc_ms) / (sketch_ms + sketch_fc_ms)
    figures["memory_ratio"] = (figures["explicit_feature_mb_per_clip"] + figures["explicit_classifier_mb_k400"]) / (
        figures["sketch_feature_mb_per_clip"] + figures["sketch_classifier_mb_k400"])
    return figures


def plot(figures: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    names = ("explicit", "sketch")
    axes[0].bar(names, [figures["explicit_ms_per_clip"], figures["sketch_ms_per_clip"]], label="feature")
    axes[0].bar(names, [figures["explicit_classifier_ms_per_clip"], figures["sketch_classifier_ms_per_clip"]],
                bottom=[figures["explicit_ms_per_clip"], figures["sketch_ms_per_clip"]],
                label=f"classifier ({figures['classes']} classes)")
    axes[0].set(title="ms per clip (one thread)", ylabel="ms")
    axes[0].legend()
    axes[1].bar(names, [figures["explicit_feature_mb_per_clip"], figures["sketch_feature_mb_per_clip"]],
                label="feature per clip")
    axes[1].bar(names, [figures["explicit_classifier_mb_k400"], figures["sketch_classifier_mb_k400"]],
                bottom=[figures["explicit_feature_mb_per_clip"], figures["sketch_feature_mb_per_clip"]],
                label="classifier, 400 classes")
    axes[1].set(title="memory", ylabel="MB", yscale="log")
    axes[1].legend()
    fig.suptitle(f"C = {figures['channels']}, d = {figures['sketch_channels']}, {figures['locations']} locations")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="paper scale, fewer clips and repeats")
    mode.add_argument("--smoke", action="store_true", help="tiny sizes, seconds")
    parser.add_argument("--out", default="results", help="output folder (default: results/)")
    args = parser.parse_args(argv)
    if args.smoke:
        figures = run(64, 256, 16, batch=2, classes=4, repeats=2)
    elif args.quick:
        figures = run(2048, 8192, 196, batch=2, classes=16, repeats=3)
    else:
        figures = run(2048, 8192, 196, batch=4, classes=16, repeats=7)
    missing = set(KEYS) - set(figures)
    if missing:
        raise RuntimeError(f"figures without a value: {sorted(missing)}")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench_tensor_sketch.json"), "w") as handle:
        json.dump({key: figures[key] for key in KEYS}, handle, indent=1)
    plot(figures, os.path.join(args.out, "bench_tensor_sketch.png"))
    for key in KEYS:
        print(f"{key:>36}: {figures[key]:.4g}" if isinstance(figures[key], float) else f"{key:>36}: {figures[key]}")
    return figures


if __name__ == "__main__":
    main()
