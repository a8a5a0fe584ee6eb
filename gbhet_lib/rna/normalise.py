"""RNA-seq normalisation: DESeq2 median-of-ratios size factors, log2 normalised counts, gene filters, AnnData.

The paper's expression was "normalized using the DESeq2 package" (reference §2.3; the exact transform is not
reported). The default here is DESeq2's ``normTransform``: counts divided by median-of-ratios size factors, then
``log2(x + 1)``. All tables are genes × samples (rows = genes, columns = samples), as in the cohort contract;
:func:`to_anndata` turns them into AnnData's samples × genes.
"""
from __future__ import annotations

from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd

Values = Literal["counts", "normalised"]
NORMALISATION_METHOD = "DESeq2 median-of-ratios size factors, then log2(count / size factor + pseudocount)"


def _cell(table: pd.DataFrame, mask: np.ndarray) -> tuple[object, object, object]:
    """(gene, sample, value) of the first True cell of ``mask`` (genes × samples)."""
    row, col = map(int, np.argwhere(mask)[0])
    value = table.iat[row, col]
    return table.index[row], table.columns[col], value.item() if isinstance(value, np.generic) else value


def check_counts(counts: pd.DataFrame, require_integers: bool = True) -> np.ndarray:
    """Validate a raw-count table (genes × samples) and return its values as float64 (genes × samples).

    Raises:
        TypeError: not a DataFrame.
        ValueError: no genes or samples, a non-numeric column, a missing or infinite value, a negative value, a
            non-integer (when ``require_integers``), or a sample whose counts are all zero; the message names the
            gene and sample and says how to fix it.
    """
    if not isinstance(counts, pd.DataFrame):
        raise TypeError(f"counts must be a pandas DataFrame (genes × samples), not {type(counts).__name__}")
    if counts.shape[0] == 0 or counts.shape[1] == 0:
        raise ValueError(f"counts table is empty ({counts.shape[0]} genes × {counts.shape[1]} samples)")
    text = [c for c in counts.columns if not pd.api.types.is_numeric_dtype(counts[c])]
    if text:
        raise ValueError(f"sample column(s) {text[:3]} are not numeric; counts must be genes × samples holding "
                         "numbers only (read files with gbhet_lib.rna.expression_io.read_expression_table)")
    values = counts.to_numpy(dtype=np.float64)
    checks = [
        (~np.isfinite(values), "is missing or infinite", "fill or drop it before normalising"),
        (values < 0, "is negative", "raw counts are >= 0; pass raw counts, not log or centred values"),
    ]
    if require_integers:
        checks.append((values != np.round(values), "is not an integer",
                       "DESeq2 expects raw read counts; round estimated counts (RSEM/salmon) or pass "
                       "require_integers=False"))
    for mask, problem, fix in checks:
        if mask.any():
            gene, sample, value = _cell(counts, mask)
            raise ValueError(f"counts of gene {gene!r} in sample {sample!r} ({value!r}) {problem} "
                             f"({int(mask.sum())} such cells): {fix}")
    empty = values.sum(axis=0) == 0
    if empty.any():
        names = list(counts.columns[empty])
        raise ValueError(f"sample(s) {names[:5]} have zero counts for every gene: an empty library cannot be "
                         "normalised; drop these samples")
    return values


def deseq2_size_factors(counts: pd.DataFrame, require_integers: bool = True) -> pd.Series:
    """DESeq2 median-of-ratios size factors (``estimateSizeFactorsForMatrix``, type "ratio").

    For each gene with no zero in any sample, the geometric mean over samples is the pseudo-reference; a sample's
    size factor is the median over those genes of count / geometric mean. As in DESeq2 the factors are not
    rescaled (their geometric mean is close to, not exactly, 1).

    Args:
        counts: raw counts, genes × samples (see :func:`check_counts`).
        require_integers: reject non-integer values.

    Returns:
        Size factor per sample (unitless), indexed like ``counts.columns``, named ``size_factor``.

    Raises:
        ValueError: bad counts (see :func:`check_counts`), or every gene has a zero in some sample.
    """
    return _median_of_ratios(check_counts(counts, require_integers), counts.columns)


def _median_of_ratios(values: np.ndarray, samples: pd.Index) -> pd.Series:
    """Size factors of validated counts (genes × samples array); see :func:`deseq2_size_factors`."""
    with np.errstate(divide="ignore"):
        log_counts = np.log(values)
    usable = np.isfinite(log_counts).all(axis=1)
    if not usable.any():
        zeros = (values == 0).sum(axis=0)
        worst = samples[int(np.argmax(zeros))]
        raise ValueError(f"every gene has a zero count in at least one sample, so no geometric mean exists "
                         f"(sample {worst!r} has zeros in {int(zeros.max())} of {values.shape[0]} genes): drop "
                         "that sample and other very sparse ones (they are likely failed libraries), then retry")
    log_ratios = log_counts[usable] - log_counts[usable].mean(axis=1, keepdims=True)
    return pd.Series(np.exp(np.median(log_ratios, axis=0)), index=samples, name="size_factor")


def normalise_counts(counts: pd.DataFrame, log: bool = True, pseudocount: float = 1.0,
                     size_factors: pd.Series | None = None, require_integers: bool = True) -> pd.DataFrame:
    """Counts divided by their size factors, then ``log2(x + pseudocount)`` when ``log``.

    Base 2 with pseudocount 1 is DESeq2's ``normTransform`` default. ``size_factors`` default to
    :func:`deseq2_size_factors` of ``counts``; given ones must cover every sample and be > 0.

    Returns:
        genes × samples float64 table like ``counts``; ``attrs["size_factors"]`` holds the factors used.
    """
    values = check_counts(counts, require_integers)
    if size_factors is None:
        size_factors = _median_of_ratios(values, counts.columns)
    missing = counts.columns.difference(size_factors.index)
    if len(missing):
        raise ValueError(f"size_factors lack sample(s) {list(missing[:5])}; give one factor per counts column")
    factors = size_factors.reindex(counts.columns).to_numpy(dtype=np.float64)
    if not (np.isfinite(factors) & (factors > 0)).all():
        raise ValueError("size_factors must be finite and > 0")
    if log and not pseudocount > 0:
        raise ValueError(f"pseudocount={pseudocount} must be > 0 for the log transform")
    normalised = values / factors[None, :]
    out = pd.DataFrame(np.log2(normalised + pseudocount) if log else normalised, index=counts.index,
                       columns=counts.columns)
    out.attrs["size_factors"] = size_factors.reindex(counts.columns)
    return out


def filter_genes(counts: pd.DataFrame, min_count: int = 10, min_samples: int = 3) -> pd.DataFrame:
    """DESeq2-style prefilter: keep genes with at least ``min_count`` reads in at least ``min_samples`` samples.

    The DESeq2 vignette uses ``rowSums(counts >= 10) >= smallestGroupSize``; ``min_samples`` is capped at the
    number of samples. Returns the kept rows of ``counts`` (genes × samples), order unchanged.
    """
    values = check_counts(counts, require_integers=False)
    needed = min(min_samples, counts.shape[1])
    keep = (values >= min_count).sum(axis=1) >= needed
    if not keep.any():
        raise ValueError(f"no gene has >= {min_count} counts in >= {needed} samples: lower min_count/min_samples, "
                         "or check that the table holds raw counts (not normalised values)")
    return counts[keep]


def filter_by_variance(expression: pd.DataFrame, n_top: int) -> pd.DataFrame:
    """The ``n_top`` genes of highest variance across samples (genes × samples, log-scale values), order kept.

    Ties are broken by input order; ``n_top`` larger than the number of genes keeps all.
    """
    if n_top < 1:
        raise ValueError(f"n_top={n_top} must be >= 1")
    variance = expression.var(axis=1, ddof=1).fillna(0.0).to_numpy()
    top = np.sort(np.argsort(-variance, kind="stable")[:n_top])
    return expression.iloc[top]


def to_anndata(expression: pd.DataFrame, obs: pd.DataFrame | None = None, var: pd.DataFrame | None = None,
               values: Values = "counts", layer_name: str = "counts", pseudocount: float = 1.0) -> ad.AnnData:
    """AnnData (samples × genes) from a genes × samples table.

    With ``values="counts"`` the raw counts go to ``layers[layer_name]`` and ``X`` holds
    :func:`normalise_counts` (log2, ``pseudocount``); ``obs["size_factor"]`` and ``uns["normalisation"]``
    (method, log base, pseudocount, size factors per sample) record how. With ``values="normalised"`` ``X`` holds
    the values as given and ``uns["normalisation"]["method"]`` says so.

    Args:
        expression: genes × samples.
        obs: per-sample table indexed by sample id; must have a row for every sample (extra rows are ignored).
        var: per-gene table indexed by gene id (e.g. a cohort's genes.tsv); genes it lacks get missing values.
    """
    if values not in ("counts", "normalised"):
        raise ValueError(f"values={values!r}: use 'counts' (raw counts) or 'normalised'")
    samples, genes = expression.columns.astype(str), expression.index.astype(str)
    if obs is not None:
        missing = samples.difference(obs.index.astype(str))
        if len(missing):
            raise ValueError(f"obs has no row for sample(s) {list(missing[:5])}: give one row per expression "
                             "column (indexed by sample id)")
    obs_frame = pd.DataFrame(index=samples) if obs is None else obs.set_axis(obs.index.astype(str)).loc[samples]
    var_frame = pd.DataFrame(index=genes) if var is None else var.set_axis(var.index.astype(str)).reindex(genes)
    if values == "normalised":
        X = expression.to_numpy(dtype=np.float64).T
        adata = ad.AnnData(X=X, obs=obs_frame, var=var_frame)
        adata.uns["normalisation"] = {"method": "none: values given already normalised"}
        return adata
    normalised = normalise_counts(expression, log=True, pseudocount=pseudocount)
    factors = normalised.attrs["size_factors"]
    adata = ad.AnnData(X=normalised.to_numpy().T, obs=obs_frame.assign(size_factor=factors.to_numpy()),
                       var=var_frame, layers={layer_name: expression.to_numpy(dtype=np.float64).T})
    adata.uns["normalisation"] = {"method": NORMALISATION_METHOD, "log_base": 2, "pseudocount": pseudocount,
                                  "counts_layer": layer_name,
                                  "size_factors": {str(k): float(v) for k, v in factors.items()}}
    return adata
