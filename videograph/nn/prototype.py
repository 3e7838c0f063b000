r"""MUSLE's bank of per-class, per-scale Gaussian Mixture prototypes with fused sub-graph scoring."""
import math
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Batch, Data
from tqdm.auto import tqdm

from videograph.ops import gather_sum, scatter
from videograph.subgraph import Subgraphs, enumerate_subgraphs, multiscale, pair_ptr

from .functional import gmm_component_log_prob, gmm_energy_loss, gmm_estimate
from .gmm import GaussianMixture, reset_mixture_stats
from .subgraph_tables import (check_complete, graph_of_rows, materialise, per_graph_inner, per_graph_matmul,
                              prefix_rows, scatter_rows, slot_rows, stack_tables)

__all__ = ["PrototypeBank", "BestSubgraphs"]

_LOG_2PI = math.log(2 * math.pi)


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


class _MixtureStack(nn.Module):
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


class PrototypeBank(nn.Module):
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
            str(k): _MixtureStack(self.num_mixtures, k, node_channels, pair_channels, num_components,
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

    def stack(self, k: int) -> _MixtureStack:
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

    # ------------------------------------------------------------------ membership
    def _membership(self, stack: _MixtureStack, x: Tensor, c: int) -> Tensor:
        """Materialised memberships ``[S, K]`` of samples ``x [S, D]`` under class ``c``'s network."""
        hidden = self.dropout(torch.tanh(F.linear(x, stack.weight1[c], stack.bias1[c])))
        logits = F.linear(hidden, stack.weight2[c], stack.bias2[c]).masked_fill(~stack.active[c], -math.inf)
        return torch.softmax(logits, -1)

    def _fused_membership(self, stack: _MixtureStack, node_x: Tensor, pair_x: Tensor, y: Tensor, graphs,
                          rows: Tensor, sub_graph: Tensor) -> Tensor:
        """Fused memberships ``[S, K]``: each sub-graph under its own video's class network."""
        node_graph, pair_graph = graphs
        k, J, Dn, De = stack.k, stack.num_pair_slots, self.node_channels, self.pair_channels
        B, H, N, P = y.numel(), self.hidden_channels, node_x.size(0), pair_x.size(0)
        weight = stack.weight1[y]  # [B, H, D]
        w_node = weight[..., :k * Dn].reshape(B, H, k, Dn).permute(0, 3, 2, 1).reshape(B, Dn, k * H)
        w_pair = weight[..., k * Dn:].reshape(B, H, J, De).permute(0, 3, 2, 1).reshape(B, De, J * H)
        t_node = per_graph_matmul(node_x, node_graph, w_node).view(N, k, H)
        # The bias enters once per sub-graph: through node slot 0.
        t_node = torch.cat([t_node[:, :1] + stack.bias1[y][node_graph, None], t_node[:, 1:]], 1)
        t_pair = per_graph_matmul(pair_x, pair_graph, w_pair).view(P, J, H)
        hidden = self.dropout(torch.tanh(gather_sum(stack_tables(t_node, t_pair), rows)))
        logits = per_graph_matmul(hidden, sub_graph, stack.weight2[y].transpose(1, 2)) + stack.bias2[y][sub_graph]
        return torch.softmax(logits.masked_fill(~stack.active[y][sub_graph], -math.inf), -1)

    # ------------------------------------------------------------------ eq. 4 statistics
    def _fused_moments(self, stack: _MixtureStack, node_x: Tensor, pair_x: Tensor, y: Tensor, graphs, rows: Tensor,
                       sub_graph: Tensor, gamma: Tensor, video_class: Tensor, num_present: int,
                       shift_node: Tensor, shift_pair: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        r"""Per present class: sub-graph count ``[Cp]``, mass :math:`\sum\gamma` ``[Cp, K]`` and the first and
        second moments of :math:`x - \text{shift}` weighted by :math:`\gamma` ``[Cp, K, D]``, by scattering
        :math:`\gamma` onto (node, slot) and (pair, slot) rows and one matmul per video."""
        node_graph, pair_graph = graphs
        k, J, Dn, De = stack.k, stack.num_pair_slots, self.node_channels, self.pair_channels
        B, N, P, K = y.numel(), node_x.size(0), pair_x.size(0), gamma.size(1)
        weight_rows = scatter_rows(gamma, rows, N * k + P * J)
        sub_class = video_class[sub_graph]
        count = torch.bincount(sub_class, minlength=num_present)
        mass = scatter(gamma, sub_class, dim=0, dim_size=num_present)
        xn = node_x - shift_node[video_class[node_graph]]
        xp = pair_x - shift_pair[video_class[pair_graph]]
        moments = []
        for a, x, graph, slots, dim in ((weight_rows[:N * k].view(N, k * K), xn, node_graph, k, Dn),
                                        (weight_rows[N * k:].view(P, J * K), xp, pair_graph, J, De)):
            per_video = per_graph_inner(a, torch.cat([x, x * x], -1), graph, B)  # [B, slots * K, 2 dim]
            per_class = scatter(per_video, video_class, dim=0, dim_size=num_present)
            per_class = per_class.view(num_present, slots, K, 2, dim).permute(3, 0, 2, 1, 4)
            moments.append(per_class.reshape(2, num_present, K, slots * dim))
        first, second = torch.cat(moments, -1).unbind(0)
        return count, mass, first, second

    def _materialised_moments(self, stack: _MixtureStack, node_x: Tensor, pair_x: Tensor, y: Tensor,
                              sub: Subgraphs, classes: Tensor, shift: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        counts, masses, firsts, seconds = [], [], [], []
        sub_label = y[sub.batch]
        for c, s in zip(classes.tolist(), shift):
            keep = sub_label == c
            x = materialise(node_x, pair_x, sub.nodes[keep], sub.pair_index[keep])
            gamma = self._membership(stack, x, c)
            x = x - s
            counts.append(x.size(0))
            masses.append(gamma.sum(0))
            firsts.append(gamma.t() @ x)
            seconds.append(torch.einsum("nk,nd->kd", gamma, x * x) if self.covariance == "diag" else
                           torch.einsum("nk,nd,ne->kde", gamma, x, x))
        return (torch.tensor(counts, device=node_x.device), torch.stack(masses), torch.stack(firsts),
                torch.stack(seconds))

    def _estimate(self, count: Tensor, mass: Tensor, first: Tensor, second: Tensor,
                  shift: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Eq. 4 from shifted moments: ``phi [Cp, K]``, ``mu [Cp, K, D]``, ``cov`` and the shifted means."""
        denominator = mass.clamp_min(self.eps)[..., None]
        mu_shifted = first / denominator
        if second.dim() == 3:
            cov = (second - 2 * mu_shifted * first + mu_shifted * mu_shifted * mass[..., None]) / denominator
            cov = cov.clamp_min(0.0)
        else:
            outer = mu_shifted[..., :, None] * first[..., None, :]
            cov = (second - outer - outer.transpose(-1, -2) + mass[..., None, None] * mu_shifted[..., :, None]
                   * mu_shifted[..., None, :]) / denominator[..., None]
        phi = mass / count.clamp_min(1)[:, None].to(mass)
        return phi, mu_shifted + shift[:, None], cov, mu_shifted

    # ------------------------------------------------------------------ training
    def loss(self, node_x: Tensor, pair_x: Tensor, node_ptr: Tensor, y: Tensor,
             subgraphs: Optional[Dict[int, Subgraphs]] = None, *, max_subgraphs_per_video: Optional[int] = None,
             generator: Optional[torch.Generator] = None, reduction: str = "sum",
             fused: Optional[bool] = None, select: Optional[Dict[int, Tensor]] = None) -> Tensor:
        r"""MUSLE's eq. 6 for every (class present in ``y``, scale) mixture, fitted on the sub-graphs of that
        class's videos in the batch (the batch's own mixtures), reduced over those mixtures by ``reduction``
        (``"sum"``, default, or ``"mean"``). In training mode the running estimates of the present classes move
        towards the batch's with ``momentum``. With ``background=True`` the background mixture of each scale is
        fitted in the same way on the sub-graphs of all videos.

        Args:
            node_x: ``[N, D_n]``. pair_x: ``[P, D_e]``. node_ptr: ``[B + 1]``. y: ``[B]`` video labels.
            subgraphs: ``{k: Subgraphs}`` complete-mode sub-graphs of every scale (possibly sub-sampled);
                default: all of them, or ``max_subgraphs_per_video`` drawn uniformly with ``generator``.
            fused: ``None`` picks the fused path for diagonal covariances.
            select: ``{k: BoolTensor [S_k]}`` restricts the class mixtures to these rows of ``subgraphs[k]``
                (e.g. each video's best sub-graphs; the background mixture still sees all rows).
        """
        node_ptr = self._check_inputs(node_x, pair_x, node_ptr, y)
        if reduction not in ("sum", "mean"):
            raise ValueError(f"'reduction' must be 'sum' or 'mean', got {reduction!r}")
        use_fused = self._use_fused(fused)
        if select is not None and subgraphs is None:
            raise ValueError("'select' masks the rows of 'subgraphs': pass both")
        subgraphs = self._subgraphs(node_ptr, subgraphs, max_subgraphs_per_video, generator, node_x.device)
        losses = []
        for k in self.scales:
            stack, sub = self.stack(k), subgraphs[k]
            fits = [(y, sub if select is None else self._selected(select, sub))]
            if self.background:
                fits.append((torch.full_like(y, self.num_classes), sub))
            for labels, rows in fits:
                if len(rows) == 0:
                    continue
                classes, video_class = torch.unique(labels, return_inverse=True)
                present = torch.unique(video_class[rows.batch])  # classes with sub-graphs at this scale
                if use_fused:
                    losses.append(self._fused_loss(stack, node_x, pair_x, node_ptr, labels, rows, classes,
                                                   video_class, present))
                else:
                    losses.append(self._materialised_loss(stack, node_x, pair_x, labels, rows, classes[present]))
        if not losses:
            raise ValueError("no video has a sub-graph at any scale: the mixtures need at least one sample")
        losses = torch.cat(losses)
        return losses.sum() if reduction == "sum" else losses.mean()

    def _fused_loss(self, stack: _MixtureStack, node_x: Tensor, pair_x: Tensor, node_ptr: Tensor, y: Tensor,
                    sub: Subgraphs, classes: Tensor, video_class: Tensor, present: Tensor) -> Tensor:
        k, J, Dn, De, D = stack.k, stack.num_pair_slots, self.node_channels, self.pair_channels, stack.in_channels
        N, Cp = node_x.size(0), classes.numel()
        graphs = (graph_of_rows(node_ptr).to(node_x.device), graph_of_rows(pair_ptr(node_ptr)).to(node_x.device))
        rows = slot_rows(sub.nodes, sub.pair_index, N)
        gamma = self._fused_membership(stack, node_x, pair_x, y, graphs, rows, sub.batch)
        with torch.no_grad():  # any constant shift gives the same moments; the class mean keeps them well scaled
            shift_node = scatter(node_x.detach(), video_class[graphs[0]], dim=0, dim_size=Cp, reduce="mean")
            shift_pair = scatter(pair_x.detach(), video_class[graphs[1]], dim=0, dim_size=Cp, reduce="mean")
        count, mass, first, second = self._fused_moments(stack, node_x, pair_x, y, graphs, rows, sub.batch, gamma,
                                                         video_class, Cp, shift_node, shift_pair)
        shift = torch.cat([shift_node.repeat(1, k), shift_pair.repeat(1, J)], -1)
        phi, mu, var, mu_shifted = self._estimate(count, mass, first, second, shift)
        if self.training:
            stack.update_running(classes[present], phi[present], mu[present], var[present], self.momentum)
        # eq. 5 per sub-graph through slot tables of -0.5 (x~^2 / var - 2 x~ mu~ / var) per video's class.
        active = stack.active[classes]
        precision = 1.0 / (var + self.eps)
        quadratic, linear = -0.5 * precision, mu_shifted * precision
        const = stack.log_phi(phi, active) - 0.5 * (
            D * _LOG_2PI + (var + self.eps).log().sum(-1) + (mu_shifted * mu_shifted * precision).sum(-1))
        K = phi.size(1)
        tables = []
        for x, graph, slots, dim, offset in ((node_x - shift_node[video_class[graphs[0]]], graphs[0], k, Dn, 0),
                                             (pair_x - shift_pair[video_class[graphs[1]]], graphs[1], J, De, k * Dn)):
            block = slice(offset, offset + slots * dim)
            weight = torch.cat([quadratic[..., block].reshape(Cp, K, slots, dim),
                                linear[..., block].reshape(Cp, K, slots, dim)], -1)  # [Cp, K, slots, 2 dim]
            weight = weight.permute(0, 3, 2, 1).reshape(Cp, 2 * dim, slots * K)[video_class]
            tables.append(per_graph_matmul(torch.cat([x * x, x], -1), graph, weight).view(-1, slots, K))
        node_table = torch.cat([tables[0][:, :1] + const[video_class[graphs[0]], None], tables[0][:, 1:]], 1)
        log_prob = torch.logsumexp(gather_sum(stack_tables(node_table, tables[1]), rows), -1)  # [S]
        nll = -scatter(log_prob, video_class[sub.batch], dim=0, dim_size=Cp, reduce="mean")
        penalty = self.lambda_cov * (precision * active[..., None]).sum((1, 2))
        return (nll + penalty)[present]

    def _materialised_loss(self, stack: _MixtureStack, node_x: Tensor, pair_x: Tensor, y: Tensor, sub: Subgraphs,
                           classes: Tensor) -> Tensor:
        losses, estimates = [], []
        sub_label = y[sub.batch]
        for c in classes.tolist():
            keep = sub_label == c
            x = materialise(node_x, pair_x, sub.nodes[keep], sub.pair_index[keep])
            active = stack.active[c]
            gamma = self._membership(stack, x, c)[:, active]
            losses.append(gmm_energy_loss(x, gamma, self.covariance, self.lambda_cov, self.eps))
            if self.training:
                phi, mu, cov = gmm_estimate(x.detach(), gamma.detach(), self.covariance, self.eps)
                full = [torch.zeros((stack.num_components,) + t.shape[1:], dtype=t.dtype, device=t.device)
                        for t in (phi, mu, cov)]
                for target, value in zip(full, (phi, mu, cov)):
                    target[active] = value
                estimates.append(full)
        if self.training:
            phi, mu, cov = (torch.stack(t) for t in zip(*estimates))
            stack.update_running(classes, phi, mu, cov, self.momentum)
        return torch.stack(losses)

    # ------------------------------------------------------------------ inference
    def class_scores(self, node_x: Tensor, pair_x: Tensor, node_ptr: Tensor,
                     subgraphs: Optional[Dict[int, Subgraphs]] = None, *, return_best: bool = False,
                     fused: Optional[bool] = None, progress: bool = False, per_scale: bool = False
                     ) -> Union[Tensor, Tuple[Tensor, BestSubgraphs]]:
        r"""MUSLE inference: per video and class, the highest :math:`\log p(x)` over all sub-graphs of all
        scales under the running estimates, ``[B, C]`` (with ``background=True`` the highest
        :math:`\log p_c(x) - \log p_{\text{bg}}(x)`; other ``scale_reduce`` rules combine the per-scale maxima,
        see :meth:`reduce_scales`; ``per_scale=True`` returns those maxima, ``[len(scales), B, C]``).

        Differentiable w.r.t. ``node_x`` and ``pair_x`` (the gradient of a max flows to its argmax sub-graph).
        The fused path searches without autograd, chunk by chunk, and then re-scores only the ``B * C * len(scales)``
        winning sub-graphs with autograd. With ``return_best=True`` also returns :class:`BestSubgraphs`.

        Args:
            subgraphs: ``{k: Subgraphs}`` complete-mode sub-graphs of every scale; default: all, enumerated
                per video as scoring proceeds.
            progress: show a tqdm bar over videos and scales (fused path).
        """
        node_ptr = self._check_inputs(node_x, pair_x, node_ptr)
        use_fused = self._use_fused(fused)
        if subgraphs is not None or not use_fused:
            subgraphs = self._subgraphs(node_ptr, subgraphs, device=node_x.device)
        B, C = node_ptr.numel() - 1, self.num_classes
        scores, rows, nodes = [], [], []
        bar = tqdm(total=B * len(self.scales), disable=not (progress and use_fused), unit="video",
                   desc="class scores")
        for k in self.scales:
            stack = self.stack(k)
            sub = subgraphs[k] if subgraphs is not None else None
            if use_fused:
                parameters = self._scoring_parameters(stack, node_x.dtype)
                best_row = self._fused_search(stack, parameters, node_x.detach(), pair_x.detach(), node_ptr, sub, bar)
                score, best_nodes = self._score_rows(stack, parameters, node_x, pair_x, node_ptr, sub, best_row)
            else:
                score, best_row = self._materialised_scores(stack, node_x, pair_x, sub)
                best_nodes = sub.nodes[best_row.clamp_min(0)]
            scores.append(score.masked_fill(best_row < 0, -math.inf))
            rows.append(best_row)
            padded = F.pad(best_nodes, (0, max(self.scales) - k), value=-1)
            nodes.append(padded.masked_fill(best_row[..., None] < 0, -1))
        bar.close()
        stacked = torch.stack(scores)
        _, which = stacked.max(0)
        best_score = stacked if per_scale else self.reduce_scales(stacked)
        if not return_best:
            return best_score
        pick = which[None]
        index = torch.stack(rows).gather(0, pick)[0]
        best = BestSubgraphs(torch.tensor(self.scales, device=which.device)[which].masked_fill(index < 0, 0), index,
                             torch.stack(nodes).gather(0, pick[..., None].expand(1, B, C, max(self.scales)))[0])
        return best_score, best

    def reduce_scales(self, per_scale: Tensor) -> Tensor:
        """``[B, C]`` class scores from the per-scale maxima ``[len(scales), B, C]`` (``scale_reduce``)."""
        if self.scale_reduce == "max":
            return per_scale.amax(0)
        if self.scale_reduce == "sum":
            return per_scale.sum(0)
        return (self.scale_log_weight.exp()[:, None] * per_scale).sum(0) + self.scale_bias

    @torch.no_grad()
    def calibrate_(self, loader: Iterable, max_iter: int = 200, progress: bool = False) -> "PrototypeBank":
        r"""``scale_reduce="learned"``: sets ``scale_log_weight`` and ``scale_bias`` to the minimiser of the
        cross-entropy of the class scores over ``loader`` (tuples ``(node_x, pair_x, node_ptr, y[, subgraphs])``,
        scored under the running estimates; :class:`torch.optim.LBFGS`, ``max_iter`` iterations). Each class's
        mixtures are fitted on its own videos only, so their scores are not on one scale across classes and
        sub-graph sizes; this fits the :math:`2 \cdot |\text{scales}| \cdot C`-parameter map that makes them
        comparable (vector scaling, Guo et al., ICML 2017). Videos without a sub-graph at some scale are left out."""
        if self.scale_reduce != "learned":
            raise ValueError(f"calibrate_ needs scale_reduce='learned', got {self.scale_reduce!r}")
        per_scale, labels = [], []
        for item in tqdm(loader, disable=not progress, unit="batch", desc="calibrate"):
            if not isinstance(item, (tuple, list)) or len(item) not in (4, 5):
                raise ValueError("'loader' must yield tuples (node_x, pair_x, node_ptr, y[, subgraphs])")
            node_x, pair_x, node_ptr, y = item[:4]
            self._check_inputs(node_x, pair_x, node_ptr, y)
            per_scale.append(self.class_scores(node_x, pair_x, node_ptr, item[4] if len(item) == 5 else None,
                                               per_scale=True))
            labels.append(y)
        if not labels:
            raise ValueError("'loader' yielded no batch")
        scores, y = torch.cat(per_scale, 1), torch.cat(labels)
        keep = torch.isfinite(scores).all(0).all(-1)
        if not bool(keep.any()):
            raise ValueError("no video of 'loader' has a sub-graph at every scale")
        scores, y = scores[:, keep], y[keep]
        unit = scores.abs().mean().clamp_min(torch.finfo(scores.dtype).tiny)   # a well-conditioned problem
        log_weight = torch.zeros_like(self.scale_log_weight, dtype=scores.dtype).requires_grad_()
        bias = torch.zeros_like(self.scale_bias, dtype=scores.dtype).requires_grad_()
        optimizer = torch.optim.LBFGS([log_weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            logits = (log_weight.exp()[:, None] * scores / unit).sum(0) + bias
            loss = F.cross_entropy(logits, y)
            loss.backward()
            return loss

        with torch.enable_grad():
            optimizer.step(closure)
        self.scale_log_weight.copy_(log_weight.detach() - unit.log())
        self.scale_bias.copy_(bias.detach())
        return self

    def forward(self, node_x: Tensor, pair_x: Tensor, node_ptr: Tensor,
                subgraphs: Optional[Dict[int, Subgraphs]] = None) -> Tensor:
        """:meth:`class_scores`."""
        return self.class_scores(node_x, pair_x, node_ptr, subgraphs)

    @torch.no_grad()
    def predict(self, node_x: Tensor, pair_x: Tensor, node_ptr: Tensor,
                subgraphs: Optional[Dict[int, Subgraphs]] = None) -> Tensor:
        """``[B]`` the class of highest score (MUSLE: argmax over classes of the best sub-graph likelihood)."""
        return self.class_scores(node_x, pair_x, node_ptr, subgraphs).argmax(-1)

    def _scoring_parameters(self, stack: _MixtureStack, dtype) -> Tuple[Tensor, ...]:
        """Shifts, tables weights and constants of the running mixtures of one scale (diagonal)."""
        k, J, Dn, De, D = stack.k, stack.num_pair_slots, self.node_channels, self.pair_channels, stack.in_channels
        mu, var, active = stack.running_mu.to(dtype), stack.running_cov.to(dtype), stack.active
        weights = active.to(dtype)[..., None] / active.sum()
        mean = (mu * weights).sum((0, 1))
        shift_node = mean[:k * Dn].view(k, Dn).mean(0)
        shift_pair = mean[k * Dn:].view(J, De).mean(0) if J else mean.new_zeros(De)
        shift_full = torch.cat([shift_node.repeat(k), shift_pair.repeat(J)])
        mu_shifted = mu - shift_full
        precision = 1.0 / (var + self.eps)
        quadratic, linear = -0.5 * precision, mu_shifted * precision
        const = stack.log_phi(stack.running_phi.to(dtype), active) - 0.5 * (
            D * _LOG_2PI + (var + self.eps).log().sum(-1) + (mu_shifted * mu_shifted * precision).sum(-1))
        return shift_node, shift_pair, shift_full, quadratic, linear, const

    def _slot_weights(self, stack: _MixtureStack, quadratic: Tensor, linear: Tensor) -> Tuple[Tensor, Tensor]:
        """``[2 D_n, k G]`` and ``[2 D_e, J G]``: ``[x^2, x] @ w`` gives a slot's contribution for all ``G = M K``
        Gaussians of the ``M`` mixtures, column ``slot * G + j * M + m`` (component-major: the max over a
        mixture's components is then an elementwise max of ``K`` contiguous blocks)."""
        k, J, Dn, De = stack.k, stack.num_pair_slots, self.node_channels, self.pair_channels
        C, K = quadratic.shape[:2]
        split = k * Dn
        w_node = torch.cat([quadratic[..., :split].reshape(C, K, k, Dn), linear[..., :split].reshape(C, K, k, Dn)], -1)
        w_pair = torch.cat([quadratic[..., split:].reshape(C, K, J, De), linear[..., split:].reshape(C, K, J, De)], -1)
        return (w_node.permute(3, 2, 1, 0).reshape(2 * Dn, k * C * K),
                w_pair.permute(3, 2, 1, 0).reshape(2 * De, J * C * K))

    @staticmethod
    def _video_subgraphs(k: int, b: int, num_nodes: int, device) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """All k-node sub-graphs of video ``b`` with local node and pair ids, each row's prefix (``0, 1, ...``)
        and each prefix's first row."""
        if num_nodes < k:
            raise ValueError(f"'k'={k} exceeds the number of nodes ({num_nodes}) of graph {b}")
        local = enumerate_subgraphs(Data(num_nodes=num_nodes), k)
        prefixes = local.prefixes()
        return (local.nodes.to(device), local.pair_index.to(device), prefixes.index.to(device),
                prefixes.first.to(device))

    @torch.no_grad()
    def _fused_search(self, stack: _MixtureStack, parameters: Tuple[Tensor, ...], node_x: Tensor, pair_x: Tensor,
                      node_ptr: Tensor, sub: Optional[Subgraphs], bar) -> Tensor:
        """``[B, C]`` row (in the batch's enumeration at this scale) of every video's best sub-graph per class."""
        k, J, C = stack.k, stack.num_pair_slots, self.num_classes
        G = self.num_mixtures * stack.num_components
        shift_node, shift_pair, _, quadratic, linear, const = parameters
        w_node, w_pair = self._slot_weights(stack, quadratic, linear)

        def tables(xn: Tensor, xp: Tensor) -> Tuple[Tensor, Tensor]:
            node_table = (torch.cat([xn * xn, xn], -1) @ w_node).view(-1, k, G)
            node_table[:, 0] += const.t().reshape(G)  # each Gaussian's constant enters once, through node slot 0
            return node_table, (torch.cat([xp * xp, xp], -1) @ w_pair).view(-1, J, G)

        if sub is not None:
            # Given sub-graphs (typically a training sample, whose rows rarely share prefixes): the whole batch
            # in chunks of rows. Enumerated ones: video by video, each prefix's partial sum shared.
            table = stack_tables(*tables(node_x - shift_node, pair_x - shift_pair))
            best_row = self._best_rows_batched(stack, table, slot_rows(sub.nodes, sub.pair_index, node_x.size(0)),
                                               sub.batch, node_ptr.numel() - 1)
            bar.update(node_ptr.numel() - 1)
            return best_row
        node_ptr_list, pptr = node_ptr.tolist(), pair_ptr(node_ptr).tolist()
        B = len(node_ptr_list) - 1
        best_row = torch.full((B, C), -1, dtype=torch.long, device=node_x.device)
        offset = 0  # first row of video b in the batch's enumeration
        for b in range(B):
            n0, n1, p0, p1 = node_ptr_list[b], node_ptr_list[b + 1], pptr[b], pptr[b + 1]
            nodes, pairs, prefix_index, prefix_first = self._video_subgraphs(k, b, n1 - n0, node_x.device)
            if nodes.size(0) > 0:
                node_table, pair_table = tables(node_x[n0:n1] - shift_node, pair_x[p0:p1] - shift_pair)
                local = self._best_rows(stack, node_table, pair_table, slot_rows(nodes, pairs, n1 - n0),
                                        prefix_index, prefix_first)
                best_row[b] = torch.where(local >= 0, offset + local, -1)
            offset += nodes.size(0)
            bar.update(1)
        return best_row

    def _best_rows_batched(self, stack: _MixtureStack, table: Tensor, rows: Tensor, batch: Tensor,
                           num_graphs: int) -> Tensor:
        """``[B, C]`` row of every video's best sub-graph per class, all videos at once, by chunks of rows."""
        C, M, K = self.num_classes, self.num_mixtures, stack.num_components
        best = table.new_full((num_graphs, C), -math.inf)
        best_row = torch.full((num_graphs, C), -1, dtype=torch.long, device=rows.device)
        for s in range(0, rows.size(0), self.chunk_size):
            e = min(s + self.chunk_size, rows.size(0))
            per_row = self._class_scores_of_rows(torch.logsumexp(gather_sum(table, rows[s:e]).view(e - s, K, M), 1))
            chunk_best, chunk_row = self._best_per_graph(per_row, batch[s:e], num_graphs)
            better = chunk_best > best
            best = torch.where(better, chunk_best, best)
            best_row = torch.where(better, s + chunk_row, best_row)
        return best_row

    def _class_scores_of_rows(self, per_mixture: Tensor) -> Tensor:
        """``[S, C]`` from every row's log-density under every mixture ``[S, M]``: the classes' log-densities,
        or with ``background=True`` their ratio to the background's."""
        C = self.num_classes
        return per_mixture[:, :C] - per_mixture[:, C:] if self.background else per_mixture

    @staticmethod
    def _best_per_graph(per_row: Tensor, batch: Tensor, num_graphs: int) -> Tuple[Tensor, Tensor]:
        """``[B, C]`` maximum of ``per_row [S, C]`` over each graph's rows and its first row (``-1``: none)."""
        S, C = per_row.shape
        graph = batch[:, None].expand(-1, C)
        best = per_row.new_full((num_graphs, C), -math.inf).scatter_reduce(0, graph, per_row, "amax")
        rows = torch.arange(S, device=per_row.device)[:, None].expand(-1, C)
        first = torch.full((num_graphs, C), S, dtype=torch.long, device=per_row.device).scatter_reduce(
            0, graph, torch.where(per_row == best[batch], rows, S), "amin")
        return best, first.masked_fill(first == S, -1)

    def _best_rows(self, stack: _MixtureStack, node_table: Tensor, pair_table: Tensor, rows: Tensor,
                   prefix_index: Tensor, prefix_first: Tensor) -> Tensor:
        """``[C]`` local row of one video's best sub-graph per class, by chunks of ``chunk_size`` rows."""
        C, M, K = self.num_classes, self.num_mixtures, stack.num_components
        G, num_rows = M * K, rows.size(0)
        prefix_cols, tail_cols = prefix_rows(stack.k, rows.device)
        table_rows = node_table.size(0) * node_table.size(1) + pair_table.size(0) * pair_table.size(1)
        starts = list(range(0, num_rows, self.chunk_size))
        spans = [int(prefix_index[min(s + self.chunk_size, num_rows) - 1] - prefix_index[s]) + 1 for s in starts]
        # One work table: the slot rows, then the partial sums of the chunk's prefixes.
        work = node_table.new_empty(table_rows + max(spans), G)
        torch.cat([node_table.view(-1, G), pair_table.view(-1, G)], out=work[:table_rows])
        best = node_table.new_full((C,), -math.inf)
        best_row = torch.full((C,), -1, dtype=torch.long, device=rows.device)
        slack = math.log(K)
        rounding = 64 * torch.finfo(node_table.dtype).eps
        for s, span in zip(starts, spans):
            e = min(s + self.chunk_size, num_rows)
            first_prefix = int(prefix_index[s])
            heads = prefix_first[first_prefix:first_prefix + span]
            work[table_rows:table_rows + span] = gather_sum(work[:table_rows], rows[heads][:, prefix_cols])
            tail = torch.cat([rows[s:e][:, tail_cols], (table_rows + prefix_index[s:e] - first_prefix)[:, None]], 1)
            values = gather_sum(work[:table_rows + span], tail).view(e - s, K, M)
            # logsumexp_j lies in [max_j, max_j + log K]: only (row, class) whose upper bound reaches the best
            # lower bound so far can hold the class's maximum; exact log-sum-exps are taken for those alone.
            peak = values[:, 0, :C].clone()  # [rows, C]
            for j in range(1, K):
                torch.maximum(peak, values[:, j, :C], out=peak)
            if self.background:  # the ratio's denominator, exact for every row: the bounds shift with it
                reference = torch.logsumexp(values[:, :, C], -1)
                peak -= reference[:, None]
            lower = torch.maximum(best, peak.amax(0))
            row, cls = (peak + (slack + rounding * (1 + lower.abs())) >= lower).nonzero().unbind(1)
            exact = torch.logsumexp(values[row, :, cls], -1)
            if self.background:
                exact = exact - reference[row]
            chunk_best = torch.full_like(best, -math.inf).scatter_reduce(0, cls, exact, "amax")
            winner = exact == chunk_best[cls]
            chunk_row = torch.full_like(best_row, e).scatter_reduce(0, cls[winner], row[winner], "amin")
            better = chunk_best > best
            best = torch.where(better, chunk_best, best)
            best_row = torch.where(better, s + chunk_row, best_row)
        return best_row

    def _score_rows(self, stack: _MixtureStack, parameters: Tuple[Tensor, ...], node_x: Tensor, pair_x: Tensor,
                    node_ptr: Tensor, sub: Optional[Subgraphs], best_row: Tensor) -> Tuple[Tensor, Tensor]:
        """Differentiable log p (or log-likelihood ratio) of the chosen sub-graph of every (video, class), and its
        global nodes."""
        k, C = stack.k, self.num_classes
        if sub is not None:
            nodes = sub.nodes[best_row.clamp_min(0)]  # [B, C, k]
            pairs = sub.pair_index[best_row.clamp_min(0)]
        else:
            nodes, pairs = self._unrank(node_ptr, k, best_row)
        _, _, shift_full, quadratic, linear, const = parameters
        x = materialise(node_x, pair_x, nodes, pairs) - shift_full  # [B, C, D]
        joint = (torch.einsum("bcd,ckd->bck", x * x, quadratic[:C]) + torch.einsum("bcd,ckd->bck", x, linear[:C])
                 + const[:C])
        score = torch.logsumexp(joint, -1)
        if self.background:
            reference = (torch.einsum("bcd,kd->bck", x * x, quadratic[C]) + torch.einsum("bcd,kd->bck", x, linear[C])
                         + const[C])
            score = score - torch.logsumexp(reference, -1)
        return score, nodes

    @staticmethod
    def _unrank(node_ptr: Tensor, k: int, best_row: Tensor) -> Tuple[Tensor, Tensor]:
        """Nodes and pair ids of rows of the (never materialised) batch enumeration."""
        sizes = node_ptr.diff().tolist()
        counts = torch.tensor([math.comb(n, k) for n in sizes], device=best_row.device)
        starts = torch.cumsum(counts, 0) - counts
        local = (best_row - starts[:, None]).clamp_min(0)
        nodes = torch.empty(best_row.shape + (k,), dtype=torch.long, device=best_row.device)
        pairs = torch.empty(best_row.shape + (k * (k - 1) // 2,), dtype=torch.long, device=best_row.device)
        pptr = pair_ptr(node_ptr)
        for b, n in enumerate(sizes):
            if n < k:
                nodes[b], pairs[b] = 0, 0
                continue
            table = enumerate_subgraphs(Data(num_nodes=n), k)
            nodes[b] = table.nodes.to(best_row.device)[local[b]] + node_ptr[b]
            pairs[b] = table.pair_index.to(best_row.device)[local[b]] + pptr[b]
        return nodes, pairs

    def _materialised_scores(self, stack: _MixtureStack, node_x: Tensor, pair_x: Tensor,
                             sub: Subgraphs) -> Tuple[Tensor, Tensor]:
        M, K, D = self.num_mixtures, stack.num_components, stack.in_channels
        x = materialise(node_x, pair_x, sub.nodes, sub.pair_index)  # [S, D]
        mu = stack.running_mu.to(x.dtype).reshape(M * K, D)
        cov = stack.running_cov.to(x.dtype).reshape((M * K,) + stack.running_cov.shape[2:])
        log_phi = stack.log_phi(stack.running_phi.to(x.dtype), stack.active).reshape(M * K)
        step = max(1, (1 << 24) // (M * K * D))  # large blocks: freed to the OS at once, no heap growth
        per_row = torch.cat([(gmm_component_log_prob(part, mu, cov, self.eps) + log_phi).view(-1, M, K).logsumexp(-1)
                             for part in x.split(step)]) if len(x) else x.new_zeros(0, M)
        return self._best_per_graph(self._class_scores_of_rows(per_row), sub.batch, sub.num_graphs)

    # ------------------------------------------------------------------ running estimates, dynamic K
    @torch.no_grad()
    def fit_(self, loader: Iterable, fused: Optional[bool] = None, progress: bool = False) -> "PrototypeBank":
        r"""Sets the running estimates of every class seen in ``loader`` to eq. 4 over all its sub-graphs
        (one pass; moments are accumulated around each mixture's first batch mean, which avoids the cancellation
        of :math:`E[x^2] - \mu^2`), and those of the background mixtures (``background=True``) over the
        sub-graphs of all videos. ``loader`` yields tuples ``(node_x, pair_x, node_ptr, y[, subgraphs[,
        select]])`` (see :meth:`loss` for ``subgraphs`` and ``select``); classes it never shows keep their
        estimates. ``progress`` shows a tqdm bar over batches."""
        use_fused = self._use_fused(fused)
        sums: Dict[int, List] = {}
        seen = None
        for item in tqdm(loader, disable=not progress, unit="batch", desc="fit"):
            if not isinstance(item, (tuple, list)) or len(item) not in (4, 5, 6):
                raise ValueError("'loader' must yield tuples (node_x, pair_x, node_ptr, y[, subgraphs[, select]])")
            node_x, pair_x, node_ptr, y = item[:4]
            node_ptr = self._check_inputs(node_x, pair_x, node_ptr, y)
            select = item[5] if len(item) == 6 else None
            if select is not None and (len(item) < 5 or item[4] is None):
                raise ValueError("'select' masks the rows of 'subgraphs': the loader must yield both")
            subgraphs = self._subgraphs(node_ptr, item[4] if len(item) >= 5 else None, device=node_x.device)
            if seen is None:
                seen = torch.zeros(self.num_mixtures, dtype=torch.bool, device=node_x.device)
                shift_node = node_x.new_zeros(self.num_mixtures, self.node_channels)
                shift_pair = node_x.new_zeros(self.num_mixtures, self.pair_channels)
            graphs = (graph_of_rows(node_ptr).to(node_x.device), graph_of_rows(pair_ptr(node_ptr)).to(node_x.device))
            fits = [(y, {k: sub if select is None else self._selected(select, sub)
                         for k, sub in subgraphs.items()})]
            if self.background:
                fits.append((torch.full_like(y, self.num_classes), subgraphs))
            for labels, chosen in fits:
                classes, video_class = torch.unique(labels, return_inverse=True)
                new = ~seen[classes]
                shift_node[classes[new]] = scatter(node_x, video_class[graphs[0]], dim=0, dim_size=classes.numel(),
                                                   reduce="mean")[new]
                shift_pair[classes[new]] = scatter(pair_x, video_class[graphs[1]], dim=0, dim_size=classes.numel(),
                                                   reduce="mean")[new]
                seen[classes] = True
                for k in self.scales:
                    stack, sub = self.stack(k), chosen[k]
                    if use_fused:
                        rows = slot_rows(sub.nodes, sub.pair_index, node_x.size(0))
                        gamma = self._fused_membership(stack, node_x, pair_x, labels, graphs, rows, sub.batch)
                        moments = self._fused_moments(stack, node_x, pair_x, labels, graphs, rows, sub.batch, gamma,
                                                      video_class, classes.numel(), shift_node[classes],
                                                      shift_pair[classes])
                    else:
                        shift = torch.cat([shift_node[classes].repeat(1, k),
                                           shift_pair[classes].repeat(1, k * (k - 1) // 2)], -1)
                        moments = self._materialised_moments(stack, node_x, pair_x, labels, sub, classes, shift)
                    total = sums.setdefault(k, [torch.zeros(self.num_mixtures, dtype=torch.long,
                                                            device=node_x.device),
                                                node_x.new_zeros(stack.running_phi.shape),
                                                node_x.new_zeros(stack.running_mu.shape),
                                                node_x.new_zeros(stack.running_cov.shape)])
                    for target, value in zip(total, moments):
                        target.index_add_(0, classes, value.to(target.dtype))
        if seen is None:
            raise ValueError("'loader' yielded no batch")
        for k, (count, mass, first, second) in sums.items():
            stack = self.stack(k)
            fitted = (count > 0).nonzero().view(-1)
            shift = torch.cat([shift_node.repeat(1, k), shift_pair.repeat(1, k * (k - 1) // 2)], -1)[fitted]
            phi, mu, cov, _ = self._estimate(count[fitted], mass[fitted], first[fitted], second[fitted], shift)
            stack.update_running(fitted, phi, mu, cov, momentum=1.0, track=False)
        return self

    @torch.no_grad()
    def prune_(self, threshold: float = 0.02) -> "PrototypeBank":
        r"""Dynamic K: in every mixture, masks the components whose running weight :math:`\phi` is at most
        ``threshold`` (MUSLE: 0.02, after each epoch), renormalising the rest (which only raises them, so every
        kept weight exceeds the threshold); at least the heaviest component is kept. Masked components get zero
        weight and membership; parameter shapes do not change (see :meth:`compact_`)."""
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
