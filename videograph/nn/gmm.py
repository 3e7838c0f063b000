r"""MUSLE's differentiable Gaussian Mixture layer with dynamic K."""
from typing import Iterable, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from .functional import gmm_estimate, gmm_log_prob

__all__ = ["GaussianMixture", "merge_moments"]


@torch.no_grad()
def reset_mixture_stats(phi: Tensor, mu: Tensor, cov: Tensor, covariance: str) -> None:
    """Running estimates before any data: uniform weights, zero means, unit (co)variances, in place.
    The last axes of ``phi [.., K]``, ``mu [.., K, D]``, ``cov [.., K, D(, D)]`` index components and dims."""
    phi.fill_(1.0 / phi.size(-1))
    mu.zero_()
    if covariance == "diag":
        cov.fill_(1.0)
    else:
        cov.copy_(torch.eye(mu.size(-1), dtype=cov.dtype, device=cov.device).expand_as(cov))


@torch.no_grad()
def merge_moments(total: Tuple[Tensor, Tensor, Tensor], index, mass: Tensor, mean: Tensor, m2: Tensor) -> None:
    r"""Adds a batch's weighted moments to running totals in place, by Chan et al.'s pairwise update (stable:
    only centred quantities are ever added, so no :math:`E[x^2] - \mu^2` cancellation).

    ``total = (mass [.., K], mean [.., K, D], m2 [.., K, D(, D)])`` with ``m2`` the weighted sum of squared
    deviations from ``mean``; ``total[i][index]`` are updated with the batch's ``mass``, ``mean`` and ``m2``
    (same trailing shapes). Components without mass on either side are left as the other side has them."""
    t_mass, t_mean, t_m2 = total
    before = t_mass[index]
    combined = before + mass
    share = mass / combined.clamp_min(torch.finfo(combined.dtype).tiny)  # n_b / n, 0 where n = 0
    delta = mean - t_mean[index]
    weight = before * share  # n_a n_b / n
    if m2.dim() == mean.dim():
        spread = delta * delta * weight[..., None]
    else:
        spread = delta[..., :, None] * delta[..., None, :] * weight[..., None, None]
    t_m2[index] = t_m2[index] + m2 + spread
    t_mean[index] = t_mean[index] + delta * share[..., None]
    t_mass[index] = combined


def _batches(loader: Iterable) -> Iterable[Tensor]:
    for batch in loader:
        yield batch[0] if isinstance(batch, (tuple, list)) else batch


class GaussianMixture(nn.Module):
    r"""The Gaussian Mixture layer of `"Representing Videos as Discriminative Sub-graphs for Action
    Recognition" <https://arxiv.org/abs/2201.04027>`_ (MUSLE, eq. 3-6).

    A membership network predicts soft assignments, from which the mixture is estimated in closed form:

    .. math::
        \hat{\gamma} = \mathrm{softmax}(\mathrm{MLP}(x)), \quad
        \phi_k = \frac{1}{N} \sum_n \hat{\gamma}_{nk}, \quad
        \mu_k = \frac{\sum_n \hat{\gamma}_{nk} x_n}{\sum_n \hat{\gamma}_{nk}}, \quad
        \Sigma_k = \frac{\sum_n \hat{\gamma}_{nk} (x_n - \mu_k)(x_n - \mu_k)^\top}{\sum_n \hat{\gamma}_{nk}}

    .. math::
        \log p(x) = \log \sum_k \phi_k \mathcal{N}(x; \mu_k, \Sigma_k), \qquad
        \mathcal{L} = -\frac{1}{N} \sum_n \log p(x_n) + \lambda \sum_k \sum_i \frac{1}{\Sigma_{k, ii}}

    In training mode the mixture comes from the batch and running estimates of :math:`\phi, \mu, \Sigma` are
    updated with ``momentum`` (as :class:`torch.nn.BatchNorm1d` does); in eval mode the running estimates score
    new samples. :meth:`fit_` sets them from a full pass instead.

    **Dynamic K.** Start with ``num_components = 6`` and call :meth:`prune_` at the end of every epoch (after
    :meth:`fit_` when the running estimates should reflect the whole epoch): it removes the components whose
    weight :math:`\phi_k` is at most the threshold (0.02 in the paper), slicing the membership network's last
    layer, until every remaining weight exceeds it.

    Args:
        in_channels (int): size of each sample :math:`D`.
        num_components (int, optional): initial number of components :math:`K`. (default: :obj:`6`)
        hidden_channels (int, optional): width of the membership network's hidden layer.
            (default: :obj:`4 * num_components`)
        covariance (str, optional): ``"diag"`` or ``"full"``. (default: :obj:`"diag"`)
        eps (float, optional): numerical floor, see :mod:`videograph.nn.functional`. (default: :obj:`1e-6`)
        momentum (float, optional): weight of a batch in the running estimates. (default: :obj:`0.1`)
        lambda_cov (float, optional): :math:`\lambda` of eq. 6. (default: :obj:`0.05`)
        dropout (float, optional): dropout in the membership network. (default: :obj:`0.0`)

    Shapes:
        - **input:** samples :math:`(N, D)`
        - **output:** log likelihoods :math:`(N)`; :meth:`loss` a scalar; :meth:`membership` :math:`(N, K)`
    """

    running_phi: Tensor
    running_mu: Tensor
    running_cov: Tensor
    num_batches_tracked: Tensor

    def __init__(self, in_channels: int, num_components: int = 6, hidden_channels: Optional[int] = None,
                 covariance: str = "diag", eps: float = 1e-6, momentum: float = 0.1, lambda_cov: float = 0.05,
                 dropout: float = 0.0):
        super().__init__()
        if in_channels < 1 or num_components < 1:
            raise ValueError(f"'in_channels' and 'num_components' must be positive, got {in_channels}, "
                             f"{num_components}")
        if covariance not in ("diag", "full"):
            raise ValueError(f"'covariance' must be 'diag' or 'full', got {covariance!r}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"'momentum' must lie in [0, 1], got {momentum}")
        self.in_channels = in_channels
        self.num_components = num_components
        self.hidden_channels = hidden_channels or 4 * num_components
        self.covariance = covariance
        self.eps = eps
        self.momentum = momentum
        self.lambda_cov = lambda_cov
        self.membership_net = nn.Sequential(nn.Linear(in_channels, self.hidden_channels), nn.Tanh(),
                                            nn.Dropout(dropout), nn.Linear(self.hidden_channels, num_components))
        cov_shape = (num_components, in_channels) if covariance == "diag" else \
            (num_components, in_channels, in_channels)
        self.register_buffer("running_phi", torch.empty(num_components))
        self.register_buffer("running_mu", torch.empty(num_components, in_channels))
        self.register_buffer("running_cov", torch.empty(cov_shape))
        self.register_buffer("num_batches_tracked", torch.zeros((), dtype=torch.long))
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        reset_mixture_stats(self.running_phi, self.running_mu, self.running_cov, self.covariance)
        self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        for layer in self.membership_net:
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()
        self.reset_running_stats()

    def _check(self, x: Tensor) -> None:
        if x.dim() != 2 or x.size(1) != self.in_channels:
            raise ValueError(f"'x' must have shape [N, {self.in_channels}], got {tuple(x.shape)}")
        if x.size(0) == 0:
            raise ValueError("'x' is empty: the mixture needs at least one sample")

    def membership(self, x: Tensor) -> Tensor:
        r"""Soft assignments :math:`\hat{\gamma}` ``[N, K]``."""
        self._check(x)
        return torch.softmax(self.membership_net(x), dim=-1)

    def _batch_estimate(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        phi, mu, cov = gmm_estimate(x, self.membership(x), self.covariance, self.eps)
        if self.training:
            with torch.no_grad():
                self.running_phi.lerp_(phi.detach().to(self.running_phi), self.momentum)
                self.running_mu.lerp_(mu.detach().to(self.running_mu), self.momentum)
                self.running_cov.lerp_(cov.detach().to(self.running_cov), self.momentum)
                self.num_batches_tracked += 1
        return phi, mu, cov

    def forward(self, x: Tensor) -> Tensor:
        """Log likelihood of each sample: under the batch's mixture in training, the running one in eval."""
        if self.training:
            phi, mu, cov = self._batch_estimate(x)
        else:
            self._check(x)
            phi, mu, cov = self.running_phi, self.running_mu, self.running_cov
        return gmm_log_prob(x, phi, mu, cov, self.eps)

    def loss(self, x: Tensor, return_log_prob: bool = False) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        """Eq. 6 on a batch (always the batch's own mixture); updates the running estimates in training."""
        phi, mu, cov = self._batch_estimate(x)
        log_prob = gmm_log_prob(x, phi, mu, cov, self.eps)
        diag = cov if self.covariance == "diag" else cov.diagonal(dim1=-2, dim2=-1)
        loss = -log_prob.mean() + self.lambda_cov * (1.0 / (diag + self.eps)).sum()
        return (loss, log_prob) if return_log_prob else loss

    @torch.no_grad()
    def fit_(self, loader: Iterable) -> "GaussianMixture":
        """Sets the running estimates to the mixture of a full pass over ``loader`` (tensors ``[N, D]`` or tuples
        whose first item is one; any iterable, a one-shot iterator too). One pass: each batch's moments are
        centred on its own means and merged by Chan et al.'s update (:func:`merge_moments`), which avoids the
        cancellation of :math:`E[x^2] - \\mu^2`. Memberships are computed in eval mode (no dropout); the module's
        mode is restored afterwards."""
        was_training = self.training
        self.eval()
        try:
            count, total = 0, None
            for x in _batches(loader):
                gamma = self.membership(x)
                phi, mean, cov = gmm_estimate(x, gamma, self.covariance, self.eps)
                mass = gamma.sum(0)
                m2 = cov * mass.clamp_min(self.eps).view((-1,) + (1,) * (cov.dim() - 1))
                if total is None:
                    total = (torch.zeros_like(mass), torch.zeros_like(mean), torch.zeros_like(m2))
                merge_moments(total, slice(None), mass, mean, m2)
                count += x.size(0)
            if total is None:
                raise ValueError("'loader' yielded no batch")
            mass, mean, m2 = total
            self.running_phi.copy_(mass / count)
            self.running_mu.copy_(mean)
            self.running_cov.copy_(m2 / mass.clamp_min(self.eps).view((-1,) + (1,) * (m2.dim() - 1)))
        finally:
            self.train(was_training)
        return self

    @torch.no_grad()
    def prune_(self, threshold: float = 0.02) -> "GaussianMixture":
        r"""Removes the components whose running weight :math:`\phi_k` is at most ``threshold``.

        The kept weights are renormalised to sum to one, which only raises them, so one removal leaves every
        weight above the threshold. At least the heaviest component is kept.
        """
        keep = self.running_phi > threshold
        if not bool(keep.any()):
            keep[self.running_phi.argmax()] = True
        if bool(keep.all()):
            return self
        last = self.membership_net[-1]
        new_last = nn.Linear(last.in_features, int(keep.sum()), device=last.weight.device, dtype=last.weight.dtype)
        new_last.weight.copy_(last.weight[keep])
        new_last.bias.copy_(last.bias[keep])
        self.membership_net[-1] = new_last
        phi = self.running_phi[keep]
        self.running_phi = phi / phi.sum()
        self.running_mu = self.running_mu[keep].clone()
        self.running_cov = self.running_cov[keep].clone()
        self.num_components = int(keep.sum())
        return self

    @torch.no_grad()
    def _resize_components(self, num_components: int) -> None:
        """Uninitialised last layer and running estimates with ``num_components`` components (the shapes
        :meth:`prune_` leaves), filled by the checkpoint being loaded."""
        last = self.membership_net[-1]
        self.membership_net[-1] = nn.Linear(last.in_features, num_components, device=last.weight.device,
                                            dtype=last.weight.dtype)
        self.running_phi = self.running_phi.new_empty(num_components)
        self.running_mu = self.running_mu.new_empty(num_components, self.in_channels)
        self.running_cov = self.running_cov.new_empty((num_components,) + self.running_cov.shape[1:])
        self.num_components = num_components

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        phi = state_dict.get(prefix + "running_phi")
        if isinstance(phi, Tensor) and phi.dim() == 1 and phi.numel() != self.num_components:
            self._resize_components(phi.numel())   # a checkpoint taken after prune_
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, num_components={self.num_components}, "
                f"covariance={self.covariance})")
