"""Chapter 6 survival analyses: concordance with a bootstrap interval, Cox models, gene-set scores, log-rank
power and the survival of embedding clusters."""
import numpy as np
import pandas as pd
import pytest

from gbhet_lib.interpret.survival import (CoxResult, cluster_survival, concordance_with_ci, cox_model,
                                          gene_set_score, logrank_power, score_survival)


def simulate_cohort(seed: int = 0, n: int = 300, log_hazard: float = 0.7):
    """Exponential survival (baseline median ~250 days) with ``log_hazard`` per SD of ``planted`` and no effect
    of ``null``; uniform censoring between 200 and 1500 days (~75% events)."""
    rng = np.random.default_rng(seed)
    ids = [f"S{i:03d}" for i in range(n)]
    planted, null = rng.normal(size=n), rng.normal(size=n)
    times = rng.exponential(365 / np.exp(log_hazard * planted))
    censor = rng.uniform(200, 1500, size=n)
    clinical = pd.DataFrame({"os_days": np.minimum(times, censor).round() + 1,
                             "os_event": (times <= censor).astype(int),
                             "age_years": rng.normal(60, 10, n).round()}, index=ids)
    return clinical, pd.Series(planted, ids, name="planted"), pd.Series(null, ids, name="null")


def test_score_survival_finds_planted_hazard_and_not_null():
    # the planted checks held for 40/40 simulation seeds; the null interval (95%) covered 0.5 for 36/40
    clinical, planted, null = simulate_cohort(seed=0)
    hit = score_survival(clinical, planted, n_boot=200, seed=0)
    cox = hit["cox"]
    assert isinstance(cox, CoxResult)
    assert list(cox.summary.index) == ["score", "age_years"]
    assert cox.summary.loc["score", "p"] < 0.01
    assert cox.summary.loc["score", "hazard_ratio"] > 1
    assert cox.summary.loc["score", "hr_low"] < cox.summary.loc["score", "hazard_ratio"] < cox.summary.loc[
        "score", "hr_high"]
    low, high = hit["cindex_ci"]
    assert 0.5 < low <= hit["cindex"] <= high
    assert hit["n"] == 300 and hit["events"] == int(clinical["os_event"].sum())
    assert hit["groups"].logrank_p == hit["logrank_p"] < 0.01
    assert 0.9 < hit["power"] <= 1

    miss = score_survival(clinical, null, n_boot=200, seed=0)
    low, high = miss["cindex_ci"]
    assert low < 0.5 < high


def test_score_survival_uses_only_samples_with_survival_and_skips_age_with_nan():
    clinical, planted, _ = simulate_cohort(seed=1, n=120)
    clinical.loc[clinical.index[:10], "os_days"] = np.nan
    clinical.loc[clinical.index[20], "age_years"] = np.nan
    out = score_survival(clinical, planted, n_boot=50)
    assert out["n"] == 110 and out["cox"].n == 110
    assert list(out["cox"].summary.index) == ["score"]
    with pytest.raises(ValueError, match="not in the clinical table"):
        score_survival(clinical, pd.Series([1.0, 2.0], index=["S000", "nobody"]), n_boot=10)


def test_concordance_with_ci_orientation_and_errors():
    clinical, planted, _ = simulate_cohort(seed=2, n=150)
    d, e = clinical["os_days"], clinical["os_event"]
    c, (low, high) = concordance_with_ci(d, e, planted, n_boot=100)
    c_flipped, _ = concordance_with_ci(d, e, -planted, n_boot=10)
    assert c > 0.6 and c_flipped == pytest.approx(1 - c, abs=0.01)
    assert low <= c <= high
    with pytest.raises(ValueError, match="constant"):
        concordance_with_ci(d, e, pd.Series(1.0, index=d.index), n_boot=10)
    with pytest.raises(ValueError, match="ghost"):
        concordance_with_ci(d, e, pd.Series([0.1, 0.2], index=["S000", "ghost"]), n_boot=10)


def test_cox_model_names_constant_columns():
    clinical, planted, _ = simulate_cohort(seed=3, n=100)
    covariates = pd.DataFrame({"x": planted, "batch": 1.0})
    with pytest.raises(ValueError, match="batch"):
        cox_model(clinical["os_days"], clinical["os_event"], covariates)
    fit = cox_model(clinical["os_days"], clinical["os_event"], covariates[["x"]])
    assert list(fit.summary.columns) == ["hazard_ratio", "hr_low", "hr_high", "p"]
    assert fit.events == int(clinical["os_event"].sum()) and 0.5 < fit.concordance <= 1


def _expression(n_samples: int = 60, n_genes: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(5, 1, size=(n_samples, n_genes)),
                        index=[f"P{i}" for i in range(n_samples)], columns=[f"G{j:03d}" for j in range(n_genes)])


def test_gene_set_score_rises_with_the_sets_genes():
    expression = _expression()
    genes = [f"G{j:03d}" for j in range(0, 100, 10)]
    shifted = expression.index[:30]
    expression.loc[shifted, genes] += 2.0
    score = gene_set_score(expression, genes + ["NOT_A_GENE"])
    assert score.name == "score" and list(score.index) == list(expression.index)
    assert score[shifted].mean() - score.drop(shifted).mean() > 1.5
    assert score[shifted].min() > score.drop(shifted).max()
    assert score.equals(gene_set_score(expression, genes))  # absent genes are ignored, same seed → same score


def test_gene_set_score_error_names_missing_genes():
    expression = _expression(n_samples=10)
    with pytest.raises(ValueError, match=r"only 2 .*MISSING_1.*MISSING_5") as err:
        gene_set_score(expression, ["G001", "G002"] + [f"MISSING_{i}" for i in range(1, 8)])
    assert "MISSING_6" not in str(err.value)  # at most five are named


def test_logrank_power():
    powers = [logrank_power(n, 0.6, 1.5) for n in (50, 100, 200, 400)]
    assert all(a < b for a, b in zip(powers, powers[1:]))
    assert logrank_power(100, 0.5, 1.0) == pytest.approx(0.05, abs=1e-9)
    assert logrank_power(100, 0.5, 1.0, alpha=0.01) == pytest.approx(0.01, abs=1e-9)
    # Schoenfeld: 50 events, HR 2 → Φ(√50 · 1/3 − 1.96) ≈ 0.654
    assert logrank_power(100, 0.5, 2.0) == pytest.approx(0.654, abs=0.002)
    assert logrank_power(100, 0.5, 0.5) == pytest.approx(logrank_power(100, 0.5, 2.0))
    with pytest.raises(ValueError, match="event_fraction"):
        logrank_power(100, 0.0, 2.0)


def test_cluster_survival_needs_two_patients_per_cluster():
    clinical, _, _ = simulate_cohort(seed=4, n=6)
    embeddings = pd.DataFrame(np.eye(6), index=clinical.index)
    embeddings.iloc[1, 0] = np.nan  # 5 usable patients: < 2 · 3 clusters
    with pytest.raises(ValueError, match="only 5 patient"):
        cluster_survival(embeddings, clinical, n_clusters=3)
    with pytest.raises(ValueError, match="only 3 patient"):
        cluster_survival(embeddings.iloc[:4], clinical, n_clusters=2)


def test_cluster_survival_recovers_two_clouds():
    rng = np.random.default_rng(5)
    clinical, _, _ = simulate_cohort(seed=5, n=60)
    centres = np.r_[np.zeros((40, 8)), np.full((20, 8), 6.0)]
    embeddings = pd.DataFrame(centres + rng.normal(size=(60, 8)), index=clinical.index)
    out = cluster_survival(embeddings, clinical, n_clusters=2, seed=0)
    labels = out["labels"]
    assert (labels.iloc[:40] == "c1").all() and (labels.iloc[40:] == "c2").all()
    assert out["n"] == 60 and out["events"] == int(clinical["os_event"].sum())
    assert out["logrank_p"] == out["groups"].logrank_p and 0 <= out["logrank_p"] <= 1
    assert 0 < out["power"] < 1
