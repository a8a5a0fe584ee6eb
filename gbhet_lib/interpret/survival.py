"""Survival analyses with lifelines: Kaplan–Meier by group and the log-rank test."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from lifelines import KaplanMeierFitter
from lifelines.statistics import multivariate_logrank_test


@dataclass(frozen=True)
class GroupComparison:
    """Kaplan–Meier fits of two or more groups and their log-rank test.

    Attributes:
        groups: per sample, its group label.
        fits: group → fitted KaplanMeierFitter.
        logrank_p: log-rank p-value (multivariate form for more than two groups);
        logrank_statistic: its χ² statistic (groups − 1 degrees of freedom).
        medians: group → median survival time (same unit as the durations; inf if not reached).
    """

    groups: pd.Series
    fits: dict[str, KaplanMeierFitter]
    logrank_p: float
    logrank_statistic: float
    medians: dict[str, float]


def compare_groups(durations: pd.Series, events: pd.Series, groups: pd.Series,
                   label: str | None = None) -> GroupComparison:
    """Kaplan–Meier curve per group and the log-rank test between groups.

    ``durations`` (e.g. days), ``events`` (1 = event observed, 0 = censored) and ``groups`` share one index;
    samples whose duration, event or group is NaN are left out; a sample id absent from ``durations`` or
    ``events`` is an error (the tables do not match).
    """
    missing = groups.index.difference(durations.index).union(groups.index.difference(events.index))
    if len(missing):
        raise ValueError(f"no survival data for {len(missing)} sample(s), e.g. {list(missing[:3])}; "
                         "the groups and the clinical table must share sample ids")
    keep = groups.dropna().index.intersection(durations.dropna().index).intersection(events.dropna().index)
    durations, events, groups = _checked(durations.loc[keep], events.loc[keep], groups.loc[keep])
    if groups.nunique() < 2:
        raise ValueError("need at least two groups with survival data to compare")
    fits, medians = {}, {}
    for name in sorted(groups.unique(), key=str):
        sel = groups == name
        fits[name] = KaplanMeierFitter(label=f"{label + ' ' if label else ''}{name} (n={int(sel.sum())})").fit(
            durations[sel], events[sel])
        medians[name] = float(fits[name].median_survival_time_)
    test = multivariate_logrank_test(durations, groups, events)
    return GroupComparison(groups, fits, float(test.p_value), float(test.test_statistic), medians)


def median_split_survival(durations: pd.Series, events: pd.Series, score: pd.Series) -> GroupComparison:
    """Split samples at the median of ``score`` into ``high``/``low`` and compare their survival."""
    if score.nunique() < 2:
        raise ValueError("the score is constant: a median split needs at least two distinct values")
    groups = pd.Series(np.where(score > score.median(), "high", "low"), index=score.index, name="group")
    return compare_groups(durations, events, groups, label=str(score.name or "score"))


def _checked(durations: pd.Series, events: pd.Series, groups: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    durations = durations.astype(float)
    if (durations <= 0).any() or not events.isin([0, 1]).all():
        bad = groups.index[(durations <= 0) | ~events.isin([0, 1])][:3]
        raise ValueError(f"durations must be > 0 and events 0/1; check samples {list(bad)}")
    return durations, events.astype(int), groups


def cohort_survival_comparisons(clinical: pd.DataFrame, activity: pd.DataFrame,
                                planted_hazards: dict[str, float] | None = None,
                                group_column: str | None = None) -> dict[str, GroupComparison]:
    """The survival first look of chapter 1: two comparisons of overall survival.

    With ``planted_hazards`` (the demo's program → log-hazard), the median split of the strongest hazard
    program and of a program with no planted effect (the control). Otherwise (real survival), the groups
    of ``clinical[group_column]`` (e.g. subtype) when given, and the median split of the hypoxia score.
    ``clinical`` holds ``os_days``/``os_event``; ``activity`` is samples × programs in the same order.
    """
    durations, events = clinical["os_days"], clinical["os_event"]
    if planted_hazards:
        hazard = pd.Series(planted_hazards)
        control = next(p for p in activity.columns if p not in hazard.index)
        return {p: median_split_survival(durations, events, activity[p]) for p in (hazard.abs().idxmax(), control)}
    comparisons = {}
    if group_column is not None:
        comparisons[group_column] = compare_groups(durations, events, clinical[group_column])
    comparisons["hypoxia"] = median_split_survival(durations, events, activity["hypoxia"])
    return comparisons
