r"""Tensor Sketch, the compact bilinear pooling of LGD's kernelized classifier and MUSLE's Tubelet Proposal
Network (Pham & Pagh, KDD 2013; Gao et al., CVPR 2016)."""
from typing import Optional

import torch
from torch import Tensor, nn

__all__ = ["TensorSketch", "count_sketch", "tensor_sketch", "signed_sqrt_l2"]


def count_sketch(x: Tensor, index: Tensor, sign: Tensor, out_channels: int) -> Tensor:
    r"""The count sketch :math:`\mathrm{CS}(\mathbf{x})_k = \sum_{i : h_i = k} s_i x_i` over the last dimension,
    a scatter-add of the signed features into their hashed slots (never a dense :math:`C \times d` matrix).

    Shapes:
        - **x:** :math:`(*, C)`; **index:** :math:`(C)` long in :math:`[0, d)`; **sign:** :math:`(C)` of
          :math:`\pm 1`
        - **output:** :math:`(*, d)`
    """
    out = x.new_zeros(*x.shape[:-1], out_channels)
    return out.index_add(-1, index, x * sign.to(x.dtype))


def tensor_sketch(x: Tensor, y: Tensor, index1: Tensor, sign1: Tensor, index2: Tensor, sign2: Tensor,
                  out_channels: int) -> Tensor:
    r"""Tensor Sketch of the outer product :math:`\mathbf{x} \otimes \mathbf{y}` over the last dimension:
    the circular convolution of two count sketches, computed in the Fourier domain,

    .. math::
        \mathrm{TS}(\mathbf{x}, \mathbf{y}) = \mathcal{F}^{-1}\big(\mathcal{F}(\mathrm{CS}_1 \mathbf{x})
        \odot \mathcal{F}(\mathrm{CS}_2 \mathbf{y})\big),

    which equals the count sketch of :math:`\mathbf{x} \otimes \mathbf{y}` with the hash
    :math:`(h_{1,i} + h_{2,j}) \bmod d` and the sign :math:`s_{1,i} s_{2,j}`.

    Shapes:
        - **x:** :math:`(*, C_1)`; **y:** :math:`(*, C_2)` (leading dimensions broadcast)
        - **output:** :math:`(*, d)`, :math:`d` = ``out_channels``
    """
    d = out_channels
    fx = torch.fft.rfft(count_sketch(x, index1, sign1, d), n=d, dim=-1)
    fy = torch.fft.rfft(count_sketch(y, index2, sign2, d), n=d, dim=-1)
    return torch.fft.irfft(fx * fy, n=d, dim=-1)


def signed_sqrt_l2(z: Tensor, eps: float = 1e-8) -> Tensor:
    r"""The power normalisation of compact bilinear features, a signed square root then L2 over the last
    dimension: :math:`\mathrm{sign}(z)\,(\sqrt{|z| + \epsilon} - \sqrt{\epsilon})`. The :math:`\epsilon` inside
    the root bounds the gradient at 0 by :math:`1 / (2\sqrt{\epsilon})` (the plain root's is infinite), and
    subtracting :math:`\sqrt{\epsilon}` keeps the map continuous and odd."""
    z = torch.sign(z) * (torch.sqrt(z.abs() + eps) - eps ** 0.5)
    return torch.nn.functional.normalize(z, dim=-1)


class TensorSketch(nn.Module):
    r"""Compact bilinear pooling by Tensor Sketch (`"Compact Bilinear Pooling"
    <https://arxiv.org/abs/1511.06062>`_, Gao et al., CVPR 2016; Pham & Pagh, KDD 2013): a :math:`d`-dimensional
    random projection of the outer product :math:`\mathbf{x} \otimes \mathbf{y}` whose inner products estimate
    the bilinear kernel without bias, :math:`\mathbb{E}\langle \mathrm{TS}(\mathbf{x}, \mathbf{y}),
    \mathrm{TS}(\mathbf{x}', \mathbf{y}')\rangle = \langle \mathbf{x}, \mathbf{x}'\rangle
    \langle \mathbf{y}, \mathbf{y}'\rangle`:

    .. math::
        \mathrm{TS}(\mathbf{x}, \mathbf{y}) = \mathrm{irfft}\big(\mathrm{rfft}(\mathrm{CS}_1 \mathbf{x}, d)
        \odot \mathrm{rfft}(\mathrm{CS}_2 \mathbf{y}, d), d\big), \qquad
        \mathrm{CS}_m(\mathbf{x})_k = \sum_{i : h_{m,i} = k} s_{m,i} x_i

    with two independent fixed hashes :math:`h_{m,i} \sim \mathcal{U}\{0, \ldots, d - 1\}`,
    :math:`s_{m,i} \sim \pm 1` (buffers ``index1``, ``sign1``, ``index2``, ``sign2``). LGD's kernelized classifier
    (Qiu et al., CVPR 2019, eq. 4-5) applies it to :math:`(\mathbf{x}_i, \mathbf{x}_i)`; MUSLE's TPN to the RoI
    features of one box in frames :math:`t` and :math:`t + 1`.

    Args:
        in_channels (int): :math:`C_1`, the size of :math:`\mathbf{x}`.
        out_channels (int): :math:`d`, the sketch size.
        in_channels2 (int, optional): :math:`C_2`, the size of :math:`\mathbf{y}`; :obj:`None` means
            ``in_channels``. (default: :obj:`None`)
        normalize (bool, optional): apply the signed square root (:math:`\epsilon` inside the root) and L2
            normalisation to the output. (default: :obj:`False`)
        eps (float, optional): the :math:`\epsilon` of the signed square root. (default: :obj:`1e-8`)
        generator (torch.Generator, optional): draws the hashes. (default: :obj:`None`, the global RNG)

    Shapes:
        - **x:** :math:`(*, C_1)`; **y:** :math:`(*, C_2)`, :obj:`None` meaning :math:`\mathbf{y} = \mathbf{x}`
        - **output:** :math:`(*, d)`
    """

    def __init__(self, in_channels: int, out_channels: int, *, in_channels2: Optional[int] = None,
                 normalize: bool = False, eps: float = 1e-8, generator: Optional[torch.Generator] = None):
        super().__init__()
        in_channels2 = in_channels if in_channels2 is None else in_channels2
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("in_channels2", in_channels2)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"'{name}' must be a positive int, got {value!r}")
        if not eps > 0:
            raise ValueError(f"'eps' must be positive, got {eps!r}")
        self.in_channels, self.in_channels2, self.out_channels = in_channels, in_channels2, out_channels
        self.normalize, self.eps = bool(normalize), float(eps)
        for m, size in ((1, in_channels), (2, in_channels2)):
            self.register_buffer(f"index{m}", torch.empty(size, dtype=torch.long))
            self.register_buffer(f"sign{m}", torch.empty(size))
        self.reset_parameters(generator)

    def reset_parameters(self, generator: Optional[torch.Generator] = None) -> None:
        """Draws both hashes afresh (from ``generator`` when given)."""
        for m, size in ((1, self.in_channels), (2, self.in_channels2)):
            index = torch.randint(self.out_channels, (size,), generator=generator)
            sign = torch.randint(2, (size,), generator=generator).float() * 2 - 1
            getattr(self, f"index{m}").copy_(index)
            getattr(self, f"sign{m}").copy_(sign)

    def forward(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        if y is None:
            if self.in_channels2 != self.in_channels:
                raise ValueError(f"'y' is required: in_channels2={self.in_channels2} differs from "
                                 f"in_channels={self.in_channels}")
            y = x
        if x.size(-1) != self.in_channels:
            raise ValueError(f"'x' must have {self.in_channels} channels in its last dimension, got "
                             f"{tuple(x.shape)}")
        if y.size(-1) != self.in_channels2:
            raise ValueError(f"'y' must have {self.in_channels2} channels in its last dimension, got "
                             f"{tuple(y.shape)}")
        out = tensor_sketch(x, y, self.index1, self.sign1, self.index2, self.sign2, self.out_channels)
        return signed_sqrt_l2(out, self.eps) if self.normalize else out

    def __repr__(self) -> str:
        second = f", in_channels2={self.in_channels2}" if self.in_channels2 != self.in_channels else ""
        return (f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}{second}, "
                f"normalize={self.normalize})")
