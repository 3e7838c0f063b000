import io
import itertools

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from torch_geometric.data import Batch, Data

from videograph.nn import BestSubgraphs, PrototypeBank
from videograph.nn.functional import gmm_estimate
from videograph.subgraph import multiscale, pair_ptr

DN, DE = 3, 2


def inputs(sizes=(5, 6, 4), dtype=torch.float64, seed=0, requires_grad=False):
    generator = torch.Generator().manual_seed(seed)
    node_ptr = torch.tensor((0,) + tuple(sizes)).cumsum(0)
    num_pairs = int(pair_ptr(node_ptr)[-1])
    node_x = torch.randn(int(node_ptr[-1]), DN, generator=generator, dtype=dtype).requires_grad_(requires_grad)
    pair_x = torch.randn(num_pairs, DE, generator=generator, dtype=dtype).requires_grad_(requires_grad)
    return node_x, pair_x, node_ptr


def make_bank(dtype=torch.float64, seed=0, **kwargs):
    torch.manual_seed(seed)
    kwargs = {"scales": (2, 3), "num_components": 3, **kwargs}
    return PrototypeBank(4, DN, DE, **kwargs).to(dtype)


def explicit(node_x, pair_x, node_ptr, b, k):
    """Every k-subset of video b by itertools, its x = [f(v_1..v_k), e(v_i, v_j) i < j] built pair by pair."""
    n0, n = int(node_ptr[b]), int(node_ptr[b + 1] - node_ptr[b])
    p0 = int(pair_ptr(node_ptr)[b])
    pair_id = {pair: p0 + i for i, pair in enumerate(itertools.combinations(range(n), 2))}
    subsets = list(itertools.combinations(range(n), k))
    rows = [torch.cat([node_x[n0 + v] for v in s] + [pair_x[pair_id[(s[i], s[j])]]
                                                      for i, j in itertools.combinations(range(k), 2)])
            for s in subsets]
    return torch.stack(rows), [tuple(n0 + v for v in s) for s in subsets]


def set_running(bank, generator, prune=True):
    """Distinct running mixtures per (class, scale); some components pruned so K differs across mixtures."""
    for k in bank.scales:
        stack = bank.stack(k)
        stack.running_mu.copy_(torch.randn(stack.running_mu.shape, generator=generator, dtype=torch.float64))
        stack.running_cov.copy_(0.5 + torch.rand(stack.running_cov.shape, generator=generator, dtype=torch.float64))
        stack.running_phi.copy_(torch.softmax(torch.randn(stack.running_phi.shape, generator=generator,
                                                          dtype=torch.float64), -1))
        if prune:
            stack.running_phi[0] = torch.tensor([0.6, 0.01, 0.39])
            stack.running_phi[2] = torch.tensor([0.01, 0.015, 0.975])
    if prune:
        bank.prune_(0.02)


def test_running_estimates_follow_eq4_weighted_moments():
    node_x, pair_x, node_ptr = inputs()
    y = torch.tensor([1, 3, 1])
    bank = make_bank(momentum=1.0)
    bank.loss(node_x, pair_x, node_ptr, y)
    for c in (1, 3):
        for k in bank.scales:
            x = torch.cat([explicit(node_x, pair_x, node_ptr, b, k)[0] for b in range(3) if y[b] == c]).numpy()
            gamma = bank.mixture(c, k).membership(torch.from_numpy(x)).detach().numpy()
            mass = gamma.sum(0)
            mean = gamma.T @ x / mass[:, None]
            var = np.stack([(gamma[:, j, None] * (x - mean[j]) ** 2).sum(0) / mass[j] for j in range(len(mass))])
            stack = bank.stack(k)
            np.testing.assert_allclose(stack.running_phi[c].numpy(), mass / len(x), rtol=1e-10)
            np.testing.assert_allclose(stack.running_mu[c].numpy(), mean, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(stack.running_cov[c].numpy(), var, rtol=1e-9, atol=1e-12)
    # untouched classes keep their initial estimates
    assert bool((bank.stack(2).running_mu[0] == 0).all()) and int(bank.stack(2).num_batches_tracked[0]) == 0


@pytest.mark.parametrize("covariance, fused", [("diag", True), ("diag", False), ("full", False)])
@pytest.mark.parametrize("background, select", [(False, False), (True, False), (True, True)])
def test_loss_is_eq6_of_each_class_mixture_on_its_videos(covariance, fused, background, select):
    """Oracle: an independent GaussianMixture per (class, scale) on sub-graphs built with itertools: the class
    mixtures on their videos' (selected) sub-graphs, the background mixture on all of them."""
    node_x, pair_x, node_ptr = inputs()
    y = torch.tensor([1, 3, 1])
    bank = make_bank(covariance=covariance, background=background).eval()
    batch = Batch.from_data_list([Data(num_nodes=n) for n in node_ptr.diff().tolist()])
    subgraphs = multiscale(batch, bank.scales)
    generator = torch.Generator().manual_seed(11)
    masks = {k: torch.rand(len(s), generator=generator) < 0.5 for k, s in subgraphs.items()} if select else None
    expected, count = 0, 0
    for k in bank.scales:
        rows = [explicit(node_x, pair_x, node_ptr, b, k)[0] for b in range(3)]
        keep = masks[k].split(subgraphs[k].num_subgraphs.tolist()) if select else [None] * 3
        for c in (1, 3):
            x = torch.cat([r if m is None else r[m] for r, m, label in zip(rows, keep, y) if label == c])
            expected, count = expected + bank.mixture(c, k).loss(x), count + 1
        if background:
            expected, count = expected + bank.mixture(4, k).loss(torch.cat(rows)), count + 1
    loss = bank.loss(node_x, pair_x, node_ptr, y, subgraphs, fused=fused, select=masks)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(bank.loss(node_x, pair_x, node_ptr, y, subgraphs, reduction="mean", fused=fused,
                                         select=masks), expected / count)
    assert int(bank.stack(2).num_batches_tracked.sum()) == 0  # eval mode: running estimates untouched


@pytest.mark.parametrize("pruned", [False, True])
def test_fused_loss_equals_materialised_in_value_and_gradient(pruned):
    node_x, pair_x, node_ptr = inputs(requires_grad=True)
    y = torch.tensor([2, 0, 2])
    bank = make_bank(momentum=0.5)
    set_running(bank, torch.Generator().manual_seed(1), prune=pruned)
    other = make_bank(momentum=0.5)
    other.load_state_dict(bank.state_dict())
    params = [node_x, pair_x] + list(bank.parameters())
    fused = bank.loss(node_x, pair_x, node_ptr, y, fused=True)
    grads = torch.autograd.grad(fused, params)
    materialised = other.loss(node_x, pair_x, node_ptr, y, fused=False)
    expected = torch.autograd.grad(materialised, [node_x, pair_x] + list(other.parameters()))
    torch.testing.assert_close(fused, materialised, rtol=1e-10, atol=1e-10)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    for name, buffer in bank.named_buffers():  # identical running updates
        torch.testing.assert_close(buffer, other.get_buffer(name), rtol=1e-10, atol=1e-10)


def brute_force_scores(bank, node_x, pair_x, node_ptr):
    """Max over itertools sub-graphs of a scipy mixture log-density (minus the background's, if any), per video
    and class; maxima over scales, or their sum with scale_reduce='sum'."""
    B, C = node_ptr.numel() - 1, bank.num_classes

    def log_density(gmm, x):
        return logsumexp(np.stack([np.log(gmm.running_phi[j].item()) + multivariate_normal.logpdf(
            x.numpy(), gmm.running_mu[j].numpy(), np.diag(gmm.running_cov[j].numpy() + bank.eps))
            for j in range(gmm.num_components)], -1).reshape(len(x), -1), -1)

    per_scale = np.full((len(bank.scales), B, C), -np.inf)
    best_nodes = {}
    for b in range(B):
        for s, k in enumerate(bank.scales):
            if int(node_ptr[b + 1] - node_ptr[b]) < k:
                continue                    # no k-node sub-graph: the scale is missing (-inf)
            x, subsets = explicit(node_x.detach(), pair_x.detach(), node_ptr, b, k)
            reference = log_density(bank.mixture(C, k), x) if bank.background else 0.0
            for c in range(C):
                score = log_density(bank.mixture(c, k), x) - reference
                per_scale[s, b, c] = score.max()
                if score.max() > max(per_scale[:s, b, c], default=-np.inf):
                    best_nodes[b, c] = subsets[int(score.argmax())]
    summed = np.where(np.isfinite(per_scale), per_scale, 0.0).sum(0)   # a missing scale is left out of the sum
    return (summed if bank.scale_reduce == "sum" else per_scale.max(0)), best_nodes, per_scale


@pytest.mark.parametrize("chunk_size, background, scale_reduce", [(1, False, "max"), (3, False, "max"),
                                                                  (1000, False, "max"), (1, True, "max"),
                                                                  (1000, True, "sum")])
def test_class_scores_match_scipy_brute_force(chunk_size, background, scale_reduce):
    node_x, pair_x, node_ptr = inputs()
    bank = make_bank(chunk_size=chunk_size, background=background, scale_reduce=scale_reduce).eval()
    set_running(bank, torch.Generator().manual_seed(2))
    scores, best = bank.class_scores(node_x, pair_x, node_ptr, return_best=True)
    expected, expected_nodes, per_scale = brute_force_scores(bank, node_x, pair_x, node_ptr)
    np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(bank.class_scores(node_x, pair_x, node_ptr, per_scale=True).numpy(), per_scale,
                               rtol=1e-10)
    for (b, c), nodes in expected_nodes.items():
        assert int(best.scale[b, c]) == len(nodes)
        assert tuple(best.nodes[b, c, :len(nodes)].tolist()) == nodes
        assert bool((best.nodes[b, c, len(nodes):] == -1).all())
    torch.testing.assert_close(bank.predict(node_x, pair_x, node_ptr), scores.argmax(-1))


@pytest.mark.parametrize("background", [False, True])
def test_fused_class_scores_equal_materialised_in_value_gradient_and_argmax(background):
    node_x, pair_x, node_ptr = inputs(sizes=(6, 5, 7), requires_grad=True)
    bank = make_bank(chunk_size=4, background=background).eval()
    set_running(bank, torch.Generator().manual_seed(3))
    weights = torch.randn(3, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    batch = Batch.from_data_list([Data(num_nodes=n) for n in (6, 5, 7)])
    results = {}
    for fused, given in ((True, False), (True, True), (False, True)):
        subgraphs = multiscale(batch, bank.scales) if given else None
        scores, best = bank.class_scores(node_x, pair_x, node_ptr, subgraphs, return_best=True, fused=fused)
        grads = torch.autograd.grad((scores * weights).sum(), [node_x, pair_x])
        results[fused, given] = scores, best, grads
        if given:  # the reported index is the row in the given enumeration
            for b in range(3):
                for c in range(4):
                    k = int(best.scale[b, c])
                    assert best.nodes[b, c, :k].tolist() == subgraphs[k].nodes[best.index[b, c]].tolist()
    reference = results[False, True]
    for key, (scores, best, grads) in results.items():
        torch.testing.assert_close(scores, reference[0], rtol=1e-10, atol=1e-10)
        for field in BestSubgraphs._fields:
            assert torch.equal(getattr(best, field), getattr(reference[1], field)), (key, field)
        for got, want in zip(grads, reference[2]):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_gradcheck_fused_loss_and_scores():
    node_x, pair_x, node_ptr = inputs(sizes=(5, 4), requires_grad=True)
    y = torch.tensor([1, 0])
    bank = make_bank(num_components=2, hidden_channels=3)
    assert torch.autograd.gradcheck(lambda a, b: bank.loss(a, b, node_ptr, y, fused=True), (node_x, pair_x),
                                    fast_mode=True)
    bank.eval()
    set_running(bank, torch.Generator().manual_seed(5), prune=False)
    assert torch.autograd.gradcheck(lambda a, b: bank.class_scores(a, b, node_ptr, fused=True), (node_x, pair_x),
                                    fast_mode=True)


def degenerate_cases():
    node_x, pair_x, node_ptr = inputs()
    return {
        "all x identical": (torch.ones_like(node_x), torch.full_like(pair_x, 2.0), node_ptr),
        "one sub-graph per video": inputs(sizes=(3, 3)),
        "D much larger than N": (torch.randn(3, 40, dtype=torch.float64), torch.randn(3, 30, dtype=torch.float64),
                                 torch.tensor([0, 3])),
        "component without members": (node_x, pair_x, node_ptr),
        "K pruned to 1": (node_x, pair_x, node_ptr),
    }


@pytest.mark.parametrize("case", list(degenerate_cases()))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_degenerate_cases_stay_finite(case, dtype):
    node_x, pair_x, node_ptr = degenerate_cases()[case]
    node_x = node_x.to(dtype).requires_grad_()
    pair_x = pair_x.to(dtype).requires_grad_()
    torch.manual_seed(0)
    bank = PrototypeBank(2, node_x.size(1), pair_x.size(1), scales=(3,), num_components=3).to(dtype)
    stack = bank.stack(3)
    if case == "component without members":
        with torch.no_grad():
            stack.bias2[:, 0] = -1e4
    if case == "K pruned to 1":
        stack.running_phi.copy_(torch.tensor([0.01, 0.99, 0.0]))
        bank.prune_(0.02)
        assert bank.num_components.tolist() == [[1], [1]]
    y = torch.zeros(node_ptr.numel() - 1, dtype=torch.long)
    loss = bank.loss(node_x, pair_x, node_ptr, y)
    grads = torch.autograd.grad(loss, [node_x, pair_x] + list(bank.parameters()))
    assert torch.isfinite(loss)
    assert all(torch.isfinite(g).all() for g in grads)
    bank.fit_([(node_x.detach(), pair_x.detach(), node_ptr, y)])   # collapsed / single-member estimates
    assert all(torch.isfinite(b).all() for b in bank.buffers() if b.is_floating_point())
    bank.eval()
    scores = bank.class_scores(node_x, pair_x, node_ptr)
    grads = torch.autograd.grad(scores.sum(), [node_x, pair_x])
    assert torch.isfinite(scores).all() and all(torch.isfinite(g).all() for g in grads)


def test_prune_masks_per_mixture_and_compact_keeps_scores():
    node_x, pair_x, node_ptr = inputs()
    bank = make_bank().eval()
    set_running(bank, torch.Generator().manual_seed(6), prune=False)
    bank.stack(2).running_phi[0] = torch.tensor([0.5, 0.01, 0.49])
    bank.stack(2).running_phi[1] = torch.tensor([0.01, 0.015, 0.975])
    bank.stack(3).running_phi[:, 2] = 0.0
    bank.stack(3).running_phi[:, :2] = 0.5
    optimiser = torch.optim.SGD(bank.parameters(), lr=0.1, momentum=0.9)
    standalone = {(c, k): bank.mixture(c, k).eval().prune_(0.02) for c in range(4) for k in bank.scales}
    bank.prune_(0.02)
    assert bank.num_components[:, 0].tolist() == [2, 1, 3, 3]
    assert bank.num_components[:, 1].tolist() == [2, 2, 2, 2]
    torch.testing.assert_close(bank.stack(2).running_phi[0], torch.tensor([0.5, 0.0, 0.49], dtype=torch.float64) / 0.99)
    assert bool((bank.stack(2).running_phi[bank.stack(2).active] > 0.02).all())
    # the bank scores like GaussianMixtures pruned the same way: max over itertools sub-graphs of their log p
    per_scale = bank.class_scores(node_x, pair_x, node_ptr, per_scale=True)
    for (c, k), gmm in standalone.items():
        assert gmm.num_components == int(bank.num_components[c, bank.scales.index(k)])
        for b in range(3):
            x = explicit(node_x, pair_x, node_ptr, b, k)[0]
            torch.testing.assert_close(per_scale[bank.scales.index(k), b, c], gmm(x).max(), rtol=1e-10, atol=1e-10)
    scores = bank.class_scores(node_x, pair_x, node_ptr)
    loss = bank.train().loss(node_x, pair_x, node_ptr, torch.tensor([0, 1, 0]))
    loss.backward()
    optimiser.step()  # shapes unchanged: the optimiser stays valid
    bank.eval()
    set_running(bank, torch.Generator().manual_seed(6), prune=False)
    bank.stack(3).running_phi[:, 2] = 0.0
    bank.stack(3).running_phi[:, :2] = 0.5
    bank.stack(3).active[:, 2] = False
    before = bank.class_scores(node_x, pair_x, node_ptr)
    bank.compact_()
    assert bank.stack(3).num_components == 2 and bank.stack(2).num_components == 3
    torch.testing.assert_close(bank.class_scores(node_x, pair_x, node_ptr), before)
    assert scores.shape == (3, 4)


@pytest.mark.parametrize("covariance, fused", [("diag", True), ("diag", False), ("full", False)])
@pytest.mark.parametrize("background, select", [(False, False), (True, True)])
def test_fit_equals_the_estimate_over_all_batches(covariance, fused, background, select):
    node_x, pair_x, node_ptr = inputs(sizes=(5, 6, 4, 5))
    y = torch.tensor([1, 3, 1, 1])
    bank = make_bank(covariance=covariance, background=background).eval()
    halves = [(node_x[:11], pair_x[:25], node_ptr[:3], y[:2]),
              (node_x[11:] + 100.0, pair_x[25:] - 50.0, node_ptr[2:] - 11, y[2:])]  # shifted: tests the moments
    keep = {}  # (half, video, k) -> rows of the video kept for its class mixture
    if select:
        generator = torch.Generator().manual_seed(12)
        items = []
        for h, half in enumerate(halves):
            subgraphs = multiscale(Batch.from_data_list([Data(num_nodes=n) for n in half[2].diff().tolist()]),
                                   bank.scales)
            masks = {k: torch.rand(len(s), generator=generator) < 0.6 for k, s in subgraphs.items()}
            for k, mask in masks.items():
                for b, part in enumerate(mask.split(subgraphs[k].num_subgraphs.tolist())):
                    keep[h, b, k] = part
            items.append(half + (subgraphs, masks))
        bank.fit_(items, fused=fused)
    else:
        bank.fit_(halves, fused=fused)
    mixtures = [(c, lambda h, b, c=c: halves[h][3][b] == c) for c in (1, 3)]
    if background:
        mixtures.append((4, lambda h, b: True))
    for c, member in mixtures:
        for k in bank.scales:
            x = torch.cat([explicit(*halves[h][:3], b, k)[0][keep.get((h, b, k), slice(None)) if c < 4 else slice(None)]
                           for h in range(2) for b in range(2) if member(h, b)])
            gmm = bank.mixture(c, k)
            phi, mu, var = gmm_estimate(x, gmm.membership(x), covariance)
            torch.testing.assert_close(gmm.running_phi, phi)
            torch.testing.assert_close(gmm.running_mu, mu)
            torch.testing.assert_close(gmm.running_cov, var, rtol=1e-7, atol=1e-9)
    assert bool((bank.stack(3).running_mu[0] == 0).all())


def test_subsampled_training_is_seeded_and_equals_passing_the_sample():
    node_x, pair_x, node_ptr = inputs(sizes=(7, 6))
    y = torch.tensor([0, 2])
    bank = make_bank().eval()
    loss = bank.loss(node_x, pair_x, node_ptr, y, max_subgraphs_per_video=5,
                     generator=torch.Generator().manual_seed(7))
    batch = Batch.from_data_list([Data(num_nodes=7), Data(num_nodes=6)])
    sample = multiscale(batch, (2, 3), max_per_graph=5, generator=torch.Generator().manual_seed(7))
    assert all(int(s.num_subgraphs.max()) == 5 for s in sample.values())
    torch.testing.assert_close(loss, bank.loss(node_x, pair_x, node_ptr, y, sample))
    assert not torch.allclose(loss, bank.loss(node_x, pair_x, node_ptr, y))


def test_state_dict_round_trip_and_repr():
    node_x, pair_x, node_ptr = inputs()
    bank = make_bank().eval()
    set_running(bank, torch.Generator().manual_seed(8))
    buffer = io.BytesIO()
    torch.save(bank.state_dict(), buffer)
    buffer.seek(0)
    restored = make_bank(seed=1).eval()
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    torch.testing.assert_close(restored.class_scores(node_x, pair_x, node_ptr),
                               bank.class_scores(node_x, pair_x, node_ptr))
    assert repr(PrototypeBank(174, 256, 64)) == ("PrototypeBank(174, node_channels=256, pair_channels=64, "
                                                 "scales=(3, 4, 5), num_components=6, covariance=diag)")


def test_bad_input():
    node_x, pair_x, node_ptr = inputs()
    bank = make_bank()
    y = torch.tensor([0, 1, 2])
    sample = multiscale(Batch.from_data_list([Data(num_nodes=n) for n in (5, 6, 4)]), (2, 3))
    cases = [
        (lambda: bank.loss(node_x[:, :2], pair_x, node_ptr, y), "'node_x'"),
        (lambda: bank.loss(node_x, pair_x[:-1], node_ptr, y), "'pair_x'"),
        (lambda: bank.loss(node_x.float(), pair_x.float(), node_ptr, y), "dtype"),
        (lambda: bank.loss(node_x, pair_x, node_ptr.float(), y), "'node_ptr'"),
        (lambda: bank.loss(node_x, pair_x, node_ptr, torch.tensor([0, 1, 4])), "'y'"),
        (lambda: bank.loss(node_x, pair_x, node_ptr, y[:2]), "'y'"),
        (lambda: bank.loss(node_x, pair_x, node_ptr, y, reduction="max"), "'reduction'"),
        (lambda: bank.loss(node_x, pair_x, node_ptr, y, {2: None}), "'subgraphs'"),
        (lambda: bank.class_scores(node_x, pair_x, node_ptr, multiscale(
            Batch.from_data_list([Data(num_nodes=5), Data(num_nodes=6), Data(num_nodes=5)]), (2, 3))),
         "'subgraphs\\[2\\]'"),
        (lambda: make_bank(covariance="full").class_scores(node_x, pair_x, node_ptr, fused=True), "'fused=True'"),
        (lambda: PrototypeBank(3, 2, 2, scales=(3, 3)), "'scales'"),
        (lambda: PrototypeBank(3, 2, 2, scale_reduce="mean"), "'scale_reduce'"),
        (lambda: PrototypeBank(0, 2, 2), "'num_classes'"),
        (lambda: bank.fit_([]), "'loader'"),
        (lambda: bank.mixture(4, 2), "'c'"),
        (lambda: bank.loss(node_x, pair_x, node_ptr, y, select={2: None}), "'select' masks"),
        (lambda: bank.loss(node_x, pair_x, node_ptr, y, sample, select={2: torch.ones(3, dtype=torch.bool)}),
         "'select'.*k=2 expected shape"),
        (lambda: bank.loss(node_x, pair_x, node_ptr, y, sample, select={k: torch.ones(len(s)) for k, s in
                                                                       sample.items()}), "'select'"),
        (lambda: bank.fit_([(node_x, pair_x, node_ptr, y, None, {})]), "'select' masks"),
        (lambda: bank.fit_([(node_x, pair_x, node_ptr)]), "'loader'"),
    ]
    for call, match in cases:
        with pytest.raises(ValueError, match=match):
            call()


def test_learned_scale_reduction_starts_as_the_sum_and_calibrate_minimises_the_cross_entropy():
    """Oracle: scipy's BFGS on the same cross-entropy of sum_k exp(log w_kc) s_kc + b_c, from brute-force s."""
    from scipy.optimize import minimize

    batches = [inputs(sizes=(5, 6, 4), seed=seed) + (torch.tensor(y),) for seed, y in ((0, [0, 1, 2]), (1, [3, 0, 1]),
                                                                                      (2, [2, 2, 3]), (3, [1, 3, 0]))]
    summed = make_bank(scale_reduce="sum").eval()
    set_running(summed, torch.Generator().manual_seed(9))
    learned = make_bank(scale_reduce="learned").eval()
    learned.load_state_dict(summed.state_dict(), strict=False)
    for node_x, pair_x, node_ptr, _ in batches:
        torch.testing.assert_close(learned.class_scores(node_x, pair_x, node_ptr),
                                   summed.class_scores(node_x, pair_x, node_ptr))
    learned.calibrate_(batches)
    per_scale = np.concatenate([brute_force_scores(summed, *b[:3])[2] for b in batches], 1)  # [S, B, C]
    labels = torch.cat([b[3] for b in batches]).numpy()

    def cross_entropy(theta):
        log_weight, bias = theta[:per_scale.shape[0] * 4].reshape(-1, 4), theta[per_scale.shape[0] * 4:]
        logits = (np.exp(log_weight)[:, None] * per_scale).sum(0) + bias
        return float(np.mean(logsumexp(logits, -1) - logits[np.arange(len(labels)), labels]))

    start = np.zeros(per_scale.shape[0] * 4 + 4)
    oracle = minimize(cross_entropy, start, method="BFGS", options={"gtol": 1e-9})
    got = np.concatenate([learned.scale_log_weight.detach().numpy().ravel(), learned.scale_bias.detach().numpy()])
    assert cross_entropy(got) <= min(oracle.fun, cross_entropy(start)) + 1e-6
    # the bank scores with the calibrated map
    node_x, pair_x, node_ptr, _ = batches[0]
    expected = (learned.scale_log_weight.exp()[:, None] * torch.from_numpy(per_scale[:, :3])).sum(0) + learned.scale_bias
    torch.testing.assert_close(learned.class_scores(node_x, pair_x, node_ptr), expected)
    with pytest.raises(ValueError, match="scale_reduce='learned'"):
        summed.calibrate_(batches)
    with pytest.raises(ValueError, match="'loader'"):
        learned.calibrate_([])


@pytest.mark.parametrize("one_shot", [False, True])
def test_fit_is_in_eval_mode_and_accepts_a_one_shot_iterator(one_shot):
    """Dropout is off while fitting (two fits agree with an eval-mode fit) and the training mode comes back."""
    node_x, pair_x, node_ptr = inputs(sizes=(5, 6, 4, 5))
    y = torch.tensor([1, 3, 1, 1])
    halves = [(node_x[:11], pair_x[:25], node_ptr[:3], y[:2]), (node_x[11:], pair_x[25:], node_ptr[2:] - 11, y[2:])]
    bank = make_bank(dropout=0.5)
    reference = make_bank(dropout=0.5).eval()
    reference.load_state_dict(bank.state_dict())
    bank.fit_(iter(halves) if one_shot else halves)
    assert bank.training
    reference.fit_(halves)
    for name, buffer in bank.named_buffers():
        torch.testing.assert_close(buffer, reference.get_buffer(name), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("fused", [True, False])
def test_fit_in_float32_matches_float64_for_components_far_from_the_class_mean(fused):
    """Two tight groups of videos of one class, 2000 apart, split by near-hard memberships: each component lies
    ~1000 from the class mean with variance ~1e-2. Shifted one-pass moments cancel there in float32."""
    generator = torch.Generator().manual_seed(3)
    sizes = (4, 5, 4, 5)
    node_ptr = torch.tensor((0,) + sizes).cumsum(0)
    centre = torch.tensor([1000.0, -1000.0, 1000.0, -1000.0], dtype=torch.float64)
    node_x = centre.repeat_interleave(torch.tensor(sizes))[:, None] + 0.1 * torch.randn(
        int(node_ptr[-1]), DN, generator=generator, dtype=torch.float64)
    num_pairs = pair_ptr(node_ptr).diff()
    pair_x = centre.repeat_interleave(num_pairs)[:, None] + 0.1 * torch.randn(
        int(num_pairs.sum()), DE, generator=generator, dtype=torch.float64)
    y = torch.zeros(4, dtype=torch.long)
    wide = make_bank(scales=(3,), num_components=2).eval()
    with torch.no_grad():   # near-hard memberships: the first layer saturates, the second one amplifies
        wide.stack(3).weight2.mul_(100.0)
    narrow = make_bank(torch.float32, scales=(3,), num_components=2).eval()
    narrow.load_state_dict({key: value.float() if value.is_floating_point() else value
                            for key, value in wide.state_dict().items()})
    wide.fit_([(node_x, pair_x, node_ptr, y)], fused=fused)
    narrow.fit_([(node_x.float(), pair_x.float(), node_ptr, y)], fused=fused)
    cov = wide.stack(3).running_cov[0]
    assert float(cov.max()) < 0.1     # the components are tight: each holds one group
    torch.testing.assert_close(narrow.stack(3).running_cov[0].double(), cov, rtol=1e-2, atol=1e-4)


@pytest.mark.parametrize("scale_reduce", ["max", "sum", "learned"])
def test_a_video_without_subgraphs_at_one_scale_is_scored_on_the_others(scale_reduce):
    """Video 1 has 2 nodes: no 3-node sub-graph. Its classes are ranked by the scales it has (the learned map
    starts as the sum); a video with no sub-graph at any scale makes predict raise, naming it."""
    node_x, pair_x, node_ptr = inputs(sizes=(5, 2, 4))
    bank = make_bank(scale_reduce=scale_reduce).eval()
    set_running(bank, torch.Generator().manual_seed(2))
    summed = make_bank(scale_reduce="sum" if scale_reduce == "learned" else scale_reduce).eval()
    summed.load_state_dict(bank.state_dict(), strict=False)
    expected, _, per_scale = brute_force_scores(summed, node_x, pair_x, node_ptr)
    assert np.isinf(per_scale[1, 1]).all() and np.isfinite(expected).all()
    scores = bank.class_scores(node_x, pair_x, node_ptr)
    np.testing.assert_allclose(scores.detach().numpy(), expected, rtol=1e-10)
    assert bank.predict(node_x, pair_x, node_ptr).tolist() == expected.argmax(-1).tolist()
    lonely = inputs(sizes=(5, 1, 4))
    assert torch.isneginf(bank.class_scores(*lonely)[1]).all()
    with pytest.raises(ValueError, match="video 1 has no sub-graph at any scale"):
        bank.predict(*lonely)


def test_calibrate_keeps_videos_without_subgraphs_at_some_scale():
    """Oracle: scipy's BFGS on the cross-entropy over all videos, a missing scale contributing nothing."""
    from scipy.optimize import minimize

    batches = [inputs(sizes=sizes, seed=seed) + (torch.tensor(y),)
               for seed, sizes, y in ((0, (5, 2, 4), [0, 1, 2]), (1, (2, 6, 2), [3, 3, 1]), (2, (4, 2, 5), [2, 3, 0]))]
    summed = make_bank(scale_reduce="sum").eval()
    set_running(summed, torch.Generator().manual_seed(9))
    learned = make_bank(scale_reduce="learned").eval()
    learned.load_state_dict(summed.state_dict(), strict=False)
    learned.calibrate_(batches)
    per_scale = np.concatenate([brute_force_scores(summed, *b[:3])[2] for b in batches], 1)
    per_scale = np.where(np.isfinite(per_scale), per_scale, 0.0)
    labels = torch.cat([b[3] for b in batches]).numpy()
    S = per_scale.shape[0]

    def cross_entropy(theta):
        logits = (np.exp(theta[:S * 4].reshape(S, 4))[:, None] * per_scale).sum(0) + theta[S * 4:]
        return float(np.mean(logsumexp(logits, -1) - logits[np.arange(len(labels)), labels]))

    oracle = minimize(cross_entropy, np.zeros(S * 4 + 4), method="BFGS", options={"gtol": 1e-9})
    got = np.concatenate([learned.scale_log_weight.detach().numpy().ravel(), learned.scale_bias.detach().numpy()])
    assert cross_entropy(got) <= oracle.fun + 1e-6
    with pytest.raises(ValueError, match="video 4 of 'loader' has no sub-graph at any scale"):
        learned.calibrate_(batches[:1] + [inputs(sizes=(3, 1), seed=5) + (torch.tensor([0, 1]),)])
