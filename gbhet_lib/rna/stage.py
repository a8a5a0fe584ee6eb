"""The RNA chapter's data preparation: from a cohort (or your own files) to log expression on gene symbols,
and the gene graph the tokens are built from. Training and evaluation live in ``train`` and ``evaluate``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.cohort import Cohort
from .gene_ids import GeneIdMatch, harmonise_expression
from .normalise import normalise_counts


@dataclass(frozen=True)
class RnaExpression:
    """Log expression of every sample on gene symbols, and how it was obtained.

    Attributes:
        values: samples × gene symbols, log2 scale (DESeq2-normalised counts, or the given normalised values).
        lineages, pool: the sample ids with a slide (lineages) and the RNA-only pool.
        size_factors: DESeq2 size factors per sample when the input was counts, else None.
        gene_match: how the input gene identifiers mapped to the annotation.
    """

    values: pd.DataFrame
    lineages: pd.Index
    pool: pd.Index
    size_factors: pd.Series | None
    gene_match: GeneIdMatch


def cohort_expression(cohort: Cohort) -> RnaExpression:
    """Lineage and pool expression of a cohort on symbols: counts are harmonised to Ensembl ids, normalised
    jointly (DESeq2 median-of-ratios, log2(x + 1)); already-normalised values are only re-indexed."""
    table = pd.concat([cohort.expression_lineages, cohort.expression_pool], axis=1)
    annotation = cohort.genes.reset_index()
    return _log_symbols(table, annotation, cohort.expression_unit == "raw_counts",
                        pd.Index(cohort.expression_lineages.columns), pd.Index(cohort.expression_pool.columns))


def own_expression(table: pd.DataFrame, annotation: pd.DataFrame, counts: bool) -> RnaExpression:
    """Your own genes × samples table (symbols or Ensembl ids; counts or normalised values) prepared the same
    way; every sample counts as pool (there are no slides)."""
    return _log_symbols(table, annotation, counts, pd.Index([]), pd.Index(table.columns))


def _log_symbols(table: pd.DataFrame, annotation: pd.DataFrame, counts: bool, lineages: pd.Index,
                 pool: pd.Index) -> RnaExpression:
    by_id, match = harmonise_expression(table, annotation, duplicates="sum" if counts else "mean")
    size_factors = None
    if counts:
        by_id = normalise_counts(by_id)
        size_factors = by_id.attrs["size_factors"]
    symbol = annotation.drop_duplicates("gene_id").set_index("gene_id")["symbol"]
    symbols = symbol.reindex(by_id.index)
    keep = symbols.notna().to_numpy() & ~symbols.duplicated().to_numpy()
    values = by_id.loc[keep].set_axis(symbols[keep].to_numpy()).T
    values.columns.name = "symbol"
    return RnaExpression(values.astype(np.float64), lineages, pool, size_factors, match)


def split_pool(pool: pd.Index, validation_fraction: float = 0.1, seed: int = 0) -> tuple[pd.Index, pd.Index]:
    """Random train / validation split of the pre-training pool (validation at least one sample)."""
    if len(pool) < 2:
        raise ValueError(f"the pre-training pool has {len(pool)} sample(s); it needs at least 2")
    order = np.random.default_rng(seed).permutation(len(pool))
    n_val = max(1, int(round(validation_fraction * len(pool))))
    return pool[np.sort(order[n_val:])], pool[np.sort(order[:n_val])]


def token_source_edges(cohort: Cohort | None, ppi_path: str | Path | None, mirror: Path | None = None,
                       cache_dir: Path | None = None) -> pd.DataFrame:
    """The gene graph for the tokens: your edge table if given, else the cohort's own graph (demo: the planted
    PPI), else STRING v12 from the data manifest (the reference cohort keeps only the edges among its genes,
    so the full graph is read for the tokens)."""
    from ..data.readers import read_edge_table

    if ppi_path is not None:
        return read_edge_table(ppi_path, score_col=None)
    if cohort is not None and cohort.kind == "synthetic":
        return cohort.ppi_edges
    from ..data.fetch import fetch
    from ..data.readers import read_string_rda

    return read_string_rda(fetch("string_v12_ppi_rda", mirror=mirror, cache_dir=cache_dir))


def standardise_genes(values: pd.DataFrame, fit_on: pd.Index) -> pd.DataFrame:
    """Per-gene z-scores (samples × genes) with means and standard deviations from the ``fit_on`` samples only
    (the training pool), so held-out samples never inform the scaling. Constant genes are centred, not scaled."""
    reference = values.loc[fit_on]
    sd = reference.std(ddof=0).replace(0.0, 1.0)
    return (values - reference.mean()) / sd

