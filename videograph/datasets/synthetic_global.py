r"""Seeded synthetic clips where the class needs global context: does a small object move *with* the camera's
pan or *against* it? (LGD's ablation, ``python -m videograph ablation lgd``; see ``docs/synthetic.md``.)

The camera pans left or right: two textured bands at the top and bottom of the frame (the scenery) slide
sideways; the middle band is plain, so near the object nothing shows the pan. The object, a small square of
random colour, slides left or right on its own. The label is whether the two directions agree, the exclusive-or
of a whole-frame motion and a local one: a network whose features at the object never see the scenery, and that
pools them only at the end into a linear classifier, cannot compute it (its pooled features add an object part
and a scenery part, and XOR is not linearly separable), while a global path that broadcasts the pan to every
location can.
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["PAN_CLASSES", "HFLIP_LABEL", "SyntheticCameraPan"]

#: Classes of :class:`SyntheticCameraPan`.
PAN_CLASSES: Tuple[str, ...] = (
    "with_pan",          # the camera pans and the object slides the same way as the scenery
    "against_pan",       # the camera pans and the object slides the opposite way
    "still_camera_left", "still_camera_right",    # no pan; the object slides left / right
    "pan_left_still_object", "pan_right_still_object",  # the scenery slides left / right; the object stays
)

#: The label of a clip's left-right mirror image (left and right swap; with / against the pan stay).
HFLIP_LABEL = torch.tensor([0, 1, 3, 2, 5, 4])

# One cycle of labels: with_pan and against_pan twice as frequent as the others.
_LABEL_CYCLE = torch.tensor([0, 0, 1, 1, 2, 3, 4, 5])

_SPLITS = {"train": 0, "val": 1, "test": 2}


def _positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"'{name}' must be a positive int, got {value!r}")
    return value


class SyntheticCameraPan(Dataset):
    r"""Clips of a camera pan and a moving object; label 0 (``with_pan``) when the object slides the way the
    scenery does, 1 (``against_pan``) otherwise. Classes are balanced and every pan direction, object direction
    and speed is equally likely in each class, so neither motion alone tells the class.

    * Scenery: the top and bottom ``band`` rows hold a smoothed random texture sliding by ``v_pan`` pixels per
      frame, :math:`|v_{pan}| \in \{1, 2\}`; the middle rows are flat grey (0.5).
    * Object: a ``object_size`` square of random colour whose centre row lies within ``object_jitter`` rows of
      the frame centre, sliding by ``v_obj`` pixels per frame, :math:`|v_{obj}| \in \{1, 2\}`, starting where it
      stays inside the frame.
    * Gaussian pixel noise of std ``noise``, values clipped to :math:`[0, 1]`.

    All clips are drawn at construction from ``(seed, split)``.

    Args:
        num_videos (int): clips in the dataset.
        split (str, optional): ``"train"``, ``"val"`` or ``"test"`` (independent streams). (default: ``"train"``)
        seed (int, optional): the seed. (default: :obj:`0`)
        num_frames (int, optional): :math:`T`. (default: :obj:`8`)
        height (int, optional): :math:`H`. (default: :obj:`56`)
        width (int, optional): :math:`W`. (default: :obj:`56`)
        band (int, optional): rows of each scenery band. (default: :obj:`12`)
        object_size (int, optional): the object's side. (default: :obj:`6`)
        object_jitter (int, optional): the object's centre row lies within this many rows of the centre.
            (default: :obj:`4`)
        noise (float, optional): pixel noise std. (default: :obj:`0.05`)

    Items are ``(video, label)``: float ``[3, T, H, W]`` in :math:`[0, 1]` and an int;
    :meth:`tensors` returns all of them stacked.
    """

    classes = PAN_CLASSES

    def __init__(self, num_videos: int, *, split: str = "train", seed: int = 0, num_frames: int = 8,
                 height: int = 56, width: int = 56, band: int = 12, object_size: int = 6, object_jitter: int = 4,
                 noise: float = 0.05):
        if split not in _SPLITS:
            raise ValueError(f"'split' must be one of {tuple(_SPLITS)}, got {split!r}")
        self.num_videos, self.num_frames = _positive("num_videos", num_videos), _positive("num_frames", num_frames)
        self.height, self.width = _positive("height", height), _positive("width", width)
        self.band, self.object_size = _positive("band", band), _positive("object_size", object_size)
        if isinstance(object_jitter, bool) or not isinstance(object_jitter, int) or object_jitter < 0:
            raise ValueError(f"'object_jitter' must be a non-negative int, got {object_jitter!r}")
        if 2 * band + object_size + 2 * object_jitter > height:
            raise ValueError(f"'height'={height} leaves no room between the bands ({band} rows each) for the object "
                             f"({object_size} rows, jitter {object_jitter})")
        reach = 2 * (num_frames - 1)
        if object_size + reach > width:
            raise ValueError(f"'width'={width} is too narrow for an object of {object_size} moving up to {reach} "
                             f"pixels")
        if not noise >= 0:
            raise ValueError(f"'noise' must be non-negative, got {noise!r}")
        self.split, self.seed, self.object_jitter, self.noise = split, int(seed), object_jitter, float(noise)
        gen = torch.Generator().manual_seed(1_000_003 * int(seed) + 7919 * _SPLITS[split] + 17)
        self.videos, self.labels = self._draw(gen)

    def _draw(self, gen: torch.Generator) -> Tuple[Tensor, Tensor]:
        n, t, h, w, b, s = self.num_videos, self.num_frames, self.height, self.width, self.band, self.object_size
        # Labels: with_pan and against_pan 1/4 each, the four one-motion classes 1/8 each.
        labels = _LABEL_CYCLE[torch.randperm(n, generator=gen) % len(_LABEL_CYCLE)]
        side = torch.randint(2, (n,), generator=gen) * 2 - 1
        pan_dir = torch.zeros(n, dtype=torch.long)
        obj_dir = torch.zeros(n, dtype=torch.long)
        both = labels <= 1
        pan_dir[both] = side[both]
        obj_dir[both] = torch.where(labels[both] == 0, side[both], -side[both])
        obj_dir[labels == 2], obj_dir[labels == 3] = -1, 1
        pan_dir[labels == 4], pan_dir[labels == 5] = -1, 1
        v_pan = pan_dir * (torch.randint(2, (n,), generator=gen) + 1)
        v_obj = obj_dir * (torch.randint(2, (n,), generator=gen) + 1)
        steps = torch.arange(t)
        # Scenery: a texture wider than the frame, read at an offset moving by v_pan per frame.
        extra = 2 * (t - 1)
        texture = torch.rand(n * 2, 3, b, w + extra + 4, generator=gen)
        texture = F.avg_pool2d(texture, 3, stride=1, padding=1)
        texture = ((texture - 0.5) * 4 + 0.5).clamp(0, 1).view(n, 2, 3, b, -1)
        offset = extra + 2 - v_pan[:, None] * steps           # scenery moves by +v_pan: read from further left
        offset = offset - offset.amin(1, keepdim=True)
        cols = offset[:, :, None] + torch.arange(w)            # [n, t, w]
        index = cols[:, None, None, None, :, :].expand(n, 2, 3, b, t, w)
        bands = texture[:, :, :, :, None, :].expand(n, 2, 3, b, t, texture.size(-1)).gather(-1, index)
        video = torch.full((n, 3, t, h, w), 0.5)
        video[:, :, :, :b] = bands[:, 0].permute(0, 1, 3, 2, 4)
        video[:, :, :, h - b:] = bands[:, 1].permute(0, 1, 3, 2, 4)
        # Object: top-left corner (y0, x0 + v_obj * step).
        centre = (h - s) // 2
        y0 = centre + torch.randint(-self.object_jitter, self.object_jitter + 1, (n,), generator=gen)
        travel = (v_obj.abs() * (t - 1))
        x_min = torch.where(v_obj > 0, torch.zeros_like(travel), travel)
        x_max = torch.where(v_obj > 0, w - s - travel, torch.full_like(travel, w - s))
        x0 = x_min + (torch.rand(n, generator=gen) * (x_max - x_min + 1).float()).long().clamp(max=w)
        x0 = torch.minimum(x0, x_max)
        xs = x0[:, None] + v_obj[:, None] * steps              # [n, t]
        rows, cols_ = torch.arange(h), torch.arange(w)
        in_y = (rows >= y0[:, None]) & (rows < y0[:, None] + s)                        # [n, h]
        in_x = (cols_ >= xs[:, :, None]) & (cols_ < xs[:, :, None] + s)               # [n, t, w]
        mask = in_y[:, None, :, None] & in_x[:, :, None, :]                           # [n, t, h, w]
        colour = torch.rand(n, 3, generator=gen) * 0.8 + 0.1
        colour = torch.where((colour - 0.5).abs() < 0.15, colour + 0.3 * torch.sign(colour - 0.5 + 1e-6), colour)
        video = torch.where(mask[:, None], colour[:, :, None, None, None], video)
        video = (video + self.noise * torch.randn(video.shape, generator=gen)).clamp(0, 1)
        self.v_pan, self.v_obj, self.boxes_x = v_pan, v_obj, xs
        return video, labels

    def tensors(self) -> Tuple[Tensor, Tensor]:
        """All clips ``[N, 3, T, H, W]`` and labels ``[N]``."""
        return self.videos, self.labels

    def __len__(self) -> int:
        return self.num_videos

    def __getitem__(self, index: int) -> Tuple[Tensor, int]:
        return self.videos[index], int(self.labels[index])

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.num_videos}, split={self.split!r}, seed={self.seed}, "
                f"size={(self.num_frames, self.height, self.width)})")
