import pytest
import torch
from torch import nn

import videograph.nn.sync_batch_norm as sync_module
from videograph.nn.sync_batch_norm import SyncBatchNorm1d, convert_sync_batchnorm


def _pretend_two_ranks(monkeypatch):
    """The synchronised branch with a reduction that is the identity: one rank holding the whole batch."""
    monkeypatch.setattr(sync_module, "world", lambda: (0, 2))
    monkeypatch.setattr(sync_module, "all_reduce_sum", lambda t, differentiable=False: t)


@pytest.mark.parametrize("shape", [(7, 5), (6, 5, 3)])
@pytest.mark.parametrize("momentum, affine", [(0.1, False), (None, True)])
def test_synchronised_branch_equals_batch_norm(monkeypatch, shape, momentum, affine):
    _pretend_two_ranks(monkeypatch)
    torch.manual_seed(0)
    plain = nn.BatchNorm1d(5, momentum=momentum, affine=affine).double()
    if affine:
        with torch.no_grad():
            plain.weight.uniform_(0.5, 1.5)
            plain.bias.uniform_(-1, 1)
    synced = convert_sync_batchnorm(nn.Sequential(nn.BatchNorm1d(5, momentum=momentum, affine=affine).double()))[0]
    synced.load_state_dict(plain.state_dict())
    assert isinstance(synced, SyncBatchNorm1d) and synced.running_mean.dtype == torch.float64
    for step in range(3):
        x = (3 + 2 * torch.randn(shape, dtype=torch.float64)).requires_grad_()
        x2 = x.detach().clone().requires_grad_()
        weights = torch.randn(shape, dtype=torch.float64)
        out, want = synced(x2), plain(x)
        torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)
        (out * weights).sum().backward()
        (want * weights).sum().backward()
        torch.testing.assert_close(x2.grad, x.grad, rtol=1e-10, atol=1e-12)
    for name, value in plain.state_dict().items():
        torch.testing.assert_close(synced.state_dict()[name], value, rtol=1e-12, atol=1e-12)
    if affine:
        torch.testing.assert_close(synced.weight.grad, plain.weight.grad, rtol=1e-10, atol=1e-12)
    synced.eval(), plain.eval()
    x = torch.randn(shape, dtype=torch.float64)
    torch.testing.assert_close(synced(x), plain(x))


def test_convert_keeps_state_dtype_and_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3, affine=False), nn.Sequential(nn.BatchNorm1d(3)))
    model = model.double()
    model(torch.randn(8, 4, dtype=torch.float64))   # moves the running statistics
    model.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    converted = convert_sync_batchnorm(model)
    assert isinstance(converted[1], SyncBatchNorm1d) and isinstance(converted[2][0], SyncBatchNorm1d)
    assert not converted[1].training and not converted[1].affine and converted[2][0].affine
    assert converted.state_dict().keys() == state.keys()
    assert all(torch.equal(converted.state_dict()[k], v) for k, v in state.items())
    assert all(v.dtype == state[k].dtype for k, v in converted.state_dict().items())


def test_outside_a_group_it_is_batch_norm():
    torch.manual_seed(0)
    plain = nn.BatchNorm1d(4)
    synced = SyncBatchNorm1d(4)
    synced.load_state_dict(plain.state_dict())
    x = torch.randn(10, 4)
    assert torch.equal(synced(x), plain(x))
    assert torch.equal(synced.running_var, plain.running_var)
