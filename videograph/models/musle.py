r"""MUSLE: videos as multi-scale discriminative sub-graphs (Li et al., CVPR 2021)."""
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn.pool.select.topk import topk
from torch_geometric.utils import scatter

from ..distributed import all_reduce_sum, keyed_generator, world
from ..nn.encoders import NodeEncoder, PairEncoder
from ..nn.prototype import PrototypeBank
from ..nn.subgraph_tables import materialise
from ..subgraph import Subgraphs, enumerate_subgraphs, pair_nodes
from ._utils import positive

__all__ = ["MUSLE"]


def _head(in_channels: int, hidden: int, out_channels: int) -> nn.Module:
    if hidden == 0:
        return nn.Linear(in_channels, out_channels)
    return nn.Sequential(nn.Linear(in_channels, hidden), nn.ReLU(), nn.Linear(hidden, out_channels))


def _batch_mean_ce(logits: Tensor, y: Tensor) -> Tensor:
    """The cross-entropy averaged over the batch; in a process group, this rank's share of the global batch's
    (its sum over the global count)."""
    if world()[1] == 1:
        return F.cross_entropy(logits, y)
    count = all_reduce_sum(torch.tensor(float(y.numel()), dtype=logits.dtype, device=logits.device))
    return F.cross_entropy(logits, y, reduction="sum") / count


class MUSLE(nn.Module):
    r"""MUSLE from `"Representing Videos as Discriminative Sub-graphs for Action Recognition"
    <https://arxiv.org/abs/2201.04027>`_ (Li et al., CVPR 2021): tubelet nodes and node pairs are encoded
    (:class:`~videograph.nn.encoders.NodeEncoder` :math:`[f^{visual}, \mathrm{MLP}(f^{coord})]`,
    :class:`~videograph.nn.encoders.PairEncoder` :math:`[f^{sem}, \mathrm{MLP}(\Delta f^{coord})]`), every k-node
    sub-graph of the complete tubelet graph becomes the vector of its node and pair representations, one Gaussian
    mixture per (class, scale) of a :class:`~videograph.nn.PrototypeBank` models them, and a video's class score
    is the highest log likelihood over its sub-graphs and scales; the prediction is the arg max.

    .. math::
        s_c = \max_{k} \max_{x \in \mathcal{S}_k} \log \sum_j \phi_{ckj} \,
        \mathcal{N}(x; \mu_{ckj}, \Sigma_{ckj})

    **Training.** :meth:`loss` = eq. 6 per (class, scale) on that class's videos' sub-graphs (a uniform sample of
    ``train_subgraphs`` per video and scale, drawn with the given generator) + ``ce_weight`` times the
    cross-entropy of the class scores (over the same sample, under the running mixtures). Why the cross-entropy:
    eq. 6 alone is generative and each class's mixture sees only its own videos, so when the encoders train end to
    end nothing pushes classes apart; the likelihood term even rewards shrinking all features together (the
    :math:`\lambda \sum 1/\Sigma_{ii}` term only bounds the collapse). The cross-entropy makes the learned
    features discriminative; set ``ce_weight=0`` for the purely generative objective. Call :meth:`end_epoch` after
    every epoch for dynamic K (components of weight :math:`\le` ``prune_threshold`` are masked).

    **Training recipe of the demo** (docs/models.md explains why the paper's objective alone did not learn on the
    synthetic videos): ``aux_weight=1`` (an auxiliary max-over-sub-graphs classifier trains the encoders),
    ``generative_features=False`` (eq. 6 trains the mixtures, not the features), ``fit_top=1`` (each class's
    mixture is fitted on the best sub-graph of each of its videos, ranked by the auxiliary classifier),
    ``background=True`` (score = log-likelihood ratio against a mixture of all sub-graphs),
    ``scale_reduce="learned"`` (the per-scale maxima are combined by a per-(scale, class) affine map fitted on the
    training set), ``ce_start=10`` (from then on the mixtures are re-estimated and the map recalibrated on the whole
    training set after every epoch, frozen in between, and the cross-entropy of the class scores fine-tunes the
    encoders).

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
        lambda_cov, momentum: see :class:`~videograph.nn.PrototypeBank`. (default: :obj:`0.05`, :obj:`0.1`)
        background (bool, optional): score sub-graphs by the log-likelihood ratio against a background mixture
            (:class:`~videograph.nn.PrototypeBank`). (default: :obj:`False`)
        scale_reduce (str, optional): ``"max"`` (paper), ``"sum"`` or ``"learned"`` over scales (see
            :class:`~videograph.nn.PrototypeBank`). (default: ``"max"``)
        ce_weight (float, optional): weight of the cross-entropy of the mixtures' class scores. (default: :obj:`1.0`)
        train_subgraphs (int, optional): sub-graphs sampled per video and scale in :meth:`loss`. (default: :obj:`64`)
        prune_threshold (float, optional): dynamic-K threshold. (default: :obj:`0.02`)
        generative_features (bool, optional): let eq. 6 back-propagate into the encoders. (default: :obj:`True`)
        aux_weight (float, optional): weight of the auxiliary classifier's cross-entropy; 0: no classifier.
            (default: :obj:`0.0`)
        fit_top (int, optional): fit the class mixtures on this many best sub-graphs per video (ranked by the
            auxiliary classifier). (default: :obj:`None`: all)
        aux_hidden (int, optional): auxiliary classifier width (0: linear). (default: :obj:`32`)
        ce_start (int, optional): first epoch with the cross-entropy term; from then on :meth:`end_epoch` with the
            training set refits the mixtures (:meth:`refit_`) and they stay frozen during the epochs.
            (default: :obj:`None`: the cross-entropy is always on, the mixtures follow the batches)
        bank (PrototypeBank, optional): a bank to use instead of the one built from the arguments above (its
            channels must match the encoders'). (default: :obj:`None`)
        sample_seed (int, optional): seed of :meth:`loss_sum`'s keyed sub-graph sampling. (default: :obj:`0`)

    Shapes:
        - **input:** a :class:`~torch_geometric.data.Batch` of tubelet graphs with ``x``, ``coord``, ``ptr``
        - **output:** class scores :math:`(B, C)`
    """

    def __init__(self, num_classes: int, visual_channels: int, coord_channels: int, scales: Sequence[int] = (3, 4, 5),
                 node_visual: bool = True, node_coord: bool = True, edge_semantic: bool = True,
                 edge_coord: bool = True, visual_out: int = 8, coord_out: int = 8, semantic_out: int = 4,
                 num_components: int = 6, eps: float = 1e-2, lambda_cov: float = 0.05, momentum: float = 0.1,
                 background: bool = False, scale_reduce: str = "max", ce_weight: float = 1.0,
                 train_subgraphs: int = 64, prune_threshold: float = 0.02, generative_features: bool = True,
                 aux_weight: float = 0.0, fit_top: Optional[int] = None, aux_hidden: int = 32,
                 ce_start: Optional[int] = None, bank: Optional[PrototypeBank] = None, sample_seed: int = 0):
        super().__init__()
        self.num_classes = positive("num_classes", num_classes)
        self.node_encoder = NodeEncoder(visual_channels, coord_channels, visual_out, coord_out, node_visual,
                                        node_coord)
        self.pair_encoder = PairEncoder(visual_channels, coord_channels, semantic_out, coord_out, edge_semantic,
                                        edge_coord)
        node_channels, pair_channels = self.node_encoder.out_channels, self.pair_encoder.out_channels
        if bank is None:
            bank = PrototypeBank(num_classes, node_channels, pair_channels, tuple(scales), num_components, eps=eps,
                                 lambda_cov=lambda_cov, momentum=momentum, background=background,
                                 scale_reduce=scale_reduce)
        elif not isinstance(bank, PrototypeBank):
            raise TypeError(f"'bank' must be a videograph.nn.PrototypeBank or None, got {type(bank).__name__}")
        elif (bank.num_classes, bank.node_channels, bank.pair_channels) != (num_classes, node_channels,
                                                                            pair_channels):
            raise ValueError(f"'bank' must have {num_classes} classes, node_channels={node_channels} and "
                             f"pair_channels={pair_channels} (the encoders' widths), got {bank!r}")
        self.bank = bank
        self.scales = bank.scales
        self.aux_weight = float(aux_weight)
        self.aux_heads = nn.ModuleDict({
            str(k): _head(k * node_channels + k * (k - 1) // 2 * pair_channels, aux_hidden, num_classes)
            for k in self.scales}) if aux_weight > 0 else None
        if fit_top is not None and self.aux_heads is None:
            raise ValueError("'fit_top' ranks sub-graphs with the auxiliary head: set 'aux_weight' > 0")
        self.fit_top = None if fit_top is None else positive("fit_top", fit_top)
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
        if isinstance(sample_seed, bool) or not isinstance(sample_seed, int) or sample_seed < 0:
            raise ValueError(f"'sample_seed' must be an int >= 0, got {sample_seed!r}")
        self.sample_seed = sample_seed

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

    def sample_subgraphs(self, data, generator=None) -> Dict[int, Subgraphs]:
        """A uniform sample of ``train_subgraphs`` sub-graphs per video and scale, drawn with ``generator`` (one
        ``torch.Generator``, or one per video: see :func:`~videograph.subgraph.enumerate_subgraphs`)."""
        return {k: enumerate_subgraphs(data, k, max_per_graph=self.train_subgraphs, generator=generator)
                for k in self.scales}

    def forward(self, data, subgraphs: Optional[Dict[int, Subgraphs]] = None, return_best: bool = False):
        node_x, pair_x, ptr = self.encode(data)
        return self.bank.class_scores(node_x, pair_x, ptr, subgraphs, return_best=return_best)

    def _aux_logits(self, node_x: Tensor, pair_x: Tensor, subgraphs: Dict[int, Subgraphs]) -> Dict[int, Tensor]:
        return {k: self.aux_heads[str(k)](materialise(node_x, pair_x, sub.nodes, sub.pair_index))
                for k, sub in subgraphs.items()}

    def _top_subgraphs(self, logits: Dict[int, Tensor], subgraphs: Dict[int, Subgraphs], y: Tensor
                       ) -> Optional[Dict[int, Tensor]]:
        """``{k: mask}`` of every video's ``fit_top`` best sub-graphs for its own class, or ``None`` (all)."""
        if self.fit_top is None:
            return None
        masks = {}
        for k, sub in subgraphs.items():
            own_class = logits[k].detach().gather(1, y[sub.batch][:, None]).view(-1)
            mask = torch.zeros_like(own_class, dtype=torch.bool)
            mask[topk(own_class, self.fit_top, sub.batch)] = True   # PyG's per-graph top-k (TopKPooling's)
            masks[k] = mask
        return masks

    def loss(self, data, generator=None) -> Tuple[Tensor, Tensor]:
        """Training loss on a batch and the class scores of its sampled sub-graphs (for running accuracy);
        ``generator``: see :meth:`sample_subgraphs`. In a process group (DDP) the mixtures are the global batch's
        (:meth:`PrototypeBank.loss <videograph.nn.PrototypeBank.loss>`) and the loss is this rank's share of the
        global batch's: summed over ranks it is the loss of one process on the union of their batches."""
        subgraphs = self.sample_subgraphs(data, generator)
        node_x, pair_x, ptr = self.encode(data)
        y = data.y.view(-1)
        select, aux_loss = None, None
        if self.aux_heads is not None:
            logits = self._aux_logits(node_x, pair_x, subgraphs)
            aux = torch.stack([scatter(logits[k], subgraphs[k].batch, dim=0, dim_size=y.numel(), reduce="max")
                               for k in self.scales]).amax(0)
            aux_loss = _batch_mean_ce(aux, y)
            select = self._top_subgraphs(logits, subgraphs, y)
        features = (node_x, pair_x) if self.generative_features else (node_x.detach(), pair_x.detach())
        loss = self.bank.loss(*features, ptr, y, subgraphs, select=select)
        scores = self.bank.class_scores(node_x, pair_x, ptr, subgraphs)
        if aux_loss is not None:
            loss = loss + self.aux_weight * aux_loss
        if self.ce_active:
            loss = loss + self.ce_weight * _batch_mean_ce(scores, y)
        return loss, scores.detach()

    def loss_sum(self, data) -> Tuple[Tensor, int, Tensor]:
        r"""What :class:`~videograph.distributed.GlobalLoss` (the module DDP wraps) asks for: ``(sum, count,
        scores)`` with ``sum / global count`` = :meth:`loss` (this rank's share in a process group). The
        sub-graphs of video ``data.video_id[i]`` are drawn from :func:`~videograph.distributed.keyed_generator`
        ``(sample_seed, epochs_done, video_id)``, so a video draws the same sub-graphs whichever rank or batch
        holds it."""
        video_id = getattr(data, "video_id", None)
        y = data.y.view(-1)
        if not isinstance(video_id, Tensor) or video_id.numel() != y.numel() or video_id.is_floating_point():
            raise ValueError("'data.video_id' must be an integer tensor with one stable id per video (e.g. its "
                             "index in the dataset): loss_sum keys the sub-graph sampling on it")
        epoch = int(self.epochs_done)
        generators = [keyed_generator(self.sample_seed, epoch, int(v)) for v in video_id.view(-1).tolist()]
        loss, scores = self.loss(data, generators)
        total = all_reduce_sum(torch.tensor(float(y.numel()), dtype=loss.dtype, device=loss.device))
        return loss * total, y.numel(), scores

    def predict(self, data) -> Tensor:
        """``[B]`` classes (:meth:`PrototypeBank.predict <videograph.nn.PrototypeBank.predict>`: a video without
        any sub-graph is an error, not class 0)."""
        node_x, pair_x, ptr = self.encode(data)
        return self.bank.predict(node_x, pair_x, ptr)

    def aux_scores(self, data, subgraphs: Optional[Dict[int, Subgraphs]] = None) -> Tensor:
        """``[B, C]`` scores of the auxiliary head: its logits maximised over all sub-graphs (or ``subgraphs``)
        and scales. A discriminative read-out of the same sub-graph vectors, for comparison with the mixtures."""
        if self.aux_heads is None:
            raise ValueError("this MUSLE has no auxiliary head (aux_weight=0)")
        node_x, pair_x, ptr = self.encode(data)
        subgraphs = subgraphs if subgraphs is not None else {k: enumerate_subgraphs(data, k) for k in self.scales}
        logits = self._aux_logits(node_x, pair_x, subgraphs)
        return torch.stack([scatter(logits[k], subgraphs[k].batch, dim=0, dim_size=ptr.numel() - 1, reduce="max")
                            for k in self.scales]).amax(0)

    @torch.no_grad()
    def refit_(self, dataset: Sequence, batch_size: int = 64, max_per_graph: Optional[int] = None,
               generator: Optional[torch.Generator] = None, progress: bool = False,
               prune_threshold: Optional[float] = None) -> "MUSLE":
        r"""Replaces the running estimates of every mixture by its eq. 4 estimate on the whole of ``dataset``
        (graphs with ``y``) with :meth:`PrototypeBank.fit_ <videograph.nn.PrototypeBank.fit_>`: each class mixture
        on the sub-graphs of its videos (all of them, or a sample of ``max_per_graph`` per video and scale drawn
        with ``generator``; only the ``fit_top`` best by the auxiliary head when set), the background mixture on
        all of them. A batch holds few videos of each class, so a full pass gives far better estimates than the
        running averages, especially when only the top sub-graphs are fitted. With ``prune_threshold`` dynamic K
        then acts on the new estimates (:meth:`PrototypeBank.prune_ <videograph.nn.PrototypeBank.prune_>`, the
        bank's documented order: after ``fit_``). With ``scale_reduce="learned"`` a last pass fits the score
        calibration to the new (pruned) mixtures
        (:meth:`PrototypeBank.calibrate_ <videograph.nn.PrototypeBank.calibrate_>`)."""
        from torch_geometric.loader import DataLoader

        was_training = self.training
        self.eval()

        def batches(with_selection: bool):
            for batch in DataLoader(list(dataset), batch_size=batch_size, shuffle=False):
                subgraphs = {k: enumerate_subgraphs(batch, k, max_per_graph=max_per_graph, generator=generator)
                             for k in self.scales}
                node_x, pair_x, ptr = self.encode(batch)
                y = batch.y.view(-1)
                if not with_selection:
                    yield node_x, pair_x, ptr, y, subgraphs
                    continue
                select = None
                if self.fit_top is not None:
                    select = self._top_subgraphs(self._aux_logits(node_x, pair_x, subgraphs), subgraphs, y)
                yield node_x, pair_x, ptr, y, subgraphs, select

        self.bank.fit_(batches(True), progress=progress)
        if prune_threshold is not None:
            self.bank.prune_(prune_threshold)
        if self.bank.scale_reduce == "learned":
            self.bank.calibrate_(batches(False), progress=progress)
        self.train(was_training)
        return self

    @property
    def ce_active(self) -> bool:
        """Whether :meth:`loss` includes the cross-entropy of the mixtures' class scores (from epoch ``ce_start``)."""
        return self.ce_weight > 0 and (self.ce_start is None or int(self.epochs_done) >= self.ce_start)

    @property
    def mixtures_frozen(self) -> bool:
        """From epoch ``ce_start`` on (when given) the batches no longer move the running estimates: they come
        from :meth:`refit_` at every epoch end."""
        return self.ce_start is not None and int(self.epochs_done) >= self.ce_start

    def train(self, mode: bool = True) -> "MUSLE":
        super().train(mode)
        if mode and self.mixtures_frozen:
            self.bank.eval()   # the bank updates its running estimates only in training mode
        return self

    def end_epoch(self, dataset: Optional[Sequence] = None) -> None:
        """Call after every epoch: counts it and applies dynamic K; from epoch ``ce_start`` on (when given) and
        with the training ``dataset``, re-estimates the mixtures on all of it first (:meth:`refit_`: fit, then
        prune the refitted weights, then calibrate) and freezes them for the next epoch, so the cross-entropy
        trains the encoders against fixed, well-estimated prototypes. In a process group every rank passes its
        own share of the training set (disjoint, together all of it): the refit all-reduces the mixtures'
        moments, so the result is the whole set's on every rank."""
        self.epochs_done += 1
        if self.mixtures_frozen and dataset is not None:
            self.refit_(dataset, prune_threshold=self.prune_threshold)
        else:
            self.bank.prune_(self.prune_threshold)
        if self.mixtures_frozen:
            self.train(self.training)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(num_classes={self.num_classes}, scales={self.scales}, "
                f"node={self.node_encoder}, pair={self.pair_encoder})")
