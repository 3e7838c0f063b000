r"""Indexed reductions: :func:`scatter`, :func:`segment` and the fused
:func:`gather_sum`, with a PyTorch path for every device and Triton kernels
for CUDA. This package imports nothing of videograph but
:mod:`videograph.typing`.
"""
from videograph.ops._dispatch import (
    BACKENDS,
    ENV_VAR,
    REDUCTIONS,
    resolve_backend,
)
from videograph.ops.gather_sum import GatherSum, gather_sum
from videograph.ops.scatter import Scatter, scatter
from videograph.ops.segment import Segment, segment

__all__ = [
    'scatter',
    'segment',
    'gather_sum',
    'Scatter',
    'Segment',
    'GatherSum',
    'resolve_backend',
    'BACKENDS',
    'REDUCTIONS',
    'ENV_VAR',
]
