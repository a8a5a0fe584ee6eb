"""Survival of radiogenomic traits (chapter 8; Smedley et al. 2020, reference spec ``related_papers.md`` §3.10).

The features are binary, one per (imaging trait, gene set) pair, 1 when the set is saliency-enriched in the patient
(:func:`~.radiogenomics.radiogenomic_traits`).

* :func:`trait_survival` — the honest path: per feature, the Kaplan–Meier log-rank test
  (:func:`~.survival.compare_groups`) and a Cox model adjusted for the covariates (:func:`~.survival.cox_model`),
  with Benjamini–Hochberg q-values across features.
* :func:`stepwise_cox` — the paper's AIC stepwise Cox selection (R ``step()``, forward–backward), as an option.
  Its p-values are not valid after selection (see its docstring).
"""
from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
import pandas as pd
from lifelines import CoxPHFitter
from lifelines.exceptions import ConvergenceError, ConvergenceWarning
from statsmodels.stats.multitest import multipletests

from .survival import CoxResult, _aligned, compare_groups, cox_model

SURVIVAL_COLUMNS = ["feature", "n", "n_with", "events", "logrank_p", "hr", "hr_low", "hr_high", "cox_p",
                    "logrank_q", "cox_q"]


def _check_binary(features: pd.DataFrame) -> None:
    values = pd.unique(features.to_numpy().ravel())
    bad = [v for v in values if not (pd.isna(v) or v in (0, 1))]
    if bad:
        raise ValueError(f"features must be binary 0/1 (NaN allowed); found values {bad[:5]}. Binarise them first.")


def _bh(p: pd.Series) -> np.ndarray:
    """BH q-values of ``p``, NaN (untestable) entries kept NaN and left out of the correction."""
    q = np.full(len(p), np.nan)
    ok = p.notna().to_numpy()
    if ok.any():
        q[ok] = multipletests(p.to_numpy()[ok], method="fdr_bh")[1]
    return q


def trait_survival(durations: pd.Series, events: pd.Series, features: pd.DataFrame,
                   covariates: pd.DataFrame | None = None, min_group: int = 5) -> pd.DataFrame:
    """Per binary feature: log-rank p of the Kaplan–Meier curves of its two groups and the covariate-adjusted
    Cox hazard ratio of the feature, with BH q-values across the features tested.

    Args:
        durations: patient → time to event (> 0; any unit, e.g. days).
        events: patient → 1 event (death/progression), 0 censored.
        features: patients × binary (0/1) features, e.g. :func:`~.radiogenomics.radiogenomic_traits`.
        covariates: patients × numeric covariates to adjust the Cox model for (paper: gender, race (white vs
            non-white), age above/below the mean), or None for univariate models. Every patient of ``features``
            must have survival data (ids shared); patients with a NaN in the feature or a covariate are left out
            of that feature's tests (the log-rank test uses the same patients as the Cox model).
        min_group: features with fewer patients than this in either group are not tested (listed in
            ``result.attrs["skipped"]``, name → (n with 0, n with 1)).

    Returns:
        One row per tested feature, sorted by ``cox_p`` (then name): ``feature``, ``n`` (patients), ``n_with``
        (patients with feature = 1), ``events``, ``logrank_p``, ``hr`` (hazard ratio of feature = 1 vs 0,
        adjusted), ``hr_low``/``hr_high`` (95 % Wald interval), ``cox_p`` (Wald), ``logrank_q`` and ``cox_q``
        (BH across the tested features; a non-converged Cox fit gives NaN, left out of the correction).
    """
    _check_binary(features)
    covariates = pd.DataFrame(index=features.index) if covariates is None else covariates
    clash = [c for c in features.columns if c in covariates.columns]
    if clash:
        raise ValueError(f"feature(s) {clash} are also covariate columns; rename one of them.")
    missing = features.index.difference(covariates.index)
    if len(missing):
        raise ValueError(f"{len(missing)} patient(s) of features have no covariate row, e.g. {list(missing[:3])}; "
                         "covariates must cover the patients of features (NaN rows are allowed).")
    rows, skipped = [], {}
    for name in features.columns:
        frame = pd.concat([features[[name]], covariates.loc[features.index]], axis=1)
        durations_ok, events_ok, frame = _aligned(durations, events, frame, f"feature {name!r}")
        group = frame[name].astype(int)
        n_with = int(group.sum())
        if min(n_with, len(group) - n_with) < min_group:
            skipped[str(name)] = (len(group) - n_with, n_with)
            continue
        logrank = compare_groups(durations_ok, events_ok, group)
        hr = low = high = cox_p = np.nan
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                row = cox_model(durations_ok, events_ok, frame).summary.loc[name]
            hr, low, high, cox_p = row["hazard_ratio"], row["hr_low"], row["hr_high"], row["p"]
        except ConvergenceError:
            pass  # e.g. complete separation: no finite hazard ratio; reported as NaN
        rows.append({"feature": str(name), "n": len(group), "n_with": n_with, "events": int(events_ok.sum()),
                     "logrank_p": logrank.logrank_p, "hr": hr, "hr_low": low, "hr_high": high, "cox_p": cox_p})
    table = pd.DataFrame(rows, columns=SURVIVAL_COLUMNS[:-2])
    table["logrank_q"] = _bh(table["logrank_p"])
    table["cox_q"] = _bh(table["cox_p"])
    table = table.sort_values(["cox_p", "feature"], kind="mergesort", na_position="last").reset_index(drop=True)
    table.attrs["skipped"] = skipped
    return table


def _null_log_likelihood(durations: np.ndarray, events: np.ndarray) -> float:
    """Cox partial log-likelihood of the model without covariates (β = 0), Efron's ties as lifelines:
    −Σ over event times t of Σ_{l < d_t} log(n_at_risk(t) − l)."""
    ll = 0.0
    for t in np.unique(durations[events == 1]):
        d = int(((durations == t) & (events == 1)).sum())
        ll -= float(np.log((durations >= t).sum() - np.arange(d)).sum())
    return ll


def stepwise_cox(durations: pd.Series, events: pd.Series, base_covariates: pd.DataFrame | None,
                 candidates: pd.DataFrame, criterion: str = "aic", direction: str = "both",
                 max_steps: int = 100) -> tuple[list[str], CoxResult | None]:
    """Stepwise Cox selection as the paper's R ``step()`` (§3.10): start from the base covariates, and at each step
    add or drop the one candidate that lowers the criterion most; stop when no move lowers it.

    **Caveat.** Selecting on the same data inflates significance: the hazard ratios of the selected features are
    biased away from 1 and their p-values and intervals are not valid (they ignore the search over all candidates
    and steps). Use it to describe a compact model, not to claim that a feature predicts survival; the honest test
    is :func:`trait_survival` (one pre-specified test per feature, BH across features) or a selection validated on
    held-out patients.

    Args:
        durations, events: patient → time (> 0) and event (0/1).
        base_covariates: patients × numeric covariates always kept (R's lower scope; paper: gender, race, age), or
            None to start from the empty model.
        candidates: patients × numeric candidate features (paper: the six VASARI traits and all radiogenomic
            traits; R's upper scope). Candidates constant on the complete-case patients are left out (warning).
        criterion: "aic" (−2 log partial likelihood + 2·k, as R's step on coxph) or "bic" (penalty log(events)·k).
        direction: "both" (R's default), "forward" or "backward" (starts from all candidates).
        max_steps: at most this many moves.

    Returns:
        ``(selected candidates in order of entry, CoxResult of base + selected)`` — the final fit by
        :func:`~.survival.cox_model`; None when the final model has no covariate. All models are fitted on the
        patients complete in every column (as the paper's ``na.omit``), so their criteria are comparable.
    """
    if criterion not in ("aic", "bic") or direction not in ("both", "forward", "backward"):
        raise ValueError(f"criterion={criterion!r}, direction={direction!r}: use criterion 'aic' or 'bic' and "
                         "direction 'both', 'forward' or 'backward'.")
    base = pd.DataFrame(index=candidates.index) if base_covariates is None else base_covariates
    clash = [c for c in candidates.columns if c in base.columns]
    if clash:
        raise ValueError(f"candidate(s) {clash} are also base covariates; rename or drop them.")
    data = pd.concat([base, candidates], axis=1, join="inner")
    durations, events, data = _aligned(durations, events, data, "covariates and candidates")
    if events.sum() == 0:
        raise ValueError(f"no events among the {len(data)} complete-case patients; no Cox model can be fitted.")
    pool = [str(c) for c in candidates.columns if data[c].nunique() > 1]
    if len(pool) < candidates.shape[1]:
        warnings.warn(f"candidates constant on the {len(data)} complete-case patients were left out: "
                      f"{[c for c in candidates.columns if str(c) not in pool]}", stacklevel=2)
    data.columns = data.columns.astype(str)
    base_cols = [str(c) for c in base.columns]
    t, e = durations.to_numpy(dtype=float), events.to_numpy(dtype=int)
    penalty = 2.0 if criterion == "aic" else math.log(int(e.sum()))
    cache: dict[frozenset, float] = {}

    def score(selected: Sequence[str]) -> float:
        key = frozenset(selected)
        if key not in cache:
            cols = base_cols + list(selected)
            if not cols:
                ll = _null_log_likelihood(t, e)
            else:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", ConvergenceWarning)
                        fit = CoxPHFitter().fit(data[cols].astype(float).assign(__t=t, __e=e), "__t", "__e")
                    ll = float(fit.log_likelihood_)
                except ConvergenceError:
                    ll = -math.inf  # an unfittable model is never chosen
            cache[key] = -2.0 * ll + penalty * len(cols)
        return cache[key]

    selected = list(pool) if direction == "backward" else []
    current = score(selected)
    for _ in range(max_steps):
        moves = []
        if direction in ("both", "forward"):
            moves += [selected + [c] for c in pool if c not in selected]
        if direction in ("both", "backward"):
            moves += [[s for s in selected if s != c] for c in selected]
        if not moves:
            break
        best = min(moves, key=score)
        if score(best) >= current - 1e-9:
            break
        selected, current = best, score(best)
    cols = base_cols + selected
    return selected, (cox_model(durations, events, data[cols]) if cols else None)
