"""The reference profile's semi-synthetic cohort, built from the real data through the manifest and the mirror."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from data_mirror import mirror_root

from gbhet_lib.data.cohort import load_cohort
from gbhet_lib.data.manifest import load_manifest
from gbhet_lib.data.reference import REFERENCE_INPUTS, build_reference_cohort
from gbhet_lib.data.synthetic import SlideGeometry
from gbhet_lib.interpret.survival import compare_groups




@pytest.fixture(scope="module")
def reference_cohort(tmp_path_factory: pytest.TempPathFactory):
    out = build_reference_cohort(tmp_path_factory.mktemp("ref") / "cohort", mirror=mirror_root(), n_paired=12, seed=0,
                                 geometry=SlideGeometry(width=1024, height=768), n_jobs=1, progress=False)
    return load_cohort(out)


def test_reference_cohort_is_real_tcga_gbm_with_provenance(reference_cohort) -> None:
    cohort = reference_cohort
    assert cohort.kind == "semisynthetic" and cohort.expression_unit == "log_expression"
    manifest = load_manifest()
    assert cohort.metadata["sources"] == {name: manifest[name].sha256 for name in REFERENCE_INPUTS}
    n_samples = cohort.expression_lineages.shape[1] + cohort.expression_pool.shape[1]
    assert n_samples == 173  # one profile per patient: the 173 Verhaak samples are 173 patients
    assert cohort.genes.shape[0] > 700 and cohort.genes.index.str.startswith("ENSG").all()
    assert cohort.metadata["cleaning"]["genes_without_ensembl_id"] == 840 - cohort.genes.shape[0]
    clinical = pd.concat([cohort.patients, cohort.pool_clinical])
    assert clinical["subtype"].value_counts().to_dict() == {"Mesenchymal": 56, "Proneural": 53, "Classical": 38,
                                                            "Neural": 26}
    assert clinical["os_days"].notna().sum() >= 150  # 156 of 173 match the clinical patient file
    assert ("EGFR" in set(cohort.ppi_edges["symbol_a"]) | set(cohort.ppi_edges["symbol_b"]))


def test_paired_patients_are_stratified_and_slides_follow_real_scores(reference_cohort) -> None:
    cohort = reference_cohort
    assert cohort.lineages["group"].nunique() == 4  # every subtype gets slides
    truth = cohort.truth
    stats = pd.DataFrame({lid: truth.slide_stats[f"{lid}-S1.tiff"] for lid in cohort.lineages.index}).T
    activity = truth.activity.loc[cohort.lineages.index]
    assert stats["necrosis_fraction_of_tissue"].corr(activity["hypoxia"], method="spearman") > 0.6
    assert stats["nuclei_per_mm2_tissue"].corr(activity["proliferation"], method="spearman") > 0.6


def test_real_survival_differs_by_subtype_as_a_first_look(reference_cohort) -> None:
    clinical = pd.concat([reference_cohort.patients, reference_cohort.pool_clinical])
    result = compare_groups(clinical["os_days"], clinical["os_event"], clinical["subtype"])
    assert set(result.fits) == {"Classical", "Mesenchymal", "Neural", "Proneural"}
    assert 0.0 <= result.logrank_p <= 1.0  # reported, not asserted significant: that is the data's to say


def test_the_cancersubtypes_expression_set_also_builds_a_cohort(tmp_path: Path) -> None:
    out = build_reference_cohort(tmp_path / "cs", mirror=mirror_root(), n_paired=6, geometry=SlideGeometry(width=512,
                                 height=512), expression_set="cancersubtypes1500", n_jobs=1, progress=False)
    cohort = load_cohort(out)
    assert cohort.expression_lineages.shape[1] + cohort.expression_pool.shape[1] == 100
    assert cohort.genes.shape[0] > 1300 and "subtype" not in cohort.patients
    assert cohort.patients.loc[:, "os_days"].notna().all()
    assert "cancersubtypes_geneexp_rda" in cohort.metadata["sources"]
    with pytest.raises(ValueError, match="expression_set='tcga'"):
        build_reference_cohort(tmp_path / "x", mirror=mirror_root(), expression_set="tcga")


def test_every_reference_input_has_a_pinned_upstream_source() -> None:
    """The cohort must build online without a mirror: no input may be a mirror-only file."""
    from gbhet_lib.data.reference import EXPRESSION_INPUTS, SHARED_INPUTS

    manifest = load_manifest()
    for name in SHARED_INPUTS + sum(EXPRESSION_INPUTS.values(), ()):
        assert manifest[name].role == "upstream" and manifest[name].url, name
