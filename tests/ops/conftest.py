import os

import pytest
import torch

# Triton decides between the GPU compiler and its CPU interpreter when a
# kernel is defined, i.e. when videograph.ops._triton is first imported, which
# happens lazily inside the tests below. Without a GPU the kernels can only
# run, and so only be checked, in the interpreter.
if not torch.cuda.is_available():
    os.environ.setdefault('TRITON_INTERPRET', '1')


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(0)
