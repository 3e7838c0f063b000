r"""A small, seeded trainer for the recognition models (used by the demo and the examples).

A model either defines ``loss(batch, generator) -> (loss, scores)`` (e.g. :class:`~videograph.models.MUSLE`,
whose objective is not a plain cross-entropy) or returns logits from ``forward(batch)``, trained with
cross-entropy against ``batch.y``. A model may define ``end_epoch()`` (MUSLE's dynamic K). Checkpoints hold only
tensors and plain containers, so :func:`torch.load` reads them with ``weights_only=True``.
"""
import inspect
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.loader import DataLoader
from tqdm import tqdm

__all__ = ["TrainConfig", "History", "fit", "evaluate", "predict", "save_checkpoint", "load_checkpoint"]


@dataclass
class TrainConfig:
    r"""Settings of :func:`fit`.

    Args:
        epochs: passes over the training set. (default: :obj:`20`)
        batch_size: videos per step. (default: :obj:`16`)
        lr: Adam learning rate. (default: :obj:`3e-3`)
        weight_decay: Adam weight decay. (default: :obj:`0.0`)
        lr_step: multiply the learning rate by ``lr_gamma`` every ``lr_step`` epochs; :obj:`None` keeps it.
        lr_gamma: see ``lr_step``. (default: :obj:`0.1`)
        seed: seeds every random draw of training: shuffling and the sampling inside the model's loss (the
            generator :func:`fit` passes it) and everything that draws from torch's global RNG, e.g. dropout
            (:func:`fit` forks that RNG, seeds the fork and restores the caller's state on return). The model's
            initialisation happens before :func:`fit`: build it under :func:`torch.manual_seed`.
            (default: :obj:`0`)
        progress: show a tqdm bar. (default: :obj:`True`)
        checkpoint: path written after every epoch (:obj:`None`: no checkpoints).
        resume: continue from ``checkpoint`` when it exists. (default: :obj:`False`)
    """
    epochs: int = 20
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 0.0
    lr_step: Optional[int] = None
    lr_gamma: float = 0.1
    seed: int = 0
    progress: bool = True
    checkpoint: Optional[str] = None
    resume: bool = False

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"'{name}' must be a positive int, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"'lr' must be positive, got {self.lr!r}")


@dataclass
class History:
    """Per-epoch figures of a run: mean training loss, training accuracy, optional evaluation accuracy and the
    seconds the epoch took."""
    loss: List[float] = field(default_factory=list)
    train_accuracy: List[float] = field(default_factory=list)
    eval_accuracy: List[float] = field(default_factory=list)
    seconds: List[float] = field(default_factory=list)

    def as_dict(self) -> Dict[str, List[float]]:
        return {"loss": list(self.loss), "train_accuracy": list(self.train_accuracy),
                "eval_accuracy": list(self.eval_accuracy), "seconds": list(self.seconds)}


def _step_loss(model: nn.Module, batch, generator: torch.Generator):
    if hasattr(model, "loss"):
        return model.loss(batch, generator=generator)
    scores = model(batch)
    return F.cross_entropy(scores, batch.y.view(-1)), scores.detach()


def _sync_optimizer(optimizer: torch.optim.Optimizer, model: nn.Module, config: "TrainConfig"
                    ) -> torch.optim.Optimizer:
    """A new optimiser over the model's current parameters when they changed (e.g. dynamic K replaced a layer),
    keeping the state of the parameters that remain."""
    current = [p for p in model.parameters() if p.requires_grad]
    known = {id(p) for group in optimizer.param_groups for p in group["params"]}
    if {id(p) for p in current} == known:
        return optimizer
    fresh = torch.optim.Adam(current, lr=optimizer.param_groups[0]["lr"], weight_decay=config.weight_decay)
    for p in current:
        if p in optimizer.state:
            fresh.state[p] = optimizer.state[p]
    return fresh


def _cuda_devices(model: nn.Module) -> List[int]:
    return sorted({t.device.index or 0 for t in list(model.parameters()) + list(model.buffers())
                   if t.device.type == "cuda"})


def _global_rng_state(devices: Sequence[int]) -> Dict:
    """The global RNG's state: CPU and the given CUDA devices (what dropout draws from)."""
    return {"cpu": torch.get_rng_state(), "cuda": [torch.cuda.get_rng_state(d) for d in devices]}


def _set_global_rng(devices: Sequence[int], state: Optional[Dict] = None, seed: Optional[int] = None) -> None:
    if state is not None:
        torch.set_rng_state(state["cpu"])
        for d, cuda_state in zip(devices, state.get("cuda", [])):
            torch.cuda.set_rng_state(cuda_state, d)
        return
    torch.default_generator.manual_seed(seed)
    for d in devices:
        with torch.cuda.device(d):
            torch.cuda.manual_seed(seed)


def _global_seed(seed: int) -> int:
    """The seed of the forked global RNG: a stream independent of the data generator's (seeded with ``seed``)."""
    return int(np.random.SeedSequence([seed, 1]).generate_state(1, dtype=np.uint64)[0] >> 1)


def save_checkpoint(path: str, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int, history: History,
                    generator: torch.Generator, rng: Optional[Dict] = None) -> None:
    """Writes model, optimiser, epoch, history, the data generator's state and ``rng`` (the global RNG's state,
    as :func:`fit` passes it) atomically: temp file + rename."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
             "history": history.as_dict(), "generator": generator.get_state()}
    if rng is not None:
        state["rng"] = rng
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str) -> Dict:
    """Reads a checkpoint of :func:`save_checkpoint` with ``weights_only=True`` (no code is unpickled)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def fit(model: nn.Module, train_set: Sequence, config: Optional[TrainConfig] = None,
        eval_set: Optional[Sequence] = None, eval_every: int = 0,
        on_epoch: Optional[Callable[[int, History], None]] = None) -> History:
    r"""Trains ``model`` on a list of PyG graphs (each with ``y``) with Adam.

    Shuffling and the model's own sampling use one :class:`torch.Generator` seeded with ``config.seed``; every
    draw from torch's global RNG (dropout in any layer) comes from a fork of it (:func:`torch.random.fork_rng`)
    seeded from ``config.seed`` as well, and the caller's global RNG is restored on return. So two runs with the
    same seed, model initialisation and data give the same numbers (on one thread), whatever the global RNG held.
    ``eval_set`` is scored with :func:`evaluate` every ``eval_every`` epochs (0: never) into
    ``history.eval_accuracy``. With ``config.checkpoint`` the state is saved after every epoch; with
    ``config.resume`` training continues from it: model (also after dynamic K changed its shapes), optimiser,
    data generator and global RNG, so the continued run matches an uninterrupted one.

    Returns:
        the :class:`History`.
    """
    config = config or TrainConfig()
    if len(train_set) == 0:
        raise ValueError("'train_set' is empty")
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.lr,
                                 weight_decay=config.weight_decay)
    history, start_epoch, rng = History(), 0, None
    if config.resume and config.checkpoint and os.path.exists(config.checkpoint):
        state = load_checkpoint(config.checkpoint)
        model.load_state_dict(state["model"])
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.lr,
                                     weight_decay=config.weight_decay)
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        rng = state.get("rng")
        history = History(**state["history"])
        start_epoch = int(state["epoch"])
    devices = _cuda_devices(model)
    with torch.random.fork_rng(devices=devices):
        if rng is not None:
            _set_global_rng(devices, state=rng)
        else:
            _set_global_rng(devices, seed=_global_seed(config.seed))
        return _train(model, train_set, config, eval_set, eval_every, on_epoch, generator, optimizer, history,
                      start_epoch, devices)


def _train(model: nn.Module, train_set: Sequence, config: TrainConfig, eval_set: Optional[Sequence],
           eval_every: int, on_epoch, generator: torch.Generator, optimizer: torch.optim.Optimizer,
           history: History, start_epoch: int, devices: Sequence[int]) -> History:
    loader = DataLoader(list(train_set), batch_size=config.batch_size, shuffle=True, generator=generator)
    bar = tqdm(total=config.epochs * len(loader), initial=start_epoch * len(loader), disable=not config.progress,
               desc=model.__class__.__name__, leave=False)
    for epoch in range(start_epoch, config.epochs):
        lr = config.lr * (config.lr_gamma ** (epoch // config.lr_step) if config.lr_step else 1.0)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        tic = time.perf_counter()
        total, correct, seen = 0.0, 0, 0
        for batch in loader:
            loss, scores = _step_loss(model, batch, generator)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            y = batch.y.view(-1)
            total += float(loss.detach()) * y.numel()
            correct += int((scores.argmax(-1) == y).sum())
            seen += y.numel()
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.3g}", acc=f"{correct / seen:.2f}")
        if hasattr(model, "end_epoch"):
            if "dataset" in inspect.signature(model.end_epoch).parameters:
                model.end_epoch(dataset=train_set)
            else:
                model.end_epoch()
            optimizer = _sync_optimizer(optimizer, model, config)
        history.loss.append(total / seen)
        history.train_accuracy.append(correct / seen)
        history.seconds.append(time.perf_counter() - tic)
        if eval_set is not None and eval_every and ((epoch + 1) % eval_every == 0 or epoch + 1 == config.epochs):
            history.eval_accuracy.append(evaluate(model, eval_set, config.batch_size))
        if config.checkpoint:
            save_checkpoint(config.checkpoint, model, optimizer, epoch + 1, history, generator,
                            _global_rng_state(devices))
        if on_epoch is not None:
            on_epoch(epoch, history)
    bar.close()
    return history


@torch.no_grad()
def predict(model: nn.Module, dataset: Sequence, batch_size: int = 32) -> Tensor:
    """Predicted class of every graph (``model.predict`` if it has one, else the arg max of ``model``)."""
    model.eval()
    out = []
    for batch in DataLoader(list(dataset), batch_size=batch_size, shuffle=False):
        out.append(model.predict(batch) if hasattr(model, "predict") else model(batch).argmax(-1))
    return torch.cat(out)


def evaluate(model: nn.Module, dataset: Sequence, batch_size: int = 32) -> float:
    """Accuracy of :func:`predict` against each graph's ``y``."""
    labels = torch.cat([data.y.view(-1) for data in dataset])
    return float((predict(model, dataset, batch_size) == labels).float().mean())
