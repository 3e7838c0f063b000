r"""Functional Gaussian-mixture estimation and likelihood (MUSLE, Li et al., CVPR 2021, eq. 3-6).

Every function accepts diagonal (``var [K, D]``) or full (``cov [K, D, D]``) covariances and stays finite for
collapsed clusters (all members identical), single-member clusters and components without members: variances
get ``eps`` added, full covariances are factorised by Cholesky with ``eps * I`` added (more jitter only if the
factorisation still fails), and no inverse or determinant is ever formed.
"""
import math
from typing import Tuple

import torch
from torch import Tensor

__all__ = ["gmm_estimate", "gmm_log_prob", "gmm_energy_loss", "gmm_component_log_prob"]

_COVARIANCES = ("diag", "full")


def _check_covariance(covariance: str) -> None:
    if covariance not in _COVARIANCES:
        raise ValueError(f"'covariance' must be 'diag' or 'full', got {covariance!r}")


def _check_x_gamma(x: Tensor, gamma: Tensor) -> None:
    if x.dim() != 2:
        raise ValueError(f"'x' must have shape [N, D], got {tuple(x.shape)}")
    if gamma.dim() != 2 or gamma.size(0) != x.size(0):
        raise ValueError(f"'gamma' must have shape [N, K] with N = {x.size(0)}, got {tuple(gamma.shape)}")


def gmm_estimate(x: Tensor, gamma: Tensor, covariance: str = "full", eps: float = 1e-6
                 ) -> Tuple[Tensor, Tensor, Tensor]:
    r"""Mixture parameters from soft memberships (MUSLE eq. 4).

    .. math::
        \phi_k = \frac{1}{N} \sum_n \gamma_{nk}, \quad
        \mu_k = \frac{\sum_n \gamma_{nk} x_n}{\sum_n \gamma_{nk}}, \quad
        \Sigma_k = \frac{\sum_n \gamma_{nk} (x_n - \mu_k)(x_n - \mu_k)^\top}{\sum_n \gamma_{nk}}

    Args:
        x: ``[N, D]`` samples.
        gamma: ``[N, K]`` memberships (rows sum to one, e.g. a softmax).
        covariance: ``"full"`` or ``"diag"``. Default ``"full"``.
        eps: floor of :math:`\sum_n \gamma_{nk}`, so a component without members gets finite (zero) moments.

    Returns:
        ``phi [K]``, ``mu [K, D]`` and ``cov [K, D, D]`` (full) or ``var [K, D]`` (diag).
    """
    _check_covariance(covariance)
    _check_x_gamma(x, gamma)
    mass = gamma.sum(0)  # [K]
    phi = mass / x.size(0)
    weight = gamma / mass.clamp_min(eps)  # [N, K], columns sum to one
    mu = weight.t() @ x  # [K, D]
    if covariance == "diag":
        # E[x^2] - mu^2 cancels catastrophically for tight clusters: centre first.
        centred = x[:, None, :] - mu[None]  # [N, K, D]
        var = torch.einsum("nk,nkd->kd", weight, centred * centred)
        return phi, mu, var
    centred = x[:, None, :] - mu[None]
    cov = torch.einsum("nk,nkd,nke->kde", weight, centred, centred)
    return phi, mu, cov


def _cholesky(cov: Tensor, eps: float) -> Tensor:
    eye = torch.eye(cov.size(-1), dtype=cov.dtype, device=cov.device)
    jitter = eps
    for _ in range(6):
        factor, info = torch.linalg.cholesky_ex(cov + jitter * eye)
        if not bool(info.any()):
            return factor
        jitter *= 10.0
    raise ValueError(f"'cov' is not positive semi-definite: Cholesky failed even with {jitter / 10:g} * I added")


def gmm_component_log_prob(x: Tensor, mu: Tensor, cov: Tensor, eps: float = 1e-6) -> Tensor:
    r"""Log density of every sample under every Gaussian component, :math:`\log \mathcal{N}(x_n; \mu_k, \Sigma_k)`.

    Args:
        x: ``[N, D]``.
        mu: ``[K, D]``.
        cov: ``[K, D]`` variances (diagonal) or ``[K, D, D]`` covariances (full).
        eps: added to the variances (diagonal) or as ``eps * I`` before the Cholesky factorisation (full).

    Returns:
        ``[N, K]``.
    """
    if mu.dim() != 2 or x.dim() != 2 or x.size(1) != mu.size(1):
        raise ValueError(f"'x' [N, D] and 'mu' [K, D] must agree in D, got {tuple(x.shape)} and {tuple(mu.shape)}")
    dim = x.size(1)
    if cov.shape == mu.shape:
        var = cov + eps
        centred = x[:, None, :] - mu[None]
        maha = (centred * centred / var).sum(-1)  # [N, K]
        log_det = var.log().sum(-1)  # [K]
    elif cov.shape == (mu.size(0), dim, dim):
        factor = _cholesky(cov, eps)  # [K, D, D]
        centred = (x[None, :, :] - mu[:, None, :]).transpose(1, 2)  # [K, D, N]
        solved = torch.linalg.solve_triangular(factor, centred, upper=False)
        maha = (solved * solved).sum(1).t()  # [N, K]
        log_det = 2 * factor.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    else:
        raise ValueError(f"'cov' must have shape [K, D] (diag) or [K, D, D] (full) with K, D = "
                         f"{tuple(mu.shape)}, got {tuple(cov.shape)}")
    return -0.5 * (dim * math.log(2 * math.pi) + log_det + maha)


def gmm_log_prob(x: Tensor, phi: Tensor, mu: Tensor, cov: Tensor, eps: float = 1e-6) -> Tensor:
    r"""Log likelihood of every sample under the mixture (MUSLE eq. 5).

    .. math::
        \log p(x) = \log \sum_k \phi_k \, \mathcal{N}(x; \mu_k, \Sigma_k)

    computed with ``logsumexp`` over components. A component with :math:`\phi_k = 0` contributes nothing and
    no NaN gradient.

    Args:
        x: ``[N, D]``.
        phi: ``[K]`` mixture weights.
        mu: ``[K, D]``.
        cov: ``[K, D]`` (diag) or ``[K, D, D]`` (full).
        eps: see :func:`gmm_component_log_prob`.

    Returns:
        ``[N]``.
    """
    if phi.dim() != 1 or phi.size(0) != mu.size(0):
        raise ValueError(f"'phi' must have shape [K] with K = {mu.size(0)}, got {tuple(phi.shape)}")
    log_phi = phi.clamp_min(torch.finfo(phi.dtype).tiny).log()
    return torch.logsumexp(gmm_component_log_prob(x, mu, cov, eps) + log_phi, dim=-1)


def gmm_energy_loss(x: Tensor, gamma: Tensor, covariance: str = "diag", lambda_cov: float = 0.05,
                    eps: float = 1e-6) -> Tensor:
    r"""MUSLE's training objective (eq. 6): the mixture's mean negative log likelihood on the samples whose
    memberships estimated it, plus a penalty on small variances.

    .. math::
        \mathcal{L} = -\frac{1}{N} \sum_n \log p(x_n) + \lambda \sum_k \sum_i \frac{1}{\Sigma_{k, ii} + \epsilon}

    Args:
        x: ``[N, D]``.
        gamma: ``[N, K]`` memberships.
        covariance: ``"diag"`` (default) or ``"full"``.
        lambda_cov: :math:`\lambda`. Default ``0.05``.
        eps: see :func:`gmm_estimate` and :func:`gmm_component_log_prob`.
    """
    phi, mu, cov = gmm_estimate(x, gamma, covariance, eps)
    log_prob = gmm_log_prob(x, phi, mu, cov, eps)
    diag = cov if covariance == "diag" else cov.diagonal(dim1=-2, dim2=-1)
    return -log_prob.mean() + lambda_cov * (1.0 / (diag + eps)).sum()
