"""Build the demo cohort: patients → lineages → one slide + one RNA profile each, plus an RNA-only pool.

``make_demo_cohort(out_dir, spec, seed)`` writes (all tables TSV, genes × samples for counts)::

    genes.tsv                 gene annotation: gene_id (unversioned), gene_version, symbol, chromosome, start, end, biotype
    counts_lineages.tsv.gz    raw counts of the lineage cohort, rows = versioned gene ids (ENSG….N, as GDC STAR files)
    counts_pool.tsv.gz        raw counts of the RNA-only pre-training pool (TCGA's role in the paper)
    lineages.tsv              lineage_id, patient_id, slide_file, rna_sample_id
    patients.tsv              patient_id, sex, age_years, os_days, os_event, pfs_days, pfs_event, trait_*
    pool_clinical.tsv         the same clinical columns for the pool samples
    ppi_edges.tsv             symbol_a, symbol_b, combined_score (STRING-like)
    slides/<lineage_id>.tiff  pyramidal JPEG-tiled TIFF, µm/px in the resolution tags
    truth.json                everything that was planted (see :class:`CohortTruth`)
    cohort.json               spec, seed, generator version, file sizes: written last, marks the cohort complete

Every random step draws from its own child of ``numpy.random.SeedSequence(seed)``, so a given seed gives
identical tables and identical slide pixels, whatever the number of worker processes.
"""
from __future__ import annotations

import concurrent.futures as futures
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from ...io import atomic_path, read_json, write_json_atomic, write_table_atomic
from .clinical import (AGE_LOG_HAZARD_PER_YEAR, IMAGING_TRAITS, OS_LOG_HAZARD, PFS_LOG_HAZARD, draw_demographics,
                       draw_imaging_traits, draw_survival)
from .expression import draw_counts, draw_size_factors, patient_and_batch_offsets
from .genes import make_gene_universe
from .ppi import make_ppi_edges
from .programs import PROGRAMS, VISIBLE_PROGRAMS, draw_cohort_activities, draw_pool_activities
from .slides import SlideGeometry, render_slide, write_pyramidal_tiff

GENERATOR_VERSION = "1"  # bump when the same spec and seed would give other output
COMPLETE_MARKER = "cohort.json"


@dataclass(frozen=True)
class CohortSpec:
    """Sizes of the synthetic cohort (defaults: the demo study; a few seconds per slide on one core).

    Attributes:
        n_patients: patients in the multimodal cohort.
        min_lineages, max_lineages: lineages per patient (uniform between the two).
        n_pool: samples in the RNA-only pre-training pool.
        n_genes: genes in total; ``module_size`` of them per program, ``n_drivers`` of those are drivers.
        lineage_sd: sd of a lineage's program activities around its patient's (intra-tumour heterogeneity).
        patient_gene_sd: sd of the per-patient, per-gene log-expression shift shared by a patient's lineages.
        batch_gene_sd: sd of the per-gene log shift between the lineage cohort and the pool.
        slide: slide geometry (level-0 size, µm/px, pyramid).
    """

    n_patients: int = 8
    min_lineages: int = 2
    max_lineages: int = 3
    n_pool: int = 300
    n_genes: int = 2000
    module_size: int = 40
    n_drivers: int = 8
    lineage_sd: float = 0.7
    patient_gene_sd: float = 0.25
    batch_gene_sd: float = 0.2
    slide: SlideGeometry = SlideGeometry()

    def __post_init__(self) -> None:
        problems = []
        if self.n_patients < 1:
            problems.append(f"n_patients={self.n_patients} must be >= 1")
        if not 1 <= self.min_lineages <= self.max_lineages <= 9:
            problems.append(f"lineages per patient {self.min_lineages}..{self.max_lineages} must satisfy "
                            "1 <= min_lineages <= max_lineages <= 9")
        if self.n_pool < 0:
            problems.append(f"n_pool={self.n_pool} must be >= 0")
        if not 0 < self.n_drivers <= self.module_size or self.module_size * len(PROGRAMS) >= self.n_genes:
            problems.append(f"need 0 < n_drivers ({self.n_drivers}) <= module_size ({self.module_size}) and "
                            f"{len(PROGRAMS)} x module_size < n_genes ({self.n_genes})")
        if problems:
            raise ValueError("invalid synthetic cohort spec: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CohortSpec:
        values = dict(values)
        slide = values.pop("slide", {})
        slide = SlideGeometry(**{**slide, "level_downsamples": tuple(slide.get("level_downsamples", (1, 4, 16)))})
        return cls(slide=slide, **values)


@dataclass(frozen=True)
class CohortTruth:
    """What was planted, read back from ``truth.json``.

    Attributes:
        programs: program → {"visible": bool, "description": str}, in the generator's program order.
        modules: program → module gene symbols.
        drivers: program → driver gene symbols (the strongest loadings).
        loadings: program → {module gene symbol: log-fold change per unit of activity}.
        activity: lineages and pool samples × programs (standard-normal scale).
        size_factors: per RNA sample (lineages and pool), the library size factor.
        slide_lineage: slide file name → lineage id; lineage_patient: lineage id → patient id.
        survival: {"os": {program: log-hazard}, "pfs": {...}, "age_per_year": float}.
        imaging_traits: trait → {"intercept": float, "coefficients": {program: coef}}.
        ppi_communities: symbol → planted PPI community (program name or ``bg<k>``).
        slide_stats: slide file → statistics of what the renderer drew.
    """

    programs: dict[str, dict[str, Any]]
    modules: dict[str, list[str]]
    drivers: dict[str, list[str]]
    loadings: dict[str, dict[str, float]]
    activity: pd.DataFrame
    size_factors: pd.Series
    slide_lineage: dict[str, str]
    lineage_patient: dict[str, str]
    survival: dict[str, Any]
    imaging_traits: dict[str, Any]
    ppi_communities: dict[str, str]
    slide_stats: dict[str, dict[str, float]]

    @property
    def visible_programs(self) -> list[str]:
        return [p for p, info in self.programs.items() if info["visible"]]

    @property
    def invisible_programs(self) -> list[str]:
        return [p for p, info in self.programs.items() if not info["visible"]]

    @classmethod
    def load(cls, path: str | Path) -> CohortTruth:
        raw = read_json(path)
        programs = {p["name"]: {"visible": p["visible"], "description": p["description"]} for p in raw["programs"]}
        return cls(
            programs=programs, modules=raw["modules"], drivers=raw["drivers"], loadings=raw["loadings"],
            activity=pd.DataFrame(raw["activity"]).T.rename_axis("sample_id")[list(programs)],
            size_factors=pd.Series(raw["size_factors"], name="size_factor").rename_axis("sample_id"),
            slide_lineage=raw["slide_lineage"], lineage_patient=raw["lineage_patient"],
            survival=raw["survival"], imaging_traits=raw["imaging_traits"],
            ppi_communities=raw["ppi_communities"], slide_stats=raw["slide_stats"],
        )


def cohort_is_complete(out_dir: str | Path, spec: CohortSpec, seed: int) -> bool:
    """True when ``out_dir`` holds a finished cohort made with this ``spec`` and ``seed``."""
    marker = Path(out_dir) / COMPLETE_MARKER
    if not marker.exists():
        return False
    made = read_json(marker)
    return (made.get("seed") == seed and made.get("generator_version") == GENERATOR_VERSION
            and CohortSpec.from_dict(made["spec"]) == spec)


def make_demo_cohort(
    out_dir: str | Path, spec: CohortSpec = CohortSpec(), seed: int = 0, n_jobs: int | None = None,
    progress: bool = True, force: bool = False,
) -> Path:
    """Generate the synthetic cohort into ``out_dir`` (see the module docstring) and return ``out_dir``.

    A complete cohort with the same spec and seed is left as it is unless ``force`` (the demo cohort takes
    seconds, so an interrupted one is simply made again). Every file is written atomically and
    ``cohort.json`` last, so an interrupted run never looks complete. ``n_jobs`` worker processes render slides (default: up to 2 or the CPU count).
    """
    out = Path(out_dir)
    if not force and cohort_is_complete(out, spec, seed):
        return out
    (out / "slides").mkdir(parents=True, exist_ok=True)
    marker = out / COMPLETE_MARKER
    if marker.exists():  # a different or forced cohort: never leave the old marker on new files
        marker.unlink()
    streams = dict(zip(
        ["genes", "activity", "pool_activity", "size_factors", "offsets", "counts", "ppi", "clinical", "slides"],
        np.random.SeedSequence(seed).spawn(9)))
    rng = {name: np.random.default_rng(s) for name, s in streams.items()}

    genes = make_gene_universe(rng["genes"], spec.n_genes, spec.module_size, spec.n_drivers)
    lineages, lineage_activity = draw_cohort_activities(
        rng["activity"], spec.n_patients, spec.min_lineages, spec.max_lineages, spec.lineage_sd)
    pool_activity = draw_pool_activities(rng["pool_activity"], spec.n_pool)
    size_factors = pd.concat([draw_size_factors(rng["size_factors"], lineage_activity.index),
                              draw_size_factors(rng["size_factors"], pool_activity.index)])
    offsets = patient_and_batch_offsets(rng["offsets"], genes, lineages, spec.patient_gene_sd, spec.batch_gene_sd)
    counts_lineages = draw_counts(rng["counts"], genes, lineage_activity, size_factors, offsets)
    counts_pool = draw_counts(rng["counts"], genes, pool_activity, size_factors)
    versioned = genes.annotation.index + "." + genes.annotation["gene_version"].astype(str)
    for counts in (counts_lineages, counts_pool):
        counts.index = pd.Index(versioned, name="gene_id")
    edges, communities = make_ppi_edges(rng["ppi"], genes)

    patient_activity = lineage_activity.groupby(lineages["patient_id"]).mean().rename_axis("patient_id")
    patients = _clinical_table(rng["clinical"], patient_activity)
    pool_clinical = _clinical_table(rng["clinical"], pool_activity)

    lineages = lineages.assign(slide_file=[f"slides/{lid}.tiff" for lid in lineages.index],
                               rna_sample_id=lineages.index)
    slide_stats = _render_slides(out, lineage_activity, spec.slide, streams["slides"], n_jobs, progress)

    write_table_atomic(out / "genes.tsv", genes.annotation)
    write_table_atomic(out / "counts_lineages.tsv.gz", counts_lineages)
    write_table_atomic(out / "counts_pool.tsv.gz", counts_pool)
    write_table_atomic(out / "lineages.tsv", lineages)
    write_table_atomic(out / "patients.tsv", patients)
    write_table_atomic(out / "pool_clinical.tsv", pool_clinical)
    write_table_atomic(out / "ppi_edges.tsv", edges, index=False)
    activity = pd.concat([lineage_activity, pool_activity])
    truth = {
        "programs": [{"name": p.name, "visible": p.visible, "description": p.description} for p in PROGRAMS],
        "modules": genes.module_symbols(),
        "drivers": genes.drivers,
        "loadings": genes.module_loadings(),
        "activity": {s: {p: round(float(v), 6) for p, v in row.items()} for s, row in activity.iterrows()},
        "size_factors": {s: round(float(v), 6) for s, v in size_factors.items()},
        "slide_lineage": {Path(f).name: lid for lid, f in lineages["slide_file"].items()},
        "lineage_patient": lineages["patient_id"].to_dict(),
        "survival": {"os": OS_LOG_HAZARD, "pfs": PFS_LOG_HAZARD, "age_per_year": AGE_LOG_HAZARD_PER_YEAR},
        "imaging_traits": {t.name: {"description": t.description, "intercept": t.intercept,
                                    "coefficients": t.coefficients} for t in IMAGING_TRAITS},
        "ppi_communities": communities.to_dict(),
        "slide_stats": slide_stats,
    }
    write_json_atomic(out / "truth.json", truth)
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != COMPLETE_MARKER)
    write_json_atomic(marker, {
        "seed": seed, "generator_version": GENERATOR_VERSION, "spec": spec.to_dict(),
        "files": {str(p.relative_to(out)): p.stat().st_size for p in files},
    })
    return out


def _clinical_table(rng: np.random.Generator, activity: pd.DataFrame) -> pd.DataFrame:
    demographics = draw_demographics(rng, activity.index)
    survival = draw_survival(rng, activity, demographics["age_years"])
    return pd.concat([demographics, survival, draw_imaging_traits(rng, activity)], axis=1)


def _render_one(out: Path, lineage_id: str, activity: dict[str, float], geometry: SlideGeometry,
                seed_seq: np.random.SeedSequence) -> tuple[str, dict[str, float]]:
    visible = {p: activity[p] for p in VISIBLE_PROGRAMS}
    slide = render_slide(visible, np.random.default_rng(seed_seq), geometry)
    target = out / "slides" / f"{lineage_id}.tiff"
    with atomic_path(target) as tmp:
        write_pyramidal_tiff(tmp, slide.rgb, geometry, description=f"gbhet synthetic slide {lineage_id}")
    return target.name, slide.stats


def _render_slides(out: Path, activity: pd.DataFrame, geometry: SlideGeometry, seed: np.random.SeedSequence,
                   n_jobs: int | None, progress: bool) -> dict[str, dict[str, float]]:
    """Render every lineage's slide (in worker processes); returns per-slide render statistics."""
    jobs = list(zip(activity.index, seed.spawn(len(activity))))
    n_jobs = n_jobs or min(2, os.cpu_count() or 1)
    stats: dict[str, dict[str, float]] = {}
    bar = tqdm(total=len(jobs), desc="rendering slides", unit="slide", disable=not progress)
    args = [(out, lid, activity.loc[lid].to_dict(), geometry, s) for lid, s in jobs]
    if n_jobs == 1:
        results = (_render_one(*a) for a in args)
        for name, st in results:
            stats[name] = st
            bar.update()
    else:
        with futures.ProcessPoolExecutor(max_workers=n_jobs) as pool:
            for name, st in pool.map(_render_one, *zip(*args)):
                stats[name] = st
                bar.update()
    bar.close()
    return dict(sorted(stats.items()))


@dataclass(frozen=True)
class DemoCohort:
    """The tables of a generated cohort, read back (counts are genes × samples, raw integers)."""

    root: Path
    genes: pd.DataFrame
    counts_lineages: pd.DataFrame
    counts_pool: pd.DataFrame
    lineages: pd.DataFrame
    patients: pd.DataFrame
    pool_clinical: pd.DataFrame
    ppi_edges: pd.DataFrame
    truth: CohortTruth

    def slide_path(self, lineage_id: str) -> Path:
        return self.root / self.lineages.loc[lineage_id, "slide_file"]


def load_demo_cohort(data_dir: str | Path) -> DemoCohort:
    """Read a cohort written by :func:`make_demo_cohort`; an unfinished one is an error that says so."""
    root = Path(data_dir)
    if not (root / COMPLETE_MARKER).exists():
        raise FileNotFoundError(f"{root} holds no complete synthetic cohort ({COMPLETE_MARKER} missing). "
                                "Run `gbhet synth --out DIR` or the 01_data chapter first.")

    def table(name: str) -> pd.DataFrame:
        return pd.read_csv(root / name, sep="\t", index_col=0)

    return DemoCohort(
        root=root, genes=table("genes.tsv"), counts_lineages=table("counts_lineages.tsv.gz"),
        counts_pool=table("counts_pool.tsv.gz"), lineages=table("lineages.tsv"), patients=table("patients.tsv"),
        pool_clinical=table("pool_clinical.tsv"), ppi_edges=pd.read_csv(root / "ppi_edges.tsv", sep="\t"),
        truth=CohortTruth.load(root / "truth.json"),
    )
