import itertools
import math
from collections import Counter

import pytest
import torch
from scipy.stats import chisquare

from videograph.subgraph import cache_info, clear_cache
from videograph.subgraph.combinations import combination_table, sample_ranks, unrank


@pytest.mark.parametrize('n,k', [(1, 1), (5, 1), (5, 2), (6, 3), (7, 7), (9, 4), (10, 5), (12, 6)])
def test_table_matches_itertools(n, k):
    table = combination_table(n, k)
    expected = list(itertools.combinations(range(n), k))
    assert table.nodes.tolist() == [list(c) for c in expected]
    pair_id = {p: i for i, p in enumerate(itertools.combinations(range(n), 2))}
    assert table.pairs.tolist() == [[pair_id[p] for p in itertools.combinations(c, 2)] for c in expected]
    if k > 1:
        parent = combination_table(n, k - 1).nodes
        assert torch.equal(parent[table.prefix], table.nodes[:, :-1])


def test_cache_hits_and_clear():
    clear_cache()
    assert cache_info().currsize == 0
    first = combination_table(11, 3)
    again = combination_table(11, 3)
    assert again is first
    assert cache_info().hits >= 1
    clear_cache()
    assert cache_info().currsize == 0


@pytest.mark.parametrize('n,k', [(1, 1), (6, 3), (8, 8), (13, 5)])
def test_unrank_all_ranks(n, k):
    expected = torch.tensor(list(itertools.combinations(range(n), k)))
    assert torch.equal(unrank(torch.arange(expected.size(0)), torch.tensor(n), k), expected)


def test_unrank_mixed_sizes_and_large_n():
    ranks, sizes, expected = [], [], []
    for n, k_ranks in [(40, [0, 1, 777, 91389]), (7, [0, 34]), (60, [123456, 487634])]:
        combos = list(itertools.combinations(range(n), 4))
        for r in k_ranks:
            ranks.append(r)
            sizes.append(n)
            expected.append(combos[r])
    assert unrank(torch.tensor(ranks), torch.tensor(sizes), 4).tolist() == [list(c) for c in expected]


def test_sample_ranks_keeps_small_graphs_and_sorts():
    gen = torch.Generator().manual_seed(3)
    graph, rank = sample_ranks([3, 50, 0, 10**15], 5, gen)
    assert graph.tolist() == [0] * 3 + [1] * 5 + [3] * 5
    assert rank[:3].tolist() == [0, 1, 2]
    for g in (1, 3):
        r = rank[graph == g]
        assert torch.all(r[1:] > r[:-1]) and int(r.max()) < [3, 50, 0, 10**15][g]


@pytest.mark.parametrize('total,m', [(6, 2), (40, 2)])  # randperm branch, then iid-draw branch
def test_sample_ranks_subsets_are_uniform(total, m):
    gen = torch.Generator().manual_seed(0)
    draws = 60 * math.comb(total, m)
    seen = Counter(tuple(sample_ranks([total], m, gen)[1].tolist()) for _ in range(draws))
    assert all(len(set(s)) == m for s in seen)
    observed = [seen.get(s, 0) for s in itertools.combinations(range(total), m)]
    assert sum(observed) == draws
    assert chisquare(observed).pvalue > 1e-3


def test_tables_over_the_budget_are_not_cached(monkeypatch):
    from videograph.subgraph import combinations
    clear_cache()
    monkeypatch.setattr(combinations, 'CACHE_MAX_ELEMENTS', 200)
    big = combination_table(10, 4)  # 210 rows x 10 numbers
    assert combination_table(10, 4) is not big
    assert torch.equal(combination_table(10, 4).nodes, big.nodes)
    small = combination_table(10, 2)  # 45 rows x 3 numbers
    assert combination_table(10, 2) is small
    clear_cache()


def _lex_rank(combo, n):
    """Position of ``combo`` in itertools.combinations(range(n), k): count the subsets
    that branch off earlier with a smaller element at some position."""
    k, rank, prev = len(combo), 0, -1
    for i, c in enumerate(combo):
        rank += sum(math.comb(n - 1 - v, k - 1 - i) for v in range(prev + 1, c))
        prev = c
    return rank


def test_unrank_inverts_lexicographic_rank_on_huge_sets():
    gen = torch.Generator().manual_seed(1)
    n, k = 400, 5
    ranks = torch.randint(0, math.comb(n, k), (200,), generator=gen)
    combos = unrank(ranks, torch.tensor(n), k)
    assert [_lex_rank(c, n) for c in combos.tolist()] == ranks.tolist()


def test_sample_ranks_with_one_generator_per_graph_is_keyed():
    """Each graph draws from its own generator: its ranks do not depend on the other graphs of the batch."""
    def keyed(*keys):
        return [torch.Generator().manual_seed(key) for key in keys]

    graph, rank = sample_ranks([40, 3, 60], 5, keyed(7, 8, 9))
    alone = [sample_ranks([count], 5, keyed(key))[1] for count, key in ((40, 7), (3, 8), (60, 9))]
    for g, expected in enumerate(alone):
        assert torch.equal(rank[graph == g], expected)
    other_batch = sample_ranks([60, 40], 5, keyed(9, 7))
    assert torch.equal(other_batch[1][other_batch[0] == 1], alone[0])
    with pytest.raises(ValueError, match="one generator per graph"):
        sample_ranks([40, 3], 5, keyed(1))
    with pytest.raises(TypeError, match="generator"):
        sample_ranks([40], 5, [0])
