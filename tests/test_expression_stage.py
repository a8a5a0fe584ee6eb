"""Chapter 7's stage: inputs, the four models under one set of folds, the statistics, the truth scoring and claims."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gbhet_lib.config import ConfigError
from gbhet_lib.expression_from_images import stage

N_PATIENTS, N_GENES, N_TILES, D = 60, 40, 12, 8
PROGRAM_GENES = {"hypoxia": range(0, 10), "proliferation": range(10, 20), "mesenchymal": range(20, 30)}


@dataclass
class FakeTruth:
    modules: dict[str, list[str]]
    programs: dict[str, dict] = field(default_factory=dict)
    activity: pd.DataFrame = field(default_factory=pd.DataFrame)

    def seen_by(self, modality: str) -> list[str]:
        return ["hypoxia", "proliferation"] if modality == "wsi" else ["hypoxia", "mesenchymal"]


@dataclass
class FakeCohort:
    truth: FakeTruth


def planted_inputs(seed: int = 0) -> tuple[stage.ExpressionInputs, FakeCohort]:
    """Slides show hypoxia and proliferation (tile feature 0 and 1), the MRI hypoxia and mesenchymal (channel 0 and
    1 brightness); genes 0-29 follow their program, 30-39 are background noise."""
    rng = np.random.default_rng(seed)
    activity = rng.standard_normal((N_PATIENTS, 3))
    genes = [f"G{g:02d}" for g in range(N_GENES)]
    targets = rng.standard_normal((N_PATIENTS, N_GENES)) * 0.5 + 3.0
    for k, (_, members) in enumerate(PROGRAM_GENES.items()):
        targets[:, list(members)] += activity[:, [k]]
    bags = []
    for a in activity:
        tiles = rng.standard_normal((N_TILES, D)).astype(np.float32)
        tiles[:, 0] += a[0]
        tiles[:, 1] += a[1]
        bags.append(tiles)
    mri = rng.standard_normal((N_PATIENTS, 4, 16, 16, 16)).astype(np.float32) * 0.3
    mri[:, 0] += activity[:, 0, None, None, None]
    mri[:, 1] += activity[:, 2, None, None, None]
    samples = [f"S{i:03d}" for i in range(N_PATIENTS)]
    inputs = stage.ExpressionInputs(samples=samples, genes=genes, targets=targets.astype(np.float32),
                                    folds=stage.cohort_folds(samples, 3, seed), bags=bags, mri=mri,
                                    gene_filter="all", digest="test")
    modules = {p: [genes[g] for g in members] for p, members in PROGRAM_GENES.items()}
    return inputs, FakeCohort(FakeTruth(modules))


def test_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="n_folds"):
        stage.ExpressionSettings(n_folds=1)
    with pytest.raises(ConfigError, match="multiple of mri_ridge_grid"):
        stage.ExpressionSettings(mri_input_size=30, mri_ridge_grid=8)


def test_folds_hold_every_patient_out_once() -> None:
    folds = stage.cohort_folds([f"S{i}" for i in range(23)], 5, seed=3)
    assert sorted(np.unique(folds)) == [0, 1, 2, 3, 4] and (folds >= 0).all()
    assert np.bincount(folds).max() - np.bincount(folds).min() <= 1


def test_inputs_round_trip_through_hdf5(tmp_path: Path) -> None:
    inputs, _ = planted_inputs()
    back = stage.read_inputs(stage.write_inputs(tmp_path / "inputs.h5", inputs))
    assert back.samples == inputs.samples and back.genes == inputs.genes and back.digest == "test"
    np.testing.assert_array_equal(back.targets, inputs.targets)
    np.testing.assert_array_equal(back.mri, inputs.mri)
    assert all(np.array_equal(a, b) for a, b in zip(back.bags, inputs.bags))
    with pytest.raises(FileNotFoundError, match="prepare_inputs"):
        stage.read_inputs(tmp_path / "missing.h5")


def test_ridge_features_pool_each_modality() -> None:
    inputs, _ = planted_inputs()
    wsi = stage.ridge_features(inputs, "wsi", 8)
    assert wsi.shape == (N_PATIENTS, 2 * D)
    np.testing.assert_allclose(wsi[0, :D], inputs.bags[0].mean(axis=0), rtol=1e-6)
    mri = stage.ridge_features(inputs, "mri", 4)
    assert mri.shape == (N_PATIENTS, 4 * 4 ** 3)
    np.testing.assert_allclose(mri[0, 0], inputs.mri[0, 0, :4, :4, :4].mean(), rtol=1e-5)


def test_the_radiogenomic_cohort_of_a_small_demo_cohort(small_cohort: Path) -> None:
    from gbhet_lib.data.cohort import load_cohort

    cohort = load_cohort(small_cohort)
    samples = stage.radiogenomic_samples(cohort, n_folds=5)
    assert len(samples) == len(cohort.diagnostic_slides) and set(samples) <= set(cohort.mri.index)
    genes, rule = stage.expressed_genes(cohort, samples)
    assert 0 < len(genes) <= len(cohort.genes) and "non-zero median" in rule
    with pytest.raises(ValueError, match="n_diagnostic"):
        stage.radiogenomic_samples(cohort, n_folds=len(samples))
    crops = stage.mri_crops(cohort, samples[:2], 8, crop_mm=96)  # 16 voxels of 6 mm, pooled to 8
    assert crops.shape == (2, 4, 8, 8, 8) and np.isfinite(crops).all()
    with pytest.raises(ValueError, match="not a multiple of mri_input_size"):
        stage.mri_crops(cohort, samples[:1], 16, crop_mm=128)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, stage.ExpressionInputs, FakeCohort, Path]:
    inputs, cohort = planted_inputs()
    settings = stage.ExpressionSettings(n_folds=3, epochs=6, patience=3, he2rna_hidden=(32,), mri_input_size=16,
                                        mri_ridge_grid=4, ridge_components=16,
                                        farooq={"cnn_channels": (8, 16), "hidden": 32, "layers": 2, "heads": 2,
                                                "mlp": 32})
    run = tmp_path_factory.mktemp("run")
    return stage.train_models(run, inputs, settings, seed=0, progress=False), inputs, cohort, run


def test_every_model_predicts_every_patient_once_and_is_reused(trained) -> None:
    models, inputs, _, run = trained
    assert set(models) == set(stage.MODELS)
    for name, t in models.items():
        assert t["predictions"].shape == (N_PATIENTS, N_GENES) and np.isfinite(t["predictions"]).all(), name
        assert (run / t["folder"] / "oof.npy").exists()
    assert models["he2rna_wsi"]["parameters"] > 0 and len(models["farooq_mri"]["history"])


def test_the_statistics_find_what_each_modality_shows(trained) -> None:
    models, inputs, cohort, _ = trained
    results = stage.evaluate_models(models, inputs, cohort, permutations=20, n_boot=20, seed=0)
    for name in ("ridge_wsi", "ridge_mri"):  # a linear read-out of planted linear signal: found, and only there
        s = results[name]["summary"]
        assert s["n_significant_visible"] >= 5 > s["n_significant_invisible"], (name, s)
        assert s["null_n_significant_q95"] <= 1
    counts = stage.program_table(results)
    assert counts.loc["proliferation", "ridge_wsi"] > 0 and counts.loc["proliferation", "ridge_mri"] == 0
    assert counts.loc["mesenchymal", "ridge_mri"] > 0 and counts.loc["mesenchymal", "ridge_wsi"] == 0
    table = stage.comparison_table(results)
    assert list(table["modality"]) == ["slides", "MRI", "slides", "MRI"]

    claims = stage.expression_claims(results, cohort)
    ids = {c.id for c in claims}
    assert "expression.ridge_wsi.above_null" in ids and "expression.ridge_mri.visible_over_invisible" in ids
    assert all(c.holds for c in claims), [(c.id, c.value, c.bound) for c in claims if not c.holds]
    metrics = stage.expression_metrics(results, models, inputs, stage.ExpressionSettings(), {}, "demo", "cpu", claims)
    for name in stage.MODELS:
        assert set(stage.METRIC_KEYS) <= set(metrics[name]) and metrics[name]["n_patients"] == N_PATIENTS
    assert metrics["min_significant_r"]["first_step"] > metrics["min_significant_r"]["last_step"]
    assert "ridge baseline" in stage.verdict(results, {})
    fig = stage.program_figure(counts, pd.DataFrame(True, index=counts.index, columns=list(stage.MODELS)))
    assert fig.axes


def test_unknown_models_are_refused(tmp_path: Path) -> None:
    inputs, _ = planted_inputs()
    with pytest.raises(ValueError, match="not chapter 7's"):
        stage.train_models(tmp_path, inputs, models=["he2rna"], progress=False)
