from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from videograph.sampler.grouped_uniform import GroupedUniform

__all__ = ["segment_sample"]

# Above this many draws per segment the Floyd loop (O(k^2) per segment) loses to
# sorting random keys over the whole segment (O(deg log deg)).
FLOYD_MAX_K = 32


def segment_sample(
    count: Tensor,
    k: Union[int, Tensor],
    replace: bool = False,
    generator: Optional[Union[torch.Generator, GroupedUniform]] = None,
    method: str = "auto",
    group: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor, Tensor]:
    r"""Draws uniformly at random :math:`\min(\text{count}_r, k_r)` distinct
    offsets from every segment :math:`r` of size :math:`\text{count}_r`
    (:math:`k_r` offsets with replacement when :obj:`replace=True`), for all
    segments at once.

    Without replacement, a segment that is not larger than its quota is taken
    whole (offsets :math:`0, \ldots, \text{count}_r - 1` in order), as in
    PyG's samplers; otherwise a uniformly random :math:`k_r`-subset is drawn
    with Floyd's algorithm vectorised over segments (:math:`k_r` steps, no
    rejection), or, for large quotas, by sorting random keys within the
    segments.

    Args:
        count (torch.Tensor): The segment sizes, a :obj:`torch.long` tensor.
        k (int or torch.Tensor): The number of draws per segment, a scalar or
            one per segment; :obj:`-1` takes the whole segment (also when
            :obj:`replace=True`).
        replace (bool, optional): If set to :obj:`True`, draws with
            replacement. (default: :obj:`False`)
        generator (torch.Generator or GroupedUniform, optional): The source
            of randomness; a :class:`~videograph.sampler.GroupedUniform`
            draws every group's segments exactly as a call on them alone
            with that group's generator would. (default: :obj:`None`)
        method (str, optional): :obj:`"floyd"`, :obj:`"sort"` or
            :obj:`"auto"` (Floyd up to 32 draws per segment, decided per
            group with a :class:`~videograph.sampler.GroupedUniform`).
            (default: :obj:`"auto"`)
        group (torch.Tensor, optional): The group of every segment, needed
            with a :class:`~videograph.sampler.GroupedUniform`.
            (default: :obj:`None`)

    Returns:
        :obj:`(segment, offset, num)`: for every draw its segment index and
        its offset in :math:`[0, \text{count}_r)`, grouped by segment in
        segment order, and the number of draws per segment.

    Shapes:
        - **input:** count :math:`(R)`, k :math:`()` or :math:`(R)`,
          group :math:`(R)`
        - **output:** segment :math:`(S)`, offset :math:`(S)`, num :math:`(R)`
          with :math:`S = \sum_r \text{num}_r`
    """
    if count.dtype != torch.long or count.dim() != 1:
        raise ValueError(f"'count' must be a 1-D torch.long tensor (got {count.dtype}, shape {tuple(count.shape)})")
    if method not in ("auto", "floyd", "sort"):
        raise ValueError(f"'method' must be 'auto', 'floyd' or 'sort' (got {method!r})")
    device = count.device
    num_segments = count.numel()
    grouped = isinstance(generator, GroupedUniform)
    if grouped and (not isinstance(group, Tensor) or group.shape != count.shape):
        raise ValueError("a GroupedUniform 'generator' needs 'group', a torch.long tensor with one group id per "
                         "segment")
    k = torch.as_tensor(k, dtype=torch.long, device=device).expand(num_segments)
    if bool((k < -1).any()):
        raise ValueError("'k' must be -1 (whole segment) or a non-negative count")
    whole = k < 0
    k = torch.where(whole, count, k)

    if replace:
        num = torch.where((count > 0) | whole, k, torch.zeros_like(k))
    else:
        num = torch.minimum(count, k)

    ptr = num.cumsum(0)
    total = int(ptr[-1]) if num_segments > 0 else 0
    ptr = ptr - num
    segment = torch.repeat_interleave(torch.arange(num_segments, device=device), num, output_size=total)
    slot = torch.arange(total, device=device) - ptr.index_select(0, segment)

    if replace:
        if grouped:
            u = generator.take(group.index_select(0, segment)).to(device)
        else:
            u = torch.rand(total, dtype=torch.float64, generator=generator, device=device)
        offset = (u * count.index_select(0, segment)).long()
        return segment, torch.where(whole.index_select(0, segment), slot, offset), num

    proper = count > num  # segments that need a random proper subset
    if not bool(proper.any()):
        return segment, slot, num
    if grouped:
        return segment, _grouped_subsets(count, num, proper, segment, slot, group, generator, method), num

    if method == "sort" or (method == "auto" and int(num.max()) > FLOYD_MAX_K):
        offset = slot.clone()
        mask = proper.index_select(0, segment)
        rows = proper.nonzero().view(-1)
        count_rows = count.index_select(0, rows)
        u = torch.rand(int(count_rows.sum()), dtype=torch.float64, generator=generator, device=device)
        offset[mask] = _sorted_keys(count_rows, num.index_select(0, rows), u, torch.arange(rows.numel(), device=device))
        return segment, offset, num

    # Dense [segments, k_max] table: Floyd's picks for proper subsets, 0, 1, ... otherwise.
    k_max = int(num.max())
    u = torch.rand(k_max, count.numel(), dtype=torch.float64, generator=generator, device=device)
    picks = _floyd(count, num, k_max, u)
    picks = torch.where(proper.unsqueeze(-1), picks, torch.arange(k_max, device=device))
    offset = picks.view(-1).index_select(0, segment * k_max + slot)
    return segment, offset, num


def _floyd(count: Tensor, k: Tensor, k_max: int, u: Tensor) -> Tensor:
    # Floyd's algorithm: for j = n - k, ..., n - 1 draw t in [0, j]; keep t unless already
    # taken, then keep j. Every k-subset comes out with probability 1 / C(n, k).
    # u [k_max, segments]: step s of segment r uses u[s, r].
    picks = torch.empty(count.numel(), k_max, dtype=torch.long, device=count.device)
    base = count - k
    for step in range(k_max):
        j = base + step
        t = (u[step] * (j + 1)).long()  # garbage (unused) where j < 0: segment taken whole
        if step > 0:
            taken = (picks[:, :step] == t.unsqueeze(-1)).any(-1)
            t = torch.where(taken, j, t)
        picks[:, step] = t
    # Columns beyond a segment's own k are never read.
    return picks


def _sorted_keys(count: Tensor, k: Tensor, u: Tensor, key_row: Tensor) -> Tensor:
    # A random permutation per segment from sorting (key_row + U[0, 1)) keys (u: one per element, segment by
    # segment); keep the first k. Sorted by key, then stably by segment.
    num_rows = count.numel()
    total = int(count.sum())
    row = torch.repeat_interleave(torch.arange(num_rows, device=count.device), count, output_size=total)
    keys = u + key_row.index_select(0, row)
    order = keys.argsort()
    order = order.index_select(0, torch.argsort(row.index_select(0, order), stable=True))
    ptr = count.cumsum(0) - count
    within = order - ptr[row]
    keep = torch.arange(total, device=count.device) - ptr[row] < k[row]
    return within[keep]


def _grouped_subsets(count: Tensor, num: Tensor, proper: Tensor, segment: Tensor, slot: Tensor, group: Tensor,
                     streams: GroupedUniform, method: str) -> Tensor:
    # Every group's proper subsets as its own call would draw them: per group, Floyd over a [k_max_g, R_g]
    # table of its next values (R_g its segments, k_max_g their largest quota), or sorted keys over its proper
    # segments; a group without a proper subset draws nothing.
    device = count.device
    num_groups = streams.num_groups
    group = group.to(device)
    num_rows = torch.bincount(group, minlength=num_groups)
    has_proper = torch.zeros(num_groups, dtype=torch.bool, device=device).index_fill_(0, group[proper], True)
    k_max = torch.zeros(num_groups, dtype=torch.long, device=device).scatter_reduce_(0, group, num, "amax")
    if method == "sort":
        by_sort = has_proper
    elif method == "floyd":
        by_sort = torch.zeros_like(has_proper)
    else:
        by_sort = has_proper & (k_max > FLOYD_MAX_K)
    by_floyd = has_proper & ~by_sort
    offset = slot.clone()

    if bool(by_floyd.any()):
        # Group g's values fill its table step-major: value l is step l // R_g of its (l % R_g)-th segment.
        size = torch.where(by_floyd, k_max * num_rows, torch.zeros_like(k_max))
        request = torch.repeat_interleave(torch.arange(num_groups, device=device), size)
        values = streams.take(request).to(device)
        local = torch.arange(request.numel(), device=device) - (size.cumsum(0) - size).index_select(0, request)
        rows_of = torch.argsort(group, stable=True)                       # segments group by group, in order
        width = num_rows.index_select(0, request)
        first = (num_rows.cumsum(0) - num_rows).index_select(0, request)
        column = rows_of.index_select(0, first + local % width)
        k_top = int(k_max[by_floyd].max())
        u = torch.zeros(k_top, count.numel(), dtype=torch.float64, device=device)
        u[local // width, column] = values
        picks = _floyd(count, num, k_top, u)
        mask = (proper & by_floyd.index_select(0, group)).index_select(0, segment)
        picked = picks.view(-1).index_select(0, segment * k_top + slot)
        offset = torch.where(mask, picked, offset)

    if bool(by_sort.any()):
        rows = (proper & by_sort.index_select(0, group)).nonzero().view(-1)
        count_rows, row_group = count.index_select(0, rows), group.index_select(0, rows)
        values = streams.take(torch.repeat_interleave(row_group, count_rows)).to(device)
        # A row's key offset is its rank among its group's sorted rows, as in the group's own call.
        order = torch.argsort(row_group, stable=True)
        per_group = torch.bincount(row_group, minlength=num_groups)
        rank = torch.empty_like(order)
        rank[order] = torch.arange(rows.numel(), device=device) - (per_group.cumsum(0) - per_group)[row_group[order]]
        mask = torch.zeros_like(proper).index_fill_(0, rows, True).index_select(0, segment)
        offset[mask] = _sorted_keys(count_rows, num.index_select(0, rows), values, rank)
    return offset
