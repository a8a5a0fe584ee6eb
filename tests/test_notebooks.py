"""Every chapter notebook executes on the demo profile with smoke parameters, through `gbhet run`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import nbformat
import numpy as np
import pytest

from data_mirror import mirror_root

from gbhet_lib.config import StudyConfig
from gbhet_lib.data.synthetic import PROGRAM_NAMES
from gbhet_lib.runner import discover_stages, run_study

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
#: small sizes so that the whole study runs in a minute or two; a stage receives the ones it declares
SMOKE_PARAMETERS = {"n_patients": 2, "n_pool": 60, "n_genes": 400, "module_size": 24, "n_drivers": 5, "n_paired": 6, "slide_width": 1024,
                    "slide_height": 768, "n_jobs": 1, "epochs": 2, "encoder_img_size": 32, "fixes_epochs": 2,
                    "power_replicates": 4, "probe_folds": 2, "cv_folds": 2, "pretrain_epochs": 2, "n_boot": 200,
                    "n_diagnostic": 20, "mri_voxel_mm": 8.0, "mri_input_size": 16, "ridge_components": 8,
                    "permutations": 20, "n_radiogenomic": 36, "trait_folds": 3,
                    "traits": ["necrosis", "focal"], "subtype_network": {"epochs": 3, "patience": 2}}
#: the metrics file each stage writes (metrics/<name>.json)
STAGE_METRICS = {"01_data": "01_data", "02_rna_encoding": "rna", "03_wsi_encoding": "wsi",
                 "04_fusion_training": "fusion", "05_retrieval": "retrieval", "06_interpretation": "interpret",
                 "07_expression_from_images": "expression", "08_radiogenomic_traits": "radiogenomics"}


@pytest.mark.notebook
@pytest.mark.timeout(3600)  # the whole study, DDP included: about 10 min on 2 loaded cores
def test_all_notebooks_execute_on_the_demo_profile(tmp_path: Path) -> None:
    config = StudyConfig(profile="demo", run_dir=tmp_path / "run", seed=0, device="cpu")
    results = run_study(config, notebook_dir=NOTEBOOKS, parameters=SMOKE_PARAMETERS, progress=False)
    stages = [s.name for s in discover_stages(NOTEBOOKS)]
    assert [r.stage for r in results] == stages and all(r.status == "ran" for r in results)
    for stage in stages:
        executed = nbformat.read(config.run_dir / "notebooks" / f"{stage}.ipynb", as_version=4)
        errors = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]
        assert not errors, stage
        assert (config.run_dir / "metrics" / f"{STAGE_METRICS[stage]}.json").exists(), f"{stage} wrote no metrics"
    data = json.loads((config.run_dir / "metrics" / "01_data.json").read_text())
    assert data["patients"] == 2 and data["pool_samples"] == 60 and data["genes"] == 400
    assert data["module_coexpression_within_mean"] > data["module_coexpression_across_mean"]
    rna = json.loads((config.run_dir / "metrics" / "rna.json").read_text())
    assert rna["n_genes"] == 400 and rna["louvain_ari"] > 0.5 and set(rna["probe_r2"]) == set(PROGRAM_NAMES)
    wsi = json.loads((config.run_dir / "metrics" / "wsi.json").read_text())
    assert wsi["n_slides"] == data["slides"] == 2 * data["lineages"] and wsi["n_patches"] > 0
    assert 0 < wsi["lineage_chance"] < 1 and set(wsi["probe_r2_slide"]) == set(PROGRAM_NAMES)
    assert wsi["probe_readout"] == "cls" and set(wsi["probe_r2_slide_projection_head"]) == set(PROGRAM_NAMES)
    for metrics in (data, rna, wsi):
        assert metrics["claims"] and all(isinstance(c["holds"], bool) for c in metrics["claims"])
    from gbhet_lib.rna.stage import RnaEncoderRecord, read_embedding
    from gbhet_lib.rundir import RunDir
    from gbhet_lib.wsi.stage import WsiEncoderRecord

    run = RunDir.of(config.run_dir)
    record = WsiEncoderRecord.read(run)
    assert len(record.slide_lineage) == wsi["n_slides"] and set(record.slide_patient) == set(record.slide_lineage)
    assert run.split_path("wsi-slide").exists()
    assert read_embedding(run).shape[0] == rna["n_samples"] and RnaEncoderRecord.read(run).standardise
    fusion = json.loads((config.run_dir / "metrics" / "fusion.json").read_text())
    assert fusion["pairs"]["pairs"] == wsi["n_patches"] and fusion["excluded"]["patches_without_rna"] == 0
    # two slides per lineage: the slide and lineage splits differ, so each is trained
    assert "lineage" not in fusion["identical_splits"] and "same_split_as" not in fusion["variants"]["best"]["lineage"]
    assert fusion["claims"] and fusion["patient_cv"]["folds"] == 2
    assert fusion["fixes"]["epochs"] == 2 and fusion["streamed"] is False
    assert set(fusion["variants"]) == {"best", "frozen", "chromosome"}
    assert set(fusion["fixes"]["best+fixes"]) == {"patch", "slide", "lineage"}
    for variant, policies in fusion["variants"].items():
        assert set(policies) == {"patch", "slide", "lineage"}, variant
        for row in policies.values():
            assert row["epochs"] == 2 and row["device"] == "cpu" and row["pairs_per_s"] > 0
            assert np.isfinite([row["first_loss"], row["last_loss"], row["last_itc"], row["last_itm"]]).all()
            assert ("last_reconstruction" in row) == (variant != "best")  # c_rec = 0 only in best
    retrieval = json.loads((config.run_dir / "metrics" / "retrieval.json").read_text())
    scored = {"best", "frozen", "chromosome", "best+fixes", "random_init", "not_fused", "linear"}
    assert scored <= set(retrieval) and retrieval["claims"]
    for variant in scored:
        cv = {"patient_cv"}  # cv_fixes is on by default: the loss-fixed model is trained on the folds too
        assert set(retrieval[variant]) == {"patch", "slide", "lineage"} | cv, variant
        for m in retrieval[variant].values():
            assert 0 <= m["percentile"] <= 1 and 0 < m["lineage_top1_chance"] < 1 and m["n_queries"] > 0
        # the image-blind null ranks every held-out profile alike: lineage-balanced, it sits at 0.5 (a leak check)
        if cv:
            balanced = retrieval[variant]["patient_cv"]["held_out_gallery_balanced"]
            assert balanced["null_percentile"] == pytest.approx(0.5)
    assert retrieval["best"]["patient_cv"]["n_folds"] == 2 and retrieval["best"]["patch"]["n_folds"] == 1
    interpret = json.loads((config.run_dir / "metrics" / "interpret.json").read_text())
    assert set(interpret["variants"]) == {"best", "best+fixes", "frozen", "chromosome"} and interpret["claims"]
    assert len(interpret["top_genes"]) == 50 and all(0 < g["permutation_p"] <= 1 for g in interpret["top_genes"])
    assert 0 < interpret["driver_chance"] < 1 and 0 <= interpret["driver_precision_at_50"] <= 1
    assert set(interpret["invisible_program_hits"]) == {"immune", "neural", "mesenchymal"}
    assert interpret["heatmap_slides"] == wsi["n_slides"] and interpret["heatmap_structure_rho"]
    assert len(list((config.run_dir / "figures" / "06_heatmaps").glob("*.png"))) == wsi["n_slides"]
    assert 0 <= interpret["cindex"] <= 1 and "skipped" in interpret["survival"]["embedding_clusters"]  # 2 patients
    assert data["mri_subjects"] == 62 and data["diagnostic_slides"] == 20
    expression = json.loads((config.run_dir / "metrics" / "expression.json").read_text())
    assert expression["n_patients"] == 20 and expression["claims"]
    for model in ("he2rna_wsi", "farooq_mri", "ridge_wsi", "ridge_mri"):
        assert {"n_genes_tested", "n_significant", "n_significant_visible", "n_significant_invisible", "median_r",
                "mean_r_top50", "min_significant_r", "n_patients"} <= set(expression[model])
        assert expression[model]["n_patients"] == 20 and expression[model]["n_genes_tested"] > 0
    # the same training from the command line (what runs on the GPU machine), on the recorded split
    from gbhet_lib.cli import main
    from gbhet_lib.fusion.stage import read_split, read_trained

    assert main(["train-fusion", "--run-dir", str(config.run_dir), "--variant", "best", "--policy", "lineage",
                 "--epochs", "3", "--device", "cpu", "--no-progress"]) == 0
    record = read_trained(config.run_dir, "best", "lineage")
    assert len(record["history"]) == 3 and record["split_digest"] == read_split(config.run_dir, "lineage")["digest"]
    assert (config.run_dir / record["checkpoint"]).exists()
    # and data-parallel on the demo cohort: torchrun, 2 CPU processes (gloo) × 8 against 1 process × 16, on a split
    # whose patch encoder no chapter trained, so that rank 0 pre-trains it alone while rank 1 waits
    from gbhet_lib.fusion.stage import load_pairing, write_split

    write_split(config.run_dir, load_pairing(config.run_dir, "ppi", SMOKE_PARAMETERS["encoder_img_size"]), "patient",
                0.5, 0)
    common = ["train-fusion", "--run-dir", str(config.run_dir), "--variant", "frozen", "--policy", "patient",
              "--epochs", "2", "--device", "cpu", "--no-progress", "--set", "gather_negatives=true"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launched = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                               "-m", "gbhet_lib.cli", *common, "--batch-size", "8", "--name", "two-processes"],
                              env=env, capture_output=True, text=True, timeout=600)
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert main(common + ["--batch-size", "16", "--name", "one-process"]) == 0
    one, two = (read_trained(config.run_dir, name, "patient") for name in ("one-process", "two-processes"))
    assert (one["world_size"], two["world_size"]) == (1, 2) and one["wsi_encoder"] == two["wsi_encoder"]
    np.testing.assert_allclose([e["train_itc"] for e in two["history"]], [e["train_itc"] for e in one["history"]],
                               rtol=1e-3)


@pytest.mark.notebook
@pytest.mark.timeout(3600)  # the whole study on the reference data
def test_every_chapter_runs_the_reference_profile_offline_from_the_mirror(tmp_path: Path) -> None:
    mirror = mirror_root()
    config = StudyConfig(profile="reference", run_dir=tmp_path / "run", seed=0, device="cpu", data_mirror=mirror,
                         cache_dir=tmp_path / "empty-cache")
    run_study(config, notebook_dir=NOTEBOOKS, parameters=SMOKE_PARAMETERS, progress=False)
    data = json.loads((config.run_dir / "metrics" / "01_data.json").read_text())
    assert data["profile"] == "reference" and data["lineages"] == 6 and data["pool_samples"] == 173 - 6
    assert data["subtype_counts"] == {"Classical": 38, "Mesenchymal": 56, "Neural": 26, "Proneural": 53}
    assert not any((tmp_path / "empty-cache").rglob("*.*"))  # nothing was downloaded
    rna = json.loads((config.run_dir / "metrics" / "rna.json").read_text())
    assert rna["n_samples"] == 173 and rna["subtype_chance"] == pytest.approx(56 / 173)
    assert {"subtype_acc", "subtype_acc_raw", "c_index"} <= set(rna)
    wsi = json.loads((config.run_dir / "metrics" / "wsi.json").read_text())
    fusion = json.loads((config.run_dir / "metrics" / "fusion.json").read_text())
    assert wsi["n_slides"] == 12 and fusion["pairs"] == {"pairs": wsi["n_patches"], "slides": 12, "lineages": 6,
                                                         "patients": 6}
    assert fusion["variants"]["chromosome"]["lineage"]["epochs"] == 2
    retrieval = json.loads((config.run_dir / "metrics" / "retrieval.json").read_text())
    assert retrieval["best"]["patient_cv"]["n_folds"] == 2 and retrieval["claims"]
    interpret = json.loads((config.run_dir / "metrics" / "interpret.json").read_text())
    assert interpret["claims"] and "logrank_p" in interpret["survival"]["subtype"]
    expression = json.loads((config.run_dir / "metrics" / "expression.json").read_text())
    assert expression["n_patients"] == 20 and expression["n_genes"] == rna["n_genes"]  # centred values: no filter
    assert "no non-zero-median filter" in expression["gene_filter"]
    assert expression["he2rna_wsi"]["n_genes_tested"] == rna["n_genes"]
    assert "n_significant_visible" in expression["farooq_mri"]
    # chapter 8: the paper's subtype validation on the real data (both sets), with the headline keys
    radiogenomics = json.loads((config.run_dir / "metrics" / "radiogenomics.json").read_text())
    subtypes = radiogenomics["subtypes"]
    assert subtypes["clanc840"]["cv"]["n_patients"] == 173 and subtypes["wide"]["cv"]["n_patients"] == 78
    assert subtypes["clanc840"]["cv"]["n_folds"] == 3 and subtypes["vasari"]["n_rows"] == 7
    assert radiogenomics["verhaak_base_rate"] == pytest.approx(106 / 1500)
    assert 0 <= radiogenomics["subtype_masking_recovery"] <= 1 and 0 <= radiogenomics["verhaak_share_top50"] <= 1
    ids = {c["id"] for c in radiogenomics["claims"]}
    assert any(i.startswith("radiogenomics.subtypes.clanc840.masking_recovers") for i in ids)
    assert any(i.startswith("radiogenomics.subtypes.wide.verhaak_share_top50") for i in ids)


def test_notebooks_are_stored_without_outputs_and_with_parameters() -> None:
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert not any(c.get("outputs") or c.get("execution_count") for c in code), f"{path.name} has outputs"
        assert any("parameters" in c.metadata.get("tags", []) for c in code), f"{path.name}: no parameters cell"


@pytest.mark.notebook
@pytest.mark.timeout(1200)  # one chapter
def test_chapter_1_runs_the_full_profile_against_a_fake_gdc(tmp_path: Path) -> None:
    from fake_gdc import serve_fake_gdc

    def case(k: int, project: str, dead: bool) -> dict:
        return {"id": f"case-{k}", "case_id": f"case-{k}", "submitter_id": f"TCGA-{k:02d}-0001",
                "project": {"project_id": project},
                "demographic": {"vital_status": "Dead" if dead else "Alive",
                                "days_to_death": 100 + 40 * k if dead else None},
                "diagnoses": [{"days_to_last_follow_up": 2000 + k}]}

    files = [{"id": str(uuid.UUID(int=k)), "file_id": str(uuid.UUID(int=k)), "file_name": f"f{k}.tsv",
              "md5sum": f"{k:032x}", "file_size": 1000, "state": "released"} for k in range(3)]
    with serve_fake_gdc() as fake:
        fake.hits["files"] = files
        fake.hits["cases"] = [case(k, "TCGA-GBM" if k % 2 else "TCGA-LGG", dead=k % 3 != 0) for k in range(12)]
        config = StudyConfig(profile="full", run_dir=tmp_path / "run", seed=0, device="cpu")
        run_study(config, notebook_dir=NOTEBOOKS, only=["01_data"], parameters={"gdc_api": fake.url},
                  progress=False)
    data = json.loads((config.run_dir / "metrics" / "01_data.json").read_text())
    assert data["profile"] == "full" and data["gdc_files"] == {"STAR counts": 3, "diagnostic slides": 3}
    assert 0.0 <= data["os_logrank_p"] <= 1.0
    assert len(list((config.run_dir / "data" / "gdc").glob("*.manifest.txt"))) == 2  # counts and slides


@pytest.mark.notebook
@pytest.mark.timeout(1800)  # chapter 2 on 173 real samples
def test_chapter_2_runs_on_your_own_files(tmp_path: Path) -> None:
    """Bring your own data: an expression TSV (symbols × samples, normalised), a clinical CSV and an edge table."""
    from gbhet_lib.data.fetch import fetch
    from gbhet_lib.data.readers import read_tcga_clinical_patient, read_verhaak_clanc840

    mirror = mirror_root()
    adata = read_verhaak_clanc840(fetch("verhaak2010_clanc840", mirror=mirror))
    expression = adata.to_df().T  # genes × samples
    expression.to_csv(tmp_path / "expression.tsv", sep="\t")
    clinical = read_tcga_clinical_patient(fetch("tcga_gbm_clinical_patient", mirror=mirror))
    table = adata.obs.join(clinical[["os_days", "os_event", "age"]], on="patient_id")
    table[["subtype", "os_days", "os_event", "age"]].to_csv(tmp_path / "clinical.csv")
    edges = fetch("string_v12_ppi_tsv", mirror=mirror)
    config = StudyConfig(profile="reference", run_dir=tmp_path / "run", seed=0, device="cpu", data_mirror=mirror)
    run_study(config, notebook_dir=NOTEBOOKS, only=["rna"], progress=False, parameters={
        "expression_path": str(tmp_path / "expression.tsv"), "expression_values": "normalised",
        "clinical_path": str(tmp_path / "clinical.csv"), "ppi_path": str(edges), "epochs": 2})
    rna = json.loads((config.run_dir / "metrics" / "rna.json").read_text())
    assert rna["n_samples"] == 173 and rna["n_genes"] > 700 and rna["subtype_chance"] == pytest.approx(56 / 173)
