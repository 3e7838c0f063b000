import os

import pytest
import torch


# Triton fixes interpreter or compiler when it is first imported and when each kernel is defined, and any
# test module's imports may be the first to import it: so decide here, before any test module is collected.
# Without a GPU the kernels can only run, and so only be checked, in the interpreter.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

SHARED_DATA = os.environ.get("VIDEOGRAPH_SHARED_DATA",
                             os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))


@pytest.fixture
def shared_data():
    """The real annotation files of ../shared/data; tests that need them skip where it is absent."""
    if not os.path.isdir(SHARED_DATA):
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(0)
