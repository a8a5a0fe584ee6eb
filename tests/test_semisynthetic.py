"""The semi-synthetic cohort: program scoring from gene sets, stratified pairing, slides driven by real scores."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gbhet_lib.data.cohort import load_cohort
from gbhet_lib.data.semisynthetic import (DEFAULT_PROGRAM_SETS, choose_paired_samples, clean_expression,
                                          make_semisynthetic_cohort, program_scores)
from gbhet_lib.data.synthetic import SlideGeometry


def _fake_real_data(n_samples: int = 40, seed: int = 0):
    """Expression whose program-set genes follow known factors, plus background genes."""
    rng = np.random.default_rng(seed)
    factors = pd.DataFrame(rng.standard_normal((n_samples, len(DEFAULT_PROGRAM_SETS))),
                           columns=list(DEFAULT_PROGRAM_SETS), index=[f"TCGA-00-{i:04d}" for i in range(n_samples)])
    gene_sets, columns = {}, {}
    for program, sets in DEFAULT_PROGRAM_SETS.items():
        for k, name in enumerate(sets):
            genes = [f"{program[:3].upper()}{k}_{j}" for j in range(8)]
            gene_sets[name] = genes + ["NOT_MEASURED_GENE"]
            for g in genes:
                columns[g] = 5 + factors[program] + 0.5 * rng.standard_normal(n_samples)
    for j in range(30):
        columns[f"BG{j}"] = 5 + rng.standard_normal(n_samples)
    expression = pd.DataFrame(columns)
    annotation = pd.DataFrame({"symbol": list(expression.columns),
                               "gene_id": [f"ENSG{i:011d}" for i in range(expression.shape[1])],
                               "chromosome": "1"})
    annotation.loc[annotation["symbol"] == "BG0", "gene_id"] = np.nan  # one gene without an Ensembl id
    clinical = pd.DataFrame({"os_days": rng.integers(30, 900, n_samples), "os_event": rng.integers(0, 2, n_samples)},
                            index=expression.index)
    groups = pd.Series(np.where(np.arange(n_samples) % 4 == 0, "Neural", "Mesenchymal"), index=expression.index)
    return expression, factors, gene_sets, annotation, clinical, groups


def test_program_scores_recover_the_factors() -> None:
    expression, factors, gene_sets, *_ = _fake_real_data()
    scored = program_scores(expression, gene_sets)
    for program in DEFAULT_PROGRAM_SETS:
        assert np.corrcoef(scored.scores[program], factors[program])[0, 1] > 0.9
        assert scored.scores[program].std(ddof=0) == pytest.approx(1.0)
    assert "NOT_MEASURED_GENE" not in scored.genes["hypoxia"]


def test_program_scores_errors_name_the_set_and_the_program() -> None:
    expression, _, gene_sets, *_ = _fake_real_data()
    with pytest.raises(ValueError, match=r"gene set\(s\) \['HALLMARK_HYPOXIA'\] not found"):
        program_scores(expression, {k: v for k, v in gene_sets.items() if k != "HALLMARK_HYPOXIA"})
    with pytest.raises(ValueError, match="program 'hypoxia': only 8 of the genes of \\['HALLMARK_HYPOXIA'\\]"):
        program_scores(expression, gene_sets, min_genes=9)


def test_clean_expression_reports_what_it_did() -> None:
    table = pd.DataFrame({"A": [1.0, np.nan, 3.0], "B": [np.nan, np.nan, 1.0], "C": [1.0, 2.0, 3.0]})
    cleaned, report = clean_expression(table, max_missing=0.5)
    assert list(cleaned.columns) == ["A", "C"] and cleaned.loc[1, "A"] == 2.0
    assert report == {"duplicated_genes_dropped": 0, "sparse_genes_dropped": 1, "values_filled": 1}


def test_pairing_is_stratified_by_group() -> None:
    samples = pd.Index([f"s{i}" for i in range(40)])
    groups = pd.Series(["a"] * 30 + ["b"] * 10, index=samples)
    picked = choose_paired_samples(samples, 8, np.random.default_rng(0), groups)
    assert groups[picked].value_counts().to_dict() == {"a": 6, "b": 2}
    with pytest.raises(ValueError, match="n_paired=50"):
        choose_paired_samples(samples, 50, np.random.default_rng(0))


def test_semisynthetic_cohort_follows_the_contract_and_scores_drive_slides(tmp_path: Path) -> None:
    expression, _, gene_sets, annotation, clinical, groups = _fake_real_data()
    edges = pd.DataFrame({"symbol_a": ["HYP0_0", "HYP0_1", "BG1"], "symbol_b": ["HYP0_1", "ELSEWHERE", "BG2"],
                          "combined_score": [900, 800, 500]})
    geometry = SlideGeometry(width=768, height=512)
    out = make_semisynthetic_cohort(tmp_path / "c", expression, clinical, gene_sets, annotation, edges, groups,
                                    n_paired=10, seed=1, geometry=geometry, n_jobs=1, progress=False,
                                    sources={"fake": "0" * 64})
    cohort = load_cohort(out)
    assert cohort.kind == "semisynthetic" and cohort.expression_unit == "log_expression"
    assert cohort.metadata["cleaning"]["genes_without_ensembl_id"] == 1
    assert len(cohort.lineages) == 10 and cohort.expression_pool.shape[1] == 30 and len(cohort.slides) == 20
    assert list(cohort.expression_lineages.columns) == list(cohort.lineages["rna_sample_id"])
    assert set(cohort.lineages["group"]) == {"Neural", "Mesenchymal"}
    assert cohort.patients.index.tolist() == cohort.lineages["patient_id"].tolist()
    assert len(cohort.ppi_edges) == 2  # the edge to a gene not in the expression table is dropped
    truth = cohort.truth
    assert truth.visible_programs == ["hypoxia", "proliferation", "angiogenesis"]
    necrosis = pd.Series({lid: truth.slide_stats[f"{lid}-S1.tiff"]["necrosis_fraction_of_tissue"]
                          for lid in cohort.lineages.index})
    hypoxia = truth.activity.loc[cohort.lineages.index, "hypoxia"]
    assert necrosis.corr(hypoxia, method="spearman") > 0.8
    stamp = (out / "truth.json").stat().st_mtime_ns
    make_semisynthetic_cohort(out, expression, clinical, gene_sets, annotation, edges, groups, n_paired=10, seed=1,
                              geometry=geometry, n_jobs=1, progress=False, sources={"fake": "0" * 64})
    assert (out / "truth.json").stat().st_mtime_ns == stamp  # same settings: reused


def test_annotation_without_required_columns_is_a_clear_error(tmp_path: Path) -> None:
    expression, _, gene_sets, annotation, clinical, _ = _fake_real_data()
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['gene_id'\]"):
        make_semisynthetic_cohort(tmp_path / "c", expression, clinical, gene_sets, annotation.drop(columns="gene_id"),
                                  n_paired=4, geometry=SlideGeometry(width=512, height=512), n_jobs=1, progress=False)
