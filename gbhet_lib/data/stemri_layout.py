"""Layout check of the authors' data tree (``gbdata/`` and ``trained_models/``; the ``stemri`` profile).

The authors' scripts run from their repository root and read (gbheterogeneity.md §2.2)::

    gbdata/rna/gene_clustering/{ppi_cluster_to_ensembl_genes.json, chromosome_to_ensembl_genes.json, kg.csv, …}
    gbdata/rna/{train,val,test}_split.tsv     TCGA sample lists, column "Sample paths"
    gbdata/rna/tcga/…                         TCGA normalised per-sample TSVs (tcga.tar.gz)
    gbdata/rna/oncopole_rna_raw.tsv           Oncopole raw matrix
    gbdata/rna/oncopole/SR<P><L>.tsv          one normalised profile per lineage
    gbdata/wsi/metadata.yml                   patch train/val split
    gbdata/wsi/<slide>/{tumor,neutral}/<slide>_<idx:05d>_<x1>_<y1>_<x2>_<y2>.png   (wsi.tar.gz)
    gbdata/tiny/<slide>_x0.625_z0.tif         thumbnails (heat maps only)
    gbdata/survival/patients.csv (sep ';')    Biopsy number, Sex, Age, Tumor localization, PFS, OS [days]
    gbdata/survival/lineage.csv               lineage, spectro, NS_gen_1, NS_gen_2, radioresistance, NS_form_ratio
    trained_models/{wsi_encoder.bin, rna_encoder_ppi.bin, multimodal_best.bin}

A slide is ``SR<patient letter><lineage digit>-<mouse id>-<mouse survival in days>``. The authors' README
differs from their code: it puts the gene-clustering files in ``gbdata/gene_clustering/``, names the chromosome
file ``chromosome_cluster_to_ensembl_genes.json`` and the RNA encoder ``rna_encoder.bin``. Either is accepted
here; the report notes when only the README path exists (the authors' code would not find it).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from collections import Counter
from pathlib import Path

import pandas as pd

from ..errors import GbhetError

SLIDE_FORMAT = "SR<patient letter A-Z><lineage digit 0-9>-<mouse id>-<mouse survival in days>"
PATCH_FORMAT = "<slide>_<index>_<x1>_<y1>_<x2>_<y2>.png"
PATIENT_COLUMNS: tuple[str, ...] = ("Biopsy number", "Sex", "Age", "Tumor localization", "PFS", "OS")
LINEAGE_COLUMNS: tuple[str, ...] = ("lineage", "spectro", "NS_gen_1", "NS_gen_2", "radioresistance", "NS_form_ratio")
SPLITS: tuple[str, ...] = ("train", "val", "test")
PATCH_KINDS: tuple[str, ...] = ("tumor", "neutral")
THUMBNAIL_SUFFIX = "_x0.625_z0.tif"

_SLIDE = re.compile(r"SR(?P<patient>[A-Z])(?P<lineage>[0-9])-(?P<mouse>[^-_.\s/\\]+)-(?P<survival>[0-9]+)")
_LINEAGE_ID = re.compile(r"SR[A-Z][0-9]")
_PATIENT_ID = re.compile(r"SR[A-Z]")
_UINT = re.compile(r"[0-9]+")
_EXAMPLES = 3  # offending names quoted per problem


class MalformedNameError(GbhetError, ValueError):
    """A slide or patch name does not follow the authors' naming scheme."""


@dataclasses.dataclass(frozen=True)
class SlideName:
    """A parsed slide name such as ``SRA1-M12-85``.

    Attributes:
        name: the slide name.
        patient: patient id ``SR<P>`` (the index of patients.csv).
        lineage: lineage id ``SR<P><L>`` (the index of lineage.csv and the RNA file stem).
        mouse: mouse id.
        survival_days: survival of the mouse, days.
    """

    name: str
    patient: str
    lineage: str
    mouse: str
    survival_days: int

    @property
    def patient_label(self) -> int:
        """The authors' integer patient label: position of the letter in A-Z."""
        return ord(self.patient[2]) - ord("A")

    @property
    def lineage_label(self) -> int:
        """The authors' integer lineage label, ``26 * patient_label + lineage digit``."""
        return 26 * self.patient_label + int(self.lineage[3])


@dataclasses.dataclass(frozen=True)
class PatchName:
    """A parsed patch file name ``<slide>_<index>_<x1>_<y1>_<x2>_<y2>.png``.

    Coordinates are pixels of the image the patches were cut from: (x1, y1) upper-left, (x2, y2) lower-right.
    """

    name: str
    slide: SlideName
    index: int
    x1: int
    y1: int
    x2: int
    y2: int


def parse_slide_name(name: str) -> SlideName:
    """Parse ``SR<P><L>-<mouse>-<survival days>``; a malformed name raises :class:`MalformedNameError`."""
    match = _SLIDE.fullmatch(name)
    if match is None:
        raise MalformedNameError(f"slide name {name!r} is not {SLIDE_FORMAT}, e.g. 'SRA1-M12-85': "
                                 f"{_slide_name_fault(name)}.")
    patient = f"SR{match['patient']}"
    return SlideName(name=name, patient=patient, lineage=f"{patient}{match['lineage']}",
                     mouse=match["mouse"], survival_days=int(match["survival"]))


def _slide_name_fault(name: str) -> str:
    fields = name.split("-")
    if len(fields) != 3:
        return f"it has {len(fields)} '-'-separated fields, not 3"
    lineage, mouse, survival = fields
    if not _LINEAGE_ID.fullmatch(lineage):
        return f"{lineage!r} is not SR + one patient letter A-Z + one lineage digit"
    if not _UINT.fullmatch(survival):
        return f"the survival {survival!r} is not a whole number of days"
    return f"the mouse id {mouse!r} is empty or contains '_', '.', '/' or spaces"


def parse_patch_name(name: str | os.PathLike[str]) -> PatchName:
    """Parse a patch file name (a path is accepted; its folders are ignored).

    Raises:
        MalformedNameError: not ``.png``, not six ``_``-separated fields, a malformed slide name, a field
            that is not a non-negative integer, or a lower-right corner not below-right of the upper-left.
    """
    file = Path(name).name
    if not file.endswith(".png"):
        raise MalformedNameError(f"patch file name {file!r} does not end in .png (expected {PATCH_FORMAT}).")
    fields = file[: -len(".png")].split("_")
    if len(fields) != 6:
        raise MalformedNameError(f"patch file name {file!r} has {len(fields)} '_'-separated fields, "
                                 f"expected 6: {PATCH_FORMAT}.")
    try:
        slide = parse_slide_name(fields[0])
    except MalformedNameError as err:
        raise MalformedNameError(f"patch file name {file!r}: {err}") from None
    numbers: dict[str, int] = {}
    for label, text in zip(("index", "x1", "y1", "x2", "y2"), fields[1:]):
        if not _UINT.fullmatch(text):
            raise MalformedNameError(f"patch file name {file!r}: {label} {text!r} is not a non-negative integer.")
        numbers[label] = int(text)
    if numbers["x2"] <= numbers["x1"] or numbers["y2"] <= numbers["y1"]:
        raise MalformedNameError(f"patch file name {file!r}: corner ({numbers['x2']}, {numbers['y2']}) is not "
                                 f"below-right of ({numbers['x1']}, {numbers['y1']}).")
    return PatchName(name=file, slide=slide, **numbers)


@dataclasses.dataclass(frozen=True)
class Expected:
    """One expected path. ``paths[0]`` is what the authors' code reads; later ones are README variants."""

    key: str
    paths: tuple[str, ...]
    required: bool
    purpose: str
    is_dir: bool = False


def _gene_clustering(file: str, required: bool, purpose: str, readme_name: str | None = None) -> Expected:
    names = [file] if readme_name is None else [file, readme_name]
    paths = [f"{root}/{n}" for n in names for root in ("gbdata/rna/gene_clustering", "gbdata/gene_clustering")]
    return Expected(Path(file).stem, tuple(dict.fromkeys(paths)), required, purpose)


EXPECTED: tuple[Expected, ...] = (
    _gene_clustering("ppi_cluster_to_ensembl_genes.json", True, "PPI cluster -> Ensembl genes (the RNA tokens)"),
    _gene_clustering("chromosome_to_ensembl_genes.json", False, "chromosome-token variant only",
                     readme_name="chromosome_cluster_to_ensembl_genes.json"),
    *(_gene_clustering(f, False, "only to rebuild the gene clusters")
      for f in ("kg.csv", "ppi_filtered.csv", "symbol_to_ensembl_mapping.csv", "tcga_sample.tsv",
                "louvain_labels.npz", "louvain_membership.npz", "ppi_clusters.csv")),
    *(Expected(f"{s}_split", (f"gbdata/rna/{s}_split.tsv",), True, "TCGA sample list, column 'Sample paths'")
      for s in SPLITS),
    Expected("tcga", ("gbdata/rna/tcga",), True, "TCGA normalised per-sample TSVs (tcga.tar.gz)", is_dir=True),
    Expected("oncopole_rna_raw", ("gbdata/rna/oncopole_rna_raw.tsv",), True,
             "Oncopole raw matrix (its gene ids are joined with TCGA's)"),
    Expected("oncopole", ("gbdata/rna/oncopole",), True, "per-lineage RNA profiles SR<P><L>.tsv", is_dir=True),
    Expected("wsi", ("gbdata/wsi",), True, "patches <slide>/{tumor,neutral}/*.png (wsi.tar.gz)", is_dir=True),
    Expected("wsi_metadata", ("gbdata/wsi/metadata.yml",), True,
             "patch train/val split; the authors' code stops without it"),
    Expected("tiny", ("gbdata/tiny",), False, "slide thumbnails, heat maps only", is_dir=True),
    Expected("patients", ("gbdata/survival/patients.csv",), True, "per-patient clinical table (sep ';')"),
    Expected("lineage", ("gbdata/survival/lineage.csv",), True, "per-lineage table"),
    Expected("wsi_encoder", ("trained_models/wsi_encoder.bin",), False, "released WSI encoder"),
    Expected("rna_encoder", ("trained_models/rna_encoder_ppi.bin", "trained_models/rna_encoder.bin"), False,
             "released RNA encoder"),
    Expected("multimodal_best", ("trained_models/multimodal_best.bin",), False, "released fusion model"),
)


@dataclasses.dataclass(frozen=True)
class ItemStatus:
    """Whether one :class:`Expected` path was found, and where (relative to the repository root)."""

    expected: Expected
    found: str | None

    @property
    def status(self) -> str:
        """``present``, ``present (README path)``, ``MISSING`` (required) or ``absent (optional)``."""
        if self.found is None:
            return "MISSING" if self.expected.required else "absent (optional)"
        return "present" if self.found == self.expected.paths[0] else "present (README path)"


@dataclasses.dataclass
class LayoutReport:
    """What :func:`check_gbdata_layout` found.

    Attributes:
        root: the repository root (the folder that holds ``gbdata/``).
        items: one status per :data:`EXPECTED` path.
        counts: patients, lineages, slides, mice, tumor/neutral patches, RNA profiles, TCGA profiles,
            split sizes, PPI clusters and genes, thumbnails, trained models, table rows.
        lineages: one row per lineage id (from slides, RNA profiles and lineage.csv): patient, slides,
            mice, tumor_patches, neutral_patches, rna_profile, in_lineage_csv.
        slides: the parsed slide names.
        problems: content that the authors' pipeline would mishandle.
        notes: facts worth knowing that are not errors.
    """

    root: Path
    items: list[ItemStatus]
    counts: dict[str, int]
    lineages: pd.DataFrame
    slides: list[SlideName]
    problems: list[str]
    notes: list[str]

    @property
    def missing(self) -> list[str]:
        """Required paths not found (as the authors' code names them)."""
        return [s.expected.paths[0] for s in self.items if s.status == "MISSING"]

    @property
    def ok(self) -> bool:
        """True when every required path is present and no problem was found."""
        return not self.missing and not self.problems

    @property
    def patches_per_lineage(self) -> dict[str, int]:
        """Tumour patches per lineage id."""
        return {k: int(v) for k, v in self.lineages["tumor_patches"].items() if v}

    def to_frame(self) -> pd.DataFrame:
        """One row per expected path: item, status, required, path, purpose."""
        return pd.DataFrame([{"item": s.expected.key, "status": s.status, "required": s.expected.required,
                              "path": s.found or s.expected.paths[0], "purpose": s.expected.purpose}
                             for s in self.items])

    def summary(self) -> str:
        """A plain-text report: every expected path, the counts, then problems and notes."""
        lines = [f"gbdata layout under {self.root}: "
                 + ("complete" if self.ok else f"{len(self.missing)} required path(s) missing, "
                                               f"{len(self.problems)} problem(s)")]
        width = max(len(s.status) for s in self.items)
        lines += [f"  {s.status:<{width}}  {s.found or s.expected.paths[0]}  ({s.expected.purpose})"
                  for s in self.items]
        lines.append("Counts: " + ", ".join(f"{k} {v}" for k, v in self.counts.items()))
        if self.patches_per_lineage:
            lines.append("Tumour patches per lineage: "
                         + ", ".join(f"{k} {v}" for k, v in sorted(self.patches_per_lineage.items())))
        for title, entries in (("Problems", self.problems), ("Notes", self.notes)):
            if entries:
                lines.append(f"{title} ({len(entries)}):")
                lines += [f"  - {entry}" for entry in entries]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def check_gbdata_layout(root: str | os.PathLike[str]) -> LayoutReport:
    """Check the authors' data tree under ``root`` (the folder holding ``gbdata/``, or ``gbdata/`` itself).

    Reads names and the small tables only (no image or expression file is opened), so it is fast on the
    full release.
    """
    repo, notes = _repository_root(Path(root).expanduser())
    items = [ItemStatus(e, _find(repo, e)) for e in EXPECTED]
    found = {s.expected.key: repo / s.found for s in items if s.found is not None}
    notes += [f"{s.expected.key}: found only at the README path {s.found}; the authors' code reads "
              f"{s.expected.paths[0]}" for s in items if s.status == "present (README path)"]
    problems: list[str] = []

    slides, patches = _scan_wsi(found.get("wsi"), problems, notes)
    rna = _scan_oncopole(found.get("oncopole"), problems)
    patients = _read_table(found.get("patients"), ";", PATIENT_COLUMNS, _PATIENT_ID, problems)
    lineage_table = _read_table(found.get("lineage"), ",", LINEAGE_COLUMNS, _LINEAGE_ID, problems)
    lineages = _lineage_frame(slides, patches, rna, lineage_table)
    _cross_check(lineages, slides, found, patients, lineage_table, problems, notes)

    counts = {
        "patients": len(set(lineages["patient"]) | set(patients or ())),
        "lineages": len(lineages),
        "slides": len(slides),
        "mice": len({s.mouse for s in slides}),
        "tumor_patches": int(lineages["tumor_patches"].sum()),
        "neutral_patches": int(lineages["neutral_patches"].sum()),
        "rna_profiles": len(rna),
        "tcga_profiles": _count_files(found.get("tcga"), "*.tsv"),
        **{f"{s}_samples": _check_split(found.get(f"{s}_split"), repo, problems) for s in SPLITS},
        **_check_clusters(found.get("ppi_cluster_to_ensembl_genes"), problems),
        "thumbnails": _check_thumbnails(found.get("tiny"), slides, notes),
        "trained_models": _count_files(repo / "trained_models", "*.bin"),
        "patients_csv_rows": len(patients or ()),
        "lineage_csv_rows": len(lineage_table or ()),
    }
    return LayoutReport(repo, items, counts, lineages, slides, problems, notes)


def _repository_root(root: Path) -> tuple[Path, list[str]]:
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder; pass the folder that holds gbdata/.")
    if not (root / "gbdata").is_dir() and root.name == "gbdata":
        return root.parent, [f"{root} is the gbdata folder itself; its parent is checked as the repository root"]
    return root, []


def _find(repo: Path, expected: Expected) -> str | None:
    for rel in expected.paths:
        path = repo / rel
        if path.is_dir() if expected.is_dir else path.is_file():
            return rel
    return None


def _examples(entries: list[str]) -> str:
    more = f" (and {len(entries) - _EXAMPLES} more)" if len(entries) > _EXAMPLES else ""
    return "; ".join(entries[:_EXAMPLES]) + more


def _scan_wsi(wsi: Path | None, problems: list[str], notes: list[str]) -> tuple[list[SlideName], Counter]:
    """Parse slide folders and patch names; ``patches[(lineage, kind)]`` counts patches."""
    slides: list[SlideName] = []
    patches: Counter = Counter()
    bad_slides: list[str] = []
    bad_patches: list[str] = []
    empty: list[str] = []
    for folder in sorted(p for p in (wsi.iterdir() if wsi else ()) if p.is_dir()):
        try:
            slide = parse_slide_name(folder.name)
        except MalformedNameError as err:
            bad_slides.append(str(err))
            continue
        slides.append(slide)
        tumor_before = patches[slide.lineage, "tumor"]
        for kind in PATCH_KINDS:
            for entry in os.scandir(folder / kind) if (folder / kind).is_dir() else ():
                if not entry.is_file():
                    continue
                try:
                    patch = parse_patch_name(entry.name)
                except MalformedNameError as err:
                    bad_patches.append(f"{folder.name}/{kind}: {err}")
                    continue
                if patch.slide.name != slide.name:
                    bad_patches.append(f"{folder.name}/{kind}/{entry.name} belongs to slide {patch.slide.name}")
                    continue
                patches[slide.lineage, kind] += 1
        if patches[slide.lineage, "tumor"] == tumor_before:
            empty.append(folder.name)
    if bad_slides:
        problems.append(f"{len(bad_slides)} folder(s) in {wsi} are not slide names: {_examples(bad_slides)}")
    if bad_patches:
        problems.append(f"{len(bad_patches)} patch file(s) in {wsi} have malformed names: {_examples(bad_patches)}")
    if empty:
        notes.append(f"{len(empty)} slide folder(s) have no tumour patch (the pipeline skips them): "
                     f"{_examples(empty)}")
    return slides, patches


def _scan_oncopole(folder: Path | None, problems: list[str]) -> dict[str, Path]:
    """Lineage id -> RNA profile, from ``SR<P><L>.tsv`` names (the authors key by the stem)."""
    profiles: dict[str, Path] = {}
    bad: list[str] = []
    for path in sorted(folder.glob("*.tsv")) if folder else ():
        stem = path.name.split(".")[0]
        if _LINEAGE_ID.fullmatch(stem):
            profiles[stem] = path
        else:
            bad.append(path.name)
    if bad:
        problems.append(f"{len(bad)} RNA profile(s) in {folder} are not named SR<P><L>.tsv and cannot be "
                        f"paired with slides: {_examples(bad)}")
    return profiles


def _read_table(path: Path | None, sep: str, columns: tuple[str, ...], id_pattern: re.Pattern[str],
                problems: list[str]) -> list[str] | None:
    """The ids (first of ``columns``) of a survival table, or None when it is absent or unreadable."""
    if path is None:
        return None
    try:
        table = pd.read_csv(path, sep=sep, dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        problems.append(f"{path}: cannot be read as a '{sep}'-separated table ({err})")
        return None
    absent = [c for c in columns if c not in table.columns]
    if absent:
        problems.append(f"{path}: columns {absent} are missing (found {list(table.columns)}; separator '{sep}')")
        return None
    ids = table[columns[0]].dropna().str.strip().tolist()
    bad = [i for i in ids if not id_pattern.fullmatch(i)]
    if bad:
        problems.append(f"{path}: {len(bad)} id(s) in column {columns[0]!r} are malformed: {_examples(bad)}")
    return [i for i in ids if id_pattern.fullmatch(i)]


def _lineage_frame(slides: list[SlideName], patches: Counter, rna: dict[str, Path],
                   lineage_table: list[str] | None) -> pd.DataFrame:
    ids = sorted({s.lineage for s in slides} | set(rna) | set(lineage_table or ()))
    rows = [{"lineage": lin, "patient": lin[:3],
             "slides": sum(s.lineage == lin for s in slides),
             "mice": len({s.mouse for s in slides if s.lineage == lin}),
             "tumor_patches": patches[lin, "tumor"], "neutral_patches": patches[lin, "neutral"],
             "rna_profile": lin in rna, "in_lineage_csv": lin in (lineage_table or ())} for lin in ids]
    columns = ["lineage", "patient", "slides", "mice", "tumor_patches", "neutral_patches", "rna_profile",
               "in_lineage_csv"]
    return pd.DataFrame(rows, columns=columns).set_index("lineage")


def _cross_check(lineages: pd.DataFrame, slides: list[SlideName], found: dict[str, Path],
                 patients: list[str] | None, lineage_table: list[str] | None,
                 problems: list[str], notes: list[str]) -> None:
    """Pairing problems between patches, RNA profiles and the survival tables."""
    with_patches = lineages[lineages["tumor_patches"] > 0]
    if "oncopole" in found:
        for lin, n in with_patches.loc[~with_patches["rna_profile"], "tumor_patches"].items():
            problems.append(f"lineage {lin} has {n} tumour patches but no RNA profile "
                            f"({found['oncopole']}/{lin}.tsv): they cannot be paired (the authors' code "
                            "silently swaps each for a random other patch)")
        unpaired = lineages.index[lineages["rna_profile"] & (lineages["tumor_patches"] == 0)].tolist()
        if unpaired and "wsi" in found:
            notes.append(f"{len(unpaired)} lineage(s) have an RNA profile but no tumour patch (retrieval "
                         f"distractors only): {_examples(unpaired)}")
    if lineage_table is not None:
        absent = sorted({s.lineage for s in slides} - set(lineage_table))
        if absent:
            problems.append(f"lineage(s) {absent} have slides but no row in {found['lineage']} "
                            "(the authors' code raises KeyError)")
    if patients is not None:
        absent = sorted({s.patient for s in slides} - set(patients))
        if absent:
            problems.append(f"patient(s) {absent} have slides but no row in {found['patients']} "
                            "(the authors' code raises KeyError)")


def _check_split(path: Path | None, repo: Path, problems: list[str]) -> int:
    """Number of samples listed; problems for a missing column or paths that do not exist."""
    if path is None:
        return 0
    try:
        table = pd.read_csv(path, sep="\t", dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        problems.append(f"{path}: cannot be read as a TSV ({err})")
        return 0
    if "Sample paths" not in table.columns:
        problems.append(f"{path}: no 'Sample paths' column (found {list(table.columns)})")
        return 0
    samples = table["Sample paths"].dropna().tolist()
    # the authors' scripts run from the repository root; also try the split file's own folder
    lost = [s for s in samples if not (repo / s).is_file() and not (path.parent / s).is_file()]
    if lost:
        problems.append(f"{path}: {len(lost)} of {len(samples)} sample paths do not exist (resolved against "
                        f"{repo}): {_examples(lost)}")
    return len(samples)


def _check_clusters(path: Path | None, problems: list[str]) -> dict[str, int]:
    """Cluster and gene counts of the cluster -> Ensembl genes JSON."""
    if path is None:
        return {"ppi_clusters": 0, "ppi_cluster_genes": 0}
    try:
        clusters = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        problems.append(f"{path}: not valid JSON ({err})")
        return {"ppi_clusters": 0, "ppi_cluster_genes": 0}
    if not isinstance(clusters, dict) or not all(isinstance(v, list) for v in clusters.values()):
        problems.append(f"{path}: expected an object of cluster id -> list of Ensembl gene ids")
        return {"ppi_clusters": 0, "ppi_cluster_genes": 0}
    return {"ppi_clusters": len(clusters), "ppi_cluster_genes": sum(len(v) for v in clusters.values())}


def _check_thumbnails(tiny: Path | None, slides: list[SlideName], notes: list[str]) -> int:
    if tiny is None:
        return 0
    have = {p.name[: -len(THUMBNAIL_SUFFIX)] for p in tiny.glob(f"*{THUMBNAIL_SUFFIX}")}
    without = sorted({s.name for s in slides} - have)
    if without:
        notes.append(f"{len(without)} slide(s) have no thumbnail <slide>{THUMBNAIL_SUFFIX} in {tiny} "
                     f"(no heat map for them): {_examples(without)}")
    return len(have)


def _count_files(folder: Path | None, pattern: str) -> int:
    return sum(1 for p in folder.rglob(pattern) if p.is_file()) if folder and folder.is_dir() else 0
