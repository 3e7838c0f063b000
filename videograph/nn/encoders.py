r"""Node and edge encoders of the recognition models: RoI visual features of boxes and tubelets on any
backbone's per-frame feature map, and MUSLE's node / pair encoders (Li et al., CVPR 2021, sec. 3.2)."""
from typing import Optional, Tuple

import torch
from torch import Tensor, nn
from torchvision.ops import roi_align

__all__ = ["SmallCNN", "RoIFeatures", "tubelet_frame_index", "NodeEncoder", "PairEncoder"]


def _positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"'{name}' must be a positive int, got {value!r}")
    return value


def _mlp(in_channels: int, out_channels: int, normalize: bool) -> nn.Sequential:
    return nn.Sequential(*_norm(in_channels, normalize), nn.Linear(in_channels, out_channels), nn.ReLU(),
                         nn.Linear(out_channels, out_channels))


def _norm(channels: int, normalize: bool) -> list:
    # Raw coordinates and frozen-backbone features span tiny ranges (box sides vary by a few % of the frame):
    # standardising them keeps the mixtures' variances, and eq. 6's 1 / variance term, in a sane range.
    return [nn.BatchNorm1d(channels, affine=False)] if normalize else []


class SmallCNN(nn.Module):
    r"""A small per-frame 2D CNN, the default backbone of :class:`RoIFeatures`: three 3x3 convolutions
    (stride 2, 2, 1) with GroupNorm and ReLU, so the feature map has stride 4. Quick enough to train on CPU.

    Args:
        in_channels (int, optional): image channels. (default: :obj:`3`)
        out_channels (int, optional): feature channels. (default: :obj:`32`)

    Shapes:
        - **input:** frames :math:`(F, C_{in}, H, W)`, float
        - **output:** :math:`(F, C_{out}, \lceil H / 4 \rceil, \lceil W / 4 \rceil)`
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 32):
        super().__init__()
        self.in_channels = _positive("in_channels", in_channels)
        self.out_channels = _positive("out_channels", out_channels)
        mid = max(out_channels // 2, 1)
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, mid, 3, stride=2, padding=1), nn.GroupNorm(1, mid), nn.ReLU(),
            nn.Conv2d(mid, out_channels, 3, stride=2, padding=1), nn.GroupNorm(1, out_channels), nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1), nn.ReLU())
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for layer in self.layers:
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()

    def forward(self, frames: Tensor) -> Tensor:
        return self.layers(frames)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.in_channels}, {self.out_channels})"


def tubelet_frame_index(clip: Tensor, frames_per_clip: int) -> Tensor:
    r"""Frame of every box of every tubelet when clip :math:`c` holds the consecutive frames
    :math:`c \cdot t, \ldots, c \cdot t + t - 1` (as :meth:`SyntheticVideo.tubelets` cuts them).

    Args:
        clip: ``[N]`` clip of each tubelet.
        frames_per_clip: :math:`t`, the boxes per tubelet.

    Returns:
        ``[N, t]`` long frame indices.
    """
    _positive("frames_per_clip", frames_per_clip)
    steps = torch.arange(frames_per_clip, device=clip.device)
    return clip.long()[:, None] * frames_per_clip + steps


class RoIFeatures(nn.Module):
    r"""Visual features of boxes (STRG's region nodes) or tubelets (MUSLE's nodes): a backbone maps every frame
    to a feature map, :func:`torchvision.ops.roi_align` pools each box on the map of its frame, and the result is
    max-pooled over space and over the boxes of a tubelet (time):

    .. math::
        f_n = \max_{l} \max_{u, v} \mathrm{RoIAlign}(B(I_{t_{n,l}}), b_{n,l})_{:, u, v}

    Any module mapping ``[F, 3, H, W]`` frames to ``[F, C, h, w]`` maps works as ``backbone`` (e.g. a torchvision
    ResNet's trunk with pretrained weights of your choice); the default :class:`SmallCNN` is randomly initialised.
    The spatial scale is read from the map and frame sizes, so any stride works. Everything is differentiable, so
    the backbone trains end to end with the model on top.

    Args:
        backbone (torch.nn.Module, optional): the per-frame network. (default: :class:`SmallCNN` ``(3, 32)``)
        out_channels (int, optional): channels of the backbone's map; read from ``backbone.out_channels`` when
            not given. (default: :obj:`None`)
        output_size (int, optional): RoIAlign's output side before the spatial max. (default: :obj:`2`)
        sampling_ratio (int, optional): RoIAlign's sampling points per bin. (default: :obj:`2`)
        normalize (bool, optional): map ``uint8`` frames to ``[0, 1]`` and standardise them per channel with
            ``mean`` / ``std``. (default: :obj:`True`)

    Shapes:
        - **frames:** :math:`(F, H, W, 3)` ``uint8`` or :math:`(F, 3, H, W)` float
        - **boxes:** :math:`(N, L, 4)` ``xyxy`` pixels (tubelets) or :math:`(N, 4)` (regions, :math:`L = 1`)
        - **frame_index:** :math:`(N, L)` or :math:`(N)`, the frame of each box in ``frames``
        - **output:** :math:`(N, C)`
    """

    def __init__(self, backbone: Optional[nn.Module] = None, out_channels: Optional[int] = None,
                 output_size: int = 2, sampling_ratio: int = 2, normalize: bool = True,
                 mean: Tuple[float, float, float] = (0.5, 0.5, 0.5), std: Tuple[float, float, float] = (0.25, 0.25, 0.25)):
        super().__init__()
        self.backbone = SmallCNN() if backbone is None else backbone
        channels = out_channels if out_channels is not None else getattr(self.backbone, "out_channels", None)
        if channels is None:
            raise ValueError("'out_channels' is required when the backbone has no 'out_channels' attribute")
        self.out_channels = _positive("out_channels", channels)
        self.output_size = _positive("output_size", output_size)
        self.sampling_ratio = _positive("sampling_ratio", sampling_ratio)
        self.normalize = normalize
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def feature_map(self, frames: Tensor) -> Tensor:
        """The backbone's map of ``frames`` (``[F, H, W, 3]`` uint8 or ``[F, 3, H, W]`` float)."""
        if frames.dim() != 4:
            raise ValueError(f"'frames' must be [F, H, W, 3] uint8 or [F, 3, H, W] float, got {tuple(frames.shape)}")
        if frames.dtype == torch.uint8:
            if frames.size(-1) != 3:
                raise ValueError(f"uint8 'frames' must be [F, H, W, 3], got {tuple(frames.shape)}")
            frames = frames.permute(0, 3, 1, 2).float() / 255.0
        elif not frames.is_floating_point():
            raise TypeError(f"'frames' must be uint8 or floating point, got {frames.dtype}")
        if self.normalize:
            frames = (frames - self.mean.to(frames)) / self.std.to(frames)
        return self.backbone(frames)

    def pool(self, feature_map: Tensor, boxes: Tensor, frame_index: Tensor, frame_size: Tuple[int, int]) -> Tensor:
        """RoIAlign + max over space and the boxes of each row, on a precomputed ``feature_map``."""
        if boxes.dim() == 2:
            boxes = boxes[:, None]
        if frame_index.dim() == 1:
            frame_index = frame_index[:, None]
        if boxes.dim() != 3 or boxes.size(-1) != 4:
            raise ValueError(f"'boxes' must be [N, 4] or [N, L, 4], got {tuple(boxes.shape)}")
        if tuple(frame_index.shape) != tuple(boxes.shape[:2]):
            raise ValueError(f"'frame_index' must have shape {tuple(boxes.shape[:2])} (one frame per box), got "
                             f"{tuple(frame_index.shape)}")
        if frame_index.numel() and (int(frame_index.min()) < 0 or int(frame_index.max()) >= feature_map.size(0)):
            raise ValueError(f"'frame_index' must lie in [0, {feature_map.size(0)}), the frames given")
        height, width = frame_size
        scale = feature_map.size(-1) / width
        if abs(feature_map.size(-2) / height - scale) > 0.1 * scale:
            raise ValueError(f"the feature map {tuple(feature_map.shape[-2:])} does not scale the frames "
                             f"{(height, width)} by one factor")
        num, length = boxes.shape[:2]
        rois = torch.cat([frame_index.reshape(-1, 1).to(boxes.dtype), boxes.reshape(-1, 4)], dim=1)
        pooled = roi_align(feature_map, rois.to(feature_map.dtype), self.output_size, spatial_scale=scale,
                           sampling_ratio=self.sampling_ratio, aligned=True)
        return pooled.amax(dim=(2, 3)).view(num, length, -1).amax(dim=1)

    def forward(self, frames: Tensor, boxes: Tensor, frame_index: Tensor) -> Tensor:
        size = (frames.size(1), frames.size(2)) if frames.dtype == torch.uint8 else (frames.size(2), frames.size(3))
        return self.pool(self.feature_map(frames), boxes, frame_index, size)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.backbone.__class__.__name__}, out_channels={self.out_channels}, "
                f"output_size={self.output_size})")


class NodeEncoder(nn.Module):
    r"""MUSLE's node representation (sec. 3.2) :math:`f_v = [W f^{visual}_v, \mathrm{MLP}(f^{coord}_v)]`, where
    :math:`f^{coord}_v` is the tubelet's :math:`4T` per-frame ``(cx, cy, h, w)`` (``data.coord``). The visual part
    is linearly projected to ``visual_out`` channels so the Gaussian mixtures stay small. Either part can be
    switched off (the ablation's *Sub-graph* rows use visual features only).

    Args:
        visual_channels (int): size of the visual features (``data.x``).
        coord_channels (int): size of ``data.coord`` (:math:`4T`).
        visual_out (int, optional): projected visual size. (default: :obj:`8`)
        coord_out (int, optional): coordinate MLP output size. (default: :obj:`8`)
        use_visual (bool, optional): include the visual part. (default: :obj:`True`)
        use_coord (bool, optional): include the coordinate part. (default: :obj:`True`)
        normalize (bool, optional): standardise each input with a :class:`~torch.nn.BatchNorm1d` (no affine
            part) first. (default: :obj:`True`)

    Shapes:
        - **input:** ``x`` :math:`(N, C_{vis})`, ``coord`` :math:`(N, 4T)`
        - **output:** :math:`(N, \text{out\_channels})`
    """

    def __init__(self, visual_channels: int, coord_channels: int, visual_out: int = 8, coord_out: int = 8,
                 use_visual: bool = True, use_coord: bool = True, normalize: bool = True):
        super().__init__()
        if not (use_visual or use_coord):
            raise ValueError("NodeEncoder needs 'use_visual' or 'use_coord'")
        self.visual_channels = _positive("visual_channels", visual_channels)
        self.coord_channels = _positive("coord_channels", coord_channels)
        self.visual = nn.Sequential(*_norm(visual_channels, normalize),
                                    nn.Linear(visual_channels, _positive("visual_out", visual_out))) \
            if use_visual else None
        self.coord = _mlp(coord_channels, _positive("coord_out", coord_out), normalize) if use_coord else None
        self.out_channels = (visual_out if use_visual else 0) + (coord_out if use_coord else 0)

    def forward(self, x: Optional[Tensor], coord: Optional[Tensor]) -> Tensor:
        parts = []
        if self.visual is not None:
            if x is None:
                raise ValueError("NodeEncoder with 'use_visual' needs visual features 'x'")
            parts.append(self.visual(x))
        if self.coord is not None:
            if coord is None:
                raise ValueError("NodeEncoder with 'use_coord' needs 'coord'")
            parts.append(self.coord(coord))
        return torch.cat(parts, dim=-1)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.visual_channels}, {self.coord_channels}, "
                f"visual={self.visual is not None}, coord={self.coord is not None})")


class PairEncoder(nn.Module):
    r"""MUSLE's edge representation (sec. 3.2) of node pairs :math:`i < j`:
    :math:`f_e = [f^{sem}_{ij}, \mathrm{MLP}(f^{coord}_i - f^{coord}_j)]` with the semantic affinity
    :math:`f^{sem}_{ij} = \phi(f^{visual}_i)^\top \phi(f^{visual}_j)`. With ``semantic="vector"`` (default) the
    affinity is kept as the vector :math:`\phi(f_i) \odot \phi(f_j)`, whose sum is the dot product, so the mixture
    sees which channels agree; ``"scalar"`` gives the paper's single number. Either part can be switched off
    (the ablation's *+Edge coord* row adds the coordinate part).

    Args:
        visual_channels (int): size of the visual features.
        coord_channels (int): size of ``data.coord``.
        semantic_out (int, optional): size of :math:`\phi`'s output. (default: :obj:`4`)
        coord_out (int, optional): coordinate-change MLP output size. (default: :obj:`8`)
        use_semantic (bool, optional): include :math:`f^{sem}`. (default: :obj:`True`)
        use_coord (bool, optional): include the coordinate change. (default: :obj:`True`)
        semantic (str, optional): ``"vector"`` or ``"scalar"``. (default: :obj:`"vector"`)
        normalize (bool, optional): standardise the visual features and the coordinate changes with a
            :class:`~torch.nn.BatchNorm1d` (no affine part) first. (default: :obj:`True`)
        unit_semantic (bool, optional): scale :math:`\phi(f)` to unit length, so :math:`f^{sem}` is a cosine
            similarity (vector entries in :math:`[-1, 1]`). A raw product of two learned projections is
            heavy-tailed, and a Gaussian mixture maximised over hundreds of sub-graphs is then decided by the
            tails. (default: :obj:`True`)

    Shapes:
        - **input:** ``x`` :math:`(N, C_{vis})`, ``coord`` :math:`(N, 4T)`, ``pairs`` :math:`(P, 2)` node ids
        - **output:** :math:`(P, \text{out\_channels})`
    """

    def __init__(self, visual_channels: int, coord_channels: int, semantic_out: int = 4, coord_out: int = 8,
                 use_semantic: bool = True, use_coord: bool = True, semantic: str = "vector", normalize: bool = True,
                 unit_semantic: bool = True):
        super().__init__()
        if not (use_semantic or use_coord):
            raise ValueError("PairEncoder needs 'use_semantic' or 'use_coord'")
        if semantic not in ("vector", "scalar"):
            raise ValueError(f"'semantic' must be 'vector' or 'scalar', got {semantic!r}")
        self.visual_channels = _positive("visual_channels", visual_channels)
        self.coord_channels = _positive("coord_channels", coord_channels)
        self.semantic = semantic
        self.unit_semantic = bool(unit_semantic)
        self.phi = nn.Sequential(*_norm(visual_channels, normalize),
                                 nn.Linear(visual_channels, _positive("semantic_out", semantic_out))) \
            if use_semantic else None
        self.coord = _mlp(coord_channels, _positive("coord_out", coord_out), normalize) if use_coord else None
        sem_size = (semantic_out if semantic == "vector" else 1) if use_semantic else 0
        self.out_channels = sem_size + (coord_out if use_coord else 0)

    def forward(self, x: Optional[Tensor], coord: Optional[Tensor], pairs: Tensor) -> Tensor:
        if pairs.dim() != 2 or pairs.size(1) != 2:
            raise ValueError(f"'pairs' must be [P, 2] node ids, got {tuple(pairs.shape)}")
        first, second = pairs[:, 0], pairs[:, 1]
        parts = []
        if self.phi is not None:
            if x is None:
                raise ValueError("PairEncoder with 'use_semantic' needs visual features 'x'")
            h = self.phi(x)
            if self.unit_semantic:
                h = nn.functional.normalize(h, dim=-1)
            sem = h[first] * h[second]
            parts.append(sem if self.semantic == "vector" else sem.sum(-1, keepdim=True))
        if self.coord is not None:
            if coord is None:
                raise ValueError("PairEncoder with 'use_coord' needs 'coord'")
            parts.append(self.coord(coord[first] - coord[second]))
        return torch.cat(parts, dim=-1)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.visual_channels}, {self.coord_channels}, "
                f"semantic={self.semantic if self.phi is not None else None}, coord={self.coord is not None})")
