r"""Memberships and eq. 4 statistics of a :class:`~videograph.nn.PrototypeBank`, fused (per-slot tables) or
materialised, and :meth:`~videograph.nn.PrototypeBank.fit_` (the running estimates from a full pass)."""
import math
from typing import TYPE_CHECKING, Dict, Iterable, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from videograph.ops import gather_sum, scatter
from videograph.subgraph import Subgraphs, pair_ptr

from ..subgraph_tables import (graph_of_rows, materialise, per_graph_inner, per_graph_matmul, scatter_rows,
                               slot_rows, stack_tables)
from .stack import MixtureStack

if TYPE_CHECKING:
    from .bank import PrototypeBank

__all__ = []


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

    def _materialised_moments(self, stack: MixtureStack, node_x: Tensor, pair_x: Tensor, y: Tensor,
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
