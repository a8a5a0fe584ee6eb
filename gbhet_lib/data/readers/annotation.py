"""Gene annotation tables (IOBR GRCh38 .rda, pirlygenes Ensembl 112 CSV) as one standard table.

Standard table, one row per gene: ``gene_id`` (unversioned Ensembl gene id), ``symbol`` (missing when none),
``chromosome`` (ordered categorical 1..22, X, Y, MT; "chr" prefix stripped; genes on patch/scaffold contigs get
missing), ``start`` / ``end`` (1-based GRCh38 bp, nullable integers, missing when the source has no coordinates),
``biotype``.

Duplicates: a gene id listed more than once (IOBR repeats 545 genes that map to several Entrez ids) keeps its
first row; ``table.attrs["n_duplicates_dropped"]`` says how many rows went. Symbols are not unique (e.g. CD99 on
X and Y, PAR genes) and are left as they are: join on ``gene_id``.
``table.attrs["n_nonstandard_contig"]`` counts genes whose contig is not a primary chromosome.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from ._common import ReaderError, blank_to_na, load_r_frame, read_text_table, require_columns

CHROMOSOMES = [str(i) for i in range(1, 23)] + ["X", "Y", "MT"]
STANDARD_COLUMNS = ["gene_id", "symbol", "chromosome", "start", "end", "biotype"]
_ENSEMBL_GENE = re.compile(r"^(ENS[A-Z]*G\d{11})(?:\.\d+)?(?:_PAR_Y)?$")
IOBR_WHAT = "IOBR's GRCh38 annotation anno_grch38.rda (IOBR/IOBR @ da10b25; manifest entry iobr_gene_annotation_rda)"
PIRLYGENES_WHAT = ("pirlygenes' canonical-gene-reference.csv.gz (Ensembl 112; manifest entry "
                   "pirlygenes_gene_reference)")


def unversioned_gene_ids(ids: pd.Series, path: Path | str) -> pd.Series:
    """Ensembl gene ids without version (ENSG00000141510.17 → ENSG00000141510); others are an error."""
    text = ids.astype("object").map(lambda v: v.strip() if isinstance(v, str) else v)
    parsed = text.map(lambda v: m[1] if isinstance(v, str) and (m := _ENSEMBL_GENE.match(v)) else None)
    bad = parsed.isna()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ReaderError(f"{path}: row {row + 1} has gene id {text.iloc[row]!r}, not an Ensembl gene id "
                          f"(ENSG...; {int(bad.sum())} such rows). Check that the gene-id column holds Ensembl ids.")
    return parsed


def normalise_chromosome(values: pd.Series) -> pd.Categorical:
    """Chromosome names as 1..22, X, Y, MT ("chr7" → "7", "chrM"/"M" → "MT"); other contigs → missing."""
    def one(v: object) -> str | None:
        if not isinstance(v, str) or not v.strip():
            return None
        name = re.sub(r"^chr", "", v.strip(), flags=re.IGNORECASE).upper()
        name = "MT" if name == "M" else name
        return name if name in CHROMOSOMES else None
    return pd.Categorical(values.astype("object").map(one), categories=CHROMOSOMES, ordered=True)


def standard_annotation(gene_id: pd.Series, symbol: pd.Series, contig: pd.Series, biotype: pd.Series,
                        path: Path | str, start: pd.Series | None = None,
                        end: pd.Series | None = None) -> pd.DataFrame:
    """The standard table (module docstring) from source columns of equal length."""
    missing_pos = pd.Series(pd.NA, index=gene_id.index, dtype="Int64")
    table = pd.DataFrame({
        "gene_id": unversioned_gene_ids(gene_id, path),
        "symbol": blank_to_na(symbol),
        "chromosome": normalise_chromosome(contig),
        "start": missing_pos if start is None else pd.to_numeric(start).round().astype("Int64"),
        "end": missing_pos if end is None else pd.to_numeric(end).round().astype("Int64"),
        "biotype": blank_to_na(biotype),
    })
    duplicated = table["gene_id"].duplicated(keep="first")
    n_nonstandard = int((table["chromosome"].isna() & blank_to_na(contig).notna()).sum())
    table = table[~duplicated].reset_index(drop=True)
    table.attrs.update(n_duplicates_dropped=int(duplicated.sum()), n_nonstandard_contig=n_nonstandard,
                       source=str(path))
    return table


def read_iobr_annotation_rda(path: str | Path) -> pd.DataFrame:
    """IOBR ``anno_grch38`` (66,533 rows; 65,988 genes after dropping repeated ids) as the standard table."""
    frame = load_r_frame(path, IOBR_WHAT, ["id", "symbol", "chr", "start", "end", "biotype"])
    return standard_annotation(frame["id"], frame["symbol"], frame["chr"], frame["biotype"], path,
                               start=frame["start"], end=frame["end"])


def read_pirlygenes_reference(path: str | Path) -> pd.DataFrame:
    """pirlygenes canonical gene reference (Ensembl 112, 63,140 genes) as the standard table (no coordinates)."""
    table = read_text_table(path, PIRLYGENES_WHAT, dtype=str)
    require_columns(table, ["ensembl_gene_id", "symbol", "contig", "biotype"], path,
                    f"Expected {PIRLYGENES_WHAT}.")
    return standard_annotation(table["ensembl_gene_id"], table["symbol"], table["contig"], table["biotype"], path)
