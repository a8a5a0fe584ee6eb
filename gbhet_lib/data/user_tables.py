"""Bring your own tables: the one reader of a user's expression, clinical and trait files, for every chapter.

What it accepts:

* text tables (``.csv``, ``.tsv``, ``.txt``, ``.tab``; gzip allowed) whose delimiter — comma, tab or semicolon — is
  **sniffed** from the first lines, whatever the extension (a semicolon file also gets its decimal comma read);
  expression may also come as ``.h5ad`` (obs = samples, var = genes);
* an expression matrix in either orientation, chosen from the labels (Ensembl ids or annotation symbols) or given
  (``orientation``); in a wide table, the gene columns picked by ``expression_columns`` (a regular expression
  whose first group is the gene, e.g. ``(.+)_rnaseq``) and the sample ids by ``sample_column``;
* a clinical or trait table keyed by sample or patient id (``clinical_id_column`` or found automatically), matched
  to the expression's samples exactly or through TCGA patient barcodes (TCGA-02-0001 ↔ TCGA-02-0001-01A).

Everything the reader decides (delimiter, orientation, repeated samples and how they were aggregated, duplicated
genes and the rule applied, the id column, the matches, the survival columns, units and event coding) is written
to a :class:`ReadReport` kept in ``table.attrs["report"]``; :func:`report_table` turns reports into the table a
chapter shows. Every problem raises :class:`UserTableError` naming the file, the row or column, and the fix in
terms of the chapter's parameters (``set `expression_columns=` in chapter 2's parameters``): the keyword
arguments here carry those parameters' names (``values`` is the chapters' ``expression_values``).
"""
from __future__ import annotations

import csv
import gzip
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from ..errors import GbhetError
from .readers._common import ReaderError, blank_to_na, patient_barcode

log = logging.getLogger(__name__)

ORIENTATIONS = ("auto", "genes_x_samples", "samples_x_genes")
VALUES = ("counts", "normalised")
AGGREGATIONS = ("mean", "sum", "first")
#: survival time units and their length in days
TIME_UNITS = {"days": 1.0, "months": 365.25 / 12, "years": 365.25}
TEXT_SUFFIXES = (".csv", ".tsv", ".txt", ".tab")
DELIMITERS = {"\t": "tab", ";": "semicolon", ",": "comma"}  # in order of preference when several fit
#: event codings understood (lower case): 1 = the event (death), 0 = censored
EVENT_CODES = {"1": 1, "0": 0, "true": 1, "false": 0, "dead": 1, "deceased": 1, "died": 1, "death": 1,
               "alive": 0, "living": 0, "censored": 0, "yes": 1, "no": 0, "1:deceased": 1, "0:living": 0}
BINARY_CODES = {"1": 1, "0": 0, "true": 1, "false": 0, "yes": 1, "no": 0, "present": 1, "absent": 0}
#: survival columns looked for when none is named (compared lower case, with '.', '-' and ' ' read as '_')
TIME_NAMES = ("os_days", "os_time", "os_months", "os", "overall_survival", "survival_time", "time")
EVENT_NAMES = ("os_event", "os_status", "event", "status", "vital_status", "dead", "death")
ID_HINTS = ("sample", "patient", "case", "barcode", "submitter", "id")
_ENSEMBL_LABEL = re.compile(r"^ENS[A-Z]*G\d{11}")
_SNIFF_LINES = 20


class UserTableError(ReaderError, GbhetError):
    """A user's table cannot be read as asked; the message names the file, the row or column and the fix
    (a chapter parameter to set, or what to change in the file)."""


@dataclass
class ReadReport:
    """What the reader decided about one file, step by step (``steps``: step → decision, in order)."""

    path: str
    kind: str
    steps: dict[str, str] = field(default_factory=dict)

    def note(self, step: str, decision: str) -> None:
        """Record (and log) one decision."""
        self.steps[step] = decision
        log.info("%s: %s: %s", self.path, step, decision)

    def to_frame(self) -> pd.DataFrame:
        """One row per step: ``table`` (kind), ``step``, ``decision``."""
        return pd.DataFrame({"table": self.kind, "step": list(self.steps), "decision": list(self.steps.values())})


def report_table(*reports: ReadReport | None) -> pd.DataFrame:
    """The reports of the files read (None skipped) as one table: ``table``, ``step``, ``decision``."""
    frames = [r.to_frame() for r in reports if r is not None]
    if not frames:
        return pd.DataFrame(columns=["table", "step", "decision"])
    return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class _Where:
    """The file being read, the parameter that named it and the chapter whose parameters the fixes name."""

    path: Path
    parameter: str
    chapter: str

    def error(self, problem: str, fix: str) -> UserTableError:
        return UserTableError(f"{self.path}: {problem}. Fix: {fix}.")

    def set(self, *settings: str, join: str = "or") -> str:
        """'set `a` or `b` in chapter N's parameters' (``join``: or | and)."""
        return "set " + f" {join} ".join(f"`{s}`" for s in settings) + f" in {self.chapter}'s parameters"


# ------------------------------------------------------------------------------------------------ files
def _check_file(where: _Where, what: str) -> None:
    p = where.path
    if not p.exists():
        raise where.error(f"file not found (expected {what})", f"check `{where.parameter}=` in {where.chapter}'s "
                          "parameters")
    if not p.is_file():
        raise where.error(f"is a folder, not a file (expected {what})",
                          f"point `{where.parameter}=` at the file itself")
    if p.stat().st_size == 0:
        raise where.error(f"the file is empty (0 bytes; expected {what})",
                          f"save the table again and point `{where.parameter}=` at it")


def _is_gzip(p: Path) -> bool:
    with p.open("rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _text_head(where: _Where, what: str, n_bytes: int = 1 << 16) -> list[str]:
    """The first lines of the (decompressed) file, the last, maybe cut, one dropped unless it is all there."""
    opener: Any = gzip.open if _is_gzip(where.path) else open
    try:
        with opener(where.path, "rb") as fh:
            raw = fh.read(n_bytes)
            complete = not fh.read(1)
        text = raw.decode("utf-8-sig")
    except (OSError, EOFError) as err:
        raise where.error(f"cannot be decompressed ({err})", "save the table again (gzip or plain text)") from None
    except UnicodeDecodeError:
        raise where.error(f"is not a UTF-8 text table (a binary file?); expected {what}",
                          "save the table as CSV or TSV text") from None
    lines = text.splitlines()
    return lines if complete else lines[:-1]


def _fields(line: str, sep: str) -> list[str]:
    return next(csv.reader([line], delimiter=sep))


def sniff_delimiter(lines: Sequence[str]) -> tuple[str, int]:
    """The delimiter (tab, semicolon or comma; in that order of preference) that splits most of the first
    non-empty data ``lines`` (at least half) into the same number of fields k >= 2, the header into k or k - 1 (an
    R-style header without a corner cell). A stray longer row is left for the parser to report by its line.
    Returns (delimiter, k); ("", 0) if none fits."""
    sample = [line for line in lines if line.strip()][:_SNIFF_LINES]
    for sep in DELIMITERS:
        counts = [len(_fields(line, sep)) for line in sample]
        data = pd.Series(counts[1:] or counts)
        width, n = int(data.mode().iloc[0]), int((data == data.mode().iloc[0]).sum())
        if width >= 2 and n >= 0.5 * len(data) and counts[0] in (width, width - 1):
            return sep, width
    return "", 0


def _read_text(where: _Where, what: str, report: ReadReport, dtype: Any = None) -> pd.DataFrame:
    """Sniff, then parse with pandas: the header row by hand (names unmangled: duplicates stay visible), the
    rows by ``read_csv`` (``dtype`` passed on)."""
    lines = _text_head(where, what)
    nonblank = [i for i, line in enumerate(lines) if line.strip()]
    if not nonblank:
        raise where.error(f"holds no text lines (expected {what})", f"point `{where.parameter}=` at the table")
    sep, width = sniff_delimiter(lines)
    if not sep:
        shown = lines[nonblank[0]][:60]
        raise where.error(f"found no delimiter (comma, tab or semicolon) that splits the first lines into the same "
                          f"number of columns (first line: {shown!r}); expected {what}",
                          "save the table with one delimiter throughout and a header row")
    header_at = nonblank[0]
    data_lines = [lines[i] for i in nonblank[1:]]
    decimal = "," if sep == ";" and any(re.search(r"\d,\d", line) for line in data_lines) else "."
    header = [h.strip() for h in _fields(lines[header_at], sep)]
    try:
        frame = pd.read_csv(where.path, sep=sep, header=None, skiprows=header_at + 1, decimal=decimal, dtype=dtype,
                            compression="gzip" if _is_gzip(where.path) else None, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise where.error(f"the table has a header ({len(header)} columns, {DELIMITERS[sep]}-delimited) but no data "
                          "rows", "save the table with its rows") from None
    except pd.errors.ParserError as err:
        raise where.error(f"cannot be parsed as a {DELIMITERS[sep]}-delimited table ({_parser_problem(err)})",
                          "give every row as many fields as the header") from None
    if len(header) == frame.shape[1] - 1:  # R style: no corner cell above the row labels
        header = [""] + header
    if len(header) != frame.shape[1]:
        raise where.error(f"the header has {len(header)} columns but the first data row has {frame.shape[1]} "
                          f"({DELIMITERS[sep]}-delimited)", "give every row as many fields as the header")
    frame.columns = pd.Index(header, dtype=object)
    report.note("format", f"text, {DELIMITERS[sep]}-delimited (sniffed from the first {min(len(nonblank), _SNIFF_LINES)}"
                f" lines: {width} fields per row){', decimal comma' if decimal == ',' else ''}"
                f"{', gzip' if _is_gzip(where.path) else ''}; {len(frame)} data rows × {len(header)} columns")
    return frame


def _parser_problem(err: Exception) -> str:
    """pandas' parser error in words (pandas counts the file's lines, header included)."""
    found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(err))
    if found is None:
        return str(err).strip()
    expected, line, saw = map(int, found.groups())
    return f"line {line} has {saw} fields where the rows above have {expected}"


# ------------------------------------------------------------------------------------------------ expression
EXPRESSION_WHAT = ("an expression matrix: genes × samples or samples × genes with one header row, as CSV/TSV "
                   "(optionally .gz), or .h5ad (obs = samples, var = genes)")


def read_expression_table(path: str | Path, orientation: str = "auto", values: str = "counts",
                          annotation: pd.DataFrame | None = None, layer: str | None = None, *,
                          expression_columns: str | None = None, sample_column: str | None = None,
                          aggregate_samples: str = "mean", chapter: str = "the chapter",
                          parameter: str = "expression_path") -> pd.DataFrame:
    """Read a user's expression matrix as genes × samples (float64; index ``gene``, columns ``sample``).

    Args:
        path: CSV/TSV/TXT/TAB (``.gz`` allowed; delimiter sniffed) or ``.h5ad``.
        orientation: ``auto`` (the axis whose labels look like gene ids: Ensembl ``ENSG…`` or, with
            ``annotation``, its symbols), ``genes_x_samples`` or ``samples_x_genes`` (what the file holds).
        values: ``counts`` (raw counts: >= 0; duplicated genes summed) or ``normalised`` (any finite values;
            duplicated genes averaged).
        annotation: standard annotation table (column ``symbol``); lets ``auto`` recognise symbols.
        layer: for .h5ad, the layer to read instead of ``X``.
        expression_columns: regular expression matching the gene columns in full, its first group the gene
            (``(.+)_rnaseq``: ``TP53_rnaseq`` → ``TP53``); other columns are ignored. Implies samples × genes.
        sample_column: the column (h5ad: the obs column) of sample ids; None: the first column (h5ad: obs_names).
        aggregate_samples: rows of a repeated sample (e.g. one per slide): ``mean`` (counts rounded to whole
            counts), ``sum`` (technical replicates of counts) or ``first``.
        chapter, parameter: named in the fixes ("set `expression_columns=` in chapter 2's parameters").

    Returns:
        genes × samples; ``attrs``: ``source``, ``orientation`` (what was decided and why), ``values``,
        ``report`` (:class:`ReadReport`).
    """
    where = _Where(Path(path), parameter, chapter)
    _check_choice(where, "orientation", orientation, ORIENTATIONS)
    _check_choice(where, "expression_values", values, VALUES)
    _check_choice(where, "aggregate_samples", aggregate_samples, AGGREGATIONS)
    report = ReadReport(str(where.path), "expression")
    _check_file(where, EXPRESSION_WHAT)
    labels, block, columns_of = _expression_block(where, report, layer, expression_columns, sample_column)
    wide = expression_columns is not None or sample_column is not None
    if wide and orientation == "genes_x_samples":
        raise where.error("orientation='genes_x_samples' contradicts expression_columns/sample_column, which pick "
                          "gene columns and a column of sample ids", where.set("orientation='samples_x_genes'",
                                                                               "orientation='auto'"))
    if wide:
        transpose, note = True, "samples × genes (rows = samples: implied by expression_columns/sample_column)"
    else:
        transpose, note = _decide_orientation(labels, block.columns, orientation, annotation, where)
    report.note("orientation", note)
    numeric = _to_numeric(labels, block, columns_of, transpose, where)
    samples_x_genes = numeric if transpose else numeric.T
    samples_x_genes = _check_values(samples_x_genes, values, where)
    samples_x_genes = _aggregate_samples(samples_x_genes, aggregate_samples, values, report)
    samples_x_genes = _merge_genes(samples_x_genes, values, "columns" if transpose else "rows", report)
    table = samples_x_genes.T.rename_axis(index="gene", columns="sample")
    report.note("result", f"{table.shape[0]} genes × {table.shape[1]} samples, "
                f"{'raw counts (checked >= 0)' if values == 'counts' else 'normalised values'}")
    table.attrs = {"source": str(where.path), "orientation": note, "values": values, "report": report}
    return table


def _check_choice(where: _Where, name: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise where.error(f"{name}={value!r} is not one of {', '.join(map(repr, allowed))}",
                          where.set(f"{name}=") + " to one of them")


def _expression_block(where: _Where, report: ReadReport, layer: str | None, expression_columns: str | None,
                      sample_column: str | None) -> tuple[pd.Index, pd.DataFrame, list[str]]:
    """(row labels, the block of values with its column labels, each block column's name in the file)."""
    name = where.path.name.lower()
    if name.endswith(".h5ad"):
        labels, block = _h5ad_block(where, report, layer, sample_column)
    else:
        if not name.removesuffix(".gz").endswith(TEXT_SUFFIXES):
            raise where.error(f"unsupported file type; expected {EXPRESSION_WHAT}",
                              "save the matrix as TSV, CSV or h5ad")
        if layer is not None:
            raise where.error(f"layer={layer!r} applies to .h5ad files only", "leave layer out for text tables")
        labels, block = _split_labels(_read_text(where, EXPRESSION_WHAT, report), sample_column, where)
    source = [str(c) for c in block.columns]
    if expression_columns is not None:
        block, source = _select_gene_columns(block, expression_columns, where, report)
    else:
        rows = "the first column" if sample_column is None else f"column {sample_column!r}"
        report.note("columns", f"row labels: {rows}; values: the other {block.shape[1]} columns")
    _check_labels(labels, block.columns, where)
    return labels, block, source


def _h5ad_block(where: _Where, report: ReadReport, layer: str | None,
                sample_column: str | None) -> tuple[pd.Index, pd.DataFrame]:
    import anndata as ad
    from scipy import sparse

    try:
        adata = ad.read_h5ad(where.path)
    except Exception as err:  # h5py/anndata raise many types on a damaged or foreign HDF5 file
        raise where.error(f"cannot be read as .h5ad ({type(err).__name__}: {err}); expected {EXPRESSION_WHAT}",
                          "save the matrix again as h5ad, TSV or CSV") from None
    if layer is not None and layer not in adata.layers:
        raise where.error(f"no layer {layer!r} (layers: {list(adata.layers)})", "pass one of them, or layer=None "
                          "for X")
    matrix = adata.X if layer is None else adata.layers[layer]
    dense = matrix.toarray() if sparse.issparse(matrix) else np.asarray(matrix)
    labels = adata.obs_names.astype(object)
    if sample_column is not None:
        if sample_column not in adata.obs:
            raise where.error(f"obs has no column {sample_column!r} (obs columns: {list(adata.obs.columns)})",
                              where.set("sample_column=") + " to one of them, or None for obs_names")
        labels = pd.Index(adata.obs[sample_column].astype(str), dtype=object)
    report.note("format", f"h5ad, {'X' if layer is None else 'layer ' + repr(layer)}: {adata.n_obs} obs × "
                f"{adata.n_vars} var")
    return pd.Index(labels), pd.DataFrame(dense, columns=adata.var_names.astype(object))


def _split_labels(frame: pd.DataFrame, sample_column: str | None, where: _Where) -> tuple[pd.Index, pd.DataFrame]:
    """Row labels (``sample_column``, else the first column) and the other columns."""
    names = [str(c) for c in frame.columns]
    if sample_column is None:
        position = 0
    elif names.count(sample_column) == 1:
        position = names.index(sample_column)
    else:
        problem = "no" if sample_column not in names else "more than one"
        raise where.error(f"{problem} column named {sample_column!r} (columns: {_shown(names)})",
                          where.set("sample_column=") + " to the column of sample ids")
    labels = pd.Index(frame.iloc[:, position].map(lambda v: v if pd.isna(v) else str(v).strip()), dtype=object)
    rest = frame.iloc[:, [i for i in range(frame.shape[1]) if i != position]]
    return labels, rest


def _select_gene_columns(block: pd.DataFrame, pattern: str, where: _Where,
                         report: ReadReport) -> tuple[pd.DataFrame, list[str]]:
    """The columns whose name matches ``pattern`` in full, renamed to its first group."""
    try:
        regex = re.compile(pattern)
    except re.error as err:
        raise where.error(f"expression_columns={pattern!r} is not a regular expression ({err})",
                          where.set("expression_columns=") + " to e.g. '(.+)_rnaseq'") from None
    if regex.groups < 1:
        raise where.error(f"expression_columns={pattern!r} has no group to take the gene name from",
                          where.set("expression_columns=") + " with the gene in parentheses, e.g. '(.+)_rnaseq'")
    names = [str(c) for c in block.columns]
    matches = [(i, m.group(1)) for i, c in enumerate(names) if (m := regex.fullmatch(c))]
    if not matches:
        raise where.error(f"no column matches expression_columns={pattern!r} in full (columns: {_shown(names)})",
                          where.set("expression_columns=") + " to a regular expression matching the gene columns, "
                          "its first group the gene (e.g. '(.+)_rnaseq' for TP53_rnaseq)")
    positions = [i for i, _ in matches]
    ignored = [n for i, n in enumerate(names) if i not in set(positions)]
    first = names[positions[0]]
    report.note("columns", f"{len(matches)} of {len(names)} value columns match {pattern!r}, gene = group 1 "
                f"({first!r} → {matches[0][1]!r}); {len(ignored)} ignored"
                + (f" ({_shown(ignored, 6)})" if ignored else ""))
    selected = block.iloc[:, positions]
    selected.columns = pd.Index([g for _, g in matches], dtype=object)
    return selected, [names[i] for i in positions]


def _check_labels(labels: pd.Index, columns: pd.Index, where: _Where) -> None:
    """Every row and column has a label."""
    for axis, values in (("row", labels), ("column", columns)):
        blank = pd.Series(values.isna(), dtype=bool).to_numpy() | (values.astype(str).str.strip() == "")
        if blank.any():
            at = int(np.flatnonzero(blank)[0]) + 1
            raise where.error(f"data {axis} {at} has no label ({int(blank.sum())} such {axis}s)",
                              "give every gene and sample a name in the file")


def gene_like_fraction(labels: Iterable[Any], symbols: frozenset[str]) -> float:
    """Fraction of ``labels`` that are Ensembl gene ids (any suffix) or, upper-cased, in ``symbols``."""
    text = pd.Series([str(v) for v in labels], dtype=object)
    like = text.str.match(_ENSEMBL_LABEL) | text.str.upper().isin(symbols)
    return float(like.mean()) if len(text) else 0.0


def _decide_orientation(labels: pd.Index, columns: pd.Index, orientation: str, annotation: pd.DataFrame | None,
                        where: _Where) -> tuple[bool, str]:
    """(transpose?: True when the rows are samples, what was decided and why)."""
    if orientation != "auto":
        return orientation == "samples_x_genes", f"read as {orientation.replace('_x_', ' × ')} (as given)"
    symbols = frozenset() if annotation is None else frozenset(annotation["symbol"].dropna().astype(str).str.upper())
    rows, cols = gene_like_fraction(labels, symbols), gene_like_fraction(columns, symbols)
    counted = (f"{rows:.0%} of {len(labels)} row labels and {cols:.0%} of {len(columns)} column labels look like "
               f"gene ids (Ensembl ENSG…{'' if annotation is None else ' or annotation symbols'})")
    if max(rows, cols) < 0.5:
        raise where.error(f"no column or row looks like gene ids: {counted}", _orientation_fix(columns, symbols,
                                                                                               annotation, where))
    if rows == cols:
        raise where.error(f"rows and columns look equally like gene ids ({counted})",
                          where.set("orientation='genes_x_samples'", "orientation='samples_x_genes'"))
    decided = "samples × genes (transposed)" if cols > rows else "genes × samples"
    return cols > rows, f"auto: {decided}: {counted}"


def _orientation_fix(columns: pd.Index, symbols: frozenset[str], annotation: pd.DataFrame | None,
                     where: _Where) -> str:
    """What to set when no axis looks like genes: a gene-column pattern when the columns carry an affix."""
    patterns = affix_patterns(columns, symbols)
    if patterns:
        others = f" (other candidates: {_shown(patterns[1:], 3)})" if len(patterns) > 1 else ""
        return ("the columns look like genes with an affix: "
                + where.set(f"expression_columns={patterns[0]!r}", "sample_column=", join="and")
                + f", sample_column naming the column of sample ids{others}")
    hint = "" if annotation is not None else " (gene symbols are recognised only with an annotation)"
    return where.set("orientation='genes_x_samples'", "orientation='samples_x_genes'") + hint + \
        ", or `expression_columns=` to pick the gene columns of a wide table"


#: (how a column name splits into gene and affix, the ``expression_columns`` pattern built from the affix)
_AFFIXES = ((r"^(?P<gene>.+)(?P<affix>[_.|-][A-Za-z0-9]+)$", "(.+){}"),
            (r"^(?P<affix>[A-Za-z0-9]+[_.|-])(?P<gene>.+)$", "{}(.+)"))


def affix_patterns(columns: Iterable[Any], symbols: frozenset[str], min_genes: int = 2) -> list[str]:
    """Regular expressions for ``expression_columns`` under which gene-like names hide behind a suffix or prefix
    (``TP53_rnaseq`` → ``(.+)_rnaseq``), the most genes first; each covers >= ``min_genes`` gene-like names,
    at least half of the names with its affix."""
    names = pd.Series([str(c) for c in columns], dtype=object)
    found: dict[str, int] = {}
    for regex, template in _AFFIXES:
        parts = names.str.extract(regex).dropna()
        for affix, genes in parts.groupby("affix")["gene"]:
            n_like = round(gene_like_fraction(genes, symbols) * len(genes))
            if n_like >= min_genes and n_like >= 0.5 * len(genes):
                found[template.format(re.escape(str(affix)))] = n_like
    return sorted(found, key=lambda p: -found[p])


def _to_numeric(labels: pd.Index, block: pd.DataFrame, source: list[str], transpose: bool,
                where: _Where) -> pd.DataFrame:
    """The block as float64, rows = ``labels`` (genes, or samples when ``transpose``), columns as in ``block``;
    a non-numeric cell is an error naming its row, its column in the file (``source``), gene and sample."""
    all_numeric = all(pd.api.types.is_numeric_dtype(t) for t in block.dtypes)
    converted = block if all_numeric else block.apply(pd.to_numeric, errors="coerce")
    bad = converted.isna().to_numpy() & block.notna().to_numpy()
    if bad.any():
        row, col = map(int, np.argwhere(bad)[0])
        bad_columns = [source[j] for j in np.flatnonzero(bad.any(axis=0))]
        gene, sample = (block.columns[col], labels[row]) if transpose else (labels[row], block.columns[col])
        told = f"data row {row + 1}, column {source[col]!r} (gene {gene!r}, sample {sample!r})"
        raise where.error(f"{told} holds {block.iat[row, col]!r}, not a number ({int(bad.sum())} such cells in "
                          f"{len(bad_columns)} column(s): {_shown(bad_columns, 5)})", _text_columns_fix(transpose,
                                                                                                       where))
    out = converted.astype(np.float64)
    out.index = labels
    out.columns = block.columns
    return out


def _text_columns_fix(transpose: bool, where: _Where) -> str:
    if transpose:
        return (where.set("expression_columns=") + " to a regular expression matching only the gene columns, its "
                "first group the gene (e.g. '(.+)_rnaseq'), and `sample_column=` to the column of sample ids; or "
                "remove the text columns from the file")
    return ("remove the text columns (e.g. a symbol or description column) so only the gene labels and numbers "
            "remain, or " + where.set("orientation='samples_x_genes'") + " if the genes are the columns")


def _check_values(table: pd.DataFrame, values: str, where: _Where) -> pd.DataFrame:
    """No missing or infinite value, no negative count (``table``: samples × genes)."""
    data = table.to_numpy()
    problems = [(~np.isfinite(data), "is empty, NA or infinite", "fill or drop those cells in the file")]
    if values == "counts":
        problems.append((data < 0, "is negative", "raw counts are >= 0; for log or centred values "
                         + where.set("expression_values='normalised'")))
    for mask, problem, fix in problems:
        if mask.any():
            row, col = map(int, np.argwhere(mask)[0])
            raise where.error(f"gene {table.columns[col]!r}, sample {table.index[row]!r} {problem} "
                              f"({float(data[row, col])}; {int(mask.sum())} such cells)", fix)
    return table


def _aggregate_samples(table: pd.DataFrame, rule: str, values: str, report: ReadReport) -> pd.DataFrame:
    """One row per sample (``table``: samples × genes): a repeated sample's rows averaged (counts rounded to whole
    counts, which DESeq2 needs), summed (technical replicates of counts, as DESeq2's collapseReplicates) or the
    first kept."""
    repeated = table.index[table.index.duplicated(keep=False)]
    if not len(repeated):
        report.note("repeated samples", "none: one row per sample")
        return table
    counts = pd.Series(repeated).value_counts(sort=False)
    grouped = table.groupby(level=0, sort=False)
    out = {"mean": grouped.mean, "sum": grouped.sum, "first": grouped.first}[rule]()
    done = {"mean": "averaged", "sum": "summed", "first": "first row kept"}[rule]
    if rule == "mean" and values == "counts":
        out, done = out.round(), "averaged and rounded to whole counts"
    report.note("repeated samples", f"{_n(len(counts), 'sample')} on {int(counts.sum())} rows (e.g. {counts.index[0]!r}"
                f" × {counts.iloc[0]}): {done} (aggregate_samples={rule!r}) → {_n(len(out), 'sample')}")
    return out


def _merge_genes(table: pd.DataFrame, values: str, axis: str, report: ReadReport) -> pd.DataFrame:
    """One column per gene label (``table``: samples × genes): counts summed, normalised values averaged;
    ``axis`` (rows | columns) says where the file holds its genes."""
    repeated = table.columns[table.columns.duplicated(keep=False)]
    if not len(repeated):
        report.note("duplicated genes", f"none: one {axis[:-1]} per gene label")
        return table
    counts = pd.Series(repeated).value_counts(sort=False)
    grouped = table.T.groupby(level=0, sort=False)
    out = (grouped.sum() if values == "counts" else grouped.mean()).T
    rule = "summed (raw counts: reads of one gene split over rows)" if values == "counts" else \
        "averaged (normalised values)"
    report.note("duplicated genes", f"{_n(len(counts), 'gene label')} on {int(counts.sum())} {axis} (e.g. "
                f"{counts.index[0]!r} × {counts.iloc[0]}): {rule} → {_n(out.shape[1], 'gene')}")
    return out


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _shown(names: Sequence[Any], n: int = 8) -> str:
    names = [str(x) for x in names]
    return ", ".join(map(repr, names[:n])) + (f" … ({len(names)} in all)" if len(names) > n else "")


# ------------------------------------------------------------------------------------------------ keyed tables
CLINICAL_WHAT = "a clinical table: one row per patient or sample, a header row, an id column"
TRAITS_WHAT = "a traits table: one row per patient or sample, an id column and one 0/1 column per trait"


def read_clinical_table(path: str | Path, samples: Sequence[str], *, clinical_id_column: str | None = None,
                        survival_time_column: str | None = None, survival_event_column: str | None = None,
                        survival_time_unit: str = "days", chapter: str = "the chapter",
                        parameter: str = "clinical_path") -> pd.DataFrame:
    """A user's clinical table, one row per expression sample it matches.

    Args:
        path: CSV/TSV (delimiter sniffed; .gz allowed).
        samples: the expression's sample ids; each is matched to a row by its id, else by its TCGA patient
            barcode (TCGA-02-0001-01A → TCGA-02-0001).
        clinical_id_column: the id column; None: the column matching the most samples.
        survival_time_column, survival_event_column: overall survival's columns; None: looked for among
            :data:`TIME_NAMES` / :data:`EVENT_NAMES` (the evaluation is skipped, and said so, when absent).
        survival_time_unit: ``days``, ``months`` or ``years``: converted to days.
        chapter, parameter: named in the fixes.

    Returns:
        index ``sample`` (the matched expression samples, in their order); ``os_days`` (float, days) and
        ``os_event`` (1 = died, 0 = censored; float, NaN when missing) when survival was found; the file's other
        columns (numbers where every value is one). ``attrs["report"]``: :class:`ReadReport`.
    """
    where = _Where(Path(path), parameter, chapter)
    _check_choice(where, "survival_time_unit", survival_time_unit, list(TIME_UNITS))
    report = ReadReport(str(where.path), "clinical")
    frame = _read_keyed(where, CLINICAL_WHAT, report)
    id_col = _id_column(frame, samples, clinical_id_column, "clinical_id_column", where, report)
    time_col, event_col = _survival_columns(frame, survival_time_column, survival_event_column, where, report)
    _require_match(frame, id_col, samples, "clinical_id_column", where)
    frame = _one_row_per_id(frame, id_col, [c for c in (time_col, event_col) if c], where, report)
    table = _match_samples(frame, id_col, samples, report)
    out = table.drop(columns=[c for c in (id_col, time_col, event_col, "os_days", "os_event") if c],
                     errors="ignore")
    if time_col and event_col:
        days = _survival_days(table[time_col], time_col, survival_time_unit, where, report)
        events = _survival_events(table[event_col], event_col, where, report)
        out = pd.concat([days.rename("os_days"), events.rename("os_event"), out], axis=1)
    out = out.apply(_numbers_where_possible)
    report.note("columns kept", _shown(list(out.columns), 12) or "none")
    out.attrs = {"source": str(where.path), "report": report}
    return out


def read_trait_table(path: str | Path, samples: Sequence[str], traits: Sequence[str], *,
                     traits_id_column: str | None = None, chapter: str = "the chapter",
                     parameter: str = "traits_path") -> pd.DataFrame:
    """A user's binary traits (e.g. VASARI reads), one row per expression sample it matches.

    A trait's column is named as the trait or ``trait_<name>`` (any case); values 0/1, true/false, yes/no or
    present/absent (missing allowed). Returns index ``sample``, one float column per trait (0, 1 or NaN);
    ``attrs["report"]``.
    """
    where = _Where(Path(path), parameter, chapter)
    report = ReadReport(str(where.path), "traits")
    frame = _read_keyed(where, TRAITS_WHAT, report)
    id_col = _id_column(frame, samples, traits_id_column, "traits_id_column", where, report)
    columns = _trait_columns(frame, traits, where)
    _require_match(frame, id_col, samples, "traits_id_column", where)
    frame = _one_row_per_id(frame, id_col, list(columns.values()), where, report)
    table = _match_samples(frame, id_col, samples, report)
    out = pd.DataFrame({t: _binary(table[c], c, where) for t, c in columns.items()}, index=table.index)
    report.note("traits", "; ".join(f"{t} ← {c!r}: {int(out[t].sum())} of {int(out[t].notna().sum())} positive"
                                    for t, c in columns.items()))
    out.attrs = {"source": str(where.path), "report": report}
    return out


def _read_keyed(where: _Where, what: str, report: ReadReport) -> pd.DataFrame:
    """A keyed table as text (every value a string or missing), unique column names."""
    _check_file(where, what)
    frame = _read_text(where, what, report, dtype=str)
    names = pd.Index([str(c) for c in frame.columns])
    if names.has_duplicates or (names == "").any():
        bad = names[names.duplicated()][0] if names.has_duplicates else ""
        raise where.error(f"column name {bad!r} occurs more than once or is empty (columns: {_shown(names)})",
                          "give every column of the file its own name")
    frame.columns = names
    return frame.apply(blank_to_na)


def _tcga_patients(ids: Iterable[Any]) -> pd.Series:
    """The TCGA patient barcode of each id (None where the id is not a TCGA barcode)."""
    def one(code: Any) -> str | None:
        try:
            return patient_barcode([code], "", "")[0]
        except ReaderError:
            return None
    values = list(ids)
    return pd.Series([one(v) for v in values], index=pd.Index(values, dtype=object), dtype=object)


def _matches(ids: pd.Series, samples: Sequence[str]) -> pd.Series:
    """For each sample, the position of its row in ``ids`` (exact id, else same TCGA patient), or -1."""
    text = ids.astype(str).str.strip().where(ids.notna(), None)
    exact = {v: i for i, v in reversed(list(enumerate(text))) if v is not None}
    patients = _tcga_patients(text.dropna())
    by_patient = {p: exact[v] for v, p in reversed(list(patients.items())) if p is not None}
    sample_patients = _tcga_patients(samples)
    return pd.Series([exact.get(s, by_patient.get(p, -1) if p else -1) for s, p in sample_patients.items()],
                     index=pd.Index(samples, dtype=object), dtype=int)


def _id_column(frame: pd.DataFrame, samples: Sequence[str], given: str | None, name: str, where: _Where,
               report: ReadReport) -> str:
    """The id column: ``given`` (checked), else the one matching the most samples (id-like names win ties)."""
    if given is not None:
        if given not in frame.columns:
            raise where.error(f"no column {given!r} (columns: {_shown(list(frame.columns))})",
                              where.set(f"{name}=") + " to the column of sample or patient ids")
        report.note("id column", f"{given!r} (given by {name})")
        return given
    scores = {c: int((_matches(frame[c], samples) >= 0).sum()) for c in frame.columns}
    rank = sorted(frame.columns, key=lambda c: (-scores[c], not any(h in c.lower() for h in ID_HINTS)))
    best = rank[0]
    if scores[best] == 0:
        firsts = "; ".join(f"{c!r}: {', '.join(map(repr, frame[c].dropna().astype(str).head(2)))}"
                           for c in list(frame.columns)[:4])
        raise where.error(f"no column holds the expression's sample ids (e.g. {_shown(list(samples), 3)}); the "
                          f"file's first columns start with {firsts}",
                          where.set(f"{name}=") + " to the column of sample or patient ids, and check that they "
                          "are the expression's ids (TCGA patient barcodes such as TCGA-02-0001 match sample "
                          "barcodes such as TCGA-02-0001-01A)")
    report.note("id column", f"{best!r} (auto: matches {scores[best]} of {len(samples)} expression samples; "
                f"{name}= sets it)")
    return best


def _one_row_per_id(frame: pd.DataFrame, id_col: str, checked: list[str], where: _Where,
                    report: ReadReport) -> pd.DataFrame:
    """Rows of a repeated id collapsed to the first; an error when they disagree in a ``checked`` column."""
    ids = frame[id_col].astype(str).str.strip()
    repeated = frame[ids.duplicated(keep=False).to_numpy() & frame[id_col].notna().to_numpy()]
    if repeated.empty:
        report.note("repeated ids", "none: one row per id")
        return frame
    for column in checked:
        differ = repeated.groupby(ids[repeated.index])[column].nunique(dropna=False)
        if (differ > 1).any():
            key = str(differ.index[np.flatnonzero(differ.to_numpy() > 1)[0]])
            rows = [int(i) + 1 for i in np.flatnonzero(ids.to_numpy() == key)]
            raise where.error(f"id {key!r} has {len(rows)} rows (data rows {rows[:5]}) that differ in column "
                              f"{column!r}", "keep one row per id, or one value per id in that column")
    out = frame[~ids.duplicated().to_numpy() | frame[id_col].isna().to_numpy()]
    report.note("repeated ids", f"{_n(ids[repeated.index].nunique(), 'id')} on {len(repeated)} rows: first row kept"
                + (f" (they agree on {_shown(checked)})" if checked else ""))
    return out


def _require_match(frame: pd.DataFrame, id_col: str, samples: Sequence[str], id_name: str, where: _Where) -> None:
    """An error naming ``id_name`` when no row's id matches an expression sample."""
    if (_matches(frame[id_col], samples) < 0).all():
        raise where.error(f"no row's {id_col!r} matches an expression sample (e.g. {_shown(list(samples), 3)} vs "
                          f"{_shown(frame[id_col].dropna().astype(str).tolist(), 3)})",
                          where.set(f"{id_name}=") + " to the column holding the expression's sample (or TCGA "
                          "patient) ids")


def _match_samples(frame: pd.DataFrame, id_col: str, samples: Sequence[str], report: ReadReport) -> pd.DataFrame:
    """The rows of ``frame`` (one per id) matched to ``samples`` (index ``sample``, in the samples' order)."""
    position = _matches(frame[id_col], samples)
    matched = position[position >= 0]
    rows = frame.iloc[matched.to_numpy()].set_axis(pd.Index(matched.index, name="sample"))
    by_patient = rows[id_col].astype(str).str.strip().to_numpy() != rows.index.to_numpy()
    example = (f" (e.g. {rows.index[by_patient][0]!r} → {rows[id_col][by_patient].iloc[0]!r})"
               if by_patient.any() else "")
    unmatched = [s for s in samples if s not in matched.index]
    unused = len(frame) - len(set(matched.to_numpy()))
    report.note("matched samples", f"{len(rows)} of {len(samples)} expression samples: {int((~by_patient).sum())} "
                f"by their id, {int(by_patient.sum())} by TCGA patient barcode{example}"
                + (f"; no row for {len(unmatched)} ({_shown(unmatched, 3)})" if unmatched else "")
                + f"; {unused} of the file's {len(frame)} rows match no sample")
    return rows


def _normalised_name(name: str) -> str:
    return re.sub(r"[.\s-]+", "_", name.strip().lower())


def _survival_columns(frame: pd.DataFrame, time_col: str | None, event_col: str | None, where: _Where,
                      report: ReadReport) -> tuple[str | None, str | None]:
    """The survival time and event columns: as given (checked), else found by name; (None, None) if none."""
    columns = list(frame.columns)
    for name, given in (("survival_time_column", time_col), ("survival_event_column", event_col)):
        if given is not None and given not in columns:
            raise where.error(f"no column {given!r} (columns: {_shown(columns, 12)})",
                              where.set(f"{name}=") + " to one of the file's columns")
    by_name = {_normalised_name(c): c for c in reversed(columns)}
    found_time = time_col or next((by_name[n] for n in TIME_NAMES if n in by_name), None)
    found_event = event_col or next((by_name[n] for n in EVENT_NAMES if n in by_name), None)
    if found_time is None and found_event is None:
        report.note("survival", f"no survival columns (looked for {', '.join(TIME_NAMES[:4])}, … and "
                    f"{', '.join(EVENT_NAMES[:4])}, …): the survival evaluation is skipped; to run it, "
                    + where.set("survival_time_column=", "survival_event_column=", join="and"))
        return None, None
    if found_time is None or found_event is None:
        missing = "survival_time_column" if found_time is None else "survival_event_column"
        raise where.error(f"found the survival {'event' if found_time is None else 'time'} column "
                          f"{found_event or found_time!r} but no {missing.split('_')[1]} column (columns: "
                          f"{_shown(columns, 12)})", where.set(f"{missing}=") + " to the column that holds it")
    return found_time, found_event


def _survival_days(values: pd.Series, column: str, unit: str, where: _Where, report: ReadReport) -> pd.Series:
    """Survival times as days (floats; missing stays NaN); non-numbers, negative times and units contradicted by
    the column's name are errors."""
    stated = next((u for u in TIME_UNITS if u.rstrip("s") in column.lower()), None)
    if stated is not None and stated != unit:
        raise where.error(f"survival time column {column!r} looks like {stated} but survival_time_unit={unit!r}",
                          where.set(f"survival_time_unit={stated!r}") + " if the times are in " + stated)
    numbers = _numbers(values, column, where)
    negative = numbers < 0
    if negative.any():
        sample = negative.index[np.flatnonzero(negative.to_numpy())[0]]
        raise where.error(f"column {column!r} holds a negative time for sample {sample!r} "
                          f"({numbers[sample]})", "survival times are >= 0; fix the value in the file")
    days = numbers * TIME_UNITS[unit]
    report.note("survival time", f"{column!r} in {unit}" + (f" × {TIME_UNITS[unit]:g} days" if unit != "days" else "")
                + f" → os_days (median {days.median():.0f} days; {int(days.isna().sum())} missing)")
    return days


def _survival_events(values: pd.Series, column: str, where: _Where, report: ReadReport) -> pd.Series:
    """Events as 1 (died) / 0 (censored); missing stays NaN; other codes are an error listing them."""
    codes = _coded(values, column, EVENT_CODES, where, "survival events as 1 (died) / 0 (censored), or dead/alive, "
                   "deceased/living, true/false, yes/no; R's 1/2 (2 = dead) coding is not guessed: recode it")
    pairs = pd.DataFrame({"value": values.astype(str).str.strip(), "code": codes}).dropna().drop_duplicates("value")
    mapping = ", ".join(f"{v!r} → {int(c)}" for v, c in zip(pairs["value"], pairs["code"]))
    report.note("survival event", f"{column!r}: {mapping}: {_n(int((codes == 1).sum()), 'event')}, "
                f"{int((codes == 0).sum())} censored, {int(codes.isna().sum())} missing → os_event")
    return codes


def _binary(values: pd.Series, column: str, where: _Where) -> pd.Series:
    return _coded(values, column, BINARY_CODES, where, "trait values as 1/0, true/false, yes/no or present/absent")


def _coded(values: pd.Series, column: str, codes: dict[str, int], where: _Where, fix: str) -> pd.Series:
    """``values`` mapped through ``codes`` (case-insensitive, '1.0' read as '1'); unknown codes are an error."""
    text = values.astype("string").str.strip().str.lower().str.replace(r"^([01])\.0+$", r"\1", regex=True)
    mapped = text.map(codes, na_action="ignore")
    bad = text.notna() & mapped.isna()
    if bad.any():
        sample = bad.index[np.flatnonzero(bad.to_numpy())[0]]
        found = _shown(list(dict.fromkeys(values[bad].astype(str))), 5)
        raise where.error(f"column {column!r} holds {values[sample]!r} for sample {sample!r} (codes not understood: "
                          f"{found})", f"code {fix}")
    return mapped.astype(float)


def _numbers(values: pd.Series, column: str, where: _Where) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce")
    bad = values.notna() & numbers.isna()
    if bad.any():
        sample = bad.index[np.flatnonzero(bad.to_numpy())[0]]
        raise where.error(f"column {column!r} holds {values[sample]!r} for sample {sample!r}, not a number "
                          f"({int(bad.sum())} such rows)", "fix the values, or leave them empty when unknown")
    return numbers.astype(float)


def _numbers_where_possible(values: pd.Series) -> pd.Series:
    """The column as numbers when every present value is one, else as read."""
    numbers = pd.to_numeric(values, errors="coerce")
    return numbers if numbers.notna().sum() == values.notna().sum() else values


def _trait_columns(frame: pd.DataFrame, traits: Sequence[str], where: _Where) -> dict[str, str]:
    """trait → its column (named as the trait or ``trait_<name>``, any case)."""
    by_name = {_normalised_name(c): c for c in reversed(list(frame.columns))}
    found, missing = {}, []
    for trait in traits:
        column = by_name.get(trait.lower()) or by_name.get(f"trait_{trait.lower()}")
        if column is None:
            missing.append(trait)
        else:
            found[trait] = column
    if missing:
        raise where.error(f"no column for trait(s) {missing} (columns: {_shown(list(frame.columns), 12)})",
                          where.set("traits=") + " to the traits the file holds, or name the columns "
                          "as the traits (e.g. 'necrosis' or 'trait_necrosis')")
    return found
