r"""MUSLE: videos as multi-scale discriminative sub-graphs (Li et al., CVPR 2021)."""
import math
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Batch
from torch_geometric.utils import scatter

from ..nn.encoders import NodeEncoder, PairEncoder
from ..nn.gmm import GaussianMixture
from ..nn.prototype import BestSubgraphs
from ..ops import gather_sum
from ..subgraph import Subgraphs, enumerate_subgraphs, iter_subgraphs, pair_nodes
from ._utils import positive

__all__ = ["MUSLE", "SubgraphMixtures", "materialise"]


def _head(in_channels: int, hidden: int, out_channels: int) -> nn.Module:
    if hidden == 0:
        return nn.Linear(in_channels, out_channels)
    return nn.Sequential(nn.Linear(in_channels, hidden), nn.ReLU(), nn.Linear(hidden, out_channels))


def _top_per_graph(score: Tensor, batch: Tensor, num_graphs: int, top: int) -> Tensor:
    """Boolean mask of the ``top`` highest-scoring rows of every graph (rows sorted by graph)."""
    order = torch.argsort(score, descending=True, stable=True)
    order = order[torch.argsort(batch[order], stable=True)]          # by graph, best first within each
    counts = torch.bincount(batch, minlength=num_graphs)
    starts = torch.cat([counts.new_zeros(1), counts.cumsum(0)[:-1]])
    rank = torch.arange(score.numel(), device=score.device) - starts[batch[order]]
    mask = torch.zeros_like(score, dtype=torch.bool)
    mask[order[rank < top]] = True
    return mask


def materialise(node_x: Tensor, pair_x: Tensor, sub: Subgraphs) -> Tensor:
    r"""The sub-graph vectors :math:`x = [f(v_1), \ldots, f(v_k), e(v_1, v_2), \ldots, e(v_{k-1}, v_k)]`
    (MUSLE sec. 3.3: node then edge representations in ascending node order), ``[S, k D_n + k(k-1)/2 D_e]``.
    ``pair_x`` rows follow the complete-mode pair ids of :func:`videograph.subgraph.pair_nodes`."""
    return torch.cat([node_x[sub.nodes].flatten(1), pair_x[sub.pair_index].flatten(1)], dim=1)


def _node_ptr_batch(node_ptr: Tensor) -> Batch:
    from torch_geometric.data import Data
    sizes = node_ptr.diff().tolist()
    return Batch.from_data_list([Data(num_nodes=int(n)) for n in sizes])


@torch.no_grad()
def _resize_(mixture: GaussianMixture, num_components: int) -> None:
    """Gives ``mixture`` ``num_components`` components (fresh values, to be overwritten by a state dict)."""
    last = mixture.membership_net[-1]
    mixture.membership_net[-1] = nn.Linear(last.in_features, num_components, device=last.weight.device,
                                           dtype=last.weight.dtype)
    mixture.running_phi = mixture.running_phi.new_full((num_components,), 1.0 / num_components)
    mixture.running_mu = mixture.running_mu.new_zeros(num_components, mixture.in_channels)
    mixture.running_cov = mixture.running_cov.new_ones((num_components,) + tuple(mixture.running_cov.shape[1:]))
    mixture.num_components = num_components


class SubgraphMixtures(nn.Module):
    r"""One MUSLE Gaussian Mixture layer (:class:`~videograph.nn.GaussianMixture`, diagonal) per (class, scale)
    over sub-graph vectors (:func:`materialise`), with the interface of the fused ``PrototypeBank``: training on
    materialised vectors of a sample of sub-graphs, scoring of *all* sub-graphs by per-slot tables and
    :func:`videograph.ops.gather_sum` (never materialising them).

    **Scoring.** With the running estimates of class :math:`c`, component :math:`m` (weight :math:`\phi`, mean
    :math:`\mu`, variances :math:`\sigma^2`), the Mahalanobis term of a sub-graph splits over its slots,
    :math:`\sum_{\text{slot}} \sum_d (x_{\text{slot}, d}^2 - 2 x_{\text{slot}, d} \mu_{\text{slot}, d})/\sigma^2_{\text{slot}, d}`,
    so a node table ``[N, k, C K]`` and a pair table ``[P, k(k-1)/2, C K]`` are computed once and each sub-graph
    sums :math:`k + k(k-1)/2` rows. The class score is :math:`\max` over sub-graphs and scales of
    :math:`\log \sum_m \phi_{cm} \mathcal{N}(x; \mu_{cm}, \sigma^2_{cm})` (MUSLE's inference), differentiable in
    the features (the estimates are buffers).

    Args:
        num_classes (int): number of classes :math:`C`.
        node_channels (int): node feature size :math:`D_n`.
        pair_channels (int): pair feature size :math:`D_e`.
        scales (tuple, optional): sub-graph sizes :math:`k`. (default: :obj:`(3, 4, 5)`)
        num_components (int, optional): initial :math:`K` per mixture. (default: :obj:`6`)
        hidden_channels (int, optional): membership network width. (default: :obj:`4 K`)
        eps, lambda_cov, momentum: see :class:`~videograph.nn.GaussianMixture`.
        chunk_size (int, optional): sub-graphs scored at once when enumerating. (default: :obj:`65536`)
    """

    def __init__(self, num_classes: int, node_channels: int, pair_channels: int, scales: Sequence[int] = (3, 4, 5),
                 num_components: int = 6, hidden_channels: Optional[int] = None, eps: float = 1e-6,
                 lambda_cov: float = 0.05, momentum: float = 0.1, chunk_size: int = 65536,
                 background: bool = False, posterior: bool = False, scale_reduce: str = "max"):
        super().__init__()
        if scale_reduce not in ("max", "sum"):
            raise ValueError(f"'scale_reduce' must be 'max' or 'sum', got {scale_reduce!r}")
        self.scale_reduce = scale_reduce
        self.posterior = bool(posterior)
        self.num_classes = positive("num_classes", num_classes)
        self.node_channels = positive("node_channels", node_channels)
        self.pair_channels = positive("pair_channels", pair_channels)
        scales = tuple(scales)
        if not scales or any(isinstance(k, bool) or not isinstance(k, int) or k < 2 for k in scales) or \
                len(set(scales)) != len(scales):
            raise ValueError(f"'scales' must be distinct ints >= 2, got {scales!r}")
        self.scales = scales
        self.eps = eps
        self.chunk_size = positive("chunk_size", chunk_size)
        self.mixtures = nn.ModuleDict({
            self._key(c, k): GaussianMixture(self.dim(k), num_components, hidden_channels, "diag", eps, momentum,
                                             lambda_cov)
            for k in scales for c in range(num_classes + int(background))})
        self.background = bool(background)

    @staticmethod
    def _key(c: int, k: int) -> str:
        return f"class{c}_k{k}"

    def dim(self, k: int) -> int:
        """Size of a k-node sub-graph vector."""
        return k * self.node_channels + k * (k - 1) // 2 * self.pair_channels

    def mixture(self, c: int, k: int) -> GaussianMixture:
        return self.mixtures[self._key(c, k)]

    def _subgraphs(self, node_ptr: Tensor, subgraphs: Optional[Dict[int, Subgraphs]], k: int
                   ) -> Iterable[Subgraphs]:
        if subgraphs is not None:
            if k not in subgraphs:
                raise ValueError(f"'subgraphs' lacks scale k={k} (has {sorted(subgraphs)})")
            return [subgraphs[k]]
        return iter_subgraphs(_node_ptr_batch(node_ptr.cpu()), k, chunk_size=self.chunk_size)

    def _check(self, node_x: Tensor, pair_x: Tensor, node_ptr: Tensor) -> None:
        if node_x.dim() != 2 or node_x.size(1) != self.node_channels:
            raise ValueError(f"'node_x' must be [N, {self.node_channels}], got {tuple(node_x.shape)}")
        if pair_x.dim() != 2 or pair_x.size(1) != self.pair_channels:
            raise ValueError(f"'pair_x' must be [P, {self.pair_channels}], got {tuple(pair_x.shape)}")
        if node_ptr.dim() != 1 or int(node_ptr[-1]) != node_x.size(0):
            raise ValueError(f"'node_ptr' must be [B + 1] node offsets ending at {node_x.size(0)}")
        sizes = node_ptr.diff()
        if int(pair_x.size(0)) != int((sizes * (sizes - 1) // 2).sum()):
            raise ValueError(f"'pair_x' must have one row per complete-mode pair id "
                             f"({int((sizes * (sizes - 1) // 2).sum())}), got {pair_x.size(0)}")

    def loss(self, node_x: Tensor, pair_x: Tensor, node_ptr: Tensor, y: Tensor,
             subgraphs: Optional[Dict[int, Subgraphs]] = None, select: Optional[Dict[int, Tensor]] = None) -> Tensor:
        r"""Eq. 6 summed over (class, scale), each mixture estimated on the sub-graphs of its class's videos in
        the batch (all of them, or ``subgraphs`` when given, e.g. a sample; ``select[k]``, a boolean mask over the
        rows of ``subgraphs[k]``, restricts the class mixtures to those rows); updates the running estimates. The
        background mixture, if any, is fitted on all rows."""
        self._check(node_x, pair_x, node_ptr)
        if select is not None and subgraphs is None:
            raise ValueError("'select' needs the 'subgraphs' it indexes")
        total = node_x.new_zeros(())
        for k in self.scales:
            for sub in self._subgraphs(node_ptr, subgraphs, k):
                x = materialise(node_x, pair_x, sub)
                label = y[sub.batch]
                mask = select[k] if select is not None else None
                for c in torch.unique(label).tolist():
                    chosen = label == c if mask is None else (label == c) & mask
                    rows = x[chosen]
                    if rows.size(0) > 1:
                        total = total + self.mixture(c, k).loss(rows)
                if self.background and x.size(0) > 1:
                    total = total + self.mixture(self.num_classes, k).loss(x)
        return total

    def _stacked(self, k: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Running estimates of every class at scale k, padded to the largest K: log phi [C, K] (-inf pads),
        1 / var [C, K, D], mu / var [C, K, D], constant [C, K]."""
        count = self.num_classes + int(self.background)
        mixtures = [self.mixture(c, k) for c in range(count)]
        width = max(m.num_components for m in mixtures)
        dim = self.dim(k)
        device = mixtures[0].running_mu.device
        log_phi = torch.full((count, width), -math.inf, device=device)
        inv = torch.zeros(count, width, dim, device=device)
        mu = torch.zeros(count, width, dim, device=device)
        const = torch.zeros(count, width, device=device)
        for c, m in enumerate(mixtures):
            n = m.num_components
            var = m.running_cov + self.eps
            log_phi[c, :n] = m.running_phi.clamp_min(torch.finfo(var.dtype).tiny).log()
            inv[c, :n] = 1.0 / var
            mu[c, :n] = m.running_mu
            const[c, :n] = (m.running_mu ** 2 / var).sum(-1) + var.log().sum(-1) + dim * math.log(2 * math.pi)
        return log_phi, inv, mu * inv, const

    def _tables(self, node_x: Tensor, pair_x: Tensor, k: int) -> Tuple[Tensor, Tensor, Tensor]:
        log_phi, inv, scaled_mu, const = self._stacked(k)
        C, K = log_phi.shape
        split = k * self.node_channels
        kp = k * (k - 1) // 2

        def table(x: Tensor, a: Tensor, b: Tensor, slots: int) -> Tensor:
            a = a.reshape(C, K, slots, -1)
            b = b.reshape(C, K, slots, -1)
            t = torch.einsum("nd,cksd->nsck", x * x, a) - 2 * torch.einsum("nd,cksd->nsck", x, b)
            return t.reshape(x.size(0) * slots, C * K)

        node_table = table(node_x, inv[..., :split], scaled_mu[..., :split], k)
        pair_table = table(pair_x, inv[..., split:], scaled_mu[..., split:], kp)
        return torch.cat([node_table, pair_table]), log_phi, const

    def subgraph_log_prob(self, node_x: Tensor, pair_x: Tensor, sub: Subgraphs,
                          tables: Optional[Tuple[Tensor, Tensor, Tensor]] = None) -> Tensor:
        """``[S, C]`` log likelihood of every sub-graph of ``sub`` under every class's running mixture."""
        k = sub.k
        table, log_phi, const = self._tables(node_x, pair_x, k) if tables is None else tables
        kp = k * (k - 1) // 2
        node_slots = torch.arange(k, device=sub.nodes.device)
        pair_slots = torch.arange(kp, device=sub.nodes.device)
        index = torch.cat([sub.nodes * k + node_slots, node_x.size(0) * k + sub.pair_index * kp + pair_slots], 1)
        quad = gather_sum(table, index.to(table.device))                  # [S, C K]
        C, K = log_phi.shape
        log_prob = torch.logsumexp(log_phi - 0.5 * (quad.view(-1, C, K) + const), dim=-1)
        if self.background:
            log_prob = log_prob[:, :-1] - log_prob[:, -1:]
        if self.posterior:
            log_prob = log_prob - torch.logsumexp(log_prob, dim=-1, keepdim=True)
        return log_prob

    def class_scores(self, node_x: Tensor, pair_x: Tensor, node_ptr: Tensor,
                     subgraphs: Optional[Dict[int, Subgraphs]] = None, return_best: bool = False):
        r"""``[B, C]``: the highest log likelihood over all sub-graphs (or those of ``subgraphs``) of all scales
        under each class's running mixture. With ``return_best=True`` also a
        :class:`videograph.nn.BestSubgraphs` (scale, row in the enumeration at that scale, padded node ids)."""
        self._check(node_x, pair_x, node_ptr)
        num_graphs = node_ptr.numel() - 1
        per_scale, rows_at, nodes_at = [], [], []
        width = max(self.scales)
        for k in self.scales:
            best = node_x.new_full((num_graphs, self.num_classes), -math.inf)
            best_row = torch.full((num_graphs, self.num_classes), -1, dtype=torch.long)
            best_nodes = torch.full((num_graphs, self.num_classes, width), -1, dtype=torch.long)
            tables = self._tables(node_x, pair_x, k)
            offset = 0
            for sub in self._subgraphs(node_ptr, subgraphs, k):
                count = sub.nodes.size(0)
                if count == 0:
                    continue
                log_prob = self.subgraph_log_prob(node_x, pair_x, sub, tables)
                batch = sub.batch.to(log_prob.device)
                chunk_best = scatter(log_prob, batch, dim=0, dim_size=num_graphs, reduce="max")
                improved = chunk_best > best
                best = torch.where(improved, chunk_best, best)
                if return_best and bool(improved.any()):
                    hit = log_prob.detach() == chunk_best.detach()[batch]
                    rows = torch.arange(count, device=log_prob.device)[:, None].expand_as(hit)
                    first = scatter(torch.where(hit, rows, count), batch, dim=0, dim_size=num_graphs,
                                    reduce="min").cpu()
                    mask = improved.cpu()
                    best_row[mask] = first[mask] + offset
                    best_nodes[mask] = F.pad(sub.nodes.cpu()[first[mask]], (0, width - k), value=-1)
                offset += count
            per_scale.append(best)
            rows_at.append(best_row)
            nodes_at.append(best_nodes)
        stacked = torch.stack(per_scale)                                   # [scales, B, C]
        scores = stacked.amax(0) if self.scale_reduce == "max" else stacked.sum(0)
        if return_best:
            top = stacked.detach().argmax(0).cpu()                         # the scale of the best sub-graph
            pick = top[None, ..., None].expand(1, num_graphs, self.num_classes, width)
            nodes = torch.stack(nodes_at).gather(0, pick)[0]
            index = torch.stack(rows_at).gather(0, top[None])[0]
            return scores, BestSubgraphs(torch.tensor(self.scales)[top], index, nodes)
        return scores

    def predict(self, node_x: Tensor, pair_x: Tensor, node_ptr: Tensor,
                subgraphs: Optional[Dict[int, Subgraphs]] = None) -> Tensor:
        return self.class_scores(node_x, pair_x, node_ptr, subgraphs).argmax(-1)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Dynamic K changes the mixtures' shapes: take the checkpoint's K before the children load.
        for key, mixture in self.mixtures.items():
            phi = state_dict.get(f"{prefix}mixtures.{key}.running_phi")
            if phi is not None and phi.numel() != mixture.num_components:
                _resize_(mixture, phi.numel())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def prune_(self, threshold: float = 0.02) -> "SubgraphMixtures":
        """Dynamic K: prunes every mixture's components of weight at most ``threshold``."""
        for mixture in self.mixtures.values():
            mixture.prune_(threshold)
        return self

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(num_classes={self.num_classes}, node_channels={self.node_channels}, "
                f"pair_channels={self.pair_channels}, scales={self.scales})")


class MUSLE(nn.Module):
    r"""MUSLE from `"Representing Videos as Discriminative Sub-graphs for Action Recognition"
    <https://arxiv.org/abs/2201.04027>`_ (Li et al., CVPR 2021): tubelet nodes and node pairs are encoded
    (:class:`~videograph.nn.encoders.NodeEncoder` :math:`[f^{visual}, \mathrm{MLP}(f^{coord})]`,
    :class:`~videograph.nn.encoders.PairEncoder` :math:`[f^{sem}, \mathrm{MLP}(\Delta f^{coord})]`), every k-node
    sub-graph of the complete tubelet graph becomes the vector of its node and pair representations, one Gaussian
    mixture per (class, scale) models them, and a video's class score is the highest log likelihood over its
    sub-graphs and scales; the prediction is the arg max.

    **Training.** :meth:`loss` = eq. 6 per (class, scale) on that class's videos' sub-graphs (a uniform sample of
    ``train_subgraphs`` per video and scale, drawn with the given generator) + ``ce_weight`` times the
    cross-entropy of the class scores (over the same sample, under the running mixtures). Why the cross-entropy:
    eq. 6 alone is generative and each class's mixture sees only its own videos, so when the encoders train end to
    end nothing pushes classes apart; the likelihood term even rewards shrinking all features together (the
    :math:`\lambda \sum 1/\Sigma_{ii}` term only bounds the collapse). The cross-entropy makes the learned
    features discriminative; set ``ce_weight=0`` for the purely generative objective. Call :meth:`end_epoch` after
    every epoch for dynamic K (components of weight :math:`\le` ``prune_threshold`` are removed).

    **Bank.** ``bank="mixtures"`` (default) is :class:`SubgraphMixtures`; ``bank="prototype"`` is the fused
    :class:`videograph.nn.PrototypeBank` (also scores the memberships by slot tables, and shares prefixes); any
    module with the ``loss`` / ``class_scores`` / ``prune_`` interface works. The options marked *(mixtures)*
    below need :class:`SubgraphMixtures`.

    **Training recipe of the demo** (docs/models.md explains why the paper's objective alone did not learn on the
    synthetic videos): ``aux_weight=1`` (an auxiliary max-over-sub-graphs classifier trains the encoders),
    ``generative_features=False`` (eq. 6 trains the mixtures, not the features), ``fit_top=1`` (each class's
    mixture is fitted on the best sub-graph of each of its videos, ranked by the auxiliary classifier),
    ``background=True`` (score = log-likelihood ratio against a mixture of all sub-graphs), ``ce_start=10``
    (from then on the mixtures are re-estimated on the whole training set after every epoch and the
    cross-entropy of their class scores fine-tunes the encoders).

    Args:
        num_classes (int): number of classes.
        visual_channels (int): size of ``data.x`` (tubelet visual features).
        coord_channels (int): size of ``data.coord`` (:math:`4T`).
        scales (tuple, optional): sub-graph sizes. (default: :obj:`(3, 4, 5)`)
        node_visual, node_coord (bool, optional): node encoder parts. (default: :obj:`True`, :obj:`True`)
        edge_semantic, edge_coord (bool, optional): pair encoder parts. (default: :obj:`True`, :obj:`True`)
        visual_out, coord_out, semantic_out (int, optional): encoder widths. (default: :obj:`8`, :obj:`8`, :obj:`4`)
        num_components (int, optional): initial :math:`K`. (default: :obj:`6`)
        eps (float, optional): variance floor of the mixtures (features are standardised by the encoders).
            (default: :obj:`1e-2`)
        lambda_cov, momentum: see :class:`~videograph.nn.GaussianMixture`. (default: :obj:`0.05`, :obj:`0.1`)
        ce_weight (float, optional): weight of the cross-entropy of the mixtures' class scores. (default: :obj:`1.0`)
        train_subgraphs (int, optional): sub-graphs sampled per video and scale in :meth:`loss`. (default: :obj:`64`)
        prune_threshold (float, optional): dynamic-K threshold. (default: :obj:`0.02`)
        bank (str or torch.nn.Module, optional): ``"mixtures"``, ``"prototype"`` or a module.
            (default: :obj:`"mixtures"`)
        generative_features (bool, optional): let eq. 6 back-propagate into the encoders. (default: :obj:`True`)
        background (bool, optional): *(mixtures)* log-likelihood ratio against a background mixture.
            (default: :obj:`False`)
        posterior (bool, optional): *(mixtures)* normalise each sub-graph's scores over classes.
            (default: :obj:`False`)
        aux_weight (float, optional): weight of the auxiliary classifier's cross-entropy; 0: no classifier.
            (default: :obj:`0.0`)
        fit_top (int, optional): *(mixtures)* fit class mixtures on this many best sub-graphs per video.
            (default: :obj:`None`: all)
        aux_hidden (int, optional): auxiliary classifier width (0: linear). (default: :obj:`32`)
        scale_reduce (str, optional): *(mixtures)* ``"max"`` (paper) or ``"sum"`` over scales. (default: ``"max"``)
        ce_start (int, optional): *(mixtures)* first epoch with the cross-entropy term; from then on refit and
            freeze the mixtures every epoch (:meth:`end_epoch` with the dataset). (default: :obj:`None`: always on)

    Shapes:
        - **input:** a :class:`~torch_geometric.data.Batch` of tubelet graphs with ``x``, ``coord``, ``ptr``
        - **output:** class scores :math:`(B, C)`
    """

    def __init__(self, num_classes: int, visual_channels: int, coord_channels: int, scales: Sequence[int] = (3, 4, 5),
                 node_visual: bool = True, node_coord: bool = True, edge_semantic: bool = True,
                 edge_coord: bool = True, visual_out: int = 8, coord_out: int = 8, semantic_out: int = 4,
                 num_components: int = 6, eps: float = 1e-2, lambda_cov: float = 0.05, momentum: float = 0.1,
                 ce_weight: float = 1.0,
                 train_subgraphs: int = 64, prune_threshold: float = 0.02, bank: Union[str, nn.Module] = "mixtures",
                 generative_features: bool = True, background: bool = False, posterior: bool = False,
                 aux_weight: float = 0.0, fit_top: Optional[int] = None, aux_hidden: int = 32,
                 scale_reduce: str = "max", ce_start: Optional[int] = None):
        super().__init__()
        self.num_classes = positive("num_classes", num_classes)
        self.scales = tuple(scales)
        self.node_encoder = NodeEncoder(visual_channels, coord_channels, visual_out, coord_out, node_visual,
                                        node_coord)
        self.pair_encoder = PairEncoder(visual_channels, coord_channels, semantic_out, coord_out, edge_semantic,
                                        edge_coord)
        node_channels, pair_channels = self.node_encoder.out_channels, self.pair_encoder.out_channels
        if bank == "mixtures":
            bank = SubgraphMixtures(num_classes, node_channels, pair_channels, self.scales, num_components, eps=eps,
                                    lambda_cov=lambda_cov, momentum=momentum, background=background,
                                    posterior=posterior, scale_reduce=scale_reduce)
        elif bank == "prototype":
            from ..nn.prototype import PrototypeBank
            bank = PrototypeBank(num_classes, node_channels, pair_channels, self.scales, num_components, eps=eps,
                                 lambda_cov=lambda_cov, momentum=momentum)
        elif not isinstance(bank, nn.Module):
            raise ValueError(f"'bank' must be 'mixtures', 'prototype' or a module, got {bank!r}")
        if not isinstance(bank, SubgraphMixtures):
            extras = [name for name, on in (("background", background), ("posterior", posterior),
                                            ("fit_top", fit_top is not None), ("ce_start", ce_start is not None),
                                            ("scale_reduce", scale_reduce != "max")) if on]
            if extras:
                raise ValueError(f"{extras} need bank='mixtures' (SubgraphMixtures), got {type(bank).__name__}")
        self.bank = bank
        self.aux_weight = float(aux_weight)
        self.aux_heads = nn.ModuleDict({
            str(k): _head(k * node_channels + k * (k - 1) // 2 * pair_channels, aux_hidden, num_classes)
            for k in self.scales}) if aux_weight > 0 else None
        if fit_top is not None and self.aux_heads is None:
            raise ValueError("'fit_top' ranks sub-graphs with the auxiliary head: set 'aux_weight' > 0")
        self.fit_top = fit_top
        if ce_weight < 0:
            raise ValueError(f"'ce_weight' must be >= 0, got {ce_weight}")
        self.ce_weight = float(ce_weight)
        if ce_start is not None and (isinstance(ce_start, bool) or not isinstance(ce_start, int) or ce_start < 0):
            raise ValueError(f"'ce_start' must be None or an int >= 0, got {ce_start!r}")
        self.ce_start = ce_start
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))
        self.train_subgraphs = positive("train_subgraphs", train_subgraphs)
        self.prune_threshold = float(prune_threshold)
        self.generative_features = bool(generative_features)

    @staticmethod
    def node_ptr(data) -> Tensor:
        ptr = getattr(data, "ptr", None)
        return ptr if ptr is not None else torch.tensor([0, data.num_nodes], device=data.coord.device)

    def encode(self, data) -> Tuple[Tensor, Tensor, Tensor]:
        """``node_x [N, D_n]``, ``pair_x [P, D_e]`` (complete-mode pair ids) and ``node_ptr [B + 1]``."""
        ptr = self.node_ptr(data)
        pairs = pair_nodes(ptr.cpu()).to(data.coord.device)
        x = getattr(data, "x", None)
        return self.node_encoder(x, data.coord), self.pair_encoder(x, data.coord, pairs), ptr

    def sample_subgraphs(self, data, generator: Optional[torch.Generator] = None) -> Dict[int, Subgraphs]:
        """A uniform sample of ``train_subgraphs`` sub-graphs per video and scale."""
        return {k: enumerate_subgraphs(data, k, max_per_graph=self.train_subgraphs, generator=generator)
                for k in self.scales}

    def forward(self, data, subgraphs: Optional[Dict[int, Subgraphs]] = None, return_best: bool = False):
        node_x, pair_x, ptr = self.encode(data)
        return self.bank.class_scores(node_x, pair_x, ptr, subgraphs=subgraphs, return_best=return_best)

    def loss(self, data, generator: Optional[torch.Generator] = None) -> Tuple[Tensor, Tensor]:
        """Training loss on a batch and the class scores of its sampled sub-graphs (for running accuracy)."""
        subgraphs = self.sample_subgraphs(data, generator)
        node_x, pair_x, ptr = self.encode(data)
        y = data.y.view(-1)
        select, aux_loss = None, None
        if self.aux_heads is not None:
            per_scale = {k: self.aux_heads[str(k)](materialise(node_x, pair_x, sub)) for k, sub in subgraphs.items()}
            aux = torch.stack([scatter(logits, subgraphs[k].batch, dim=0, dim_size=y.numel(), reduce="max")
                               for k, logits in per_scale.items()]).amax(0)
            aux_loss = F.cross_entropy(aux, y)
            if self.fit_top is not None:
                select = {k: _top_per_graph(logits.detach().gather(1, y[subgraphs[k].batch][:, None]).view(-1),
                                            subgraphs[k].batch, y.numel(), self.fit_top)
                          for k, logits in per_scale.items()}
        extra = {} if select is None else {"select": select}
        if self.generative_features:
            loss = self.bank.loss(node_x, pair_x, ptr, y, subgraphs=subgraphs, **extra)
        else:
            loss = self.bank.loss(node_x.detach(), pair_x.detach(), ptr, y, subgraphs=subgraphs, **extra)
        scores = self.bank.class_scores(node_x, pair_x, ptr, subgraphs=subgraphs)
        if aux_loss is not None:
            loss = loss + self.aux_weight * aux_loss
        if self.ce_active:
            loss = loss + self.ce_weight * F.cross_entropy(scores, y)
        return loss, scores.detach()

    def predict(self, data) -> Tensor:
        return self(data).argmax(-1)

    def aux_scores(self, data, subgraphs: Optional[Dict[int, Subgraphs]] = None) -> Tensor:
        """``[B, C]`` scores of the auxiliary head: its logits maximised over all sub-graphs (or ``subgraphs``)
        and scales. A discriminative read-out of the same sub-graph vectors, for comparison with the mixtures."""
        if self.aux_heads is None:
            raise ValueError("this MUSLE has no auxiliary head (aux_weight=0)")
        node_x, pair_x, ptr = self.encode(data)
        num_graphs = ptr.numel() - 1
        scores = []
        for k in self.scales:
            sub = subgraphs[k] if subgraphs is not None else enumerate_subgraphs(data, k)
            logits = self.aux_heads[str(k)](materialise(node_x, pair_x, sub))
            scores.append(scatter(logits, sub.batch, dim=0, dim_size=num_graphs, reduce="max"))
        return torch.stack(scores).amax(0)

    @torch.no_grad()
    def refit_(self, dataset: Sequence, batch_size: int = 64, generator: Optional[torch.Generator] = None,
               max_per_graph: Optional[int] = None, background_fraction: float = 0.25) -> "MUSLE":
        r"""Replaces every mixture's running estimates by its estimate on the whole of ``dataset`` (graphs with
        ``y``), with :meth:`GaussianMixture.fit_ <videograph.nn.GaussianMixture.fit_>`: each class mixture on the
        sub-graphs of its videos (all of them, or a sample of ``max_per_graph`` per video and scale; only the
        ``fit_top`` best by the auxiliary head when set), the background mixture on a uniform
        ``background_fraction`` of them (drawn with ``generator``; default: one seeded with 0). A batch holds few videos of each class, so a full pass gives far better estimates than the
        running averages, especially when only the top sub-graphs are fitted."""
        from torch_geometric.loader import DataLoader

        if not isinstance(self.bank, SubgraphMixtures):
            raise ValueError(f"refit_ needs bank='mixtures' (SubgraphMixtures), got {type(self.bank).__name__}")
        if not 0.0 < background_fraction <= 1.0:
            raise ValueError(f"'background_fraction' must lie in (0, 1], got {background_fraction!r}")
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        was_training = self.training
        self.eval()
        rows: Dict[Tuple[int, int], List[Tensor]] = {}
        for batch in DataLoader(list(dataset), batch_size=batch_size, shuffle=False):
            subgraphs = {k: enumerate_subgraphs(batch, k, max_per_graph=max_per_graph, generator=generator)
                         for k in self.scales}
            node_x, pair_x, _ = self.encode(batch)
            y = batch.y.view(-1)
            for k, sub in subgraphs.items():
                x = materialise(node_x, pair_x, sub)
                label = y[sub.batch]
                keep = torch.ones_like(label, dtype=torch.bool)
                if self.fit_top is not None:
                    logits = self.aux_heads[str(k)](x)
                    keep = _top_per_graph(logits.gather(1, label[:, None]).view(-1), sub.batch, y.numel(),
                                          self.fit_top)
                for c in torch.unique(label).tolist():
                    rows.setdefault((c, k), []).append(x[(label == c) & keep])
                if getattr(self.bank, "background", False):
                    # the background mixture models all sub-graphs: a uniform sample per video is plenty
                    sample = torch.rand(x.size(0), generator=generator) < background_fraction
                    rows.setdefault((self.num_classes, k), []).append(x[sample.to(x.device)])
        for (c, k), chunks in rows.items():
            data = torch.cat(chunks)
            if data.size(0) > 1:
                self.bank.mixture(c, k).fit_([data])
        self.train(was_training)
        return self

    @property
    def ce_active(self) -> bool:
        """Whether :meth:`loss` includes the cross-entropy of the mixtures' class scores (from epoch ``ce_start``)."""
        return self.ce_weight > 0 and (self.ce_start is None or int(self.epochs_done) >= self.ce_start)

    def end_epoch(self, dataset: Optional[Sequence] = None) -> None:
        """Call after every epoch: counts it and applies dynamic K; from epoch ``ce_start`` on (when given) and
        with the training ``dataset``, re-estimates the mixtures on all of it (:meth:`refit_`) and freezes them
        for the next epoch (the batch updates of the running estimates stop), so the cross-entropy trains the
        encoders against fixed, well-estimated prototypes."""
        self.epochs_done += 1
        self.bank.prune_(self.prune_threshold)
        if self.ce_start is not None and int(self.epochs_done) >= self.ce_start and dataset is not None:
            self.refit_(dataset)
            for module in self.bank.modules():
                if isinstance(module, GaussianMixture):
                    module.momentum = 0.0

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(num_classes={self.num_classes}, scales={self.scales}, "
                f"node={self.node_encoder}, pair={self.pair_encoder})")
