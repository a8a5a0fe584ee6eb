"""Gene-identifier harmonisation: any expression row label → the unversioned Ensembl gene id of a pinned annotation.

The paper joins TCGA and Oncopole expression on the version-less Ensembl id (reference §2.3). The forms met in
practice, and how each is read (``kind`` in :class:`GeneIdMatch`):

* ``ensembl`` — ``ENSG00000141510``: looked up as is;
* ``ensembl_versioned`` — ``ENSG00000141510.17`` (GENCODE/TCGA): the ``.N`` version is dropped;
* ``par_y`` — ``ENSG00000002586.20_PAR_Y``: GENCODE's Y copy of a pseudo-autosomal gene, same id as the X copy
  (see below);
* ``ensembl_symbol`` — ``ENSG00000141510_TP53`` (Oncopole): cut at the first ``_``, the id is looked up;
* ``symbol`` — ``TP53``: the unique exact symbol of the annotation; only if there is none, a unique
  case-insensitive match (the reason says so); a symbol naming several genes is unmatched as ``ambiguous``.
  Symbols are never guessed through aliases: an old name (e.g. ``TMSL8``, now ``TMSB15A``) is reported unmatched.

PAR_Y rows: GENCODE (hence every GDC STAR-counts file) lists each pseudo-autosomal gene twice, the X row and a
``_PAR_Y`` row with the same id; reads are assigned to the X copy, so the PAR_Y row holds zeros. The paper keeps one
row of each duplicated pair; here the **X row is kept** and the PAR_Y row dropped, whatever the row order, so summing
duplicates never counts a gene twice. A PAR_Y row without its X row is kept (mapped to the X id).

The authors also drop ``ENSG00000286105`` by hand (:data:`PAPER_DROPPED_IDS`); nothing is dropped unless asked with
``drop_ids``. Nothing here reaches the web: the annotation table is the standard table of
:mod:`gbhet_lib.data.readers.annotation` (``gene_id``, ``symbol``, ...) or a cohort's ``genes.tsv`` (index gene_id).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Literal

import numpy as np
import pandas as pd

KINDS: tuple[str, ...] = ("ensembl", "ensembl_versioned", "par_y", "ensembl_symbol", "symbol")
#: the gene the paper's code drops explicitly (reference §2.3); pass as ``drop_ids`` to do the same
PAPER_DROPPED_IDS: tuple[str, ...] = ("ENSG00000286105",)
Duplicates = Literal["sum", "first", "mean"]

_ENSEMBL = re.compile(r"^(ENS[A-Z]*G\d{11})(\.\d+)?(?:_(.*))?$")
_TABLE_COLUMNS = ["input", "kind", "gene_id", "reason", "keep"]
NOT_IN_ANNOTATION = "not in annotation"
PAR_Y_WITH_X = "PAR_Y copy of a gene whose X row is also present: dropped, the X row is kept"


@dataclass(frozen=True)
class GeneIdMatch:
    """How each input identifier was mapped.

    ``table`` has one row per input, in input order: ``input`` (the identifier as given), ``kind`` (see the module
    docstring), ``gene_id`` (unversioned Ensembl id, NaN when unmatched), ``reason`` (how it matched, or why not:
    ``not in annotation``, ``ambiguous: ...``, ``missing id``) and ``keep`` (matched and not dropped: neither a
    PAR_Y copy of a present X row nor in ``drop_ids``).
    """

    table: pd.DataFrame

    @property
    def n_input(self) -> int:
        return len(self.table)

    @property
    def n_matched(self) -> int:
        return int(self.table["gene_id"].notna().sum())

    @property
    def n_kept(self) -> int:
        return int(self.table["keep"].sum())

    @property
    def unmatched(self) -> list[str]:
        """The inputs that map to no gene, in input order."""
        return self.table.loc[self.table["gene_id"].isna(), "input"].astype(str).tolist()

    @property
    def counts(self) -> pd.DataFrame:
        """Per kind: number of inputs, matched and kept (rows in :data:`KINDS` order)."""
        t = self.table
        grouped = pd.DataFrame({"input": 1, "matched": t["gene_id"].notna(), "kept": t["keep"]}).groupby(t["kind"])
        return grouped.sum().astype(int).reindex(list(KINDS), fill_value=0)

    def __str__(self) -> str:
        t = self.table
        by_kind = ", ".join(f"{kind} {n}" for kind, n in self.counts["matched"].items() if n)
        text = f"{self.n_matched} of {self.n_input} identifiers matched" + (f" ({by_kind})" if by_kind else "")
        unmatched = t[t["gene_id"].isna()]
        if len(unmatched):
            shown = "; ".join(f"{row.input} ({row.reason})" for row in unmatched.head(5).itertuples())
            text += f"; {len(unmatched)} unmatched, e.g. {shown}"
        dropped = t[t["gene_id"].notna() & ~t["keep"]]
        if len(dropped):
            text += f"; {len(dropped)} matched but dropped ({', '.join(dropped['input'].astype(str).head(5))})"
        case_insensitive = int(t["reason"].str.contains("case-insensitive").sum())
        if case_insensitive:
            text += f"; {case_insensitive} matched only case-insensitively"
        return text


@dataclass(frozen=True)
class _Lookup:
    """Annotation indexes: known gene ids, and symbol → gene ids (exact and upper-cased)."""

    gene_ids: frozenset[str]
    by_symbol: dict[str, list[str]]
    by_upper: dict[str, list[str]]

    @classmethod
    def build(cls, annotation: pd.DataFrame) -> _Lookup:
        table = annotation.reset_index() if annotation.index.name == "gene_id" else annotation
        missing = [c for c in ("gene_id", "symbol") if c not in table.columns]
        if missing:
            raise ValueError(f"annotation lacks {missing} (columns: {list(table.columns)[:8]}); pass the standard "
                             "table of gbhet_lib.data.readers (read_pirlygenes_reference, read_iobr_annotation_rda) "
                             "or a cohort's genes.tsv")
        pairs = table[["symbol", "gene_id"]].dropna().astype(str).drop_duplicates()
        by_symbol: dict[str, list[str]] = {}
        by_upper: dict[str, list[str]] = {}
        for symbol, gene_id in zip(pairs["symbol"], pairs["gene_id"]):
            by_symbol.setdefault(symbol, []).append(gene_id)
            same_case_insensitive = by_upper.setdefault(symbol.upper(), [])
            if gene_id not in same_case_insensitive:
                same_case_insensitive.append(gene_id)
        return cls(frozenset(table["gene_id"].dropna().astype(str)), by_symbol, by_upper)


def classify_gene_id(identifier: str) -> tuple[str, str]:
    """(kind, key): ``key`` is the unversioned Ensembl id, or the symbol for kind ``symbol``."""
    match = _ENSEMBL.match(identifier)
    if match is None:
        return "symbol", identifier
    gene_id, version, suffix = match.groups()
    if suffix == "PAR_Y":
        return "par_y", gene_id
    if suffix is not None:
        return "ensembl_symbol", gene_id
    return ("ensembl_versioned" if version else "ensembl"), gene_id


def _match_one(identifier: object, lookup: _Lookup) -> tuple[str, str | None, str]:
    """(kind, gene id or None, reason) of one identifier."""
    if not isinstance(identifier, str) or not identifier.strip():
        return "symbol", None, "missing id"
    kind, key = classify_gene_id(identifier.strip())
    if kind != "symbol":
        if key not in lookup.gene_ids:
            return kind, None, NOT_IN_ANNOTATION
        reasons = {"ensembl": "Ensembl id", "ensembl_versioned": "Ensembl id, version dropped",
                   "par_y": "PAR_Y copy, mapped to the X gene id",
                   "ensembl_symbol": "Ensembl id cut at '_'"}
        return kind, key, reasons[kind]
    exact = lookup.by_symbol.get(key)
    candidates, how = (exact, "symbol") if exact else (lookup.by_upper.get(key.upper()), "symbol, case-insensitive")
    if not candidates:
        return kind, None, NOT_IN_ANNOTATION
    if len(candidates) > 1:
        return kind, None, f"ambiguous: symbol names {len(candidates)} genes ({', '.join(candidates[:4])})"
    return kind, candidates[0], how


def harmonise_gene_ids(ids: Iterable[object], annotation: pd.DataFrame, drop_ids: Iterable[str] = ()) -> GeneIdMatch:
    """Map identifiers (any mix of the module docstring's forms) to unversioned Ensembl ids of ``annotation``.

    Args:
        ids: the identifiers, e.g. an expression table's row labels.
        annotation: standard annotation table (column or index ``gene_id``; column ``symbol``).
        drop_ids: gene ids (versioned or not) to leave out, e.g. :data:`PAPER_DROPPED_IDS`; they stay in the
            table as matched with ``keep`` False.
    """
    lookup = _Lookup.build(annotation)
    inputs = list(ids)
    table = pd.DataFrame([_match_one(i, lookup) for i in inputs], columns=["kind", "gene_id", "reason"])
    table.insert(0, "input", pd.Series(inputs, dtype=object))
    table["gene_id"] = table["gene_id"].astype(object).where(table["gene_id"].notna(), np.nan)
    dropped = {classify_gene_id(str(d).strip())[1] for d in drop_ids}
    x_ids = set(table.loc[(table["kind"] != "par_y") & table["gene_id"].notna(), "gene_id"])
    par_y_with_x = (table["kind"] == "par_y") & table["gene_id"].isin(x_ids)
    in_drop = table["gene_id"].isin(dropped)
    table.loc[par_y_with_x, "reason"] = PAR_Y_WITH_X
    table.loc[in_drop, "reason"] = table.loc[in_drop, "reason"] + "; dropped (drop_ids)"
    table["keep"] = table["gene_id"].notna() & ~par_y_with_x & ~in_drop
    return GeneIdMatch(table[_TABLE_COLUMNS])


def harmonise_expression(expression: pd.DataFrame, annotation: pd.DataFrame, duplicates: Duplicates = "sum",
                         drop_ids: Iterable[str] = ()) -> tuple[pd.DataFrame, GeneIdMatch]:
    """Re-index an expression table (genes × samples) on unversioned Ensembl ids.

    Unmatched and dropped rows go (see the returned :class:`GeneIdMatch`); rows mapping to the same gene are
    collapsed by ``duplicates``: ``sum`` (raw counts: reads of one gene split over several rows), ``first`` (keep
    the first row in input order) or ``mean`` (already normalised values). Genes keep their first-appearance order.

    Returns:
        (genes × samples table indexed by ``gene_id``, same columns; the match report).
        ``table.attrs["n_collapsed"]`` is the number of rows merged into another.
    """
    if duplicates not in ("sum", "first", "mean"):
        raise ValueError(f"duplicates={duplicates!r}: use 'sum' (raw counts), 'first' or 'mean' (normalised values)")
    text = [c for c in expression.columns if not pd.api.types.is_numeric_dtype(expression[c])]
    if text:
        raise ValueError(f"expression column(s) {text[:3]} are not numeric: the table must be genes × samples with "
                         "only sample columns (move annotation columns such as symbols into the index or drop them)")
    match = harmonise_gene_ids(expression.index, annotation, drop_ids)
    keep = match.table["keep"].to_numpy()
    if not keep.any():
        raise ValueError(f"no expression row maps to a gene of the annotation ({match}); check that the rows are "
                         "genes (transpose a samples × genes table) and that the annotation is of the same species")
    kept = expression.iloc[np.flatnonzero(keep)].copy()
    kept.index = pd.Index(match.table.loc[keep, "gene_id"].to_numpy(), name="gene_id")
    if not kept.index.has_duplicates:
        out = kept
    elif duplicates == "first":
        out = kept[~kept.index.duplicated(keep="first")]
    else:
        grouped = kept.groupby(level=0, sort=False)
        out = grouped.sum(min_count=1) if duplicates == "sum" else grouped.mean()
    out.columns = expression.columns
    out.attrs = {**expression.attrs, "n_collapsed": len(kept) - len(out)}
    return out, match
