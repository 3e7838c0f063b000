r"""Per-group random streams for vectorised sampling that stays keyed per group."""
from typing import Optional, Sequence

import torch
from torch import Tensor

__all__ = ["GroupedUniform"]


class GroupedUniform:
    r"""One stream of :math:`U[0, 1)` doubles per group (e.g. per video, each from a generator keyed on that
    video), read in order: drawing from it for many groups in one vectorised call gives every group exactly the
    numbers its own generator would have given a call of its own, so the draws of a group do not depend on the
    other groups of the call nor on its position among them.

    Pass it as the :obj:`generator` of :func:`~videograph.sampler.segment_sample` (with the segments' groups)
    or of :class:`~videograph.sampler.NeighborSampler` (with :obj:`group`, every node's group): group
    :math:`g`'s draws are then those of the call made on :math:`g`'s segments (nodes) alone with
    :obj:`generators[g]` in its current state.

    Args:
        generators (Sequence[torch.Generator]): one per group, consumed from their current state.
        group (torch.Tensor, optional): The group of every node of the graph a
            :class:`~videograph.sampler.NeighborSampler` samples (e.g. :obj:`batch.batch`). (default: :obj:`None`)
        size (int, optional): values drawn up front per group (more are drawn when a group needs them; a good
            guess saves a loop over the groups). (default: :obj:`0`)
    """

    def __init__(self, generators: Sequence[torch.Generator], group: Optional[Tensor] = None, size: int = 0):
        generators = list(generators)
        if len(generators) == 0 or not all(isinstance(g, torch.Generator) for g in generators):
            raise TypeError("'generators' must be a non-empty sequence of torch.Generator")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"'size' must be a non-negative int, got {size!r}")
        if group is not None:
            group = self._check_group(group, len(generators), "group")
        self.generators, self.group = generators, group
        self._values = torch.stack([torch.rand(size, dtype=torch.float64, generator=g) for g in generators])
        self._drawn = torch.full((len(generators), ), size, dtype=torch.long)
        self._cursor = torch.zeros(len(generators), dtype=torch.long)

    @property
    def num_groups(self) -> int:
        return len(self.generators)

    def take(self, group: Tensor) -> Tensor:
        r"""The next unread values of the groups' streams: entry :math:`i` gets the next value of group
        :obj:`group[i]`'s stream after those of the earlier entries of that group.

        Shapes:
            - **input:** group :math:`(N)`, long in :math:`[0, G)`
            - **output:** :math:`(N)`, float64
        """
        group = self._check_group(group, self.num_groups, "group")
        counts = torch.bincount(group, minlength=self.num_groups)
        order = torch.argsort(group, stable=True)
        rank = torch.empty_like(order)
        rank[order] = torch.arange(group.numel()) - (counts.cumsum(0) - counts).index_select(0, group[order])
        self._reserve(self._cursor + counts)
        values = self._values[group, self._cursor.index_select(0, group) + rank]
        self._cursor += counts
        return values

    def _reserve(self, need: Tensor) -> None:
        short = (need > self._drawn).nonzero().view(-1).tolist()
        if not short:
            return
        # Draw at least as many again as a short group has drawn, so that growth stays rare.
        target = torch.maximum(need, 2 * self._drawn)
        width = int(target.max())
        if width > self._values.size(1):
            pad = self._values.new_zeros(self.num_groups, width - self._values.size(1))
            self._values = torch.cat([self._values, pad], 1)
        for g in short:
            a, b = int(self._drawn[g]), int(target[g])
            self._values[g, a:b] = torch.rand(b - a, dtype=torch.float64, generator=self.generators[g])
            self._drawn[g] = b

    @staticmethod
    def _check_group(group: Tensor, num_groups: int, name: str) -> Tensor:
        if not isinstance(group, Tensor) or group.dtype != torch.long or group.dim() != 1:
            raise ValueError(f"'{name}' must be a 1-D torch.long tensor of group ids")
        if group.numel() > 0 and (int(group.min()) < 0 or int(group.max()) >= num_groups):
            raise ValueError(f"'{name}' must hold group ids in [0, {num_groups}) (got values in "
                             f"[{int(group.min())}, {int(group.max())}])")
        return group.cpu()

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(num_groups={self.num_groups})"
