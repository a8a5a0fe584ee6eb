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

import numpy as np
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
    return {"patients": len(cohort.patients), "lineages": len(cohort.lineages), "slides": len(cohort.slides),
            "pool_samples": cohort.expression_pool.shape[1], "genes": len(cohort.genes),
            "mri_subjects": len(cohort.mri), "diagnostic_slides": len(cohort.diagnostic_slides)}


def describe_cohort(cohort: Cohort | None, profile: str) -> str:
    """One line on the cohort built (or why there is none)."""
    if cohort is None:
        return (f"The {profile} profile stops at acquisition in this version: "
                "its real slides enter the cohort with the WSI chapter.")
    return f"{cohort.kind} cohort, {cohort.expression_unit}: {cohort_counts(cohort)}"


def cohort_table(cohort: Cohort) -> pd.DataFrame:
    """One row per lineage with its number of slides and its patient's clinical data (file columns and the patient's
    subtype left out)."""
    shown = cohort.lineages.drop(columns=["rna_sample_id"]).assign(
        slides=cohort.slides["lineage_id"].value_counts().reindex(cohort.lineages.index).fillna(0).astype(int))
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


# ------------------------------------------------------------------------------------------------ power and claims
#: slide noise of the power analysis' oracle (activity units): a reader whose slide-level probe R² of a visible
#: program is 1 − 1/(1 + lineage_sd²) ≈ 0.33 at the demo's lineage_sd, below the 0.5 chapter 3 must reach
POWER_IMAGE_NOISE_SD = 1.0
#: the render statistic that shows each visible program in the pixels (truth.json slide_stats)
#: patient-level folds of the power analysis (as chapter 4's first look)
POWER_FOLDS = 4
PROGRAM_PIXEL_STATISTIC = {"hypoxia": "necrosis_fraction_of_tissue", "proliferation": "nuclei_per_mm2_tissue",
                           "angiogenesis": "vessels_per_mm2_tissue"}


def cohort_power(spec: CohortSpec, seed: int, n_patients: tuple[int, ...] = (4, 6, 8, 12, 16),
                 replicates: int = 40, image_noise_sd: float = POWER_IMAGE_NOISE_SD) -> pd.DataFrame:
    """The power analysis behind the demo's size (:mod:`gbhet_lib.evaluate.power`): for every number of patients
    (``n_patients`` and the spec's own), the spec's lineages per patient and 1 or 2 slides per lineage, how often an
    oracle reading the visible programs through slide noise ``image_noise_sd`` retrieves held-out lineages' RNA
    profiles above chance under patient-level 4-fold CV (one row per size; see :func:`power_table`)."""
    from ..evaluate.power import PowerModel, power_table, size_grid

    patients = tuple(sorted(set(n_patients) | ({spec.n_patients} if spec.n_patients >= POWER_FOLDS else set())))
    sizes = size_grid(patients, ((spec.min_lineages, spec.max_lineages),), tuple(sorted({1, 2, spec.slides_per_lineage})))
    model = PowerModel.from_spec(spec, image_noise_sd=image_noise_sd)
    return power_table(sizes, replicates=replicates, seed=seed, n_folds=POWER_FOLDS, model=model)


def demo_size_row(table: pd.DataFrame, spec: CohortSpec) -> pd.Series | None:
    """The power table's row of the spec's own size (None when the size was not analysed: fewer patients than
    folds)."""
    own = table[(table["n_patients"] == spec.n_patients) & (table["slides_per_lineage"] == spec.slides_per_lineage)
                & (table["min_lineages"] == spec.min_lineages) & (table["max_lineages"] == spec.max_lineages)]
    return None if own.empty else own.iloc[0]


def slide_programs(cohort: Cohort) -> pd.DataFrame:
    """One row per slide: its lineage and patient, its lineage's visible program activities and what the renderer
    drew (necrotic fraction of tissue, nuclei and vessels per mm² of tissue)."""
    spec = cohort.metadata.get("spec") or {}
    geometry = spec.get("slide") or cohort.metadata.get("geometry") or {}
    area_mm2 = geometry["width"] * geometry["height"] * (geometry["mpp"] * 1e-3) ** 2
    rows = []
    for slide_id, row in cohort.slides.iterrows():
        stats = cohort.truth.slide_stats[f"{Path(row['slide_file']).name}"]
        tissue_mm2 = stats["tissue_fraction"] * area_mm2
        rows.append({"slide": slide_id, "lineage": row["lineage_id"],
                     "patient": cohort.lineages.loc[row["lineage_id"], "patient_id"],
                     **cohort.truth.activity.loc[row["lineage_id"], cohort.truth.visible_programs].to_dict(),
                     "necrosis_fraction_of_tissue": stats["necrosis_fraction_of_tissue"],
                     "nuclei_per_mm2_tissue": stats["nuclei_per_mm2_tissue"],
                     "vessels_per_mm2_tissue": stats["vessels"] / max(tissue_mm2, 1e-9)})
    return pd.DataFrame(rows).set_index("slide")


def pixel_levels(slides: pd.DataFrame) -> pd.DataFrame:
    """For each visible program's pixel statistic: its Spearman correlation with the program over slides, how its
    variance splits between patients, lineages of a patient and sections of a lineage (nested sums of squares, as
    fractions of the total), and the nested-ANOVA F ratio of lineages within patients over sections within lineages
    (mean squares) with its 5 % critical value (F above it: lineages of a patient differ beyond section noise)."""
    from scipy.stats import f as f_distribution, spearmanr

    n_slides, n_lineages, n_patients = len(slides), slides["lineage"].nunique(), slides["patient"].nunique()
    df_lineages, df_sections = n_lineages - n_patients, n_slides - n_lineages
    rows = {}
    for program, statistic in PROGRAM_PIXEL_STATISTIC.items():
        values = slides[statistic]
        total = ((values - values.mean()) ** 2).sum()
        lineage_mean = values.groupby(slides["lineage"]).transform("mean")
        patient_mean = values.groupby(slides["patient"]).transform("mean")
        ss_lineages = ((lineage_mean - patient_mean) ** 2).sum()
        ss_sections = ((values - lineage_mean) ** 2).sum()
        f_ratio = (ss_lineages / max(df_lineages, 1)) / max(ss_sections / max(df_sections, 1), 1e-12)
        rows[program] = {
            "pixel statistic": statistic, "spearman with program": float(spearmanr(values, slides[program])[0]),
            "between patients": float(((patient_mean - values.mean()) ** 2).sum() / total),
            "between lineages of a patient": float(ss_lineages / total),
            "between sections of a lineage": float(ss_sections / total),
            "F lineages / sections": float(f_ratio),
            "F critical (5 %)": float(f_distribution.ppf(0.95, max(df_lineages, 1), max(df_sections, 1)))}
    return pd.DataFrame(rows).T


def mri_geometry(voxel_mm: float) -> Any:
    """The synthetic MRI grid at ``voxel_mm`` (isotropic) over the default field of view (192 × 224 × 160 mm)."""
    from .synthetic.mri import MriGeometry

    default = MriGeometry()
    if not voxel_mm > 0:
        raise ValueError(f"mri_voxel_mm={voxel_mm} must be > 0 (mm; BraTS: 1, the demo: 4)")
    fov = [n * default.voxel_mm for n in default.shape]
    return MriGeometry(shape=tuple(max(16, round(f / voxel_mm)) for f in fov), voxel_mm=float(voxel_mm))


def mri_examples(cohort: Cohort, n: int = 4) -> list[Any]:
    """The MRI volumes (:class:`~gbhet_lib.mri.volumes.MriVolume`) of the first ``n`` patients that have one."""
    subjects = [s for s in cohort.patients.index.astype(str) if s in cohort.mri.index][:n]
    return [cohort.read_mri(s) for s in subjects]


def mri_feature_programs(cohort: Cohort, partial: bool = False) -> pd.DataFrame:
    """Spearman correlation (rows: the continuous VASARI-style features computed from the volumes; columns: the
    programs) over every subject with an MRI (patients: mean activity of their lineages; pool samples).

    ``partial``: each correlation with a program the MRI does not show is taken after removing, from the ranks of
    both sides, what the MRI-visible programs explain linearly (a partial Spearman): the programs are drawn
    independently, but in a finite sample an invisible program correlates a little with a visible one, and a
    feature would inherit it."""
    from .synthetic.imaging import FEATURE_PROGRAMS

    _, activity = cohort.clinical_and_activity()
    subjects = activity.index.intersection(cohort.mri.index)
    features = cohort.mri.loc[subjects, [f for f in FEATURE_PROGRAMS if f in cohort.mri.columns]]
    ranks = pd.concat([features, activity.loc[subjects]], axis=1).astype(float).rank()
    if partial:
        visible = cohort.truth.mri_visible_programs
        design = np.column_stack([np.ones(len(ranks)), ranks[visible].to_numpy()])
        others = [c for c in ranks.columns if c not in visible]
        fitted = design @ np.linalg.lstsq(design, ranks[others].to_numpy(), rcond=None)[0]
        ranks[others] = ranks[others].to_numpy() - fitted
    return ranks.corr().loc[features.columns, activity.columns]


def trait_prevalence(cohort: Cohort) -> pd.DataFrame:
    """Share of subjects with each binary ``trait_*`` (computed from the MRI), patients and pool apart."""
    traits = [c for c in cohort.pool_clinical.columns if c.startswith("trait_")]
    return pd.DataFrame({"patients": cohort.patients[traits].mean(), "pool": cohort.pool_clinical[traits].mean(),
                         "pool n": cohort.pool_clinical[traits].notna().sum()})


def mri_claims(cohort: Cohort, correlations: pd.DataFrame, partial: pd.DataFrame, at_least: float = 0.5,
               at_most: float = 0.2) -> list[Any]:
    """Each MRI feature follows the program planted to drive it (sign-adjusted Spearman ≥ ``at_least``), and the
    programs the MRI cannot show correlate with no feature beyond ``at_most`` once the visible programs are
    accounted for (``partial``: :func:`mri_feature_programs` with ``partial=True``)."""
    from ..claims import check
    from .synthetic.imaging import FEATURE_PROGRAMS

    n = int(len(cohort.mri))
    claims = []
    for feature, (program, sign) in FEATURE_PROGRAMS.items():
        if feature in correlations.index:
            claims.append(check(f"data.mri_follows.{feature}", f"The MRI's {feature} (computed from the volumes) "
                                f"follows {program}" + (" inversely" if sign < 0 else ""),
                                sign * correlations.loc[feature, program], at_least=at_least, null=0.0,
                                null_name="no association", units=f"{n} subjects"))
    for program in cohort.truth.programs:
        if program not in cohort.truth.mri_visible_programs and program in correlations.columns:
            claims.append(check(f"data.mri_blind_to.{program}", f"No MRI feature follows {program}, which the MRI "
                                "does not show (largest |partial Spearman| over the features, given the visible "
                                "programs)", partial[program].abs().max(), at_most=at_most, null=0.0,
                                null_name="no association", units=f"{n} subjects"))
    return claims


def data_claims(cohort: Cohort, spec: CohortSpec, power: pd.DataFrame, levels: pd.DataFrame) -> list[Any]:
    """Chapter 1's checked statements about the demo cohort (:mod:`gbhet_lib.claims`)."""
    from ..claims import check

    own = demo_size_row(power, spec)
    if own is None:  # too few patients for the folds: the claim cannot hold
        own = pd.Series({"power": float("nan"), "blind_above_chance": float("nan"), "replicates": 0})
    slides_per_lineage = cohort.slides.groupby("lineage_id").size()
    claims = [
        check("data.slides_per_lineage", "Every lineage has at least two slides, so slide, lineage and patient are "
              "three different levels", float(slides_per_lineage.min()), at_least=2, null=1,
              null_name="the earlier demo (one slide per lineage)", units="lineages"),
        check("data.power", f"At the demo's size ({spec.n_patients} patients, {spec.min_lineages}–{spec.max_lineages} "
              f"lineages, {spec.slides_per_lineage} slides each) an oracle reading the visible programs through "
              f"slide noise sd {power.attrs['model']['image_noise_sd']:g} retrieves held-out lineages above chance "
              "under patient-level CV in at least 80 % of simulated cohorts", float(own["power"]), at_least=0.8,
              null=0.025, null_name="nominal false-positive rate", units=f"{int(own['replicates'])} cohorts"),
        check("data.blind_at_chance", "An image-blind predictor stays at chance under the same evaluation",
              float(own["blind_above_chance"]), at_most=0.05, null=0.025, null_name="nominal false-positive rate",
              units="fraction of cohorts with an interval above chance"),
    ]
    for program, row in levels.iterrows():
        claims.append(check(
            f"data.pixels_follow.{program}", f"The slides show {program}: {row['pixel statistic']} follows the "
            "program across slides", row["spearman with program"], at_least=0.6, null=0.0,
            null_name="no association", units=f"{cohort.slides.shape[0]} slides"))
        claims.append(check(
            f"data.heterogeneity.{program}", f"Lineages of one patient differ in the pixels' {program} beyond the "
            "differences between sections of one lineage (nested ANOVA, 5 %)", row["F lineages / sections"],
            at_least=row["F critical (5 %)"], null=1.0, null_name="F with no lineage effect"))
    if not cohort.mri.empty:
        claims.extend(mri_claims(cohort, mri_feature_programs(cohort), mri_feature_programs(cohort, partial=True)))
    return claims
