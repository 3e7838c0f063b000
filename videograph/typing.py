"""Optional accelerators, detected once at import time.

Mirrors :mod:`torch_geometric.typing`: every optional package is imported
under a ``try`` guard and exposed as a ``WITH_*`` flag plus a module handle
(``object`` when missing). Nothing here is ever required; code branches on the
flags and falls back to pure PyTorch.
"""
import warnings

try:
    import torch_scatter  # noqa: F401
    WITH_TORCH_SCATTER = True
except Exception as e:  # pragma: no cover - depends on the environment
    if not isinstance(e, ImportError):
        warnings.warn(
            f"An issue occurred while importing 'torch-scatter'. "
            f"Disabling its usage. Stacktrace: {e}", stacklevel=2)
    torch_scatter = object
    WITH_TORCH_SCATTER = False

try:
    import torch_sparse  # noqa: F401
    WITH_TORCH_SPARSE = True
except Exception as e:  # pragma: no cover - depends on the environment
    if not isinstance(e, ImportError):
        warnings.warn(
            f"An issue occurred while importing 'torch-sparse'. "
            f"Disabling its usage. Stacktrace: {e}", stacklevel=2)
    torch_sparse = object
    WITH_TORCH_SPARSE = False

# Importing triton does not decorate any kernel. Triton (3.x) settles
# ``TRITON_INTERPRET`` once kernels start being defined, by any package (PyG
# and torch define some at import), so whoever wants the interpreter sets the
# variable before importing torch_geometric (tests/conftest.py does).
try:
    import triton  # noqa: F401
    WITH_TRITON = True
except Exception as e:  # pragma: no cover - depends on the environment
    if not isinstance(e, ImportError):
        warnings.warn(
            f"An issue occurred while importing 'triton'. "
            f"Disabling its usage. Stacktrace: {e}", stacklevel=2)
    triton = object
    WITH_TRITON = False

# torchcodec needs the system FFmpeg libraries: without them its import raises, and the flag is off.
# videograph.io stands alone and detects it the same way, lazily (videograph.io._torchcodec).
try:
    import torchcodec.decoders  # noqa: F401
    WITH_TORCHCODEC = True
except Exception as e:  # pragma: no cover - depends on the environment
    if not isinstance(e, ImportError):
        warnings.warn(
            f"An issue occurred while importing 'torchcodec'. "
            f"Disabling its usage. Stacktrace: {e}", stacklevel=2)
    torchcodec = object
    WITH_TORCHCODEC = False

__all__ = [
    'WITH_TORCH_SCATTER',
    'WITH_TORCH_SPARSE',
    'WITH_TRITON',
    'WITH_TORCHCODEC',
    'torch_scatter',
    'torch_sparse',
    'triton',
    'torchcodec',
]
