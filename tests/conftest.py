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


def _rank_batches(num_items, world_size, batch_size, seed, epoch):
    """``[rank][step] -> indices``: what each rank's ``DistributedSampler(shuffle=True, seed, drop_last=True)``
    gives it at ``epoch``, cut into batches of ``batch_size`` (as ``train``'s loader does)."""
    from torch.utils.data import DistributedSampler
    per_rank = []
    for rank in range(world_size):
        sampler = DistributedSampler(range(num_items), world_size, rank, shuffle=True, seed=seed, drop_last=True)
        sampler.set_epoch(epoch)
        indices = list(sampler)
        per_rank.append([indices[i:i + batch_size] for i in range(0, len(indices), batch_size)])
    return per_rank


@pytest.fixture
def rank_batches():
    """The DDP tests' schedule of the ranks' batches (:func:`_rank_batches`), for their one-process references."""
    return _rank_batches
