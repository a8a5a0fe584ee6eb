"""The ``reference`` profile's cohort: real TCGA-GBM expression (Verhaak 2010, 840 genes, 173 samples) with
its subtypes and clinical data, scored with MSigDB Hallmark and Neftel 2019 sets, driving rendered slides.

Every input comes through :func:`gbhet_lib.data.fetch.fetch` (sources, checksums, licences in
``data_manifest/datasets.yaml``), is parsed from the format upstream serves by :mod:`gbhet_lib.data.readers`,
and the checksums are recorded in ``cohort.json`` as provenance.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .fetch import fetch
from .manifest import load_manifest
from .readers import (read_gmt, read_iobr_hallmark_rda, read_pirlygenes_reference, read_string_rda,
                      read_tcga_clinical_patient, read_verhaak_clanc840)
from .semisynthetic import make_semisynthetic_cohort
from .synthetic.slides import SlideGeometry

#: manifest entries the reference cohort is built from
REFERENCE_INPUTS: tuple[str, ...] = (
    "verhaak2010_clanc840", "tcga_gbm_clinical_patient", "msigdb_hallmark_iobr_rda", "neftel2019_gmt",
    "pirlygenes_gene_reference", "string_v12_ppi_rda",
)
#: clinical columns carried into the cohort's clinical tables
CLINICAL_COLUMNS: tuple[str, ...] = ("os_days", "os_event", "age", "sex")


def verhaak_expression_and_clinical(expression_path: Path, clinical_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Verhaak 840-gene expression (patients × genes) and its clinical table (patients; subtype included).

    Samples are keyed by patient barcode (TCGA-XX-XXXX); a patient with two aliquots keeps the first.
    """
    adata = read_verhaak_clanc840(expression_path)
    obs = adata.obs.reset_index()
    first = ~obs["patient_id"].duplicated()
    expression = pd.DataFrame(adata.X[first.to_numpy()], columns=adata.var_names,
                              index=pd.Index(obs.loc[first, "patient_id"], name="patient_id"))
    clinical = read_tcga_clinical_patient(clinical_path)
    table = clinical.reindex(expression.index)[list(CLINICAL_COLUMNS)]
    table["subtype"] = obs.loc[first, "subtype"].astype(str).to_numpy()
    return expression, table


def build_reference_cohort(out_dir: str | Path, mirror: Path | None = None, cache_dir: Path | None = None,
                           n_paired: int = 24, seed: int = 0, geometry: SlideGeometry = SlideGeometry(),
                           n_jobs: int | None = None, progress: bool = True, force: bool = False) -> Path:
    """Fetch, verify and parse the reference inputs, then write the semi-synthetic cohort to ``out_dir``.

    ``n_paired`` patients (stratified by Verhaak subtype) get a rendered slide; the others form the RNA pool.
    """
    manifest = load_manifest()
    paths = {name: fetch(name, mirror=mirror, cache_dir=cache_dir, manifest=manifest) for name in REFERENCE_INPUTS}
    expression, clinical = verhaak_expression_and_clinical(paths["verhaak2010_clanc840"],
                                                           paths["tcga_gbm_clinical_patient"])
    gene_sets = {**read_iobr_hallmark_rda(paths["msigdb_hallmark_iobr_rda"]), **read_gmt(paths["neftel2019_gmt"])}
    return make_semisynthetic_cohort(
        out_dir, expression, clinical, gene_sets, annotation=read_pirlygenes_reference(paths["pirlygenes_gene_reference"]),
        ppi_edges=read_string_rda(paths["string_v12_ppi_rda"]), groups=clinical["subtype"], n_paired=n_paired,
        seed=seed, geometry=geometry, sources={name: manifest[name].sha256 for name in REFERENCE_INPUTS},
        n_jobs=n_jobs, progress=progress, force=force)
