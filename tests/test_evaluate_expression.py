"""Per-gene expression-prediction evaluation (gbhet_lib.evaluate.expression): the HE2RNA / Farooq count, its
thresholds, the field's other summaries, and scoring against planted truth."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from gbhet_lib.evaluate import expression as ex
from gbhet_lib.evaluate.expression import bootstrap_median_r, expression_summary, min_significant_r, \
    per_fold_mean_r, per_fold_r, per_gene_correlation, permutation_null_counts, program_counts, \
    published_comparison, r_distribution_figure, truth_summary


def frame(values: np.ndarray, prefix_rows: str = "P", prefix_cols: str = "G") -> pd.DataFrame:
    n, g = values.shape
    return pd.DataFrame(values, index=[f"{prefix_rows}{i:03d}" for i in range(n)],
                        columns=[f"{prefix_cols}{j:05d}" for j in range(g)])


def planted(n: int = 120, n_visible: int = 100, n_invisible: int = 300, n_background: int = 600,
            noise: float = 1.0, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str], list[str]]:
    """Observed expression; predictions = observed + noise for the visible programs' genes, pure noise for the
    others (invisible programs and background)."""
    rng = np.random.default_rng(seed)
    g = n_visible + n_invisible + n_background
    observed = frame(rng.normal(size=(n, g)))
    predicted = frame(rng.normal(size=(n, g)))
    predicted.iloc[:, :n_visible] = observed.iloc[:, :n_visible].to_numpy() + noise * rng.normal(size=(n, n_visible))
    genes = observed.columns
    gene_program = {gene: ("hypoxia" if j < n_visible // 2 else "proliferation") for j, gene in
                    enumerate(genes[:n_visible])}
    gene_program.update({gene: ("immune" if j % 2 else "neural") for j, gene in
                         enumerate(genes[n_visible:n_visible + n_invisible])})
    return predicted, observed, gene_program, ["hypoxia", "proliferation"]


# ------------------------------------------------------------------------------------------- per-gene testing
def test_r_and_p_match_scipy_pearsonr() -> None:
    rng = np.random.default_rng(1)
    for n in (3, 10, 57):
        obs = rng.normal(size=(n, 40))
        pred = 0.4 * obs + rng.normal(size=(n, 40))
        table = per_gene_correlation(frame(pred), frame(obs))
        for j in range(40):
            expected = stats.pearsonr(pred[:, j], obs[:, j])
            assert table["r"].iloc[j] == pytest.approx(expected.statistic, abs=1e-12)
            assert table["p"].iloc[j] == pytest.approx(expected.pvalue, rel=1e-8, abs=1e-300)
    assert table.columns.tolist() == ["r", "p", "tested", "p_holm_sidak", "significant"]
    assert table.attrs == {"n_patients": 57, "alpha": 0.05}


def test_row_and_column_order_of_predicted_does_not_matter() -> None:
    rng = np.random.default_rng(2)
    obs = frame(rng.normal(size=(30, 20)))
    pred = frame(0.5 * obs.to_numpy() + rng.normal(size=(30, 20)))
    shuffled = pred.sample(frac=1.0, random_state=0)[pred.columns[::-1]]
    pd.testing.assert_frame_equal(per_gene_correlation(shuffled, obs), per_gene_correlation(pred, obs))


def test_holm_sidak_matches_statsmodels_and_constant_genes_are_skipped() -> None:
    rng = np.random.default_rng(3)
    n, g = 60, 400
    obs = rng.normal(size=(n, g))
    pred = rng.normal(size=(n, g))
    pred[:, :40] += 1.5 * obs[:, :40]
    pred[:, 40:50] -= 1.5 * obs[:, 40:50]  # strongly negative: rejected by the test but not "significant"
    obs[:, 50] = 3.0                      # constant observed
    pred[:, 51] = -1.0                    # constant predicted
    obs[:, 52] = 0.0
    pred[:, 52] = 0.0                     # both constant
    table = per_gene_correlation(frame(pred), frame(obs), alpha=0.05)
    skipped = table.iloc[50:53]
    assert not skipped["tested"].any() and not skipped["significant"].any()
    assert skipped[["r", "p", "p_holm_sidak"]].isna().all().all()
    tested = table[table["tested"]]
    assert len(tested) == g - 3
    reject, adjusted, _, _ = multipletests(tested["p"].to_numpy(), alpha=0.05, method="holm-sidak")
    np.testing.assert_allclose(tested["p_holm_sidak"].to_numpy(), adjusted, rtol=1e-14)
    np.testing.assert_array_equal(tested["significant"].to_numpy(), reject & (tested["r"].to_numpy() > 0))
    assert tested["significant"].iloc[:40].all()                  # the planted positive genes
    assert reject[40:50].all() and not tested["significant"].iloc[40:50].any()  # negative r: not counted


def test_mismatched_tables_raise_naming_the_labels() -> None:
    obs = frame(np.random.default_rng(4).normal(size=(10, 5)))
    with pytest.raises(ValueError, match=r"same patients.*only in predicted: 'X1'.*only in observed: 'P009'"):
        per_gene_correlation(obs.rename(index={"P009": "X1"}), obs)
    with pytest.raises(ValueError, match=r"same genes.*only in observed: 'G00004'"):
        per_gene_correlation(obs.drop(columns="G00004"), obs)
    with pytest.raises(ValueError, match="duplicated genes"):
        per_gene_correlation(obs.set_axis(["a", "a", "b", "c", "d"], axis=1), obs)
    with pytest.raises(ValueError, match="non-finite values in genes 'G00002'"):
        per_gene_correlation(obs.assign(G00002=np.nan), obs)
    with pytest.raises(ValueError, match="at least 3 patients"):
        per_gene_correlation(obs.iloc[:2], obs.iloc[:2])
    with pytest.raises(ValueError, match="same patients"):
        per_fold_mean_r(obs, obs, pd.Series(0, index=obs.index[:-1]))


# ------------------------------------------------------------------------------------------------ thresholds
@pytest.mark.parametrize("n, expected", [(150, 0.379), (170, 0.357), (96, 0.466), (500, 0.212), (485, 0.215),
                                         (1057, 0.147), (467, 0.219)])
def test_first_step_threshold_matches_the_reference_numbers(n: int, expected: float) -> None:
    threshold = min_significant_r(n, 30_000)
    assert threshold["first_step"] == pytest.approx(expected, abs=0.003)
    assert 0 < threshold["last_step"] < threshold["first_step"]


def test_last_step_is_the_uncorrected_threshold() -> None:
    n = 80
    r = min_significant_r(n, 5000)["last_step"]
    t = r * np.sqrt((n - 2) / (1 - r ** 2))
    assert 2 * stats.t.sf(t, n - 2) == pytest.approx(0.05, rel=1e-9)
    assert min_significant_r(n, 1)["first_step"] == min_significant_r(n, 1)["last_step"] == r


def test_a_gene_at_the_threshold_passes_and_one_just_below_does_not() -> None:
    n, m = 150, 30_000
    thresholds = min_significant_r(n, m)
    others = np.full(m - 1, 0.99)  # nothing else is significant: the gene is tested at the first step
    for r, expected in ((thresholds["first_step"], True), (np.nextafter(thresholds["first_step"], 0), False),
                        (thresholds["first_step"] - 1e-4, False)):
        p = np.concatenate([ex._pearson_p(np.array([r]), n), others])
        assert multipletests(p, alpha=0.05, method="holm-sidak")[0][0] == expected
    rejected = np.zeros(m - 1)  # every other gene rejected first: the gene is tested at the last step
    for r, expected in ((thresholds["last_step"], True), (thresholds["last_step"] - 1e-4, False)):
        p = np.concatenate([rejected, ex._pearson_p(np.array([r]), n)])
        assert multipletests(p, alpha=0.05, method="holm-sidak")[0][-1] == expected


def test_a_gene_just_above_the_threshold_is_significant_end_to_end() -> None:
    rng = np.random.default_rng(5)
    n, g = 100, 2000
    threshold = min_significant_r(n, g)["first_step"]
    x = rng.normal(size=n)
    x = (x - x.mean()) / np.linalg.norm(x - x.mean())
    z = rng.normal(size=n)
    z -= z.mean() + (z @ x) * x
    z /= np.linalg.norm(z)
    obs = rng.normal(size=(n, g)) * 0.01  # null genes: independent predictions, tiny correlations
    pred = rng.normal(size=(n, g)) * 0.01
    for j, r in ((0, threshold + 1e-3), (1, threshold - 1e-3)):
        obs[:, j] = x
        pred[:, j] = r * x + np.sqrt(1 - r ** 2) * z
    table = per_gene_correlation(frame(pred), frame(obs))
    assert table["r"].iloc[0] == pytest.approx(threshold + 1e-3, abs=1e-12)
    assert table["significant"].iloc[0] and not table["significant"].iloc[1]
    summary = expression_summary(table)
    assert summary["n_significant"] == 1 and summary["min_significant_r"] == table["r"].iloc[0]
    assert summary["r_threshold_first_step"] == threshold


# -------------------------------------------------------------------------------------------------- summaries
def test_expression_summary_conventions() -> None:
    predicted, observed, _, _ = planted(n=50, n_visible=60, n_invisible=100, n_background=200)
    table = per_gene_correlation(predicted, observed)
    summary = expression_summary(table)
    r = table["r"].to_numpy()
    assert summary["n_patients"] == 50 and summary["n_genes_tested"] == 360
    assert summary["mean_r_top50"] == pytest.approx(np.sort(r)[-50:].mean())
    assert np.isnan(summary["median_r_top1000"])  # fewer than 1,000 genes: not DeepPT's statistic
    assert summary["n_r_above_0_4"] == int((r > 0.4).sum())
    assert summary["median_r"] == pytest.approx(np.median(r))
    assert summary["min_significant_r"] >= summary["r_threshold_last_step"]
    table.attrs.clear()
    with pytest.raises(ValueError, match="pass it explicitly"):
        expression_summary(table)
    assert expression_summary(table, n_patients=50)["n_significant"] == summary["n_significant"]


def test_per_fold_mean_r_averages_the_fold_correlations() -> None:
    rng = np.random.default_rng(6)
    obs = frame(rng.normal(size=(40, 6)))
    pred = frame(0.7 * obs.to_numpy() + rng.normal(size=(40, 6)))
    folds = pd.Series(np.arange(40) % 4, index=obs.index).sample(frac=1.0, random_state=1)
    pred.loc[folds.index[folds == 2], "G00005"] = 1.0  # constant within fold 2: left out of that gene's mean
    per_fold = per_fold_r(pred, obs, folds)
    assert per_fold.shape == (6, 4) and np.isnan(per_fold.loc["G00005", 2])
    mean = per_fold_mean_r(pred, obs, folds)
    for gene in obs.columns:
        rs = [stats.pearsonr(pred.loc[folds.index[folds == k], gene], obs.loc[folds.index[folds == k], gene])
              .statistic for k in range(4) if not (gene == "G00005" and k == 2)]
        assert mean[gene] == pytest.approx(np.mean(rs), abs=1e-12)


# ---------------------------------------------------------------------------------------------- planted truth
def test_planted_signal_is_found_in_the_visible_programs_only() -> None:
    predicted, observed, gene_program, visible = planted()
    table = per_gene_correlation(predicted, observed)
    truth = truth_summary(table, gene_program, visible)
    assert truth["n_significant_visible"] >= 90
    assert truth["n_significant_invisible"] == 0 and truth["n_significant_background"] <= 1
    assert truth["precision_visible"] >= 0.99
    assert truth["invisible_expected_if_random"] == pytest.approx(truth["n_significant"] * 300 / 1000)
    assert truth["invisible_binomial_p"] == 1.0 and truth["invisible_fwer_bound"] == 0.05
    counts = program_counts(table, gene_program, visible)
    assert counts.index.tolist() == ["hypoxia", "proliferation", "immune", "neural", "background"]
    assert counts["visible"].tolist() == [True, True, False, False, False]
    assert counts["n_genes"].tolist() == [50, 50, 150, 150, 600]
    assert counts["n_significant"].sum() == truth["n_significant"]
    assert counts.loc["hypoxia", "share_significant"] >= 0.9 and counts.loc["immune", "share_significant"] == 0
    with pytest.raises(ValueError, match="not in gene_program: 'vision'"):
        truth_summary(table, gene_program, ["vision"])


def test_invisible_leak_is_flagged_by_the_binomial_test() -> None:
    predicted, observed, gene_program, visible = planted(seed=7)
    invisible = [g for g, p in gene_program.items() if p == "immune"]  # 150 of the 1,000 genes leak
    predicted[invisible] = observed[invisible] + 0.5 * np.random.default_rng(8).normal(size=(120, 150))
    truth = truth_summary(per_gene_correlation(predicted, observed), gene_program, visible)
    assert truth["n_significant_invisible"] >= 140
    assert truth["n_significant_invisible"] > truth["invisible_expected_if_random"]
    assert truth["invisible_binomial_p"] < 1e-3 and truth["precision_visible"] < 0.7


def test_permutation_null_counts_are_mostly_zero() -> None:
    predicted, observed, gene_program, _ = planted()
    counts = permutation_null_counts(predicted, observed, 60, np.random.default_rng(9))
    assert counts.shape == (60,) and counts.dtype.kind == "i"
    assert (counts == 0).mean() >= 0.85 and counts.max() <= 3
    assert per_gene_correlation(predicted, observed)["significant"].sum() > 10 * counts.max()
    invisible = [g for g, p in gene_program.items() if p in ("immune", "neural")]
    again = permutation_null_counts(predicted, observed, 60, 9, genes=invisible)
    assert (again <= counts).all()  # the same permutations (same seed), counted on a subset


# ------------------------------------------------------------------------------------------------- bootstrap
def test_bootstrap_interval_contains_the_point_estimate() -> None:
    rng = np.random.default_rng(10)
    n, g = 80, 500
    observed = frame(rng.normal(size=(n, g)))
    noise_sd = np.linspace(0.3, 4.0, g)  # a continuum of true r (about 0.96 down to 0.24)
    predicted = frame(observed.to_numpy() + noise_sd * rng.normal(size=(n, g)))
    median = per_gene_correlation(predicted, observed)["r"].median()
    low, high = bootstrap_median_r(predicted, observed, 300, np.random.default_rng(10))
    assert low < median < high and high - low < 0.2
    assert bootstrap_median_r(predicted, observed, 300, 3) == bootstrap_median_r(predicted, observed, 300, 3)
    assert bootstrap_median_r(predicted, observed, 300, 3) != bootstrap_median_r(predicted, observed, 300, 4)


def test_vectorised_resamples_match_recomputing_each_one() -> None:
    rng = np.random.default_rng(11)
    n, g = 30, 50
    x = rng.normal(size=(n, g))
    y = 0.5 * x + rng.normal(size=(n, g))
    x[:, :5] = 0.0
    x[0, :5] = 1.0  # nonzero in one patient: constant in resamples that miss it
    y[:, 5:10] = np.round(y[:, 5:10] / 4)  # few distinct values
    rows = rng.integers(0, n, size=(200, n))
    fast = ex._resampler(x, y)(rows)
    slow = np.array([ex._pearson_r(x[r], y[r]) for r in rows])
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(slow))
    assert np.isnan(slow).any()
    np.testing.assert_allclose(fast, slow, atol=1e-12)


# ------------------------------------------------------------------------------------------ published counts
def test_published_comparison_sets_ours_beside_the_papers() -> None:
    ours = {"tile-MIL": {"modality": "WSI", "cohort": "GBM", "n_patients": 120, "n_genes_tested": 2500,
                         "n_significant": 87}}
    table = published_comparison(ours)
    assert len(table) == 9 and table["why_not_comparable"].str.len().gt(40).all()
    assert table.columns.tolist() == ["study", "modality", "cohort", "n_patients", "n_genes", "n_significant",
                                      "min_significant_r_first_step", "why_not_comparable"]
    farooq = table[table["study"].str.startswith("Farooq")].set_index("cohort")
    he2rna = table[table["study"].str.startswith("HE2RNA")].set_index("cohort")
    assert farooq["n_significant"].to_dict() == {"GBM": 1731, "LGG": 1632, "BRCA": 838, "LUAD": 656}
    assert farooq.loc["LUAD", "modality"] == "CT" and farooq["min_significant_r_first_step"].isna().all()
    assert he2rna["n_significant"].to_dict() == {"GBM": 3241, "LGG": 3232, "BRCA": 1627, "LUAD": 1539}
    assert he2rna["n_patients"].to_dict() == {"GBM": 96, "LGG": 485, "BRCA": 1057, "LUAD": 467}
    assert he2rna.loc["GBM", "min_significant_r_first_step"] == pytest.approx(0.466, abs=0.003)
    row = table.iloc[-1]
    assert row["study"] == "tile-MIL" and row["n_significant"] == 87
    assert row["min_significant_r_first_step"] == min_significant_r(120, 2500)["first_step"]
    assert "0.466" in row["why_not_comparable"]
    with pytest.raises(ValueError, match="lacks n_significant"):
        published_comparison({"x": {k: v for k, v in ours["tile-MIL"].items() if k != "n_significant"}})


def test_r_distribution_figure_has_a_line_per_model_and_the_counts() -> None:
    import matplotlib.pyplot as plt

    predicted, observed, _, _ = planted(n=60, n_visible=50, n_invisible=50, n_background=100)
    tables = {"model": per_gene_correlation(predicted, observed),
              "null": per_gene_correlation(predicted.sample(frac=1.0, random_state=0).set_index(observed.index),
                                           observed)}
    fig = r_distribution_figure(tables)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(label.startswith("model (n_significant = ") for label in labels) and len(labels) == 2
    threshold = min_significant_r(60, 200)["first_step"]
    assert any(np.allclose(line.get_xdata(), threshold) for line in ax.lines)
    plt.close(fig)
    fig = r_distribution_figure(tables, min_r=0.5)
    assert len(fig.axes[0].get_legend().get_texts()) == 3
    plt.close(fig)
