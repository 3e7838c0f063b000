r"""A small FCOS detector for the objects of :class:`~videograph.datasets.SyntheticInteractions`, trained from
scratch on its frames and ground-truth boxes in a few CPU minutes (the demo's pixels-in detector).

The model is torchvision's :class:`~torchvision.models.detection.FCOS` on a four-layer CNN of stride 4 (one
feature level, one anchor point per cell of side 4 pixels), with a two-convolution head and no resizing of the
frames. It detects one class (label ``1``: "object"). Nothing is downloaded; the weights are a plain state dict
(:func:`save_shape_detector` / :func:`load_shape_detector`, read with ``weights_only=True``).
"""
import math
import os
import time
from typing import Dict, Tuple, Union

import torch
from torch import Tensor, nn
from tqdm import tqdm

from .detector import TorchvisionDetector

__all__ = ["ShapeBackbone", "shape_detector_model", "shape_detection_frames", "train_shape_detector",
           "save_shape_detector", "load_shape_detector", "detection_map50"]

#: Label of every synthetic object.
OBJECT_LABEL = 1


class ShapeBackbone(nn.Module):
    r"""Four 3x3 convolutions (strides 2, 1, 2, 1) with GroupNorm and ReLU: a stride-4 map of ``out_channels``.

    Args:
        out_channels (int, optional): feature channels (a multiple of 16, for FCOS's GroupNorm). (default: :obj:`32`)

    Shapes:
        - **input:** :math:`(B, 3, H, W)` float
        - **output:** :math:`(B, C, \lceil H / 4 \rceil, \lceil W / 4 \rceil)`
    """

    def __init__(self, out_channels: int = 32):
        super().__init__()
        if isinstance(out_channels, bool) or not isinstance(out_channels, int) or out_channels < 16 \
                or out_channels % 16:
            raise ValueError(f"'out_channels' must be a positive multiple of 16, got {out_channels!r}")
        self.out_channels = out_channels
        mid = out_channels // 2
        layers = []
        for c_in, c_out, stride in ((3, mid, 2), (mid, mid, 1), (mid, out_channels, 2),
                                    (out_channels, out_channels, 1)):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.GroupNorm(8, c_out), nn.ReLU()]
        self.layers = nn.Sequential(*layers)

    def forward(self, images: Tensor) -> Tensor:
        return self.layers(images)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.out_channels})"


def shape_detector_model(frame_size: Tuple[int, int] = (64, 64), *, channels: int = 32, score_thresh: float = 0.05,
                         detections_per_img: int = 32) -> nn.Module:
    r"""An untrained FCOS for synthetic objects in frames of ``frame_size`` (kept at their size: no resizing).

    Args:
        frame_size: ``(H, W)`` of the frames. Default ``(64, 64)``.
        channels: backbone and head width. Default ``32``.
        score_thresh: FCOS's own minimum score before NMS. Default ``0.05``.
        detections_per_img: most detections kept per frame. Default ``32``.
    """
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.fcos import FCOSHead

    height, width = (int(v) for v in frame_size)
    backbone = ShapeBackbone(channels)
    head = FCOSHead(channels, num_anchors=1, num_classes=OBJECT_LABEL + 1, num_convs=2)
    anchors = AnchorGenerator(sizes=((4,),), aspect_ratios=((1.0,),))
    return FCOS(backbone, num_classes=OBJECT_LABEL + 1, min_size=min(height, width), max_size=max(height, width),
                image_mean=[0.5, 0.5, 0.5], image_std=[0.25, 0.25, 0.25], anchor_generator=anchors, head=head,
                score_thresh=score_thresh, nms_thresh=0.5, detections_per_img=detections_per_img,
                topk_candidates=256)


def shape_detection_frames(num_videos: int, *, frames_per_video: int = 4, seed: int = 0, split: str = "train",
                           **dataset_options) -> Tuple[Tensor, list]:
    r"""Frames and ground-truth targets from :class:`~videograph.datasets.SyntheticInteractions`:
    ``frames_per_video`` evenly spaced frames of each of ``num_videos`` videos.

    Returns:
        ``uint8 [F, H, W, 3]`` frames and ``F`` target dicts ``{"boxes": [O, 4], "labels": [O]}``.
    """
    from ..datasets import SyntheticInteractions

    dataset = SyntheticInteractions(num_videos, seed=seed, split=split, **dataset_options)
    picks = torch.linspace(0, dataset.num_frames - 1, frames_per_video).round().long()
    frames, targets = [], []
    for video in dataset:
        frames.append(video.frames[picks])
        for t in picks.tolist():
            boxes = video.boxes[:, t]
            targets.append({"boxes": boxes, "labels": torch.full((boxes.size(0),), OBJECT_LABEL)})
    return torch.cat(frames), targets


def _flip(images: Tensor, targets: list, flip: Tensor, width: int) -> list:
    """Mirrors the chosen images left-right in place and returns the matching targets."""
    images[flip] = images[flip].flip(-1)
    out = []
    for target, f in zip(targets, flip.tolist()):
        boxes = target["boxes"]
        if f:
            boxes = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)
        out.append({"boxes": boxes, "labels": target["labels"]})
    return out


def train_shape_detector(num_videos: int = 400, *, frames_per_video: int = 4, steps: int = 600,
                         batch_size: int = 16, lr: float = 2e-3, seed: int = 0, channels: int = 32,
                         progress: bool = True, **dataset_options) -> Tuple[nn.Module, Dict[str, float]]:
    r"""Trains :func:`shape_detector_model` on synthetic frames and their ground-truth boxes.

    AdamW with a cosine schedule, random left-right flips and brightness changes; the frames, the initialisation
    and the batches all follow ``seed``.

    Args:
        num_videos: training videos (of the ``"train"`` split of ``seed``). Default ``400``.
        frames_per_video: frames taken from each. Default ``4``.
        steps: optimiser steps. Default ``600``.
        batch_size: frames per step. Default ``16``.
        lr: peak learning rate. Default ``2e-3``.
        seed: seed of the data and the training. Default ``0``.
        channels: model width. Default ``32``.
        progress: show a tqdm bar. Default ``True``.
        **dataset_options: passed to :class:`~videograph.datasets.SyntheticInteractions` (e.g. ``frame_size``).

    Returns:
        The model (in eval mode) and ``{"seconds": training wall time, "loss": mean loss of the last 10 %}``.
    """
    for name, value in (("num_videos", num_videos), ("frames_per_video", frames_per_video), ("steps", steps),
                        ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"'{name}' must be a positive int, got {value!r}")
    start = time.perf_counter()
    frames, targets = shape_detection_frames(num_videos, frames_per_video=frames_per_video, seed=seed,
                                             **dataset_options)
    height, width = frames.shape[1:3]
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = shape_detector_model((height, width), channels=channels)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    warmup = max(steps // 20, 1)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0))))
    model.train()
    losses = []
    for _ in tqdm(range(steps), desc="train detector", disable=not progress, leave=False):
        pick = torch.randint(frames.size(0), (batch_size,), generator=generator)
        images = frames[pick].permute(0, 3, 1, 2).float().div_(255.0)
        images = (images * (0.8 + 0.4 * torch.rand(batch_size, 1, 1, 1, generator=generator))).clamp_(0, 1)
        flip = torch.rand(batch_size, generator=generator) < 0.5
        batch_targets = _flip(images, [targets[i] for i in pick.tolist()], flip, width)
        loss_parts = model(list(images), batch_targets)
        loss = sum(loss_parts.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
    model.eval()
    tail = losses[-max(steps // 10, 1):]
    return model, {"seconds": time.perf_counter() - start, "loss": sum(tail) / len(tail)}


def save_shape_detector(model: nn.Module, path: Union[str, os.PathLike], frame_size: Tuple[int, int],
                        channels: int = 32) -> None:
    """Writes the model's state dict with its ``frame_size`` and ``channels`` (tensors and ints only)."""
    directory = os.path.dirname(os.path.abspath(os.fspath(path)))
    os.makedirs(directory, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "frame_size": list(frame_size), "channels": channels},
               os.fspath(path))


def load_shape_detector(path: Union[str, os.PathLike], *, score_threshold: float = 0.3, batch_size: int = 32
                        ) -> TorchvisionDetector:
    """Reads a file of :func:`save_shape_detector` (``weights_only=True``) as a :class:`TorchvisionDetector`."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"shape detector file not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not {"state_dict", "frame_size", "channels"} <= set(state):
        raise ValueError(f"'{path}' is not a file of save_shape_detector")
    model = shape_detector_model(tuple(state["frame_size"]), channels=int(state["channels"]))
    model.load_state_dict(state["state_dict"])
    return TorchvisionDetector(model.eval(), score_threshold=score_threshold, batch_size=batch_size)


@torch.no_grad()
def detection_map50(detector, frames: Tensor, targets: list) -> float:
    """AP at IoU 0.5 of ``detector`` on ``frames`` against ``targets``, by torchmetrics' ``MeanAveragePrecision``
    (pycocotools backend). Needs the ``test`` extra (torchmetrics, pycocotools)."""
    from torchmetrics.detection import MeanAveragePrecision

    metric = MeanAveragePrecision(iou_thresholds=[0.5], backend="pycocotools")
    metric.update(detector(frames), [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets])
    return float(metric.compute()["map_50"])
