r"""The category-similarity pieces of U2S (Zhao et al., `"Universal-to-Specific Framework for Complex Action
Recognition" <https://arxiv.org/abs/2007.06149>`_, sec. III-A/B): channel sparsity, the binary confusion
(category similarity) matrix, mask selection and category regularization. Used by :class:`~videograph.models.U2S`,
usable on any backbone's features."""
from typing import Callable, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["channel_sparsity", "class_sparsity", "cosine_distance", "confusion_matrix", "top_n_reaching",
           "select_mask", "category_regularization"]

Distance = Callable[[Tensor, Tensor], Tensor]


def _check_5d(name: str, tensor: Tensor) -> None:
    if not isinstance(tensor, Tensor):
        raise TypeError(f"'{name}' must be a Tensor, got {type(tensor).__name__}")
    if tensor.dim() != 5:
        raise ValueError(f"'{name}' must be 5-D [B, C, T, H, W], got shape {tuple(tensor.shape)}")


def channel_sparsity(feature_map: Tensor) -> Tensor:
    r"""Per-channel sparsity :math:`\Xi^c = 1 - Q^c` (U2S eq. 1), :math:`Q^c` the fraction of non-zero responses
    of channel :math:`c` over time and space.

    Meant for post-ReLU features: a ReLU map has exact zeros wherever a unit is off, so the fraction of zeros
    says which channels a class switches on. Before the ReLU almost no response is exactly zero and every
    channel's sparsity is ~0.

    Shapes:
        - **input:** :math:`(B, C, T, H, W)`
        - **output:** :math:`(B, C)` in :math:`[0, 1]`
    """
    _check_5d("feature_map", feature_map)
    return 1.0 - (feature_map != 0).flatten(2).to(torch.get_default_dtype()).mean(-1)


def class_sparsity(sparsity: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    r"""Mean sparsity :math:`\Xi_m` of the samples of each class. Every class must have a sample.

    Shapes:
        - **input:** sparsity :math:`(N, C)`, labels :math:`(N)`
        - **output:** :math:`(M, C)`
    """
    if sparsity.dim() != 2 or labels.shape != sparsity.shape[:1]:
        raise ValueError(f"'sparsity' must be [N, C] and 'labels' [N], got {tuple(sparsity.shape)} and "
                         f"{tuple(labels.shape)}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"'labels' must lie in [0, {num_classes}), got [{int(labels.min())}, {int(labels.max())}]")
    counts = torch.bincount(labels, minlength=num_classes)
    if bool((counts == 0).any()):
        missing = (counts == 0).nonzero().flatten().tolist()
        raise ValueError(f"'labels' has no sample of classes {missing}: every class needs one")
    sums = sparsity.new_zeros(num_classes, sparsity.size(1)).index_add_(0, labels, sparsity)
    return sums / counts[:, None].to(sparsity.dtype)


def cosine_distance(a: Tensor, b: Tensor) -> Tensor:
    r"""Pairwise :math:`1 - \cos(a_i, b_j)` ``[M, M']``; in :math:`[0, 1]` for non-negative vectors such as
    sparsities."""
    return 1.0 - F.normalize(a, dim=-1, eps=1e-12) @ F.normalize(b, dim=-1, eps=1e-12).T


def confusion_matrix(class_sparsity: Tensor, num_confusing: Union[int, float], *,
                     distance: Optional[Distance] = None) -> Tuple[Tensor, Tensor]:
    r"""The category similarity matrix :math:`S` (U2S eq. 2) and its binary version :math:`C = (S \ge \alpha)`.

    .. math::
        s_{ij} = 1 - f_\mathrm{dist}(\Xi_i, \Xi_j)

    :math:`S` is symmetrised and its diagonal set to one. :math:`\alpha` is chosen so that the mean number of
    confusable classes per class, the class itself included, equals ``num_confusing``: the
    :math:`P = \mathrm{round}(M (N - 1) / 2)` most similar pairs of distinct classes are confusable (both ways), so
    the mean row sum of :math:`C` is :math:`1 + 2P / M` (exactly :math:`N` when :math:`M (N - 1)` is even). Pairs
    tied with the :math:`P`-th are kept too (``s >= alpha``), so ties can only add pairs. Only the order of the
    similarities matters: any strictly increasing transform of the distance gives the same :math:`C`.

    Args:
        class_sparsity: :math:`(M, C)`, one row per class (:func:`class_sparsity`).
        num_confusing: :math:`N \in [1, M]`, the mean number of confusable classes per class (itself included).
        distance: ``f(a [M, C], b [M, C]) -> [M, M]`` distances in :math:`[0, 1]`. (default:
            :func:`cosine_distance`)

    Returns:
        ``(similarity [M, M] float, confusable [M, M] bool)``, both symmetric with a unit / true diagonal.
    """
    if not isinstance(class_sparsity, Tensor) or class_sparsity.dim() != 2:
        raise ValueError("'class_sparsity' must be a 2-D Tensor [M, C], got "
                         f"{getattr(class_sparsity, 'shape', type(class_sparsity).__name__)}")
    M = class_sparsity.size(0)
    if isinstance(num_confusing, bool) or not isinstance(num_confusing, (int, float)) \
            or not 1 <= num_confusing <= M:
        raise ValueError(f"'num_confusing' must be a number in [1, {M}] (the number of classes), got {num_confusing!r}")
    dist = (distance or cosine_distance)(class_sparsity, class_sparsity)
    if dist.shape != (M, M):
        raise ValueError(f"'distance' must return [{M}, {M}], got {tuple(dist.shape)}")
    similarity = 1.0 - dist
    similarity = (similarity + similarity.T) / 2
    eye = torch.eye(M, dtype=torch.bool, device=similarity.device)
    similarity = similarity.masked_fill(eye, 1.0)
    pairs = int(round(M * (num_confusing - 1) / 2))
    confusable = eye.clone()
    if pairs > 0:
        row, col = torch.triu_indices(M, M, 1, device=similarity.device)
        alpha = similarity[row, col].topk(pairs).values[-1]
        confusable |= similarity >= alpha
    return similarity, confusable


def top_n_reaching(logits: Tensor, labels: Tensor, target: float = 0.85) -> int:
    r"""The smallest :math:`N` whose top-:math:`N` accuracy of ``logits`` ``[B, M]`` reaches ``target`` (U2S picks
    ``num_confusing`` so: 85 % on Something-Something)."""
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"'logits' must be [B, M] and 'labels' [B], got {tuple(logits.shape)} and "
                         f"{tuple(labels.shape)}")
    if not 0.0 < target <= 1.0:
        raise ValueError(f"'target' must lie in (0, 1], got {target!r}")
    true = logits.gather(1, labels[:, None])
    rank = (logits > true).sum(1)          # 0 = top-1; ties count in the label's favour
    accuracy = torch.bincount(rank, minlength=logits.size(1)).cumsum(0).to(torch.float64) / labels.numel()
    return int((accuracy >= target - 1e-12).nonzero()[0]) + 1


def select_mask(masks: Tensor, classes: Tensor, confusable: Tensor) -> Tensor:
    r"""The mask of each video: the mean of the masks of the classes confusable with ``classes`` (its row of the
    confusion matrix, which holds the class itself, so a class with no confusable class gets its own mask).

    Shapes:
        - **input:** masks :math:`(B, M, T, H, W)`, classes :math:`(B)` long, confusable :math:`(M, M)` bool
        - **output:** :math:`(B, 1, T, H, W)`
    """
    _check_5d("masks", masks)
    M = masks.size(1)
    if confusable.shape != (M, M) or confusable.dtype != torch.bool:
        raise ValueError(f"'confusable' must be a bool [{M}, {M}] matrix, got {confusable.dtype} "
                         f"{tuple(confusable.shape)}")
    if classes.shape != masks.shape[:1]:
        raise ValueError(f"'classes' must be [{masks.size(0)}], got {tuple(classes.shape)}")
    chosen = confusable[classes].to(masks.dtype)
    weights = chosen / chosen.sum(1, keepdim=True).clamp_min(1.0)
    return torch.einsum("bm,bmthw->bthw", weights, masks)[:, None]


def category_regularization(weight: Tensor, confusable: Tensor) -> Tensor:
    r"""U2S eq. 4-6: the mean similarity of the mask classifier's weight vectors over confusable pairs
    :math:`i \neq j`,

    .. math::
        w_\mathrm{regular} = \frac{1}{N_\mathrm{pos}} \sum_{(i, j):\, C_{ij} = 1,\, i \ne j} s^w_{ij},
        \qquad s^w_{ij} = \frac{1 + \cos(\mathbf{w}_i, \mathbf{w}_j)}{2} \in [0, 1].

    The cosine is mapped affinely into :math:`[0, 1]` (eq. 4 asks for :math:`S^w \in [0, 1]`): the map keeps the
    cosine's gradient direction, and the minimum, 0, is reached by opposite vectors; clamping negative cosines to
    0 instead would stop the gradient for pairs already orthogonal. Zero without confusable pairs.

    Args:
        weight: the 1x1x1 mask convolution's weight, :math:`(M, C)` or :math:`(M, C, 1, 1, 1)`; row :math:`i` is
            :math:`\mathbf{w}_i` (the paper's column of :math:`W \in \mathbb{R}^{C \times M}`).
        confusable: bool :math:`(M, M)`.
    """
    weight = weight.flatten(1)
    M = weight.size(0)
    if confusable.shape != (M, M) or confusable.dtype != torch.bool:
        raise ValueError(f"'confusable' must be a bool [{M}, {M}] matrix, got {confusable.dtype} "
                         f"{tuple(confusable.shape)}")
    unit = F.normalize(weight, dim=1, eps=1e-12)
    similarity = (1.0 + unit @ unit.T) / 2
    pairs = confusable & ~torch.eye(M, dtype=torch.bool, device=confusable.device)
    if not bool(pairs.any()):
        return weight.sum() * 0.0
    return similarity[pairs].mean()
