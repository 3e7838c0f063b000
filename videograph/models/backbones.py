r"""Video backbones split into shared early layers and later layers, for models that run two copies of the later
layers over one early trunk (:class:`~videograph.models.U2S`). Each gives ``(early, late, channels)``: ``early``
maps a clip ``[B, 3, T, H, W]`` to a 5-D map, ``late`` maps that to the final post-ReLU 5-D map with ``channels``
channels."""
from typing import Tuple, Union

from torch import Tensor, nn

from ._utils import positive

__all__ = ["Small3DCNN", "split_backbone"]


def _block(in_channels: int, out_channels: int, stride) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm3d(out_channels), nn.ReLU())


class Small3DCNN(nn.Module):
    r"""A small 3D CNN (four 3x3x3 conv-BN-ReLU blocks) that trains in CPU minutes: ``early`` = two blocks with
    spatial stride 2 each, ``late`` = two blocks at stride 1, so the map has stride 4 in space, 1 in time.

    Args:
        in_channels (int, optional): input channels. (default: :obj:`3`)
        width (int, optional): channels of the first block; later blocks double it. (default: :obj:`16`)

    Shapes:
        - **input:** :math:`(B, C_{in}, T, H, W)`
        - **output:** :math:`(B, 2 \cdot width, T, \lceil H/4 \rceil, \lceil W/4 \rceil)`, post-ReLU
    """

    def __init__(self, in_channels: int = 3, width: int = 16):
        super().__init__()
        self.in_channels, self.width = positive("in_channels", in_channels), positive("width", width)
        self.out_channels = 2 * width
        self.early = nn.Sequential(_block(in_channels, width, (1, 2, 2)), _block(width, width, (1, 2, 2)))
        self.late = nn.Sequential(_block(width, 2 * width, 1), _block(2 * width, 2 * width, 1))

    def forward(self, video: Tensor) -> Tensor:
        return self.late(self.early(video))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.in_channels}, width={self.width})"


def split_backbone(backbone: Union[str, nn.Module], **kwargs) -> Tuple[nn.Module, nn.Module, int]:
    r"""``(early, late, channels)`` of a backbone.

    Args:
        backbone: ``"small"`` (:class:`Small3DCNN`, ``kwargs`` go to it), ``"r3d_18"``
            (``torchvision.models.video.r3d_18(weights=None)``: early = stem, layer1, layer2; late = layer3,
            layer4; 512 channels), or a module: a :class:`Small3DCNN` or torchvision ``VideoResNet`` instance
            (e.g. one with loaded weights) is split the same way; any other module with a ``forward_features``
            giving ``(x, ...)`` or a 5-D map (e.g. LGD-3D) becomes ``late`` behind an identity ``early``, with its
            ``out_channels`` attribute as ``channels``.
    """
    if isinstance(backbone, str):
        if backbone == "small":
            return split_backbone(Small3DCNN(**kwargs))
        if backbone == "r3d_18":
            from torchvision.models.video import r3d_18
            return split_backbone(r3d_18(weights=None, **kwargs))
        raise ValueError(f"'backbone' must be 'small', 'r3d_18' or a module, got {backbone!r}")
    if not isinstance(backbone, nn.Module):
        raise TypeError(f"'backbone' must be a str or an nn.Module, got {type(backbone).__name__}")
    if isinstance(backbone, Small3DCNN):
        return backbone.early, backbone.late, backbone.out_channels
    from torchvision.models.video import VideoResNet
    if isinstance(backbone, VideoResNet):
        channels = backbone.fc.in_features
        return (nn.Sequential(backbone.stem, backbone.layer1, backbone.layer2),
                nn.Sequential(backbone.layer3, backbone.layer4), channels)
    channels = getattr(backbone, "out_channels", None)
    if not isinstance(channels, int):
        raise ValueError(f"'backbone' {type(backbone).__name__} must have an int 'out_channels' attribute (its "
                         "feature channels) to be used whole")
    return nn.Identity(), _Features(backbone), channels


class _Features(nn.Module):
    """A whole backbone as ``late``: its ``forward_features`` output's 5-D map (the first item of a tuple)."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, x: Tensor) -> Tensor:
        out = self.backbone.forward_features(x) if hasattr(self.backbone, "forward_features") else self.backbone(x)
        out = out[0] if isinstance(out, (tuple, list)) else out
        if out.dim() != 5:
            raise ValueError(f"the backbone's features must be 5-D [B, C, T, H, W], got {tuple(out.shape)}")
        return out
