"""Survival analyses with lifelines: Kaplan–Meier by group, the log-rank test, Cox models, Harrell's C with a
bootstrap interval, gene-set scores, log-rank power and the survival of embedding clusters (chapters 1 and 6)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.statistics import multivariate_logrank_test, power_under_cph
from lifelines.utils import concordance_index
from scipy import stats


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


# --- chapter 6: risk scores, Cox models, power and clusters -------------------------------------------------

def _aligned(durations: pd.Series, events: pd.Series, frame: pd.DataFrame,
             what: str) -> tuple[pd.Series, pd.Series, pd.DataFrame]:
    """Rows of ``frame`` with their duration and event; ids absent from the survival data are an error,
    rows with any NaN are dropped; durations must be > 0 and events 0/1."""
    missing = frame.index.difference(durations.index).union(frame.index.difference(events.index))
    if len(missing):
        raise ValueError(f"no survival data for {len(missing)} sample(s) of the {what}, e.g. {list(missing[:3])}; "
                         f"the {what} and the durations/events must share sample ids")
    keep = frame.dropna().index
    keep = keep[durations.loc[keep].notna().to_numpy() & events.loc[keep].notna().to_numpy()]
    durations, events, frame = _checked(durations.loc[keep], events.loc[keep], frame.loc[keep])
    return durations, events, frame


def _harrell_c(durations: np.ndarray, events: np.ndarray, risk: np.ndarray) -> float:
    # concordance_index expects predicted survival times: a higher risk means a shorter time, hence -risk
    return float(concordance_index(durations, -risk, events))


def concordance_with_ci(durations: pd.Series, events: pd.Series, risk: pd.Series, n_boot: int = 1000,
                        seed: int = 0, level: float = 0.95) -> tuple[float, tuple[float, float]]:
    """Harrell's C of a risk score with a percentile bootstrap interval.

    ``durations`` (> 0, any time unit), ``events`` (1 = event, 0 = censored) and ``risk`` (higher = shorter
    expected survival; any unit) are Series sharing sample ids; every id of ``risk`` must be in the other two,
    samples with a NaN are dropped. C = 0.5 is chance, 1 perfect ranking. The interval resamples samples
    (independent patients) with replacement ``n_boot`` times; resamples without any event or with a constant
    risk are skipped. Returns ``(c, (low, high))`` at confidence ``level``.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    durations, events, frame = _aligned(durations, events, risk.to_frame("risk"), "risk score")
    t, e, r = durations.to_numpy(), events.to_numpy(), frame["risk"].to_numpy(dtype=float)
    if e.sum() == 0:
        raise ValueError(f"no events among the {len(e)} samples: the concordance is undefined")
    if np.unique(r).size < 2:
        raise ValueError("the risk score is constant: the concordance is undefined")
    c = _harrell_c(t, e, r)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(t), len(t))
        if e[idx].sum() == 0 or np.unique(r[idx]).size < 2:
            continue
        boots.append(_harrell_c(t[idx], e[idx], r[idx]))
    if not boots:
        raise ValueError(f"every one of the {n_boot} bootstrap resamples lacked an event or had a constant risk; "
                         "more samples with events are needed for an interval")
    tail = (1 - level) / 2
    low, high = np.quantile(boots, [tail, 1 - tail])
    return c, (float(low), float(high))


@dataclass(frozen=True)
class CoxResult:
    """A fitted Cox proportional-hazards model.

    Attributes:
        summary: one row per covariate (index = column names): ``hazard_ratio`` (per unit of the covariate, in
            the covariate's own unit), ``hr_low``/``hr_high`` (its 95% Wald interval) and ``p`` (Wald test).
        concordance: Harrell's C of the model's linear predictor on the fitted samples.
        n: samples fitted; events: events among them.
    """

    summary: pd.DataFrame
    concordance: float
    n: int
    events: int


def cox_model(durations: pd.Series, events: pd.Series, covariates: pd.DataFrame,
              penalizer: float = 0.0) -> CoxResult:
    """Fit a Cox proportional-hazards model (lifelines ``CoxPHFitter``) of ``covariates`` (samples × covariates).

    Covariates are used in their raw units — the hazard ratio is per unit (e.g. per year of age, per SD if the
    column was standardised by the caller). Every id of ``covariates`` must be in ``durations``/``events``;
    samples with a NaN are dropped. ``penalizer`` is lifelines' L2 penalty (0 = plain partial likelihood).
    """
    if covariates.shape[1] == 0:
        raise ValueError("no covariates: pass a DataFrame with at least one column")
    non_numeric = [c for c in covariates.columns if not pd.api.types.is_numeric_dtype(covariates[c])]
    if non_numeric:
        raise ValueError(f"covariate column(s) {non_numeric} are not numeric; encode them (e.g. one-hot) first")
    durations, events, covariates = _aligned(durations, events, covariates, "covariates")
    constant = [c for c in covariates.columns if covariates[c].nunique() < 2]
    if constant:
        raise ValueError(f"covariate column(s) {constant} are constant on the {len(covariates)} samples with "
                         "survival data; drop them before fitting")
    if events.sum() == 0:
        raise ValueError(f"no events among the {len(events)} samples: a Cox model cannot be fitted")
    data = covariates.astype(float).assign(__duration=durations.to_numpy(), __event=events.to_numpy())
    fit = CoxPHFitter(penalizer=penalizer).fit(data, duration_col="__duration", event_col="__event")
    s = fit.summary
    summary = pd.DataFrame({"hazard_ratio": s["exp(coef)"], "hr_low": s["exp(coef) lower 95%"],
                            "hr_high": s["exp(coef) upper 95%"], "p": s["p"]})
    summary.index.name = "covariate"
    return CoxResult(summary, float(fit.concordance_index_), len(data), int(events.sum()))


def gene_set_score(expression: pd.DataFrame, genes: Sequence[str], seed: int = 0,
                   ctrl_size: int = 50) -> pd.Series:
    """Per-sample score of a gene set with ``scanpy.tl.score_genes`` (Seurat-style).

    ``expression`` is samples × genes on a log scale (e.g. log1p TPM); the score is the mean of the set's genes
    minus the mean of control genes drawn from the same expression bins, in the same log unit. Genes absent
    from the columns are ignored, but at least 3 must be present. Returns a Series named ``score`` indexed like
    the rows. The global NumPy random state (which scanpy seeds with ``seed``) is restored afterwards.
    """
    import anndata
    import scanpy as sc

    if expression.columns.duplicated().any():
        dup = list(expression.columns[expression.columns.duplicated()][:5])
        raise ValueError(f"duplicated gene columns, e.g. {dup}; make the gene ids unique first")
    columns = pd.Index(expression.columns.astype(str))
    wanted = list(dict.fromkeys(str(g) for g in genes))
    present = [g for g in wanted if g in columns]
    if len(present) < 3:
        missing = [g for g in wanted if g not in columns]
        raise ValueError(f"only {len(present)} of the {len(wanted)} genes of the set are expression columns "
                         f"(need >= 3); missing e.g. {missing[:5]}; check the gene id type (symbol vs Ensembl)")
    n_ctrl = min(ctrl_size, len(columns) - len(present))
    if n_ctrl < 1:
        raise ValueError(f"all {len(columns)} expression columns are in the gene set: no control genes left; "
                         "pass the full expression table, not only the set's genes")
    n_bins = max(2, min(25, len(columns) // 10))  # at least ~10 genes per expression bin
    adata = anndata.AnnData(X=expression.to_numpy(dtype=np.float64),
                            obs=pd.DataFrame(index=expression.index.astype(str)),
                            var=pd.DataFrame(index=columns))
    state = np.random.get_state()
    try:
        sc.tl.score_genes(adata, present, ctrl_size=n_ctrl, n_bins=n_bins, random_state=seed, use_raw=False)
    finally:
        np.random.set_state(state)
    return pd.Series(adata.obs["score"].to_numpy(), index=expression.index, name="score")


def logrank_power(n: int, event_fraction: float, hazard_ratio: float, alpha: float = 0.05) -> float:
    """Power (0–1) of a two-sided log-rank test between two equal groups of ``n / 2`` samples each.

    ``event_fraction`` is the probability (0–1) that a sample's event is observed during the study (the same
    in both groups); ``hazard_ratio`` the true ratio of the groups' hazards. Uses lifelines'
    ``power_under_cph`` (Schoenfeld's formula, which counts only the rejection tail in the effect's direction)
    and adds the opposite tail, so that the power at a hazard ratio of 1 equals ``alpha``.
    """
    if n < 2:
        raise ValueError(f"n must be >= 2 samples, got {n}")
    if not 0 < event_fraction <= 1:
        raise ValueError(f"event_fraction must be in (0, 1], got {event_fraction}")
    if hazard_ratio <= 0:
        raise ValueError(f"hazard_ratio must be > 0, got {hazard_ratio}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    near = power_under_cph(n / 2, n / 2, event_fraction, event_fraction, hazard_ratio, alpha)
    z = stats.norm.ppf(1 - alpha / 2)
    shift = stats.norm.ppf(near) + z  # the standardised effect that power_under_cph used
    return float(near + stats.norm.cdf(-shift - z))


def _survival_columns(clinical: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    absent = [c for c in ("os_days", "os_event") if c not in clinical.columns]
    if absent:
        raise ValueError(f"the clinical table lacks column(s) {absent}; it needs os_days and os_event")
    return clinical["os_days"], clinical["os_event"]


def _with_survival(clinical: pd.DataFrame, ids: pd.Index, what: str) -> pd.Index:
    """Ids (all of which must be in ``clinical``) whose os_days and os_event are both known."""
    missing = ids.difference(clinical.index)
    if len(missing):
        raise ValueError(f"{len(missing)} sample(s) of the {what} are not in the clinical table, e.g. "
                         f"{list(missing[:3])}; the {what} and the clinical table must share sample ids")
    known = clinical.loc[ids, ["os_days", "os_event"]].notna().all(axis=1)
    return ids[known.to_numpy()]


def score_cox(clinical: pd.DataFrame, score: pd.Series, age_column: str | None = "age_years") -> CoxResult:
    """Cox model of overall survival (``clinical``'s ``os_days``/``os_event``) on a per-sample score standardised to
    unit SD (covariate ``score``: hazard ratio per SD), with age in its raw unit when ``age_column`` exists and
    has no NaN on the samples with a score and survival data (those without are left out)."""
    durations, events = _survival_columns(clinical)
    keep = _with_survival(clinical, score.dropna().index, "score")
    score = score.loc[keep].astype(float)
    covariates = pd.DataFrame({"score": (score - score.mean()) / score.std()}, index=keep)
    if age_column is not None and age_column in clinical.columns and clinical.loc[keep, age_column].notna().all():
        covariates[age_column] = clinical.loc[keep, age_column].astype(float)
    return cox_model(durations, events, covariates)


def score_survival(clinical: pd.DataFrame, score: pd.Series, age_column: str | None = "age_years",
                   n_boot: int = 1000, seed: int = 0) -> dict:
    """Does a per-sample score predict overall survival?

    ``clinical`` holds ``os_days`` (days, > 0) and ``os_event`` (1 = death, 0 = censored), and the age column
    when given; ``score`` is a Series over (a subset of) its samples. Samples with a NaN score or survival are
    left out. Returns a dict: ``groups`` (GroupComparison of the median split high/low), ``logrank_p``,
    ``cox`` (CoxResult of the score standardised to unit SD — covariate ``score``, hazard ratio per SD — plus
    age in its raw unit when ``age_column`` exists and has no NaN on these samples), ``cindex``/``cindex_ci``
    (Harrell's C of the raw score and its bootstrap interval), ``n``, ``events`` and ``power`` (log-rank power
    of the median split at a hazard ratio of 2 for this n and event fraction).
    """
    durations, events = _survival_columns(clinical)
    keep = _with_survival(clinical, score.dropna().index, "score")
    score = score.loc[keep].astype(float)
    if len(score) < 4 or score.nunique() < 2:
        raise ValueError(f"{len(score)} samples with a score and survival data, {score.nunique()} distinct "
                         "score values: need at least 4 samples and a non-constant score")
    groups = median_split_survival(durations.loc[keep], events.loc[keep], score)
    cox = score_cox(clinical, score, age_column)
    cindex, ci = concordance_with_ci(durations, events, score, n_boot=n_boot, seed=seed)
    n, n_events = len(keep), int(events.loc[keep].sum())
    return {"groups": groups, "logrank_p": groups.logrank_p, "cox": cox, "cindex": cindex, "cindex_ci": ci,
            "n": n, "events": n_events, "power": logrank_power(n, n_events / n, 2.0) if n_events else 0.0}


def cluster_survival(embeddings: pd.DataFrame, clinical: pd.DataFrame, n_clusters: int = 2,
                     seed: int = 0) -> dict:
    """k-means clusters of patient embeddings and the survival of the clusters.

    ``embeddings`` is patients × dimensions (any unit; not rescaled here), ``clinical`` holds ``os_days``/
    ``os_event`` for every patient. Patients with a NaN embedding or unknown survival are left out before
    clustering (scikit-learn KMeans, n_init=10, random_state=seed). Clusters are named ``c1``..``ck`` from
    the largest to the smallest. Returns a dict: ``groups`` (GroupComparison by cluster), ``labels`` (Series
    patient → cluster), ``logrank_p``, ``n``, ``events`` and ``power`` (log-rank power of two equal groups at a
    hazard ratio of 2 for this n and event fraction).
    """
    from sklearn.cluster import KMeans

    if n_clusters < 2:
        raise ValueError(f"n_clusters must be >= 2 to compare survival, got {n_clusters}")
    durations, events = _survival_columns(clinical)
    keep = _with_survival(clinical, embeddings.dropna().index, "embeddings")
    if len(keep) < 2 * n_clusters:
        raise ValueError(f"only {len(keep)} patient(s) with an embedding and survival data; {n_clusters} clusters "
                         f"need at least {2 * n_clusters}")
    raw = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(
        embeddings.loc[keep].to_numpy(dtype=float))
    by_size = pd.Series(raw).value_counts().index  # largest first (ties: as value_counts orders them)
    names = {int(k): f"c{i + 1}" for i, k in enumerate(by_size)}
    labels = pd.Series([names[int(k)] for k in raw], index=keep, name="cluster")
    groups = compare_groups(durations.loc[keep], events.loc[keep], labels, label="cluster")
    n, n_events = len(keep), int(events.loc[keep].sum())
    return {"groups": groups, "labels": labels, "logrank_p": groups.logrank_p, "n": n, "events": n_events,
            "power": logrank_power(n, n_events / n, 2.0) if n_events else 0.0}
