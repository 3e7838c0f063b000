from .containers import Proposals, Regions, Tubelets

__all__ = ["Tubelets", "Regions", "Proposals"]
