r"""Recognition models: MUSLE, the space-time region graph (STRG), the baselines of MUSLE's ablation; and P-GCN's
temporal action localiser."""
from .base import GCN, Base
from .musle import MUSLE
from .pgcn import PGCNLocalizer
from .strg import STRG

__all__ = ["MUSLE", "STRG", "Base", "GCN", "PGCNLocalizer"]
