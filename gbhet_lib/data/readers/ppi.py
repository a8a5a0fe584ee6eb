"""Protein–protein interaction networks: STRING v12 (igraph .rda), InnateDB, biomaRt id map, any edge table.

Every edge table here has the endpoint columns ``symbol_a`` and ``symbol_b`` (gene identifiers as the source
gives them: HGNC symbols for the shipped networks, whatever a user's table holds otherwise), so
:func:`ppi_graph` works on all of them with its defaults.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd

from ._common import (ReaderError, blank_to_na, check_file, load_r, load_r_frame, pick_object,
                      read_text_table, require_columns)

STRING_WHAT = ("the STRING v12 igraph file string.v12.Entrez.ntm.700.400.k3.rda "
               "(emosca-cnr/dmfind; manifest entry string_v12_ppi_rda)")
INNATEDB_WHAT = "the InnateDB network innatedb_exp.rda (travis-m-blimkie/networker; manifest entry innatedb_ppi_rda)"
IDMAP_WHAT = ("the biomaRt id map biomart_id_mapping_human.rda (travis-m-blimkie/networker; "
              "manifest entry biomart_id_mapping_rda)")


def _igraph_parts(obj: Any, attrs: Any) -> Any:
    """rdata constructor for class "igraph": keep the underlying R list (unpacked by ``_unpack_igraph``)."""
    return obj


def _unpack_igraph(graph: Any, path: Path) -> tuple[np.ndarray, np.ndarray, dict, dict]:
    """(from, to) 0-based vertex indices and the vertex and edge attribute dicts of an igraph R list.

    igraph ≥ 1.0 stores a graph as list(n, directed, from, to, ..., attributes, env) where
    attributes = list(version, graph attrs, vertex attrs, edge attrs).
    """
    try:
        attributes = graph[8]
        vertex_attrs, edge_attrs = dict(attributes[2]), dict(attributes[3])
        n_vertices = int(np.asarray(graph[0])[0])
        src = np.asarray(graph[2], dtype=np.int64)
        dst = np.asarray(graph[3], dtype=np.int64)
    except (TypeError, IndexError, KeyError, ValueError):
        raise ReaderError(f"{path}: the R object is not an igraph graph. Expected {STRING_WHAT}.") from None
    if len(src) != len(dst) or (len(src) and max(src.max(), dst.max()) >= n_vertices):
        raise ReaderError(f"{path}: the igraph edge list is inconsistent (from/to lengths or vertex ids). "
                          "The file may be damaged: fetch it again.")
    return src, dst, {str(k): v for k, v in vertex_attrs.items()}, {str(k): v for k, v in edge_attrs.items()}


def read_string_rda(path: str | Path) -> pd.DataFrame:
    """STRING v12 human network from dmfind's igraph ``.rda`` as an edge table.

    Returns one row per edge (174,962 for the shipped file, 17,288 genes): ``symbol_a symbol_b entrez_a entrez_b``
    then every STRING channel score and ``combined_score`` (integers, 0–999), in the file's edge order.
    """
    objects = load_r(path, STRING_WHAT, {"igraph": _igraph_parts})
    p = Path(path)
    src, dst, vertex_attrs, edge_attrs = _unpack_igraph(pick_object(objects, p, STRING_WHAT), p)
    for key, attrs in (("name", vertex_attrs), ("symbol", vertex_attrs), ("combined_score", edge_attrs)):
        if key not in attrs:
            raise ReaderError(f"{p}: the igraph graph has no {key!r} attribute (has {sorted(attrs)}). "
                              f"Expected {STRING_WHAT}.")
    symbols = np.asarray(vertex_attrs["symbol"], dtype=object)
    try:
        entrez = np.asarray(vertex_attrs["name"]).astype(np.int64)
    except ValueError:
        raise ReaderError(f"{p}: vertex names are not Entrez ids. Expected {STRING_WHAT}.") from None
    table = pd.DataFrame({"symbol_a": symbols[src], "symbol_b": symbols[dst],
                          "entrez_a": entrez[src], "entrez_b": entrez[dst]})
    for name, values in edge_attrs.items():
        values = np.asarray(values)
        integral = values.dtype.kind == "f" and np.all(np.isfinite(values)) and np.all(values == np.round(values))
        table[name] = values.astype(np.int64) if integral else values
    return table


def read_innatedb_rda(path: str | Path) -> pd.DataFrame:
    """InnateDB experimentally validated human interactions (networker's ``innatedb_exp.rda``).

    Returns 152,259 rows for the shipped file: ``symbol_a symbol_b ensembl_a ensembl_b``. Self-loops (2,634) are
    kept as published; empty or NA HGNC symbols become missing (the Ensembl ids are always present).
    """
    cols = ["ensembl_gene_A", "hgnc_symbol_A", "ensembl_gene_B", "hgnc_symbol_B"]
    frame = load_r_frame(path, INNATEDB_WHAT, cols)
    return pd.DataFrame({"symbol_a": blank_to_na(frame["hgnc_symbol_A"]),
                         "symbol_b": blank_to_na(frame["hgnc_symbol_B"]),
                         "ensembl_a": blank_to_na(frame["ensembl_gene_A"]),
                         "ensembl_b": blank_to_na(frame["ensembl_gene_B"])})


def read_id_mapping_rda(path: str | Path) -> pd.DataFrame:
    """Ensembl ↔ HGNC symbol ↔ Entrez map (biomaRt 2022, networker's ``biomart_id_mapping_human.rda``).

    Returns 75,130 rows for the shipped file: ``gene_id`` (ENSG), ``symbol`` (missing when none), ``entrez``
    (nullable integer). One Ensembl id may have several rows (several Entrez ids).
    """
    frame = load_r_frame(path, IDMAP_WHAT, ["ensembl_gene_id", "hgnc_symbol", "entrez_gene_id"])
    entrez = blank_to_na(frame["entrez_gene_id"])
    numeric = pd.to_numeric(entrez, errors="coerce")
    bad = entrez.notna() & numeric.isna()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ReaderError(f"{path}: row {row + 1} has Entrez id {entrez.iloc[row]!r}, not a number. "
                          f"Expected {IDMAP_WHAT}.")
    return pd.DataFrame({"gene_id": blank_to_na(frame["ensembl_gene_id"]),
                         "symbol": blank_to_na(frame["hgnc_symbol"]),
                         "entrez": numeric.astype("Int64")})


def read_edge_table(path: str | Path, source_col: str = "symbol_a", target_col: str = "symbol_b",
                    score_col: str | None = None, drop_missing: bool = False) -> pd.DataFrame:
    """A network from a TSV/CSV (gzip allowed): one interaction a row, two gene columns, an optional score.

    Works for the derived STRING/InnateDB TSVs and for a user's own table. Returns ``symbol_a``, ``symbol_b``
    (the gene columns, renamed) and the score column under its own name (float). A row with an empty gene is
    an error unless ``drop_missing`` (then it is dropped); a non-numeric score is always an error.
    """
    what = "an edge table (TSV/CSV: one interaction a row, two gene columns, an optional numeric score)"
    p = check_file(path, what)
    wanted = [source_col, target_col] + ([score_col] if score_col else [])
    table = read_text_table(p, what, dtype=str)
    if len(set(wanted)) < len(wanted):
        raise ReaderError(f"{p}: source_col, target_col and score_col must be different columns (got {wanted}).")
    require_columns(table, wanted, p, f"Name the gene columns with source_col=/target_col= and the score with "
                                      f"score_col=, e.g. read_edge_table(path, source_col={table.columns[0]!r}, "
                                      f"target_col={table.columns[min(1, table.shape[1] - 1)]!r}).")
    out = pd.DataFrame({"symbol_a": blank_to_na(table[source_col]), "symbol_b": blank_to_na(table[target_col])})
    empty = out["symbol_a"].isna() | out["symbol_b"].isna()
    if empty.any() and not drop_missing:
        row = int(np.flatnonzero(empty)[0])
        raise ReaderError(f"{p}: line {row + 2} has an empty gene in {source_col!r} or {target_col!r} "
                          f"({int(empty.sum())} row(s) like this). Fill or remove them, or pass drop_missing=True.")
    if score_col:
        raw = blank_to_na(table[score_col])
        score = pd.to_numeric(raw, errors="coerce")
        bad = score.isna() & ~empty
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ReaderError(f"{p}: line {row + 2} has score {table[score_col].iloc[row]!r} in {score_col!r}, "
                              "not a number. Fix the value, or leave score_col=None for an unweighted network.")
        out[score_col] = score.astype(float)
    return out[~empty].reset_index(drop=True)


def ppi_graph(edges: pd.DataFrame, min_score: float | None = None, weight: str | None = "combined_score",
              source: str = "symbol_a", target: str = "symbol_b") -> nx.Graph:
    """An undirected networkx graph from an edge table; the score (if any) is the edge attribute ``weight``.

    Rows with a missing gene are dropped, self-loops dropped, repeated pairs (either direction) merged keeping
    the highest score; with ``min_score``, edges scoring below it are dropped. ``graph.graph`` records the counts
    (``n_input_rows``, ``n_missing``, ``n_self_loops``, ``n_duplicates``, ``n_below_min_score``).
    """
    if not isinstance(edges, pd.DataFrame):
        raise ReaderError(f"ppi_graph needs a pandas DataFrame edge table, got {type(edges).__name__}.")
    needed = [source, target] + ([weight] if weight else [])
    missing = [c for c in needed if c not in edges.columns]
    if missing:
        raise ReaderError(f"ppi_graph: the edge table has no column(s) {missing} (has {list(edges.columns)}). "
                          "Pass source=/target= for the gene columns and weight= for the score "
                          "(weight=None for an unweighted graph).")
    if min_score is not None and not weight:
        raise ReaderError("ppi_graph: min_score needs a score column; pass weight=<score column>.")
    a = edges[source].astype("object").to_numpy()
    b = edges[target].astype("object").to_numpy()
    w = pd.to_numeric(edges[weight], errors="coerce").to_numpy(float) if weight else np.ones(len(edges))
    ok_genes = pd.notna(a) & pd.notna(b)
    if weight and np.isnan(w[ok_genes]).any():
        row = int(np.flatnonzero(ok_genes & np.isnan(w))[0])
        raise ReaderError(f"ppi_graph: row {row} has a missing or non-numeric {weight!r}; fix or drop it.")
    a, b, w = a[ok_genes].astype(str), b[ok_genes].astype(str), w[ok_genes]
    loops = a == b
    a, b, w = a[~loops], b[~loops], w[~loops]
    lo, hi = np.where(a < b, a, b), np.where(a < b, b, a)  # canonical (sorted) pair: a–b == b–a
    merged = pd.DataFrame({"u": lo, "v": hi, "w": w}).groupby(["u", "v"], sort=False)["w"].max().reset_index()
    below = merged["w"] < min_score if min_score is not None else np.zeros(len(merged), dtype=bool)
    merged = merged[~below]
    graph = nx.Graph()
    if weight:
        graph.add_weighted_edges_from(merged.itertuples(index=False, name=None))
    else:
        graph.add_edges_from(zip(merged["u"], merged["v"]))
    graph.graph.update(n_input_rows=len(edges), n_missing=int((~ok_genes).sum()), n_self_loops=int(loops.sum()),
                       n_duplicates=int(len(lo) - len(merged) - int(np.sum(below))),
                       n_below_min_score=int(np.sum(below)))
    return graph
