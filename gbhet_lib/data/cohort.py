"""The cohort contract: what chapter 1 writes to ``<run_dir>/data/cohort`` for every profile, and how to read it.

Files (tables are TSV; expression is genes × samples)::

    genes.tsv                  index gene_id (unversioned Ensembl); symbol, chromosome, start, end, biotype
    expression_lineages.tsv.gz expression of the lineage cohort (the samples that have a slide)
    expression_pool.tsv.gz     expression of the RNA-only pre-training pool
    lineages.tsv               lineage_id, patient_id, rna_sample_id (+ cohort-specific columns)
    slides.tsv                 slide_id, lineage_id, section (1, 2, ...), slide_file: one row per slide
    patients.tsv               one row per patient: clinical columns (os_days, os_event, ...)
    pool_clinical.tsv          the same for the pool samples
    ppi_edges.tsv              symbol_a, symbol_b, combined_score
    slides/<slide_id>.tiff     pyramidal slides: one or more sections per lineage, each stained on its own
    slides/<slide_id>.structures.npz  synthetic only: maps of the planted structures (Cohort.planted_structures)
    truth.json                 what is known by construction (see :class:`CohortTruth`)
    cohort.json                kind, expression unit, generator settings, file sizes: written last, marks completion

``cohort.json["expression_unit"]`` says what the expression tables hold: ``raw_counts`` (demo: integers,
to be normalised) or ``log_expression`` (semi-synthetic: real, already normalised log-scale values).

Slide, lineage and patient are three levels: a lineage (one RNA profile) has one or more slides (sections, or
xenograft mice, each with its own staining), a patient one or more lineages. A cohort written before
``slides.tsv`` existed (one ``slide_file`` column in ``lineages.tsv``) is read as one slide per lineage.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..io import read_json, write_json_atomic, write_table_atomic

GENES = "genes.tsv"
EXPRESSION_LINEAGES = "expression_lineages.tsv.gz"
EXPRESSION_POOL = "expression_pool.tsv.gz"
LINEAGES = "lineages.tsv"
PATIENTS = "patients.tsv"
POOL_CLINICAL = "pool_clinical.tsv"
PPI_EDGES = "ppi_edges.tsv"
SLIDE_TABLE = "slides.tsv"
SLIDES = "slides"
TRUTH = "truth.json"
COMPLETE_MARKER = "cohort.json"
EXPRESSION_UNITS = ("raw_counts", "log_expression")


@dataclass(frozen=True)
class CohortTruth:
    """What was planted (demo) or is known by construction (semi-synthetic), read back from ``truth.json``.

    Fields a cohort kind does not plant are empty (e.g. the semi-synthetic cohort has real survival, so
    ``survival`` is empty, and no size factors). Attributes:
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
            size_factors=pd.Series(raw["size_factors"], name="size_factor", dtype=float).rename_axis("sample_id"),
            slide_lineage=raw["slide_lineage"], lineage_patient=raw["lineage_patient"],
            survival=raw["survival"], imaging_traits=raw["imaging_traits"],
            ppi_communities=raw["ppi_communities"], slide_stats=raw["slide_stats"],
        )


@dataclass(frozen=True)
class Cohort:
    """A cohort read back from its folder (expression tables are genes × samples)."""

    root: Path
    metadata: dict[str, Any]
    genes: pd.DataFrame
    expression_lineages: pd.DataFrame
    expression_pool: pd.DataFrame
    lineages: pd.DataFrame
    patients: pd.DataFrame
    pool_clinical: pd.DataFrame
    ppi_edges: pd.DataFrame
    truth: CohortTruth
    slides: pd.DataFrame

    @property
    def kind(self) -> str:
        """``synthetic`` (demo) or ``semisynthetic`` (reference)."""
        return str(self.metadata["kind"])

    @property
    def expression_unit(self) -> str:
        """``raw_counts`` or ``log_expression`` (see the module docstring)."""
        return str(self.metadata["expression_unit"])

    def slide_path(self, slide_id: str) -> Path:
        """The file of one slide (an index value of :attr:`slides`)."""
        if slide_id not in self.slides.index:
            raise KeyError(f"slide {slide_id!r} is not in {self.root / SLIDE_TABLE}; slides are named like "
                           f"{list(self.slides.index[:2])}")
        return self.root / self.slides.loc[slide_id, "slide_file"]

    def planted_structures(self, slide_id: str) -> dict[str, np.ndarray] | None:
        """What the synthetic renderer planted in one slide, read from ``slides/<slide_id>.structures.npz``: float32
        maps on the coarse grid (``necrosis``, ``vessels``: share of each cell, 0–1; ``cellularity``: intact nuclei
        per cell; ``tissue``: 0/1), ``coarse_step`` (int, level-0 pixels per map cell) and ``mpp`` (level-0 µm/px).
        None when the file is absent (a real slide, or a cohort made before the maps were written)."""
        from .synthetic.slides import read_structures, structures_path  # lazy: synthetic imports this module

        return read_structures(structures_path(self.slide_path(slide_id)))

    def lineage_slides(self, lineage_id: str) -> list[str]:
        """The slide ids of one lineage, in section order."""
        return self.slides.index[self.slides["lineage_id"] == lineage_id].tolist()

    def clinical_and_activity(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Clinical rows of the patients and the pool samples, and their program activities in the same
        order (a patient's activity is the mean over its lineages)."""
        clinical = pd.concat([self.patients, self.pool_clinical])
        lineage_activity = self.truth.activity.loc[self.lineages.index]
        patient_activity = lineage_activity.groupby(self.lineages["patient_id"]).mean()
        activity = pd.concat([patient_activity, self.truth.activity.loc[self.pool_clinical.index]])
        return clinical, activity.loc[clinical.index]


def write_cohort(out_dir: str | Path, *, genes: pd.DataFrame, expression_lineages: pd.DataFrame,
                 expression_pool: pd.DataFrame, lineages: pd.DataFrame, slides: pd.DataFrame, patients: pd.DataFrame,
                 pool_clinical: pd.DataFrame, ppi_edges: pd.DataFrame, truth: dict[str, Any],
                 metadata: dict[str, Any]) -> Path:
    """Write the cohort tables and truth (slides must already be in ``slides/``), then ``cohort.json``.

    ``slides``: index ``slide_id``, columns ``lineage_id``, ``section``, ``slide_file`` (see :func:`slide_table`).

    ``metadata`` must name the ``kind`` and ``expression_unit``; the file sizes are added to it. Every
    write is atomic and the marker is written last, so an interrupted cohort never looks complete.
    """
    out = Path(out_dir)
    if metadata.get("expression_unit") not in EXPRESSION_UNITS or "kind" not in metadata:
        raise ValueError(f"cohort metadata needs 'kind' and an expression_unit in {EXPRESSION_UNITS}")
    check_slide_table(slides, lineages)
    missing = sorted(set(slides["slide_file"]) - {f"{SLIDES}/{p.name}" for p in (out / SLIDES).glob("*")})
    if missing:
        raise FileNotFoundError(f"cohort {out}: slides not written yet: {missing[:3]}")
    write_table_atomic(out / GENES, genes)
    write_table_atomic(out / EXPRESSION_LINEAGES, expression_lineages)
    write_table_atomic(out / EXPRESSION_POOL, expression_pool)
    write_table_atomic(out / LINEAGES, lineages)
    write_table_atomic(out / SLIDE_TABLE, slides)
    write_table_atomic(out / PATIENTS, patients)
    write_table_atomic(out / POOL_CLINICAL, pool_clinical)
    write_table_atomic(out / PPI_EDGES, ppi_edges, index=False)
    write_json_atomic(out / TRUTH, truth)
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != COMPLETE_MARKER)
    write_json_atomic(out / COMPLETE_MARKER, {**metadata, "files": {str(p.relative_to(out)): p.stat().st_size
                                                                   for p in files}})
    return out


def read_cohort_metadata(out_dir: str | Path) -> dict[str, Any] | None:
    """The ``cohort.json`` of a complete cohort, or None when the folder holds no complete cohort."""
    marker = Path(out_dir) / COMPLETE_MARKER
    return read_json(marker) if marker.exists() else None


def load_cohort(data_dir: str | Path) -> Cohort:
    """Read a complete cohort folder; an unfinished one is an error that says how to make it."""
    root = Path(data_dir)
    metadata = read_cohort_metadata(root)
    if metadata is None:
        raise FileNotFoundError(f"{root} holds no complete cohort ({COMPLETE_MARKER} missing). Run the 01_data "
                                "chapter (gbhet run --only 01_data) or `gbhet synth --out DIR` first.")

    def table(name: str) -> pd.DataFrame:
        return pd.read_csv(root / name, sep="\t", index_col=0)

    lineages = table(LINEAGES)
    if (root / SLIDE_TABLE).exists():
        slides = table(SLIDE_TABLE)
    elif "slide_file" in lineages:  # written before slides.tsv existed: one slide per lineage
        slides = slide_table({lid: [f] for lid, f in lineages.pop("slide_file").items()})
    else:
        raise FileNotFoundError(f"{root} has no {SLIDE_TABLE} (and {LINEAGES} no slide_file column): make the "
                                "cohort again (gbhet run --only 01_data)")
    check_slide_table(slides, lineages, root / SLIDE_TABLE)
    return Cohort(
        root=root, metadata=metadata, genes=table(GENES), expression_lineages=table(EXPRESSION_LINEAGES),
        expression_pool=table(EXPRESSION_POOL), lineages=lineages, patients=table(PATIENTS),
        pool_clinical=table(POOL_CLINICAL), ppi_edges=pd.read_csv(root / PPI_EDGES, sep="\t"),
        truth=CohortTruth.load(root / TRUTH), slides=slides,
    )


def slide_table(files_by_lineage: dict[str, list[str]]) -> pd.DataFrame:
    """The ``slides.tsv`` table from lineage id → its slide files (relative to the cohort folder, section order):
    index ``slide_id`` (the file stem), columns ``lineage_id``, ``section`` (1, 2, ...), ``slide_file``."""
    rows = [(Path(f).stem, str(lid), k + 1, str(f)) for lid, files in files_by_lineage.items()
            for k, f in enumerate(files)]
    table = pd.DataFrame(rows, columns=["slide_id", "lineage_id", "section", "slide_file"]).set_index("slide_id")
    return table


def check_slide_table(slides: pd.DataFrame, lineages: pd.DataFrame, where: Path | str = SLIDE_TABLE) -> None:
    """Every slide names a known lineage, slide ids are unique, and every lineage has a slide."""
    missing_columns = sorted({"lineage_id", "slide_file"} - set(slides.columns))
    if missing_columns:
        raise ValueError(f"{where}: columns {missing_columns} are missing (need slide_id, lineage_id, section, "
                         "slide_file)")
    if slides.index.has_duplicates:
        raise ValueError(f"{where}: slide ids repeated: {sorted(set(slides.index[slides.index.duplicated()]))[:3]}")
    unknown = sorted(set(slides["lineage_id"].astype(str)) - set(lineages.index.astype(str)))
    if unknown:
        raise ValueError(f"{where}: slides name lineages not in {LINEAGES}: {unknown[:3]}")
    without = sorted(set(lineages.index.astype(str)) - set(slides["lineage_id"].astype(str)))
    if without:
        raise ValueError(f"{where}: lineages {without[:3]} have no slide; every lineage needs at least one")
