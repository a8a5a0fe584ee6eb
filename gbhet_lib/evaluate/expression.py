"""Evaluation of models that predict a patient's expression profile from images (HE2RNA, Farooq et al.).

The papers' headline number is the **count of significantly well-predicted genes** (reference notes §1.4, the
protocol ``he2rna_sig_count``): with one (out-of-fold) prediction per patient,

1. per gene, the Pearson r between predicted and observed expression across the patients of a cohort; genes
   whose observed or predicted values are constant are skipped (not tested);
2. the two-sided p of r (t test with n − 2 degrees of freedom, as :func:`scipy.stats.pearsonr`);
3. Holm–Šidák over the tested genes of the cohort (``statsmodels`` ``multipletests(method="holm-sidak")``);
4. a gene is *significant* when it is rejected at level ``alpha`` (adjusted p ≤ alpha, statsmodels' convention;
   "< alpha" differs only on a boundary of measure zero) **and** r > 0.

:func:`per_gene_correlation` does steps 1–4 in one vectorised pass; :func:`expression_summary` adds the field's
other conventions (HEST-Benchmark's mean r of the 50 best genes; DeepPT's median r of the 1,000 best genes and
the number of genes with r > 0.4). :func:`per_fold_r` / :func:`per_fold_mean_r` give HE2RNA's native output (r
within each fold's test patients, averaged over folds: §1.4 step 8).

The count depends strongly on the number of patients n and genes m: :func:`min_significant_r` gives the smallest r
that can pass (at n = 96, m = 30,000 a gene needs r ≥ 0.466 at the first Holm–Šidák step; at n = 500, 0.212), and
:func:`published_comparison` puts our counts beside the published ones with n, m and that threshold, and says why
they are not comparable.

On the synthetic cohort the truth is planted: :func:`program_counts` and :func:`truth_summary` split the significant
genes by program (image-visible, invisible negative controls, background) with chance levels;
:func:`permutation_null_counts` is the count a model without signal gets; :func:`bootstrap_median_r` is a
patient-bootstrap interval (patients are the independent unit).

Shapes: expression tables are ``pandas.DataFrame`` patients × genes (index = patient ids, columns = gene ids),
float, in the model's target units (e.g. log10(1 + FPKM-UQ)); r is unitless in [−1, 1].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd
from scipy import special, stats
from statsmodels.stats.multitest import multipletests

from .metrics import group_resamples

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BACKGROUND = "background"
"""Program name of the genes in no planted program (:func:`program_counts`)."""

_SHOW = 5  # labels named in an error message


# ------------------------------------------------------------------------------------------------------ helpers
def _name_some(labels: Iterable[Any]) -> str:
    labels = list(labels)
    shown = ", ".join(repr(x) for x in labels[:_SHOW])
    return shown + (f" … ({len(labels)} in all)" if len(labels) > _SHOW else "")


def _check_axis(pred: pd.Index, obs: pd.Index, what: str) -> None:
    for name, index in (("predicted", pred), ("observed", obs)):
        if index.has_duplicates:
            raise ValueError(f"{name} has duplicated {what}: {_name_some(index[index.duplicated()].unique())}")
    if pred.equals(obs):
        return
    only_pred, only_obs = pred.difference(obs, sort=False), obs.difference(pred, sort=False)
    if len(only_pred) or len(only_obs):
        parts = [f"only in predicted: {_name_some(only_pred)}" if len(only_pred) else "",
                 f"only in observed: {_name_some(only_obs)}" if len(only_obs) else ""]
        raise ValueError(f"predicted and observed must have the same {what}; " + "; ".join(p for p in parts if p))


def _align(predicted: pd.DataFrame, observed: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(predicted, observed) as float64 arrays (n_patients, n_genes) in ``observed``'s row and column order.

    Raises ValueError naming the patients / genes that are in one table only, duplicated labels, fewer than 3
    patients, or non-finite values."""
    if not isinstance(predicted, pd.DataFrame) or not isinstance(observed, pd.DataFrame):
        raise TypeError("predicted and observed must be pandas DataFrames (patients × genes)")
    _check_axis(predicted.index, observed.index, "patients (index)")
    _check_axis(predicted.columns, observed.columns, "genes (columns)")
    pred = predicted.reindex(index=observed.index, columns=observed.columns).to_numpy(dtype=np.float64)
    obs = observed.to_numpy(dtype=np.float64)
    if len(obs) < 3:
        raise ValueError(f"a per-gene correlation test needs at least 3 patients, got {len(obs)}")
    for name, values in (("predicted", pred), ("observed", obs)):
        bad = ~np.isfinite(values).all(axis=0)
        if bad.any():
            raise ValueError(f"{name} has non-finite values in genes {_name_some(observed.columns[bad])}")
    return pred, obs


def _standardise(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Columns centred and scaled to unit norm (n, g), and which columns are constant (g,) (left as zeros)."""
    constant = (values == values[:1]).all(axis=0)
    centred = values - values.mean(axis=0)
    norm = np.sqrt(np.einsum("ij,ij->j", centred, centred))
    norm[constant | (norm == 0)] = np.inf
    return centred / norm, constant


def _pearson_r(pred: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """Per-column Pearson r of two (n, g) arrays: (g,), NaN where either column is constant."""
    zp, const_p = _standardise(pred)
    zo, const_o = _standardise(obs)
    r = np.clip(np.einsum("ij,ij->j", zp, zo), -1.0, 1.0)
    r[const_p | const_o] = np.nan
    return r


def _pearson_p(r: np.ndarray | float, n: int) -> np.ndarray:
    """Two-sided p of Pearson r from n pairs: the t test with n − 2 df, P(|T| ≥ |t|) = I_{1−r²}((n − 2)/2, 1/2)
    (the regularised incomplete beta; equal to :func:`scipy.stats.pearsonr`'s exact null). NaN stays NaN."""
    r = np.abs(np.asarray(r, dtype=np.float64))
    return np.clip(special.betainc((n - 2) / 2.0, 0.5, (1.0 - r) * (1.0 + r)), 0.0, 1.0)


def _holm_sidak(p: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(reject, adjusted p) of statsmodels' Holm–Šidák over ``p`` (empty-safe)."""
    if len(p) == 0:
        return np.zeros(0, dtype=bool), np.zeros(0)
    with np.errstate(divide="ignore"):  # p = 1 (r = 0 exactly): log1p(-1) inside statsmodels, harmless
        reject, adjusted, _, _ = multipletests(p, alpha=alpha, method="holm-sidak")
    return reject, adjusted


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")


# ------------------------------------------------------------------------------------------- per-gene testing
def per_gene_correlation(predicted: pd.DataFrame, observed: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Per-gene Pearson r across patients, its p, Holm–Šidák over the tested genes, and which genes are significant.

    Args:
        predicted: (n_patients, n_genes) predicted expression (one out-of-fold prediction per patient).
        observed: (n_patients, n_genes) observed expression, same patients and genes (any order: ``predicted`` is
            aligned to ``observed``'s order; different label sets raise a ValueError naming them).
        alpha: family-wise level of the Holm–Šidák correction.

    Returns:
        DataFrame indexed by gene (``observed``'s column order) with columns

        - ``r``: Pearson r across patients (NaN for untested genes);
        - ``p``: two-sided p, t test with n − 2 df (as :func:`scipy.stats.pearsonr`; NaN if untested);
        - ``tested``: False when the observed or the predicted values of the gene are constant;
        - ``p_holm_sidak``: Holm–Šidák adjusted p over the tested genes only (NaN if untested);
        - ``significant``: rejected by Holm–Šidák at ``alpha`` (adjusted p ≤ alpha) and r > 0.

        ``attrs`` records ``n_patients`` and ``alpha`` (used by :func:`expression_summary` and
        :func:`truth_summary` when not given).
    """
    _check_alpha(alpha)
    pred, obs = _align(predicted, observed)
    n = len(obs)
    r = _pearson_r(pred, obs)
    tested = ~np.isnan(r)
    p = _pearson_p(r, n)
    adjusted = np.full(len(r), np.nan)
    significant = np.zeros(len(r), dtype=bool)
    reject, adjusted[tested] = _holm_sidak(p[tested], alpha)
    significant[tested] = reject & (r[tested] > 0)
    table = pd.DataFrame({"r": r, "p": p, "tested": tested, "p_holm_sidak": adjusted, "significant": significant},
                         index=observed.columns.copy())
    table.index.name = observed.columns.name or "gene"
    table.attrs.update(n_patients=n, alpha=float(alpha))
    return table


def min_significant_r(n_patients: int, n_genes: int, alpha: float = 0.05) -> dict[str, float]:
    """The smallest positive r that passes Holm–Šidák at its first and at its last step.

    The first (most stringent) step compares the smallest p with the Šidák level 1 − (1 − alpha)^(1/m); the last
    step compares the largest p with alpha itself. Solved exactly from the t distribution with n − 2 df:
    1 − r² = I⁻¹_{level}((n − 2)/2, 1/2). The returned r is the smallest float whose p (as
    :func:`per_gene_correlation` computes it) is ≤ the step's level, so a gene at exactly this r passes that step
    and any smaller r does not.

    Args:
        n_patients: n, the patients the correlations are computed over (≥ 3).
        n_genes: m, the tested genes (≥ 1).
        alpha: family-wise level.

    Returns:
        ``{"first_step": r_1, "last_step": r_m}`` (r_1 ≥ r_m; equal when m = 1).

    Reference: n = 150, m = 30,000 → first step ≈ 0.379; n = 96 → 0.466; n = 500 → 0.212.
    """
    _check_alpha(alpha)
    if n_patients < 3 or n_genes < 1:
        raise ValueError(f"need n_patients ≥ 3 and n_genes ≥ 1, got {n_patients} and {n_genes}")
    df = n_patients - 2
    out = {}
    for step, k in (("first_step", n_genes), ("last_step", 1)):
        level = 1 - np.power(1.0 - alpha, 1.0 / k)  # exactly statsmodels' holm-sidak level at that step
        r = float(np.sqrt(1.0 - special.betaincinv(df / 2.0, 0.5, level)))
        for _ in range(64):  # nudge to the float boundary of "p(r) ≤ level" (a few ulps at most)
            if _pearson_p(r, n_patients) > level:
                r = float(np.nextafter(r, 2.0))
            elif _pearson_p(np.nextafter(r, -2.0), n_patients) <= level:
                r = float(np.nextafter(r, -2.0))
            else:
                break
        out[step] = r
    return out


def _top_k_statistic(r: np.ndarray, k: int, statistic) -> float:
    return float(statistic(np.sort(r)[::-1][:k])) if len(r) >= k else float("nan")


def expression_summary(table: pd.DataFrame, n_patients: int | None = None) -> dict[str, Any]:
    """The headline numbers of one :func:`per_gene_correlation` table.

    Args:
        table: output of :func:`per_gene_correlation`.
        n_patients: the patients the correlations were computed over; defaults to ``table.attrs["n_patients"]``
            (set by :func:`per_gene_correlation`, lost e.g. when the table is read back from CSV).

    Returns:
        ``n_patients``; ``n_genes_tested``; ``n_significant`` (the HE2RNA / Farooq count); ``median_r`` (over
        tested genes); ``mean_r_top50`` (HEST-Benchmark: mean r of the 50 best genes); ``median_r_top1000`` and
        ``n_r_above_0_4`` (DeepPT: median r of the 1,000 best genes, number of genes with r > 0.4);
        ``min_significant_r`` (the smallest r among the significant genes, NaN if none); and the thresholds
        ``r_threshold_first_step`` / ``r_threshold_last_step`` of :func:`min_significant_r` at (n_patients,
        n_genes_tested) and the table's alpha (``attrs``, default 0.05). The top-k statistics are NaN when fewer
        than k genes were tested (they would not be the published statistic).
    """
    if n_patients is None:
        n_patients = table.attrs.get("n_patients")
        if n_patients is None:
            raise ValueError("n_patients is not recorded in table.attrs: pass it explicitly")
    tested = table["tested"].to_numpy(dtype=bool)
    r = table["r"].to_numpy(dtype=np.float64)[tested]
    significant = table["significant"].to_numpy(dtype=bool)
    sig_r = table["r"].to_numpy(dtype=np.float64)[significant]
    n_tested = int(tested.sum())
    thresholds = (min_significant_r(int(n_patients), n_tested, table.attrs.get("alpha", 0.05))
                  if n_tested and n_patients >= 3 else {"first_step": np.nan, "last_step": np.nan})
    return {
        "n_patients": int(n_patients),
        "n_genes_tested": n_tested,
        "n_significant": int(significant.sum()),
        "median_r": float(np.median(r)) if n_tested else float("nan"),
        "mean_r_top50": _top_k_statistic(r, 50, np.mean),
        "median_r_top1000": _top_k_statistic(r, 1000, np.median),
        "n_r_above_0_4": int((r > 0.4).sum()),
        "min_significant_r": float(sig_r.min()) if len(sig_r) else float("nan"),
        "r_threshold_first_step": float(thresholds["first_step"]),
        "r_threshold_last_step": float(thresholds["last_step"]),
    }


# ------------------------------------------------------------------------------------------------ per-fold r
def per_fold_r(predicted: pd.DataFrame, observed: pd.DataFrame, folds: pd.Series) -> pd.DataFrame:
    """Per-gene Pearson r within each fold's test patients: HE2RNA's ``results_per_fold.csv`` for one cohort.

    Args:
        predicted, observed: (n_patients, n_genes) as in :func:`per_gene_correlation`.
        folds: (n_patients,) the test fold of each patient, indexed by patient (the same patients).

    Returns:
        DataFrame genes × folds (sorted fold labels) of r; NaN where the gene is constant within the fold. Each
        fold needs at least 3 patients.
    """
    pred, obs = _align(predicted, observed)
    if not isinstance(folds, pd.Series):
        raise TypeError("folds must be a pandas Series indexed by patient")
    _check_axis(folds.index, observed.index, "patients (folds index vs observed index)")
    labels = folds.reindex(observed.index).to_numpy()
    columns = {}
    for fold in sorted(pd.unique(labels)):
        rows = labels == fold
        if rows.sum() < 3:
            raise ValueError(f"fold {fold!r} has {int(rows.sum())} patients; a per-fold r needs at least 3")
        columns[fold] = _pearson_r(pred[rows], obs[rows])
    out = pd.DataFrame(columns, index=observed.columns.copy())
    out.columns.name = "fold"
    return out


def per_fold_mean_r(predicted: pd.DataFrame, observed: pd.DataFrame, folds: pd.Series) -> pd.Series:
    """HE2RNA's native per-gene score: r within each fold's test patients, averaged over the folds.

    The "variant on per-fold r averaged over folds" of the reference notes (§1.4 step 8). Folds where the gene is
    constant are left out of its mean; a gene constant in every fold is NaN.

    Returns:
        Series (n_genes,) named ``mean_fold_r``, indexed by gene.
    """
    table = per_fold_r(predicted, observed, folds).to_numpy()
    defined = ~np.isnan(table)
    count = defined.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(defined, table, 0.0).sum(axis=1) / count
    mean[count == 0] = np.nan
    return pd.Series(mean, index=observed.columns.copy(), name="mean_fold_r")


# ------------------------------------------------------------------------------------------- planted truth
def _programs(table: pd.DataFrame, gene_program: Mapping[str, str],
              visible: Iterable[str]) -> tuple[np.ndarray, list[str], set[str]]:
    mapping = dict(gene_program.items())
    visible = set(visible)
    if BACKGROUND in visible:
        raise ValueError(f"{BACKGROUND!r} is the name of the genes in no program; it cannot be visible")
    known = set(mapping.values())
    unknown = visible - known
    if unknown:
        raise ValueError(f"visible programs not in gene_program: {_name_some(sorted(unknown))}")
    program = np.array([mapping.get(g, BACKGROUND) for g in table.index], dtype=object)
    order = sorted(known & visible) + sorted(known - visible - {BACKGROUND}) + [BACKGROUND]
    return program, order, visible


def program_counts(table: pd.DataFrame, gene_program: Mapping[str, str], visible: Iterable[str]) -> pd.DataFrame:
    """Significant genes per planted program.

    Args:
        table: output of :func:`per_gene_correlation`.
        gene_program: gene → program name (a Mapping or a Series); genes of the table in no program are
            ``"background"``; genes of the mapping absent from the table are ignored.
        visible: the names of the image-visible programs (each must occur in ``gene_program``).

    Returns:
        DataFrame indexed by program (visible programs, then invisible ones, then ``background``) with
        ``n_genes`` (genes of the table in the program), ``n_tested``, ``n_significant``, ``share_significant``
        (n_significant / n_tested, NaN when none tested) and ``visible``.
    """
    program, order, visible = _programs(table, gene_program, visible)
    tested = table["tested"].to_numpy(dtype=bool)
    significant = table["significant"].to_numpy(dtype=bool)
    rows = []
    for name in order:
        member = program == name
        n_tested = int((member & tested).sum())
        n_sig = int((member & significant).sum())
        rows.append({"program": name, "n_genes": int(member.sum()), "n_tested": n_tested, "n_significant": n_sig,
                     "share_significant": n_sig / n_tested if n_tested else float("nan"),
                     "visible": name in visible})
    return pd.DataFrame(rows).set_index("program")


def truth_summary(table: pd.DataFrame, gene_program: Mapping[str, str], visible: Iterable[str],
                  alpha: float | None = None) -> dict[str, Any]:
    """The significant genes against the planted truth, with chance levels.

    Args:
        table, gene_program, visible: as in :func:`program_counts`.
        alpha: the table's family-wise level; defaults to ``table.attrs["alpha"]`` (else 0.05).

    Returns:
        - ``n_significant`` and its split ``n_significant_visible`` / ``_invisible`` / ``_background``;
        - ``n_tested_visible`` / ``_invisible`` / ``_background``;
        - ``precision_visible``: visible / all significant (NaN when nothing is significant);
        - ``invisible_expected_if_random``: n_significant × (tested invisible genes / tested genes), the count
          expected if the significant genes were spread at random over the tested genes;
        - ``invisible_binomial_p``: one-sided binomial P(X ≥ n_significant_invisible), X ~ Bin(n_significant,
          tested invisible / tested) (:func:`scipy.stats.binomtest`; 1 when nothing is significant);
        - ``invisible_fwer_bound`` = alpha: if the model carries no signal about the invisible programs (for each
          invisible gene the prediction is independent of the observed value across patients, so its p is a valid
          null p), Holm–Šidák controls the family-wise error, so P(n_significant_invisible ≥ 1) ≤ alpha whatever
          the other genes do (exactly under independent p-values, as Šidák assumes; requiring r > 0 only lowers
          it). It bounds the *probability of any* invisible hit, not their expected number: a count ≥ 1 on one
          run is evidence at level alpha that the invisible programs leak into the predictions (or that they are
          correlated with the visible ones in this cohort). :func:`permutation_null_counts` gives the empirical
          counterpart.
    """
    if alpha is None:
        alpha = float(table.attrs.get("alpha", 0.05))
    _check_alpha(alpha)
    program, _, visible = _programs(table, gene_program, visible)
    tested = table["tested"].to_numpy(dtype=bool)
    significant = table["significant"].to_numpy(dtype=bool)
    is_visible = np.isin(program, list(visible))
    is_background = program == BACKGROUND
    is_invisible = ~is_visible & ~is_background
    n_sig = int(significant.sum())
    counts = {kind: int((mask & significant).sum()) for kind, mask in
              (("visible", is_visible), ("invisible", is_invisible), ("background", is_background))}
    n_tested = int(tested.sum())
    share_invisible = (is_invisible & tested).sum() / n_tested if n_tested else float("nan")
    binomial_p = (float(stats.binomtest(counts["invisible"], n_sig, share_invisible, alternative="greater").pvalue)
                  if n_sig else 1.0)
    return {
        "n_significant": n_sig,
        **{f"n_significant_{kind}": count for kind, count in counts.items()},
        "n_tested_visible": int((is_visible & tested).sum()),
        "n_tested_invisible": int((is_invisible & tested).sum()),
        "n_tested_background": int((is_background & tested).sum()),
        "precision_visible": counts["visible"] / n_sig if n_sig else float("nan"),
        "invisible_expected_if_random": float(n_sig * share_invisible) if n_tested else float("nan"),
        "invisible_binomial_p": binomial_p,
        "invisible_fwer_bound": float(alpha),
    }


# ---------------------------------------------------------------------------------------------- chance levels
def permutation_null_counts(predicted: pd.DataFrame, observed: pd.DataFrame, n_permutations: int,
                            rng: np.random.Generator | int | None, alpha: float = 0.05,
                            genes: Iterable[str] | None = None) -> np.ndarray:
    """Significant-gene counts when the predictions are shuffled across patients: the chance level of
    ``n_significant``.

    Each permutation reorders the patients (rows) of ``predicted`` jointly for all genes (keeping the correlation
    between genes in the predictions, breaking the patient link), then applies :func:`per_gene_correlation`'s
    test (Holm–Šidák over the tested genes, r > 0). Under this null the count is 0 in at least 1 − alpha of the
    permutations (family-wise control).

    Args:
        predicted, observed: (n_patients, n_genes) as in :func:`per_gene_correlation`.
        n_permutations: number of shuffles (≥ 1).
        rng: a numpy Generator, or a seed for :func:`numpy.random.default_rng`.
        alpha: family-wise level.
        genes: count only these genes (e.g. the invisible programs' genes); the correction still runs over all
            tested genes. Default: all genes.

    Returns:
        int array (n_permutations,) of significant-gene counts.
    """
    _check_alpha(alpha)
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be ≥ 1, got {n_permutations}")
    rng = np.random.default_rng(rng)
    pred, obs = _align(predicted, observed)
    n = len(obs)
    zp, const_p = _standardise(pred)
    zo, const_o = _standardise(obs)
    tested = ~(const_p | const_o)  # shuffling rows does not change which genes are constant
    counted = np.ones(len(tested), dtype=bool)
    if genes is not None:
        genes = pd.Index(list(genes))
        missing = genes.difference(observed.columns)
        if len(missing):
            raise ValueError(f"genes not in the tables: {_name_some(missing)}")
        counted = observed.columns.isin(genes)
    zp, zo, counted = zp[:, tested], zo[:, tested], counted[tested]
    counts = np.zeros(n_permutations, dtype=np.int64)
    for i in range(n_permutations):
        r = np.clip(np.einsum("ij,ij->j", zp[rng.permutation(n)], zo), -1.0, 1.0)
        reject, _ = _holm_sidak(_pearson_p(r, n), alpha)
        counts[i] = int((reject & (r > 0) & counted).sum())
    return counts


def bootstrap_median_r(predicted: pd.DataFrame, observed: pd.DataFrame, n_boot: int,
                       rng: np.random.Generator | int | None, level: float = 0.95) -> tuple[float, float]:
    """Patient-bootstrap percentile interval of the median per-gene r: (low, high).

    Each of ``n_boot`` resamples draws the patients with replacement (the patient is the independent unit) and
    recomputes every gene's r (genes constant in a resample are left out of its median). The predictions are held
    fixed: the interval reflects which patients were evaluated, not retraining. Draws come from
    :func:`gbhet_lib.evaluate.metrics.group_resamples` seeded from ``rng``; the bounds are the (1 ± level) / 2
    quantiles, as in :func:`~gbhet_lib.evaluate.metrics.bootstrap_ci`. The point estimate is
    ``per_gene_correlation(...)["r"]`` 's median over tested genes.

    Caveat: resampling widens every gene's r, so when the median falls in a gap of a bimodal r distribution
    (e.g. a block of well-predicted genes among many null ones) the percentile interval is shifted and can miss the
    point estimate; report the two together.
    """
    pred, obs = _align(predicted, observed)
    seed = int(np.random.default_rng(rng).integers(2 ** 63 - 1))
    _, members, draws = group_resamples(np.arange(len(obs)), n_boot, level, seed)
    rows = np.concatenate(members)[draws]  # patient codes → row positions (identity: one row per patient)
    if len(obs) ** 4 >= 2 ** 53:
        raise ValueError(f"{len(obs)} patients: too many for the exact constancy check of the bootstrap")
    medians = np.empty(n_boot)
    chunk = max(1, _BOOT_ELEMENTS // max(obs.shape[1], 1))
    resampled_r = _resampler(pred, obs)
    for start in range(0, n_boot, chunk):
        r = resampled_r(rows[start:start + chunk])
        tested = ~np.isnan(r)
        r[~tested] = np.inf  # the median of each row over its tested genes: sort puts untested genes last
        r.sort(axis=1)
        k = tested.sum(axis=1)
        lo, hi = r[np.arange(len(r)), np.maximum(k - 1, 0) // 2], r[np.arange(len(r)), np.maximum(k, 1) // 2]
        medians[start:start + chunk] = np.where(k > 0, (lo + hi) / 2, np.nan)
    low, high = np.nanquantile(medians, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


_BOOT_ELEMENTS = 2_000_000  # resamples × genes per block of :func:`_resampled_r` (memory only)


def _resampler(pred: np.ndarray, obs: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A function of (B, n) row indices drawn with replacement giving the per-gene Pearson r in each of the B
    resamples: (B, g), NaN where a gene is constant in the resample.

    Equal to ``_pearson_r(pred[rows[b]], obs[rows[b]])`` for each b (up to rounding), computed as weighted moments
    (C @ x with C the (B, n) draw counts: a few matrix products instead of B passes). Constancy is decided
    exactly, from integer dense ranks ρ: a gene is constant in a resample iff its drawn ranks have zero variance,
    n Σ c ρ² − (Σ c ρ)² = 0, which float64 sums of integers below 2⁵³ compute exactly.

    Args:
        pred, obs: (n, g) float arrays.
    """
    n = len(pred)
    prepared = []
    for values in (pred, obs):
        ranks = stats.rankdata(values, method="dense", axis=0)
        centred = values - values.mean(axis=0)
        prepared.append((ranks, ranks * ranks, centred, centred * centred))
    xy = prepared[0][2] * prepared[1][2]

    def resampled_r(rows: np.ndarray) -> np.ndarray:
        b = len(rows)
        counts = np.bincount((np.arange(b)[:, None] * n + rows).ravel(), minlength=b * n)
        counts = counts.reshape(b, n).astype(np.float64)
        constant = np.zeros((b, pred.shape[1]), dtype=bool)
        moments = []
        for ranks, ranks2, centred, centred2 in prepared:
            s1 = counts @ ranks
            constant |= n * (counts @ ranks2) - s1 * s1 == 0
            total = counts @ centred
            moments.append((total, np.maximum(counts @ centred2 - total * total / n, 0.0)))
        (sx, vx), (sy, vy) = moments
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.clip((counts @ xy - sx * sy / n) / np.sqrt(vx * vy), -1.0, 1.0)
        r[constant] = np.nan
        return r

    return resampled_r


# ------------------------------------------------------------------------------------------ published counts
_FIRST_STEP_GENES = 30_000  # m used for a published row whose gene count is unknown


@dataclass(frozen=True)
class PublishedCount:
    """One published count of significantly well-predicted genes (reference notes §1.4, §2.1)."""

    study: str
    modality: str
    cohort: str
    n_patients: float  # NaN: not reported
    n_genes: float  # NaN: not reported
    n_significant: int
    why_not_comparable: str


_HE2RNA_WHY = ("whole-slide H&E, not radiology; one pan-cancer model trained on ≈8,700 patients of 28 cancer types; "
               "n ≈ {n} patients with FPKM-UQ in the split file, so the first Holm–Šidák step needs r ≥ {r:.3f} at "
               "m = 30,000; gene set ≈30,000 nonzero-median genes [unverified]; the Holm–Šidák count and whether r "
               "was out-of-fold or per-fold are recalled, not verified against the paper")
_FAROOQ_WHY = ("{modality} (TCIA images matched to TCGA RNA-seq: far fewer patients than HE2RNA's cohort); patients, "
               "gene set and units not reported, so the significance threshold cannot be computed; split, test "
               "sidedness and the r > 0 requirement unspecified; count as reported in the brief, not checked against "
               "the full text")

PUBLISHED_COUNTS: tuple[PublishedCount, ...] = (
    *(PublishedCount("Farooq et al. 2024", modality, cohort, np.nan, np.nan, count,
                     _FAROOQ_WHY.format(modality=modality))
      for cohort, modality, count in (("GBM", "MRI", 1731), ("LGG", "MRI", 1632), ("BRCA", "MRI", 838),
                                      ("LUAD", "CT", 656))),
    *(PublishedCount("HE2RNA (Schmauch et al. 2020)", "WSI", cohort, n, float(_FIRST_STEP_GENES), count,
                     _HE2RNA_WHY.format(n=f"{n:,}", r=min_significant_r(n, _FIRST_STEP_GENES)["first_step"]))
      for cohort, n, count in (("GBM", 96, 3241), ("LGG", 485, 3232), ("BRCA", 1057, 1627), ("LUAD", 467, 1539))),
)
"""Published counts: Farooq et al. (arXiv 2408.00311) and HE2RNA, per TCGA cohort; HE2RNA's n from its split file."""

_OURS_KEYS = ("modality", "cohort", "n_patients", "n_genes_tested", "n_significant")


def _first_step(n: float, m: float) -> float:
    if not np.isfinite(n) or n < 3:
        return float("nan")
    return min_significant_r(int(n), int(m) if np.isfinite(m) and m >= 1 else _FIRST_STEP_GENES)["first_step"]


def published_comparison(ours: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Our counts beside the published ones, with n, m, the first-step threshold and why they differ.

    Args:
        ours: model name → {"modality", "cohort", "n_patients", "n_genes_tested", "n_significant"} (e.g. from
            :func:`expression_summary`), optionally "why_not_comparable" (replaces the generated text).

    Returns:
        DataFrame with one row per published count (:data:`PUBLISHED_COUNTS`) then one per model, columns
        ``study``, ``modality``, ``cohort``, ``n_patients`` (NaN: not reported), ``n_genes`` (NaN: not reported),
        ``n_significant``, ``min_significant_r_first_step`` (:func:`min_significant_r` at n and m = n_genes, or
        m = 30,000 when unknown; NaN when n is unknown) and ``why_not_comparable``.
    """
    rows = [{"study": p.study, "modality": p.modality, "cohort": p.cohort, "n_patients": p.n_patients,
             "n_genes": p.n_genes, "n_significant": p.n_significant,
             "min_significant_r_first_step": _first_step(p.n_patients, p.n_genes),
             "why_not_comparable": p.why_not_comparable} for p in PUBLISHED_COUNTS]
    he2rna = {p.cohort: p for p in PUBLISHED_COUNTS if p.study.startswith("HE2RNA")}
    for name, entry in ours.items():
        missing = [k for k in _OURS_KEYS if k not in entry]
        if missing:
            raise ValueError(f"ours[{name!r}] lacks {', '.join(missing)}")
        n, m = float(entry["n_patients"]), float(entry["n_genes_tested"])
        threshold = _first_step(n, m)
        why = entry.get("why_not_comparable")
        if not why:
            ref = he2rna.get(str(entry["cohort"]))
            versus = (f" vs r ≥ {_first_step(ref.n_patients, ref.n_genes):.3f} for HE2RNA's {ref.cohort} "
                      f"(n ≈ {ref.n_patients:,.0f}, m = 30,000)" if ref else "")
            why = (f"{entry['modality']} on n = {n:,.0f} patients and m = {m:,.0f} genes: the first Holm–Šidák step "
                   f"needs r ≥ {threshold:.3f}{versus}; counts grow with n and m, so they compare only next to n, "
                   "m, the gene set, units and the split")
        rows.append({"study": name, "modality": entry["modality"], "cohort": entry["cohort"], "n_patients": n,
                     "n_genes": m, "n_significant": int(entry["n_significant"]),
                     "min_significant_r_first_step": threshold, "why_not_comparable": why})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------------ figure
def r_distribution_figure(tables: Mapping[str, pd.DataFrame],
                          min_r: float | Mapping[str, float] | None = None) -> "Figure":
    """Step histograms of the per-gene r (tested genes, as a share of them) of each model, with the first-step
    significance threshold as vertical dashed line(s); the legend gives each model's n_significant.

    Args:
        tables: model name → :func:`per_gene_correlation` table.
        min_r: one threshold for all models (a float), one per model (a Mapping), or None: per model from
            :func:`min_significant_r` at the table's ``attrs["n_patients"]`` and tested-gene count (no line when
            the attrs are missing).
    """
    import matplotlib.pyplot as plt

    if not tables:
        raise ValueError("no tables to plot")
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    bins = np.linspace(-1.0, 1.0, 101)
    shared = isinstance(min_r, (int, float))
    for name, table in tables.items():
        r = table["r"].to_numpy(dtype=np.float64)[table["tested"].to_numpy(dtype=bool)]
        n_sig = int(table["significant"].sum())
        _, _, patches = ax.hist(r, bins=bins, weights=np.full(len(r), 1.0 / max(len(r), 1)), histtype="step",
                                linewidth=1.4, label=f"{name} (n_significant = {n_sig:,})")
        colour = patches[0].get_edgecolor()
        if shared:
            continue
        threshold = None
        if isinstance(min_r, Mapping):
            threshold = min_r.get(name)
        elif "n_patients" in table.attrs and len(r):
            threshold = min_significant_r(int(table.attrs["n_patients"]), len(r),
                                          table.attrs.get("alpha", 0.05))["first_step"]
        if threshold is not None:
            ax.axvline(threshold, color=colour, linestyle="--", linewidth=1)
    if shared:
        ax.axvline(float(min_r), color="grey", linestyle="--", linewidth=1,
                   label=f"first-step threshold r = {float(min_r):.3f}")
    ax.axvline(0.0, color="black", linewidth=0.5)
    ax.set(xlabel="per-gene Pearson r (predicted vs observed)", ylabel="share of tested genes",
           title="per-gene r (dashed: first-step Holm–Šidák threshold)")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig
