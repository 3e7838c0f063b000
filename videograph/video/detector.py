r"""Detectors: any callable mapping ``uint8`` frames ``[N, H, W, 3]`` to torchvision's detection output (a list of
``N`` dicts ``{"boxes": [K, 4] xyxy pixels, "scores": [K], "labels": [K]}``), and :class:`TorchvisionDetector`,
which adapts any :mod:`torchvision.models.detection` model to that contract."""
import os
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor, nn

__all__ = ["Detections", "Detector", "check_frames", "check_detections", "TorchvisionDetector"]

#: One frame's detections: ``{"boxes": [K, 4] float xyxy pixels, "scores": [K] float, "labels": [K] long}``.
Detections = Dict[str, Tensor]
#: The detector contract: ``uint8 [N, H, W, 3]`` frames in, ``N`` :data:`Detections` out.
Detector = Callable[[Tensor], List[Detections]]


def check_frames(frames: Tensor, name: str = "frames") -> Tensor:
    """Checks that ``frames`` is a ``uint8 [N, H, W, 3]`` tensor and returns it."""
    if not isinstance(frames, Tensor):
        raise TypeError(f"'{name}' must be a uint8 tensor [N, H, W, 3], got {type(frames).__name__}")
    if frames.dtype != torch.uint8 or frames.dim() != 4 or frames.size(-1) != 3:
        raise ValueError(f"'{name}' must be a uint8 tensor [N, H, W, 3], got {frames.dtype} "
                         f"{tuple(frames.shape)}")
    return frames


def check_detections(detections: Sequence[Detections], num_frames: int, name: str = "detections"
                     ) -> List[Detections]:
    """Validates a detector's output for ``num_frames`` frames and returns it as CPU tensors (boxes and scores
    float32, labels int64)."""
    if not isinstance(detections, (list, tuple)) or len(detections) != num_frames:
        got = len(detections) if isinstance(detections, (list, tuple)) else type(detections).__name__
        raise ValueError(f"'{name}' must be a list of {num_frames} dicts (one per frame), got {got}")
    result = []
    for t, item in enumerate(detections):
        if not isinstance(item, dict) or not {"boxes", "scores"} <= set(item):
            raise ValueError(f"'{name}[{t}]' must be a dict with 'boxes' [K, 4] and 'scores' [K] (and 'labels')")
        boxes = torch.as_tensor(item["boxes"]).detach().to("cpu", torch.float32)
        scores = torch.as_tensor(item["scores"]).detach().to("cpu", torch.float32)
        labels = item.get("labels")
        labels = torch.ones(scores.shape, dtype=torch.long) if labels is None else \
            torch.as_tensor(labels).detach().to("cpu", torch.long)
        if boxes.dim() != 2 or boxes.size(-1) != 4 or scores.shape != (boxes.size(0),) or \
                labels.shape != scores.shape:
            raise ValueError(f"'{name}[{t}]' must hold boxes [K, 4], scores [K] and labels [K], got "
                             f"{tuple(boxes.shape)}, {tuple(scores.shape)}, {tuple(labels.shape)}")
        if not bool(torch.isfinite(boxes).all()) or not bool(torch.isfinite(scores).all()):
            raise ValueError(f"'{name}[{t}]' holds NaN or inf")
        result.append({"boxes": boxes, "scores": scores, "labels": labels})
    return result


class TorchvisionDetector(nn.Module):
    r"""Adapts a :mod:`torchvision.models.detection` model (Faster R-CNN, RetinaNet, FCOS, SSD, ...) to the
    detector contract: ``uint8 [N, H, W, 3]`` frames in, ``N`` dicts of ``boxes`` / ``scores`` / ``labels`` out,
    keeping the detections scoring at least ``score_threshold`` whose label is in ``classes``.

    The model runs in eval mode under :func:`torch.no_grad`, ``batch_size`` frames at a time, on the device of
    its parameters; outputs come back on the CPU. Build the model without downloads
    (``weights=None, weights_backbone=None``) and pass pretrained weights, if any, as a state-dict file.

    Args:
        model (torch.nn.Module): a torchvision detection model (takes a list of float ``[3, H, W]`` images in
            ``[0, 1]`` and returns a list of dicts in eval mode).
        weights (str, optional): path of a state dict for ``model``, read with ``weights_only=True``.
            (default: :obj:`None`)
        score_threshold (float, optional): minimum score kept. (default: :obj:`0.5`)
        classes (sequence of int, optional): labels kept (default: all).
        batch_size (int, optional): frames per forward pass. (default: :obj:`8`)

    Shapes:
        - **input:** :math:`(N, H, W, 3)` ``uint8``
        - **output:** ``N`` dicts, ``boxes`` :math:`(K, 4)`, ``scores`` :math:`(K)`, ``labels`` :math:`(K)`
    """

    def __init__(self, model: nn.Module, *, weights: Optional[Union[str, os.PathLike]] = None,
                 score_threshold: float = 0.5, classes: Optional[Sequence[int]] = None, batch_size: int = 8):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"'model' must be a torchvision detection model (nn.Module), got "
                            f"{type(model).__name__}")
        if isinstance(score_threshold, bool) or not isinstance(score_threshold, (int, float)) or \
                not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"'score_threshold' must be a number in [0, 1], got {score_threshold!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"'batch_size' must be a positive int, got {batch_size!r}")
        if classes is not None:
            classes = [int(c) for c in classes]
            if not classes:
                raise ValueError("'classes' is empty: pass None to keep every label")
        if weights is not None:
            path = os.fspath(weights)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"'weights' file not found: {path}")
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.model = model
        self.score_threshold = float(score_threshold)
        self.classes = classes
        self.batch_size = batch_size
        self.register_buffer("_classes", torch.tensor(classes if classes is not None else [], dtype=torch.long),
                             persistent=False)

    @torch.no_grad()
    def forward(self, frames: Tensor) -> List[Detections]:
        check_frames(frames)
        self.model.eval()
        parameter = next(self.model.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
        result: List[Detections] = []
        for first in range(0, frames.size(0), self.batch_size):
            chunk = frames[first:first + self.batch_size].to(device).permute(0, 3, 1, 2).float().div_(255.0)
            for output in self.model(list(chunk)):
                keep = output["scores"] >= self.score_threshold
                if self.classes is not None:
                    keep &= torch.isin(output["labels"], self._classes.to(output["labels"].device))
                result.append({"boxes": output["boxes"][keep].float().cpu(),
                               "scores": output["scores"][keep].float().cpu(),
                               "labels": output["labels"][keep].long().cpu()})
        return result

    def extra_repr(self) -> str:
        return (f"score_threshold={self.score_threshold}, classes={self.classes}, batch_size={self.batch_size}")
