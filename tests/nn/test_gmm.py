import io

import numpy as np

import pytest
import torch

from videograph.nn import GaussianMixture
from videograph.nn.functional import gmm_energy_loss, gmm_estimate, gmm_log_prob


@pytest.fixture
def x(generator):
    return torch.randn(50, 4, generator=generator)


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_training_uses_the_batch_and_eval_the_running_mixture(x, covariance):
    torch.manual_seed(0)
    gmm = GaussianMixture(4, num_components=3, covariance=covariance, momentum=1.0)
    gamma = gmm.membership(x)
    phi, mu, cov = gmm_estimate(x, gamma, covariance)
    torch.testing.assert_close(gmm(x), gmm_log_prob(x, phi, mu, cov))
    # momentum 1: the running estimates are now the batch's
    torch.testing.assert_close(gmm.running_mu, mu.detach())
    gmm.eval()
    torch.testing.assert_close(gmm(x[:5]), gmm_log_prob(x[:5], phi, mu, cov).detach())


def test_running_estimates_average_with_momentum(x):
    torch.manual_seed(0)
    gmm = GaussianMixture(4, num_components=2, momentum=0.25)
    _, mu, _ = gmm_estimate(x, gmm.membership(x), "diag")
    gmm.loss(x)
    torch.testing.assert_close(gmm.running_mu, 0.25 * mu.detach())
    assert int(gmm.num_batches_tracked) == 1


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_loss_is_eq6(x, covariance):
    torch.manual_seed(0)
    gmm = GaussianMixture(4, num_components=3, covariance=covariance)
    expected = gmm_energy_loss(x, gmm.membership(x), covariance)
    torch.testing.assert_close(gmm.loss(x), expected)


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_fit_equals_the_estimate_over_all_batches(x, covariance):
    torch.manual_seed(0)
    gmm = GaussianMixture(4, num_components=3, covariance=covariance).eval()
    gmm.fit_(x.split(7))
    phi, mu, cov = gmm_estimate(x, gmm.membership(x), covariance)
    torch.testing.assert_close(gmm.running_phi, phi)
    torch.testing.assert_close(gmm.running_mu, mu)
    torch.testing.assert_close(gmm.running_cov, cov)


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


def _weighted_moments(x, gamma, covariance):
    """NumPy oracle of eq. 4: weights, means and (co)variances of soft memberships, in float64."""
    xs, gs = x.double().numpy(), gamma.double().numpy()
    mass = gs.sum(0)
    mean = gs.T @ xs / mass[:, None]
    full = np.stack([np.einsum("n,ni,nj->ij", gs[:, j], xs - mean[j], xs - mean[j]) / mass[j]
                     for j in range(gs.shape[1])])
    return mass / len(xs), mean, (full if covariance == "full" else np.diagonal(full, axis1=1, axis2=2))


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
