import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from videograph.nn.functional import gmm_energy_loss, gmm_estimate, gmm_log_prob


def sample(generator, n=40, d=3, k=4):
    x = torch.randn(n, d, generator=generator, dtype=torch.float64)
    gamma = torch.softmax(torch.randn(n, k, generator=generator, dtype=torch.float64), -1)
    return x, gamma


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_estimate_matches_weighted_moments(generator, covariance):
    x, gamma = sample(generator)
    phi, mu, cov = gmm_estimate(x, gamma, covariance)
    xs, gs = x.numpy(), gamma.numpy()
    for k in range(gs.shape[1]):
        w = gs[:, k]
        mean = (w[:, None] * xs).sum(0) / w.sum()
        full = np.einsum("n,ni,nj->ij", w, xs - mean, xs - mean) / w.sum()
        np.testing.assert_allclose(phi[k], w.mean())
        np.testing.assert_allclose(mu[k], mean)
        np.testing.assert_allclose(cov[k], full if covariance == "full" else np.diag(full), atol=1e-12)


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_log_prob_matches_scipy(generator, covariance):
    x, gamma = sample(generator)
    phi, mu, cov = gmm_estimate(x, gamma, covariance)
    ours = gmm_log_prob(x, phi, mu, cov, eps=0.0)
    dense = cov if covariance == "full" else torch.diag_embed(cov)
    density = sum(phi[k].item() * multivariate_normal.pdf(x.numpy(), mu[k].numpy(), dense[k].numpy())
                  for k in range(len(phi)))
    np.testing.assert_allclose(ours.numpy(), np.log(density), rtol=1e-10)


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_energy_loss_is_eq6(generator, covariance):
    """Oracle: NumPy's weighted moments, scipy's mixture density and the penalty summed by a loop."""
    x, gamma = sample(generator)
    xs, gs = x.numpy(), gamma.numpy()
    eps, lam = 1e-6, 0.05
    density, penalty = np.zeros(len(xs)), 0.0
    for k in range(gs.shape[1]):
        w = gs[:, k]
        mean = (w[:, None] * xs).sum(0) / w.sum()
        full = np.einsum("n,ni,nj->ij", w, xs - mean, xs - mean) / w.sum()
        cov = full if covariance == "full" else np.diag(np.diag(full))
        density += w.mean() * multivariate_normal.pdf(xs, mean, cov + eps * np.eye(len(mean)))
        for i in range(len(mean)):
            penalty += lam / (full[i, i] + eps)
    expected = -np.log(density).mean() + penalty
    np.testing.assert_allclose(float(gmm_energy_loss(x, gamma, covariance, lam, eps)), expected, rtol=1e-10)


def degenerate_cases(generator):
    x, gamma = sample(generator)
    identical = x[:1].expand(10, -1).clone()
    empty = gamma.clone()
    empty[:, 0] = 0
    empty = empty / empty.sum(1, keepdim=True)
    one_member = torch.zeros(10, 2, dtype=torch.float64)
    one_member[0, 0] = 1
    one_member[1:, 1] = 1
    wide = torch.randn(3, 50, generator=generator, dtype=torch.float64)
    return {
        "all x identical": (identical, torch.softmax(torch.randn(10, 3, generator=generator, dtype=torch.float64), -1)),
        "component without members": (x, empty),
        "single-member component": (torch.randn(10, 3, generator=generator, dtype=torch.float64), one_member),
        "one sample": (x[:1], gamma[:1]),
        "D much larger than N": (wide, torch.softmax(torch.randn(3, 2, generator=generator, dtype=torch.float64), -1)),
        "K = 1": (x, torch.ones(x.size(0), 1, dtype=torch.float64)),
    }


@pytest.mark.parametrize("covariance", ["full", "diag"])
@pytest.mark.parametrize("case", list(degenerate_cases(torch.Generator().manual_seed(0))))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_degenerate_cases_stay_finite(case, covariance, dtype):
    x, gamma = degenerate_cases(torch.Generator().manual_seed(0))[case]
    x = x.to(dtype).requires_grad_()
    logits = gamma.clamp_min(1e-30).log().to(dtype).requires_grad_()
    loss = gmm_energy_loss(x, torch.softmax(logits, -1), covariance)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(x.grad).all() and torch.isfinite(logits.grad).all()


def test_gradcheck(generator):
    x, gamma = sample(generator, n=8, d=2, k=2)
    logits = gamma.log().requires_grad_()
    for covariance in ("full", "diag"):
        assert torch.autograd.gradcheck(lambda l, v: gmm_energy_loss(v, torch.softmax(l, -1), covariance),
                                        (logits, x.clone().requires_grad_()))


@pytest.mark.parametrize("call, match", [
    (lambda: gmm_estimate(torch.zeros(3), torch.zeros(3, 2)), "'x'"),
    (lambda: gmm_estimate(torch.zeros(3, 2), torch.zeros(4, 2)), "'gamma'"),
    (lambda: gmm_estimate(torch.zeros(3, 2), torch.zeros(3, 2), "spherical"), "'covariance'"),
    (lambda: gmm_log_prob(torch.zeros(3, 2), torch.ones(2), torch.zeros(2, 2), torch.ones(2, 3)), "'cov'"),
    (lambda: gmm_log_prob(torch.zeros(3, 2), torch.ones(3), torch.zeros(2, 2), torch.ones(2, 2)), "'phi'"),
    (lambda: gmm_log_prob(torch.zeros(3, 4), torch.ones(2), torch.zeros(2, 2), torch.ones(2, 2)), "'x'"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
