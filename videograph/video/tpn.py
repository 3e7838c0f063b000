r"""MUSLE's Tubelet Proposal Network (Li et al., CVPR 2021, sec. 3.1): a learned linker that regresses each box's
movement from frame :math:`t` to :math:`t + 1` from the bilinear kernel, approximated by Tensor Sketch, between
the RoI features of the same box location in both frames, and rolls the boxes out over the clip."""
import os
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import roi_align
from tqdm import tqdm

from ..nn.encoders import RoIFeatures, SmallCNN
from ..nn.tensor_sketch import TensorSketch
from .detector import Detections
from .linking import Linker, Tubes

__all__ = ["TubeletProposalNetwork", "fit_tpn"]


def _positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"'{name}' must be a positive int, got {value!r}")
    return value


def _enlarge(boxes: Tensor, factor: float) -> Tensor:
    centre, half = (boxes[..., :2] + boxes[..., 2:]) / 2, (boxes[..., 2:] - boxes[..., :2]) / 2 * factor
    return torch.cat([centre - half, centre + half], dim=-1)


class TubeletProposalNetwork(Linker):
    r"""The Tubelet Proposal Network of MUSLE (sec. 3.1, after Kang et al., CVPR 2017) as a
    :class:`~videograph.video.Linker`: the top-``M`` detections of the clip's first frame seed the tubelets and
    each box :math:`b_t` is moved to the next frame by

    .. math::
        \Delta_t = \mathrm{MLP}\big(\mathrm{TS}(\mathrm{vec}\,\mathbf{F}_t, \mathrm{vec}\,\mathbf{F}_{t+1})\big),
        \qquad b_{t+1} = \mathrm{decode}(\Delta_t, b_t)

    where :math:`\mathbf{F}_t, \mathbf{F}_{t+1} \in \mathbb{R}^{d \times w \times h}` are RoIAlign
    (:func:`torchvision.ops.roi_align`) of the *same* location (:math:`b_t` enlarged by ``context``, so the
    object stays inside while it moves) on the backbone's maps of frames :math:`t` and :math:`t + 1`,
    :math:`\mathrm{TS}` the :class:`~videograph.nn.TensorSketch` of their outer product (the bilinear kernel
    between all location and channel pairs, eq. 1, with signed square root and L2) and :math:`\Delta` Faster R-CNN
    box deltas (:class:`torchvision.models.detection._utils.BoxCoder`, weights ``(10, 10, 5, 5)``). The last
    layer starts at zero, so an untrained network keeps every box still. Train it with :meth:`loss` (smooth L1 on
    the deltas to the ground truth) or :func:`fit_tpn`.

    Args:
        backbone (torch.nn.Module, optional): per-frame network ``[F, 3, H, W] -> [F, C, h, w]`` with an
            ``out_channels`` attribute. (default: :class:`~videograph.nn.encoders.SmallCNN` ``(3, 32)``)
        roi_size (int, optional): RoIAlign's output side :math:`w = h`. (default: :obj:`4`)
        context (float, optional): the RoI is the box scaled by this factor about its centre. (default: ``2.0``)
        sketch_channels (int, optional): the sketch size. (default: :obj:`2048`)
        hidden (int, optional): the MLP's hidden width. (default: :obj:`256`)
        weights (str or dict, optional): a state dict of this network (a path is read with
            ``torch.load(..., weights_only=True)``). (default: :obj:`None`)
        generator (torch.Generator, optional): draws the sketch's hashes. (default: :obj:`None`)

    Shapes:
        - **frames:** ``uint8`` :math:`(T, H, W, 3)`; **detections:** :math:`T` dicts ``boxes [K, 4]``,
          ``scores [K]``, ``labels [K]``
        - **output:** :class:`~videograph.video.Tubes` with ``boxes`` :math:`(M, T, 4)`
    """

    def __init__(self, backbone: Optional[nn.Module] = None, *, roi_size: int = 4, context: float = 2.0,
                 sketch_channels: int = 2048, hidden: int = 256,
                 weights: Optional[Union[str, os.PathLike, Dict[str, Tensor]]] = None,
                 generator: Optional[torch.Generator] = None):
        super().__init__()
        self.encoder = RoIFeatures(SmallCNN(3, 32) if backbone is None else backbone)
        self.roi_size, self.hidden = _positive("roi_size", roi_size), _positive("hidden", hidden)
        if not context >= 1.0:
            raise ValueError(f"'context' must be at least 1, got {context!r}")
        self.context = float(context)
        channels = self.encoder.out_channels * roi_size * roi_size
        self.sketch = TensorSketch(channels, _positive("sketch_channels", sketch_channels), normalize=True,
                                   generator=generator)
        self.regressor = nn.Sequential(nn.Linear(sketch_channels, hidden), nn.ReLU(), nn.Linear(hidden, 4))
        self.box_coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
        self.reset_parameters()
        if weights is not None:
            if not isinstance(weights, dict):
                if not os.path.isfile(weights):
                    raise FileNotFoundError(f"'weights': no state-dict file {os.fspath(weights)!r}")
                weights = torch.load(weights, map_location="cpu", weights_only=True)
            self.load_state_dict(weights)

    def reset_parameters(self) -> None:
        for layer in self.regressor:
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()
        nn.init.zeros_(self.regressor[-1].weight)
        nn.init.zeros_(self.regressor[-1].bias)

    def deltas(self, maps: Tensor, boxes: Tensor, frame: Tensor, frame_size) -> Tensor:
        r"""Box deltas from frame ``frame[n]`` to ``frame[n] + 1`` for each box ``boxes[n]`` (``[N, 4]``), on
        the feature ``maps`` ``[T, C, h, w]`` of the clip."""
        scale = maps.size(-1) / frame_size[1]
        rois = _enlarge(boxes, self.context)
        pooled = []
        for offset in (0, 1):
            index = (frame + offset).to(boxes.dtype)[:, None]
            pooled.append(roi_align(maps, torch.cat([index, rois], 1), self.roi_size, spatial_scale=scale,
                                    sampling_ratio=2, aligned=True).flatten(1))
        return self.regressor(self.sketch(pooled[0], pooled[1]))

    def _move(self, deltas: Tensor, boxes: Tensor, frame_size) -> Tensor:
        moved = self.box_coder.decode_single(deltas, boxes)
        height, width = frame_size
        limit = boxes.new_tensor([width, height, width, height])
        moved = torch.minimum(moved.clamp(min=0), limit)
        return torch.cat([moved[:, :2], torch.maximum(moved[:, 2:], moved[:, :2] + 1e-3)], dim=1)

    def rollout(self, frames: Tensor, boxes: Tensor) -> Tensor:
        r"""The tubelets ``[M, T, 4]`` of the first-frame ``boxes`` ``[M, 4]`` over ``frames`` (``uint8
        [T, H, W, 3]``): one backbone pass over the clip, then one regression step per frame, all boxes at once."""
        maps = self.encoder.feature_map(frames)
        size = (frames.size(1), frames.size(2))
        out = [boxes.float()]
        for t in range(frames.size(0) - 1):
            frame = torch.full((boxes.size(0),), t, dtype=torch.long)
            out.append(self._move(self.deltas(maps, out[-1], frame, size), out[-1], size))
        return torch.stack(out, dim=1)

    def loss(self, frames: Tensor, boxes: Tensor, *, jitter: float = 0.05,
             generator: Optional[torch.Generator] = None) -> Tensor:
        r"""Smooth L1 between the predicted deltas and the ground-truth deltas from :math:`b_t` to
        :math:`b^{gt}_{t+1}` over every object and step of one clip; :math:`b_t` is the ground truth with each
        edge jittered by ``jitter`` times the box side (so the network learns to correct a drifted box).

        Args:
            frames: ``uint8 [T, H, W, 3]``.
            boxes: ``[O, T, 4]`` ground-truth ``xyxy`` boxes of every object in every frame.
        """
        if boxes.dim() != 3 or boxes.size(1) != frames.size(0) or boxes.size(-1) != 4:
            raise ValueError(f"'boxes' must be [O, {frames.size(0)}, 4], got {tuple(boxes.shape)}")
        num, length = boxes.shape[:2]
        maps = self.encoder.feature_map(frames)
        size = (frames.size(1), frames.size(2))
        start, target = boxes[:, :-1].reshape(-1, 4), boxes[:, 1:].reshape(-1, 4)
        side = (start[:, 2:] - start[:, :2]).repeat(1, 2)
        start = start + jitter * side * torch.randn(start.shape, generator=generator)
        start = torch.cat([start[:, :2], torch.maximum(start[:, 2:], start[:, :2] + 1.0)], 1)
        frame = torch.arange(length - 1).repeat(num)
        predicted = self.deltas(maps, start, frame, size)
        return F.smooth_l1_loss(predicted, self.box_coder.encode_single(target, start), beta=1.0 / 9)

    def forward(self, frames: Tensor, detections: List[Detections], top_m: int) -> Tubes:
        first = detections[0]
        seeds = torch.argsort(first["scores"], descending=True, stable=True)[:top_m]
        boxes = self.rollout(frames, first["boxes"][seeds]) if seeds.numel() else \
            torch.zeros(0, frames.size(0), 4)
        matched = torch.zeros(seeds.numel(), frames.size(0), dtype=torch.bool)
        matched[:, 0] = True
        return Tubes(boxes, matched, first["scores"][seeds].float())

    def extra_repr(self) -> str:
        return (f"roi_size={self.roi_size}, context={self.context}, sketch_channels={self.sketch.out_channels}, "
                f"hidden={self.hidden}")


def fit_tpn(model: TubeletProposalNetwork, videos: Sequence, *, epochs: int = 3, lr: float = 1e-3,
            jitter: float = 0.05, generator: Optional[torch.Generator] = None, progress: bool = True) -> List[float]:
    r"""Trains ``model`` on ``videos`` (items with ``frames`` ``uint8 [T, H, W, 3]`` and ground-truth ``boxes``
    ``[O, T, 4]``, e.g. :class:`~videograph.datasets.SyntheticInteractions`) with Adam, one clip per step, in a
    seeded order. Returns the mean loss of every epoch."""
    _positive("epochs", epochs)
    generator = torch.Generator().manual_seed(0) if generator is None else generator
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    history = []
    model.train()
    for _ in tqdm(range(epochs), desc="tpn", disable=not progress, leave=False):
        total = 0.0
        for index in torch.randperm(len(videos), generator=generator).tolist():
            video = videos[index]
            loss = model.loss(video.frames, video.boxes, jitter=jitter, generator=generator)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
        history.append(total / len(videos))
    model.eval()
    return history
