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
    mri.tsv                    one row per MRI subject (every patient and pool sample that has one): role
                               (patient | pool), mri_folder, the VASARI-style features computed from its volumes
    mri/<subject>/<subject>_{t1,t1ce,t2,flair,seg}.nii.gz  pre-operative MRI, BraTS naming and labels
    diagnostic_slides.tsv      slide_id, sample_id, slide_file: one diagnostic slide (TCGA's DX1) per pool sample
                               that has one; with its MRI and RNA, the cohort of the radiogenomic chapters
    diagnostic_slides/<sample>-DX1.tiff    those slides
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

import dataclasses
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
MRI_TABLE = "mri.tsv"
MRI = "mri"
DIAGNOSTIC_TABLE = "diagnostic_slides.tsv"
DIAGNOSTIC_SLIDES = "diagnostic_slides"
TRUTH = "truth.json"
COMPLETE_MARKER = "cohort.json"
EXPRESSION_UNITS = ("raw_counts", "log_expression")


@dataclass(frozen=True)
class CohortTruth:
    """What was planted (demo) or is known by construction (semi-synthetic), read back from ``truth.json``.

    Fields a cohort kind does not plant are empty (e.g. the semi-synthetic cohort has real survival, so
    ``survival`` is empty, and no size factors). Attributes:
        programs: program → {"visible": bool (the slides show it), "mri_visible": bool (the MRI shows it),
            "description": str}, in the generator's program order.
        modules: program → module gene symbols.
        drivers: program → driver gene symbols (the strongest loadings).
        loadings: program → {module gene symbol: log-fold change per unit of activity}.
        activity: lineages and pool samples × programs (standard-normal scale).
        size_factors: per RNA sample (lineages and pool), the library size factor.
        slide_lineage: slide file name → lineage id; lineage_patient: lineage id → patient id.
        survival: {"os": {program: log-hazard}, "pfs": {...}, "age_per_year": float}.
        imaging_traits: VASARI-style trait → {"vasari", "feature", "rule", "program" (the program that drives it,
            or None: a negative control), "description"}; the traits are computed from the MRI volumes.
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

    @property
    def mri_visible_programs(self) -> list[str]:
        """The programs that change the MRI volumes (empty for a cohort made before the MRI existed)."""
        return [p for p, info in self.programs.items() if info.get("mri_visible", False)]

    def seen_by(self, modality: str) -> list[str]:
        """The programs a modality shows: ``wsi`` (the slides) or ``mri``."""
        if modality not in ("wsi", "mri"):
            raise ValueError(f"modality={modality!r} must be 'wsi' or 'mri'")
        return self.visible_programs if modality == "wsi" else self.mri_visible_programs

    @classmethod
    def load(cls, path: str | Path) -> CohortTruth:
        raw = read_json(path)
        programs = {p["name"]: {"visible": p["visible"], "mri_visible": p.get("mri_visible", False),
                                "description": p["description"]} for p in raw["programs"]}
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
    mri: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    diagnostic_slides: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)

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

    def mri_folder(self, subject_id: str) -> Path:
        """The folder of one subject's MRI files (an index value of :attr:`mri`: a patient or pool sample id)."""
        if subject_id not in self.mri.index:
            raise KeyError(f"subject {subject_id!r} has no MRI in {self.root / MRI_TABLE}; subjects with one are "
                           f"named like {list(self.mri.index[:2])}")
        return self.root / self.mri.loc[subject_id, "mri_folder"]

    def read_mri(self, subject_id: str) -> Any:
        """One subject's :class:`~gbhet_lib.mri.volumes.MriVolume` (4 sequences, segmentation, voxel size)."""
        from ..mri.volumes import read_mri

        return read_mri(self.mri_folder(subject_id), subject_id)

    def diagnostic_slide_path(self, slide_id: str) -> Path:
        """The file of one diagnostic slide (an index value of :attr:`diagnostic_slides`)."""
        if slide_id not in self.diagnostic_slides.index:
            raise KeyError(f"slide {slide_id!r} is not in {self.root / DIAGNOSTIC_TABLE}")
        return self.root / self.diagnostic_slides.loc[slide_id, "slide_file"]

    def imaging_samples(self) -> list[str]:
        """Pool samples with RNA, an MRI and a diagnostic slide: the cohort of chapter 7, in pool order."""
        if self.mri.empty or self.diagnostic_slides.empty:
            return []
        with_slide = set(self.diagnostic_slides["sample_id"].astype(str))
        return [s for s in self.expression_pool.columns.astype(str) if s in with_slide and s in self.mri.index]

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
                 metadata: dict[str, Any], mri: pd.DataFrame | None = None,
                 diagnostic_slides: pd.DataFrame | None = None) -> Path:
    """Write the cohort tables and truth (slides must already be in ``slides/``), then ``cohort.json``.

    ``slides``: index ``slide_id``, columns ``lineage_id``, ``section``, ``slide_file`` (see :func:`slide_table`).
    ``mri`` (optional): index ``subject_id``, columns ``role``, ``mri_folder`` (+ features); the files must already be
    in ``mri/``. ``diagnostic_slides`` (optional): index ``slide_id``, columns ``sample_id`` (a pool sample),
    ``slide_file``; the files must already be in ``diagnostic_slides/``.

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
    if mri is not None:
        check_mri_table(mri, out)
        write_table_atomic(out / MRI_TABLE, mri)
    if diagnostic_slides is not None:
        check_diagnostic_table(diagnostic_slides, set(expression_pool.columns.astype(str)), out)
        write_table_atomic(out / DIAGNOSTIC_TABLE, diagnostic_slides)
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
    optional = {name: table(name) if (root / name).exists() else pd.DataFrame()
                for name in (MRI_TABLE, DIAGNOSTIC_TABLE)}
    return Cohort(
        root=root, metadata=metadata, genes=table(GENES), expression_lineages=table(EXPRESSION_LINEAGES),
        expression_pool=table(EXPRESSION_POOL), lineages=lineages, patients=table(PATIENTS),
        pool_clinical=table(POOL_CLINICAL), ppi_edges=pd.read_csv(root / PPI_EDGES, sep="\t"),
        truth=CohortTruth.load(root / TRUTH), slides=slides, mri=optional[MRI_TABLE],
        diagnostic_slides=optional[DIAGNOSTIC_TABLE],
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


def check_mri_table(mri: pd.DataFrame, root: Path) -> None:
    """Every MRI row has a role and a folder that exists under the cohort folder ``root``."""
    missing_columns = sorted({"role", "mri_folder"} - set(mri.columns))
    if missing_columns:
        raise ValueError(f"{root / MRI_TABLE}: columns {missing_columns} are missing (need subject_id, role, "
                         "mri_folder)")
    if mri.index.has_duplicates:
        raise ValueError(f"{root / MRI_TABLE}: subjects repeated: {sorted(set(mri.index[mri.index.duplicated()]))[:3]}")
    absent = [str(f) for f in mri["mri_folder"] if not (root / str(f)).is_dir()]
    if absent:
        raise FileNotFoundError(f"{root / MRI_TABLE}: MRI folders not written yet: {absent[:3]}")


def check_diagnostic_table(table: pd.DataFrame, pool_samples: set[str], root: Path) -> None:
    """Every diagnostic slide names a pool sample and a file that exists under the cohort folder ``root``."""
    missing_columns = sorted({"sample_id", "slide_file"} - set(table.columns))
    if missing_columns:
        raise ValueError(f"{root / DIAGNOSTIC_TABLE}: columns {missing_columns} are missing (need slide_id, "
                         "sample_id, slide_file)")
    unknown = sorted(set(table["sample_id"].astype(str)) - pool_samples)
    if unknown:
        raise ValueError(f"{root / DIAGNOSTIC_TABLE}: slides name samples not in the pool: {unknown[:3]}")
    absent = [str(f) for f in table["slide_file"] if not (root / str(f)).is_file()]
    if absent:
        raise FileNotFoundError(f"{root / DIAGNOSTIC_TABLE}: diagnostic slides not written yet: {absent[:3]}")
