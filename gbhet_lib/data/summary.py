"""Descriptive summaries of expression tables and gene graphs (any cohort, synthetic or real)."""
from __future__ import annotations

import numpy as np
import pandas as pd


def library_sizes(counts: pd.DataFrame) -> pd.Series:
    """Total counts per sample of a genes × samples raw-count table."""
    return counts.sum(axis=0).rename("library_size")


def log_cpm(counts: pd.DataFrame, pseudocount: float = 1.0) -> pd.DataFrame:
    """log(counts per million + pseudocount) of a genes × samples table (natural log)."""
    return np.log(counts / counts.sum(axis=0) * 1e6 + pseudocount)


def module_coexpression(expression: pd.DataFrame, modules: dict[str, list[str]]) -> pd.DataFrame:
    """Mean Pearson correlation between genes of each pair of modules (diagonal: within a module).

    ``expression``: genes × samples (e.g. log-CPM) indexed like the module gene lists. Returns a
    modules × modules table; the diagonal excludes each gene's correlation with itself.
    """
    missing = sorted({g for genes in modules.values() for g in genes} - set(expression.index))
    if missing:
        raise ValueError(f"{len(missing)} module gene(s) not in the expression table, e.g. {missing[:3]}")
    names = list(modules)
    genes = [g for m in names for g in modules[m]]
    corr = np.corrcoef(expression.loc[genes].to_numpy())
    bounds = np.cumsum([0] + [len(modules[m]) for m in names])
    out = np.empty((len(names), len(names)))
    for i in range(len(names)):
        for j in range(len(names)):
            block = corr[bounds[i]:bounds[i + 1], bounds[j]:bounds[j + 1]]
            out[i, j] = (block.sum() - np.trace(block)) / (block.size - len(block)) if i == j else block.mean()
    return pd.DataFrame(out, index=names, columns=names)


def within_and_across(coexpression: pd.DataFrame) -> tuple[float, float]:
    """Mean of the diagonal (within modules) and of the off-diagonal (across) of :func:`module_coexpression`."""
    values = coexpression.to_numpy()
    off_diagonal = ~np.eye(len(values), dtype=bool)
    return float(np.diag(values).mean()), float(values[off_diagonal].mean())


def community_summary(edges: pd.DataFrame, community: pd.Series, source: str = "symbol_a",
                      target: str = "symbol_b") -> pd.DataFrame:
    """Per community of a gene graph: genes, edges inside, edges leaving, and edge density inside.

    ``community`` maps gene → community label; edges with a gene outside ``community`` are ignored.
    """
    a = community.reindex(edges[source]).to_numpy()
    b = community.reindex(edges[target]).to_numpy()
    known = pd.notna(a) & pd.notna(b)
    a, b = a[known], b[known]
    sizes = community.value_counts()
    inside = pd.Series(a[a == b]).value_counts()
    leaving = pd.concat([pd.Series(a[a != b]), pd.Series(b[a != b])]).value_counts()
    table = pd.DataFrame({"genes": sizes, "edges_inside": inside, "edges_leaving": leaving}).fillna(0).astype(int)
    table["density_inside"] = table["edges_inside"] / (table["genes"] * (table["genes"] - 1) / 2).clip(lower=1)
    return table.sort_values("genes", ascending=False).rename_axis("community")
