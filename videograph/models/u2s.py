r"""U2S, the universal-to-specific framework (Zhao et al., `"Universal-to-Specific Framework for Complex Action
Recognition" <https://arxiv.org/abs/2007.06149>`_), around any video backbone with a 5-D feature map."""
import copy
import os
from typing import NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._utils import positive
from .backbones import split_backbone
from .confusion import (Distance, category_regularization, channel_sparsity, class_sparsity, confusion_matrix,
                        select_mask, top_n_reaching)

__all__ = ["U2S", "U2SOutput", "STAGES", "fit_u2s"]

#: Training stages, in order (the confusion matrix is estimated between the first two).
STAGES: Tuple[str, ...] = ("universal", "specific", "joint")


class U2SOutput(NamedTuple):
    """Logits of the three heads, ``[B, M]`` each."""
    universal: Tensor
    bridge: Tensor
    specific: Tensor


class U2S(nn.Module):
    r"""The universal-to-specific network (U2S sec. III).

    A universal network (UN: ``early`` then ``late``, pooled, linear) makes a first decision. A category-specific
    network (CSN) of the same architecture shares ``early`` and has its own copy of ``late``; a mask network, a
    1x1x1 convolution from the CSN's feature map :math:`F` to one mask per class, is trained with cross-entropy
    on the masks' global average (the *bridge* logits, :math:`\mathcal{L}_M`). The UN's predicted class
    :math:`\hat c` picks its confusable classes (row :math:`\hat c` of the binary confusion matrix :math:`C`,
    :func:`~videograph.models.confusion.confusion_matrix`) and the CSN classifies the masked features:

    .. math::
        m = \sigma\Big(\frac{1}{|C_{\hat c}|} \sum_{j \in C_{\hat c}} \mathrm{mask}_j(F)\Big), \qquad
        \mathrm{specific} = W_S \,\mathrm{GAP}(F \odot m),

    with no gradient through the arg max. The loss is
    :math:`\mathcal{L}_U + \mathcal{L}_C + \mathcal{L}_M + \lambda\, w_\mathrm{regular}` (eq. 3, category
    regularization :func:`~videograph.models.confusion.category_regularization` over confusable pairs), trained in
    the paper's stages (:data:`STAGES`, :func:`fit_u2s`). The prediction is the mean of the three heads' softmax
    probabilities.

    Args:
        backbone: ``"small"``, ``"r3d_18"`` or a module (see :func:`~videograph.models.backbones.split_backbone`).
        num_classes: :math:`M`.
        num_confusing: mean number of confusable classes per class (itself included); :obj:`None` picks the
            smallest :math:`N` whose top-:math:`N` training accuracy of the trained UN reaches ``top_n_target``.
            (default: :obj:`None`)
        top_n_target: see ``num_confusing``. (default: :obj:`0.85`)
        mask_activation: ``"sigmoid"`` or ``"none"``, applied to the averaged mask. (default: :obj:`"sigmoid"`)
        reg_weight: :math:`\lambda`. (default: :obj:`0.5`)
        distance: the class-sparsity distance of the confusion matrix (default: cosine).

    Shapes:
        - **input:** a clip :math:`(B, 3, T, H, W)`, or a PyG batch with ``video`` of that shape
        - **output:** class probabilities :math:`(B, M)` (mean of the three heads)
    """

    def __init__(self, backbone: Union[str, nn.Module], num_classes: int, *, num_confusing: Optional[float] = None,
                 top_n_target: float = 0.85, mask_activation: str = "sigmoid", reg_weight: float = 0.5,
                 distance: Optional[Distance] = None):
        super().__init__()
        self.num_classes = positive("num_classes", num_classes)
        if num_confusing is not None and not 1 <= num_confusing <= num_classes:
            raise ValueError(f"'num_confusing' must lie in [1, {num_classes}] (num_classes), got {num_confusing!r}")
        if mask_activation not in ("sigmoid", "none"):
            raise ValueError(f"'mask_activation' must be 'sigmoid' or 'none', got {mask_activation!r}")
        if not 0.0 < top_n_target <= 1.0:
            raise ValueError(f"'top_n_target' must lie in (0, 1], got {top_n_target!r}")
        if reg_weight < 0:
            raise ValueError(f"'reg_weight' must be >= 0, got {reg_weight!r}")
        self.num_confusing, self.top_n_target = num_confusing, float(top_n_target)
        self.mask_activation, self.reg_weight, self.distance = mask_activation, float(reg_weight), distance
        self.early, self.universal, channels = split_backbone(backbone)
        self.channels = channels
        self.specific = copy.deepcopy(self.universal)
        self.universal_head = nn.Linear(channels, num_classes)
        self.specific_head = nn.Linear(channels, num_classes)
        self.mask = nn.Conv3d(channels, num_classes, 1)
        self.register_buffer("similarity", torch.eye(num_classes))
        self.register_buffer("confusable", torch.eye(num_classes, dtype=torch.bool))
        self.register_buffer("stage_index", torch.tensor(0))
        self.reset_parameters()
        self.set_stage("universal")

    def reset_parameters(self) -> None:
        for module in (self.universal_head, self.specific_head, self.mask):
            module.reset_parameters()
        self.specific.load_state_dict(self.universal.state_dict())

    @property
    def stage(self) -> str:
        return STAGES[int(self.stage_index)]

    def set_stage(self, stage: str) -> "U2S":
        """Selects what trains: ``"universal"`` (trunk, UN, UN head), ``"specific"`` (CSN, its head, the mask
        network; the trunk and UN frozen, kept in eval mode) or ``"joint"`` (everything)."""
        if stage not in STAGES:
            raise ValueError(f"'stage' must be one of {STAGES}, got {stage!r}")
        self.stage_index.fill_(STAGES.index(stage))
        universal = stage != "specific"
        specific = stage != "universal"
        for part, trains in ((self.early, universal), (self.universal, universal), (self.universal_head, universal),
                             (self.specific, specific), (self.specific_head, specific), (self.mask, specific)):
            part.requires_grad_(trains)
        return self.train(self.training)

    def train(self, mode: bool = True) -> "U2S":
        super().train(mode)
        if mode and self.stage == "specific":      # frozen parts keep their normalisation statistics
            for part in (self.early, self.universal):
                part.eval()
        return self

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        out = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.set_stage(self.stage)
        return out

    @staticmethod
    def _video(batch) -> Tensor:
        video = batch if isinstance(batch, Tensor) else getattr(batch, "video", None)
        if not isinstance(video, Tensor) or video.dim() != 5:
            raise ValueError("the input must be a clip [B, 3, T, H, W] or a batch with 'video' of that shape, got "
                             f"{getattr(video, 'shape', type(video).__name__)}")
        return video

    def universal_features(self, video: Tensor) -> Tuple[Tensor, Tensor]:
        """``(early map, UN map)`` of a clip."""
        trunk = self.early(video)
        return trunk, self.universal(trunk)

    def outputs(self, batch, classes: Optional[Tensor] = None) -> U2SOutput:
        r"""Logits of the universal, bridge (mask) and specific heads. ``classes`` ``[B]`` overrides the UN's
        prediction in the mask selection (``classes = labels``: the paper's oracle masks, its upper bound)."""
        trunk, universal_map = self.universal_features(self._video(batch))
        universal = self.universal_head(universal_map.mean((2, 3, 4)))
        specific_map = self.specific(trunk)
        masks = self.mask(specific_map)
        bridge = masks.mean((2, 3, 4))
        if classes is None:
            classes = universal.detach().argmax(-1)
        elif classes.shape != universal.shape[:1] or bool(((classes < 0) | (classes >= self.num_classes)).any()):
            raise ValueError(f"'classes' must be [{universal.size(0)}] labels in [0, {self.num_classes})")
        mask = select_mask(masks, classes, self.confusable)
        if self.mask_activation == "sigmoid":
            mask = torch.sigmoid(mask)
        specific = self.specific_head((specific_map * mask).mean((2, 3, 4)))
        return U2SOutput(universal, bridge, specific)

    @staticmethod
    def combine(out: U2SOutput) -> Tensor:
        """The prediction: mean of the three heads' softmax probabilities ``[B, M]``."""
        return torch.stack([o.softmax(-1) for o in out]).mean(0)

    def forward(self, batch, classes: Optional[Tensor] = None) -> Tensor:
        return self.combine(self.outputs(batch, classes))

    def regularization(self) -> Tensor:
        """:math:`w_\\mathrm{regular}` of the mask convolution's weight over the confusable pairs."""
        return category_regularization(self.mask.weight, self.confusable)

    def loss(self, batch, generator: Optional[torch.Generator] = None) -> Tuple[Tensor, Tensor]:
        """The stage's loss and the scores to report: L_U (universal); L_C + L_M + λ w (specific); the sum of all
        (joint). ``batch.y`` holds the labels."""
        y = batch.y.view(-1)
        if bool(((y < 0) | (y >= self.num_classes)).any()):
            raise ValueError(f"labels 'y' must lie in [0, {self.num_classes})")
        if self.stage == "universal":
            trunk, universal_map = self.universal_features(self._video(batch))
            universal = self.universal_head(universal_map.mean((2, 3, 4)))
            return F.cross_entropy(universal, y), universal.detach()
        out = self.outputs(batch)
        loss = F.cross_entropy(out.specific, y) + F.cross_entropy(out.bridge, y)
        if self.reg_weight:
            loss = loss + self.reg_weight * self.regularization()
        if self.stage == "joint":
            return loss + F.cross_entropy(out.universal, y), self.combine(out).detach()
        return loss, out.specific.detach()

    @torch.no_grad()
    def fit_confusion_(self, dataset: Sequence, batch_size: int = 32) -> Tensor:
        r"""Estimates the confusion matrix from the trained UN on ``dataset`` (graphs or items with ``video`` and
        ``y``): channel sparsity of the UN's map per sample, averaged per class, then
        :func:`~videograph.models.confusion.confusion_matrix` with ``num_confusing`` (or the top-N rule). Also
        starts the CSN from the trained UN. Returns the binary matrix."""
        from torch_geometric.loader import DataLoader

        was_training = self.training
        self.eval()
        sparsities, logits, labels = [], [], []
        for batch in DataLoader(list(dataset), batch_size=batch_size):
            _, universal_map = self.universal_features(self._video(batch))
            sparsities.append(channel_sparsity(universal_map))
            logits.append(self.universal_head(universal_map.mean((2, 3, 4))))
            labels.append(batch.y.view(-1))
        labels_t = torch.cat(labels)
        count = self.num_confusing
        if count is None:
            count = top_n_reaching(torch.cat(logits), labels_t, self.top_n_target)
        similarity, confusable = confusion_matrix(class_sparsity(torch.cat(sparsities), labels_t, self.num_classes),
                                                  count, distance=self.distance)
        self.similarity.copy_(similarity)
        self.confusable.copy_(confusable)
        self.specific.load_state_dict(self.universal.state_dict())
        self.train(was_training)
        return confusable

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.channels}, {self.num_classes}, stage={self.stage}, "
                f"mask_activation={self.mask_activation}, reg_weight={self.reg_weight})")


def fit_u2s(model: U2S, train_set: Sequence, *, epochs: Sequence[int] = (8, 6, 2), lr: Sequence[float] = (3e-3, 3e-3,
            3e-4), batch_size: int = 32, seed: int = 0, confusion_set: Optional[Sequence] = None,
            checkpoint_dir: Optional[str] = None, progress: bool = True, stages: Sequence[str] = STAGES) -> dict:
    r"""Trains ``model`` in the paper's stages with :func:`videograph.train.fit`: the UN (``epochs[0]``), the
    confusion matrix (:meth:`U2S.fit_confusion_` on ``confusion_set``, default the training set; held-out data
    gives an honest top-N rule), the CSN and mask network (``epochs[1]``), then everything jointly at a lower
    learning rate (``epochs[2]``; 0 skips a stage). ``stages`` runs a subset (e.g. ``("specific", "joint")``
    continues a copy of a model whose UN is trained). With ``checkpoint_dir`` each stage writes
    (and resumes from) ``<dir>/u2s_<stage>.pt``; the confusion matrix is a buffer, so it is in the checkpoints.
    Returns ``{stage: History}``."""
    from ..train import TrainConfig, fit

    if len(epochs) != 3 or len(lr) != 3:
        raise ValueError(f"'epochs' and 'lr' must have one value per stage {STAGES}, got {epochs!r} and {lr!r}")
    unknown = [stage for stage in stages if stage not in STAGES]
    if unknown:
        raise ValueError(f"'stages' must be a subset of {STAGES}, got {tuple(stages)!r}")
    histories = {}
    for index, stage in enumerate(STAGES):
        if stage not in stages:
            continue
        if stage == "specific":
            model.fit_confusion_(train_set if confusion_set is None else confusion_set, batch_size)
        if not epochs[index]:
            continue
        model.set_stage(stage)
        path = os.path.join(checkpoint_dir, f"u2s_{stage}.pt") if checkpoint_dir else None
        config = TrainConfig(epochs=int(epochs[index]), batch_size=batch_size, lr=float(lr[index]),
                             seed=seed + index, progress=progress, checkpoint=path, resume=path is not None)
        histories[stage] = fit(model, train_set, config)
    model.set_stage("joint")
    model.eval()
    return histories
