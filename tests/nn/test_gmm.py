import io

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from videograph.nn import GaussianMixture


@pytest.fixture
def x(generator):
    return torch.randn(50, 4, generator=generator)


def _weighted_moments(x, gamma, covariance):
    """NumPy oracle of eq. 4: weights, means and (co)variances of soft memberships, in float64."""
    xs, gs = x.double().numpy(), gamma.double().numpy()
    mass = gs.sum(0)
    mean = gs.T @ xs / mass[:, None]
    full = np.stack([np.einsum("n,ni,nj->ij", gs[:, j], xs - mean[j], xs - mean[j]) / mass[j]
                     for j in range(gs.shape[1])])
    return mass / len(xs), mean, (full if covariance == "full" else np.diagonal(full, axis1=1, axis2=2))


def _scipy_log_prob(x, phi, mu, cov, eps=1e-6):
    """log sum_k phi_k N(x; mu_k, cov_k + eps I) by scipy, for diagonal ([K, D]) or full ([K, D, D]) cov."""
    x, phi, mu, cov = (np.asarray(v, dtype=np.float64) for v in (x, phi, mu, cov))
    dense = cov if cov.ndim == 3 else np.stack([np.diag(c) for c in cov])
    eye = eps * np.eye(mu.shape[1])
    return logsumexp(np.stack([np.log(phi[k]) + multivariate_normal.logpdf(x, mu[k], dense[k] + eye)
                               for k in range(len(phi))], -1), -1)


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_training_uses_the_batch_and_eval_the_running_mixture(x, covariance):
    """Oracle: NumPy's weighted moments of the memberships and scipy's densities."""
    torch.manual_seed(0)
    gmm = GaussianMixture(4, num_components=3, covariance=covariance).double()
    x = x.double()
    phi, mu, cov = _weighted_moments(x, gmm.membership(x).detach(), covariance)
    np.testing.assert_allclose(gmm(x).detach().numpy(), _scipy_log_prob(x, phi, mu, cov), rtol=1e-10)
    gmm.eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        gmm.running_phi.copy_(torch.tensor([0.2, 0.5, 0.3]))
        gmm.running_mu.copy_(torch.randn(3, 4, generator=generator))
        spread = torch.randn(3, 4, 4, generator=generator, dtype=torch.float64)
        gmm.running_cov.copy_(0.5 + torch.rand(3, 4, generator=generator) if covariance == "diag" else
                              spread @ spread.transpose(1, 2) + torch.eye(4))
    np.testing.assert_allclose(gmm(x[:5]).numpy(), _scipy_log_prob(x[:5], gmm.running_phi, gmm.running_mu,
                                                                  gmm.running_cov), rtol=1e-10)


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_running_estimates_average_with_momentum(x, covariance):
    """Two steps from the initial estimates (phi = 1/K, mu = 0, Sigma = I): r <- (1 - m) r + m batch, each time;
    a wrong update (e.g. no decay of the old value) moves phi and Sigma, which start non-zero."""
    torch.manual_seed(0)
    m = 0.25
    gmm = GaussianMixture(4, num_components=2, covariance=covariance, momentum=m).double()
    x = x.double()
    expected = [np.full(2, 0.5), np.zeros((2, 4)), np.ones((2, 4)) if covariance == "diag" else
                np.stack([np.eye(4)] * 2)]
    for batch in (x[:25], x[25:] + 3.0):
        batch_estimates = _weighted_moments(batch, gmm.membership(batch).detach(), covariance)
        gmm.loss(batch)
        expected = [(1 - m) * old + m * new for old, new in zip(expected, batch_estimates)]
    for buffer, want in zip((gmm.running_phi, gmm.running_mu, gmm.running_cov), expected):
        np.testing.assert_allclose(buffer.numpy(), want, rtol=1e-10, atol=1e-12)
    assert int(gmm.num_batches_tracked) == 2


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_loss_is_eq6(x, covariance):
    """Oracle: -mean log p(x) by scipy under NumPy's moments, plus lambda * sum_k sum_i 1 / (Sigma_kii + eps)."""
    torch.manual_seed(0)
    gmm = GaussianMixture(4, num_components=3, covariance=covariance, lambda_cov=0.05).double()
    x = x.double()
    phi, mu, cov = _weighted_moments(x, gmm.membership(x).detach(), covariance)
    diag = cov if covariance == "diag" else np.diagonal(cov, axis1=1, axis2=2)
    expected = -_scipy_log_prob(x, phi, mu, cov).mean() + 0.05 * (1.0 / (diag + 1e-6)).sum()
    np.testing.assert_allclose(float(gmm.loss(x).detach()), expected, rtol=1e-10)


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_fit_equals_the_estimate_over_all_batches(x, covariance):
    torch.manual_seed(0)
    gmm = GaussianMixture(4, num_components=3, covariance=covariance).double().eval()
    x = x.double() + 50.0
    gmm.fit_(x.split(7))
    phi, mu, cov = _weighted_moments(x, gmm.membership(x).detach(), covariance)
    np.testing.assert_allclose(gmm.running_phi.numpy(), phi, rtol=1e-12)
    np.testing.assert_allclose(gmm.running_mu.numpy(), mu, rtol=1e-12)
    np.testing.assert_allclose(gmm.running_cov.numpy(), cov, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("covariance", ["diag", "full"])
@pytest.mark.parametrize("case", ["collapsed", "single member", "one sample"])
def test_degenerate_clusters_stay_finite(covariance, case):
    """Collapsed clusters (identical samples), a single-member component, one sample: eps and Cholesky keep
    the loss, its gradients, the fit and the running scores finite."""
    torch.manual_seed(0)
    gmm = GaussianMixture(3, num_components=2, covariance=covariance)
    x = {"collapsed": torch.ones(20, 3), "one sample": torch.randn(1, 3),
         "single member": torch.cat([torch.full((1, 3), 9.0), torch.zeros(19, 3)])}[case]
    if case == "single member":
        with torch.no_grad():     # component 1 takes the outlier alone
            gmm.membership_net[0].weight.fill_(1.0)
            gmm.membership_net[0].bias.zero_()
            gmm.membership_net[-1].weight.copy_(torch.tensor([[-50.0] * gmm.hidden_channels, [50.0] * gmm.hidden_channels]))
            gmm.membership_net[-1].bias.copy_(torch.tensor([0.0, -500.0]))
    loss = gmm.loss(x)
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in gmm.parameters())
    gmm.eval().fit_([x])
    assert torch.isfinite(gmm.running_cov).all() and torch.isfinite(gmm(x)).all()


def test_prune_slices_components_and_keeps_the_rest(x):
    torch.manual_seed(0)
    gmm = GaussianMixture(4, num_components=4)
    gmm.running_phi.copy_(torch.tensor([0.5, 0.01, 0.47, 0.02]))
    logits = gmm.membership_net(x)
    gmm.prune_(0.02)
    assert gmm.num_components == 2 and gmm.membership_net[-1].out_features == 2
    torch.testing.assert_close(gmm.membership(x), torch.softmax(logits[:, [0, 2]], -1))
    torch.testing.assert_close(gmm.running_phi, torch.tensor([0.5, 0.47]) / 0.97)
    assert gmm.running_cov.shape == (2, 4)
    # everything below the threshold still keeps the heaviest component
    gmm.running_phi.copy_(torch.tensor([0.01, 0.015]))
    assert gmm.prune_(0.5).num_components == 1
    assert torch.isfinite(gmm.loss(x))


def test_dynamic_k_finds_three_well_separated_clusters():
    """Started at K = 6 on three Gaussians, training with per-epoch pruning ends at K = 3 on their means."""
    generator = torch.Generator().manual_seed(0)
    means = torch.tensor([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])
    x = torch.cat([m + 0.7 * torch.randn(300, 2, generator=generator) for m in means])
    torch.manual_seed(0)
    gmm = GaussianMixture(2, num_components=6, hidden_channels=64)
    optimiser = torch.optim.SGD(gmm.parameters(), lr=0.05, momentum=0.9)  # MUSLE's optimiser
    for epoch in range(30):
        for batch in torch.randperm(len(x), generator=generator).split(100):
            loss = gmm.loss(x[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        gmm.fit_([x])
        if epoch >= 10:  # let the components settle before removing any
            gmm.prune_(0.02)
    assert gmm.num_components == 3
    assert torch.cdist(means, gmm.running_mu).min(1).values.max() < 0.3
    torch.testing.assert_close(gmm.running_phi, torch.full((3,), 1 / 3), atol=0.03, rtol=0)


def test_state_dict_round_trip_with_weights_only(x):
    torch.manual_seed(0)
    gmm = GaussianMixture(4, num_components=3).eval()
    gmm.fit_([x])
    buffer = io.BytesIO()
    torch.save(gmm.state_dict(), buffer)
    buffer.seek(0)
    restored = GaussianMixture(4, num_components=3).eval()
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    torch.testing.assert_close(restored(x), gmm(x))


def test_repr_and_bad_input(x):
    assert repr(GaussianMixture(16, num_components=6)) == "GaussianMixture(16, num_components=6, covariance=diag)"
    gmm = GaussianMixture(4)
    with pytest.raises(ValueError, match="'x'"):
        gmm(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="'x' is empty"):
        gmm(torch.zeros(0, 4))
    with pytest.raises(ValueError, match="'covariance'"):
        GaussianMixture(4, covariance="tied")
    with pytest.raises(ValueError, match="'loader'"):
        gmm.fit_([])


@pytest.mark.parametrize("covariance", ["diag", "full"])
@pytest.mark.parametrize("one_shot", [False, True])
def test_fit_is_one_pass_and_in_eval_mode(x, covariance, one_shot):
    """A one-shot iterator fits like a list; dropout is off while fitting and the mode is restored."""
    torch.manual_seed(0)
    gmm = GaussianMixture(4, num_components=3, covariance=covariance, dropout=0.5).to(torch.float64)
    x = x.double()
    batches = x.split(7)
    gmm.fit_(iter(batches) if one_shot else batches)
    assert gmm.training
    phi, mu, cov = _weighted_moments(x, gmm.eval().membership(x).detach(), covariance)
    np.testing.assert_allclose(gmm.running_phi.numpy(), phi, rtol=1e-12)
    np.testing.assert_allclose(gmm.running_mu.numpy(), mu, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gmm.running_cov.numpy(), cov, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_fit_in_float32_matches_float64_far_from_the_origin(covariance):
    """Batches of a tight cluster far from zero and from each other: float32 moments stay accurate."""
    generator = torch.Generator().manual_seed(5)
    x = torch.cat([1000.0 + 0.1 * torch.randn(200, 3, generator=generator, dtype=torch.float64),
                   -3000.0 + 0.1 * torch.randn(200, 3, generator=generator, dtype=torch.float64)])
    torch.manual_seed(0)
    wide = GaussianMixture(3, num_components=2, covariance=covariance).double().eval()
    narrow = GaussianMixture(3, num_components=2, covariance=covariance).eval()
    narrow.load_state_dict({key: value.float() for key, value in wide.state_dict().items()})
    wide.fit_(x.split(50))
    narrow.fit_(x.float().split(50))
    torch.testing.assert_close(narrow.running_cov.double(), wide.running_cov, rtol=1e-3, atol=1e-6)


def test_checkpoint_after_prune_loads_into_a_fresh_mixture(x):
    torch.manual_seed(0)
    gmm = GaussianMixture(4, num_components=4).eval()
    gmm.fit_([x])
    gmm.running_phi.copy_(torch.tensor([0.5, 0.01, 0.47, 0.02]))
    gmm.prune_(0.02)
    buffer = io.BytesIO()
    torch.save(gmm.state_dict(), buffer)
    buffer.seek(0)
    restored = GaussianMixture(4, num_components=4).eval()
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.num_components == 2
    torch.testing.assert_close(restored(x), gmm(x))
    torch.testing.assert_close(restored.membership(x), gmm.membership(x))
