r"""Seeded synthetic videos with groups of confusable classes (U2S, Zhao et al.): classes that share a motion and
differ only in a small marking on the mover, mixed with easy classes that differ by their motion alone.

Every video shows one mover (a square of a random colour) and one static distractor square on a noisy grey
background. Each square carries a small, slightly brighter mark in one of three corners. A class is a motion, and for the
*confusable* motions also the corner of the mover's mark: ``"right/top-left"``, ``"right/top-right"``,
``"right/bottom-left"`` share every pixel but a 2 x 2 patch. For the *easy* motions the mark's corner is random,
so the motion alone decides the class. See docs/synthetic.md.
"""
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["CONFUSABLE_MOTIONS", "EASY_MOTIONS", "MARKS", "confusable_classes", "SyntheticConfusable"]

#: Motions whose classes differ only by the mover's mark (one class per mark).
CONFUSABLE_MOTIONS: Tuple[str, ...] = ("right", "down", "diagonal")
#: Motions that are a class each, whatever the mark.
EASY_MOTIONS: Tuple[str, ...] = ("left", "up", "circle")
#: Corners of a square that can carry the mark.
MARKS: Tuple[str, ...] = ("top-left", "top-right", "bottom-left")

_SPLITS = {"train": 0, "val": 1, "test": 2}
_SIDE = 10          # square side in pixels
_MARK = 2           # mark side in pixels


def confusable_classes(confusable_motions: Sequence[str] = CONFUSABLE_MOTIONS,
                       easy_motions: Sequence[str] = EASY_MOTIONS) -> Tuple[List[str], List[List[int]]]:
    """Class names in label order and the groups of confusable labels (one group per confusable motion)."""
    names = [f"{motion}/{mark}" for motion in confusable_motions for mark in MARKS] + list(easy_motions)
    groups = [list(range(g * len(MARKS), (g + 1) * len(MARKS))) for g in range(len(confusable_motions))]
    return names, groups


def _path(motion: str, rng: np.random.Generator, T: int, size: int) -> np.ndarray:
    """Top-left corners [T, 2] (x, y) of the mover, kept inside the frame."""
    span = size - _SIDE
    speed = rng.uniform(1.6, 2.4)
    travel = speed * (T - 1)
    t = np.arange(T, dtype=np.float64)
    if motion == "circle":
        radius = rng.uniform(5.0, 7.0)
        centre = rng.uniform(radius, span - radius, 2)
        phase = rng.uniform(0, 2 * np.pi)
        angle = phase + 2 * np.pi * t / T
        return centre + radius * np.stack([np.cos(angle), np.sin(angle)], -1)
    direction = {"right": (1, 0), "left": (-1, 0), "down": (0, 1), "up": (0, -1),
                 "diagonal": (2 ** -0.5, 2 ** -0.5)}[motion]
    direction = np.asarray(direction, dtype=np.float64)
    reach = np.abs(direction) * travel
    low = np.where(direction < 0, reach, 0.0)
    high = span - np.where(direction > 0, reach, 0.0)
    start = rng.uniform(low, high)
    across = rng.normal(0.0, 0.3, (T, 2)) * (direction == 0)     # a little wobble across the motion
    return start + t[:, None] * speed * direction + across


def _square(frames: np.ndarray, corner: np.ndarray, colour: np.ndarray, mark: int, contrast: float) -> None:
    """Draws a square with its top-left corner at ``corner`` [T, 2] into ``frames`` [T, H, W, 3] (in place)."""
    x0, y0 = np.rint(corner[:, 0]).astype(int), np.rint(corner[:, 1]).astype(int)
    mx = (1, _SIDE - 1 - _MARK, 1)[mark]
    my = (1, 1, _SIDE - 1 - _MARK)[mark]
    for t in range(frames.shape[0]):
        frames[t, y0[t]:y0[t] + _SIDE, x0[t]:x0[t] + _SIDE] = colour
        frames[t, y0[t] + my:y0[t] + my + _MARK, x0[t] + mx:x0[t] + mx + _MARK] = colour + contrast


class SyntheticConfusable(Dataset):
    r"""Trimmed videos of confusable and easy classes (see the module docstring), as float video tensors.

    Labels: ``len(confusable_motions) * 3`` confusable classes (:func:`confusable_classes` gives the names and the
    groups), then one class per easy motion. Labels are balanced (each block of ``num_classes`` items holds every
    class once); item ``i`` depends only on ``(seed, split, i)``.

    Args:
        num_videos: number of videos.
        num_frames: frames ``T`` per video (``>= 4``). (default: :obj:`8`)
        size: frame side in pixels (``>= 24``). (default: :obj:`32`)
        confusable_motions: motions of the confusable groups. (default: :data:`CONFUSABLE_MOTIONS`)
        easy_motions: motions of the easy classes. (default: :data:`EASY_MOTIONS`)
        noise: per-pixel Gaussian noise, relative to 255. (default: :obj:`0.08`)
        mark_contrast: brightness the mark adds to its square, relative to 255. (default: :obj:`0.2`)
        seed: root seed. (default: :obj:`0`)
        split: ``"train"``, ``"val"`` or ``"test"``: disjoint streams from one seed. (default: :obj:`"train"`)

    ``dataset[i]`` is ``(video [3, T, size, size] float in [0, 1], label)``; :meth:`tensors` stacks them all.
    """

    def __init__(self, num_videos: int, *, num_frames: int = 8, size: int = 32,
                 confusable_motions: Sequence[str] = CONFUSABLE_MOTIONS,
                 easy_motions: Sequence[str] = EASY_MOTIONS, noise: float = 0.08, mark_contrast: float = 0.2,
                 seed: int = 0,
                 split: str = "train"):
        for name, value, minimum in (("num_videos", num_videos, 1), ("num_frames", num_frames, 4),
                                     ("size", size, 24), ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"'{name}' must be an integer, got {type(value).__name__}")
            if value < minimum:
                raise ValueError(f"'{name}' must be >= {minimum}, got {value}")
        motions = tuple(confusable_motions) + tuple(easy_motions)
        known = ("right", "left", "down", "up", "diagonal", "circle")
        if not motions or len(set(motions)) != len(motions) or any(m not in known for m in motions):
            raise ValueError(f"'confusable_motions' and 'easy_motions' must be distinct names from {known}, got "
                             f"{tuple(confusable_motions)} and {tuple(easy_motions)}")
        if split not in _SPLITS:
            raise ValueError(f"'split' must be one of {sorted(_SPLITS)}, got {split!r}")
        if not 0.0 <= float(noise) < 1.0:
            raise ValueError(f"'noise' must lie in [0, 1), got {noise!r}")
        self.num_videos, self.num_frames, self.size = int(num_videos), int(num_frames), int(size)
        self.confusable_motions, self.easy_motions = tuple(confusable_motions), tuple(easy_motions)
        if not 0.0 < float(mark_contrast) <= 1.0:
            raise ValueError(f"'mark_contrast' must lie in (0, 1], got {mark_contrast!r}")
        self.noise, self.mark_contrast, self.seed, self.split = float(noise), float(mark_contrast), int(seed), split
        self.classes, self.groups = confusable_classes(self.confusable_motions, self.easy_motions)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, _SPLITS[split], 1]))
        blocks = -(-self.num_videos // self.num_classes)
        self.labels = torch.from_numpy(np.concatenate(
            [rng.permutation(self.num_classes) for _ in range(blocks)])[:self.num_videos].astype(np.int64))

    @classmethod
    def splits(cls, num_train: int, num_test: int, *, seed: int = 0, **kwargs
               ) -> Tuple["SyntheticConfusable", "SyntheticConfusable"]:
        """A train and a test set with the same settings and disjoint videos."""
        return cls(num_train, seed=seed, split="train", **kwargs), cls(num_test, seed=seed, split="test", **kwargs)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def confusable(self) -> Tensor:
        """BoolTensor ``[num_classes]``: the labels that belong to a confusable group."""
        mask = torch.zeros(self.num_classes, dtype=torch.bool)
        mask[[label for group in self.groups for label in group]] = True
        return mask

    def __len__(self) -> int:
        return self.num_videos

    def __getitem__(self, index: int) -> Tuple[Tensor, int]:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"'index' must be an integer, got {type(index).__name__}")
        if not -self.num_videos <= index < self.num_videos:
            raise IndexError(f"'index' {index} is out of range for {self.num_videos} videos")
        index = int(index) % self.num_videos
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, _SPLITS[self.split], 0, index]))
        label = int(self.labels[index])
        num_confusable = len(self.confusable_motions) * len(MARKS)
        if label < num_confusable:
            motion, mark = self.confusable_motions[label // len(MARKS)], label % len(MARKS)
        else:
            motion, mark = self.easy_motions[label - num_confusable], int(rng.integers(len(MARKS)))
        T, S = self.num_frames, self.size
        grey = rng.uniform(60, 110)
        frames = np.full((T, S, S, 3), grey)
        colours = rng.uniform(100, 200, (2, 3))
        # the static distractor: anywhere, its own random mark
        corner = np.broadcast_to(rng.uniform(0, S - _SIDE, 2), (T, 2))
        contrast = 255 * self.mark_contrast
        _square(frames, corner, colours[1], int(rng.integers(len(MARKS))), contrast)
        _square(frames, _path(motion, rng, T, S).clip(0, S - _SIDE), colours[0], mark, contrast)
        frames += rng.normal(0.0, 255 * self.noise, frames.shape)
        video = torch.from_numpy(frames.clip(0, 255).astype(np.float32) / 255).permute(3, 0, 1, 2)
        return video.contiguous(), label

    def tensors(self) -> Tuple[Tensor, Tensor]:
        """All videos ``[N, 3, T, size, size]`` and labels ``[N]``."""
        videos = torch.stack([self[i][0] for i in range(self.num_videos)])
        return videos, self.labels.clone()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.num_videos}, num_frames={self.num_frames}, size={self.size}, "
                f"num_classes={self.num_classes}, seed={self.seed}, split={self.split!r})")
