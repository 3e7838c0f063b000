import itertools

import pytest
import torch

from videograph.models.confusion import (category_regularization, channel_sparsity, class_sparsity,
                                         confusion_matrix, cosine_distance, select_mask, top_n_reaching)


def test_channel_sparsity_counts_planted_zeros(generator):
    B, C, T, H, W = 3, 5, 2, 3, 4
    fm = torch.rand(B, C, T, H, W, generator=generator) + 0.1
    zeros = torch.randint(0, T * H * W + 1, (B, C), generator=generator)
    for b, c in itertools.product(range(B), range(C)):      # plant zeros at random positions
        flat = fm[b, c].view(-1)
        flat[torch.randperm(T * H * W, generator=generator)[:int(zeros[b, c])]] = 0.0
    expected = zeros.double() / (T * H * W)
    torch.testing.assert_close(channel_sparsity(fm).double(), expected)


def test_channel_sparsity_rejects_non_5d():
    with pytest.raises(ValueError, match="feature_map"):
        channel_sparsity(torch.zeros(2, 3, 4, 5))


def test_class_sparsity_is_the_per_class_mean(generator):
    sparsity, labels = torch.rand(20, 4, generator=generator), torch.arange(20) % 3
    out = class_sparsity(sparsity, labels, 3)
    for m in range(3):
        torch.testing.assert_close(out[m], sparsity[labels == m].mean(0))
    with pytest.raises(ValueError, match="no sample of classes \\[3\\]"):
        class_sparsity(sparsity, labels, 4)
    with pytest.raises(ValueError, match="labels"):
        class_sparsity(sparsity, labels + 5, 3)


def _planted(generator, groups=((0, 1, 2), (3, 4, 5), (6, 7, 8)), channels=64):
    M = sum(len(g) for g in groups)
    rows = torch.empty(M, channels, dtype=torch.float64)
    for group in groups:
        base = torch.rand(channels, generator=generator, dtype=torch.float64)
        for m in group:
            rows[m] = (base + 0.05 * torch.rand(channels, generator=generator, dtype=torch.float64)).clamp(0, 1)
    return rows


def test_confusion_matrix_recovers_planted_groups(generator):
    rows = _planted(generator)
    similarity, confusable = confusion_matrix(rows, 3)
    planted = torch.zeros(9, 9, dtype=torch.bool)
    for g in range(3):
        planted[3 * g:3 * g + 3, 3 * g:3 * g + 3] = True
    assert torch.equal(confusable, planted)
    assert torch.equal(similarity, similarity.T) and torch.equal(confusable, confusable.T)
    assert bool((similarity.diagonal() == 1).all()) and bool(confusable.diagonal().all())
    assert confusable.sum(1).double().mean() == 3


@pytest.mark.parametrize("num_confusing", [1, 1.5, 2, 3, 5, 9])
def test_confusion_matrix_mean_row_sum_and_brute_force_threshold(generator, num_confusing):
    M = 9
    rows = torch.rand(M, 16, generator=generator, dtype=torch.float64)
    similarity, confusable = confusion_matrix(rows, num_confusing)
    # brute force: similarity from scipy's cosine distance, the most similar round(M (N - 1) / 2) pairs
    from scipy.spatial.distance import cdist
    s = 1 - torch.from_numpy(cdist(rows.numpy(), rows.numpy(), "cosine"))
    pairs = sorted(((float(s[i, j]), i, j) for i, j in itertools.combinations(range(M), 2)), reverse=True)
    expected = torch.eye(M, dtype=torch.bool)
    for _, i, j in pairs[:round(M * (num_confusing - 1) / 2)]:
        expected[i, j] = expected[j, i] = True
    assert torch.equal(confusable, expected)
    if (M * (num_confusing - 1)) % 2 == 0:
        assert float(confusable.sum(1).double().mean()) == pytest.approx(num_confusing)
    off = ~torch.eye(M, dtype=torch.bool)
    torch.testing.assert_close(similarity[off], s[off])


def test_confusion_matrix_ignores_monotone_transforms_of_the_distance(generator):
    rows = torch.rand(12, 8, generator=generator, dtype=torch.float64)
    _, base = confusion_matrix(rows, 4)
    for transform in (lambda d: d ** 3, lambda d: torch.sqrt(d.clamp_min(0)), lambda d: 1 - torch.exp(-5 * d)):
        _, other = confusion_matrix(rows, 4, distance=lambda a, b: transform(cosine_distance(a, b)))
        assert torch.equal(base, other)


@pytest.mark.parametrize("bad", [0, 0.5, 10, True, "3"])
def test_confusion_matrix_rejects_num_confusing_outside_range(bad):
    with pytest.raises(ValueError, match="num_confusing"):
        confusion_matrix(torch.rand(9, 4), bad)


def test_top_n_reaching_matches_topk_loop(generator):
    logits, labels = torch.randn(200, 10, generator=generator), torch.randint(0, 10, (200,), generator=generator)
    for target in (0.1, 0.5, 0.85, 1.0):
        expected = next(n for n in range(1, 11)
                        if (logits.topk(n, 1).indices == labels[:, None]).any(1).float().mean() >= target)
        assert top_n_reaching(logits, labels, target) == expected


def test_select_mask_is_the_mean_of_the_chosen_masks(generator):
    masks = torch.randn(4, 5, 2, 3, 3, generator=generator)
    confusable = torch.eye(5, dtype=torch.bool)
    confusable[0, 1] = confusable[1, 0] = confusable[0, 3] = confusable[3, 0] = True
    classes = torch.tensor([0, 1, 2, 3])
    out = select_mask(masks, classes, confusable)
    assert out.shape == (4, 1, 2, 3, 3)
    for b, c in enumerate(classes.tolist()):
        chosen = [j for j in range(5) if confusable[c, j]]
        torch.testing.assert_close(out[b, 0], masks[b, chosen].mean(0))
    torch.testing.assert_close(out[2, 0], masks[2, 2])          # no confusable class: its own mask


def test_category_regularization_matches_pair_loop_and_its_gradient_lowers_it(generator):
    weight = torch.randn(6, 8, 1, 1, 1, generator=generator, requires_grad=True)
    confusable = torch.eye(6, dtype=torch.bool)
    confusable[:3, :3] = True
    value = category_regularization(weight, confusable)
    w = weight.detach().flatten(1)
    pairs = [(i, j) for i in range(3) for j in range(3) if i != j]
    expected = sum((1 + torch.cosine_similarity(w[i], w[j], 0)) / 2 for i, j in pairs) / len(pairs)
    torch.testing.assert_close(value.detach(), expected)
    value.backward()
    with torch.no_grad():
        lowered = category_regularization(weight - 0.1 * weight.grad, confusable)
    assert lowered < value
    none = category_regularization(weight, torch.eye(6, dtype=torch.bool))
    assert float(none.detach()) == 0.0 and none.requires_grad
