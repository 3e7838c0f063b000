from . import functional
from .gmm import GaussianMixture

__all__ = ["functional", "GaussianMixture"]
