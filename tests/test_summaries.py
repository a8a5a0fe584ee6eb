"""Expression/graph summaries and the survival helpers, on hand-made inputs."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gbhet_lib.data.summary import community_summary, library_sizes, log_cpm, module_coexpression, within_and_across
from gbhet_lib.interpret.survival import median_split_survival


def test_library_sizes_and_log_cpm() -> None:
    counts = pd.DataFrame({"s1": [1, 3], "s2": [10, 30]}, index=["g1", "g2"])
    assert library_sizes(counts).tolist() == [4, 40]
    cpm = log_cpm(counts)
    np.testing.assert_allclose(cpm["s1"], cpm["s2"])  # depth removed
    assert cpm.loc["g1", "s1"] == pytest.approx(np.log(250_000 + 1))


def test_module_coexpression_on_planted_modules() -> None:
    rng = np.random.default_rng(0)
    factors = rng.standard_normal((2, 200))
    genes = {f"a{i}": factors[0] for i in range(5)} | {f"b{i}": factors[1] for i in range(5)}
    expression = pd.DataFrame({g: f + 0.3 * rng.standard_normal(200) for g, f in genes.items()}).T
    table = module_coexpression(expression, {"A": [f"a{i}" for i in range(5)], "B": [f"b{i}" for i in range(5)]})
    within, across = within_and_across(table)
    assert within > 0.8 and abs(across) < 0.15
    with pytest.raises(ValueError, match="not in the expression table"):
        module_coexpression(expression, {"C": ["zz"]})


def test_community_summary_counts_edges() -> None:
    edges = pd.DataFrame({"symbol_a": ["a", "a", "b", "c", "x"], "symbol_b": ["b", "c", "c", "d", "a"]})
    community = pd.Series({"a": "M", "b": "M", "c": "M", "d": "N"})
    table = community_summary(edges, community)
    assert table.loc["M"].tolist() == [3, 3, 1, 1.0]
    assert table.loc["N", "edges_inside"] == 0 and table.loc["N", "edges_leaving"] == 1


def test_median_split_separates_a_strong_effect_and_not_noise() -> None:
    rng = np.random.default_rng(1)
    n = 200
    score = pd.Series(rng.standard_normal(n), name="risk")
    durations = pd.Series(rng.exponential(1.0 / np.exp(1.2 * score)) * 100 + 1)
    events = pd.Series(np.ones(n, int))
    strong = median_split_survival(durations, events, score)
    assert strong.logrank_p < 1e-6 and strong.medians["high"] < strong.medians["low"]
    assert set(strong.groups) == {"high", "low"} and (strong.groups == "high").sum() == n // 2
    noise = median_split_survival(durations, events, pd.Series(rng.standard_normal(n), name="noise"))
    assert noise.logrank_p > 0.001


def test_median_split_input_errors() -> None:
    d, e = pd.Series([5.0, 6.0]), pd.Series([1, 0])
    with pytest.raises(ValueError, match="no survival data"):
        median_split_survival(d, e, pd.Series([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="events 0/1"):
        median_split_survival(d, pd.Series([1, 2]), pd.Series([0.1, 0.2]))
    with pytest.raises(ValueError, match="constant"):
        median_split_survival(d, e, pd.Series([1.0, 1.0]))


def test_compare_groups_with_more_than_two_groups_and_missing_values() -> None:
    from gbhet_lib.interpret.survival import compare_groups

    rng = np.random.default_rng(2)
    groups = pd.Series(np.repeat(["A", "B", "C"], 60))
    rate = groups.map({"A": 1.0, "B": 1.0, "C": 4.0})
    durations = pd.Series(rng.exponential(1.0 / rate) * 100 + 1)
    events = pd.Series(np.ones(180, int))
    durations.iloc[0] = np.nan  # a sample without follow-up is left out, not an error
    result = compare_groups(durations, events, groups)
    assert set(result.fits) == {"A", "B", "C"} and len(result.groups) == 179
    assert result.logrank_p < 1e-6 and result.medians["C"] < result.medians["A"]


def test_cohort_survival_comparisons_demo_and_real(small_cohort) -> None:
    from gbhet_lib.data.cohort import load_cohort
    from gbhet_lib.interpret.survival import cohort_survival_comparisons

    cohort = load_cohort(small_cohort)
    clinical, activity = cohort.clinical_and_activity()
    demo = cohort_survival_comparisons(clinical, activity, cohort.truth.survival["os"])
    assert list(demo) == ["hypoxia", "angiogenesis"]  # strongest planted hazard, then the first unplanted program
    assert demo["hypoxia"].logrank_p < 0.05
    clinical = clinical.assign(group=np.where(np.arange(len(clinical)) % 2, "x", "y"))
    real = cohort_survival_comparisons(clinical, activity, group_column="group")
    assert list(real) == ["group", "hypoxia"]
    assert list(cohort_survival_comparisons(clinical, activity)) == ["hypoxia"]
