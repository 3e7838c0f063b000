import os

import pytest
import torch


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
