"""Power analysis of the cross-modal retrieval claim (gbhet_lib.evaluate.power).

Every test simulates a few dozen small cohorts (a few seconds in all on one core).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from gbhet_lib.data.synthetic import CohortSpec
from gbhet_lib.evaluate.power import TABLE_COLUMNS, CohortSize, PowerModel, SimulatedCohort, choose_size, \
    fold_percentiles, plot_power, power_table, replicate_seed, simulate_cohort, simulate_replicates, size_grid
from gbhet_lib.evaluate.splits import patient_folds

SIZE = CohortSize(6, 2, 3, 1)


# ------------------------------------------------------------------------------------------ the blind predictor
def test_the_blind_predictor_is_exactly_at_chance_in_every_fold() -> None:
    cohort = simulate_cohort(replicate_seed(3, SIZE, 0), SIZE)
    folds = patient_folds(cohort.patient, 3, seed=1)
    oracle, blind, _ = fold_percentiles(cohort, folds)
    for _, held in folds:  # each fold's true ranks are a permutation of 1..G
        assert blind[held].mean() == pytest.approx(0.5, abs=1e-12)
    assert np.isfinite(oracle).all() and oracle.mean() > 0.6
    reps = simulate_replicates(SIZE, replicates=4, seed=3)
    np.testing.assert_allclose(reps["blind_percentile"], 0.5, atol=1e-12)
    assert (reps["blind_low"] <= 0.5).all() and (reps["blind_high"] >= 0.5).all()


def test_the_blind_predictor_is_at_chance_even_when_every_score_ties() -> None:
    cohort = simulate_cohort(replicate_seed(0, SIZE, 0), SIZE)
    flat = dataclasses.replace(cohort, expression=np.ones_like(cohort.expression))  # every profile identical
    oracle, blind, within = fold_percentiles(flat, patient_folds(flat.patient, 2, seed=0))
    np.testing.assert_allclose(blind, 0.5)
    np.testing.assert_allclose(oracle, 0.5)  # nothing to tell the profiles apart: every candidate ties
    np.testing.assert_allclose(within, 0.5)


# ----------------------------------------------------------------------------------------------- the oracle
def test_oracle_power_increases_with_patients() -> None:
    sizes = size_grid(n_patients=(4, 8, 16), slides=(1,))
    table = power_table(sizes, replicates=30, seed=0, model=PowerModel(image_noise_sd=1.5))
    assert list(table.columns) == list(TABLE_COLUMNS) and len(table) == 3
    power = table["power"].to_numpy()
    assert np.all(np.diff(power) > 0.1), power  # 0.23, 0.73, 1.0 at this seed
    assert power[0] < 0.5 and power[-1] >= 0.9
    assert np.all(np.diff(table["oracle_percentile"]) > 0)
    np.testing.assert_allclose(table["blind_percentile"], 0.5, atol=1e-12)
    assert (table["blind_above_chance"] == 0).all()


def test_more_slides_per_lineage_help_on_the_same_cohorts() -> None:
    reps = {s: simulate_replicates(CohortSize(6, 2, 3, s), replicates=12, seed=1) for s in (1, 4)}
    pd.testing.assert_series_equal(reps[1]["n_lineages"], reps[4]["n_lineages"])  # common cohorts
    assert reps[4]["oracle_percentile"].mean() > reps[1]["oracle_percentile"].mean() + 0.03


def test_huge_image_noise_brings_the_oracle_to_chance() -> None:
    sizes = size_grid(n_patients=(6, 12), slides=(1,))
    table = power_table(sizes, replicates=60, seed=2, model=PowerModel(image_noise_sd=1e4))
    assert (table["power"] <= 0.1).all(), table["power"]  # nominal 0.025; about 0.01–0.05 measured
    assert np.abs(table["oracle_percentile"] - 0.5).max() < 0.03


def test_identical_lineages_are_told_apart_only_by_their_patient() -> None:
    """lineage_sd 0: a patient's lineages share their programs, so the oracle cannot order them (within-patient
    ranks are at chance, and so is leave-one-patient-out, whose gallery is one patient); folds holding several
    patients still retrieve above chance, by telling the patients apart."""
    model = PowerModel(lineage_sd=0.0)
    size = CohortSize(8, 2, 3, 2)
    loo = simulate_replicates(size, replicates=30, seed=4, n_folds=None, model=model)
    assert abs(loo["oracle_percentile"].mean() - 0.5) < 0.05
    assert loo["powered"].mean() <= 0.1
    kfold = simulate_replicates(size, replicates=30, seed=4, n_folds=2, model=model)
    assert abs(kfold["within_patient_percentile"].mean() - 0.5) < 0.05
    assert kfold["oracle_percentile"].mean() > 0.7 and kfold["powered"].mean() >= 0.8
    # with the demo's heterogeneity the same lineages are told apart inside their patient
    varied = simulate_replicates(size, replicates=30, seed=4, n_folds=None)
    assert varied["oracle_percentile"].mean() > 0.75 and varied["powered"].mean() >= 0.8


def test_single_lineage_galleries_are_skipped() -> None:
    cohort = simulate_cohort(replicate_seed(0, CohortSize(4, 1, 1, 1), 0), CohortSize(4, 1, 1, 1))
    oracle, blind, within = fold_percentiles(cohort, patient_folds(cohort.patient, 4, seed=0))
    assert np.isnan(oracle).all() and np.isnan(blind).all() and np.isnan(within).all()
    reps = simulate_replicates(CohortSize(4, 1, 1, 1), replicates=2, n_folds=2)
    assert reps["oracle_percentile"].notna().all() and reps["within_patient_percentile"].isna().all()


# ------------------------------------------------------------------------------------------------ seeds
def test_results_are_reproducible_and_independent_of_order() -> None:
    sizes = [CohortSize(4, 2, 3, 1), CohortSize(5, 2, 2, 2)]
    a = power_table(sizes, replicates=3, seed=5)
    pd.testing.assert_frame_equal(a, power_table(sizes, replicates=3, seed=5))
    reversed_ = power_table(sizes[::-1], replicates=3, seed=5)
    pd.testing.assert_frame_equal(a, reversed_.iloc[::-1].reset_index(drop=True))
    first = simulate_replicates(sizes[0], replicates=3, seed=5)
    pd.testing.assert_frame_equal(first, simulate_replicates(sizes[0], replicates=5, seed=5).iloc[:3])
    other = simulate_replicates(sizes[0], replicates=3, seed=6)
    assert not np.allclose(first["oracle_percentile"], other["oracle_percentile"])


def test_the_model_follows_the_cohort_spec() -> None:
    spec = CohortSpec(lineage_sd=0.3, patient_gene_sd=0.1, module_size=30, n_drivers=6)
    model = PowerModel.from_spec(spec, image_noise_sd=0.8)
    assert (model.lineage_sd, model.patient_gene_sd, model.module_size, model.n_drivers, model.image_noise_sd) == \
        (0.3, 0.1, 30, 6, 0.8)
    assert model.n_genes == 600 and PowerModel.from_spec(spec, n_genes=None).n_genes == spec.n_genes
    cohort = simulate_cohort(replicate_seed(0, SIZE, 0), SIZE, model)
    assert isinstance(cohort, SimulatedCohort) and cohort.modules.shape == (3, 30)
    assert cohort.expression.shape == (len(cohort.patient), 600) and cohort.image.shape == (len(cohort.patient), 3)


# ----------------------------------------------------------------------------------------- choose and plot
def _table(power: list[float], patients: list[int], slides: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"n_patients": patients, "min_lineages": 2, "max_lineages": 3, "slides_per_lineage": slides,
                         "power": power, "power_se": 0.05, "oracle_percentile": 0.8, "blind_percentile": 0.5})


def test_choose_size_takes_the_fewest_slides_reaching_the_target() -> None:
    table = _table([0.5, 0.85, 0.95, 0.9, 1.0], [4, 8, 16, 4, 8], [1, 1, 1, 2, 2])
    chosen = choose_size(table, power=0.8)  # (8, 1) and (4, 2): 20 slides each; a tie goes to the higher power
    assert (chosen["n_patients"], chosen["slides_per_lineage"], chosen["expected_slides"]) == (4, 2, 20)
    table.loc[3, "power"] = 0.82
    assert (choose_size(table, power=0.8)[["n_patients", "slides_per_lineage"]] == [8, 1]).all()
    assert choose_size(table, power=0.5)["n_patients"] == 4  # (4, 1): 10 slides
    assert choose_size(table, power=0.96)["n_patients"] == 8  # (8, 2): 40 slides, fewer than (16, 1)
    table.loc[4, "power"] = 0.97
    with pytest.raises(ValueError, match=r"no size in the table reaches power 0.98: the best is 8 patients × \(2, 3\) "
                                         r"lineages × 2 slides with power 0.97"):
        choose_size(table, power=0.98)
    with pytest.raises(ValueError, match="power=1.5 must be in"):
        choose_size(table, power=1.5)
    with pytest.raises(ValueError, match=r"lacks columns \['power'\]"):
        choose_size(table.drop(columns="power"))


def test_plot_power_draws_one_line_per_lineages_and_slides() -> None:
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    table = _table([0.5, 0.85, 0.7, 0.99], [4, 8, 4, 8], [1, 1, 2, 2])
    fig = plot_power(table)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert len(fig.axes[0].get_legend().get_texts()) == 2
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- bad input
def test_bad_arguments_give_clear_errors() -> None:
    with pytest.raises(ValueError, match="n_patients=1 must be an integer ≥ 2"):
        CohortSize(1, 2, 3, 1)
    with pytest.raises(ValueError, match=r"lineages per patient \(3, 2\)"):
        CohortSize(4, 3, 2, 1)
    with pytest.raises(ValueError, match="slides_per_lineage=0"):
        CohortSize(4, 2, 3, 0)
    with pytest.raises(ValueError, match=r"size 8 must be a CohortSize, \(n_patients"):
        CohortSize.coerce(8)  # type: ignore[arg-type]
    assert CohortSize.coerce((8, (2, 3), 2)) == CohortSize.coerce((8, 2, 3, 2)) == CohortSize(8, 2, 3, 2)
    with pytest.raises(ValueError, match="image_noise_sd=-1 must be a finite sd ≥ 0"):
        PowerModel(image_noise_sd=-1)
    with pytest.raises(ValueError, match="invalid synthetic cohort spec"):
        PowerModel(n_genes=100)
    with pytest.raises(ValueError, match=r"n_folds=5 must be an integer between 2 and the smallest n_patients in the "
                                         r"sizes \(4\)"):
        power_table([(4, (2, 3), 1), (8, (2, 3), 1)], replicates=1, n_folds=5)
    with pytest.raises(ValueError, match="leave-one-patient-out .* galleries of one"):
        simulate_replicates((4, (1, 1), 1), replicates=1, n_folds=None)
    with pytest.raises(ValueError, match="replicates=0 must be an integer ≥ 1"):
        power_table(replicates=0)
    with pytest.raises(ValueError, match="level=1.5 must be in"):
        simulate_replicates(SIZE, level=1.5)
    with pytest.raises(ValueError, match="sizes is empty"):
        power_table([], replicates=1)
