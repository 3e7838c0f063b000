r"""The scenes of :class:`~videograph.datasets.SyntheticInteractions`: the actors' motions of every interaction
class, wandering distractors, and the renderer that draws the shapes with noise (private helpers)."""
from typing import Callable, Optional, Tuple

import numpy as np
import torch

#: Shapes an object can take; every shape of half-size ``r`` centred at ``(cx, cy)`` has the box
#: ``(cx - r, cy - r, cx + r, cy + r)``.
SHAPES: Tuple[str, ...] = ("square", "disc", "triangle", "diamond")

# Standard normal quantiles at the midpoints of 256 equal-probability bins.
_GAUSSIAN_QUANTILES = (2 ** 0.5 * torch.erfinv(2 * (torch.arange(256, dtype=torch.float64) + 0.5) / 256 - 1)
                       ).to(torch.float32).numpy()


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
