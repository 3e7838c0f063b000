"""Which frames a clip takes: MMAction2's ``SampleFrames`` as a pure function."""
from typing import Optional

import torch
from torch import Tensor

MODES = ("segment", "uniform", "random")


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"clip_indices: '{name}' must be an int (got {type(value).__name__})")
    value = int(value.__index__())
    if value < minimum:
        raise ValueError(f"clip_indices: '{name}' must be >= {minimum} (got {value})")
    return value


def clip_indices(num_frames: int, num_clips: int, clip_len: int, *, frame_interval: int = 1,
                 mode: str = "segment", generator: Optional[torch.Generator] = None) -> Tensor:
    r"""The frame indices of ``num_clips`` clips of ``clip_len`` frames, ``frame_interval`` apart.

    The semantics of MMAction2's ``SampleFrames`` (``mmaction/datasets/transforms/loading.py``, 1.x): clip
    :math:`i` starts at offset :math:`o_i` and takes frames :math:`o_i + j \cdot s`, :math:`j < \text{clip\_len}`,
    :math:`s = \text{frame\_interval}`. With :math:`F` = ``num_frames``, :math:`n` = ``num_clips`` and
    :math:`L = \text{clip\_len} \cdot s`:

    * ``"segment"`` (training, ``_get_train_clips``): with :math:`a = \lfloor (F - L + 1) / n \rfloor`, if
      :math:`a > 0` the clips start at :math:`i a + u_i`, :math:`u_i` uniform in :math:`[0, a)` (one random
      clip per equal segment); else, if :math:`F > \max(n, L)`, :math:`n` sorted uniform starts in
      :math:`[0, F - L]`; else, if :math:`a = 0`, the deterministic :math:`\text{round}(i (F - L + 1) / n)`;
      else (a clip longer than the video) all starts are 0.
    * ``"uniform"`` (testing, ``_get_test_clips``): evenly spaced and deterministic. With
      :math:`m = \max(F - (\text{clip\_len} - 1) s - 1, 0)`, the starts are
      :math:`\text{round}(i\, m / (n - 1))` (so the first clip starts at 0 and the last ends at the last
      frame), or :math:`\lfloor m / 2 \rfloor` for one clip.
    * ``"random"``: :math:`n` independent uniform starts in :math:`[0, \max(F - L, 0)]`, sorted.

    A clip longer than the video is clamped into it: an index past the end is replaced by the clip's last
    index inside the video (MMAction2's ``out_of_bound_opt="repeat_last"``).

    Args:
        num_frames (int): frames in the video (``len(reader)``), at least 1.
        num_clips (int): clips to sample, at least 1.
        clip_len (int): frames per clip, at least 1.
        frame_interval (int, optional): the temporal stride inside a clip. (default: :obj:`1`)
        mode (str, optional): ``"segment"``, ``"uniform"`` or ``"random"``. (default: :obj:`"segment"`)
        generator (torch.Generator, optional): the random source of ``"segment"`` and ``"random"``.

    Returns:
        LongTensor ``[num_clips, clip_len]``, every entry in ``[0, num_frames)``; the clips are in time
        order (their starts never decrease) and each row is non-decreasing.
    """
    num_frames = _check_int("num_frames", num_frames, 1)
    num_clips = _check_int("num_clips", num_clips, 1)
    clip_len = _check_int("clip_len", clip_len, 1)
    frame_interval = _check_int("frame_interval", frame_interval, 1)
    if mode not in MODES:
        raise ValueError(f"clip_indices: 'mode' must be one of {MODES} (got {mode!r})")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"clip_indices: 'generator' must be a torch.Generator or None "
                        f"(got {type(generator).__name__})")

    F, n, s = num_frames, num_clips, frame_interval
    span = clip_len * s
    i = torch.arange(n)
    if mode == "uniform":
        max_offset = max(F - (clip_len - 1) * s - 1, 0)
        if n > 1:
            starts = torch.round(i.double() * (max_offset / (n - 1))).long()
        else:
            starts = torch.full((1,), max_offset // 2, dtype=torch.long)
    elif mode == "random":
        starts = torch.randint(max(F - span, 0) + 1, (n,), generator=generator).sort().values
    else:
        avg = (F - span + 1) // n
        if avg > 0:
            starts = i * avg + torch.randint(avg, (n,), generator=generator)
        elif F > max(n, span):
            starts = torch.randint(F - span + 1, (n,), generator=generator).sort().values
        elif avg == 0:
            starts = torch.round(i.double() * ((F - span + 1) / n)).long()
        else:
            starts = torch.zeros(n, dtype=torch.long)
    index = starts[:, None] + torch.arange(clip_len)[None, :] * s
    # repeat_last: past the end, repeat the clip's last frame inside the video (offsets are < F).
    last_inside = torch.where(index < F, index, -1).amax(dim=1, keepdim=True)
    return torch.where(index < F, index, last_inside)
