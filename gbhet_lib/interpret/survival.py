"""Survival analyses with lifelines: Kaplan–Meier by group and the log-rank test."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from lifelines import KaplanMeierFitter
from lifelines.statistics import logrank_test


@dataclass(frozen=True)
class GroupComparison:
    """Kaplan–Meier fits of two groups and their log-rank test.

    Attributes:
        groups: per sample, ``"high"`` or ``"low"`` (score above / at-or-below the median).
        fits: group → fitted KaplanMeierFitter.
        logrank_p: two-sided log-rank p-value; logrank_statistic: its χ² statistic (1 d.f.).
        medians: group → median survival time (same unit as the durations; inf if not reached).
    """

    groups: pd.Series
    fits: dict[str, KaplanMeierFitter]
    logrank_p: float
    logrank_statistic: float
    medians: dict[str, float]


def median_split_survival(durations: pd.Series, events: pd.Series, score: pd.Series) -> GroupComparison:
    """Split samples at the median of ``score`` and compare the survival of the two halves.

    ``durations`` (e.g. days), ``events`` (1 = event observed, 0 = censored) and ``score`` share one index.
    """
    durations, events, score = _aligned(durations, events, score)
    groups = pd.Series(np.where(score > score.median(), "high", "low"), index=score.index, name="group")
    fits, medians = {}, {}
    for name in ("low", "high"):
        sel = groups == name
        fits[name] = KaplanMeierFitter(label=f"{score.name or 'score'} {name} (n={int(sel.sum())})").fit(
            durations[sel], events[sel])
        medians[name] = float(fits[name].median_survival_time_)
    test = logrank_test(durations[groups == "high"], durations[groups == "low"],
                        events[groups == "high"], events[groups == "low"])
    return GroupComparison(groups, fits, float(test.p_value), float(test.test_statistic), medians)


def _aligned(durations: pd.Series, events: pd.Series, score: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    missing = score.index.difference(durations.index).union(score.index.difference(events.index))
    if len(missing):
        raise ValueError(f"no survival data for {len(missing)} sample(s), e.g. {list(missing[:3])}; "
                         "the score and the clinical table must share sample ids")
    durations, events = durations.loc[score.index].astype(float), events.loc[score.index].astype(int)
    if (durations <= 0).any() or not events.isin([0, 1]).all():
        bad = score.index[(durations <= 0) | ~events.isin([0, 1])][:3]
        raise ValueError(f"durations must be > 0 and events 0/1; check samples {list(bad)}")
    if score.nunique() < 2:
        raise ValueError("the score is constant: a median split needs at least two distinct values")
    return durations, events, score
