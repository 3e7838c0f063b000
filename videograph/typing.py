"""Optional accelerators, detected once at import time.

Mirrors :mod:`torch_geometric.typing`: every optional package is imported
under a guard and exposed as a ``WITH_*`` flag plus a module handle
(``object`` when missing). Nothing here is ever required; code branches on the
flags and falls back to pure PyTorch.
"""
import importlib
import warnings
from typing import Any, Tuple


def _optional(name: str, label: str, probe: str = "") -> Tuple[Any, bool]:
    """``(module, True)`` when ``name`` (and its submodule ``probe``) imports, else ``(object, False)``; an
    import that fails other than with ``ImportError`` warns and disables the package."""
    try:
        module = importlib.import_module(name)
        if probe:
            importlib.import_module(f"{name}.{probe}")
        return module, True
    except Exception as e:  # pragma: no cover - depends on the environment
        if not isinstance(e, ImportError):
            warnings.warn(f"An issue occurred while importing '{label}'. Disabling its usage. Stacktrace: {e}",
                          stacklevel=2)
        return object, False


torch_scatter, WITH_TORCH_SCATTER = _optional("torch_scatter", "torch-scatter")
torch_sparse, WITH_TORCH_SPARSE = _optional("torch_sparse", "torch-sparse")
# Importing triton does not decorate any kernel. Triton (3.x) settles
# ``TRITON_INTERPRET`` once kernels start being defined, by any package (PyG
# and torch define some at import), so whoever wants the interpreter sets the
# variable before importing torch_geometric (tests/conftest.py does).
triton, WITH_TRITON = _optional("triton", "triton")
# torchcodec needs the system FFmpeg libraries: without them importing its decoders raises, and the flag is off.
# videograph.io stands alone and detects it the same way, lazily (videograph.io._torchcodec).
torchcodec, WITH_TORCHCODEC = _optional("torchcodec", "torchcodec", probe="decoders")

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
