"""Slide-level ridge probes (gbhet_lib.evaluate.probes): slide averaging, patient-grouped folds, chance level,
bootstrap interval over patients, and clear errors. Numeric toy data only (fast)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gbhet_lib.evaluate.probes import SlideProbe, r2_interval, r2_score, slide_probe, slide_probe_r2


def toy_cohort(n_patients: int = 8, slides_per_patient: int = 3, patches_per_slide: int = 20,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray, pd.Series]:
    """(slide id per patch (N,), patient id per patch (N,), one standard-normal value per slide (S,))."""
    rng = np.random.default_rng(seed)
    slides = [f"P{p}-S{s}" for p in range(n_patients) for s in range(slides_per_patient)]
    slide = np.repeat(slides, patches_per_slide)
    patient = np.array([s.split("-")[0] for s in slide])
    return slide, patient, pd.Series(rng.standard_normal(len(slides)), index=slides)


def test_slide_average_beats_patches_and_is_the_mean_of_patch_predictions() -> None:
    slide, patient, signal = toy_cohort()
    rng = np.random.default_rng(1)
    # each patch sees its slide's signal through patch noise: averaging over 20 patches removes most of it
    features = signal.loc[slide].to_numpy()[:, None] + rng.standard_normal((len(slide), 3))
    targets = pd.DataFrame({"signal": signal})
    probe = slide_probe(features, targets, slide, patient, folds=4)
    assert isinstance(probe, SlideProbe)
    assert probe.slide_r2["signal"] > 0.8
    assert probe.patch_r2["signal"] < probe.slide_r2["signal"] - 0.1
    means = pd.DataFrame(probe.patch_predictions, columns=["signal"]).groupby(slide).mean()
    np.testing.assert_allclose(probe.slide_predictions.loc[means.index].to_numpy(), means.to_numpy())
    np.testing.assert_allclose(probe.slide_targets["signal"], signal.loc[probe.slide_targets.index])
    expected = r2_score(probe.slide_targets["signal"], probe.slide_predictions["signal"])
    assert probe.slide_r2["signal"] == pytest.approx(expected)
    assert slide_probe_r2(features, targets, slide, patient, folds=4)["signal"] == pytest.approx(expected)
    assert list(probe.table().columns) == ["slide_r2", "patch_r2", "null_r2"]


def test_a_patient_never_spans_training_and_test() -> None:
    slide, patient, _ = toy_cohort(n_patients=10, slides_per_patient=3, patches_per_slide=8)
    rng = np.random.default_rng(2)
    patients = np.unique(patient)
    # target: constant within a patient, random between patients; features: a random code of the patient (more
    # dimensions than patients, so a linear probe can fit every seen patient's value exactly). A seen patient's
    # code gives its target away; an unseen patient's code says nothing about it.
    value = pd.Series(rng.standard_normal(len(patients)), index=patients)
    code = pd.DataFrame(rng.standard_normal((len(patients), 20)), index=patients)
    features = code.loc[patient].to_numpy() + 0.05 * rng.standard_normal((len(slide), 20))
    targets = pd.DataFrame({"patient_value": value.loc[patient].to_numpy()})  # one row per patch
    probe = slide_probe(features, targets, slide, patient, folds=5)
    # every patient's slides were predicted in one fold, and each fold holds whole patients
    assert (probe.slide_fold.groupby(probe.slide_group).nunique() == 1).all()
    assert probe.slide_r2["patient_value"] <= 0.1
    # the same probe grouped by slide lets a patient's other slides into training: the code then leaks the target
    leaky = slide_probe(features, targets, slide, slide, folds=5)
    assert leaky.slide_r2["patient_value"] > 0.7


def _memorisable_noise(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.DataFrame]:
    """(slide, patient, features, targets): slide-specific feature offsets (like stain jitter) let a probe memorise
    slides, while the target is noise per slide."""
    slide, patient, _ = toy_cohort(seed=seed)
    rng = np.random.default_rng(seed)
    slides = np.unique(slide)
    offsets = pd.DataFrame(rng.standard_normal((len(slides), 8)), index=slides)
    features = offsets.loc[slide].to_numpy() + 0.3 * rng.standard_normal((len(slide), 8))
    return slide, patient, features, pd.DataFrame({"noise": rng.standard_normal(len(slides))}, index=slides)


def test_noise_target_is_at_chance_and_null_r2_is_the_fold_mean_predictor() -> None:
    slide, patient, features, targets = _memorisable_noise(3)
    probe = slide_probe(features, targets, slide, patient, folds=4)
    assert probe.slide_r2["noise"] <= 0.1
    # null: each test fold predicted with the training patches' mean target
    y = targets["noise"].loc[slide].to_numpy()
    fold = probe.slide_fold.loc[slide].to_numpy()
    null = pd.Series({s: y[fold != f].mean() for s, f in probe.slide_fold.items()})
    assert probe.null_r2["noise"] == pytest.approx(r2_score(targets["noise"].loc[null.index], null))
    assert probe.null_r2["noise"] < 0.0


def test_grouped_penalty_choice_shrinks_more_than_leave_one_patch_out() -> None:
    slide, patient, features, targets = _memorisable_noise(4)
    grouped = slide_probe(features, targets, slide, patient, folds=4, alpha_cv="group")
    loo = slide_probe(features, targets, slide, patient, folds=4, alpha_cv="patch")
    # leave-one-patch-out sees the other patches of the left-out patch's slide, so it trusts slide memorisation
    assert np.log10(grouped.alphas["noise"]).mean() > np.log10(loo.alphas["noise"]).mean() + 1
    assert grouped.slide_r2["noise"] >= loo.slide_r2["noise"]


def test_slide_means_training_reads_a_focal_feature_that_patch_training_dilutes() -> None:
    slide, patient, signal = toy_cohort(patches_per_slide=30, seed=5)
    rng = np.random.default_rng(5)
    # a focal pattern: the fraction of a slide's patches that show it follows the target; the patch either shows
    # it or not (within-slide variance ≫ between-slide variance)
    fraction = 1.0 / (1.0 + np.exp(-signal))
    focal = (rng.random(len(slide)) < fraction.loc[slide].to_numpy()).astype(float)
    features = np.column_stack([focal, rng.standard_normal(len(slide))])
    targets = pd.DataFrame({"signal": signal})
    by_patch = slide_probe(features, targets, slide, patient, folds=4, train_on="patches")
    by_slide = slide_probe(features, targets, slide, patient, folds=4, train_on="slides")
    assert by_slide.slide_r2["signal"] > 0.5
    assert by_slide.slide_r2["signal"] > by_patch.slide_r2["signal"] + 0.2
    np.testing.assert_array_equal(by_patch.slide_fold, by_slide.slide_fold)  # same folds either way


def test_targets_per_patch_and_per_slide_agree_and_ridge_matches_sklearn() -> None:
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from gbhet_lib.evaluate.probes import _Ridge

    slide, patient, signal = toy_cohort(seed=6)
    rng = np.random.default_rng(6)
    features = signal.loc[slide].to_numpy()[:, None] + rng.standard_normal((len(slide), 4))
    per_slide = pd.DataFrame({"a": signal, "b": -signal + rng.standard_normal(len(signal))})
    per_patch = per_slide.loc[slide].reset_index(drop=True)
    one = slide_probe(features, per_slide, slide, patient, folds=4)
    two = slide_probe(features, per_patch, slide, patient, folds=4)
    pd.testing.assert_series_equal(one.slide_r2, two.slide_r2)
    np.testing.assert_allclose(one.patch_predictions, two.patch_predictions)
    # the closed-form ridge is StandardScaler + Ridge
    x, y = features[:100], per_patch.to_numpy()[:100]
    sk = make_pipeline(StandardScaler(), Ridge(alpha=3.0)).fit(x, y).predict(features[100:])
    np.testing.assert_allclose(_Ridge.fit(x, y).predict(features[100:], np.array([3.0, 3.0])), sk, atol=1e-8)


def test_r2_interval_resamples_patients() -> None:
    rng = np.random.default_rng(7)
    group = np.repeat([f"P{i}" for i in range(10)], 3)
    target = rng.standard_normal(30)
    r2, low, high = r2_interval(target + 0.5 * rng.standard_normal(30), target, group, n_boot=500)
    assert low <= r2 <= high and 0.3 < r2 < 0.95
    assert r2_interval(target, target, group, n_boot=50) == (1.0, 1.0, 1.0)
    assert r2_interval(target, target, group, n_boot=50, seed=1) == r2_interval(target, target, group, n_boot=50,
                                                                                seed=1)
    # two patients with constant targets: resamples drawing one patient twice are undefined and left out
    r2, low, high = r2_interval([0.0, 0.1, 0.9, 1.0], [0.0, 0.0, 1.0, 1.0], ["a", "a", "b", "b"], n_boot=200)
    assert np.isfinite([r2, low, high]).all()
    with pytest.raises(ValueError, match="two groups"):
        r2_interval([1.0, 2.0], [1.0, 2.0], ["a", "a"])
    with pytest.raises(ValueError, match="one prediction, target and group"):
        r2_interval([1.0, 2.0], [1.0, 2.0, 3.0], ["a", "b", "c"])
    probe = slide_probe(rng.standard_normal((30, 2)), pd.DataFrame({"t": target}), np.arange(30).astype(str), group,
                        folds=5)
    table = probe.intervals(n_boot=100)
    assert list(table.columns) == ["r2", "low", "high"] and table.loc["t", "r2"] == probe.slide_r2["t"]


def test_clear_errors_on_bad_input() -> None:
    slide, patient, signal = toy_cohort(n_patients=4, slides_per_patient=2, patches_per_slide=5)
    features = np.random.default_rng(8).standard_normal((len(slide), 3))
    targets = pd.DataFrame({"t": signal})
    with pytest.raises(ValueError, match="one slide and one group per patch"):
        slide_probe(features[:-1], targets, slide, patient, folds=2)
    with pytest.raises(ValueError, match="one slide and one group per patch"):
        slide_probe(features, targets, slide, patient[:-1], folds=2)
    with pytest.raises(ValueError, match="2-D"):
        slide_probe(features[:, 0], targets, slide, patient, folds=2)
    bad = features.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        slide_probe(bad, targets, slide, patient, folds=2)
    with pytest.raises(ValueError, match="NaN"):
        slide_probe(features, targets.assign(t=np.r_[np.nan, signal.to_numpy()[1:]]), slide, patient, folds=2)
    with pytest.raises(ValueError, match="one group"):
        spanning = patient.copy()
        spanning[0] = "P3"  # the first patch of P0-S0 claims another patient
        slide_probe(features, targets, slide, spanning, folds=2)
    with pytest.raises(ValueError, match="folds=5"):
        slide_probe(features, targets, slide, patient, folds=5)  # only 4 patients
    with pytest.raises(ValueError, match="one row per slide"):
        slide_probe(features, targets.iloc[:-1], slide, patient, folds=2)
    with pytest.raises(ValueError, match="targets_per"):
        # one patch per slide, slide ids in the index but in another order than the patches: ambiguous
        ids = np.array([f"s{i}" for i in range(8)])
        reversed_targets = pd.DataFrame({"t": np.arange(8.0)}, index=ids[::-1])
        slide_probe(features[:8], reversed_targets, ids, np.repeat(["a", "b", "c", "d"], 2), folds=2)
    with pytest.raises(ValueError, match="alpha_cv"):
        slide_probe(features, targets, slide, patient, folds=2, alpha_cv="loo")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="train_on"):
        slide_probe(features, targets, slide, patient, folds=2, train_on="lineages")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="numeric"):
        slide_probe(features, pd.DataFrame({"t": ["x"] * len(signal)}, index=signal.index), slide, patient, folds=2)


def test_auto_penalty_choice_is_grouped_only_when_every_training_fold_has_two_groups() -> None:
    rng = np.random.default_rng(0)
    features = rng.standard_normal((40, 3))
    slide = np.repeat(np.arange(8).astype(str), 5)
    target = pd.DataFrame({"t": rng.standard_normal(8)}, index=np.arange(8).astype(str))
    four_patients = np.repeat(["a", "b", "c", "d"], 10)
    two_patients = np.repeat(["a", "b"], 20)
    assert slide_probe(features, target, slide, four_patients, folds=2, alpha_cv="auto").alpha_cv == "group"
    assert slide_probe(features, target, slide, two_patients, folds=2, alpha_cv="auto").alpha_cv == "patch"
    with pytest.raises(ValueError, match="single group"):
        slide_probe(features, target, slide, two_patients, folds=2, alpha_cv="group")
