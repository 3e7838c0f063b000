r"""U2S's ablation (its tables I-III) on synthetic confusable classes: ``python -m videograph ablation u2s``.

Per seed: :class:`~videograph.datasets.SyntheticConfusable` train / val / test videos (3 groups of 3 classes that
differ only in a small mark, and 3 easy classes), a :class:`~videograph.models.U2S` on the small 3D CNN trained in
the paper's stages (UN; confusion matrix with the top-N rule on the validation videos; CSN and mask network;
joint), and a copy of it whose CSN and joint stages run without category regularization. Rows: ``Universal``,
``Bridge``, ``Specific`` (each head of the final model alone), ``U2S (U+B+S)`` (their mean), ``No regularization``
(U+B+S of the copy trained with lambda = 0), ``Oracle masks`` (U+B+S with the masks chosen by the true class).
Writes ``ablation_u2s.json`` (all test videos), ``ablation_u2s_confusable.json`` (the confusable classes only) and
``u2s_confusion.png`` (the first seed's estimated confusion matrix against the planted groups).
"""
import copy
import os
import time
from typing import Dict, Optional, Sequence

import torch
from torch_geometric.data import Data
from tqdm import tqdm

from . import summarize

__all__ = ["DESCRIPTION", "DEFAULT_SEEDS", "ROWS", "SETTINGS", "run"]

DESCRIPTION = "U2S tables I-III on synthetic confusable classes (Universal, Bridge, Specific, U2S, no reg., oracle)"
DEFAULT_SEEDS = (0, 1, 2)
ROWS = ("Universal", "Bridge", "Specific", "U2S (U+B+S)", "No regularization", "Oracle masks")

#: Sizes and schedule of the reported table (chosen on seeds 10-12).
SETTINGS = dict(num_train=1200, num_val=360, num_test=360, epochs=(6, 5, 2), lr=(3e-3, 3e-3, 3e-4), batch_size=32,
                width=16)


def _graphs(dataset):
    videos, labels = dataset.tensors()
    return [Data(video=v[None], y=labels[i:i + 1]) for i, v in enumerate(videos)], videos, labels


@torch.no_grad()
def _accuracy(model, videos, labels, confusable, classes=None, head=None):
    model.eval()
    out = model.outputs(videos, classes)
    scores = model.combine(out) if head is None else getattr(out, head)
    correct = scores.argmax(-1) == labels
    return float(correct.float().mean()), float(correct[confusable[labels]].float().mean())


def _run_seed(seed: int, out: str, progress: bool, threads: Optional[int], draw: bool) -> Dict:
    from ..datasets.synthetic_confusable import SyntheticConfusable
    from ..models.u2s import U2S, fit_u2s

    if threads:
        torch.set_num_threads(threads)
    tic = time.perf_counter()
    s = SETTINGS
    train_set = SyntheticConfusable(s["num_train"], seed=seed, split="train")
    val_set = SyntheticConfusable(s["num_val"], seed=seed, split="val")
    test_set = SyntheticConfusable(s["num_test"], seed=seed, split="test")
    train, _, _ = _graphs(train_set)
    val, _, _ = _graphs(val_set)
    _, videos, labels = _graphs(test_set)
    confusable = test_set.confusable
    torch.manual_seed(seed)
    model = U2S(_small(s["width"]), train_set.num_classes)
    schedule = dict(epochs=s["epochs"], lr=s["lr"], batch_size=s["batch_size"], seed=seed, progress=progress)
    fit_u2s(model, train, stages=("universal",), **schedule)
    plain = copy.deepcopy(model)
    plain.reg_weight = 0.0
    fit_u2s(model, train, confusion_set=val, stages=("specific", "joint"), **schedule)
    fit_u2s(plain, train, confusion_set=val, stages=("specific", "joint"), **schedule)
    rows = {
        "Universal": _accuracy(model, videos, labels, confusable, head="universal"),
        "Bridge": _accuracy(model, videos, labels, confusable, head="bridge"),
        "Specific": _accuracy(model, videos, labels, confusable, head="specific"),
        "U2S (U+B+S)": _accuracy(model, videos, labels, confusable),
        "No regularization": _accuracy(plain, videos, labels, confusable),
        "Oracle masks": _accuracy(model, videos, labels, confusable, classes=labels),
    }
    if draw:
        _draw_confusion(model.similarity, model.confusable, train_set, os.path.join(out, "u2s_confusion.png"))
    return {"rows": rows, "seconds": time.perf_counter() - tic,
            "num_confusing": float(model.confusable.sum(1).float().mean())}


def _small(width: int):
    from ..models.backbones import Small3DCNN
    return Small3DCNN(width=width)


def _draw_confusion(similarity, confusable, dataset, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    planted = torch.eye(dataset.num_classes, dtype=torch.bool)
    for group in dataset.groups:
        planted[torch.tensor(group)[:, None], torch.tensor(group)[None]] = True
    axes[0].imshow(similarity.numpy(), cmap="viridis")
    axes[0].set_title("class similarity S (channel sparsity of the UN)")
    from matplotlib.colors import ListedColormap
    shown = confusable.int() + 2 * planted.int()     # 0 neither, 1 found only, 2 missed, 3 found and planted
    axes[1].imshow(shown.numpy(), cmap=ListedColormap(["white", "tab:blue", "tab:orange", "tab:green"]),
                   vmin=-0.5, vmax=3.5)
    axes[1].set_title("C vs the planted groups: green found, orange missed, blue extra", fontsize=9)
    for ax in axes:
        ax.set_xticks(range(dataset.num_classes), dataset.classes, rotation=90, fontsize=6)
        ax.set_yticks(range(dataset.num_classes), dataset.classes, fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(seeds: Sequence[int] = DEFAULT_SEEDS, out: str = "results", *, progress: bool = True,
        jobs: Optional[int] = None, threads: Optional[int] = 1) -> Dict[str, Dict]:
    """Every row for every seed (seeds in ``jobs`` processes, default one per core); returns ``{"": all test
    videos, "confusable": the confusable classes only}``."""
    os.makedirs(out, exist_ok=True)
    seeds = list(seeds)
    jobs = min(jobs or os.cpu_count() or 1, len(seeds))
    arguments = [(seed, out, progress and jobs == 1, threads, seed == seeds[0]) for seed in seeds]
    if jobs == 1:
        results = [_run_seed(*a) for a in tqdm(arguments, desc="u2s seeds", disable=not progress)]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(_run_seed, *zip(*arguments)))
    print("u2s: seconds per seed " + ", ".join(f"{r['seconds']:.0f}" for r in results)
          + "; mean confusable classes per class " + ", ".join(f"{r['num_confusing']:.2f}" for r in results))
    return {"": {row: summarize([r["rows"][row][0] for r in results]) for row in ROWS},
            "confusable": {row: summarize([r["rows"][row][1] for r in results]) for row in ROWS}}
