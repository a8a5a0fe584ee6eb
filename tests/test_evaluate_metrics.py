"""Metrics with chance levels and bootstrap intervals over groups (gbhet_lib.evaluate.metrics)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from gbhet_lib.evaluate.metrics import bootstrap_ci, group_mean, percentile, percentile_rank_chance, \
    retrieval_ranks, top_k_accuracy, top_k_chance


# --------------------------------------------------------------------------------------------------- retrieval
def test_top_k_chance_is_exact_over_every_ranking() -> None:
    assert top_k_chance(10) == 0.1 and top_k_chance(10, 3) == pytest.approx(0.3) and top_k_chance(4, 9) == 1.0
    n = 5
    rankings = np.array(list(itertools.permutations(range(n))), dtype=float)  # every ordering, true candidate 0
    ranks = retrieval_ranks(rankings, np.zeros(len(rankings), dtype=int))
    for k in range(1, n + 1):
        assert top_k_accuracy(ranks, k) == pytest.approx(top_k_chance(n, k), abs=1e-12)
    assert percentile(ranks, n).mean() == pytest.approx(percentile_rank_chance(), abs=1e-12)
    with pytest.raises(ValueError, match="n_candidates ≥ 1 and k ≥ 1"):
        top_k_chance(0)


def test_a_random_scorer_is_at_chance() -> None:
    rng = np.random.default_rng(0)
    q, g = 20000, 8
    ranks = retrieval_ranks(rng.normal(size=(q, g)), rng.integers(0, g, size=q))
    sd = np.sqrt(top_k_chance(g) * (1 - top_k_chance(g)) / q)
    assert abs(top_k_accuracy(ranks, 1) - top_k_chance(g)) < 4 * sd
    assert abs(top_k_accuracy(ranks, 3) - top_k_chance(g, 3)) < 0.015
    assert abs(percentile(ranks, g).mean() - 0.5) < 0.01


def test_ranks_count_ties_as_documented() -> None:
    scores = np.array([[0.9, 0.5, 0.5, 0.1],    # true 0: best
                       [0.9, 0.5, 0.5, 0.1],    # true 1: one higher, one tie
                       [0.2, 0.2, 0.2, 0.2]])   # true 3: all tied
    true = np.array([0, 1, 3])
    assert retrieval_ranks(scores, true).tolist() == [1.0, 2.5, 2.5]
    assert retrieval_ranks(scores, true, ties="pessimistic").tolist() == [1.0, 3.0, 4.0]
    assert percentile(np.array([1.0, 4.0]), 4).tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="true_index must lie in"):
        retrieval_ranks(scores, np.array([0, 1, 4]))


# --------------------------------------------------------------------------------------------------- intervals
def _grouped(n_groups: int, per_group: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Values around 2: a group effect (evenly spread, sd ≈ 1 for any number of groups) + item noise (sd 0.5)."""
    rng = np.random.default_rng(seed)
    effect = rng.permutation(np.linspace(-np.sqrt(3), np.sqrt(3), n_groups))
    values = 2 + np.repeat(effect, per_group) + rng.normal(scale=0.5, size=n_groups * per_group)
    return values, np.repeat([f"P{i}" for i in range(n_groups)], per_group)


def test_bootstrap_interval_covers_the_estimate_and_shrinks_with_more_groups() -> None:
    values, groups = _grouped(10, 20, seed=1)
    estimate, low, high = bootstrap_ci(values, groups, n_boot=1000)
    assert estimate == pytest.approx(values.mean()) and low < estimate < high
    widths = []
    for n_groups in (10, 40, 160):  # the width falls as 1 / sqrt(groups): about halves per 4 × groups
        _, low, high = bootstrap_ci(*_grouped(n_groups, 20, seed=1), n_boot=1000)
        widths.append(high - low)
    assert widths[0] > 1.5 * widths[1] > 2.25 * widths[2] > 0
    assert bootstrap_ci(values, groups, n_boot=500, seed=3) == bootstrap_ci(values, groups, n_boot=500, seed=3)


def test_bootstrap_resamples_groups_not_items() -> None:
    # every item of a group is identical, groups differ: the items carry no more information than the groups
    group_values = np.random.default_rng(2).normal(size=12)
    values, groups = np.repeat(group_values, 50), np.repeat(np.arange(12), 50)
    _, low, high = bootstrap_ci(values, groups, n_boot=2000)
    _, group_low, group_high = bootstrap_ci(group_values, np.arange(12), n_boot=2000)
    _, item_low, item_high = bootstrap_ci(values, np.arange(len(values)), n_boot=2000)
    assert (low, high) == pytest.approx((group_low, group_high))  # equal-sized groups: the same resamples
    assert item_high - item_low < 0.3 * (high - low)  # an item-level bootstrap would be far too narrow


def test_bootstrap_any_statistic_matches_the_mean_shortcut() -> None:
    rng = np.random.default_rng(4)
    uneven = rng.integers(0, 15, size=100)  # 15 groups of different sizes
    values = rng.normal(size=15)[uneven] + rng.normal(scale=0.5, size=100)
    fast = bootstrap_ci(values, uneven, n_boot=300, seed=5)
    slow = bootstrap_ci(values, uneven, statistic=lambda x: float(np.mean(x)), n_boot=300, seed=5)
    assert fast == pytest.approx(slow)
    median = bootstrap_ci(values, uneven, statistic=np.median, n_boot=300)
    assert median[0] == pytest.approx(np.median(values)) and median[1] <= median[0] <= median[2]
    with pytest.raises(ValueError, match="at least two groups"):
        bootstrap_ci(values, np.zeros(len(values)))


def test_group_mean() -> None:
    unique, means = group_mean(np.array([1.0, 3.0, 10.0, 0.0]), np.array(["b", "b", "a", "c"]))
    assert unique.tolist() == ["a", "b", "c"] and means.tolist() == [10.0, 2.0, 0.0]
