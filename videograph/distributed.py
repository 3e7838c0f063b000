r"""Running on several processes with :mod:`torch.distributed` (torchrun's rendezvous, DDP): the few primitives
videograph's training needs so that K ranks with batch B compute what one process computes with batch K·B.

* :func:`init_from_env` joins the process group torchrun describes (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``…);
  one process without them.
* :func:`all_reduce_sum` sums over ranks; with ``differentiable=True`` it is
  :func:`torch.distributed.nn.functional.all_reduce`, whose backward all-reduces the gradient too (for statistics
  that enter the loss, e.g. a mixture's batch sums).
* :class:`GlobalLoss` is the module DDP wraps: the loss is computed inside its ``forward`` (calling the inner
  model's ``loss`` from outside DDP would skip the gradient all-reduce), as a *sum* over samples divided by the
  global sample count, times the world size, so DDP's gradient average is the gradient of the global mean.
* :func:`all_gather` collects one tensor per rank (sizes along the first dimension may differ), in rank order.
* :func:`keyed_generator` gives the generator of one (seed, epoch, item), so sampling does not depend on which
  rank draws it.
"""
import os
from typing import List, NamedTuple, Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["world", "init_from_env", "all_reduce_sum", "all_gather", "keyed_generator", "GlobalLoss", "StepOutput"]


def world() -> Tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env(backend: Optional[str] = None) -> bool:
    """Joins the process group described by torchrun's environment (``WORLD_SIZE`` > 1): ``nccl`` with CUDA,
    ``gloo`` on the CPU, unless ``backend`` says otherwise. Returns whether a group is active."""
    if dist.is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)
    return True


def all_reduce_sum(tensor: Tensor, differentiable: bool = False) -> Tensor:
    """The sum of ``tensor`` over ranks (``tensor`` itself outside a process group). ``differentiable=True``
    all-reduces the gradient in backward too; otherwise the result carries no gradient."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    if differentiable:
        from torch.distributed.nn.functional import all_reduce
        return all_reduce(tensor, op=dist.ReduceOp.SUM)
    out = tensor.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_gather(tensor: Tensor) -> List[Tensor]:
    """Every rank's ``tensor`` in rank order (``[tensor]`` outside a process group), without gradient. The sizes
    along the first dimension may differ between ranks; the other dimensions and the dtype must agree."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [tensor]
    size = dist.get_world_size()
    tensor = tensor.detach().contiguous()
    lengths = [torch.zeros(1, dtype=torch.long, device=tensor.device) for _ in range(size)]
    dist.all_gather(lengths, torch.tensor([tensor.size(0)], device=tensor.device))
    longest = int(max(int(n) for n in lengths))
    padded = tensor.new_zeros((longest,) + tensor.shape[1:])
    padded[:tensor.size(0)] = tensor
    out = [torch.empty_like(padded) for _ in range(size)]
    dist.all_gather(out, padded)
    return [t[:int(n)] for t, n in zip(out, lengths)]


def keyed_generator(seed: int, epoch: int, key: int) -> torch.Generator:
    """A generator seeded from ``(seed, epoch, key)`` (key: a video id), the same on every rank."""
    import numpy as np
    state = np.random.SeedSequence([int(seed), int(epoch), int(key)]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed((int(state[0]) << 31) ^ int(state[1]))


class StepOutput(NamedTuple):
    """What :class:`GlobalLoss` returns: the loss to backpropagate, and the rank-local ``correct`` and ``count``
    (sum them over ranks for the global accuracy)."""
    loss: Tensor
    correct: Tensor
    count: Tensor


class GlobalLoss(nn.Module):
    r"""Wraps a classifier so that DDP sees the loss: ``forward(batch)`` returns :class:`StepOutput` with

    .. math::
        \mathcal{L} = K \cdot \frac{\sum_{i \in \text{rank}} \ell_i}{\sum_{\text{ranks}} n_r},

    :math:`K` the world size, so DDP's average of the ranks' gradients is the gradient of the mean loss over the
    global batch, whatever the ranks' batch sizes. A model with ``loss_sum(batch) -> (sum, count, scores)`` defines
    its own per-sample sum; otherwise the cross-entropy of ``model(batch)`` against ``batch.y`` is summed. A
    model whose loss has several parts, each over its own count (P-GCN), defines ``loss_share(batch) -> (share,
    correct, count)`` instead: ``share`` is the rank's part of the global loss (each part's rank sum over its
    all-reduced count, so the shares add up to the loss of the global batch), and :math:`\mathcal{L} = K \cdot`
    ``share``.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch) -> StepOutput:
        if hasattr(self.model, "loss_share"):
            share, correct, count = self.model.loss_share(batch)
            return StepOutput(share * world()[1], correct, torch.as_tensor(count).detach())
        y = batch.y.view(-1)
        if hasattr(self.model, "loss_sum"):
            total, count, scores = self.model.loss_sum(batch)
        else:
            scores = self.model(batch)
            total, count = F.cross_entropy(scores, y, reduction="sum"), y.numel()
        count = torch.as_tensor(count, dtype=scores.dtype, device=scores.device)
        _, size = world()
        loss = total * size / all_reduce_sum(count)
        correct = (scores.detach().argmax(-1) == y).sum()
        return StepOutput(loss, correct, count.detach())
