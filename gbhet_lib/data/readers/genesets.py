"""Gene sets: GMT files (strict reader, atomic writer), IOBR Hallmark .rda, GlioVis subtype lists, pirlygenes
CSVs and Puchalski 2018 Table S15.

A gene-set collection is ``dict[str, list[str]]``: set name → genes (HGNC symbols as published, not re-mapped),
in the source's order, without repeats.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from ...io import write_text_atomic
from ._common import (ReaderError, check_file, load_r, load_r_frame, pick_object, read_text_table,
                      require_columns)

GeneSets = dict[str, list[str]]
GMT_WHAT = "a GMT file (one set a line: NAME<TAB>DESCRIPTION<TAB>GENE<TAB>GENE...)"
HALLMARK_WHAT = "IOBR's hallmark.rda (IOBR/IOBR @ be5d893; manifest entry msigdb_hallmark_iobr_rda)"
GLIOVIS_WHAT = ("GlioVis subtype_list.Rds or subtype_list_2016.Rds (msquatrito/shiny_GlioVis; manifest entries "
                "gliovis_subtype_list_rds / gliovis_subtype_list_2016_rds)")
ESTIMATE_WHAT = "GlioVis SI_geneset.RData (ESTIMATE signatures; manifest entry gliovis_si_geneset_rdata)"
PIRLYGENES_SETS_WHAT = ("a pirlygenes gene-set CSV (lineage-genes, cancer-type-genes or estimate-signatures; "
                        "manifest entries pirlygenes_*)")
PUCHALSKI_WHAT = "Puchalski et al. 2018 Table S15 aaf2666_Table-S15.xlsx (manifest entry puchalski2018_gene_sets_xlsx)"


def _unique(genes: Iterable[Any]) -> list[str]:
    """Genes as stripped strings, missing/empty dropped, first occurrence kept."""
    out = (str(g).strip() for g in genes if not pd.isna(g))
    return list(dict.fromkeys(g for g in out if g))


def read_gmt(path: str | Path) -> GeneSets:
    """Read a GMT file strictly: set name → genes (repeated genes within a set are kept once).

    Blank lines and trailing tabs are allowed; a line with no gene, an empty name or gene field in the middle,
    or a set name used twice is an error naming the line.
    """
    p = check_file(path, GMT_WHAT)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ReaderError(f"{p}: not a UTF-8 text file (an R or Excel file?). Expected {GMT_WHAT}.") from None
    sets: GeneSets = {}
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.rstrip("\t\r ").split("\t")
        if fields == [""]:
            continue
        if len(fields) < 3:
            raise ReaderError(f"{p}: line {number} has {len(fields)} tab-separated field(s) ({line[:60]!r}); a GMT "
                              "line is NAME<TAB>DESCRIPTION<TAB>GENE... with at least one gene. Fix or delete it "
                              "(space-separated? use tabs).")
        name, genes = fields[0].strip(), [g.strip() for g in fields[2:]]
        if not name or not all(genes):
            what = "an empty set name" if not name else f"an empty gene field (field {genes.index('') + 3})"
            raise ReaderError(f"{p}: line {number} has {what}. Remove the stray tab or fill the field.")
        if name in sets:
            raise ReaderError(f"{p}: line {number} repeats set name {name!r} (first on line {first_line[name]}). "
                              "Set names must be unique: rename or merge the sets.")
        sets[name], first_line[name] = _unique(genes), number
    if not sets:
        raise ReaderError(f"{p}: no gene sets (only blank lines). Expected {GMT_WHAT}.")
    return sets


def write_gmt(sets: Mapping[str, Iterable[str]], path: str | Path,
              descriptions: Mapping[str, str] | str = "") -> Path:
    """Write gene sets as GMT (atomically); ``descriptions`` is one text for all sets or one per set name."""
    lines = []
    for name, genes in sets.items():
        desc = descriptions if isinstance(descriptions, str) else descriptions.get(name, "")
        genes = _unique(genes)
        for label, value in [("set name", name), ("description", desc)] + [("gene", g) for g in genes]:
            if any(c in str(value) for c in "\t\r\n"):
                raise ReaderError(f"write_gmt: {label} {value!r} of set {name!r} contains a tab or newline.")
        if not str(name).strip() or not genes:
            raise ReaderError(f"write_gmt: set {name!r} has an empty name or no genes; a GMT line needs both.")
        lines.append("\t".join([str(name), desc, *genes]))
    if not lines:
        raise ReaderError("write_gmt: no gene sets to write.")
    return write_text_atomic(path, "\n".join(lines) + "\n")


def read_iobr_hallmark_rda(path: str | Path) -> GeneSets:
    """MSigDB Hallmark (50 sets, 32–200 genes) from IOBR's ``hallmark.rda`` (a named list of character vectors)."""
    p = Path(path)
    hallmark = pick_object(load_r(p, HALLMARK_WHAT), p, HALLMARK_WHAT, name="hallmark")
    return _named_list_to_sets(hallmark, p, HALLMARK_WHAT)


def _named_list_to_sets(obj: Any, path: Path, what: str, prefix: str = "") -> GeneSets:
    """A converted R named list of character vectors/factors → gene sets (names upper-cased with ``prefix``)."""
    if not isinstance(obj, Mapping) or not obj:
        raise ReaderError(f"{path}: the R object is a {type(obj).__name__}, not a named list of gene vectors. "
                          f"Expected {what}.")
    sets: GeneSets = {}
    for name, genes in obj.items():
        values = np.asarray(genes, dtype=object)
        if values.ndim != 1 or not all(isinstance(g, str) or pd.isna(g) for g in values):
            raise ReaderError(f"{path}: list element {name!r} is not a character vector of genes. Expected {what}.")
        sets[f"{prefix}{str(name).upper()}" if prefix else str(name)] = _unique(values)
    return sets


def read_gliovis_subtypes_rds(path: str | Path) -> GeneSets:
    """GlioVis subtype gene lists; which file gives which sets is recognised from its content.

    * ``subtype_list.Rds`` (Proneural, Neural, Mesenchymal, Classical; factors) → ``VERHAAK2010_<SUBTYPE>``:
      Verhaak 2010 ClaNC genes, 685 of the 840 (PN 178, NL 129, MES 216, CL 162).
    * ``subtype_list_2016.Rds`` (Classical, Mesenchymal, Proneural; 70 genes each) →
      ``WANG2017_PREPRINT70_<SUBTYPE>``: Wang 2017's preprint 70-gene lists (the paper itself used 50).
    """
    p = Path(path)
    obj = load_r(p, GLIOVIS_WHAT)
    if not isinstance(obj, Mapping):
        raise ReaderError(f"{p}: holds a {type(obj).__name__}, not GlioVis's named list of subtype genes. "
                          f"Expected {GLIOVIS_WHAT}.")
    names = {str(k) for k in obj}
    if names == {"Proneural", "Neural", "Mesenchymal", "Classical"}:
        return _named_list_to_sets(obj, p, GLIOVIS_WHAT, prefix="VERHAAK2010_")
    if names == {"Proneural", "Mesenchymal", "Classical"}:
        return _named_list_to_sets(obj, p, GLIOVIS_WHAT, prefix="WANG2017_PREPRINT70_")
    raise ReaderError(f"{p}: list names {sorted(names)} are neither the Verhaak 2010 (4 subtypes) nor the "
                      f"Wang 2017 (3 subtypes) GlioVis lists. Expected {GLIOVIS_WHAT}.")


def read_gliovis_estimate_rdata(path: str | Path) -> GeneSets:
    """ESTIMATE stromal and immune signatures (141 genes each) from GlioVis ``SI_geneset.RData``.

    Upstream it is a data frame, one row a signature (row names), first column a description, then genes.
    Returns ``ESTIMATE_STROMALSIGNATURE`` and ``ESTIMATE_IMMUNESIGNATURE``.
    """
    frame = load_r_frame(path, ESTIMATE_WHAT)
    if frame.index.dtype != object or frame.shape[1] < 2:
        raise ReaderError(f"{path}: the data frame has no signature row names or no gene columns. "
                          f"Expected {ESTIMATE_WHAT}.")
    return {f"ESTIMATE_{str(name).upper()}": _unique(row.iloc[1:]) for name, row in frame.iterrows()}


def read_gliovis_gene_sets(subtype_list: str | Path, subtype_list_2016: str | Path,
                           si_geneset: str | Path) -> GeneSets:
    """The nine GlioVis sets in one collection: Verhaak 2010 (4), Wang 2017 preprint (3), ESTIMATE (2)."""
    return {**read_gliovis_subtypes_rds(subtype_list), **read_gliovis_subtypes_rds(subtype_list_2016),
            **read_gliovis_estimate_rdata(si_geneset)}


# file kind → (columns whose values name a set, set-name template)
_PIRLYGENES_LAYOUTS = {
    "estimate": (["Category"], "ESTIMATE_{0}SIGNATURE"),
    "lineage": (["Cancer_Type", "direction"], "{0}_LINEAGE_{1}"),
    "cancer_type": (["Cancer_Type", "Role"], "{0}_{1}"),
}


def read_pirlygenes_sets(path: str | Path, cancer_type: str | None = None) -> GeneSets:
    """Gene sets from a pirlygenes CSV; the file kind is recognised from its columns.

    * estimate-signatures → ``ESTIMATE_STROMALSIGNATURE``, ``ESTIMATE_IMMUNESIGNATURE``;
    * lineage-genes → ``<CANCER>_LINEAGE_HIGH`` / ``_LOW`` (e.g. GBM_LINEAGE_HIGH: FABP7, GFAP, NES, OLIG2, ...);
    * cancer-type-genes → ``<CANCER>_<ROLE>`` (e.g. GBM_DRIVER, GBM_SUBTYPE).
    ``cancer_type`` (e.g. "GBM") keeps only that cancer's sets.
    """
    table = read_text_table(path, PIRLYGENES_SETS_WHAT, dtype=str)
    require_columns(table, ["Symbol"], path, f"Expected {PIRLYGENES_SETS_WHAT}.")
    if "Category" in table:
        kind = "estimate"
    elif "direction" in table:
        kind = "lineage"
    elif "Role" in table:
        kind = "cancer_type"
    else:
        raise ReaderError(f"{path}: has none of the columns Category, direction, Role. Expected "
                          f"{PIRLYGENES_SETS_WHAT}.")
    keys, template = _PIRLYGENES_LAYOUTS[kind]
    require_columns(table, keys, path, f"Expected {PIRLYGENES_SETS_WHAT}.")
    if cancer_type is not None:
        if "Cancer_Type" not in table:
            raise ReaderError(f"{path}: the ESTIMATE file has no Cancer_Type column; leave cancer_type=None.")
        table = table[table["Cancer_Type"].str.upper() == cancer_type.upper()]
        if table.empty:
            raise ReaderError(f"{path}: no rows for cancer_type={cancer_type!r}. Use a TCGA code such as 'GBM'.")
    sets: GeneSets = {}
    for values, rows in table.groupby(keys, sort=False):
        sets[template.format(*(str(v).upper() for v in values))] = _unique(rows["Symbol"])
    return sets


def read_puchalski_xlsx(path: str | Path, sheet: str | int = 0) -> GeneSets:
    """Puchalski 2018 (Ivy GAP) Table S15: 21 cell-type / phenotype sets of 11–53 genes.

    Layout of the sheet "Gene sets for GSEA": row 1 set names, row 2 the placeholder "na" (dropped), then genes,
    one column a set.
    """
    p = check_file(path, PUCHALSKI_WHAT)
    try:
        sheet_table = pd.read_excel(p, sheet_name=sheet, header=None, dtype=str, engine="openpyxl")
    except ValueError as err:  # unknown sheet
        raise ReaderError(f"{p}: {err}. Expected {PUCHALSKI_WHAT} (first sheet 'Gene sets for GSEA').") from None
    except Exception as err:  # openpyxl raises zipfile/KeyError/InvalidFileException on non-xlsx bytes
        raise ReaderError(f"{p}: not a readable .xlsx workbook ({type(err).__name__}). Expected "
                          f"{PUCHALSKI_WHAT}.") from None
    if sheet_table.shape[0] < 2:
        raise ReaderError(f"{p}: the sheet has fewer than 2 rows. Expected {PUCHALSKI_WHAT}.")
    sets: GeneSets = {}
    for col in sheet_table.columns:
        name, genes = sheet_table[col].iloc[0], sheet_table[col].iloc[1:]
        if not isinstance(name, str) or not name.strip():
            raise ReaderError(f"{p}: column {col + 1} has no set name in row 1. Expected {PUCHALSKI_WHAT}.")
        if name.strip() in sets:
            raise ReaderError(f"{p}: set name {name.strip()!r} appears twice in row 1; rename one.")
        sets[name.strip()] = [g for g in _unique(genes) if g.lower() != "na"]
    return sets
