"""Chapter 8 on your own traits (gbhet_lib.radiogenomics.stage, bring-your-own): the cohorts the traits table
makes, the checks that stop a table the models cannot use, and the sets and claims without a planted truth."""
from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from gbhet_lib.config import ConfigError
from gbhet_lib.data.user_tables import UserTableError
from gbhet_lib.radiogenomics import stage
from gbhet_lib.rundir import RunDir

GENES = [f"G{i}" for i in range(12)]
SETTINGS = stage.RadiogenomicSettings(traits=("necrosis", "focal"), n_folds=3)


def chapter_2_expression(run: RunDir, n: int = 50) -> list[str]:
    """Chapter 2's AnnData for ``n`` TCGA samples (log2 values; G0 never expressed; from counts)."""
    samples = [f"TCGA-02-{i:04d}-01A" for i in range(n)]
    x = np.random.default_rng(0).uniform(1, 5, (n, len(GENES)))
    x[:, 0] = 0.0
    obs = pd.DataFrame({"size_factor": 1.0}, index=samples)
    run.expression.parent.mkdir(parents=True, exist_ok=True)
    ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=GENES)).write_h5ad(run.expression)
    return samples


def traits_file(path: Path, samples: list[str], n_traits: int = 24) -> Path:
    """Patient barcodes with yes/no necrosis and 0/1 focal for the first ``n_traits`` samples."""
    rows = [f"{s[:12]}\t{'yes' if i % 2 else 'no'}\t{int(i % 3 == 0)}" for i, s in enumerate(samples[:n_traits])]
    path.write_text("patient\tnecrosis\tfocal\n" + "\n".join(rows) + "\n")
    return path


def test_own_traits_make_the_cohorts_on_chapter_2s_expression(tmp_path: Path) -> None:
    run = RunDir.of(tmp_path / "run")
    samples = chapter_2_expression(run)
    own = stage.OwnData(traits_path=str(traits_file(tmp_path / "t.tsv", samples)))
    inputs = stage.load_inputs(run, None, None, SETTINGS, own)
    assert inputs.samples == samples[:24] and inputs.ae_samples == samples[24:]
    assert inputs.genes == GENES[1:]  # the unexpressed gene (median count 0) is left out
    assert inputs.x.shape == (24, 11) and inputs.x_ae.shape == (26, 11)
    assert inputs.labels["necrosis"].tolist() == [i % 2 for i in range(24)]
    assert inputs.clinical.empty and list(inputs.clinical.index) == samples[:24]
    assert inputs.reading.loc[("traits", "matched samples"), "decision"].startswith(
        "24 of 50 expression samples: 0 by their id, 24 by TCGA patient barcode")


@pytest.mark.parametrize("n, n_traits, message", [
    (40, 24, r"t\.tsv: 16 of the expression's samples have no traits; the autoencoder is pre-trained on samples "
             r"without traits \(the paper's patients without VASARI reads\) and needs at least 20\. Fix: add "
             r"expression samples without trait reads to `expression_path`"),
    (50, 5, r"t\.tsv: trait 'necrosis' has too few samples of a class among the 5 with every trait \(class: samples "
            r"0: 3, 1: 2\); stratified folds need at least trait_folds=3 of each class\. Fix: set `trait_folds=` lower "
            r"or drop 'necrosis' from `traits=` in chapter 8's parameters\."),
])
def test_own_traits_the_models_cannot_use_are_refused(tmp_path: Path, n: int, n_traits: int, message: str) -> None:
    run = RunDir.of(tmp_path / "run")
    samples = chapter_2_expression(run, n)
    own = stage.OwnData(traits_path=str(traits_file(tmp_path / "t.tsv", samples, n_traits)))
    with pytest.raises(UserTableError, match=message):
        stage.load_inputs(run, None, None, SETTINGS, own)


def test_expression_without_traits_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"chapter 8: expression_path='x\.csv' is set but traits_path is not; set "
                                          r"`traits_path=` in chapter 8's parameters"):
        stage.OwnData(expression_path="x.csv")


def test_masking_sets_without_a_cohort_come_from_your_gmt(tmp_path: Path) -> None:
    genes = [f"G{i}" for i in range(300)]
    gmt = tmp_path / "sets.gmt"
    gmt.write_text("SMALL\tna\tG1\tG2\tX\n" + "BIG\tna\t" + "\t".join(genes[:40]) + "\n")
    sets = stage.masking_sets(None, genes, None, gmt)
    assert list(sets) == ["BIG", "random_100", "random_200"] and sets["BIG"] == genes[:40]
    assert not set(sets["random_200"]) & set(genes[:40])


def test_claims_and_tables_without_a_planted_truth() -> None:
    rows = [{"trait": "focal", "model": "network", "auc": 0.8, "auc_low": 0.7, "auc_high": 0.9, "auc_fold_mean": 0.8,
             "auc_paper_selection": 0.85, "optimism": 0.05},
            {"trait": "focal", "model": "svm", "auc": 0.6, "auc_low": 0.5, "auc_high": 0.7, "auc_fold_mean": 0.6,
             "network_minus": 0.2, "network_minus_low": 0.1, "network_minus_high": 0.3}]
    aucs = pd.DataFrame(rows).set_index(["trait", "model"])
    masking = pd.DataFrame({"set": ["HALLMARK_HYPOXIA", "random_100"], "auc": [0.8, 0.5]})
    interpreted = {"focal": {"masking": masking, "single": pd.DataFrame({"gene": ["G1"]}),
                             "enriched": pd.DataFrame({"HALLMARK_HYPOXIA": [True, False]})}}
    interpretation = stage.interpretation_table(interpreted, None, {}, 50)
    assert interpretation.loc["focal", "driving_program"] == "unknown (your traits: no planted truth)"
    ids = {c.id for c in stage.radiogenomic_claims(aucs, interpretation, interpreted, None)}
    assert ids == {"radiogenomics.focal.network_above_chance", "radiogenomics.focal.network_vs_svm.ahead",
                   "radiogenomics.paper_selection_optimism"}  # no control or program claim without a truth
    assert stage.verdict(aucs, interpretation, None).startswith("**focal** (your trait): network AUC 0.80")
    published = stage.published_table(aucs, stage.cohort_name(None, "demo"), own_data=True)
    assert published.loc["focal", "why not comparable"].startswith("your expression and traits: other patients, "
                                                                    "genes and trait reads (paper:")


def test_masking_figure_keeps_the_best_sets_and_the_controls() -> None:
    names = [f"HALLMARK_{i}" for i in range(30)] + ["random_100", "random_200"]
    masking = pd.DataFrame({"set": names, "auc": np.linspace(0.3, 0.9, len(names))})
    fig = stage.masking_figure({"focal": {"masking": masking}}, max_sets=5)
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["HALLMARK_27", "HALLMARK_28", "HALLMARK_29", "random_100", "random_200"]
