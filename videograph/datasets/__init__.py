r"""Datasets: seeded synthetic videos (and, alongside, readers of real annotation formats)."""
from .synthetic import (ACTORS_PER_CLASS, CLASSES, PALETTE, SHAPES, SyntheticInteractions, SyntheticUntrimmed,
                        SyntheticVideo, UntrimmedVideo)

__all__ = [
    "CLASSES", "ACTORS_PER_CLASS", "SHAPES", "PALETTE", "SyntheticVideo", "SyntheticInteractions",
    "UntrimmedVideo", "SyntheticUntrimmed",
]
