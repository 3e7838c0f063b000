r"""Recognition models: MUSLE, the space-time region graph (STRG) and the baselines of MUSLE's ablation."""
from .base import GCN, Base
from .lgd import LGD2D, LGD3D
from .musle import MUSLE
from .strg import STRG

__all__ = ["MUSLE", "STRG", "Base", "GCN", "LGD3D", "LGD2D"]
