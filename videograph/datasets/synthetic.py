r"""Seeded synthetic videos with exact ground truth, for tests, demos and quick CPU training.

Two generators:

* :class:`SyntheticInteractions`: trimmed pixel videos (``uint8 [T, H, W, 3]``) of drawn shapes, with per-frame
  ``xyxy`` boxes of every object. Each video shows one interaction (:data:`CLASSES`) performed by one to three
  *actors*; the other objects are *distractors* that wander on their own. Appearance (shape, colour, size) is
  drawn independently of the class and of the role, so only motion and the relations between objects tell the
  classes apart. ``move_closer`` / ``move_apart`` are built so that every single object has exactly the same
  distribution of trajectories in both classes: only the relation between the two actors differs (see
  ``docs/synthetic.md``). Items become :class:`~videograph.data.Tubelets` (MUSLE) or
  :class:`~videograph.data.Regions` (space-time region graphs).
* :class:`~videograph.datasets.SyntheticUntrimmed` (in :mod:`videograph.datasets.synthetic_untrimmed`):
  untrimmed videos for temporal action localisation (P-GCN) as snippet *feature* sequences (no pixels).

Item ``i`` of a dataset is generated from ``(seed, split, i)`` alone, so it is the same whatever the access order
and the dataset length; every random choice flows from that seed (a :class:`numpy.random.Generator` for the
scene, a :class:`torch.Generator` for the optional detector noise of :meth:`SyntheticVideo.tubelets` and
:meth:`SyntheticVideo.regions`).
"""
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..data.containers import Regions, Tubelets
from ._scene import SHAPES, _render, _Scene

__all__ = [
    "CLASSES", "ACTORS_PER_CLASS", "SHAPES", "PALETTE", "SyntheticVideo", "SyntheticInteractions",
]

#: Interaction classes of :class:`SyntheticInteractions`; a video's ``label`` indexes its dataset's ``classes``
#: (all of these, in this order, by default). Roles: ``A`` moves, ``B`` and ``C`` take part.
CLASSES: Tuple[str, ...] = (
    "move_closer",    # A travels straight towards B and stops next to it
    "move_apart",     # A starts next to B and travels straight away from it (A's path: same law as above)
    "pass_between",   # A travels straight through the gap between B and C (three actors)
    "pass_by",        # A travels straight past B, on one side only
    "orbit",          # A circles around B
    "follow",         # A trails B along B's curved path, a fixed distance behind
    "hit",            # A runs into B and stops; B then moves off in A's direction
    "swap",           # A and B exchange places, passing each other
    "jump",           # A hops up and lands back
)

#: Number of actors each class needs.
ACTORS_PER_CLASS: Dict[str, int] = {
    "move_closer": 2, "move_apart": 2, "pass_between": 3, "pass_by": 2, "orbit": 2, "follow": 2, "hit": 2,
    "swap": 2, "jump": 1,
}


#: Object colours (RGB). Pairwise they differ by at least 70 in some channel, and each differs from every grey
#: background value by more than 30 in some channel, so a colour mask finds one object.
PALETTE: Tensor = torch.tensor([
    [220, 40, 40], [40, 190, 60], [50, 80, 230], [235, 210, 40],
    [210, 50, 200], [40, 200, 210], [240, 130, 30], [120, 50, 170],
], dtype=torch.uint8)

_SPLITS = {"train": 0, "val": 1, "test": 2}
_MIN_SIDE = 32
_MIN_FRAMES = 4


def _item_rng(seed: int, split: int, stream: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, split, stream, index]))


def _check_count(name: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"'{name}' must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"'{name}' must be >= {minimum}, got {value}")
    return int(value)


def _check_range(name: str, value: Union[int, float, Sequence], minimum: float, integer: bool = True
                 ) -> Tuple:
    """Accepts a number or a ``(low, high)`` pair; returns the pair."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2:
        raise ValueError(f"'{name}' must be a number or a pair (low, high), got {value!r}")
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if any(isinstance(v, bool) or not isinstance(v, kinds) for v in pair):
        raise TypeError(f"'{name}' must hold {'integers' if integer else 'numbers'}, got {value!r}")
    low, high = pair
    if low > high:
        raise ValueError(f"'{name}' must have low <= high, got {value!r}")
    if low < minimum:
        raise ValueError(f"'{name}' must be >= {minimum}, got {value!r}")
    return (int(low), int(high)) if integer else (float(low), float(high))


def _check_split(split: str) -> int:
    if split not in _SPLITS:
        raise ValueError(f"'split' must be one of {sorted(_SPLITS)}, got {split!r}")
    return _SPLITS[split]


def _balanced_labels(num_items: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Consecutive blocks of ``num_classes`` items hold every class once, in a random order (so any prefix is
    balanced to within one item per class, and item ``i``'s label does not depend on ``num_items``)."""
    blocks = -(-num_items // num_classes)
    return np.concatenate([rng.permutation(num_classes) for _ in range(blocks)])[:num_items]


# ---------------------------------------------------------------------------------------------------------------
# Trimmed interaction videos
# ---------------------------------------------------------------------------------------------------------------
def _mean_rgb(frames: Tensor, boxes: Tensor) -> Tensor:
    """Mean colour (in ``[0, 1]``) of the pixels whose centres fall in each box: ``boxes [..., T, 4]`` over
    ``frames [T, H, W, 3]`` gives ``[..., T, 3]``; a box holding no pixel centre takes its nearest pixel."""
    T, H, W, _ = frames.shape
    ys = torch.arange(H, dtype=boxes.dtype) + 0.5
    xs = torch.arange(W, dtype=boxes.dtype) + 0.5
    # Grow every box to hold at least the pixel centre nearest its own centre (tiny boxes see one pixel).
    nearest = ((boxes[..., :2] + boxes[..., 2:]) / 2).floor()
    nearest = torch.minimum(nearest.clamp(min=0), torch.tensor([W - 1, H - 1], dtype=boxes.dtype)) + 0.5
    b = torch.cat([torch.minimum(boxes[..., :2], nearest), torch.maximum(boxes[..., 2:], nearest)], dim=-1)
    in_x = (xs >= b[..., 0:1]) & (xs <= b[..., 2:3])              # [..., T, W]
    in_y = (ys >= b[..., 1:2]) & (ys <= b[..., 3:4])              # [..., T, H]
    weights = in_y.to(torch.float32)[..., :, None] * in_x.to(torch.float32)[..., None, :]   # [..., T, H, W]
    sums = torch.einsum("...thw,thwc->...tc", weights, frames.to(torch.float32))
    counts = weights.sum(dim=(-2, -1))[..., None]
    return sums / counts.clamp(min=1) / 255.0


def _jitter_boxes(boxes: Tensor, scale: float, frame_size: Tuple[int, int], generator: torch.Generator) -> Tensor:
    """Moves each box edge by Gaussian noise of ``scale`` times the box side, keeping it valid and in the frame."""
    size = torch.cat([boxes[..., 2:] - boxes[..., :2]] * 2, dim=-1)
    noisy = boxes + scale * size * torch.randn(boxes.shape, generator=generator)
    H, W = frame_size
    limit = torch.tensor([W, H, W, H], dtype=boxes.dtype)
    noisy = torch.minimum(noisy.clamp(min=0), limit)
    low = torch.minimum(noisy[..., :2], noisy[..., 2:])
    high = torch.maximum(noisy[..., :2], noisy[..., 2:])
    return torch.cat([low, high], dim=-1)


@dataclass(eq=False)
class SyntheticVideo:
    r"""One synthetic interaction video.

    Attributes:
        frames: ``uint8 [T, H, W, 3]`` RGB frames.
        boxes: ``float32 [O, T, 4]`` per-frame ``xyxy`` pixel box of every object (the extent of its shape;
            every pixel whose centre lies in the shape lies in the box).
        label: class index into the generating dataset's ``classes``.
        class_name: the class's name (one of :data:`CLASSES`).
        roles: ``long [O]``: ``0`` for actor A (the mover), ``1`` for B, ``2`` for C, ``-1`` for a distractor.
        shapes: ``long [O]`` index into :data:`SHAPES`.
        colours: ``uint8 [O, 3]`` RGB colour of every object (distinct within a video).
        seed: the integer the item was generated from; it also seeds :meth:`tubelets` / :meth:`regions` noise
            when no generator is given.
    """
    frames: Tensor
    boxes: Tensor
    label: int
    class_name: str
    roles: Tensor
    shapes: Tensor
    colours: Tensor
    seed: int

    @property
    def actors(self) -> Tensor:
        """``bool [O]``: which objects take part in the action."""
        return self.roles >= 0

    @property
    def num_objects(self) -> int:
        return self.boxes.size(0)

    @property
    def num_frames(self) -> int:
        return self.frames.size(0)

    @property
    def frame_size(self) -> Tuple[int, int]:
        return int(self.frames.size(1)), int(self.frames.size(2))

    def _generator(self, generator: Optional[torch.Generator], stream: int) -> torch.Generator:
        if generator is not None:
            if not isinstance(generator, torch.Generator):
                raise TypeError(f"'generator' must be a torch.Generator, got {type(generator).__name__}")
            return generator
        return torch.Generator().manual_seed((self.seed * 7919 + stream) % (2 ** 63))

    def tubelets(self, num_clips: int = 4, *, jitter: float = 0.0, features: bool = True,
                 generator: Optional[torch.Generator] = None) -> Tubelets:
        r"""Splits the video into ``num_clips`` clips of equal length; each object's track in each clip is one
        tubelet, so ``N = num_clips * O``, ordered by clip then object.

        Args:
            num_clips: number of clips; must divide the number of frames. Default ``4``.
            jitter: standard deviation of the per-frame box-edge noise, relative to the box side (a detector's
                error). Default ``0``.
            features: attach ``[N, 3]`` mean RGB (in ``[0, 1]``) inside the boxes over the clip, a cheap
                appearance descriptor for graph building without a CNN. Default ``True``.
            generator: source of the jitter; default: a generator seeded from the video's ``seed``.
        """
        num_clips = _check_count("num_clips", num_clips)
        T, O = self.num_frames, self.num_objects
        if T % num_clips != 0:
            raise ValueError(f"'num_clips' must divide the number of frames ({T}), got {num_clips}")
        boxes = self._boxes(jitter, generator, stream=0)            # [O, T, 4]
        per_clip = T // num_clips
        tubes = boxes.view(O, num_clips, per_clip, 4).transpose(0, 1).reshape(num_clips * O, per_clip, 4)
        clip = torch.arange(num_clips).repeat_interleave(O)
        feats = None
        if features:
            rgb = _mean_rgb(self.frames, boxes)                     # [O, T, 3]
            feats = rgb.view(O, num_clips, per_clip, 3).mean(dim=2).transpose(0, 1).reshape(num_clips * O, 3)
        return Tubelets(tubes, clip, feats, label=self.label, frame_size=self.frame_size)

    def regions(self, *, jitter: float = 0.0, num_false: int = 0, features: bool = True,
                generator: Optional[torch.Generator] = None) -> Regions:
        r"""Per-frame boxes of all objects, as a detector would give them: in each frame the ``O`` objects (in
        video order) and then ``num_false`` false boxes at random places.

        Args:
            jitter: per-frame box-edge noise relative to the box side. Default ``0``.
            num_false: false detections per frame, of object-like sizes, uniformly placed. Default ``0``.
            features: attach ``[N, 3]`` mean RGB inside each box. Default ``True``.
            generator: source of the noise; default: a generator seeded from the video's ``seed``.

        ``scores`` are uniform in ``[0.6, 1]`` for true boxes and in ``[0.05, 0.6)`` for false ones.
        """
        num_false = _check_count("num_false", num_false, minimum=0)
        generator = self._generator(generator, stream=1)
        T, O = self.num_frames, self.num_objects
        boxes = self._boxes(jitter, generator, stream=1).transpose(0, 1)   # [T, O, 4]
        scores = 0.6 + 0.4 * torch.rand((T, O), generator=generator)
        if num_false:
            H, W = self.frame_size
            sides = self.boxes[..., 2:] - self.boxes[..., :2]
            low, high = float(sides.min()), float(sides.max())
            size = low + (high - low) * torch.rand((T, num_false, 2), generator=generator)
            limit = torch.tensor([W, H], dtype=torch.float32)
            corner = torch.rand((T, num_false, 2), generator=generator) * (limit - size)
            boxes = torch.cat([boxes, torch.cat([corner, corner + size], dim=-1)], dim=1)
            scores = torch.cat([scores, 0.05 + 0.55 * torch.rand((T, num_false), generator=generator)], dim=1)
        feats = _mean_rgb(self.frames, boxes.transpose(0, 1)).transpose(0, 1).reshape(-1, 3) if features else None
        frame = torch.arange(T).repeat_interleave(boxes.size(1))
        return Regions(boxes.reshape(-1, 4), frame, feats, scores.reshape(-1), label=self.label,
                       frame_size=self.frame_size)

    def _boxes(self, jitter: float, generator: Optional[torch.Generator], stream: int) -> Tensor:
        if not jitter >= 0:
            raise ValueError(f"'jitter' must be >= 0, got {jitter!r}")
        if jitter == 0:
            return self.boxes
        return _jitter_boxes(self.boxes, float(jitter), self.frame_size, self._generator(generator, stream))


class SyntheticInteractions(Dataset):
    r"""Trimmed videos of drawn objects performing one of :data:`CLASSES`, with exact boxes.

    Every video holds between ``num_objects[0]`` and ``num_objects[1]`` objects: the actors of its class and
    distractors that drift and random-walk on their own, kept clear of the other objects. Shapes, colours
    (distinct within a video) and sizes are random and independent of class and role. Labels are balanced: each
    consecutive block of ``len(classes)`` items holds every class once.

    Args:
        num_videos: number of videos.
        num_frames: frames per video ``T`` (``>= 4``). Default ``16``.
        frame_size: ``(H, W)``, each side ``>= 32``. Default ``(64, 64)``.
        num_objects: objects per video, an integer or an inclusive ``(low, high)`` range; ``low`` must cover the
            actors of every class used (3 with ``pass_between``), ``high <= 8``. Default ``(3, 5)``.
        classes: names of the classes to generate, in label order. Default: all of :data:`CLASSES`.
        object_size: range of an object's half side, relative to ``min(H, W)``. Default ``(0.06, 0.08)``.
        noise: standard deviation of the per-pixel Gaussian noise, relative to 255. Default ``0.02``.
        seed: root seed. Default ``0``.
        split: ``"train"``, ``"val"`` or ``"test"``: disjoint streams of videos from the same seed.
            Default ``"train"``.

    Example::

        train, test = SyntheticInteractions.splits(800, 200, seed=0)
        video = train[0]            # SyntheticVideo: frames [16, 64, 64, 3] uint8, boxes [O, 16, 4]
        graph = videograph.build_graph(video.tubelets(num_clips=4))
    """

    def __init__(self, num_videos: int, *, num_frames: int = 16, frame_size: Tuple[int, int] = (64, 64),
                 num_objects: Union[int, Tuple[int, int]] = (3, 5), classes: Optional[Sequence[str]] = None,
                 object_size: Tuple[float, float] = (0.06, 0.08), noise: float = 0.02, seed: int = 0,
                 split: str = "train"):
        self.num_videos = _check_count("num_videos", num_videos)
        self.num_frames = _check_count("num_frames", num_frames, minimum=_MIN_FRAMES)
        try:
            height, width = (int(v) for v in frame_size)
        except (TypeError, ValueError):
            raise TypeError(f"'frame_size' must be a pair (H, W) of integers, got {frame_size!r}") from None
        if min(height, width) < _MIN_SIDE:
            raise ValueError(f"'frame_size' must be at least {_MIN_SIDE} pixels on each side, got {(height, width)}")
        self.frame_size = (height, width)
        self.classes: Tuple[str, ...] = CLASSES if classes is None else tuple(classes)
        unknown = [c for c in self.classes if c not in CLASSES]
        if unknown or not self.classes or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"'classes' must be distinct names from {CLASSES}, got {classes!r}")
        self.num_objects = _check_range("num_objects", num_objects, minimum=1)
        needed = max(ACTORS_PER_CLASS[c] for c in self.classes)
        if self.num_objects[0] < needed:
            raise ValueError(f"'num_objects' must be at least {needed} (the actors of the classes used), got "
                             f"{num_objects!r}")
        if self.num_objects[1] > len(PALETTE):
            raise ValueError(f"'num_objects' must be at most {len(PALETTE)} (one colour each), got {num_objects!r}")
        self.object_size = _check_range("object_size", object_size, minimum=0.0, integer=False)
        if not (0.0 < self.object_size[0] and self.object_size[1] <= 0.12):
            raise ValueError(f"'object_size' must lie in (0, 0.12] of the frame side, got {object_size!r}")
        if not 0.0 <= float(noise) < 1.0:
            raise ValueError(f"'noise' must lie in [0, 1), got {noise!r}")
        self.noise = float(noise)
        self.seed = _check_count("seed", seed, minimum=0)
        self.split = split
        self._salt = _check_split(split)
        self.labels = torch.from_numpy(
            _balanced_labels(self.num_videos, len(self.classes), _item_rng(self.seed, self._salt, 1, 0)))

    @classmethod
    def splits(cls, num_train: int, num_test: int, *, seed: int = 0, **kwargs
               ) -> Tuple["SyntheticInteractions", "SyntheticInteractions"]:
        """A train and a test set with the same settings and disjoint videos."""
        return cls(num_train, seed=seed, split="train", **kwargs), cls(num_test, seed=seed, split="test", **kwargs)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return self.num_videos

    def __getitem__(self, index: int) -> SyntheticVideo:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"'index' must be an integer, got {type(index).__name__}")
        if not -self.num_videos <= index < self.num_videos:
            raise IndexError(f"'index' {index} is out of range for {self.num_videos} videos")
        index = int(index) % self.num_videos
        state = np.random.SeedSequence([self.seed, self._salt, 0, index]).generate_state(2, dtype=np.uint32)
        item_seed = (int(state[0]) << 31) ^ int(state[1])
        rng = np.random.default_rng(item_seed)
        label = int(self.labels[index])
        name = self.classes[label]
        H, W = self.frame_size
        T, L = self.num_frames, float(min(H, W))

        count = int(rng.integers(self.num_objects[0], self.num_objects[1] + 1))
        radii = rng.uniform(*self.object_size, count) * L
        shapes = rng.integers(0, len(SHAPES), count)
        colours = PALETTE.numpy()[rng.choice(len(PALETTE), count, replace=False)]
        scene = _Scene(rng, T, H, W)
        num_actors = ACTORS_PER_CLASS[name]
        centres = list(scene.actors(name, radii[:num_actors]))
        for k in range(num_actors, count):
            centres.append(scene.distractor(radii[k], np.stack(centres), radii[:k]))
        centres_arr = np.stack(centres)
        # Keep every box in the frame (the builders leave room, so this only trims rare wander excursions).
        centres_arr[..., 0] = np.clip(centres_arr[..., 0], radii[:, None], W - radii[:, None])
        centres_arr[..., 1] = np.clip(centres_arr[..., 1], radii[:, None], H - radii[:, None])
        roles = np.concatenate([np.arange(num_actors), np.full(count - num_actors, -1)])

        order = rng.permutation(count)                # video order = drawing order; roles are not positional
        centres_arr, radii, shapes, colours, roles = (a[order] for a in (centres_arr, radii, shapes, colours, roles))
        frames = _render(centres_arr, radii, shapes, colours, H, W, self.noise, rng)
        r = radii[:, None, None]
        boxes = np.concatenate([centres_arr - r, centres_arr + r], axis=-1)
        return SyntheticVideo(
            frames=torch.from_numpy(frames), boxes=torch.from_numpy(boxes.astype(np.float32)), label=label,
            class_name=name, roles=torch.from_numpy(roles.astype(np.int64)),
            shapes=torch.from_numpy(shapes.astype(np.int64)), colours=torch.from_numpy(colours.copy()),
            seed=item_seed)

    def __iter__(self):
        return (self[i] for i in range(self.num_videos))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.num_videos}, num_frames={self.num_frames}, "
                f"frame_size={self.frame_size}, num_objects={self.num_objects}, num_classes={self.num_classes}, "
                f"seed={self.seed}, split={self.split!r})")
