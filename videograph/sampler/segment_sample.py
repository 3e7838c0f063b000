from typing import Optional, Tuple, Union

import torch
from torch import Tensor

__all__ = ["segment_sample"]

# Above this many draws per segment the Floyd loop (O(k^2) per segment) loses to
# sorting random keys over the whole segment (O(deg log deg)).
FLOYD_MAX_K = 32


def segment_sample(
    count: Tensor,
    k: Union[int, Tensor],
    replace: bool = False,
    generator: Optional[torch.Generator] = None,
    method: str = "auto",
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
        generator (torch.Generator, optional): The source of randomness.
            (default: :obj:`None`)
        method (str, optional): :obj:`"floyd"`, :obj:`"sort"` or
            :obj:`"auto"` (Floyd up to 32 draws per segment).
            (default: :obj:`"auto"`)

    Returns:
        :obj:`(segment, offset, num)`: for every draw its segment index and
        its offset in :math:`[0, \text{count}_r)`, grouped by segment in
        segment order, and the number of draws per segment.

    Shapes:
        - **input:** count :math:`(R)`, k :math:`()` or :math:`(R)`
        - **output:** segment :math:`(S)`, offset :math:`(S)`, num :math:`(R)`
          with :math:`S = \sum_r \text{num}_r`
    """
    if count.dtype != torch.long or count.dim() != 1:
        raise ValueError(f"'count' must be a 1-D torch.long tensor (got {count.dtype}, shape {tuple(count.shape)})")
    if method not in ("auto", "floyd", "sort"):
        raise ValueError(f"'method' must be 'auto', 'floyd' or 'sort' (got {method!r})")
    device = count.device
    num_segments = count.numel()
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
        u = torch.rand(total, dtype=torch.float64, generator=generator, device=device)
        offset = (u * count.index_select(0, segment)).long()
        return segment, torch.where(whole.index_select(0, segment), slot, offset), num

    proper = count > num  # segments that need a random proper subset
    if not bool(proper.any()):
        return segment, slot, num

    if method == "sort" or (method == "auto" and int(num.max()) > FLOYD_MAX_K):
        offset = slot.clone()
        mask = proper.index_select(0, segment)
        rows = proper.nonzero().view(-1)
        offset[mask] = _sorted_keys(count.index_select(0, rows), num.index_select(0, rows), generator)
        return segment, offset, num

    # Dense [segments, k_max] table: Floyd's picks for proper subsets, 0, 1, ... otherwise.
    k_max = int(num.max())
    picks = _floyd(count, num, k_max, generator)
    picks = torch.where(proper.unsqueeze(-1), picks, torch.arange(k_max, device=device))
    offset = picks.view(-1).index_select(0, segment * k_max + slot)
    return segment, offset, num


def _floyd(count: Tensor, k: Tensor, k_max: int, generator: Optional[torch.Generator]) -> Tensor:
    # Floyd's algorithm: for j = n - k, ..., n - 1 draw t in [0, j]; keep t unless already
    # taken, then keep j. Every k-subset comes out with probability 1 / C(n, k).
    picks = torch.empty(count.numel(), k_max, dtype=torch.long, device=count.device)
    u = torch.rand(k_max, count.numel(), dtype=torch.float64, generator=generator, device=count.device)
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


def _sorted_keys(count: Tensor, k: Tensor, generator: Optional[torch.Generator]) -> Tensor:
    # A random permutation per segment from sorting (segment + U[0, 1)) keys; keep the first k.
    num_rows = count.numel()
    total = int(count.sum())
    row = torch.repeat_interleave(torch.arange(num_rows, device=count.device), count, output_size=total)
    keys = torch.rand(total, dtype=torch.float64, generator=generator, device=count.device) + row
    order = keys.argsort()
    ptr = count.cumsum(0) - count
    within = order - ptr[row]  # `row[order] == row` since keys sort by segment first
    keep = torch.arange(total, device=count.device) - ptr[row] < k[row]
    return within[keep]
