r"""Memberships and eq. 4 statistics of a :class:`~videograph.nn.PrototypeBank`, fused (per-slot tables) or
materialised, and :meth:`~videograph.nn.PrototypeBank.fit_` (the running estimates from a full pass)."""
import math
from typing import TYPE_CHECKING, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from videograph.distributed import all_gather, all_reduce_sum, world
from videograph.ops import gather_sum, scatter
from videograph.subgraph import Subgraphs, pair_ptr

from ..subgraph_tables import (graph_of_rows, materialise, per_graph_inner, per_graph_matmul, scatter_rows,
                               slot_rows, stack_tables)
from ..gmm import merge_moments
from .stack import MixtureStack

if TYPE_CHECKING:
    from .bank import PrototypeBank

__all__ = ["combine_rank_moments"]


class Statistics:
    """The eq. 4 half of :class:`~videograph.nn.PrototypeBank` (a mixin: it uses the bank's attributes)."""

    def _membership(self, stack: MixtureStack, x: Tensor, c: int) -> Tensor:
        """Materialised memberships ``[S, K]`` of samples ``x [S, D]`` under class ``c``'s network."""
        hidden = self.dropout(torch.tanh(F.linear(x, stack.weight1[c], stack.bias1[c])))
        logits = F.linear(hidden, stack.weight2[c], stack.bias2[c]).masked_fill(~stack.active[c], -math.inf)
        return torch.softmax(logits, -1)

    def _fused_membership(self, stack: MixtureStack, node_x: Tensor, pair_x: Tensor, y: Tensor, graphs,
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
    def _fused_moments(self, stack: MixtureStack, node_x: Tensor, pair_x: Tensor, y: Tensor, graphs, rows: Tensor,
                       sub_graph: Tensor, gamma: Tensor, video_class: Tensor, num_present: int,
                       reduce: Optional[Callable[[Tensor, bool], Tensor]] = None
                       ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        r"""Per present class: sub-graph count ``[Cp]``, mass :math:`\sum\gamma` ``[Cp, K]``, the means
        :math:`\mu` ``[Cp, K, D]`` and the centred second moments :math:`\sum \gamma (x - \mu)^2` ``[Cp, K, D]``.
        :math:`\gamma` is scattered onto (node, slot) and (pair, slot) rows; the means take one matmul per video,
        the second moments are summed over (node, slot) and (pair, slot) rows around each component's own mean
        (``[N, K, k, D_n]`` and ``[P, K, k(k-1)/2, D_e]`` intermediates), so no :math:`E[x^2] - \mu^2`
        cancellation occurs, however far a component lies from the class mean.

        ``reduce(t, differentiable)`` (e.g. :func:`videograph.distributed.all_reduce_sum`) makes the moments the
        global batch's: the counts and the raw sums :math:`\sum\gamma`, :math:`\sum\gamma x` are reduced before
        the means are taken, the second moments are centred on those global means and reduced after, so they
        stay centred (no cancellation). ``video_class`` must then index the same classes on every rank."""
        count, mass, firsts, weights = self._fused_sums(stack, node_x, pair_x, y, graphs, rows, sub_graph, gamma,
                                                        video_class, num_present)
        if reduce is not None:
            count = reduce(count, False)
            sizes = [mass.numel()] + [f.numel() for f in firsts]
            flat = reduce(torch.cat([mass.reshape(-1)] + [f.reshape(-1) for f in firsts]), True)
            parts = flat.split(sizes)
            mass, firsts = parts[0].view_as(mass), [p.view_as(f) for p, f in zip(parts[1:], firsts)]
        means = self._fused_means(mass, firsts)
        m2 = self._fused_centred(node_x, pair_x, graphs, weights, means, video_class, num_present)
        if reduce is not None:
            m2 = reduce(m2, True)
        K = mass.size(1)
        return count, mass, torch.cat([m.reshape(num_present, K, -1) for m in means], -1), m2

    def _fused_sums(self, stack: MixtureStack, node_x: Tensor, pair_x: Tensor, y: Tensor, graphs, rows: Tensor,
                    sub_graph: Tensor, gamma: Tensor, video_class: Tensor, num_present: int
                    ) -> Tuple[Tensor, Tensor, List[Tensor], Tuple[Tensor, Tensor]]:
        r"""The additive half of :meth:`_fused_moments`: count ``[Cp]``, mass ``[Cp, K]``, and per part (nodes,
        pairs) :math:`\sum \gamma x` ``[Cp, slots, K, dim]``, with the per-(row, slot) weights ``[R, slots, K]``
        the centred moments need."""
        node_graph, pair_graph = graphs
        k, J = stack.k, stack.num_pair_slots
        B, N, P, K = y.numel(), node_x.size(0), pair_x.size(0), gamma.size(1)
        weight_rows = scatter_rows(gamma, rows, N * k + P * J)
        sub_class = video_class[sub_graph]
        count = torch.bincount(sub_class, minlength=num_present)
        mass = scatter(gamma, sub_class, dim=0, dim_size=num_present)
        weights = (weight_rows[:N * k].view(N, k, K), weight_rows[N * k:].view(P, J, K))
        firsts = []
        for a, x, graph, slots in zip(weights, (node_x, pair_x), graphs, (k, J)):
            per_video = per_graph_inner(a.reshape(-1, slots * K), x, graph, B)  # [B, slots * K, dim]
            firsts.append(scatter(per_video, video_class, dim=0, dim_size=num_present).view(
                num_present, slots, K, x.size(1)))
        return count, mass, firsts, weights

    def _fused_means(self, mass: Tensor, firsts: List[Tensor]) -> List[Tensor]:
        """Per part, the component means ``[Cp, K, slots, dim]`` from the mass and :math:`\sum \gamma x`."""
        denominator = mass.clamp_min(self.eps)[..., None, None]
        return [first.transpose(1, 2) / denominator for first in firsts]

    @staticmethod
    def _fused_centred(node_x: Tensor, pair_x: Tensor, graphs, weights: Tuple[Tensor, Tensor], means: List[Tensor],
                       video_class: Tensor, num_present: int) -> Tensor:
        r"""The second moments ``[Cp, K, D]`` centred on ``means`` (:meth:`_fused_means`), summed over rows."""
        squares = []
        for a, x, graph, mean in zip(weights, (node_x, pair_x), graphs, means):
            row_class = video_class[graph]
            centred = x[:, None, None, :] - mean[row_class]  # [R, K, slots, dim]
            weighted = a.transpose(1, 2)[..., None] * centred * centred
            square = scatter(weighted.reshape(x.size(0), -1), row_class, dim=0, dim_size=num_present)
            squares.append(square.view(num_present, mean.size(1), -1))
        return torch.cat(squares, -1)

    def _materialised_moments(self, stack: MixtureStack, node_x: Tensor, pair_x: Tensor, y: Tensor,
                              sub: Subgraphs, classes: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """As :meth:`_fused_moments` (full covariances: ``[Cp, K, D, D]`` centred outer products), from the
        materialised sub-graphs."""
        counts, masses, means, squares = [], [], [], []
        sub_label = y[sub.batch]
        for c in classes.tolist():
            keep = sub_label == c
            x = materialise(node_x, pair_x, sub.nodes[keep], sub.pair_index[keep])
            gamma = self._membership(stack, x, c)
            mass = gamma.sum(0)
            mean = gamma.t() @ x / mass.clamp_min(self.eps)[:, None]
            centred = x[:, None, :] - mean[None]
            counts.append(x.size(0))
            masses.append(mass)
            means.append(mean)
            squares.append(torch.einsum("nk,nkd->kd", gamma, centred * centred) if self.covariance == "diag" else
                           torch.einsum("nk,nkd,nke->kde", gamma, centred, centred))
        return (torch.tensor(counts, device=node_x.device), torch.stack(masses), torch.stack(means),
                torch.stack(squares))

    def _estimate(self, count: Tensor, mass: Tensor, mean: Tensor, m2: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Eq. 4 from the moments: ``phi [Cp, K]``, ``mu [Cp, K, D]`` and ``cov [Cp, K, D(, D)]``."""
        denominator = mass.clamp_min(self.eps).view(mass.shape + (1,) * (m2.dim() - 2))
        phi = mass / count.clamp_min(1)[:, None].to(mass)
        return phi, mean, m2 / denominator

    @torch.no_grad()
    def fit_(self, loader: Iterable, fused: Optional[bool] = None, progress: bool = False) -> "PrototypeBank":
        r"""Sets the running estimates of every class seen in ``loader`` to eq. 4 over all its sub-graphs, and
        those of the background mixtures (``background=True``) over the sub-graphs of all videos. One pass (any
        iterable, a one-shot iterator too): each batch's moments are centred on its own component means and
        merged across batches by Chan et al.'s update (:func:`~videograph.nn.gmm.merge_moments`), so no
        :math:`E[x^2] - \mu^2` cancellation occurs, in float32 too. Memberships are computed in eval mode (no
        dropout); the module's mode is restored afterwards. ``loader`` yields tuples ``(node_x, pair_x, node_ptr,
        y[, subgraphs[, select]])`` (see :meth:`loss` for ``subgraphs`` and ``select``); classes it never shows
        keep their estimates. ``progress`` shows a tqdm bar over batches. In a process group each rank passes
        its share of the data (disjoint shares that together make the set); the ranks' moments are gathered and
        merged in rank order (:func:`combine_rank_moments`), so every rank sets the same, global estimates."""
        use_fused = self._use_fused(fused)
        was_training = self.training
        self.eval()
        try:
            sums, batches = self._fit_moments(loader, use_fused, progress)
        finally:
            self.train(was_training)
        if world()[1] > 1:   # each rank passed its share: merge the ranks' moments, the same on every rank
            batches = int(all_reduce_sum(torch.tensor(batches)))
            sums = {k: combine_rank_moments(list(zip(*([g[0] for g in all_gather(t[None])] for t in totals))))
                    for k, totals in sums.items()}
        if not batches:
            raise ValueError("'loader' yielded no batch")
        for k, (count, mass, mean, m2) in sums.items():
            fitted = (count > 0).nonzero().view(-1)
            phi, mu, cov = self._estimate(count[fitted], mass[fitted], mean[fitted], m2[fitted])
            self.stack(k).update_running(fitted, phi, mu, cov, momentum=1.0, track=False)
        return self

    def _fit_moments(self, loader: Iterable, use_fused: bool, progress: bool
                     ) -> Tuple[Dict[int, List[Tensor]], int]:
        """``{k: [count [M], mass [M, K], mean [M, K, D], m2 [M, K, D(, D)]]}`` over all batches of ``loader``, and
        the number of batches."""
        sums: Dict[int, List[Tensor]] = {}
        for k in self.scales:
            stack = self.stack(k)
            sums[k] = [torch.zeros(self.num_mixtures, dtype=torch.long, device=stack.running_phi.device)] + [
                torch.zeros_like(t) for t in (stack.running_phi, stack.running_mu, stack.running_cov)]
        batches = 0
        for item in tqdm(loader, disable=not progress, unit="batch", desc="fit"):
            if not isinstance(item, (tuple, list)) or len(item) not in (4, 5, 6):
                raise ValueError("'loader' must yield tuples (node_x, pair_x, node_ptr, y[, subgraphs[, select]])")
            batches += 1
            node_x, pair_x, node_ptr, y = item[:4]
            node_ptr = self._check_inputs(node_x, pair_x, node_ptr, y)
            select = item[5] if len(item) == 6 else None
            if select is not None and (len(item) < 5 or item[4] is None):
                raise ValueError("'select' masks the rows of 'subgraphs': the loader must yield both")
            subgraphs = self._subgraphs(node_ptr, item[4] if len(item) >= 5 else None, device=node_x.device)
            graphs = (graph_of_rows(node_ptr).to(node_x.device), graph_of_rows(pair_ptr(node_ptr)).to(node_x.device))
            fits = [(y, {k: sub if select is None else self._selected(select, sub)
                         for k, sub in subgraphs.items()})]
            if self.background:
                fits.append((torch.full_like(y, self.num_classes), subgraphs))
            for labels, chosen in fits:
                classes, video_class = torch.unique(labels, return_inverse=True)
                for k in self.scales:
                    stack, sub = self.stack(k), chosen[k]
                    if use_fused:
                        rows = slot_rows(sub.nodes, sub.pair_index, node_x.size(0))
                        gamma = self._fused_membership(stack, node_x, pair_x, labels, graphs, rows, sub.batch)
                        count, mass, mean, m2 = self._fused_moments(stack, node_x, pair_x, labels, graphs, rows,
                                                                    sub.batch, gamma, video_class, classes.numel())
                    else:
                        count, mass, mean, m2 = self._materialised_moments(stack, node_x, pair_x, labels, sub,
                                                                           classes)
                    total = sums[k]
                    total[0].index_add_(0, classes, count)
                    merge_moments(total[1:], classes, mass, mean, m2)
        return sums, batches


def combine_rank_moments(per_rank: Sequence[Sequence[Tensor]]) -> List[Tensor]:
    r"""The moments of the union of the ranks' samples from each rank's ``[count [M], mass [M, K], mean [M, K, D],
    m2 [M, K, D(, D)]]`` (centred on its own means), merged in rank order by Chan et al.'s update
    (:func:`~videograph.nn.gmm.merge_moments`): only centred quantities are added, and every rank that merges the
    same list gets the same bits."""
    if not per_rank:
        raise ValueError("'per_rank' is empty")
    count = per_rank[0][0].clone()
    total = [torch.zeros_like(t) for t in per_rank[0][1:]]
    everyone = torch.arange(count.numel(), device=count.device)
    for index, (rank_count, mass, mean, m2) in enumerate(per_rank):
        if index:
            count += rank_count
        merge_moments(total, everyone, mass, mean, m2)
    return [count] + total
