"""Cross-modal retrieval metrics with exact chance levels, hubness, and patient-bootstrap summaries (chapter 5).

A retrieval here is a score matrix (Q queries × G gallery candidates; higher = better) and, per query, which
candidates are relevant (one for image → RNA: the query's own lineage profile; one or more for RNA → slide: the
lineage's slides). :func:`rank_queries` turns it into one row per query: the rank of the best relevant candidate
(ties count half, so a constant scorer sits at chance), the percentile rank, top-1 hits for the lineage and the
patient, recall@k, the reciprocal rank, the winner, and **each metric's exact chance level for that query**, from
the gallery's size and the number of relevant candidates (R of G):

* top-1: R / G; recall@k: 1 − C(G − R, k) / C(G, k);
* rank of the best relevant: 1 + (G − R) / (R + 1) on average; percentile 1 − (rank − 1) / (G − R): R / (R + 1)
  (0.5 for one relevant candidate);
* reciprocal rank: Σ_f P(first relevant at f) / f with P(f) = C(G − f, R − 1) / C(G, R);
* patient top-1: the share of the gallery that belongs to the query's patient.

:func:`summarise` pools the rows (over folds) into the chapter's numbers, patch-weighted (every query counts once)
or lineage-balanced (every query lineage counts once: its queries are averaged first), with 95 % intervals that
resample patients (:func:`~gbhet_lib.evaluate.metrics.bootstrap_ci`), and the hubness of the gallery: the share of
queries won by the most-retrieved candidate, and the share won by a candidate the model never trained on.

Imports numpy and pandas only.
"""
from __future__ import annotations

from math import comb
from typing import Any, Literal, Sequence

import numpy as np
import pandas as pd

#: the k of recall@k reported
RECALL_K = (1, 5, 10)


def rank_queries(scores: np.ndarray, relevant: np.ndarray, candidate_ids: Sequence[object],
                 candidate_patient: Sequence[object], query_patient: Sequence[object],
                 candidate_trained: Sequence[bool] | None = None) -> pd.DataFrame:
    """One row per query of a (Q, G) score matrix (see the module docstring).

    Args:
        scores: (Q, G) similarities, finite; higher = better match.
        relevant: (Q, G) bool, the relevant candidates of each query (at least one per query, not all).
        candidate_ids: (G,) names of the candidates (e.g. lineage or slide ids).
        candidate_patient: (G,) patient of each candidate; ``query_patient``: (Q,) patient of each query.
        candidate_trained: (G,) whether the model trained on each candidate (hubness on never-trained ones);
            None: unknown (``winner_trained`` is then NaN).

    Returns:
        Columns ``rank``, ``percentile``, ``top1``, ``recall_at_<k>``, ``rr``, ``patient_top1``, ``winner``,
        ``winner_trained``, ``candidates``, ``relevant`` and the chance columns ``<metric>_chance``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    relevant = np.asarray(relevant, dtype=bool)
    q, g = scores.shape if scores.ndim == 2 else (0, 0)
    if scores.ndim != 2 or relevant.shape != scores.shape:
        raise ValueError(f"scores and relevant must be (Q, G) arrays of one shape, got {scores.shape} and "
                         f"{relevant.shape}")
    if not np.isfinite(scores).all():
        raise ValueError(f"scores hold {int((~np.isfinite(scores)).sum())} non-finite values")
    n_relevant = relevant.sum(axis=1)
    if q and (n_relevant.min() < 1 or n_relevant.max() >= g):
        bad = int(np.flatnonzero((n_relevant < 1) | (n_relevant >= g))[0])
        raise ValueError(f"query {bad} has {int(n_relevant[bad])} relevant of {g} candidates: each query needs at "
                         "least one relevant and one other candidate")
    candidate_ids = np.asarray(candidate_ids, dtype=object)
    candidate_patient = np.asarray(candidate_patient, dtype=object)
    query_patient = np.asarray(query_patient, dtype=object)
    if len(candidate_ids) != g or len(candidate_patient) != g or len(query_patient) != q:
        raise ValueError(f"need {g} candidate ids and patients and {q} query patients, got {len(candidate_ids)}, "
                         f"{len(candidate_patient)} and {len(query_patient)}")

    best_true = np.where(relevant, scores, -np.inf).max(axis=1, keepdims=True)
    others = ~relevant
    rank = 1.0 + (others & (scores > best_true)).sum(1) + 0.5 * (others & (scores == best_true)).sum(1)
    n_other = g - n_relevant
    winner = scores.argmax(axis=1)
    same_patient = candidate_patient[None, :] == query_patient[:, None]
    out = pd.DataFrame({
        "rank": rank, "percentile": 1.0 - (rank - 1.0) / n_other, "top1": relevant[np.arange(q), winner].astype(float),
        **{f"recall_at_{k}": (rank <= k).astype(float) for k in RECALL_K},
        "rr": 1.0 / rank, "patient_top1": same_patient[np.arange(q), winner].astype(float),
        "winner": candidate_ids[winner],
        "winner_trained": (np.asarray(candidate_trained, dtype=float)[winner] if candidate_trained is not None
                           else np.full(q, np.nan)),
        "candidates": g, "relevant": n_relevant})
    for column, chance in chance_levels(g, n_relevant).items():
        out[f"{column}_chance"] = chance
    out["patient_top1_chance"] = same_patient.mean(axis=1)
    return out


def chance_levels(n_candidates: int, n_relevant: np.ndarray) -> dict[str, np.ndarray]:
    """Per query, the expected value of each metric under a uniformly random ranking of ``n_candidates`` with
    ``n_relevant`` (R,) relevant ones (see the module docstring): ``rank``, ``percentile``, ``top1``,
    ``recall_at_<k>``, ``rr``."""
    g = int(n_candidates)
    out: dict[str, list[float]] = {"rank": [], "percentile": [], "top1": [], "rr": [],
                                   **{f"recall_at_{k}": [] for k in RECALL_K}}
    cache: dict[int, dict[str, float]] = {}
    for r in np.asarray(n_relevant, dtype=int).reshape(-1):
        if r not in cache:
            n_other = g - r
            first = [comb(g - f, r - 1) / comb(g, r) for f in range(1, n_other + 2)]  # P(first relevant at f)
            cache[r] = {"rank": 1.0 + n_other / (r + 1), "percentile": r / (r + 1), "top1": r / g,
                        "rr": sum(p / f for f, p in enumerate(first, start=1)),
                        **{f"recall_at_{k}": 1.0 - comb(n_other, k) / comb(g, k) if k <= g else 1.0
                           for k in RECALL_K}}
        for key, value in cache[r].items():
            out[key].append(value)
    return {k: np.asarray(v) for k, v in out.items()}


def summarise(table: pd.DataFrame, weighting: Literal["patch", "lineage"] = "patch", n_boot: int = 2000,
              level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """The chapter's numbers from :func:`rank_queries` rows pooled over folds.

    ``table`` needs the columns of :func:`rank_queries` plus ``patient`` (the query's patient: the bootstrap unit)
    and, for ``weighting="lineage"``, ``lineage`` (each lineage's queries are averaged first, then every lineage
    counts once). Returns ``lineage_top1`` (top-1 of the relevant candidate), ``patient_top1``, ``percentile``,
    ``recall_at_<k>``, ``mrr``, ``mean_rank``, ``median_rank``, each with ``<name>_chance``, intervals
    ``<name>_ci`` for top-1, percentile and MRR, the hubness (``hub_share``, ``hub``, ``never_trained_share``) and
    counts (``n_queries``, ``n_lineages``, ``n_patients``, ``n_folds``).
    """
    from .metrics import bootstrap_ci

    if weighting not in ("patch", "lineage"):
        raise ValueError(f"weighting={weighting!r} must be 'patch' or 'lineage'")
    required = {"rank", "percentile", "top1", "patient_top1", "rr", "patient", "winner"}
    if weighting == "lineage":
        required.add("lineage")
    missing = sorted(required - set(table.columns))
    if missing:
        raise ValueError(f"the retrieval table lacks column(s) {missing}")
    if table.empty:
        raise ValueError("no queries to summarise")
    values = [c for c in table.columns if c in _AVERAGED or c.endswith("_chance")]
    items = table if weighting == "patch" else \
        table.groupby(["lineage", "patient"], sort=False)[values].mean().reset_index()
    groups = items["patient"].to_numpy(dtype=object)
    several = len(set(groups)) >= 2
    out: dict[str, Any] = {}
    renamed = {"top1": "lineage_top1", "rr": "mrr", "rank": "mean_rank"}
    for column in values:
        name = renamed.get(column.removesuffix("_chance"), column.removesuffix("_chance"))
        name += "_chance" if column.endswith("_chance") else ""
        out[name] = float(items[column].mean())
    for column in ("top1", "percentile", "rr", "patient_top1"):
        if several:
            _, low, high = bootstrap_ci(items[column].to_numpy(), groups, n_boot=n_boot, level=level, seed=seed)
        else:
            low = high = float("nan")
        out[f"{renamed.get(column, column)}_ci"] = [float(low), float(high)]
    out["median_rank"] = float(table["rank"].median())
    wins = table["winner"].value_counts(normalize=True)
    out["hub"], out["hub_share"] = str(wins.index[0]), float(wins.iloc[0])
    trained = table["winner_trained"].to_numpy(dtype=float) if "winner_trained" in table else np.array([np.nan])
    out["never_trained_share"] = float(1.0 - np.nanmean(trained)) if np.isfinite(trained).any() else float("nan")
    out |= {"n_queries": int(len(table)), "n_lineages": int(table["lineage"].nunique()) if "lineage" in table else 0,
            "n_patients": int(table["patient"].nunique()),
            "n_folds": int(table["fold"].nunique()) if "fold" in table else 1, "weighting": weighting}
    return out


_AVERAGED = {"rank", "percentile", "top1", "patient_top1", "rr", *(f"recall_at_{k}" for k in RECALL_K)}


def mean_slide_scores(patch_scores: np.ndarray, patch_slide: Sequence[object]) -> tuple[np.ndarray, np.ndarray]:
    """Slide queries from patch queries: (slides (S,) in first-seen order, (S, G) mean of each slide's patch score
    rows)."""
    patch_slide = np.asarray(patch_slide, dtype=object)
    slides = np.array(list(dict.fromkeys(patch_slide)), dtype=object)
    return slides, np.stack([np.asarray(patch_scores)[patch_slide == s].mean(0) for s in slides])


def cosine_scores(queries: np.ndarray, gallery: np.ndarray, centre: np.ndarray | None = None) -> np.ndarray:
    """(Q, G) cosine similarities of (Q, D) queries and (G, D) gallery rows, after subtracting ``centre`` (D,) from
    both when given (e.g. the training targets' mean, for predictions of a regression onto an embedding)."""
    queries, gallery = np.asarray(queries, dtype=np.float64), np.asarray(gallery, dtype=np.float64)
    if centre is not None:
        queries, gallery = queries - centre, gallery - centre
    unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # noqa: E731
    return unit(queries) @ unit(gallery).T
