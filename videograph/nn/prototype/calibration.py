r"""How a :class:`~videograph.nn.PrototypeBank` combines its per-scale maxima into class scores
(``scale_reduce``), and the vector-scaling calibration of the ``"learned"`` rule."""
import math
from typing import TYPE_CHECKING, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from videograph.distributed import all_gather, world

if TYPE_CHECKING:
    from .bank import PrototypeBank

__all__ = ["missing_scales"]


def missing_scales(per_scale: Tensor) -> Tensor:
    """``[S, B]``: whether a video has no sub-graph at a scale (all its class scores ``-inf``) from the per-scale
    maxima ``[S, B, C]``."""
    return torch.isneginf(per_scale).all(-1)


class Calibration:
    """``scale_reduce`` and :meth:`calibrate_` of :class:`~videograph.nn.PrototypeBank` (a mixin)."""

    def reduce_scales(self, per_scale: Tensor) -> Tensor:
        """``[B, C]`` class scores from the per-scale maxima ``[len(scales), B, C]`` (``scale_reduce``). A scale
        at which a video has no sub-graph (fewer nodes than k: all its scores are ``-inf``) is left out of the
        video's reduction, so its classes are ranked by the scales it has; a video with no sub-graph at any scale
        scores ``-inf`` for every class."""
        if self.scale_reduce == "max":
            return per_scale.amax(0)
        missing = missing_scales(per_scale)[..., None]  # [S, B, 1]
        present = per_scale.masked_fill(missing, 0.0)
        if self.scale_reduce == "sum":
            out = present.sum(0)
        else:
            out = (self.scale_log_weight.exp()[:, None] * present).sum(0) + self.scale_bias
        return out.masked_fill(missing.all(0), -math.inf)

    @torch.no_grad()
    def calibrate_(self, loader: Iterable, max_iter: int = 200, progress: bool = False) -> "PrototypeBank":
        r"""``scale_reduce="learned"``: sets ``scale_log_weight`` and ``scale_bias`` to the minimiser of the
        cross-entropy of the class scores over ``loader`` (tuples ``(node_x, pair_x, node_ptr, y[, subgraphs])``,
        scored under the running estimates; :class:`torch.optim.LBFGS`, ``max_iter`` iterations). Each class's
        mixtures are fitted on its own videos only, so their scores are not on one scale across classes and
        sub-graph sizes; this fits the :math:`2 \cdot |\text{scales}| \cdot C`-parameter map that makes them
        comparable (vector scaling, Guo et al., ICML 2017). A scale at which a video has no sub-graph is left out
        of its reduction (see :meth:`reduce_scales`); a video with no sub-graph at any scale is an error. In a
        process group each rank passes its share of the videos; the scores are gathered (in rank order) and every
        rank fits the same map to all of them."""
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
        if world()[1] > 1:   # each rank scored its share: every rank fits the map to all of them, rank by rank
            scores = torch.cat(per_scale, 1) if per_scale else self.scale_bias.new_zeros(len(self.scales), 0,
                                                                                        self.num_classes)
            y = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long, device=scores.device)
            per_scale = [part.transpose(0, 1) for part in all_gather(scores.transpose(0, 1).contiguous())]
            labels = all_gather(y)
            per_scale, labels = [p for p in per_scale if p.size(1)], [t for t in labels if t.numel()]
        if not labels:
            raise ValueError("'loader' yielded no batch")
        scores, y = torch.cat(per_scale, 1), torch.cat(labels)
        missing = missing_scales(scores)
        lonely = missing.all(0).nonzero().view(-1)
        if lonely.numel():
            raise ValueError(f"video {int(lonely[0])} of 'loader' has no sub-graph at any scale {self.scales}: "
                             f"it has no class scores to calibrate")
        unit = scores[~missing].abs().mean().clamp_min(torch.finfo(scores.dtype).tiny)   # well conditioned
        scores = scores.masked_fill(missing[..., None], 0.0)   # a missing scale contributes nothing
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
