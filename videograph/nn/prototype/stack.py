r"""The stacked per-class mixtures of one sub-graph scale of a :class:`~videograph.nn.PrototypeBank`, and the
record of the sub-graph behind every class score."""
import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..gmm import reset_mixture_stats

__all__ = ["BestSubgraphs", "MixtureStack"]


class BestSubgraphs(NamedTuple):
    """The sub-graph behind every class score of :meth:`PrototypeBank.class_scores`.

    Attributes:
        scale (LongTensor): ``[B, C]`` its number of nodes k.
        index (LongTensor): ``[B, C]`` its row in the batch's complete-mode enumeration at that scale
            (``subgraphs[k]`` when given; the order of :func:`~videograph.subgraph.enumerate_subgraphs`), ``-1`` if
            the video has no sub-graph at any scale.
        nodes (LongTensor): ``[B, C, max(scales)]`` its global node ids, ascending, padded with ``-1``.
    """
    scale: Tensor
    index: Tensor
    nodes: Tensor


def _take_components(t: Tensor, order: Tensor) -> Tensor:
    """``t[c, order[c]]`` for a ``[C, K, ...]`` tensor and ``order [C, K']``, as a new tensor."""
    return t.gather(1, order.view(order.shape + (1,) * (t.dim() - 2)).expand(order.shape + t.shape[2:])).clone()

class MixtureStack(nn.Module):
    """The ``C`` mixtures of one scale: stacked membership networks and running estimates."""

    running_phi: Tensor
    running_mu: Tensor
    running_cov: Tensor
    active: Tensor
    num_batches_tracked: Tensor

    def __init__(self, num_classes: int, k: int, node_channels: int, pair_channels: int, num_components: int,
                 hidden_channels: int, covariance: str):
        super().__init__()
        self.k, self.num_pair_slots = k, k * (k - 1) // 2
        self.node_channels, self.pair_channels = node_channels, pair_channels
        self.in_channels = k * node_channels + self.num_pair_slots * pair_channels
        self.covariance = covariance
        C, K, H, D = num_classes, num_components, hidden_channels, self.in_channels
        self.weight1 = nn.Parameter(torch.empty(C, H, D))
        self.bias1 = nn.Parameter(torch.empty(C, H))
        self.weight2 = nn.Parameter(torch.empty(C, K, H))
        self.bias2 = nn.Parameter(torch.empty(C, K))
        self.register_buffer("running_phi", torch.empty(C, K))
        self.register_buffer("running_mu", torch.empty(C, K, D))
        self.register_buffer("running_cov", torch.empty((C, K, D) if covariance == "diag" else (C, K, D, D)))
        self.register_buffer("active", torch.ones(C, K, dtype=torch.bool))
        self.register_buffer("num_batches_tracked", torch.zeros(C, dtype=torch.long))

    @property
    def num_components(self) -> int:
        return self.weight2.size(1)

    def reset_running_stats(self) -> None:
        self.active.fill_(True)
        reset_mixture_stats(self.running_phi, self.running_mu, self.running_cov, self.covariance)
        self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        # nn.Linear's default initialisation, per class.
        for weight, bias in ((self.weight1, self.bias1), (self.weight2, self.bias2)):
            bound = 1.0 / math.sqrt(weight.size(-1))
            nn.init.uniform_(weight, -bound, bound)
            nn.init.uniform_(bias, -bound, bound)
        self.reset_running_stats()

    def log_phi(self, phi: Tensor, active: Tensor) -> Tensor:
        # A pruned component has weight exactly zero (-inf), not the functional core's tiny floor: with
        # D ~ 2000 log densities reach -1e3, where a floor of log(tiny) would let a pruned component win.
        return phi.clamp_min(torch.finfo(phi.dtype).tiny).log().masked_fill(~active, -math.inf)

    @torch.no_grad()
    def resize_components_(self, num_components: int) -> None:
        """Replaces the component-indexed parameters and buffers by uninitialised ones with ``num_components``
        slots (what :meth:`~videograph.nn.PrototypeBank.compact_` leaves), so a checkpoint of a compacted bank
        loads into a freshly built one; the values come from the checkpoint."""
        C, H, D, K = self.weight2.size(0), self.weight2.size(2), self.in_channels, num_components
        self.weight2 = nn.Parameter(self.weight2.new_empty(C, K, H))
        self.bias2 = nn.Parameter(self.bias2.new_empty(C, K))
        self.running_phi = self.running_phi.new_empty(C, K)
        self.running_mu = self.running_mu.new_empty(C, K, D)
        self.running_cov = self.running_cov.new_empty((C, K, D) if self.covariance == "diag" else (C, K, D, D))
        self.active = self.active.new_ones(C, K)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        weight2 = state_dict.get(prefix + "weight2")
        if isinstance(weight2, Tensor) and weight2.dim() == 3 and weight2.size(1) != self.num_components:
            self.resize_components_(weight2.size(1))   # a checkpoint taken after compact_
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    @torch.no_grad()
    def update_running(self, classes: Tensor, phi: Tensor, mu: Tensor, cov: Tensor, momentum: float,
                       track: bool = True) -> None:
        active = self.active[classes]
        phi = phi.detach().masked_fill(~active, 0.0)
        mu = mu.detach().masked_fill(~active[..., None], 0.0)
        cov = cov.detach()
        fill = 1.0 if self.covariance == "diag" else torch.eye(self.in_channels, dtype=cov.dtype, device=cov.device)
        cov = torch.where(active.view(active.shape + (1,) * (cov.dim() - 2)), cov, fill)
        for buffer, value in ((self.running_phi, phi), (self.running_mu, mu), (self.running_cov, cov)):
            buffer[classes] = torch.lerp(buffer[classes], value.to(buffer), momentum)
        if track:
            self.num_batches_tracked[classes] += 1
