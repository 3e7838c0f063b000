r"""MUSLE's bank of per-class, per-scale Gaussian Mixture prototypes (:class:`PrototypeBank`), one idea a file:

* :mod:`.stack`: the stacked mixtures of one scale (parameters, running estimates, active components);
* :mod:`.statistics`: memberships, eq. 4 moments and :meth:`PrototypeBank.fit_`;
* :mod:`.loss`: eq. 6, :meth:`PrototypeBank.loss`;
* :mod:`.scoring`: the fused search and :meth:`PrototypeBank.class_scores`;
* :mod:`.calibration`: ``scale_reduce`` and :meth:`PrototypeBank.calibrate_`;
* :mod:`.bank`: the module itself (construction, inputs, dynamic K, :meth:`PrototypeBank.mixture`).
"""
from .bank import PrototypeBank
from .stack import BestSubgraphs

__all__ = ["PrototypeBank", "BestSubgraphs"]
