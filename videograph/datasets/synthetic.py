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
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..data.containers import Regions, Tubelets

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

#: Shapes an object can take; every shape of half-size ``r`` centred at ``(cx, cy)`` has the box
#: ``(cx - r, cy - r, cx + r, cy + r)``.
SHAPES: Tuple[str, ...] = ("square", "disc", "triangle", "diamond")

#: Object colours (RGB). Pairwise they differ by at least 70 in some channel, and each differs from every grey
#: background value by more than 30 in some channel, so a colour mask finds one object.
PALETTE: Tensor = torch.tensor([
    [220, 40, 40], [40, 190, 60], [50, 80, 230], [235, 210, 40],
    [210, 50, 200], [40, 200, 210], [240, 130, 30], [120, 50, 170],
], dtype=torch.uint8)

_SPLITS = {"train": 0, "val": 1, "test": 2}
# Standard normal quantiles at the midpoints of 256 equal-probability bins.
_GAUSSIAN_QUANTILES = (2 ** 0.5 * torch.erfinv(2 * (torch.arange(256, dtype=torch.float64) + 0.5) / 256 - 1)
                       ).to(torch.float32).numpy()
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

def _unit(angle: np.ndarray) -> np.ndarray:
    return np.stack([np.cos(angle), np.sin(angle)], axis=-1)


def _perp(u: np.ndarray) -> np.ndarray:
    return np.stack([-u[..., 1], u[..., 0]], axis=-1)


class _Scene:
    """Geometry of one video: continuous centre trajectories, in pixels, for the actors of one class."""

    def __init__(self, rng: np.random.Generator, num_frames: int, height: int, width: int):
        self.rng = rng
        self.T = num_frames
        self.H = height
        self.W = width
        self.L = float(min(height, width))
        self.tau = np.linspace(0.0, 1.0, num_frames)[:, None]     # [T, 1]

    # Every actor and distractor also carries this wander: linear drift plus a random walk, centred in time.
    # It is time-reversal symmetric in distribution, which move_closer / move_apart rely on.
    def wander(self, count: int) -> np.ndarray:
        rng, T, L = self.rng, self.T, self.L
        drift = _unit(rng.uniform(0, 2 * np.pi, count)) * (0.06 * L * np.sqrt(rng.uniform(0, 1, count)))[:, None]
        steps = rng.normal(0.0, 0.02 * L / np.sqrt(T - 1), (count, T, 2))
        walk = np.cumsum(steps, axis=1)
        walk -= walk.mean(axis=1, keepdims=True)
        jitter = rng.normal(0.0, 0.003 * L, (count, T, 2))
        return drift[:, None, :] * (self.tau[None] - 0.5) + walk + jitter

    def inside(self, centres: np.ndarray, radii: np.ndarray, pad: float) -> bool:
        """Whether every centre ``[n, ..., 2]`` keeps its object ``pad`` pixels away from the frame border."""
        margin = (radii + pad).reshape((-1,) + (1,) * (centres.ndim - 1))
        x, y = centres[..., 0:1], centres[..., 1:2]
        return bool(((x >= margin) & (x <= self.W - margin) & (y >= margin) & (y <= self.H - margin)).all())

    def uniform_point(self, radius: float, pad: float) -> np.ndarray:
        low = radius + pad
        return np.array([self.rng.uniform(low, max(low, self.W - low)), self.rng.uniform(low, max(low, self.H - low))])

    def line(self, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
        return start + self.tau * (stop - start)                    # [T, 2]

    def straight_path(self, radius: float, length: Tuple[float, float], pad: float
                      ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A uniform start point, a uniform direction and a length; returns ``(start, stop, direction)``. The law
        of ``(start, stop)`` is symmetric under swapping them (time reversal)."""
        start = self.uniform_point(radius, pad)
        direction = _unit(self.rng.uniform(0, 2 * np.pi))
        stop = start + self.rng.uniform(*length) * self.L * direction
        return start, stop, direction

    # Each builder returns the actors' centres [n, T, 2] before wander, or None to reject the draw.
    def move_closer(self, radii: np.ndarray) -> Optional[np.ndarray]:
        return self._closer_or_apart(radii, apart=False)

    def move_apart(self, radii: np.ndarray) -> Optional[np.ndarray]:
        return self._closer_or_apart(radii, apart=True)

    def _closer_or_apart(self, radii: np.ndarray, apart: bool) -> Optional[np.ndarray]:
        # A's path (start, stop) is drawn from a reversal-symmetric law and accepted only if B fits at BOTH ends
        # (a reversal-symmetric event). B waits just beyond A's stop (closer) or just behind A's start (apart),
        # with the same offset law. Reversing time maps one class onto the other, so A's path and B's position
        # have exactly the same distribution in both classes: a model looking at one object at a time is at chance.
        rng, L = self.rng, self.L
        start, stop, u = self.straight_path(radii[0], (0.30, 0.45), 0.05 * L)
        reach = radii[0] + radii[1] + rng.uniform(0.02, 0.05) * L
        side = rng.uniform(-0.06, 0.06) * L * _perp(u)
        ahead, behind = stop + reach * u + side, start - reach * u + side
        if not (self.inside(np.stack([start, stop]), radii[[0, 0]], 0.05 * L)
                and self.inside(np.stack([ahead, behind]), radii[[1, 1]], 0.05 * L)):
            return None
        b = behind if apart else ahead
        return np.stack([self.line(start, stop), np.broadcast_to(b, (self.T, 2))])

    def pass_between(self, radii: np.ndarray) -> Optional[np.ndarray]:
        return self._pass(radii, both_sides=True)

    def pass_by(self, radii: np.ndarray) -> Optional[np.ndarray]:
        return self._pass(radii, both_sides=False)

    def _pass(self, radii: np.ndarray, both_sides: bool) -> Optional[np.ndarray]:
        rng, L = self.rng, self.L
        start, stop, u = self.straight_path(radii[0], (0.45, 0.60), 0.05 * L)
        middle, normal = (start + stop) / 2, _perp(u)
        gaps = radii[0] + radii[1:] + rng.uniform(0.03, 0.06, len(radii) - 1) * L
        signs = np.array([1.0, -1.0]) if both_sides else rng.choice([-1.0, 1.0], 1)
        others = middle + (signs * gaps)[:, None] * normal
        if not (self.inside(np.stack([start, stop]), radii[[0, 0]], 0.05 * L)
                and self.inside(others, radii[1:], 0.05 * L)):
            return None
        return np.concatenate([self.line(start, stop)[None], np.broadcast_to(others[:, None], (len(others), self.T, 2))])

    def orbit(self, radii: np.ndarray) -> Optional[np.ndarray]:
        rng, L = self.rng, self.L
        centre = self.uniform_point(radii[1], 0.05 * L)
        distance = radii[0] + radii[1] + rng.uniform(0.06, 0.12) * L
        turn = rng.choice([-1.0, 1.0]) * rng.uniform(1.5, 2.0) * np.pi
        angle = rng.uniform(0, 2 * np.pi) + turn * self.tau[:, 0]
        a = centre + distance * _unit(angle)
        centres = np.stack([a, np.broadcast_to(centre, (self.T, 2))])
        return centres if self.inside(centres, radii, 0.05 * L) else None

    def follow(self, radii: np.ndarray) -> Optional[np.ndarray]:
        rng, L = self.rng, self.L
        start = self.uniform_point(radii[1], 0.05 * L)
        heading = _unit(rng.uniform(0, 2 * np.pi))
        velocity = rng.uniform(0.40, 0.55) * L * heading             # per video length
        bend = rng.uniform(-0.25, 0.25) * L * _perp(heading)
        lag = (radii[0] + radii[1] + rng.uniform(0.04, 0.08) * L) / np.linalg.norm(velocity)   # in video lengths
        def path(tau: np.ndarray) -> np.ndarray:
            return start + tau * velocity + tau ** 2 * bend

        b, a = path(self.tau), path(self.tau - lag)
        centres = np.stack([a, b])
        return centres if self.inside(centres, radii, 0.05 * L) else None

    def hit(self, radii: np.ndarray) -> Optional[np.ndarray]:
        rng, L = self.rng, self.L
        b0 = self.uniform_point(radii[1], 0.05 * L)
        u = _unit(rng.uniform(0, 2 * np.pi))
        contact = b0 - (radii[0] + radii[1] + 0.01 * L) * u
        run = rng.uniform(0.25, 0.35) * L
        push = run * rng.uniform(0.7, 1.0)
        first = np.clip(self.tau / 0.5, 0, 1)
        second = np.clip((self.tau - 0.5) / 0.5, 0, 1)
        a = contact - run * u + first * run * u
        b = b0 + second * push * u
        centres = np.stack([a, b])
        return centres if self.inside(centres, radii, 0.05 * L) else None

    def swap(self, radii: np.ndarray) -> Optional[np.ndarray]:
        rng, L = self.rng, self.L
        p, q, u = self.straight_path(radii[0], (0.35, 0.50), 0.05 * L)
        bump = ((radii[0] + radii[1]) / 2 + rng.uniform(0.02, 0.05) * L) * np.sin(np.pi * self.tau) * _perp(u)
        centres = np.stack([self.line(p, q) + bump, self.line(q, p) - bump])
        return centres if self.inside(centres, radii, 0.05 * L) else None

    def jump(self, radii: np.ndarray) -> Optional[np.ndarray]:
        rng, L = self.rng, self.L
        base = self.uniform_point(radii[0], 0.05 * L)
        height = rng.uniform(0.20, 0.30) * L
        hops = rng.choice([1, 2])
        lift = height * np.abs(np.sin(hops * np.pi * self.tau[:, 0]))
        a = base - lift[:, None] * np.array([0.0, 1.0])
        return a[None] if self.inside(a[None], radii[:1], 0.05 * L) else None

    def actors(self, name: str, radii: np.ndarray) -> np.ndarray:
        build: Callable[[np.ndarray], Optional[np.ndarray]] = getattr(self, name)
        for _ in range(1000):
            centres = build(radii)
            if centres is not None:
                return centres + self.wander(len(radii))
        raise RuntimeError(f"could not place a '{name}' scene in a {self.H}x{self.W} frame; use larger frames")

    def distractor(self, radius: float, placed: np.ndarray, placed_radii: np.ndarray, tries: int = 64
                   ) -> np.ndarray:
        """A wandering object kept clear of the objects already placed: the first of ``tries`` draws whose gap to
        them stays above ``0.1 * L`` all along, else the clearest draw. The clearance keeps a distractor from
        posing as a partner of the action (e.g. resting where A stops)."""
        L = self.L
        low = radius + 0.06 * L
        anchors = np.stack([self.rng.uniform(low, self.W - low, tries), self.rng.uniform(low, self.H - low, tries)], -1)
        paths = anchors[:, None, :] + self.wander(tries)              # [tries, T, 2]
        gap = np.linalg.norm(paths[:, None] - placed[None], axis=-1) - (radius + placed_radii)[None, :, None]
        clearance = gap.min(axis=(1, 2))
        ok = np.flatnonzero(clearance >= 0.1 * L)
        return paths[ok[0] if len(ok) else int(np.argmax(clearance))]


def _render(centres: np.ndarray, radii: np.ndarray, shapes: np.ndarray, colours: np.ndarray, height: int,
            width: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Draws the objects (in order, later ones on top) over a static textured grey background. A pixel ``(i, j)``
    belongs to a shape when its centre ``(j + 0.5, i + 0.5)`` does."""
    T = centres.shape[1]
    ys = np.arange(height, dtype=np.float32) + 0.5
    xs = np.arange(width, dtype=np.float32) + 0.5
    # Low-frequency texture: a few random plane waves.
    freq = rng.uniform(-3, 3, (3, 2)) * (2 * np.pi / np.array([width, height]))
    phase = rng.uniform(0, 2 * np.pi, 3)
    texture = sum(np.sin(f[0] * xs[None, :] + f[1] * ys[:, None] + p) for f, p in zip(freq, phase)) / 3
    grey = rng.uniform(80, 130) + 25 * texture
    tint = rng.uniform(-8, 8, 3)
    background = (grey[:, :, None] + tint).astype(np.float32)
    frames = np.broadcast_to(background, (T, height, width, 3)).copy()
    frame_index = np.arange(T)[:, None, None]
    for centre, radius, shape, colour in zip(centres.astype(np.float32), radii, shapes, colours):
        # Only a window around the object is tested: its side covers the shape's box wherever it falls.
        side = min(int(np.ceil(2 * radius)) + 2, height, width)
        left = np.clip(np.floor(centre[:, 0] - radius).astype(np.int64), 0, width - side)
        top = np.clip(np.floor(centre[:, 1] - radius).astype(np.int64), 0, height - side)
        cols = left[:, None] + np.arange(side)                    # [T, side]
        rows = top[:, None] + np.arange(side)
        dx = (cols + 0.5 - centre[:, 0, None])[:, None, :].astype(np.float32)     # [T, 1, side]
        dy = (rows + 0.5 - centre[:, 1, None])[:, :, None].astype(np.float32)     # [T, side, 1]
        r = np.float32(radius)
        if SHAPES[shape] == "square":
            mask = (np.abs(dx) <= r) & (np.abs(dy) <= r)
        elif SHAPES[shape] == "disc":
            mask = dx * dx + dy * dy <= r * r
        elif SHAPES[shape] == "triangle":           # apex up, base at the bottom of the box
            mask = (np.abs(dy) <= r) & (np.abs(dx) <= (dy + r) / 2)
        else:                                       # diamond
            mask = np.abs(dx) + np.abs(dy) <= r
        t, i, j = np.nonzero(mask)
        frames[frame_index[t, 0, 0], rows[t, i], cols[t, j]] = colour
    if noise > 0:
        # Gaussian noise through a quantile table indexed by random bytes: 256 levels, 5x cheaper than normals.
        table = _GAUSSIAN_QUANTILES * np.float32(noise * 255)
        frames += table[np.frombuffer(rng.bytes(frames.size), dtype=np.uint8)].reshape(frames.shape)
    np.rint(frames, out=frames)
    np.clip(frames, 0, 255, out=frames)
    return frames.astype(np.uint8)


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
