r"""LGD-3D and LGD-2D, the Local and Global Diffusion networks of `"Learning Spatio-Temporal Representation with
Local and Global Diffusion" <https://arxiv.org/abs/1906.05571>`_ (Qiu et al., CVPR 2019, sec. 4), built like
torchvision's video ResNets: ``[B, 3, T, H, W]`` in, logits out, :meth:`~LGD3D.forward_features` for the
final local map and global vector."""
import os
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn.lgd import VARIANTS, KernelizedClassifier, LGDBlock, P3DBottleneck, global_pool

__all__ = ["LGD3D", "LGD2D", "FrameBackbone", "lgd3d_resnet50", "lgd2d_resnet50"]

StateDict = Union[str, os.PathLike, Dict[str, Tensor]]

#: Variant names of LGD's table 2 (as the ablation prints them) -> ``LGDBlock`` variants.
VARIANT_NAMES = {"P3D": "p3d", "TSN": "p3d", "LGD-v1": "v1", "LGD-v2": "v2", "LGD": "lgd"}


def _load(weights: StateDict) -> Dict[str, Tensor]:
    if isinstance(weights, dict):
        return weights
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"'weights': no state-dict file {os.fspath(weights)!r}")
    return torch.load(weights, map_location="cpu", weights_only=True)


class _LGDNet(nn.Module):
    def __init__(self, num_classes: int, *, stem: nn.Module, temporal: bool, layers: Sequence[int], widths: Sequence[int],
                 stem_channels: int, variant: str, expansion: int, rank_ratio: int, sketch_channels: int,
                 dropout: float, weights: Optional[StateDict], generator: Optional[torch.Generator]):
        super().__init__()
        self.stem = stem
        variant = VARIANT_NAMES.get(variant, variant)
        if variant not in VARIANTS:
            raise ValueError(f"'variant' must be one of {VARIANTS} or {tuple(VARIANT_NAMES)}, got {variant!r}")
        layers, widths = tuple(layers), tuple(widths)
        if not layers or len(layers) != len(widths) or any(int(n) < 1 for n in layers) or any(
                int(w) < 1 for w in widths):
            raise ValueError(f"'layers' and 'widths' must be equally long sequences of positive ints, got "
                             f"{layers} and {widths}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"'num_classes' must be a positive int, got {num_classes!r}")
        self.num_classes, self.variant, self.temporal = num_classes, variant, temporal
        self.layers, self.widths = layers, widths
        blocks, pools, channels = [], [], stem_channels
        for stage, (depth, width) in enumerate(zip(layers, widths)):
            for index in range(depth):
                stride = 2 if stage > 0 and index == 0 else 1
                local = P3DBottleneck(channels, width, stride, expansion, temporal=temporal)
                blocks.append(LGDBlock(local, channels, local.out_channels, variant, rank_ratio))
                channels = local.out_channels
                # LGD-3D (table 1): pool2, a temporal max pool of stride 2, after res2.
                pools.append(temporal and stage == 0 and index == depth - 1)
        self.blocks = nn.ModuleList(blocks)
        self._pool_after = tuple(pools)
        self.out_channels = channels
        self.dropout = nn.Dropout(dropout)
        self.fc_x = nn.Linear(channels, num_classes)   # W_x on P(x_L)
        self.fc_g = nn.Linear(channels, num_classes)   # W_g on g_L
        self.kernel = KernelizedClassifier(channels, num_classes, sketch_channels, generator=generator) \
            if sketch_channels else None
        #: ``"paths"``: the mean of the two stage-1 heads' logits; ``"kernel"``: the kernelized classifier.
        self.head = "paths"
        self.reset_parameters()
        if weights is not None:
            self.load_state_dict(_load(weights))

    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm3d):
                module.reset_parameters()
        for block in self.blocks:
            block.reset_parameters()
        for fc in (self.fc_x, self.fc_g):
            fc.reset_parameters()
        if self.kernel is not None:
            self.kernel.reset_parameters()

    def _check(self, video: Tensor) -> None:
        if video.dim() != 5 or video.size(1) != 3:
            raise ValueError(f"'video' must be [B, 3, T, H, W], got {tuple(video.shape)}")

    def forward_features(self, video: Tensor) -> Tuple[Tensor, Tensor]:
        r"""The last block's output pair :math:`(\mathbf{x}_L, \mathbf{g}_L)`: ``[B, C, T', H', W']`` and
        ``[B, C]``."""
        self._check(video)
        x = self.stem(video)
        g = global_pool(x)              # g_1 = P(x_1)
        for block, pool in zip(self.blocks, self._pool_after):
            x, g = block(x, g)
            if pool:
                x = F.max_pool3d(x, (2, 1, 1), (2, 1, 1))
        return x, g

    def path_logits(self, x: Tensor, g: Tensor) -> Tuple[Tensor, Tensor]:
        """Stage 1's two heads: :math:`\\mathbf{W}_x \\mathcal{P}(\\mathbf{x}_L)` and :math:`\\mathbf{W}_g
        \\mathbf{g}_L`."""
        return self.fc_x(self.dropout(global_pool(x))), self.fc_g(self.dropout(g))

    def loss(self, video: Tensor, target: Tensor, stage: int = 1) -> Tensor:
        r"""LGD's two-stage objective (sec. 4.3): stage 1, the cross-entropy of both heads (eq. 6); stage 2,
        the cross-entropy of the kernelized classifier (eq. 7)."""
        x, g = self.forward_features(video)
        if stage == 1:
            logits_x, logits_g = self.path_logits(x, g)
            return F.cross_entropy(logits_x, target) + F.cross_entropy(logits_g, target)
        if stage == 2:
            if self.kernel is None:
                raise ValueError("stage 2 needs the kernelized classifier: build the network with sketch_channels")
            return F.cross_entropy(self.kernel(x, g), target)
        raise ValueError(f"'stage' must be 1 or 2, got {stage!r}")

    def forward(self, video: Tensor) -> Tensor:
        x, g = self.forward_features(video)
        if self.head == "kernel":
            if self.kernel is None:
                raise ValueError("head='kernel' needs the kernelized classifier: build with sketch_channels")
            return self.kernel(x, g)
        logits_x, logits_g = self.path_logits(x, g)
        return (logits_x + logits_g) / 2

    def extra_repr(self) -> str:
        return f"variant={self.variant}, layers={self.layers}, widths={self.widths}, num_classes={self.num_classes}"


_DOC_ARGS = r"""
    Args:
        num_classes (int): output logits.
        layers (sequence of int, optional): blocks per stage (ResNet-50: :obj:`(3, 4, 6, 3)`; fewer stages make
            a shallower network). (default: :obj:`(3, 4, 6, 3)`)
        widths (sequence of int, optional): bottleneck widths per stage. (default: :obj:`(64, 128, 256, 512)`)
        stem_channels (int, optional): conv1's channels. (default: :obj:`64`)
        variant (str, optional): ``"lgd"``, ``"v1"``, ``"v2"`` or ``"p3d"`` (no global path), or the names of
            LGD's table 2 ``"LGD"``, ``"LGD-v1"``, ``"LGD-v2"``, ``"P3D"`` / ``"TSN"``. (default: :obj:`"lgd"`)
        expansion (int, optional): bottleneck expansion. (default: :obj:`4`)
        rank_ratio (int, optional): :math:`C / \hat{C}` of the low-rank projections. (default: :obj:`16`)
        sketch_channels (int, optional): :math:`d` of the kernelized classifier's Tensor Sketch; :obj:`0` builds
            no kernelized classifier. (default: :obj:`8192`)
        dropout (float, optional): dropout before the stage-1 heads. (default: :obj:`0.0`)
        weights (str or dict, optional): a state dict of this network (a path is read with
            ``torch.load(..., weights_only=True)``). (default: :obj:`None`, random initialisation)
        generator (torch.Generator, optional): draws the Tensor Sketch's hashes. (default: :obj:`None`)
"""


class LGD3D(_LGDNet):
    __doc__ = r"""LGD-3D (LGD sec. 4.2, table 1): P3D-A bottlenecks (:math:`1 \times 3 \times 3` spatial then
    :math:`3 \times 1 \times 1` temporal convolution) in the ResNet layout, each residual unit an
    :class:`~videograph.nn.LGDBlock`. conv1 is :math:`1 \times 7 \times 7` (stride 1, 2, 2) then
    :math:`3 \times 1 \times 1`; pool1 and pool2 halve the clip length (temporal max pools after conv1 and
    res2); res3-res5 halve the side. A :math:`16 \times 112 \times 112` clip gives :math:`\mathbf{x}_L` of
    :math:`2048 \times 4 \times 7 \times 7`. ``forward`` returns the mean of the two stage-1 heads' logits
    (``head = "paths"``) or the kernelized classifier's (``head = "kernel"``); :meth:`loss` is the two-stage
    objective.
    """ + _DOC_ARGS + r"""
    Shapes:
        - **input:** :math:`(B, 3, T, H, W)`, :math:`T` divisible by 4
        - **output:** :math:`(B, \text{num\_classes})`
    """

    def __init__(self, num_classes: int, *, layers: Sequence[int] = (3, 4, 6, 3),
                 widths: Sequence[int] = (64, 128, 256, 512), stem_channels: int = 64, variant: str = "lgd",
                 expansion: int = 4, rank_ratio: int = 16, sketch_channels: int = 8192, dropout: float = 0.0,
                 weights: Optional[StateDict] = None, generator: Optional[torch.Generator] = None):
        stem = nn.Sequential(
            nn.Conv3d(3, stem_channels, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
            nn.BatchNorm3d(stem_channels), nn.ReLU(inplace=True),
            nn.Conv3d(stem_channels, stem_channels, (3, 1, 1), padding=(1, 0, 0), bias=False),
            nn.BatchNorm3d(stem_channels), nn.ReLU(inplace=True),
            nn.MaxPool3d((2, 1, 1), (2, 1, 1)))                       # pool1
        super().__init__(num_classes, stem=stem, temporal=True, layers=layers, widths=widths, stem_channels=stem_channels,
                         variant=variant, expansion=expansion, rank_ratio=rank_ratio,
                         sketch_channels=sketch_channels, dropout=dropout, weights=weights, generator=generator)

    def _check(self, video: Tensor) -> None:
        super()._check(video)
        if video.size(2) % 4:
            raise ValueError(f"'video' length T must be divisible by 4 (two temporal pools), got {video.size(2)}")

    def init_temporal_identity(self) -> None:
        """Every block's temporal convolution set to the identity (LGD sec. 5.2, for pretrained spatial
        weights)."""
        for block in self.blocks:
            block.local.init_temporal_identity()

    def frame_backbone(self) -> "FrameBackbone":
        """This network as a per-frame backbone for :class:`~videograph.nn.encoders.RoIFeatures`."""
        return FrameBackbone(self)


class LGD2D(_LGDNet):
    __doc__ = r"""LGD-2D (LGD sec. 4.1): a TSN-style 2D ResNet shared over the ``num_segments`` frames sampled
    one per snippet, each residual unit an :class:`~videograph.nn.LGDBlock` whose global path pools over all the
    frames (and :math:`\mathcal{US}` broadcasts back to all of them). conv1 is :math:`7 \times 7` (stride 2)
    then a :math:`3 \times 3` max pool (stride 2); res3-res5 halve the side.
    """ + _DOC_ARGS + r"""        num_segments (int, optional): the frames per video, :math:`T`. (default: :obj:`3`)

    Shapes:
        - **input:** :math:`(B, 3, T, H, W)`, :math:`T` = ``num_segments``
        - **output:** :math:`(B, \text{num\_classes})`
    """

    def __init__(self, num_classes: int, *, layers: Sequence[int] = (3, 4, 6, 3),
                 widths: Sequence[int] = (64, 128, 256, 512), stem_channels: int = 64, variant: str = "lgd",
                 expansion: int = 4, rank_ratio: int = 16, sketch_channels: int = 8192, dropout: float = 0.0,
                 weights: Optional[StateDict] = None, generator: Optional[torch.Generator] = None,
                 num_segments: int = 3):
        if isinstance(num_segments, bool) or not isinstance(num_segments, int) or num_segments < 1:
            raise ValueError(f"'num_segments' must be a positive int, got {num_segments!r}")
        stem = nn.Sequential(
            nn.Conv3d(3, stem_channels, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
            nn.BatchNorm3d(stem_channels), nn.ReLU(inplace=True),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)))
        super().__init__(num_classes, stem=stem, temporal=False, layers=layers, widths=widths, stem_channels=stem_channels,
                         variant=variant, expansion=expansion, rank_ratio=rank_ratio,
                         sketch_channels=sketch_channels, dropout=dropout, weights=weights, generator=generator)
        self.num_segments = num_segments

    def _check(self, video: Tensor) -> None:
        super()._check(video)
        if video.size(2) != self.num_segments:
            raise ValueError(f"'video' must hold num_segments={self.num_segments} frames, got {video.size(2)}")


class FrameBackbone(nn.Module):
    r"""An :class:`LGD3D` as the per-frame ``backbone`` of :class:`~videograph.nn.encoders.RoIFeatures`: the
    :math:`F` frames are one clip, its final local map :math:`\mathbf{x}_L` is repeated back over time to one
    map per frame (nearest, undoing the temporal pools).

    Shapes:
        - **input:** :math:`(F, 3, H, W)`, :math:`F` divisible by 4
        - **output:** :math:`(F, C, H / 32, W / 32)` (:math:`H / 2^{k+1}` for :math:`k` stages after res2)
    """

    def __init__(self, network: LGD3D):
        super().__init__()
        if not isinstance(network, LGD3D):
            raise TypeError(f"'network' must be an LGD3D, got {type(network).__name__}")
        self.network = network
        self.out_channels = network.out_channels

    def forward(self, frames: Tensor) -> Tensor:
        if frames.dim() != 4 or frames.size(1) != 3:
            raise ValueError(f"'frames' must be [F, 3, H, W], got {tuple(frames.shape)}")
        x, _ = self.network.forward_features(frames.transpose(0, 1)[None])
        x = F.interpolate(x, size=(frames.size(0), *x.shape[-2:]), mode="nearest")
        return x[0].transpose(0, 1)


def lgd3d_resnet50(num_classes: int, **kwargs) -> LGD3D:
    """LGD-3D on ResNet-50 (LGD table 1)."""
    return LGD3D(num_classes, layers=(3, 4, 6, 3), widths=(64, 128, 256, 512), **kwargs)


def lgd2d_resnet50(num_classes: int, **kwargs) -> LGD2D:
    """LGD-2D on ResNet-50 (LGD sec. 4.1)."""
    return LGD2D(num_classes, layers=(3, 4, 6, 3), widths=(64, 128, 256, 512), **kwargs)
