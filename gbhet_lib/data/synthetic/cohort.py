"""Build the demo cohort: patients → lineages → one RNA profile and two or more slides each, plus an RNA-only pool.

``make_demo_cohort(out_dir, spec, seed)`` writes the cohort contract of :mod:`gbhet_lib.data.cohort`
(``kind`` synthetic, ``expression_unit`` raw_counts). Specific to the demo cohort: count rows are
versioned gene ids (``ENSG9….N``, as in GDC STAR files), ``genes.tsv`` carries ``gene_version``, the
clinical tables carry PFS and the binary VASARI-style ``trait_*`` columns computed from each subject's MRI, ``truth.json`` holds everything that was
planted, and ``cohort.json`` records the spec, the seed and the generator version.

Every random step draws from its own child of ``numpy.random.SeedSequence(seed)``, so a given seed gives
identical tables and identical slide pixels, whatever the number of worker processes.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..cohort import COMPLETE_MARKER, SLIDES, read_cohort_metadata, write_cohort
from .clinical import AGE_LOG_HAZARD_PER_YEAR, OS_LOG_HAZARD, PFS_LOG_HAZARD, draw_demographics, draw_survival
from .expression import draw_counts, draw_size_factors, patient_and_batch_offsets
from .genes import DEMO_MODULE_SIZE, DEMO_N_DRIVERS, DEMO_N_GENES, make_gene_universe
from .imaging import imaging_traits_truth, render_cohort_imaging
from .mri import MriEffects, MriGeometry
from .ppi import make_ppi_edges
from .programs import PROGRAMS, VISIBLE_PROGRAMS, draw_cohort_activities, draw_pool_activities
from .slides import ProgramEffects, SlideGeometry, render_lineage_slides

#: bump when the same spec and seed would give other output. 5: an MRI per patient and pool sample (traits computed
#: from it), a diagnostic slide for ``n_diagnostic`` pool samples
GENERATOR_VERSION = "5"


@dataclass(frozen=True)
class CohortSpec:
    """Sizes of the synthetic cohort (defaults: the demo study; a few seconds per slide on one core).

    Attributes:
        n_patients: patients in the multimodal cohort.
        min_lineages, max_lineages: lineages per patient (uniform between the two).
        slides_per_lineage: sections per lineage, each rendered and stained on its own.
        n_pool: samples in the RNA-only pre-training pool.
        n_genes: genes in total; ``module_size`` of them per program, ``n_drivers`` of those are drivers.
        lineage_sd: sd of a lineage's program activities around its patient's (intra-tumour heterogeneity).
        patient_gene_sd: sd of the per-patient, per-gene log-expression shift shared by a patient's lineages.
        batch_gene_sd: sd of the per-gene log shift between the lineage cohort and the pool.
        slide: slide geometry (level-0 size, µm/px, pyramid).
        effects: how strongly each visible program shows in the pixels (:class:`ProgramEffects`).
        n_diagnostic: pool samples (the first ones; at most the pool) that also get one diagnostic slide, as TCGA's
            patients have;
            with their RNA and MRI they are the radiogenomic cohort of chapter 7. 120 makes Holm–Šidák over the
            demo's 2,500 genes pass at |r| ≥ 0.38 (first step); the 8 multimodal patients alone would need 0.98.
        mri: the MRI grid (:class:`~gbhet_lib.data.synthetic.mri.MriGeometry`); every patient and pool sample
            gets one MRI.
        mri_effects: how strongly each MRI-visible program shows in the volumes
            (:class:`~gbhet_lib.data.synthetic.mri.MriEffects`).
    """

    n_patients: int = 8
    min_lineages: int = 2
    max_lineages: int = 3
    slides_per_lineage: int = 2
    n_pool: int = 300
    n_genes: int = DEMO_N_GENES
    module_size: int = DEMO_MODULE_SIZE
    n_drivers: int = DEMO_N_DRIVERS
    lineage_sd: float = 0.7
    patient_gene_sd: float = 0.25
    batch_gene_sd: float = 0.2
    slide: SlideGeometry = SlideGeometry()
    effects: ProgramEffects = ProgramEffects()
    n_diagnostic: int = 120
    mri: MriGeometry = MriGeometry()
    mri_effects: MriEffects = MriEffects()

    def __post_init__(self) -> None:
        problems = []
        if self.n_patients < 1:
            problems.append(f"n_patients={self.n_patients} must be >= 1")
        if not 1 <= self.min_lineages <= self.max_lineages <= 9:
            problems.append(f"lineages per patient {self.min_lineages}..{self.max_lineages} must satisfy "
                            "1 <= min_lineages <= max_lineages <= 9")
        if self.slides_per_lineage < 1:
            problems.append(f"slides_per_lineage={self.slides_per_lineage} must be >= 1")
        if self.n_pool < 0:
            problems.append(f"n_pool={self.n_pool} must be >= 0")
        if self.n_diagnostic < 0:
            problems.append(f"n_diagnostic={self.n_diagnostic} must be >= 0")
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
        mri = values.pop("mri", {})
        mri = MriGeometry(**{**mri, **({"shape": tuple(mri["shape"])} if "shape" in mri else {})})
        return cls(slide=slide, effects=ProgramEffects(**values.pop("effects", {})), mri=mri,
                   mri_effects=MriEffects(**values.pop("mri_effects", {})), **values)


def cohort_is_complete(out_dir: str | Path, spec: CohortSpec, seed: int) -> bool:
    """True when ``out_dir`` holds a finished cohort made with this ``spec`` and ``seed``."""
    made = read_cohort_metadata(out_dir)
    return (made is not None and made.get("kind") == "synthetic" and made.get("seed") == seed
            and made.get("generator_version") == GENERATOR_VERSION and CohortSpec.from_dict(made["spec"]) == spec)


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
    (out / SLIDES).mkdir(parents=True, exist_ok=True)
    marker = out / COMPLETE_MARKER
    if marker.exists():  # a different or forced cohort: never leave the old marker on new files
        marker.unlink()
    streams = dict(zip(
        ["genes", "activity", "pool_activity", "size_factors", "offsets", "counts", "ppi", "clinical", "slides",
         "mri", "diagnostic"],
        np.random.SeedSequence(seed).spawn(11)))  # children are keyed by position: adding streams changes no other
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

    lineages = lineages.assign(rna_sample_id=lineages.index)
    visible = lineage_activity[list(VISIBLE_PROGRAMS)]
    slides, slide_stats = render_lineage_slides(out / SLIDES, visible, spec.slides_per_lineage, spec.slide,
                                                streams["slides"], n_jobs, progress,
                                                description="gbhet synthetic slide", effects=spec.effects)
    imaging = render_cohort_imaging(out, patient_activity, pool_activity, min(spec.n_diagnostic, spec.n_pool), spec.slide,
                                    spec.effects, spec.mri, spec.mri_effects, streams["mri"], streams["diagnostic"],
                                    n_jobs, progress, description="gbhet synthetic diagnostic slide")
    patients = patients.join(imaging.traits)
    pool_clinical = pool_clinical.join(imaging.traits)
    activity = pd.concat([lineage_activity, pool_activity])
    truth = {
        "programs": [{"name": p.name, "visible": p.visible, "mri_visible": p.mri_visible,
                      "description": p.description} for p in PROGRAMS],
        "modules": genes.module_symbols(),
        "drivers": genes.drivers,
        "loadings": genes.module_loadings(),
        "activity": {s: {p: round(float(v), 6) for p, v in row.items()} for s, row in activity.iterrows()},
        "size_factors": {s: round(float(v), 6) for s, v in size_factors.items()},
        "slide_lineage": {Path(f).name: lid for f, lid in zip(slides["slide_file"], slides["lineage_id"])},
        "lineage_patient": lineages["patient_id"].to_dict(),
        "survival": {"os": OS_LOG_HAZARD, "pfs": PFS_LOG_HAZARD, "age_per_year": AGE_LOG_HAZARD_PER_YEAR},
        "imaging_traits": imaging_traits_truth(),
        "mri_stats": imaging.planted,
        "diagnostic_slide_stats": imaging.slide_stats,
        "ppi_communities": communities.to_dict(),
        "slide_stats": slide_stats,
    }
    return write_cohort(
        out, genes=genes.annotation, expression_lineages=counts_lineages, expression_pool=counts_pool,
        lineages=lineages, slides=slides, patients=patients, pool_clinical=pool_clinical, ppi_edges=edges, truth=truth,
        mri=imaging.mri, diagnostic_slides=imaging.diagnostic_slides, metadata={"kind": "synthetic", "expression_unit": "raw_counts", "seed": seed,
                  "generator_version": GENERATOR_VERSION, "spec": spec.to_dict()})


def _clinical_table(rng: np.random.Generator, activity: pd.DataFrame) -> pd.DataFrame:
    demographics = draw_demographics(rng, activity.index)
    return pd.concat([demographics, draw_survival(rng, activity, demographics["age_years"])], axis=1)
