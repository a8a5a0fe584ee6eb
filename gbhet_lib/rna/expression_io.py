"""Bring your own expression: read a matrix from TSV/CSV (gzip allowed) or .h5ad as a genes × samples table.

Either orientation is accepted. With ``orientation="auto"`` the axis whose labels look like gene identifiers
(Ensembl ``ENSG…`` ids, versioned or not, ``_PAR_Y`` or ``_SYMBOL`` suffixed; or symbols of an optional
annotation table) is taken as genes; the decision is logged and kept in ``table.attrs["orientation"]``. Every
problem raises :class:`~gbhet_lib.data.readers.ReaderError` (a ValueError) naming the file, the gene and sample
or the label, and the fix. Gene labels are returned as given: map them with
:func:`gbhet_lib.rna.gene_ids.harmonise_expression`, which also collapses duplicated genes.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from ..data.readers import ReaderError
from ..data.readers._common import check_file, read_text_table

Orientation = Literal["auto", "genes_x_samples", "samples_x_genes"]
ExpressionValues = Literal["counts", "normalised"]
WHAT = ("an expression matrix: genes × samples or samples × genes, as TSV/CSV (optionally .gz) with one header "
        "row and the labels in the first column, or .h5ad (obs = samples, var = genes)")
TEXT_SUFFIXES = (".tsv", ".txt", ".tab", ".csv")
_ENSEMBL_LABEL = re.compile(r"^ENS[A-Z]*G\d{11}")
log = logging.getLogger(__name__)


def read_expression_table(path: str | Path, orientation: Orientation = "auto", values: ExpressionValues = "counts",
                          annotation: pd.DataFrame | None = None, layer: str | None = None) -> pd.DataFrame:
    """Read an expression matrix as genes × samples (float64; index ``gene``, columns ``sample``).

    Args:
        path: ``.tsv``/``.txt``/``.tab``/``.csv`` (``.gz`` allowed; comma for .csv, tab otherwise) or ``.h5ad``.
        orientation: ``auto`` (decide from the labels, see the module docstring), ``genes_x_samples`` or
            ``samples_x_genes`` (what the file holds).
        values: ``counts`` (raw counts: negative values are an error) or ``normalised`` (any finite values).
        annotation: standard annotation table (column ``symbol``); lets ``auto`` recognise gene symbols.
        layer: for .h5ad, the layer to read instead of ``X``.

    Returns:
        genes × samples; ``attrs``: ``source`` (path), ``orientation`` (what was decided and why), ``values``.
    """
    p = check_file(path, WHAT)
    if values not in ("counts", "normalised"):
        raise ValueError(f"values={values!r}: use 'counts' (raw counts) or 'normalised'")
    if orientation not in ("auto", "genes_x_samples", "samples_x_genes"):
        raise ValueError(f"orientation={orientation!r}: use 'auto', 'genes_x_samples' or 'samples_x_genes'")
    raw = _read_raw(p, layer)
    _check_labels(raw, p)
    transpose, note = _decide_orientation(raw, orientation, annotation, p)
    numeric = _to_numeric(raw, p, transpose)
    table = numeric.T if transpose else numeric
    table = table.rename_axis(index="gene", columns="sample")
    _check_values(table, p, values)
    table.attrs = {"source": str(p), "orientation": note, "values": values}
    log.info("%s: %s", p, note)
    return table


def _read_raw(p: Path, layer: str | None) -> pd.DataFrame:
    """The matrix as stored: text rows × header columns, or h5ad obs × var (values not yet checked)."""
    name = p.name.lower()
    if name.endswith(".h5ad"):
        return _read_h5ad(p, layer)
    if not name.removesuffix(".gz").endswith(TEXT_SUFFIXES):
        raise ReaderError(f"{p}: unsupported file type; expected {WHAT}. Save the matrix as TSV, CSV or h5ad.")
    if layer is not None:
        raise ReaderError(f"{p}: layer={layer!r} applies to .h5ad files only; leave it out for text tables.")
    header = read_text_table(p, WHAT, header=None, nrows=1, dtype=str, keep_default_na=False).iloc[0].tolist()
    frame = read_text_table(p, WHAT, index_col=0)
    if len(header) == frame.shape[1] + 1:  # a corner cell above the row labels (else R style: no corner cell)
        header = header[1:]
    frame.columns = pd.Index([h.strip() for h in header], dtype=object)  # unmangled: duplicates stay visible
    return frame


def _read_h5ad(p: Path, layer: str | None) -> pd.DataFrame:
    try:
        adata = ad.read_h5ad(p)
    except Exception as err:  # h5py/anndata raise many types on a damaged or foreign HDF5 file
        raise ReaderError(f"{p}: cannot be read as .h5ad ({type(err).__name__}: {err}). Expected {WHAT}.") from None
    if layer is not None and layer not in adata.layers:
        raise ReaderError(f"{p}: no layer {layer!r} (layers: {list(adata.layers)}); pass one of them or "
                          "layer=None for X.")
    matrix = adata.X if layer is None else adata.layers[layer]
    dense = matrix.toarray() if sparse.issparse(matrix) else np.asarray(matrix)
    return pd.DataFrame(dense, index=adata.obs_names.astype(object), columns=adata.var_names.astype(object))


def _check_labels(raw: pd.DataFrame, p: Path) -> None:
    """Every row and column has a label."""
    for axis, labels in (("row", raw.index), ("column", raw.columns)):
        blank = labels.isna() | (labels.astype(str).str.strip() == "")
        if blank.any():
            where = int(np.flatnonzero(blank)[0]) + 1
            raise ReaderError(f"{p}: {axis} {where} has no label ({int(blank.sum())} such {axis}s); every gene and "
                              "sample needs a name.")
    raw.index = raw.index.astype(str).str.strip()
    raw.columns = raw.columns.astype(str)


def gene_like_fraction(labels: pd.Index, symbols: frozenset[str]) -> float:
    """Fraction of ``labels`` that are Ensembl gene ids (any suffix) or, upper-cased, in ``symbols``."""
    text = pd.Series(labels.astype(str), dtype=object)
    like = text.str.match(_ENSEMBL_LABEL) | text.str.upper().isin(symbols)
    return float(like.mean()) if len(text) else 0.0


def _decide_orientation(raw: pd.DataFrame, orientation: Orientation, annotation: pd.DataFrame | None,
                        p: Path) -> tuple[bool, str]:
    """(transpose?, what was decided and why) for a raw matrix."""
    if orientation != "auto":
        return orientation == "samples_x_genes", f"read as {orientation} (as given)"
    symbols = frozenset() if annotation is None else frozenset(annotation["symbol"].dropna().astype(str).str.upper())
    rows, cols = gene_like_fraction(raw.index, symbols), gene_like_fraction(raw.columns, symbols)
    counted = (f"{rows:.0%} of {raw.shape[0]} row labels and {cols:.0%} of {raw.shape[1]} column labels look like "
               f"gene ids (Ensembl ENSG…{'' if annotation is None else ' or annotation symbols'})")
    if max(rows, cols) < 0.5:
        hint = "" if annotation is not None else "pass annotation= so gene symbols are recognised, or "
        raise ReaderError(f"{p}: no column or row looks like gene ids: {counted}. Fix: {hint}pass "
                          "orientation='genes_x_samples' or 'samples_x_genes'.")
    if rows == cols:
        raise ReaderError(f"{p}: rows and columns look equally like gene ids ({counted}); pass orientation= "
                          "'genes_x_samples' or 'samples_x_genes'.")
    transpose = cols > rows
    decided = "samples × genes, transposed to genes × samples" if transpose else "genes × samples"
    return transpose, f"orientation auto: read as {decided}: {counted}"


def _to_numeric(raw: pd.DataFrame, p: Path, transpose: bool) -> pd.DataFrame:
    """All values as float64; a non-numeric cell is an error naming its gene and sample."""
    all_numeric = all(pd.api.types.is_numeric_dtype(t) for t in raw.dtypes)
    converted = raw if all_numeric else raw.apply(pd.to_numeric, errors="coerce")
    bad = converted.isna().to_numpy() & raw.notna().to_numpy()
    if bad.any():
        row, col = map(int, np.argwhere(bad)[0])
        gene, sample = (raw.columns[col], raw.index[row]) if transpose else (raw.index[row], raw.columns[col])
        raise ReaderError(f"{p}: gene {gene!r}, sample {sample!r} holds {raw.iat[row, col]!r}, not a number "
                          f"({int(bad.sum())} such cells). Fix: remove text columns/rows (e.g. a symbol or "
                          "description column) so only the labels and numbers remain.")
    return converted.astype(np.float64)


def _check_values(table: pd.DataFrame, p: Path, values: ExpressionValues) -> None:
    """Unique sample names, no missing or infinite cell, and no negative count (genes × samples table)."""
    duplicated = table.columns[table.columns.duplicated()].unique()
    if len(duplicated):
        raise ReaderError(f"{p}: sample name(s) {list(duplicated[:5])} occur more than once; give every sample a "
                          "unique name (or check the orientation).")
    data = table.to_numpy()
    problems = [(~np.isfinite(data), "is empty, NA or infinite", "fill or drop those genes/samples")]
    if values == "counts":
        problems.append((data < 0, "is negative", "raw counts are >= 0; for log or centred values pass "
                                                  "values='normalised'"))
    for mask, problem, fix in problems:
        if mask.any():
            row, col = map(int, np.argwhere(mask)[0])
            raise ReaderError(f"{p}: gene {table.index[row]!r}, sample {table.columns[col]!r} {problem} "
                              f"({float(data[row, col])}; {int(mask.sum())} such cells). Fix: {fix}.")
