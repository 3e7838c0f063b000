r"""``python -m videograph train``: one process, or K under ``torchrun --nproc-per-node=K`` (gloo on the CPU,
nccl on CUDA), with DDP. See docs/scale.md.

    python -m videograph train --model strg --data synthetic --epochs 2 --batch-size 16 --out results/train
    torchrun --nproc-per-node=2 -m videograph train --model strg --data synthetic --epochs 2 --batch-size 8
    torchrun --nproc-per-node=2 -m videograph train --model pgcn --data synthetic --epochs 2 --batch-size 4

Every rank builds the same data (a seeded synthetic set, or a :class:`~videograph.datasets.GraphStore` folder),
the same initial model (seeded; DDP also broadcasts rank 0's parameters), and reads its share of each epoch from
a :class:`~torch.utils.data.DistributedSampler` (``set_epoch`` every epoch; ``drop_last=True``, so every rank
has the same number of equal batches and no rank waits: at most K - 1 graphs an epoch are left out). The loss is
computed inside the DDP-wrapped :class:`~videograph.distributed.GlobalLoss`, normalised by the global sample
count; metrics are all-reduced; rank 0 writes ``<out>/model.pt`` (a state dict, loads with ``weights_only=True``).
MUSLE (``--model musle``) all-reduces its mixtures' statistics, keys its sub-graph sampling on each graph's
``video_id`` and refits on each rank's share at epoch ends (docs/scale.md lists every synchronised statistic).
"""
import argparse
import json
import os
import time
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn
from torch.utils.data import DistributedSampler
from torch_geometric.loader import DataLoader
from tqdm import tqdm

from .distributed import GlobalLoss, all_reduce_sum, init_from_env, world

__all__ = ["MODELS", "synthetic_graphs", "build_model", "cast_graphs", "train", "spawn_worker", "register"]

#: Models the command trains.
MODELS = ("strg", "musle", "pgcn")


def synthetic_graphs(model: str, num_videos: int, seed: int) -> List:
    """The seeded synthetic training graphs of ``model`` (frozen small-CNN features: region graphs for STRG,
    tubelet graphs for MUSLE; per-video proposal graphs of synthetic untrimmed videos for P-GCN:
    :mod:`videograph.launch_pgcn`), each with ``video_id``."""
    if model == "pgcn":
        from .launch_pgcn import synthetic_graphs as pgcn_graphs
        return pgcn_graphs(num_videos, seed)
    from .ablations.musle import prepare_videos
    from .datasets import SyntheticInteractions
    from .nn.encoders import RoIFeatures

    torch.manual_seed(seed)
    encoder = RoIFeatures().eval()
    videos = SyntheticInteractions(num_videos, seed=seed, split="train")
    tubelets, regions = prepare_videos(videos, encoder, num_clips=2)
    graphs = tubelets if model == "musle" else regions
    for index, graph in enumerate(graphs):
        graph.video_id = torch.tensor([index])
    return graphs


def cast_graphs(graphs: Sequence, dtype: torch.dtype) -> List:
    """Copies of ``graphs`` with every floating tensor in ``dtype``."""
    out = []
    for graph in graphs:
        graph = graph.clone()
        for key, value in graph.to_dict().items():
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                graph[key] = value.to(dtype)
        out.append(graph)
    return out


def build_model(model: str, example, num_classes: int, seed: int, options: Optional[dict] = None) -> nn.Module:
    """A freshly initialised model for graphs like ``example`` (seeded: the same on every rank); ``options``
    override the model's keyword arguments (MUSLE: the demo's :data:`~videograph.ablations.musle.MUSLE_TRAINING`
    recipe by default)."""
    if model not in MODELS:
        raise ValueError(f"'model' must be one of {MODELS}, got {model!r}")
    if model == "pgcn":
        from . import launch_pgcn
        return launch_pgcn.build_model(example, num_classes, seed)
    if model == "musle":
        from .ablations.musle import MUSLE_TRAINING
        from .models import MUSLE
        torch.manual_seed(seed)
        kwargs = dict(dict(MUSLE_TRAINING, sample_seed=seed), **(options or {}))
        return MUSLE(num_classes, example.x.size(1), example.coord.size(1), **kwargs)
    from .models import STRG
    torch.manual_seed(seed)
    global_channels = example.global_x.size(-1) if "global_x" in example else 0
    return STRG(example.x.size(1), num_classes, global_channels=global_channels)


def train(model: str = "strg", data: str = "synthetic", *, epochs: Optional[int] = 1, steps: Optional[int] = None,
          batch_size: int = 16, dtype: str = "float32", seed: int = 0, out: str = "results/train", lr: float = 1e-2,
          num_videos: int = 256, num_classes: Optional[int] = None, progress: bool = True,
          graphs: Optional[Sequence] = None, rank_states: bool = False, model_options: Optional[dict] = None) -> Dict:
    """Trains ``model`` on this process's share; see the module docstring. ``epochs`` or ``steps`` (optimiser
    steps, across epochs) bound the run. ``graphs`` overrides ``data``. Returns the metrics of the last epoch
    (global: all-reduced) and, on rank 0, writes ``<out>/model.pt`` and ``<out>/metrics.json``; with
    ``rank_states`` every rank also writes ``<out>/model_rank<r>.pt`` (to check that the ranks agree)."""
    if (epochs is None) == (steps is None):
        raise ValueError("give exactly one of 'epochs' and 'steps'")
    for name, value in (("epochs", epochs), ("steps", steps), ("batch_size", batch_size)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"'{name}' must be a positive int, got {value!r}")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"'dtype' must be 'float32' or 'float64', got {dtype!r}")
    init_from_env()
    rank, size = world()
    if graphs is None:
        if data == "synthetic":
            graphs = synthetic_graphs(model, num_videos, seed)
        else:
            from .datasets import GraphStore
            graphs = GraphStore(data, progress=False)
    graphs = cast_graphs([graphs[i] for i in range(len(graphs))], getattr(torch, dtype))
    for index, graph in enumerate(graphs):   # a stable id per video keys sampling inside models (MUSLE)
        if "video_id" not in graph:
            graph.video_id = torch.tensor([index])
    collate = None                                      # P-GCN: per-video draws keyed on (seed, epoch, video id)
    if model == "pgcn":
        from . import launch_pgcn
        launch_pgcn.check_graphs(graphs)
        collate = launch_pgcn.collate(seed)
        num_classes = launch_pgcn.num_classes(graphs) if num_classes is None else num_classes
    if num_classes is None:
        num_classes = int(max(int(g.y.max()) for g in graphs)) + 1
    net = build_model(model, graphs[0], num_classes, seed, model_options).to(getattr(torch, dtype))
    if size > 1:
        from .nn.sync_batch_norm import convert_sync_batchnorm
        net = convert_sync_batchnorm(net)   # batch norms (MUSLE's encoders) see the global batch
    step_module: nn.Module = GlobalLoss(net)
    if size > 1:
        # MUSLE's score calibration is unused by its loss until ce_start
        step_module = nn.parallel.DistributedDataParallel(step_module, find_unused_parameters=model == "musle")
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    sampler = DistributedSampler(graphs, num_replicas=size, rank=rank, shuffle=True, seed=seed, drop_last=True)
    loader = DataLoader(graphs, batch_size=batch_size, sampler=sampler) if collate is None else \
        torch.utils.data.DataLoader(graphs, batch_size=batch_size, sampler=sampler, collate_fn=collate)
    total_epochs = epochs if epochs is not None else -(-steps // max(len(loader), 1))
    bar = tqdm(total=steps or total_epochs * len(loader), disable=not progress or rank != 0, desc=f"train {model}")
    done, metrics, start = 0, {}, time.perf_counter()
    for epoch in range(total_epochs):
        sampler.set_epoch(epoch)
        if collate is not None:
            collate.set_epoch(epoch)
        net.train()
        sums = torch.zeros(3, dtype=torch.float64)        # loss * count, correct, count (this rank)
        for batch in loader:
            output = step_module(batch)
            optimizer.zero_grad()
            output.loss.backward()
            optimizer.step()
            count = float(output.count)
            sums += torch.tensor([float(output.loss.detach()) / size * float(all_reduce_sum(output.count)),
                                  float(output.correct), count], dtype=torch.float64)
            done += 1
            bar.update(1)
            if steps is not None and done >= steps:
                break
        else:
            if hasattr(net, "end_epoch"):   # MUSLE: dynamic K, refit on this rank's share (all-reduced)
                net.end_epoch(graphs[rank::size])
        total = all_reduce_sum(sums)
        metrics = {"epoch": epoch + 1, "steps": done, "loss": float(total[0] / total[2]),
                   "train_accuracy": float(total[1] / total[2]), "graphs": int(total[2]), "world_size": size,
                   "seconds": time.perf_counter() - start}
        bar.set_postfix(loss=f"{metrics['loss']:.3g}", acc=f"{metrics['train_accuracy']:.2f}")
        if steps is not None and done >= steps:
            break
    bar.close()
    if rank_states:
        os.makedirs(out, exist_ok=True)
        torch.save(net.state_dict(), os.path.join(out, f"model_rank{rank}.pt"))
    if rank == 0:
        os.makedirs(out, exist_ok=True)
        torch.save(net.state_dict(), os.path.join(out, "model.pt"))
        with open(os.path.join(out, "metrics.json"), "w") as handle:
            json.dump(metrics, handle, indent=1)
    return metrics


def spawn_worker(rank: int, world_size: int, init_file: str, kwargs: dict) -> None:
    """Entry of one rank under :func:`torch.multiprocessing.spawn` (tests, or a single machine without torchrun):
    joins a gloo group through ``init_file`` and runs :func:`train` with ``kwargs``."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        train(**kwargs)
    finally:
        dist.destroy_process_group()


def register(commands) -> None:
    """Adds ``train`` to the CLI's sub-commands."""
    parser = commands.add_parser("train", help="train a model in one process or under torchrun (DDP)",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=MODELS, default="strg")
    parser.add_argument("--data", default="synthetic", help="'synthetic' or a GraphStore folder")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, default=None, help="epochs (default: 1 when --steps is not given)")
    length.add_argument("--steps", type=int, default=None, help="optimiser steps")
    parser.add_argument("--batch-size", type=int, default=16, help="graphs per rank and step (default: 16)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-videos", type=int, default=256, help="synthetic videos (default: 256)")
    parser.add_argument("--out", default="results/train")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=_command)


def _command(args) -> None:
    metrics = train(args.model, args.data, epochs=args.epochs if args.epochs or args.steps else 1, steps=args.steps,
                    batch_size=args.batch_size, dtype=args.dtype, seed=args.seed, out=args.out, lr=args.lr,
                    num_videos=args.num_videos, progress=not args.no_progress)
    if world()[0] == 0:
        print(json.dumps(metrics))
