"""The ``reference`` profile's cohort: real TCGA-GBM expression scored with MSigDB Hallmark sets and the
Verhaak 2010 neural signature, driving rendered slides. Two expression sets can drive it: ``verhaak840`` (Verhaak 2010 unified core,
840 subtype genes × 173 patients, with subtypes and the TCGA clinical patient file) and ``cancersubtypes1500``
(CancerSubtypes' TCGA-GBM 1,500 genes × 100 patients, with their overall survival).

Every input comes through :func:`gbhet_lib.data.fetch.fetch` (sources, checksums, licences in
``data_manifest/datasets.yaml``), is parsed from the format upstream serves by :mod:`gbhet_lib.data.readers`,
and the checksums are recorded in ``cohort.json`` as provenance.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from .fetch import fetch
from .manifest import load_manifest
from .readers import (read_cancersubtypes_gbm, read_gliovis_subtypes_rds, read_iobr_hallmark_rda,
                      read_pirlygenes_reference, read_string_rda, read_tcga_clinical_patient, read_verhaak_clanc840)
from .semisynthetic import make_semisynthetic_cohort
from .synthetic.slides import SlideGeometry

#: manifest entries every reference cohort is built from, and those of each expression set
#: (every one has a pinned upstream URL, so the cohort builds online without a mirror; the Neftel 2019 sets are
#: mirror-only, which is why the neural program uses the Verhaak 2010 neural signature)
SHARED_INPUTS: tuple[str, ...] = ("msigdb_hallmark_iobr_rda", "gliovis_subtype_list_rds", "pirlygenes_gene_reference",
                                  "string_v12_ppi_rda")
EXPRESSION_INPUTS: dict[str, tuple[str, ...]] = {
    "verhaak840": ("verhaak2010_clanc840", "tcga_gbm_clinical_patient"),
    "cancersubtypes1500": ("cancersubtypes_geneexp_rda", "cancersubtypes_time_rda", "cancersubtypes_status_rda"),
}
REFERENCE_INPUTS: tuple[str, ...] = EXPRESSION_INPUTS["verhaak840"] + SHARED_INPUTS
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


def cancersubtypes_expression_and_clinical(geneexp: Path, time: Path, status: Path) -> tuple[pd.DataFrame,
                                                                                          pd.DataFrame]:
    """CancerSubtypes' TCGA-GBM expression (patients × 1,500 genes) and its survival (``os_days``, ``os_event``)."""
    adata = read_cancersubtypes_gbm(geneexp, time, status)
    expression = pd.DataFrame(adata.X, index=pd.Index(adata.obs["patient_id"], name="patient_id"),
                              columns=adata.var_names)
    return expression, adata.obs.set_index("patient_id")[["os_days", "os_event"]]


def build_reference_cohort(out_dir: str | Path, mirror: Path | None = None, cache_dir: Path | None = None,
                           n_paired: int = 24, seed: int = 0, geometry: SlideGeometry = SlideGeometry(),
                           expression_set: str = "verhaak840", n_jobs: int | None = None, progress: bool = True,
                           force: bool = False, slides_per_lineage: int = 2, n_diagnostic: int = 120,
                           mri_geometry: Any = None) -> Path:
    """Fetch, verify and parse the reference inputs, then write the semi-synthetic cohort to ``out_dir``.

    ``n_paired`` patients get ``slides_per_lineage`` rendered slides (stratified by Verhaak subtype for
    ``verhaak840``); the others form the RNA pool. ``expression_set`` is ``verhaak840`` or ``cancersubtypes1500``.
    Every sample gets an MRI (``mri_geometry``: a :class:`~gbhet_lib.data.synthetic.mri.MriGeometry`, default the
    demo's) and ``n_diagnostic`` pool samples a diagnostic slide.
    """
    if expression_set not in EXPRESSION_INPUTS:
        raise ValueError(f"expression_set={expression_set!r} is not one of {sorted(EXPRESSION_INPUTS)}")
    manifest = load_manifest()
    inputs = EXPRESSION_INPUTS[expression_set] + SHARED_INPUTS
    paths = {name: fetch(name, mirror=mirror, cache_dir=cache_dir, manifest=manifest) for name in inputs}
    if expression_set == "verhaak840":
        expression, clinical = verhaak_expression_and_clinical(*(paths[n] for n in EXPRESSION_INPUTS[expression_set]))
    else:
        expression, clinical = cancersubtypes_expression_and_clinical(
            *(paths[n] for n in EXPRESSION_INPUTS[expression_set]))
    gene_sets = {**read_iobr_hallmark_rda(paths["msigdb_hallmark_iobr_rda"]),
                 **read_gliovis_subtypes_rds(paths["gliovis_subtype_list_rds"])}
    return make_semisynthetic_cohort(
        out_dir, expression, clinical, gene_sets, annotation=read_pirlygenes_reference(paths["pirlygenes_gene_reference"]),
        ppi_edges=read_string_rda(paths["string_v12_ppi_rda"]), groups=clinical.get("subtype"), n_paired=n_paired,
        seed=seed, geometry=geometry, slides_per_lineage=slides_per_lineage, sources={name: manifest[name].sha256 for name in inputs},
        n_jobs=n_jobs, progress=progress, force=force, n_diagnostic=n_diagnostic,
        **({"mri_geometry": mri_geometry} if mri_geometry is not None else {}))
