"""Chapter 1 (data) on a run directory: what it reads, what it writes, and each step the chapter runs.

Reads: nothing of the run (the data manifest's files come from a mirror, the cache or their sources; ``full``
asks the GDC API, ``stemri`` Zenodo).

Writes (relative to the run directory; :class:`~gbhet_lib.rundir.RunDir` names every path)::

    data/cohort/                     the cohort (demo, reference): genes.tsv, expression_lineages.tsv,
                                     expression_pool.tsv, lineages.tsv, patients.tsv, pool_clinical.tsv,
                                     ppi_edges.tsv, slides/<slide>.tiff, truth.json, cohort.json
                                     (:mod:`gbhet_lib.data.cohort`: the contract every later chapter reads)
    data/gdc/                        (full) the resolved GDC queries: manifests, file and case tables, records
    metrics/01_data.json, figures/01_*.png

The cohort is built once per settings and reused; ``full`` and ``stemri`` stop at acquisition (no cohort).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ..rundir import RunDir
from .acquisition import Acquisition, acquire, build_cohort
from .cohort import Cohort
from .synthetic import CohortSpec, SlideGeometry

CHAPTER = "01_data"


def acquire_data(run: RunDir, config: Any, gdc_projects: list[str], stemri_download: list[str],
                 stemri_gbdata: str | Path | None, gdc_api: str, zenodo_api: str) -> Acquisition:
    """Obtain and verify what the profile needs (:func:`gbhet_lib.data.acquisition.acquire`) into ``data/``."""
    return acquire(config.profile, run.data, config.data_mirror, config.cache_dir, gdc_projects, stemri_download,
                   stemri_gbdata, gdc_api, zenodo_api)


def acquisition_view(acquisition: Acquisition) -> pd.DataFrame | None:
    """The acquisition table's columns worth showing (None when nothing was obtained: the demo)."""
    table = acquisition.table
    if table.empty:
        return None
    wanted = ["size_mb", "sha256_ok", "source", "licence", "status"]
    return table[[c for c in wanted if c in table.columns] or list(table.columns)]


def make_cohort(run: RunDir, config: Any, spec: CohortSpec, geometry: SlideGeometry, n_paired: int, n_jobs: int,
                reference_expression: str = "verhaak840") -> Cohort | None:
    """Build (or reuse) the profile's cohort in ``data/cohort`` (None for ``full`` and ``stemri``)."""
    return build_cohort(config.profile, run.cohort, config.seed, spec, n_paired, geometry, config.data_mirror,
                        config.cache_dir, n_jobs, reference_expression=reference_expression)


def cohort_counts(cohort: Cohort | None) -> dict[str, int]:
    """Patients, lineages, pool samples and genes of the cohort ({} without one)."""
    if cohort is None:
        return {}
    return {"patients": len(cohort.patients), "lineages": len(cohort.lineages),
            "pool_samples": cohort.expression_pool.shape[1], "genes": len(cohort.genes)}


def describe_cohort(cohort: Cohort | None, profile: str) -> str:
    """One line on the cohort built (or why there is none)."""
    if cohort is None:
        return (f"The {profile} profile stops at acquisition in this version: "
                "its real slides enter the cohort with the WSI chapter.")
    return f"{cohort.kind} cohort, {cohort.expression_unit}: {cohort_counts(cohort)}"


def cohort_table(cohort: Cohort) -> pd.DataFrame:
    """One row per lineage with its patient's clinical data (file columns and the patient's subtype left out)."""
    shown = cohort.lineages.drop(columns=["slide_file", "rna_sample_id"])
    clinical = cohort.patients.drop(columns=["subtype"], errors="ignore")
    return shown.join(clinical, on="patient_id")


def library_size_metrics(cohort: Cohort) -> dict[str, float]:
    """For raw counts: the ratio of the largest to the smallest library size of the pool ({} otherwise)."""
    from .summary import library_sizes

    if cohort.expression_unit != "raw_counts":
        return {}
    pool = library_sizes(cohort.expression_pool)
    return {"library_size_ratio_max_min": float(pool.max() / pool.min())}


def program_activity(cohort: Cohort) -> tuple[pd.DataFrame, pd.Series]:
    """Program activity of every lineage, and the rows' groups (the reference cohort's ``group``, else patient)."""
    grouping = cohort.lineages.get("group", cohort.lineages["patient_id"])
    return cohort.truth.activity.loc[cohort.lineages.index], grouping


def module_coexpression_table(cohort: Cohort) -> tuple[pd.DataFrame, dict[str, float]]:
    """Mean correlation of the genes of each pair of modules over the pool (log-CPM for counts), and the mean
    within and across modules."""
    from .summary import log_cpm, module_coexpression, within_and_across

    expression = cohort.expression_pool
    if cohort.expression_unit == "raw_counts":
        expression = log_cpm(expression)
    gene_ids = expression.index.str.split(".").str[0]  # demo count rows are versioned
    expression = expression.set_axis(cohort.genes.loc[gene_ids, "symbol"])
    coexpression = module_coexpression(expression, cohort.truth.modules)
    within, across = within_and_across(coexpression)
    return coexpression, {"module_coexpression_within_mean": within, "module_coexpression_across_mean": across}


def ppi_inputs(cohort: Cohort | None, config: Any) -> tuple[pd.DataFrame | None, pd.DataFrame | None,
                                                             dict[str, int]]:
    """What the PPI figure draws: the graph's edges, its community summary (demo: the planted communities;
    None otherwise), and metrics. Demo: the cohort's planted graph; reference: the whole of STRING v12 (the
    cohort keeps only the edges among its genes, counted in the metrics); other profiles: (None, None, {})."""
    from .summary import community_summary

    if config.profile == "demo":
        communities = community_summary(cohort.ppi_edges, pd.Series(cohort.truth.ppi_communities))
        return cohort.ppi_edges, communities, {}
    if config.profile == "reference":
        from .fetch import fetch
        from .readers import read_string_rda

        edges = read_string_rda(fetch("string_v12_ppi_rda", config.data_mirror, config.cache_dir))
        return edges, None, {"string_edges_within_cohort_genes": len(cohort.ppi_edges)}
    return None, None, {}


def survival_inputs(cohort: Cohort) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float] | None, str | None]:
    """What chapter 1's OS comparisons take (:func:`gbhet_lib.interpret.survival.cohort_survival_comparisons`):
    the clinical rows of the patients and the pool, their program activities, the demo's planted log-hazards
    (None for real survival) and the grouping column (``subtype`` when known)."""
    clinical, activity = cohort.clinical_and_activity()
    return (clinical, activity, cohort.truth.survival.get("os"),
            "subtype" if "subtype" in clinical else None)


def subtypes(cohort: Cohort | None) -> pd.Series | None:
    """The subtype of every patient and pool sample (reference cohort), or None when there is none."""
    if cohort is None:
        return None
    clinical = cohort.clinical_and_activity()[0]
    return clinical["subtype"] if "subtype" in clinical else None


def gdc_survival_groups(acquisition: Acquisition) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(OS days, OS event, project) of every case the GDC returned (``full`` profile)."""
    survival = acquisition.overview.survival
    return survival["os_days"], survival["os_event"], survival["project_id"]
