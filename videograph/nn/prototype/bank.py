r"""MUSLE's bank of per-class, per-scale Gaussian Mixture prototypes with fused sub-graph scoring."""
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Batch, Data

from videograph.subgraph import Subgraphs, multiscale, pair_ptr

from ..gmm import GaussianMixture
from ..subgraph_tables import check_complete
from .calibration import Calibration
from .loss import Loss
from .scoring import Scoring
from .stack import MixtureStack, _take_components
from .statistics import Statistics

__all__ = ["PrototypeBank"]


class PrototypeBank(Scoring, Loss, Statistics, Calibration, nn.Module):
    r"""The Gaussian Mixture prototypes of `"Representing Videos as Discriminative Sub-graphs for Action
    Recognition" <https://arxiv.org/abs/2201.04027>`_ (MUSLE, eq. 3-6): one mixture per action class and
    sub-graph scale, scored on every k-node sub-graph of a video without materialising any sub-graph.

    A k-node sub-graph :math:`v_1 < \dots < v_k` of a video is represented by its node and pair features,

    .. math::
        x = [f(v_1), \dots, f(v_k), e(v_1, v_2), \dots, e(v_{k-1}, v_k)] \in
        \mathbb{R}^{k D_n + k(k-1)/2 \, D_e},

    pair slots :math:`(i, j)`, :math:`i < j`, in lexicographic order. The mixture of class :math:`c` at scale
    :math:`k` (a :class:`GaussianMixture`: membership MLP, eq. 4 estimates, eq. 5 density) is fitted on the
    sub-graphs of the videos of class :math:`c` with eq. 6, and a video's class score is (MUSLE inference)

    .. math::
        s_c = \max_{k} \max_{x \in \mathcal{S}_k} \log \sum_j \phi_{ckj} \,
        \mathcal{N}(x; \mu_{ckj}, \Sigma_{ckj}).

    **Fused scoring** (diagonal covariance, the default): the first membership layer and the Mahalanobis
    distance are sums over slots, so per-slot tables (``[N, k, G]`` for nodes, ``[P, k(k-1)/2, G]`` for pairs,
    ``G`` = hidden units or all :math:`C K` Gaussians) are summed per sub-graph by
    :func:`videograph.ops.gather_sum`; eq. 4 statistics scatter :math:`\gamma` back onto the same rows and take
    small matmuls with the features. Scoring shares each (k-1)-prefix's partial sum across its extensions and
    reduces chunk by chunk (log-sum-exp over a class's components, max over sub-graphs), so memory is
    :math:`O(N k G + P k^2 G + \text{chunk\_size} \cdot G)`, never :math:`O(S \dim(x))`. The *materialised*
    path (``fused=False``) builds :math:`x` explicitly and calls :mod:`videograph.nn.functional`; it serves
    full covariances and is the oracle of the fused one.

    **Dynamic K**: :meth:`prune_` (call at every epoch end, after :meth:`fit_` if used) masks the components
    whose running weight is at most the threshold; mixtures may then have different K. Pruned components
    keep their (padded) slots with weight zero, so parameters keep their shapes and an optimiser stays valid;
    :meth:`compact_` drops the padding every mixture has pruned (it replaces parameters: rebuild the
    optimiser after it).

    Args:
        num_classes (int): number of action classes :math:`C`.
        node_channels (int): node feature size :math:`D_n`.
        pair_channels (int): pair (edge) feature size :math:`D_e`.
        scales (Sequence[int], optional): sub-graph sizes k. (default: :obj:`(3, 4, 5)`)
        num_components (int, optional): initial components per mixture :math:`K`. (default: :obj:`6`)
        hidden_channels (int, optional): width of each membership MLP. (default: :obj:`4 * num_components`)
        covariance (str, optional): ``"diag"`` or ``"full"`` (materialised path only). (default: :obj:`"diag"`)
        eps (float, optional): numerical floor, see :mod:`videograph.nn.functional`. (default: :obj:`1e-6`)
        lambda_cov (float, optional): :math:`\lambda` of eq. 6. (default: :obj:`0.05`)
        momentum (float, optional): weight of a batch in the running estimates. (default: :obj:`0.1`)
        dropout (float, optional): dropout in the membership MLPs. (default: :obj:`0.0`)
        chunk_size (int, optional): sub-graphs scored at once by :meth:`class_scores`. (default: :obj:`16384`)
        background (bool, optional): adds one background mixture per scale, fitted on the sub-graphs of all
            videos, and scores a sub-graph by the log-likelihood ratio :math:`\log p_c(x) - \log p_{bg}(x)`:
            what a class shares with every other (clutter, distractors) then cancels. (default: :obj:`False`)
        scale_reduce (str, optional): how the per-scale maxima :math:`s_{kc}` become class scores: ``"max"``
            (the paper), ``"sum"``, or ``"learned"``: :math:`\sum_k w_{kc} s_{kc} + b_c` with positive weights
            :math:`w = \exp(\text{scale\_log\_weight})` and biases ``scale_bias`` (vector scaling of the scores,
            set by :meth:`calibrate_` or trained with a loss on the class scores; it starts as the sum).
            (default: :obj:`"max"`)

    Shapes:
        - **input:** node features :math:`(N, D_n)`, pair features :math:`(P, D_e)` (one row per complete-mode
          pair id, :func:`~videograph.subgraph.pair_nodes`), ``node_ptr`` :math:`(B + 1)`, labels :math:`(B)`
        - **output:** :meth:`class_scores` :math:`(B, C)`, :meth:`loss` a scalar, :meth:`predict` :math:`(B)`
    """

    def __init__(self, num_classes: int, node_channels: int, pair_channels: int, scales: Sequence[int] = (3, 4, 5),
                 num_components: int = 6, hidden_channels: Optional[int] = None, covariance: str = "diag",
                 eps: float = 1e-6, lambda_cov: float = 0.05, momentum: float = 0.1, dropout: float = 0.0,
                 chunk_size: int = 16384, background: bool = False, scale_reduce: str = "max"):
        super().__init__()
        for name, value in (("num_classes", num_classes), ("node_channels", node_channels),
                            ("pair_channels", pair_channels), ("num_components", num_components),
                            ("chunk_size", chunk_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"'{name}' must be a positive integer, got {value!r}")
        scales = tuple(scales)
        if not scales or len(set(scales)) != len(scales) or any(
                isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in scales):
            raise ValueError(f"'scales' must be distinct positive integers, got {scales!r}")
        if covariance not in ("diag", "full"):
            raise ValueError(f"'covariance' must be 'diag' or 'full', got {covariance!r}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"'momentum' must lie in [0, 1], got {momentum}")
        if scale_reduce not in ("max", "sum", "learned"):
            raise ValueError(f"'scale_reduce' must be 'max', 'sum' or 'learned', got {scale_reduce!r}")
        self.num_classes = num_classes
        self.background, self.scale_reduce = bool(background), scale_reduce
        self.num_mixtures = num_classes + int(self.background)
        self.node_channels, self.pair_channels = node_channels, pair_channels
        self.scales = scales
        self.hidden_channels = hidden_channels or 4 * num_components
        self.covariance, self.eps, self.lambda_cov, self.momentum = covariance, eps, lambda_cov, momentum
        self.chunk_size = chunk_size
        self.dropout = nn.Dropout(dropout)
        self.mixtures = nn.ModuleDict({
            str(k): MixtureStack(self.num_mixtures, k, node_channels, pair_channels, num_components,
                                  self.hidden_channels, covariance) for k in scales})
        if scale_reduce == "learned":
            self.scale_log_weight = nn.Parameter(torch.empty(len(scales), num_classes))
            self.scale_bias = nn.Parameter(torch.empty(num_classes))
        else:
            self.register_parameter("scale_log_weight", None)
            self.register_parameter("scale_bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for stack in self.mixtures.values():
            stack.reset_parameters()
        if self.scale_log_weight is not None:   # starts as the sum over scales
            nn.init.zeros_(self.scale_log_weight)
            nn.init.zeros_(self.scale_bias)

    def reset_running_stats(self) -> None:
        for stack in self.mixtures.values():
            stack.reset_running_stats()

    def stack(self, k: int) -> MixtureStack:
        """The stacked mixtures of scale ``k``."""
        return self.mixtures[str(k)]

    @property
    def num_components(self) -> Tensor:
        """LongTensor ``[M, len(scales)]``: the active components of every mixture (``M = C``, plus one row for
        the background mixture)."""
        return torch.stack([self.stack(k).active.sum(1) for k in self.scales], 1)

    # ------------------------------------------------------------------ input handling
    def _check_inputs(self, node_x: Tensor, pair_x: Tensor, node_ptr: Tensor,
                      y: Optional[Tensor] = None) -> Tensor:
        if not isinstance(node_ptr, Tensor) or node_ptr.dim() != 1 or node_ptr.numel() < 2 or \
                node_ptr.dtype not in (torch.int32, torch.int64):
            raise ValueError("'node_ptr' must be an integer tensor [B + 1] of node offsets (Batch.ptr)")
        node_ptr = node_ptr.long()
        if int(node_ptr[0]) != 0 or bool((node_ptr.diff() < 0).any()):
            raise ValueError("'node_ptr' must start at 0 and be non-decreasing")
        if node_x.dim() != 2 or node_x.size(1) != self.node_channels or node_x.size(0) != int(node_ptr[-1]):
            raise ValueError(f"'node_x' must have shape [{int(node_ptr[-1])}, {self.node_channels}] "
                             f"(N = node_ptr[-1]), got {tuple(node_x.shape)}")
        num_pairs = int(pair_ptr(node_ptr)[-1])
        if pair_x.dim() != 2 or pair_x.size(1) != self.pair_channels or pair_x.size(0) != num_pairs:
            raise ValueError(f"'pair_x' must have shape [{num_pairs}, {self.pair_channels}] (one row per node pair "
                             f"u < w of every video, see videograph.subgraph.pair_nodes), got {tuple(pair_x.shape)}")
        dtype = self.stack(self.scales[0]).weight1.dtype
        if node_x.dtype != dtype or pair_x.dtype != dtype:
            raise ValueError(f"'node_x' and 'pair_x' must have the bank's dtype {dtype}, got {node_x.dtype} and "
                             f"{pair_x.dtype}")
        if y is not None:
            if y.dim() != 1 or y.numel() != node_ptr.numel() - 1 or y.is_floating_point():
                raise ValueError(f"'y' must be an integer tensor [B] with B = {node_ptr.numel() - 1}, got "
                                 f"{tuple(y.shape)} {y.dtype}")
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
                raise ValueError(f"'y' must hold class ids in [0, {self.num_classes}), got "
                                 f"[{int(y.min())}, {int(y.max())}]")
        return node_ptr

    def _subgraphs(self, node_ptr: Tensor, subgraphs: Optional[Dict[int, Subgraphs]],
                   max_per_graph: Optional[int] = None, generator: Optional[torch.Generator] = None,
                   device=None) -> Dict[int, Subgraphs]:
        if subgraphs is None:
            batch = Batch.from_data_list([Data(num_nodes=int(n)) for n in node_ptr.diff().tolist()])
            subgraphs = multiscale(batch, self.scales, max_per_graph=max_per_graph, generator=generator)
            return {k: s.to(device) for k, s in subgraphs.items()}
        if not isinstance(subgraphs, dict) or set(subgraphs) != set(self.scales):
            raise ValueError(f"'subgraphs' must be a dict {{k: Subgraphs}} with keys {self.scales}, got "
                             f"{subgraphs if not isinstance(subgraphs, dict) else sorted(subgraphs)!r}")
        for k, sub in subgraphs.items():
            check_complete(sub, k, node_ptr)
        return subgraphs

    @staticmethod
    def _selected(select: Dict[int, Tensor], sub: Subgraphs) -> Subgraphs:
        """The rows of ``sub`` that ``select[sub.k]`` keeps."""
        mask = select.get(sub.k) if isinstance(select, dict) else None
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.shape != (len(sub),):
            raise ValueError(f"'select' must be a dict {{k: BoolTensor [S_k]}} with one entry per sub-graph of "
                             f"'subgraphs[k]'; for k={sub.k} expected shape [{len(sub)}], got "
                             f"{getattr(mask, 'dtype', type(mask).__name__)} {tuple(getattr(mask, 'shape', ()))}")
        return sub.select(mask)

    def _use_fused(self, fused: Optional[bool]) -> bool:
        if fused is None:
            return self.covariance == "diag"
        if fused and self.covariance != "diag":
            raise ValueError("'fused=True' needs covariance='diag'; full covariances use the materialised path")
        return bool(fused)

    def forward(self, node_x: Tensor, pair_x: Tensor, node_ptr: Tensor,
                subgraphs: Optional[Dict[int, Subgraphs]] = None) -> Tensor:
        """:meth:`class_scores`."""
        return self.class_scores(node_x, pair_x, node_ptr, subgraphs)

    @torch.no_grad()
    def predict(self, node_x: Tensor, pair_x: Tensor, node_ptr: Tensor,
                subgraphs: Optional[Dict[int, Subgraphs]] = None) -> Tensor:
        """``[B]`` the class of highest score (MUSLE: argmax over classes of the best sub-graph likelihood).
        Raises :class:`ValueError` naming the first video with no sub-graph at any scale (it has no score)."""
        scores = self.class_scores(node_x, pair_x, node_ptr, subgraphs)
        lonely = torch.isneginf(scores).all(-1).nonzero().view(-1)
        if lonely.numel():
            b = int(lonely[0])
            raise ValueError(f"video {b} has no sub-graph at any scale {self.scales} (it has "
                             f"{int(node_ptr[b + 1] - node_ptr[b])} nodes): it cannot be classified")
        return scores.argmax(-1)

    @torch.no_grad()
    def prune_(self, threshold: float = 0.02) -> "PrototypeBank":
        r"""Dynamic K: in every mixture, masks the components whose running weight :math:`\phi` is at most
        ``threshold`` (MUSLE: 0.02, after each epoch), renormalising the rest (which only raises them, so every
        kept weight exceeds the threshold); at least the heaviest component is kept. Masked components get zero
        weight and membership; parameter shapes do not change (see :meth:`compact_`). In a process group the
        running weights are already the same on every rank (:meth:`loss` and :meth:`fit_` all-reduce their
        statistics), so every rank masks the same components."""
        for stack in self.mixtures.values():
            phi = stack.running_phi.masked_fill(~stack.active, -1.0)
            keep = (phi > threshold) & stack.active
            heaviest = F.one_hot(phi.argmax(1), stack.num_components).bool()
            keep |= heaviest & ~keep.any(1, keepdim=True)
            stack.active.copy_(keep)
            kept = stack.running_phi * keep
            stack.running_phi.copy_(kept / kept.sum(1, keepdim=True))
            stack.running_mu.masked_fill_(~keep[..., None], 0.0)
            if stack.covariance == "diag":
                stack.running_cov.masked_fill_(~keep[..., None], 1.0)
            else:
                eye = torch.eye(stack.in_channels, dtype=stack.running_cov.dtype, device=stack.running_cov.device)
                stack.running_cov.copy_(torch.where(keep[..., None, None], stack.running_cov, eye))
        return self

    @torch.no_grad()
    def compact_(self) -> "PrototypeBank":
        """Moves every mixture's active components first and drops the component slots no mixture of a scale
        uses any more. Replaces the second membership layer's parameters: rebuild optimisers afterwards."""
        for stack in self.mixtures.values():
            order = torch.argsort((~stack.active).to(torch.int8), dim=1, stable=True)
            width = int(stack.active.sum(1).max())
            order = order[:, :width]
            stack.weight2 = nn.Parameter(_take_components(stack.weight2.detach(), order))
            stack.bias2 = nn.Parameter(_take_components(stack.bias2.detach(), order))
            for name in ("running_phi", "running_mu", "running_cov", "active"):
                setattr(stack, name, _take_components(getattr(stack, name), order))
        return self

    @torch.no_grad()
    def mixture(self, c: int, k: int) -> GaussianMixture:
        """A standalone :class:`GaussianMixture` equal to the bank's mixture of class ``c`` at scale ``k`` (its
        active components only; ``c = num_classes`` is the background mixture), e.g. to inspect or visualise one
        prototype."""
        if not 0 <= c < self.num_mixtures or k not in self.scales:
            raise ValueError(f"'c' must lie in [0, {self.num_mixtures}) and 'k' in {self.scales}, got {c}, {k}")
        stack = self.stack(k)
        active = stack.active[c]
        gmm = GaussianMixture(stack.in_channels, int(active.sum()), self.hidden_channels, self.covariance, self.eps,
                              self.momentum, self.lambda_cov, self.dropout.p)
        gmm = gmm.to(device=stack.weight1.device, dtype=stack.weight1.dtype)
        first, last = gmm.membership_net[0], gmm.membership_net[-1]
        first.weight.copy_(stack.weight1[c])
        first.bias.copy_(stack.bias1[c])
        last.weight.copy_(stack.weight2[c][active])
        last.bias.copy_(stack.bias2[c][active])
        gmm.running_phi.copy_(stack.running_phi[c][active])
        gmm.running_mu.copy_(stack.running_mu[c][active])
        gmm.running_cov.copy_(stack.running_cov[c][active])
        gmm.num_batches_tracked.copy_(stack.num_batches_tracked[c])
        return gmm.train(self.training)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.num_classes}, node_channels={self.node_channels}, "
                f"pair_channels={self.pair_channels}, scales={self.scales}, "
                f"num_components={self.stack(self.scales[0]).num_components}, covariance={self.covariance}"
                f"{', background=True' if self.background else ''}"
                f"{', scale_reduce=sum' if self.scale_reduce == 'sum' else ''})")
