"""The stage contracts of chapters 1–3: run-directory paths, typed records, the expression AnnData, chapter 3's split."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gbhet_lib.rna.gene_ids import GeneIdMatch
from gbhet_lib.rna.stage import (EMBEDDING_KEY, RnaEncoderRecord, RnaExpression, encoder_values, expression_anndata,
                                 pool_split_ids, read_embedding, standardise_genes)
from gbhet_lib.rundir import RecordError, RunDir
from gbhet_lib.wsi.stage import CohortPatches, WsiEncoderRecord, draw_validation_split


def wsi_record() -> WsiEncoderRecord:
    return WsiEncoderRecord(checkpoint="models/wsi/triplet-x/last.pt", settings={"epochs": 2, "seed": 0},
                            encoder={"arch": "demo", "img_size": 32, "weights_path": None},
                            patch_stores=["features/patches/S1.h5", "features/patches/S2.h5"],
                            slide_lineage={"S1": "L1", "S2": "L1"}, slide_patient={"S1": "P1", "S2": "P1"},
                            split="models/splits/wsi-slide.json", split_policy="slide", val_fraction=0.3,
                            init_source="random")


def rna_record() -> RnaEncoderRecord:
    return RnaEncoderRecord(checkpoint="models/rna/pretrain-x/last.pt", token_method="ppi", standardise=True,
                            fit_on=["a", "b"], pool=["a", "b", "c"], settings={"epochs": 2}, validation=["c"],
                            gene_tokens="models/rna/gene_tokens.json", expression="data/rna_expression.h5ad")


# ------------------------------------------------------------------------------------------------ RunDir
def test_run_dir_names_every_artifact_of_chapters_1_to_4(tmp_path: Path) -> None:
    run = RunDir.of(tmp_path)
    assert RunDir.of(run) is run and run.root == tmp_path
    expected = {run.cohort: "data/cohort", run.expression: "data/rna_expression.h5ad",
                run.gene_tokens: "models/rna/gene_tokens.json", run.rna_record: "models/rna/encoder.json",
                run.wsi_record: "models/wsi/encoder.json", run.coords: "features/coords",
                run.coords_file("S1"): "features/coords/S1.h5", run.patch_stores: "features/patches",
                run.patch_store("S1"): "features/patches/S1.h5", run.features_file("S1"): "features/S1.h5",
                run.real_coords: "features/real_coords", run.splits: "models/splits",
                run.split_path("wsi-slide"): "models/splits/wsi-slide.json", run.fusion_models: "models/fusion",
                run.pairing: "data/fusion/pairing.h5", run.figure("01_ppi.png"): "figures/01_ppi.png"}
    for path, relative in expected.items():
        assert path == tmp_path / relative
        assert run.relative(path) == relative
    assert run.relative("models/x.pt") == "models/x.pt"  # relative paths are kept


def test_the_evaluation_layer_and_the_run_dir_agree_on_split_files(tmp_path: Path) -> None:
    from gbhet_lib.evaluate.splits import run_split_path

    assert run_split_path(tmp_path, "wsi-patient") == RunDir.of(tmp_path).split_path("wsi-patient")


# ------------------------------------------------------------------------------------------------ records
@pytest.mark.parametrize("make", [wsi_record, rna_record])
def test_records_round_trip(tmp_path: Path, make) -> None:
    record = make()
    path = record.write(tmp_path)
    assert path == RunDir.of(tmp_path).record(record.STAGE)
    assert type(record).read(tmp_path) == record
    assert json.loads(path.read_text()) == record.to_dict()


def test_records_keep_the_keys_the_fusion_stage_reads(tmp_path: Path) -> None:
    wsi = json.loads(wsi_record().write(tmp_path).read_text())
    assert {"checkpoint", "settings", "encoder", "patch_stores", "slide_lineage", "slide_patient"} <= set(wsi)
    assert set(wsi["encoder"]) == {"arch", "img_size", "weights_path"}
    rna = json.loads(rna_record().write(tmp_path).read_text())
    assert {"checkpoint", "token_method", "settings", "fit_on", "pool", "standardise"} <= set(rna)


@pytest.mark.parametrize("make, field, chapter", [(wsi_record, "slide_patient", "03_wsi_encoding"),
                                                  (wsi_record, "patch_stores", "03_wsi_encoding"),
                                                  (rna_record, "fit_on", "02_rna_encoding")])
def test_a_record_without_a_field_names_the_file_the_field_and_the_fix(tmp_path: Path, make, field: str,
                                                                        chapter: str) -> None:
    record = make()
    path = record.write(tmp_path)
    raw = json.loads(path.read_text())
    del raw[field]
    path.write_text(json.dumps(raw))
    with pytest.raises(RecordError) as err:
        type(record).read(tmp_path)
    message = str(err.value)
    assert str(path) in message and repr(field) in message
    assert f"--only {chapter} --force" in message and str(tmp_path) in message


def test_a_missing_record_names_the_chapter_that_writes_it(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="03_wsi_encoding --force"):
        WsiEncoderRecord.read(tmp_path)


def test_record_values_are_checked(tmp_path: Path) -> None:
    bad = RnaEncoderRecord(**{**rna_record().to_dict(), "fit_on": ["a", "z"]})
    bad.write(tmp_path)
    with pytest.raises(RecordError, match="outside 'pool'"):
        RnaEncoderRecord.read(tmp_path)
    encoder = WsiEncoderRecord(**{**wsi_record().to_dict(), "encoder": {"arch": "demo"}})
    encoder.write(tmp_path)
    with pytest.raises(RecordError, match="img_size"):
        WsiEncoderRecord.read(tmp_path)


def test_records_and_stage_modules_load_without_the_notebook_stack() -> None:
    blocked = ["anndata", "scanpy", "openslide", "papermill", "matplotlib", "seaborn", "networkx", "lifelines",
               "sklearn", "statsmodels", "yaml", "umap", "pooch", "requests", "rdata", "tifffile"]
    code = (f"import sys\nsys.modules.update(dict.fromkeys({blocked!r}))\n"
            "from gbhet_lib.rna.stage import RnaEncoderRecord\n"
            "from gbhet_lib.wsi.stage import WsiEncoderRecord, encoder_factory\n"
            "from gbhet_lib.rundir import RunDir\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


# ------------------------------------------------------------------------------------------------ expression
def tiny_expression(n_lineages: int = 4, n_pool: int = 30, n_genes: int = 12) -> RnaExpression:
    rng = np.random.default_rng(0)
    samples = [f"L{i}" for i in range(n_lineages)] + [f"S{i}" for i in range(n_pool)]
    values = pd.DataFrame(rng.normal(5, 1, (len(samples), n_genes)), index=samples,
                          columns=[f"G{j}" for j in range(n_genes)])
    values["G0"] = 3.0  # a constant gene: centred, not scaled
    factors = pd.Series(rng.uniform(0.5, 2, len(samples)), index=samples)
    match = GeneIdMatch(pd.DataFrame({"input": values.columns, "kind": "symbol", "gene_id": values.columns,
                                      "reason": "symbol", "keep": True}))
    return RnaExpression(values, pd.Index(samples[:n_lineages]), pd.Index(samples[n_lineages:]), factors, match)


def test_the_expression_anndata_records_roles_size_factors_split_and_scaling() -> None:
    rna = tiny_expression()
    adata = expression_anndata(rna, seed=1, standardise=True)
    assert list(adata.obs_names) == list(rna.values.index) and list(adata.var_names) == list(rna.values.columns)
    np.testing.assert_array_equal(adata.X, rna.values.to_numpy())
    assert adata.obs["role"].tolist() == ["lineage"] * 4 + ["pool"] * 30
    np.testing.assert_allclose(adata.obs["size_factor"], rna.size_factors)
    train, val = pool_split_ids(adata)
    assert len(val) == 3 and not set(train) & set(val) and set(train) | set(val) == set(rna.pool)
    assert (adata.obs.loc[rna.lineages, "pool_split"] == "").all()
    assert adata.uns["scaling"]["fed_to_encoder"] and adata.uns["scaling"]["n_fit"] == len(train)
    np.testing.assert_allclose(adata.var["scaling_mean"], rna.values.loc[train].mean())
    assert adata.var.loc["G0", "scaling_std"] == 1.0
    expected = standardise_genes(rna.values, train)
    pd.testing.assert_frame_equal(encoder_values(adata), expected, check_names=False)
    raw = expression_anndata(rna, seed=1, standardise=False)
    np.testing.assert_array_equal(encoder_values(raw).to_numpy(), rna.values.to_numpy())


def test_the_embedding_is_stored_in_obsm_aligned_with_the_sample_ids(tmp_path: Path) -> None:
    from gbhet_lib.rna.stage import embed_samples, pretrain_encoder, write_expression
    from gbhet_lib.rna.tokens import GeneTokens
    from gbhet_lib.rna.train import PretrainConfig

    run = RunDir.of(tmp_path).create()
    rna = tiny_expression()
    adata = expression_anndata(rna, seed=0, standardise=True)
    write_expression(run, adata)
    genes = list(adata.var_names)
    tokens = GeneTokens({"t1": genes[:6], "t2": genes[6:]}, method="file")
    settings = PretrainConfig(epochs=1, batch_size=8, dim=16, heads=2, proj_dim=8, seed=0)
    pretrained = pretrain_encoder(run, adata, tokens, "ppi", settings)
    record = RnaEncoderRecord.read(run)
    assert record.fit_on == list(pool_split_ids(adata)[0]) and record.pool == list(rna.pool)
    assert (run.root / record.checkpoint).exists() and record.expression == "data/rna_expression.h5ad"
    embedding, raw_pcs = embed_samples(run, adata, pretrained)
    stored = read_embedding(run)
    assert list(stored.index) == list(rna.values.index) and stored.shape == (34, 16)
    np.testing.assert_allclose(stored.to_numpy(), embedding.to_numpy())
    import anndata

    back = anndata.read_h5ad(run.expression)
    assert back.obsm[EMBEDDING_KEY].shape[0] == back.n_obs and back.obsm["X_pca_raw"].shape == (34, 12)
    # the row of a sample is that sample's embedding: a lone sample embeds to the same vector
    from gbhet_lib.rna.train import embed

    one = embed(pretrained.model, pretrained.data.subset([5]))
    np.testing.assert_allclose(stored.loc[back.obs_names[5]].to_numpy(), one[0], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------------ WSI split
def patches(n_per_slide: int = 3) -> CohortPatches:
    slide_lineage = {"S1": "L1", "S2": "L1", "S3": "L2", "S4": "L3", "S5": "L3", "S6": "L4"}
    lineage_patient = {"L1": "P1", "L2": "P1", "L3": "P2", "L4": "P3"}
    slide = np.repeat(list(slide_lineage), n_per_slide).astype(object)
    row = np.tile(np.arange(n_per_slide), len(slide_lineage))
    lineage = np.array([slide_lineage[s] for s in slide], dtype=object)
    patient = np.array([lineage_patient[v] for v in lineage], dtype=object)
    keys = np.array([f"{s}:{r}" for s, r in zip(slide, row)], dtype=object)
    return CohortPatches(None, slide, lineage, patient, keys, slide_lineage,
                         {s: lineage_patient[v] for s, v in slide_lineage.items()})


@pytest.mark.parametrize("policy, unit", [("slide", "slide"), ("lineage", "lineage"), ("patient", "patient")])
def test_chapter_3_holds_out_whole_units_by_their_real_ids(tmp_path: Path, policy: str, unit: str) -> None:
    data = patches()
    run = RunDir.of(tmp_path)
    split, train, held = draw_validation_split(run, data, policy, 0.3, seed=0)
    ids = data.units[unit]
    assert not set(ids[train]) & set(ids[held]) and len(held) > 0 and len(train) > 0
    assert sorted(np.concatenate([train, held])) == list(range(len(data.keys)))
    path = run.split_path(f"wsi-{policy}")
    assert path.exists() and split["policy"] == policy and split["name"] == f"wsi-{policy}"
    assert set(split["held_out_keys"]) == set(data.keys[held])
    if policy == "lineage":  # two slides of lineage L1 (or L3) go to the same side
        assert all((data.lineage[held] == lid).all() or not (data.lineage[held] == lid).any()
                   for lid in ("L1", "L3") if lid in set(data.lineage[held]))
    again = draw_validation_split(run, data, policy, 0.3, seed=0)  # the file is kept and read back
    assert again[0]["digest"] == split["digest"]


def test_chapter_3_refuses_an_unknown_policy(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split_policy"):
        draw_validation_split(RunDir.of(tmp_path), patches(), "cohort", 0.3, seed=0)


# ------------------------------------------------------------------------------------------------ on a cohort
def test_chapter_1_stage_on_a_small_cohort(small_cohort: Path) -> None:
    from gbhet_lib.data import stage as data_stage
    from gbhet_lib.data.cohort import load_cohort

    cohort = load_cohort(small_cohort)
    counts = data_stage.cohort_counts(cohort)
    assert counts == {"patients": 4, "lineages": len(cohort.lineages), "slides": 2 * len(cohort.lineages),
                      "pool_samples": 150, "genes": 600, "mri_subjects": 154, "diagnostic_slides": 12}
    assert data_stage.cohort_counts(None) == {} and "stops at acquisition" in data_stage.describe_cohort(None, "full")
    assert len(data_stage.cohort_table(cohort)) == len(cohort.lineages)
    assert data_stage.library_size_metrics(cohort)["library_size_ratio_max_min"] > 1
    activity, grouping = data_stage.program_activity(cohort)
    assert list(activity.index) == list(grouping.index) == list(cohort.lineages.index)
    coexpression, summary = data_stage.module_coexpression_table(cohort)
    assert summary["module_coexpression_within_mean"] > summary["module_coexpression_across_mean"]
    clinical, scores, planted, group = data_stage.survival_inputs(cohort)
    assert list(clinical.index) == list(scores.index) and planted and group is None
    assert data_stage.subtypes(cohort) is None
    edges, communities, metrics = data_stage.ppi_inputs(cohort, type("C", (), {"profile": "demo"})())
    assert edges is cohort.ppi_edges and len(communities) > 0 and metrics == {}


def test_chapter_3_stage_indexes_patches_by_slide_lineage_and_patient(small_cohort: Path, tmp_path: Path) -> None:
    from gbhet_lib.data.cohort import load_cohort
    from gbhet_lib.wsi import stage as wsi_stage

    cohort = load_cohort(small_cohort)
    run = RunDir.of(tmp_path).create()
    report, counts = wsi_stage.tile_cohort(run, cohort, 10.0, 64, 0.5, n_jobs=1)
    assert counts["n_slides"] == len(cohort.slides) and counts["n_patches"] == report["patches"].sum() > 0
    assert sorted(report["slide"]) == sorted(cohort.slides.index)  # slide ids, not the machine's paths
    data = wsi_stage.build_patch_stores(run, cohort)
    assert len(data.slide_lineage) == len(cohort.slides) > len(set(data.slide_lineage.values())) == len(cohort.lineages)
    assert len(data.keys) == counts["n_patches"] and len(set(data.keys)) == len(data.keys)
    for slide, lineage, patient, key in zip(data.slide, data.lineage, data.patient, data.keys):
        assert key.startswith(f"{slide}:") and data.slide_lineage[slide] == lineage
        assert cohort.lineages.loc[lineage, "patient_id"] == patient
    code = {lid: k for k, lid in enumerate(cohort.lineages.index)}
    np.testing.assert_array_equal(data.index.labels, [code[v] for v in data.lineage])
    _, train, held = wsi_stage.draw_validation_split(run, data, "patient", 0.3, seed=0)
    assert not set(data.patient[train]) & set(data.patient[held])
    assert run.split_path("wsi-patient").exists()
    _, train, held = wsi_stage.draw_validation_split(run, data, "slide", 0.3, seed=0)
    assert set(data.lineage[train]) & set(data.lineage[held])  # sections of one lineage on both sides
    assert not set(data.slide[train]) & set(data.slide[held])


def test_chapter_3_replaces_its_split_when_drawn_otherwise(tmp_path: Path) -> None:
    run = RunDir.of(tmp_path)
    first = draw_validation_split(run, patches(), "slide", 0.3, seed=0)[0]
    second = draw_validation_split(run, patches(), "slide", 0.6, seed=0)[0]
    assert second["held_out_fraction"] == 0.6 and len(second["held_out_slides"]) > len(first["held_out_slides"])
    assert json.loads(run.split_path("wsi-slide").read_text())["digest"] == second["digest"]
