r"""Inference of a :class:`~videograph.nn.PrototypeBank`: the best sub-graph of every (video, class, scale)
under the running mixtures, by a fused chunked search over slot tables (no sub-graph materialised, each
(k-1)-prefix's partial sum shared) or the materialised oracle, then differentiable re-scoring of the winners."""
import math
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data
from tqdm.auto import tqdm

from videograph.ops import gather_sum
from videograph.subgraph import Subgraphs, enumerate_subgraphs, pair_ptr

from ..functional import gmm_component_log_prob
from ..subgraph_tables import materialise, prefix_rows, slot_rows, stack_tables
from .stack import BestSubgraphs, MixtureStack

__all__ = []

_LOG_2PI = math.log(2 * math.pi)


class Scoring:
    """The inference half of :class:`~videograph.nn.PrototypeBank` (a mixin: it uses the bank's attributes)."""

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

    def _scoring_parameters(self, stack: MixtureStack, dtype) -> Tuple[Tensor, ...]:
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

    def _slot_weights(self, stack: MixtureStack, quadratic: Tensor, linear: Tensor) -> Tuple[Tensor, Tensor]:
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
        and each prefix's first row; no rows when the video has fewer than ``k`` nodes."""
        if num_nodes < k:
            empty = torch.zeros(0, k, dtype=torch.long, device=device)
            return empty, empty[:, :k * (k - 1) // 2], empty[:, 0], empty[:, 0]
        local = enumerate_subgraphs(Data(num_nodes=num_nodes), k)
        prefixes = local.prefixes()
        return (local.nodes.to(device), local.pair_index.to(device), prefixes.index.to(device),
                prefixes.first.to(device))

    @torch.no_grad()
    def _fused_search(self, stack: MixtureStack, parameters: Tuple[Tensor, ...], node_x: Tensor, pair_x: Tensor,
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

    def _best_rows_batched(self, stack: MixtureStack, table: Tensor, rows: Tensor, batch: Tensor,
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

    def _best_rows(self, stack: MixtureStack, node_table: Tensor, pair_table: Tensor, rows: Tensor,
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

    def _score_rows(self, stack: MixtureStack, parameters: Tuple[Tensor, ...], node_x: Tensor, pair_x: Tensor,
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

    def _materialised_scores(self, stack: MixtureStack, node_x: Tensor, pair_x: Tensor,
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
