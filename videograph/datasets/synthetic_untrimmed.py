r"""Seeded synthetic untrimmed videos for temporal action localisation (P-GCN), as snippet feature sequences.

:class:`SyntheticUntrimmed` draws videos with disjoint ground-truth actions, snippet features and scored
proposals, which become :class:`~videograph.data.Proposals`. Context is informative by construction (see
``docs/synthetic.md``): an action's own snippets tell its class only up to its *group*, the video's *scene*,
carried by the background snippets around the actions, tells the rest (surrounding edges reach it); and each
proposal's features are a noisy measurement of its content (``proposal_noise``), which the overlapping proposals
measure again with independent noise (contextual edges average it out).

Item ``i`` is generated from ``(seed, split, i)`` alone, like :class:`~videograph.datasets.SyntheticInteractions`.
"""
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..data.containers import Proposals
from ..graph.segments import segment_iou
from .synthetic import _check_count, _check_range, _check_split, _item_rng

__all__ = ["UntrimmedVideo", "SyntheticUntrimmed"]


def _segment_means(features: Tensor, segments: Tensor) -> Tensor:
    """Mean of the snippet rows ``[floor(start), ceil(end))`` (the snippets overlapping each segment, snippet
    ``k`` covering ``[k, k + 1)``), clipped to the video; at least one snippet."""
    length = features.size(0)
    cumsum = torch.cat([features.new_zeros(1, features.size(1)), features.cumsum(0)])
    low = segments[:, 0].floor().long().clamp(0, length - 1)
    high = torch.maximum(segments[:, 1].ceil().long().clamp(max=length), low + 1)
    return (cumsum[high] - cumsum[low]) / (high - low)[:, None].to(features.dtype)


@dataclass(eq=False)
class UntrimmedVideo:
    r"""One synthetic untrimmed video, described by snippet features rather than pixels.

    Time is measured in snippets: row ``k`` of ``features`` covers ``[k, k + 1)`` and ``duration`` is the number
    of snippets. Action classes are ``1 … C``; ``0`` is background.

    Attributes:
        features: ``float32 [duration, D]`` snippet features.
        segments: ``float32 [G, 2]`` ground-truth action segments ``(start, end)``, disjoint, sorted by start.
        labels: ``long [G]`` their classes in ``1 … C``.
        proposal_segments: ``float32 [P, 2]`` scored proposals, sorted by start.
        proposal_scores: ``float32 [P]`` their scores (actionness), correlated with their best tIoU.
        duration: length of the video in snippets.
        scene: the video's scene (every action's class belongs to it, see :class:`SyntheticUntrimmed`).
        proposal_noise: optional ``float32 [P, 2, D]`` measurement noise added to each proposal's features
            (``[:, 0]``) and extended features (``[:, 1]``) by :meth:`proposals`.
        ground_truth_noise: optional ``float32 [G, 2, D]``, the same for the ground-truth segments when
            :meth:`proposals` lists them.
    """
    features: Tensor
    segments: Tensor
    labels: Tensor
    proposal_segments: Tensor
    proposal_scores: Tensor
    duration: float
    scene: int = 0
    proposal_noise: Optional[Tensor] = None
    ground_truth_noise: Optional[Tensor] = None

    @property
    def ground_truth(self) -> Tuple[Tensor, Tensor]:
        """``(segments [G, 2], labels [G])``."""
        return self.segments, self.labels

    def proposal_iou(self) -> Tensor:
        """``[P, G]`` tIoU of every proposal with every ground-truth segment."""
        return segment_iou(self.proposal_segments, self.segments)

    def proposals(self, *, iou_threshold: float = 0.5, with_ground_truth: bool = False) -> Proposals:
        r"""The proposals as a :class:`~videograph.data.Proposals` container.

        ``features`` = mean snippet feature inside each proposal; ``extended_features`` = the same over the
        proposal extended by half its length on each side (clipped to the video), as P-GCN's GCN_2 input, each
        plus its row of ``proposal_noise`` when the video has one;
        ``labels`` = class of the best-matching ground truth when that tIoU is ``>= iou_threshold``, else ``0``
        (background); ``scores`` and ``duration`` are carried over. ``with_ground_truth=True`` appends the
        ground-truth segments after the proposals (score 1, with their ``ground_truth_noise``), as P-GCN's training
        lists them among the foreground proposals.
        """
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"'iou_threshold' must lie in (0, 1], got {iou_threshold!r}")
        segments, noise, scores = self.proposal_segments, self.proposal_noise, self.proposal_scores
        if with_ground_truth:
            segments = torch.cat([segments, self.segments])
            scores = torch.cat([scores, torch.ones(self.segments.size(0))])
            if noise is not None:
                noise = torch.cat([noise, self.ground_truth_noise])
        half = (segments[:, 1] - segments[:, 0]) / 2
        extended = torch.stack([(segments[:, 0] - half).clamp(min=0),
                                (segments[:, 1] + half).clamp(max=self.duration)], dim=1)
        best_iou, best = segment_iou(segments, self.segments).max(dim=1)
        labels = torch.where(best_iou >= iou_threshold, self.labels[best], torch.zeros_like(best))
        features, extended_features = _segment_means(self.features, segments), _segment_means(self.features, extended)
        if noise is not None:
            features, extended_features = features + noise[:, 0], extended_features + noise[:, 1]
        return Proposals(segments, features, extended_features, scores, labels, duration=self.duration)


class SyntheticUntrimmed(Dataset):
    r"""Untrimmed videos with disjoint ground-truth actions, snippet features and scored proposals (P-GCN).

    A snippet's feature is Gaussian noise (unit variance per dimension) plus, inside an action of class ``c``,
    ``signal`` times the unit prototype of ``c``'s *group*, plus bumps of a shared "start" and "end" prototype at
    the action's boundaries (so boundaries can be regressed from the extended features), plus, outside every
    action, ``scene_signal`` times the unit prototype of the video's *scene*. Class ``c`` belongs to group
    ``(c - 1) // num_scenes`` and scene ``(c - 1) % num_scenes``; every action of a video has a class of the
    video's scene (uniform among them). So an action's own snippets tell its group, and only the background
    around it (surrounding proposals) tells which class of the group it is. Prototypes depend only on
    ``(num_classes, num_scenes, feature_dim, class_seed)``, so videos of any ``seed`` or ``split`` share them.

    Proposals (``num_proposals`` per video): about half are ground-truth segments with jittered centre
    (std 15 % of the length) and log-length (std 0.25), the rest random segments; all clipped to the video.
    Score = ``clip(0.2 + 0.7 * best_tIoU + N(0, 0.1), 0, 1)``, and 10 % of the random segments get a false
    high score uniform in ``[0.5, 0.9]``. Each proposal's features and extended features get independent
    Gaussian measurement noise of std ``proposal_noise`` per dimension (as if every proposal were pooled from
    its own noisy feature extraction), so one proposal sees its content blurred and the proposals overlapping it
    (contextual edges) see the same content with independent noise.

    Args:
        num_videos: number of videos.
        num_classes: number of action classes ``C`` (labels ``1 … C``). Default ``5``.
        duration: snippets per video. Default ``128``.
        feature_dim: snippet feature size ``D``. Default ``32``.
        num_proposals: proposals per video. Default ``64``.
        num_actions: actions per video, an integer or inclusive ``(low, high)``. Default ``(1, 4)``.
        action_length: range of action lengths in snippets. Default ``(8.0, 32.0)``.
        signal: norm of the class signal relative to the unit noise per dimension. Default ``3.0``.
        num_scenes: scenes the classes are split into (``1``: the action's snippets alone tell its class).
            Default ``2``.
        scene_signal: norm of the scene signal of the background snippets. Default ``3.0``.
        proposal_noise: std of the per-proposal measurement noise. Default ``0.75``.
        common_signal: norm of a component shared by every snippet (backbone features share a large common
            part, so the cosine similarity of two proposals is mostly positive). Default ``4.0``.
        seed: root seed. Default ``0``.
        split: ``"train"``, ``"val"`` or ``"test"``. Default ``"train"``.
        class_seed: seed of the class prototypes. Default ``0``.
    """

    def __init__(self, num_videos: int, *, num_classes: int = 5, duration: int = 128, feature_dim: int = 32,
                 num_proposals: int = 64, num_actions: Union[int, Tuple[int, int]] = (1, 4),
                 action_length: Tuple[float, float] = (8.0, 32.0), signal: float = 3.0, num_scenes: int = 2,
                 scene_signal: float = 3.0, proposal_noise: float = 0.75, common_signal: float = 4.0, seed: int = 0, split: str = "train",
                 class_seed: int = 0):
        self.num_videos = _check_count("num_videos", num_videos)
        self.num_classes = _check_count("num_classes", num_classes)
        self.duration = _check_count("duration", duration, minimum=2)
        self.feature_dim = _check_count("feature_dim", feature_dim)
        self.num_proposals = _check_count("num_proposals", num_proposals)
        self.num_actions = _check_range("num_actions", num_actions, minimum=1)
        self.action_length = _check_range("action_length", action_length, minimum=1.0, integer=False)
        if self.num_actions[1] * self.action_length[1] > self.duration:
            raise ValueError(f"'duration' ({duration}) must hold num_actions[1] * action_length[1] = "
                             f"{self.num_actions[1] * self.action_length[1]} snippets of action")
        if not float(signal) >= 0:
            raise ValueError(f"'signal' must be >= 0, got {signal!r}")
        self.signal = float(signal)
        self.num_scenes = _check_count("num_scenes", num_scenes)
        if self.num_scenes > self.num_classes:
            raise ValueError(f"'num_scenes' must be <= num_classes ({self.num_classes}), got {num_scenes}")
        for name, value in (("scene_signal", scene_signal), ("proposal_noise", proposal_noise),
                            ("common_signal", common_signal)):
            if not float(value) >= 0:
                raise ValueError(f"'{name}' must be >= 0, got {value!r}")
        self.scene_signal = float(scene_signal)
        self.proposal_noise = float(proposal_noise)
        self.common_signal = float(common_signal)
        self.seed = _check_count("seed", seed, minimum=0)
        self.split = split
        self._salt = _check_split(split)
        self.class_seed = _check_count("class_seed", class_seed, minimum=0)
        rng = np.random.default_rng(np.random.SeedSequence([self.class_seed, self.num_classes, self.feature_dim,
                                                            self.num_scenes]))
        num_groups = -(-self.num_classes // self.num_scenes)
        prototypes = rng.standard_normal((num_groups + self.num_scenes + 3, self.feature_dim))
        prototypes /= np.linalg.norm(prototypes, axis=1, keepdims=True)
        group = np.arange(self.num_classes) // self.num_scenes
        #: ``[C + 2, D]`` unit prototypes: row ``c - 1`` is the in-action signal of class ``c`` (its group's, shared
        #: by the classes of one group), then "start" and "end".
        self.prototypes = torch.from_numpy(np.concatenate([prototypes[group], prototypes[-2:]]).astype(np.float32))
        #: ``[num_scenes, D]`` unit prototypes of the scenes (the background signal).
        self.scene_prototypes = torch.from_numpy(prototypes[num_groups:num_groups + self.num_scenes]
                                                 .astype(np.float32))
        #: ``[D]`` unit direction of the component every snippet shares.
        self.common_prototype = torch.from_numpy(prototypes[num_groups + self.num_scenes].astype(np.float32))

    @classmethod
    def splits(cls, num_train: int, num_test: int, *, seed: int = 0, **kwargs
               ) -> Tuple["SyntheticUntrimmed", "SyntheticUntrimmed"]:
        """A train and a test set with the same settings and disjoint videos."""
        return cls(num_train, seed=seed, split="train", **kwargs), cls(num_test, seed=seed, split="test", **kwargs)

    def __len__(self) -> int:
        return self.num_videos

    def __iter__(self):
        return (self[i] for i in range(self.num_videos))

    def __getitem__(self, index: int) -> UntrimmedVideo:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"'index' must be an integer, got {type(index).__name__}")
        if not -self.num_videos <= index < self.num_videos:
            raise IndexError(f"'index' {index} is out of range for {self.num_videos} videos")
        rng = _item_rng(self.seed, self._salt, 2, int(index) % self.num_videos)
        length = self.duration

        count = int(rng.integers(self.num_actions[0], self.num_actions[1] + 1))
        lengths = rng.uniform(*self.action_length, count)
        gaps = rng.dirichlet(np.ones(count + 1)) * (length - lengths.sum())
        starts = np.cumsum(gaps[:-1]) + np.concatenate([[0.0], np.cumsum(lengths)[:-1]])
        segments = np.stack([starts, starts + lengths], axis=1)
        scene = int(rng.integers(0, self.num_scenes))
        choices = np.arange(scene + 1, self.num_classes + 1, self.num_scenes)     # the classes of the scene
        labels = choices[rng.integers(0, len(choices), count)]

        time = np.arange(length) + 0.5                                     # snippet centres
        inside = (time[None, :] >= segments[:, :1]) & (time[None, :] < segments[:, 1:])   # [G, L]
        prototypes = self.prototypes.numpy().astype(np.float64)
        width = 1.5
        start_bump = np.exp(-0.5 * ((time[None, :] - segments[:, :1]) / width) ** 2).sum(0)
        end_bump = np.exp(-0.5 * ((time[None, :] - segments[:, 1:]) / width) ** 2).sum(0)
        features = (rng.standard_normal((length, self.feature_dim))
                    + self.signal * inside.T.astype(np.float64) @ prototypes[labels - 1]
                    + self.signal * (start_bump[:, None] * prototypes[-2] + end_bump[:, None] * prototypes[-1])
                    + self.scene_signal * (~inside.any(0))[:, None] * self.scene_prototypes[scene].numpy()[None]
                    + self.common_signal * self.common_prototype.numpy()[None])

        num_positive = min(self.num_proposals, (self.num_proposals + 1) // 2)
        owner = rng.integers(0, count, num_positive)
        centre = segments[owner].mean(1) + rng.normal(0, 0.15, num_positive) * lengths[owner]
        size = lengths[owner] * np.exp(rng.normal(0, 0.25, num_positive))
        num_random = self.num_proposals - num_positive
        random_size = rng.uniform(self.action_length[0] / 2, min(1.5 * self.action_length[1], length), num_random)
        random_centre = rng.uniform(0, length, num_random)
        centre = np.concatenate([centre, random_centre])
        size = np.concatenate([size, random_size])
        proposals = np.stack([np.clip(centre - size / 2, 0, length - 0.5), np.clip(centre + size / 2, 0.5, length)], 1)
        proposals[:, 1] = np.maximum(proposals[:, 1], proposals[:, 0] + 0.5)

        gt = torch.from_numpy(segments.astype(np.float32))
        proposal_t = torch.from_numpy(proposals.astype(np.float32))
        best = segment_iou(proposal_t, gt).max(dim=1).values.numpy().astype(np.float64)
        scores = np.clip(0.2 + 0.7 * best + rng.normal(0, 0.1, self.num_proposals), 0, 1)
        false_positive = np.zeros(self.num_proposals, dtype=bool)
        false_positive[num_positive:] = rng.uniform(0, 1, num_random) < 0.1
        scores[false_positive] = rng.uniform(0.5, 0.9, int(false_positive.sum()))
        order = np.lexsort((proposals[:, 1], proposals[:, 0]))
        noise = rng.standard_normal((self.num_proposals + count, 2, self.feature_dim)) * self.proposal_noise
        noise = torch.from_numpy(noise.astype(np.float32)) if self.proposal_noise > 0 else None

        return UntrimmedVideo(
            features=torch.from_numpy(features.astype(np.float32)), segments=gt,
            labels=torch.from_numpy(labels.astype(np.int64)), proposal_segments=proposal_t[torch.from_numpy(order)],
            proposal_scores=torch.from_numpy(scores[order].astype(np.float32)), duration=float(length), scene=scene,
            proposal_noise=None if noise is None else noise[:self.num_proposals][torch.from_numpy(order)],
            ground_truth_noise=None if noise is None else noise[self.num_proposals:])

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.num_videos}, num_classes={self.num_classes}, "
                f"duration={self.duration}, feature_dim={self.feature_dim}, num_proposals={self.num_proposals}, "
                f"num_scenes={self.num_scenes}, "
                f"seed={self.seed}, split={self.split!r})")
