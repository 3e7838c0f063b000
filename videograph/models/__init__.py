r"""Models: MUSLE, the space-time region graph (STRG), the baselines of MUSLE's ablation, P-GCN's temporal action
localiser, the LGD-3D / LGD-2D networks, and U2S around any video backbone."""
from .backbones import Small3DCNN, split_backbone
from .base import GCN, Base
from .lgd import LGD2D, LGD3D
from .musle import MUSLE
from .pgcn import PGCNLocalizer
from .strg import STRG
from .u2s import STAGES, U2S, U2SOutput, fit_u2s

__all__ = ["MUSLE", "STRG", "Base", "GCN", "PGCNLocalizer", "LGD3D", "LGD2D", "U2S", "U2SOutput", "STAGES",
           "fit_u2s", "Small3DCNN", "split_backbone"]
