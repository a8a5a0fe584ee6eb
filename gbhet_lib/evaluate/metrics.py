"""Evaluation metrics with their exact chance levels, and bootstrap intervals over independent units.

Every metric here comes with the value a model without information would get (its chance level), so a chapter can
report "0.31 (chance 0.125)". Intervals resample the independent unit (the patient, or the slide where the question
is per slide), never the patch: patches of one patient are not independent observations.

Imports numpy only (:func:`knn_accuracy` imports torch when called).
"""
from __future__ import annotations

from typing import Any, Callable, Literal

import numpy as np


# ------------------------------------------------------------------------------------------------ k-NN labels
def knn_accuracy(features: np.ndarray, labels: np.ndarray, chunk: int = 4096) -> tuple[float, float]:
    """Leave-one-out 1-nearest-neighbour label accuracy (cosine) of (N, D) features, and its chance level.

    Chance: the probability that a random other patch has the same label, Σ n_c (n_c − 1) / (N (N − 1)).
    ``chunk``: query rows per (chunk, N) similarity block (memory only; the result does not depend on it).
    """
    import torch

    x = torch.from_numpy(np.asarray(features, dtype=np.float32))
    x = torch.nn.functional.normalize(x, dim=1)
    y = torch.from_numpy(np.asarray(labels).reshape(-1))
    n = len(y)
    if n < 2:
        raise ValueError("k-NN accuracy needs at least two patches")
    hits = 0
    for start in range(0, n, chunk):
        sims = x[start:start + chunk] @ x.T
        rows = torch.arange(start, min(start + chunk, n))
        sims[rows - start, rows] = -float("inf")
        hits += int((y[sims.argmax(dim=1)] == y[rows]).sum())
    counts = torch.unique(y, return_counts=True)[1].double()
    return hits / n, float((counts * (counts - 1)).sum() / (n * (n - 1)))


# --------------------------------------------------------------------------------------------------- retrieval
def top_k_chance(n_candidates: int, k: int = 1) -> float:
    """Top-k accuracy of a uniformly random ranking of ``n_candidates`` with one true candidate: k / n (1 when
    k ≥ n)."""
    if n_candidates < 1 or k < 1:
        raise ValueError(f"need n_candidates ≥ 1 and k ≥ 1, got {n_candidates} and {k}")
    return min(k, n_candidates) / n_candidates


def percentile_rank_chance() -> float:
    """Mean :func:`percentile` of a uniformly random ranking: 0.5."""
    return 0.5


def retrieval_ranks(scores: np.ndarray, true_index: np.ndarray,
                    ties: Literal["mid", "pessimistic"] = "mid") -> np.ndarray:
    """1-based rank of each query's true candidate: float (Q,) from scores (Q, G) (higher = better match) and
    true_index (Q,) in [0, G).

    rank = 1 + #candidates scoring strictly higher + t · #other candidates scoring the same, with t = 0.5
    (``mid``: a tie is half a loss, so a constant scorer gets the chance-level mean rank (G + 1) / 2) or t = 1
    (``pessimistic``: every tie is a loss).
    """
    scores = np.asarray(scores, dtype=np.float64)
    true_index = np.asarray(true_index, dtype=np.int64).reshape(-1)
    if scores.ndim != 2 or len(scores) != len(true_index):
        raise ValueError(f"scores must be (Q, G) with one true index per query, got {scores.shape} and "
                         f"{true_index.shape}")
    if len(true_index) and (true_index.min() < 0 or true_index.max() >= scores.shape[1]):
        raise ValueError(f"true_index must lie in [0, {scores.shape[1]})")
    if ties not in ("mid", "pessimistic"):
        raise ValueError(f"ties={ties!r} must be 'mid' or 'pessimistic'")
    true_score = scores[np.arange(len(scores)), true_index][:, None]
    higher = (scores > true_score).sum(axis=1)
    tied = (scores == true_score).sum(axis=1) - 1
    return 1.0 + higher + (0.5 if ties == "mid" else 1.0) * tied


def top_k_accuracy(ranks: np.ndarray, k: int) -> float:
    """Fraction of queries whose true candidate ranks within the top ``k`` (chance: :func:`top_k_chance`)."""
    return float(np.mean(np.asarray(ranks) <= k))


def percentile(ranks: np.ndarray, n_candidates: int) -> np.ndarray:
    """Per query, the fraction of the other candidates ranked below the true one: 1 − (rank − 1) / (n − 1), in
    [0, 1]; 1 = ranked first (chance: :func:`percentile_rank_chance`)."""
    if n_candidates < 2:
        raise ValueError(f"a percentile rank needs at least two candidates, got {n_candidates}")
    return 1.0 - (np.asarray(ranks, dtype=np.float64) - 1.0) / (n_candidates - 1)


# --------------------------------------------------------------------------------------------------- intervals
def group_mean(values: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique groups (G,), mean of ``values`` (N,) in each group (G,))."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    unique, inverse = np.unique(np.asarray(groups).reshape(-1), return_inverse=True)
    if len(inverse) != len(values):
        raise ValueError(f"one group per value: got {len(values)} values and {len(inverse)} groups")
    return unique, np.bincount(inverse, weights=values) / np.bincount(inverse)


def group_resamples(groups: np.ndarray, n_boot: int, level: float,
                    seed: int = 0) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """The draws of a cluster bootstrap over ``groups`` (N,): (each item's group code (N,), the item indices of
    each of the G groups, ``n_boot`` × G group codes drawn with replacement from ``default_rng(seed)``).

    Checks G ≥ 2, ``level`` in (0, 1) and ``n_boot`` ≥ 1 (the arguments of the interval being drawn).
    """
    unique, inverse = np.unique(np.asarray(groups).reshape(-1), return_inverse=True)
    if len(unique) < 2:
        raise ValueError(f"a bootstrap over groups needs at least two groups, got {len(unique)}")
    if not 0 < level < 1 or n_boot < 1:
        raise ValueError(f"need level in (0, 1) and n_boot ≥ 1, got {level} and {n_boot}")
    g = len(unique)
    members = np.split(np.argsort(inverse, kind="stable"), np.cumsum(np.bincount(inverse, minlength=g))[:-1])
    return inverse, members, np.random.default_rng(seed).integers(0, g, size=(n_boot, g))


def bootstrap_ci(values: np.ndarray, groups: np.ndarray, statistic: Callable[[np.ndarray], Any] = np.mean,
                 n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """A statistic of N item values and its cluster-bootstrap percentile interval: (estimate, low, high).

    The independent unit is the group (the patient; the slide where the question is per slide), not the patch:
    each of ``n_boot`` resamples draws G groups with replacement (``default_rng(seed)``) and pools all their items,
    then applies ``statistic`` (a function of a 1-D array). ``low`` and ``high`` are the (1 ± level) / 2 quantiles
    of the resampled statistics; ``estimate`` is the statistic of all items.

    Args:
        values: (N,) one value per item (e.g. a per-query top-1 hit, 0 or 1).
        groups: (N,) the group of each item (G ≥ 2 distinct).
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    inverse, members, draws = group_resamples(groups, n_boot, level, seed)
    if len(inverse) != len(values):
        raise ValueError(f"one group per value: got {len(values)} values and {len(inverse)} groups")
    g = len(members)
    if statistic is np.mean:  # closed form: weighted by how often each group is drawn
        times = np.bincount((np.arange(n_boot)[:, None] * g + draws).ravel(), minlength=n_boot * g)
        times = times.reshape(n_boot, g).astype(np.float64)
        stats = (times @ np.bincount(inverse, weights=values, minlength=g)) / (times @ np.bincount(inverse,
                                                                                                   minlength=g))
    else:
        stats = np.array([statistic(values[np.concatenate([members[j] for j in draw])]) for draw in draws])
    low, high = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return float(statistic(values)), float(low), float(high)
