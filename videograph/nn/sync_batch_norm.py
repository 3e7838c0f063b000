r"""Batch normalisation whose batch statistics are the global batch's in a process group, on any device.

:class:`torch.nn.SyncBatchNorm` refuses CPU tensors (gloo); :class:`SyncBatchNorm1d` is its counterpart for
them, and :func:`convert_sync_batchnorm` picks one of the two per layer."""
import torch
from torch import Tensor, nn

from videograph.distributed import all_reduce_sum, world

__all__ = ["SyncBatchNorm1d", "convert_sync_batchnorm"]


class SyncBatchNorm1d(nn.BatchNorm1d):
    r""":class:`~torch.nn.BatchNorm1d` whose training-mode statistics are those of the global batch when a
    process group of more than one rank is active (a plain :class:`~torch.nn.BatchNorm1d` otherwise):

    .. math::
        n = \sum_r n_r, \quad \mu = \frac{1}{n} \sum_r \sum_{i \in r} x_i, \quad
        \sigma^2 = \frac{1}{n} \sum_r \sum_{i \in r} (x_i - \mu)^2,

    the counts and sums all-reduced first, the squares centred on the global mean and all-reduced after (no
    :math:`E[x^2] - \mu^2` cancellation); both reductions are differentiable
    (:func:`videograph.distributed.all_reduce_sum`), so the gradient is that of one process on the union of the
    ranks' batches. The running estimates move with :math:`\mu` and the unbiased :math:`\sigma^2 n / (n - 1)`, as
    :class:`~torch.nn.BatchNorm1d`'s do. Same arguments, parameters and buffers as
    :class:`~torch.nn.BatchNorm1d` (a state dict moves between the two).

    Shapes:
        - **input:** :math:`(N, C)` or :math:`(N, C, L)`
        - **output:** same shape as the input
    """

    def forward(self, input: Tensor) -> Tensor:
        if not self.training or world()[1] == 1:
            return super().forward(input)
        self._check_input_dim(input)
        dims = [0] + list(range(2, input.dim()))
        shape = [1, -1] + [1] * (input.dim() - 2)
        count = torch.tensor(float(input.numel() // input.size(1)), dtype=input.dtype, device=input.device)
        sums = all_reduce_sum(torch.cat([count.view(1), input.sum(dims)]), differentiable=True)
        n, mean = sums[0].detach(), sums[1:] / sums[0].detach()
        centred = input - mean.view(shape)
        var = all_reduce_sum((centred * centred).sum(dims), differentiable=True) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.detach().to(self.running_mean), factor)
                unbiased = var.detach() * n / (n - 1).clamp_min(1)
                self.running_var.lerp_(unbiased.to(self.running_var), factor)
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every :class:`~torch.nn.BatchNorm1d` replaced by a synchronised one (weights and buffers
    kept): :class:`torch.nn.SyncBatchNorm` on CUDA, :class:`SyncBatchNorm1d` elsewhere. Other batch norms on
    CUDA are converted by :meth:`torch.nn.SyncBatchNorm.convert_sync_batchnorm`."""
    tensors = list(module.parameters()) + list(module.buffers())
    if any(t.device.type == "cuda" for t in tensors):
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if type(module) is nn.BatchNorm1d:
        synced = SyncBatchNorm1d(module.num_features, module.eps, module.momentum, module.affine,
                                 module.track_running_stats)
        floats = [t for t in tensors if t.is_floating_point()]
        if floats:
            synced = synced.to(device=floats[0].device, dtype=floats[0].dtype)
        synced.load_state_dict(module.state_dict())
        return synced.train(module.training)
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child))
    return module
