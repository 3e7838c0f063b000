r"""Eq. 6 of a :class:`~videograph.nn.PrototypeBank`: every present (class, scale) mixture fitted on the batch
and scored on its own sub-graphs, fused or materialised."""
import math
from typing import Dict, Optional

import torch
from torch import Tensor

from videograph.distributed import all_reduce_sum, world
from videograph.ops import gather_sum, scatter
from videograph.subgraph import Subgraphs, pair_ptr

from ..functional import gmm_energy_loss, gmm_estimate
from ..subgraph_tables import graph_of_rows, materialise, per_graph_matmul, slot_rows, stack_tables
from .stack import MixtureStack

__all__ = []

_LOG_2PI = math.log(2 * math.pi)


class Loss:
    """The training objective of :class:`~videograph.nn.PrototypeBank` (a mixin: it uses the bank's attributes)."""

    def loss(self, node_x: Tensor, pair_x: Tensor, node_ptr: Tensor, y: Tensor,
             subgraphs: Optional[Dict[int, Subgraphs]] = None, *, max_subgraphs_per_video: Optional[int] = None,
             generator: Optional[torch.Generator] = None, reduction: str = "sum",
             fused: Optional[bool] = None, select: Optional[Dict[int, Tensor]] = None) -> Tensor:
        r"""MUSLE's eq. 6 for every (class present in ``y``, scale) mixture, fitted on the sub-graphs of that
        class's videos in the batch (the batch's own mixtures), reduced over those mixtures by ``reduction``
        (``"sum"``, default, or ``"mean"``). In training mode the running estimates of the present classes move
        towards the batch's with ``momentum``. With ``background=True`` the background mixture of each scale is
        fitted in the same way on the sub-graphs of all videos.

        **In a process group** (more than one rank, e.g. under DDP) every statistic is the global batch's: the
        sub-graph counts, :math:`\sum\gamma` and :math:`\sum\gamma x` per (mixture, component) are all-reduced
        (differentiably: the backward all-reduces too), the second moments are centred on the resulting global
        means and all-reduced, and so is the class mean the density is expanded around; every mixture with a
        sub-graph on any rank is present on all, and the running estimates move identically on every rank. The
        value returned is then this rank's share of the global batch's loss (its sub-graphs' log-likelihoods
        over the global counts, the precision penalty over the world size): summed over ranks it is what one
        process returns on the union of the ranks' batches. This needs the fused path (diagonal covariances).

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
        synchronised = world()[1] > 1
        if synchronised and not use_fused:
            raise ValueError("in a process group the mixtures' statistics are all-reduced on the fused path only: "
                             "use covariance='diag' and fused=None or True")
        losses = []
        for k in self.scales:
            stack, sub = self.stack(k), subgraphs[k]
            fits = [(y, sub if select is None else self._selected(select, sub))]
            if self.background:
                fits.append((torch.full_like(y, self.num_classes), sub))
            for labels, rows in fits:
                if synchronised:   # every mixture, indexed alike on every rank; the global batch decides presence
                    everyone = torch.arange(self.num_mixtures, device=labels.device)
                    losses.append(self._fused_loss(stack, node_x, pair_x, node_ptr, labels, rows, everyone, labels,
                                                   None))
                    continue
                if len(rows) == 0:
                    continue
                classes, video_class = torch.unique(labels, return_inverse=True)
                present = torch.unique(video_class[rows.batch])  # classes with sub-graphs at this scale
                if use_fused:
                    losses.append(self._fused_loss(stack, node_x, pair_x, node_ptr, labels, rows, classes,
                                                   video_class, present))
                else:
                    losses.append(self._materialised_loss(stack, node_x, pair_x, labels, rows, classes[present]))
        losses = torch.cat(losses) if losses else node_x.new_zeros(0)
        if not losses.numel():
            raise ValueError("no video has a sub-graph at any scale: the mixtures need at least one sample")
        return losses.sum() if reduction == "sum" else losses.mean()

    def _fused_loss(self, stack: MixtureStack, node_x: Tensor, pair_x: Tensor, node_ptr: Tensor, y: Tensor,
                    sub: Subgraphs, classes: Tensor, video_class: Tensor, present: Optional[Tensor]) -> Tensor:
        """Eq. 6 of the mixtures ``classes[present]``. ``present=None`` (in a process group, ``classes`` all the
        mixtures): the moments and the shift are all-reduced, the mixtures with a sub-graph anywhere in the
        global batch are present, and the result is this rank's share of their losses (summed over ranks it is
        the loss of the global batch: its sub-graphs' log-likelihoods over the global counts, the penalty over
        the world size)."""
        k, J, Dn, De, D = stack.k, stack.num_pair_slots, self.node_channels, self.pair_channels, stack.in_channels
        N, Cp = node_x.size(0), classes.numel()
        reduce = all_reduce_sum if present is None else None
        graphs = (graph_of_rows(node_ptr).to(node_x.device), graph_of_rows(pair_ptr(node_ptr)).to(node_x.device))
        rows = slot_rows(sub.nodes, sub.pair_index, N)
        gamma = self._fused_membership(stack, node_x, pair_x, y, graphs, rows, sub.batch)
        with torch.no_grad():  # the class mean: eq. 5's expansion in x~ = x - shift stays well scaled
            if reduce is None:
                shift_node = scatter(node_x.detach(), video_class[graphs[0]], dim=0, dim_size=Cp, reduce="mean")
                shift_pair = scatter(pair_x.detach(), video_class[graphs[1]], dim=0, dim_size=Cp, reduce="mean")
            else:
                shift_node, shift_pair = self._global_class_means((node_x, pair_x), graphs, video_class, Cp)
        count, mass, mean, m2 = self._fused_moments(stack, node_x, pair_x, y, graphs, rows, sub.batch, gamma,
                                                    video_class, Cp, reduce)
        if present is None:
            present = (count > 0).nonzero().view(-1)
        phi, mu, var = self._estimate(count, mass, mean, m2)
        shift = torch.cat([shift_node.repeat(1, k), shift_pair.repeat(1, J)], -1)
        mu_shifted = mu - shift[:, None]  # eq. 5 below is expanded around the class mean: well scaled
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
        penalty = self.lambda_cov * (precision * active[..., None]).sum((1, 2))
        if reduce is None:
            nll = -scatter(log_prob, video_class[sub.batch], dim=0, dim_size=Cp, reduce="mean")
        else:   # this rank's share of the global mean over each class's sub-graphs, and of the penalty
            nll = -scatter(log_prob, video_class[sub.batch], dim=0, dim_size=Cp) / count.clamp_min(1).to(log_prob)
            penalty = penalty / world()[1]
        return (nll + penalty)[present]

    @staticmethod
    def _global_class_means(features, graphs, video_class: Tensor, num_classes: int):
        """Per class, the mean of each of ``features`` (``[R, dim]``, rows of the videos ``graphs``) over the
        global batch (all-reduced sums and counts)."""
        sums = [scatter(x.detach(), video_class[g], dim=0, dim_size=num_classes) for x, g in zip(features, graphs)]
        counts = [torch.bincount(video_class[g], minlength=num_classes).to(x) for x, g in zip(features, graphs)]
        flat = all_reduce_sum(torch.cat([t.reshape(-1) for t in sums + counts]))
        parts = flat.split([t.numel() for t in sums + counts])
        half = len(sums)
        return tuple(total.view_as(s) / n.clamp_min(1)[:, None]
                     for total, s, n in zip(parts[:half], sums, parts[half:]))

    def _materialised_loss(self, stack: MixtureStack, node_x: Tensor, pair_x: Tensor, y: Tensor, sub: Subgraphs,
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
