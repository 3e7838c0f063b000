"""The cross-rank moment combinations of PrototypeBank, with ranks simulated in one process (no process group):
what K ranks combine equals the moments of the union of their videos (brute-force oracle)."""
import numpy as np
import pytest
import torch

from videograph.nn import PrototypeBank
from videograph.nn.prototype.statistics import combine_rank_moments
from videograph.nn.subgraph_tables import graph_of_rows, slot_rows
from videograph.subgraph import pair_ptr

DN, DE, CLASSES = 3, 2, 4
SIZES = (5, 6, 4, 5, 6)


def make_bank(dtype=torch.float64):
    torch.manual_seed(0)
    return PrototypeBank(CLASSES, DN, DE, scales=(2, 3), num_components=3).to(dtype)


def videos(seed=0, dtype=torch.float64, offset=0.0):
    """Per video: node features ``[n, DN]`` and pair features ``[n(n-1)/2, DE]`` (complete-mode pair order)."""
    generator = torch.Generator().manual_seed(seed)
    return [(offset + torch.randn(n, DN, generator=generator, dtype=torch.float64).to(dtype),
             offset + torch.randn(n * (n - 1) // 2, DE, generator=generator, dtype=torch.float64).to(dtype))
            for n in SIZES]


def batch_of(parts, indices):
    node_x = torch.cat([parts[i][0] for i in indices])
    pair_x = torch.cat([parts[i][1] for i in indices])
    node_ptr = torch.tensor([0] + [SIZES[i] for i in indices]).cumsum(0)
    return node_x, pair_x, node_ptr


def explicit(node_x, pair_x, node_ptr, b, k):
    """Every k-subset of video b, x = [f(v_1..v_k), e(v_i, v_j) i < j], built by itertools."""
    import itertools
    n0, n = int(node_ptr[b]), int(node_ptr[b + 1] - node_ptr[b])
    p0 = int(pair_ptr(node_ptr)[b])
    pair_id = {pair: p0 + i for i, pair in enumerate(itertools.combinations(range(n), 2))}
    return torch.stack([torch.cat([node_x[n0 + v] for v in s] + [pair_x[pair_id[(s[i], s[j])]]
                                                                  for i, j in itertools.combinations(range(k), 2)])
                        for s in itertools.combinations(range(n), k)])


def oracle(bank, parts, y, c, k):
    """count, mass, mean, centred second moment of class c at scale k over all videos, by numpy."""
    node_x, pair_x, node_ptr = batch_of(parts, range(len(SIZES)))
    x = torch.cat([explicit(node_x, pair_x, node_ptr, b, k) for b in range(len(SIZES)) if y[b] == c])
    gamma = bank.mixture(c, k).eval().membership(x).detach().double().numpy()
    x = x.double().numpy()
    mass = gamma.sum(0)
    mean = gamma.T @ x / mass[:, None]
    m2 = np.stack([(gamma[:, j, None] * (x - mean[j]) ** 2).sum(0) for j in range(len(mass))])
    return len(x), mass, mean, m2


SPLITS = {"disjoint classes": [[0, 2], [1, 3, 4]], "shared classes": [[0, 1], [2, 3, 4]],
          "a rank without class 1": [[1, 4], [0, 2, 3]]}
LABELS = torch.tensor([1, 3, 1, 0, 0])


@pytest.mark.parametrize("dtype, offset, rtol", [(torch.float64, 0.0, 1e-10), (torch.float32, 1e3, 1e-3)])
@pytest.mark.parametrize("split", list(SPLITS))
def test_batch_moments_of_ranks_combine_to_the_union(split, dtype, offset, rtol):
    """Loss path: raw sums (count, mass, sum of gamma x) added over ranks, then the squares centred on the global
    means added: what :meth:`_fused_moments` does with an all-reduce between its halves. Stays accurate in
    float32 far from the origin (the squares are centred before they are summed)."""
    bank, parts = make_bank(dtype), videos(dtype=dtype, offset=offset)
    M = bank.num_mixtures
    for k in bank.scales:
        stack = bank.stack(k)
        pieces = []
        for indices in SPLITS[split]:
            node_x, pair_x, node_ptr = batch_of(parts, indices)
            y = LABELS[indices]
            sub = bank._subgraphs(node_ptr, None)[k]
            graphs = (graph_of_rows(node_ptr), graph_of_rows(pair_ptr(node_ptr)))
            rows = slot_rows(sub.nodes, sub.pair_index, node_x.size(0))
            gamma = bank._fused_membership(stack, node_x, pair_x, y, graphs, rows, sub.batch)
            sums = bank._fused_sums(stack, node_x, pair_x, y, graphs, rows, sub.batch, gamma, y, M)
            pieces.append((node_x, pair_x, graphs, y, sums))
        count = sum(p[4][0] for p in pieces)
        mass = sum(p[4][1] for p in pieces)
        firsts = [sum(p[4][2][i] for p in pieces) for i in range(2)]
        means = bank._fused_means(mass, firsts)
        m2 = sum(bank._fused_centred(node_x, pair_x, graphs, sums[3], means, y, M)
                 for node_x, pair_x, graphs, y, sums in pieces)
        mean = torch.cat([m.reshape(M, stack.num_components, -1) for m in means], -1)
        for c in LABELS.unique().tolist():
            n, o_mass, o_mean, o_m2 = oracle(bank, parts, LABELS, c, k)
            assert int(count[c]) == n
            np.testing.assert_allclose(mass[c].detach().double().numpy(), o_mass, rtol=rtol * 1e-2)
            np.testing.assert_allclose(mean[c].detach().double().numpy(), o_mean, rtol=rtol, atol=1e-12)
            np.testing.assert_allclose(m2[c].detach().double().numpy(), o_m2, rtol=rtol, atol=rtol * 1e-2)
        assert int(count[2]) == 0 and float(mass[2].detach().abs().sum()) == 0.0   # class 2: on no rank


@pytest.mark.parametrize("split", list(SPLITS))
def test_fit_moments_of_ranks_merge_to_the_union(split):
    """fit_ path: each rank's moments over its share (centred on its own means), merged by Chan's update."""
    bank, parts = make_bank(), videos()
    per_rank = []
    for indices in SPLITS[split]:
        loader = [batch_of(parts, [i]) + (LABELS[[i]],) for i in indices]   # one video a batch
        per_rank.append(bank._fit_moments(loader, True, False)[0])
    union = bank._fit_moments([batch_of(parts, range(len(SIZES))) + (LABELS,)], True, False)[0]
    for k in bank.scales:
        merged = combine_rank_moments([sums[k] for sums in per_rank])
        assert torch.equal(merged[0], union[k][0])
        for got, want in zip(merged[1:], union[k][1:]):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        for c in LABELS.unique().tolist():
            n, o_mass, o_mean, o_m2 = oracle(bank, parts, LABELS, c, k)
            assert int(merged[0][c]) == n
            np.testing.assert_allclose(merged[3][c].numpy(), o_m2, rtol=1e-10, atol=1e-12)


def test_rank_moments_merge_is_stable_far_from_the_origin_in_float32():
    """Two ranks whose samples sit at 1e4 with unit spread: the merge adds only centred terms."""
    generator = torch.Generator().manual_seed(0)
    a, b = 1e4 + torch.randn(400, 2, generator=generator), 1e4 + 3 + torch.randn(600, 2, generator=generator)

    def moments(x):
        mean = x.mean(0)
        return [torch.tensor([x.size(0)]), torch.full((1, 1), float(x.size(0))), mean.view(1, 1, 2),
                ((x - mean) ** 2).sum(0).view(1, 1, 2)]

    merged = combine_rank_moments([moments(a), moments(b)])
    union = torch.cat([a, b]).double()
    want = ((union - union.mean(0)) ** 2).sum(0)
    # the error left is that of the ranks' float32 means (~1e-3 at 1e4) times the between-rank spread
    torch.testing.assert_close(merged[3].view(2).double(), want, rtol=2e-3, atol=0)
    x = torch.cat([a, b])
    naive = (x * x).sum(0) - x.size(0) * x.mean(0) ** 2    # raw second moments: E[x^2] - mu^2 cancels
    assert float(((naive.double() - want) / want).abs().max()) > 0.1
    assert int(merged[0]) == 1000


def test_combine_rank_moments_rejects_an_empty_list():
    with pytest.raises(ValueError, match="per_rank"):
        combine_rank_moments([])


@pytest.mark.parametrize("options", [dict(covariance="full"), dict(fused=False)])
def test_materialised_path_is_refused_in_a_process_group(monkeypatch, options):
    """Only the fused path synchronises its statistics: in a group the materialised one is an error, not a
    silently per-rank estimate (checked before any collective, so no group is needed)."""
    import videograph.nn.prototype.loss as loss_module
    monkeypatch.setattr(loss_module, "world", lambda: (0, 2))
    bank_options = {k: v for k, v in options.items() if k == "covariance"}
    torch.manual_seed(0)
    bank = PrototypeBank(CLASSES, DN, DE, scales=(2, 3), num_components=3, **bank_options).double()
    node_x, pair_x, node_ptr = batch_of(videos(), [0, 1])
    with pytest.raises(ValueError, match="fused path"):
        bank.loss(node_x, pair_x, node_ptr, LABELS[:2], fused=options.get("fused"))
