"""Offline gene-set enrichment of the interpretation chapter: over-representation and preranked GSEA (gseapy).

Both tests run on in-memory gene sets (``dict`` set name → gene symbols) with ``outdir=None`` and no plots:
nothing is downloaded and nothing is written to disk. Multiple testing is Benjamini–Hochberg (statsmodels) over the
sets of one call, i.e. one collection and one test.

* :func:`over_representation`: are the top genes over-represented in a set, against the expressed genes?
  (hypergeometric test on the exact symbols).
* :func:`ranked_enrichment`: do a set's genes sit near the top of the full ranking? (gseapy.prerank).
* :func:`enrichment_collections`: which collections to test for a cohort (planted programs for the demo,
  Hallmark / Verhaak 2010 / Neftel 2019 from the data manifest otherwise).
* :func:`enrich_top_genes`: both tests for every collection, stacked in one table.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import gseapy
import numpy as np
import pandas as pd
from scipy.stats import hypergeom
from statsmodels.stats.multitest import multipletests

from ..data.fetch import fetch
from ..data.readers.genesets import GeneSets, read_gmt

MIN_ORA_SET_SIZE = 5
"""Sets with fewer background genes than this are dropped from the over-representation test."""

ORA_COLUMNS = ["collection", "set", "n_set", "overlap", "expected", "fold", "p", "q", "genes"]
PRERANK_COLUMNS = ["collection", "set", "n_set", "nes", "p", "q", "fdr_gsea", "leading_edge"]

# Real collections of a non-synthetic cohort: label → (manifest entry, set-name prefix kept; "" keeps all).
REAL_COLLECTIONS: dict[str, tuple[str, str]] = {
    "Hallmark": ("msigdb_hallmark_iobr_gmt", ""),
    "Verhaak 2010": ("gbm_subtypes_gliovis_gmt", "VERHAAK2010_"),
    "Neftel 2019": ("neftel2019_gmt", ""),
}


def _unique_strings(genes: Sequence[str], what: str) -> list[str]:
    """Genes as strings in their order, first occurrence kept; ``what`` names the argument in errors."""
    if isinstance(genes, str):
        raise TypeError(f"{what} is one string ({genes[:40]!r}); pass a list of gene symbols.")
    return list(dict.fromkeys(str(g) for g in genes))


def _bh(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg q-values of ``p`` (shape (n_sets,)); an empty array stays empty."""
    if len(p) == 0:
        return np.asarray(p, dtype=float)
    return multipletests(np.asarray(p, dtype=float), method="fdr_bh")[1]


def _restrict(gene_sets: Mapping[str, Sequence[str]], universe: set[str]) -> dict[str, list[str]]:
    """Each set restricted to ``universe`` (set order and gene order kept, repeats dropped)."""
    out = {}
    for name, genes in gene_sets.items():
        members = _unique_strings(genes, f"gene set {name!r}")
        out[str(name)] = [g for g in members if g in universe]
    return out


def _check_in_background(genes: list[str], universe: set[str]) -> None:
    """ValueError naming up to five of ``genes`` that are not in the background."""
    outside = [g for g in genes if g not in universe]
    if outside:
        shown = ", ".join(repr(g) for g in outside[:5]) + (", ..." if len(outside) > 5 else "")
        raise ValueError(f"{len(outside)} of the {len(genes)} top genes are not in the background ({shown}). The "
                         "top list must be drawn from the expressed genes used as background: pass the same gene "
                         "universe (e.g. the expression matrix's genes) to both.")


def over_representation(genes: Sequence[str], gene_sets: Mapping[str, Sequence[str]], background: Sequence[str],
                        collection: str = "") -> pd.DataFrame:
    """Over-representation of the top ``genes`` in each set, against the expressed ``background`` (one-sided
    hypergeometric test = Fisher's exact test for enrichment, scipy's ``hypergeom``).

    Sets are first restricted to the background; sets left with fewer than :data:`MIN_ORA_SET_SIZE` (5) genes are
    dropped (their names and sizes are in ``result.attrs["dropped"]``).

    Args:
        genes: the top genes (symbols), all in ``background``; repeats are counted once.
        gene_sets: set name → gene symbols (genes outside the background are ignored).
        background: the expressed genes, the universe of the test.
        collection: label copied into the ``collection`` column.

    Returns:
        One row per kept set, sorted by p (then set name), columns: ``collection``, ``set``, ``n_set`` (set genes
        in the background), ``overlap`` (top genes in the set), ``expected`` (len(genes)·n_set/len(background)),
        ``fold`` (overlap/expected), ``p`` (P[overlap ≥ observed]; 1 without overlap), ``q`` (BH over the sets of
        this call), ``genes`` (overlapping genes, ";"-joined, in the top list's order).

    Raises:
        ValueError: empty ``genes`` or ``background``, or top genes that are not in the background (named).
    """
    top, universe_list = _unique_strings(genes, "genes"), _unique_strings(background, "background")
    if not top or not universe_list:
        raise ValueError(f"over_representation: {'genes' if not top else 'background'} is empty; pass the top "
                         "genes and the expressed genes.")
    universe = set(universe_list)
    _check_in_background(top, universe)
    restricted = _restrict(gene_sets, universe)
    kept = {name: members for name, members in restricted.items() if len(members) >= MIN_ORA_SET_SIZE}
    dropped = {name: len(members) for name, members in restricted.items() if len(members) < MIN_ORA_SET_SIZE}

    rows = []
    for name, members in kept.items():
        member_set = set(members)
        hits = [g for g in top if g in member_set]
        expected = len(top) * len(members) / len(universe)
        rows.append({"collection": collection, "set": name, "n_set": len(members), "overlap": len(hits),
                     "expected": expected, "fold": len(hits) / expected, "genes": ";".join(hits)})
    table = pd.DataFrame(rows, columns=[c for c in ORA_COLUMNS if c not in ("p", "q")])

    # scipy's hypergeometric tail on the exact-symbol counts. gseapy.enrich computes the same p (measured: identical
    # on a 1,000-gene background, 51 sets, p down to 2e-14) but upper-cases a mostly lower-case query when the sets
    # are upper case, which changes the counts; so the test is run here on the counts above.
    table["p"] = hypergeom.sf(table["overlap"] - 1, len(universe), table["n_set"], len(top)).astype(float)
    table["q"] = _bh(table["p"].to_numpy())
    table = table[ORA_COLUMNS].sort_values(["p", "set"], kind="mergesort").reset_index(drop=True)
    table.attrs["dropped"] = dropped
    return table


def _ranking(scores: pd.Series) -> pd.Series:
    """``scores`` sorted descending, ties broken by gene name (ascending); index as strings."""
    if not isinstance(scores, pd.Series):
        raise TypeError(f"scores is a {type(scores).__name__}; pass a pandas Series, gene symbol → score.")
    ranked = pd.Series(scores.to_numpy(dtype=float), index=scores.index.astype(str), name="score")
    if ranked.index.has_duplicates:
        repeated = list(dict.fromkeys(ranked.index[ranked.index.duplicated()]))[:5]
        raise ValueError(f"scores has repeated genes ({', '.join(map(repr, repeated))}); one score a gene: "
                         "aggregate or drop the repeats first.")
    bad = ranked.index[~np.isfinite(ranked.to_numpy())]
    if len(bad):
        raise ValueError(f"scores has {len(bad)} missing or infinite value(s) (genes {', '.join(map(repr, bad[:5]))}"
                         "); drop or fill them before ranking.")
    if len(ranked) < 2:
        raise ValueError("scores has fewer than two genes; a ranking needs the whole gene list.")
    order = np.lexsort((ranked.index.to_numpy(dtype=str), -ranked.to_numpy()))
    return ranked.iloc[order]


def ranked_enrichment(scores: pd.Series, gene_sets: Mapping[str, Sequence[str]], permutations: int = 1000,
                      seed: int = 0, collection: str = "", min_size: int = 5, max_size: int = 1000) -> pd.DataFrame:
    """Preranked GSEA (``gseapy.prerank``, gene-set permutations, weight 1) of all genes ranked by ``scores``.

    Args:
        scores: gene symbol → score (any unit; higher = nearer the top), shape (n_genes,), unique genes, finite.
            Ties are broken by gene name, so the ranking and the result are deterministic.
        gene_sets: set name → gene symbols (genes without a score are ignored).
        permutations: number of gene-set permutations; the smallest attainable p is 1/(permutations+1).
        seed: seed of gseapy's permutations.
        collection: label copied into the ``collection`` column.
        min_size, max_size: sets whose scored genes number outside [min_size, max_size] are not tested.

    Returns:
        One row per tested set, sorted by p (then set name), columns: ``collection``, ``set``, ``n_set`` (set genes
        with a score), ``nes`` (normalised enrichment score; > 0: set near the top), ``p`` (gseapy's nominal p,
        floored at 1/(permutations+1): gseapy reports 0 when no permutation reaches the observed score), ``q``
        (BH over the sets of this call, on ``p``), ``fdr_gsea`` (gseapy's GSEA FDR), ``leading_edge`` (leading-edge
        genes, ";"-joined). Empty (same columns) when no set has a size in range.
    """
    if permutations < 1:
        raise ValueError(f"permutations={permutations}; use at least 1 (1000 for reporting).")
    if not 1 <= min_size <= max_size:
        raise ValueError(f"min_size={min_size}, max_size={max_size}: need 1 <= min_size <= max_size.")
    ranked = _ranking(scores)
    restricted = _restrict(gene_sets, set(ranked.index))
    # gseapy also drops a set that holds every ranked gene (no genes outside it to compare with).
    tested = {name: members for name, members in restricted.items()
              if min_size <= len(members) <= max_size and len(members) < len(ranked)}
    if not tested:
        return pd.DataFrame(columns=PRERANK_COLUMNS)
    result = gseapy.prerank(rnk=ranked.copy(), gene_sets=tested, outdir=None, no_plot=True, threads=1, seed=seed,
                            permutation_num=permutations, min_size=min_size, max_size=max_size, ascending=None,
                            verbose=False)
    res = result.res2d
    p = np.maximum(res["NOM p-val"].astype(float).to_numpy(), 1.0 / (permutations + 1))
    table = pd.DataFrame({"collection": collection, "set": res["Term"].astype(str),
                          "n_set": [len(tested[str(t)]) for t in res["Term"]],
                          "nes": res["NES"].astype(float), "p": p, "q": _bh(p),
                          "fdr_gsea": res["FDR q-val"].astype(float), "leading_edge": res["Lead_genes"].astype(str)})
    return table.sort_values(["p", "set"], kind="mergesort").reset_index(drop=True)


def enrichment_collections(cohort: Any, config: Any, include_planted: bool = True) -> dict[str, GeneSets]:
    """The gene-set collections to test for ``cohort`` (label → sets), all offline.

    * demo cohort (``cohort.kind == "synthetic"``): ``{"planted programs": cohort.truth.modules}`` (the programs
      planted by construction; empty when ``include_planted`` is False);
    * any other cohort: ``"Hallmark"`` (MSigDB, 50 sets), ``"Verhaak 2010"`` (the four VERHAAK2010_* sets of the
      GlioVis GMT) and ``"Neftel 2019"`` (six cell-state meta-modules), read with :func:`read_gmt` from the data
      manifest through :func:`fetch` (``config.data_mirror``, ``config.cache_dir``). These are derived files, so a
      data mirror (or a cache filled from one) is needed; no live gene-set lookup is made.
    """
    if getattr(cohort, "kind", None) == "synthetic":
        if not include_planted:
            return {}
        modules = cohort.truth.modules
        return {"planted programs": {str(k): [str(g) for g in v] for k, v in modules.items()}}
    collections: dict[str, GeneSets] = {}
    for label, (entry, prefix) in REAL_COLLECTIONS.items():
        path = fetch(entry, mirror=getattr(config, "data_mirror", None), cache_dir=getattr(config, "cache_dir", None))
        sets = {name: genes for name, genes in read_gmt(path).items() if name.startswith(prefix)}
        if not sets:
            raise ValueError(f"{path} (manifest entry {entry}) has no set named {prefix}*; the file is not the "
                             f"expected {label} GMT. Re-fetch it or check the manifest.")
        collections[label] = sets
    return collections


def enrich_top_genes(top: Sequence[str], scores: pd.Series, collections: Mapping[str, GeneSets],
                     background: Sequence[str], permutations: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Over-representation of ``top`` and preranked GSEA of ``scores`` for every collection, stacked.

    Args:
        top: the top genes (in ``background``), for the over-representation test.
        scores: gene → score over all ranked genes, shape (n_genes,), for the preranked test.
        collections: label → gene sets (e.g. from :func:`enrichment_collections`).
        background: the expressed genes (the over-representation universe).
        permutations, seed: for :func:`ranked_enrichment`.

    Returns:
        Rows of :func:`over_representation` (``test`` = "ORA") and :func:`ranked_enrichment` (``test`` =
        "prerank") for each collection, in that order; columns ``collection``, ``test``, then the union of both
        tests' columns (NaN where a column belongs to the other test). q is BH within one collection and test.
    """
    columns = ["collection", "test"] + list(dict.fromkeys(ORA_COLUMNS[1:] + PRERANK_COLUMNS[1:]))
    parts = []
    for label, sets in collections.items():
        ora = over_representation(top, sets, background, collection=label).assign(test="ORA")
        ranked = ranked_enrichment(scores, sets, permutations=permutations, seed=seed, collection=label)
        parts += [ora, ranked.assign(test="prerank")]
    parts = [p for p in parts if not p.empty]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True).reindex(columns=columns)
