r"""How a :class:`~videograph.nn.PrototypeBank` combines its per-scale maxima into class scores
(``scale_reduce``), and the vector-scaling calibration of the ``"learned"`` rule."""
from typing import TYPE_CHECKING, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

if TYPE_CHECKING:
    from .bank import PrototypeBank

__all__ = []


class Calibration:
    """``scale_reduce`` and :meth:`calibrate_` of :class:`~videograph.nn.PrototypeBank` (a mixin)."""

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
