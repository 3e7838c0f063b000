r"""The Local and Global Diffusion block, its P3D-A local transformation and the kernelized classifier of
`"Learning Spatio-Temporal Representation with Local and Global Diffusion" <https://arxiv.org/abs/1906.05571>`_
(LGD, Qiu et al., CVPR 2019, sec. 3 and 4)."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .tensor_sketch import TensorSketch, signed_sqrt_l2

__all__ = ["VARIANTS", "LowRankLinear", "P3DBottleneck", "LGDBlock", "KernelizedClassifier", "global_pool"]

#: The block variants of LGD's table 2: no global path (the P3D / TSN baseline), block v1 (eq. 8), block v2
#: (eq. 9, gating) and the LGD block (eq. 2-3).
VARIANTS = ("p3d", "v1", "v2", "lgd")


def _positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"'{name}' must be a positive int, got {value!r}")
    return value


def global_pool(x: Tensor) -> Tensor:
    r""":math:`\mathcal{P}`, the global average over every location: :math:`(B, C, *) \to (B, C)`."""
    return x.flatten(2).mean(-1)


def _broadcast(v: Tensor, x: Tensor) -> Tensor:
    # US: duplicates a [B, C] vector to every location of x [B, C, *].
    return v.view(*v.shape, *([1] * (x.dim() - 2)))


class LowRankLinear(nn.Module):
    r"""A projection factored as :math:`\mathbf{W} = \mathbf{W}_1 \mathbf{W}_2` with
    :math:`\mathbf{W}_1 \in \mathbb{R}^{C_{out} \times \hat{C}}`, :math:`\mathbf{W}_2 \in \mathbb{R}^{\hat{C}
    \times C_{in}}` and no bias: :math:`\hat{C} (C_{in} + C_{out})` parameters instead of :math:`C_{in} C_{out}`.

    Args:
        in_channels (int): :math:`C_{in}`.
        out_channels (int): :math:`C_{out}`.
        rank (int): :math:`\hat{C}`.
        zero_init (bool, optional): start from :math:`\mathbf{W} = 0` (:math:`\mathbf{W}_1 = 0`).
            (default: :obj:`False`, Xavier)
    """

    def __init__(self, in_channels: int, out_channels: int, rank: int, zero_init: bool = False):
        super().__init__()
        self.in_channels, self.out_channels = _positive("in_channels", in_channels), _positive("out_channels",
                                                                                               out_channels)
        self.rank, self.zero_init = _positive("rank", rank), zero_init
        self.down = nn.Linear(in_channels, rank, bias=False)     # W_2
        self.up = nn.Linear(rank, out_channels, bias=False)      # W_1
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.down.weight)
        if self.zero_init:
            nn.init.zeros_(self.up.weight)
        else:
            nn.init.xavier_uniform_(self.up.weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.up(self.down(x))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, rank={self.rank})"


class P3DBottleneck(nn.Module):
    r"""The ResNet bottleneck with P3D-A's factored convolution (Qiu et al., ICCV 2017): a :math:`1 \times 1
    \times 1` reduction, a :math:`1 \times 3 \times 3` spatial then a :math:`3 \times 1 \times 1` temporal
    convolution, a :math:`1 \times 1 \times 1` expansion, each with BatchNorm (ReLU between), plus the shortcut.
    It is the local transformation :math:`\mathcal{F}` of LGD-3D; it returns the sum *before* the final ReLU,
    which :class:`LGDBlock` applies after adding the global residual. With ``temporal=False`` it is the plain 2D
    bottleneck shared over frames (LGD-2D's :math:`\mathcal{F}`, TSN).

    Args:
        in_channels (int): input channels.
        planes (int): the bottleneck width; the output has ``planes * expansion`` channels.
        stride (int, optional): the spatial stride (of the :math:`1 \times 3 \times 3` convolution and the
            shortcut). (default: :obj:`1`)
        expansion (int, optional): output / bottleneck width. (default: :obj:`4`)
        temporal (bool, optional): include the :math:`3 \times 1 \times 1` temporal convolution.
            (default: :obj:`True`)

    Shapes:
        - **input:** :math:`(B, C_{in}, T, H, W)`
        - **output:** :math:`(B, \text{planes} \cdot \text{expansion}, T, \lceil H / s \rceil, \lceil W / s
          \rceil)`
    """

    def __init__(self, in_channels: int, planes: int, stride: int = 1, expansion: int = 4, temporal: bool = True):
        super().__init__()
        self.in_channels, self.planes = _positive("in_channels", in_channels), _positive("planes", planes)
        self.stride, self.expansion, self.temporal = _positive("stride", stride), _positive("expansion",
                                                                                            expansion), temporal
        self.out_channels = planes * expansion
        self.conv1 = nn.Conv3d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        if temporal:
            self.conv_t = nn.Conv3d(planes, planes, (3, 1, 1), padding=(1, 0, 0), bias=False)
            self.bn_t = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, self.out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(self.out_channels)
        if stride != 1 or in_channels != self.out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv3d(in_channels, self.out_channels, 1, stride=(1, stride, stride), bias=False),
                nn.BatchNorm3d(self.out_channels))
        else:
            self.shortcut = nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm3d):
                module.reset_parameters()

    def init_temporal_identity(self) -> None:
        r"""Sets the temporal convolution to the identity map (its centre tap :math:`\mathbf{I}`, the rest 0),
        LGD's initialisation when the spatial convolutions come from a pretrained 2D network (sec. 5.2)."""
        if not self.temporal:
            raise ValueError("this bottleneck has no temporal convolution (temporal=False)")
        with torch.no_grad():
            self.conv_t.weight.zero_()
            self.conv_t.weight[:, :, 1, 0, 0] = torch.eye(self.planes)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        if self.temporal:
            out = F.relu(self.bn_t(self.conv_t(out)))
        return self.bn3(self.conv3(out)) + self.shortcut(x)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, stride={self.stride}, "
                f"temporal={self.temporal})")


class LGDBlock(nn.Module):
    r"""The Local and Global Diffusion block (LGD, eq. 1-3): a local feature map and a global vector updated in
    parallel, each from the other,

    .. math::
        \mathbf{x}_l &= \mathrm{ReLU}\big(\mathcal{F}(\mathbf{x}_{l-1}) + \mathcal{US}(\mathbf{W}^{x,g}
        \mathbf{g}_{l-1})\big) \\
        \mathbf{g}_l &= \mathrm{ReLU}\big(\mathbf{W}^{g,x} \mathcal{P}(\mathbf{x}_l) + \mathbf{W}^{g,g}
        \mathbf{g}_{l-1}\big)

    with :math:`\mathcal{P}` the global average pool, :math:`\mathcal{US}` the broadcast to every location and
    each :math:`\mathbf{W}` low rank, :math:`\mathbf{W}_1 \mathbf{W}_2` of rank :math:`\hat{C} = C / 16`
    (:math:`3 C^2 / 8` extra parameters for :math:`C` channels in and out); :math:`\mathbf{W}^{x,g}` starts at
    zero, so the block starts as its local transformation alone. The ``variant`` selects a row of LGD's table 2:
    ``"p3d"`` (no global path: :math:`\mathbf{x}_l = \mathrm{ReLU}(\mathcal{F}(\mathbf{x}_{l-1}))`, and
    :math:`\mathbf{g}_l = \mathcal{P}(\mathbf{x}_l)` is only read out), ``"v1"`` (eq. 8,
    :math:`\mathbf{g}_l = \mathcal{P}(\mathbf{x}_l)`), ``"v2"`` (eq. 9, the global vector gates the channels:
    :math:`\mathbf{x}_l = \mathrm{ReLU}(\mathcal{F}(\mathbf{x}_{l-1}) \odot \mathcal{US}(\sigma(\mathbf{W}^{x,g}
    \mathbf{g}_{l-1})))`) or ``"lgd"``.

    Args:
        local (torch.nn.Module): :math:`\mathcal{F}`, mapping :math:`(B, C_{in}, *)` to :math:`(B, C_{out}, *)`
            before its final activation (e.g. :class:`P3DBottleneck`).
        in_channels (int): :math:`C_{in}`, the channels of :math:`\mathbf{x}_{l-1}` and :math:`\mathbf{g}_{l-1}`.
        out_channels (int): :math:`C_{out}`, the channels of :math:`\mathbf{x}_l` and :math:`\mathbf{g}_l`.
        variant (str, optional): one of :obj:`VARIANTS`. (default: :obj:`"lgd"`)
        rank_ratio (int, optional): :math:`C_{out} / \hat{C}`. (default: :obj:`16`)

    Shapes:
        - **input:** :math:`\mathbf{x}_{l-1}` :math:`(B, C_{in}, *)`, :math:`\mathbf{g}_{l-1}` :math:`(B, C_{in})`
        - **output:** :math:`\mathbf{x}_l` :math:`(B, C_{out}, *')`, :math:`\mathbf{g}_l` :math:`(B, C_{out})`
    """

    def __init__(self, local: nn.Module, in_channels: int, out_channels: int, variant: str = "lgd",
                 rank_ratio: int = 16):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"'variant' must be one of {VARIANTS}, got {variant!r}")
        self.local = local
        self.in_channels, self.out_channels = _positive("in_channels", in_channels), _positive("out_channels",
                                                                                               out_channels)
        self.variant, self.rank_ratio = variant, _positive("rank_ratio", rank_ratio)
        rank = max(1, out_channels // rank_ratio)
        self.w_xg = LowRankLinear(in_channels, out_channels, rank, zero_init=True) if variant != "p3d" else None
        if variant in ("v2", "lgd"):
            self.w_gx = LowRankLinear(out_channels, out_channels, rank)
            self.w_gg = LowRankLinear(in_channels, out_channels, rank)
        else:
            self.w_gx = self.w_gg = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in (self.w_xg, self.w_gx, self.w_gg):
            if module is not None:
                module.reset_parameters()

    def local_update(self, x: Tensor, g: Optional[Tensor]) -> Tensor:
        """Global-to-local diffusion (eq. 2; eq. 9 for ``"v2"``)."""
        out = self.local(x)
        if self.variant == "p3d":
            return F.relu(out)
        if g is None or g.shape != (x.size(0), self.in_channels):
            raise ValueError(f"'g' must have shape {(x.size(0), self.in_channels)}, got "
                             f"{None if g is None else tuple(g.shape)}")
        if self.variant == "v2":
            return F.relu(out * _broadcast(torch.sigmoid(self.w_xg(g)), out))
        return F.relu(out + _broadcast(self.w_xg(g), out))

    def global_update(self, x: Tensor, g: Optional[Tensor]) -> Tensor:
        """Local-to-global diffusion (eq. 3; eq. 8 for ``"v1"``) from the new local map ``x``."""
        pooled = global_pool(x)
        if self.w_gx is None:
            return pooled
        return F.relu(self.w_gx(pooled) + self.w_gg(g))

    def forward(self, x: Tensor, g: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        x = self.local_update(x, g)
        return x, self.global_update(x, g)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, variant={self.variant})"


class KernelizedClassifier(nn.Module):
    r"""LGD's local and global combination classifier (eq. 4-5): the bilinear kernel on both paths, approximated
    by a Tensor Sketch :math:`\varphi`, then a linear layer,

    .. math::
        \phi(\{\mathbf{x}_L, \mathbf{g}_L\}) = \Big[\frac{1}{N} \sum_i \varphi(\mathbf{x}_L^i),\;
        \varphi(\mathbf{g}_L)\Big], \qquad \text{logits} = \mathbf{W}_c \phi + \mathbf{b}

    where :math:`\varphi(\mathbf{v}) = \mathrm{TS}(\mathbf{v}, \mathbf{v})` and :math:`N` locations; each half is
    power- and L2-normalised (:func:`~videograph.nn.tensor_sketch.signed_sqrt_l2`), as in compact bilinear
    pooling.

    Args:
        in_channels (int): :math:`C`, the channels of :math:`\mathbf{x}_L` and :math:`\mathbf{g}_L`.
        num_classes (int): output logits.
        sketch_channels (int, optional): :math:`d` of :math:`\varphi`. (default: :obj:`8192`)
        generator (torch.Generator, optional): draws the sketch's hashes. (default: :obj:`None`)

    Shapes:
        - **input:** :math:`\mathbf{x}_L` :math:`(B, C, *)`, :math:`\mathbf{g}_L` :math:`(B, C)`
        - **output:** :math:`(B, \text{num\_classes})`
    """

    def __init__(self, in_channels: int, num_classes: int, sketch_channels: int = 8192,
                 generator: Optional[torch.Generator] = None):
        super().__init__()
        self.in_channels = _positive("in_channels", in_channels)
        self.num_classes = _positive("num_classes", num_classes)
        self.sketch_channels = _positive("sketch_channels", sketch_channels)
        self.sketch = TensorSketch(in_channels, sketch_channels, generator=generator)
        self.fc = nn.Linear(2 * sketch_channels, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.fc.reset_parameters()

    def features(self, x: Tensor, g: Tensor) -> Tensor:
        """:math:`\\phi(\\{\\mathbf{x}_L, \\mathbf{g}_L\\})`, ``[B, 2 d]``."""
        if x.size(1) != self.in_channels or g.shape != (x.size(0), self.in_channels):
            raise ValueError(f"'x' must be [B, {self.in_channels}, ...] and 'g' [B, {self.in_channels}], got "
                             f"{tuple(x.shape)} and {tuple(g.shape)}")
        local = self.sketch(x.flatten(2).transpose(1, 2)).mean(1)
        return torch.cat([signed_sqrt_l2(local), signed_sqrt_l2(self.sketch(g))], dim=-1)

    def forward(self, x: Tensor, g: Tensor) -> Tensor:
        return self.fc(self.features(x, g))

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, {self.num_classes}, "
                f"sketch_channels={self.sketch_channels})")
