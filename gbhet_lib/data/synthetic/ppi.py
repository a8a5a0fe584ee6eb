"""A protein–protein interaction graph with planted communities (degree-corrected stochastic block model).

Program modules are dense communities; the remaining covered genes fall into background complexes of
varying size; a fraction of genes has no interaction at all (real PPI networks miss many genes).
Edges carry a STRING-like ``combined_score`` (400–999), higher inside communities.

Sizes follow biology loosely: program modules are pathways (the demo's 150 genes; MSigDB Hallmark sets hold
32–200), background communities are protein complexes of 10–60 genes. Modules are then the largest communities
Louvain finds, so the paper's folding to its six largest communities plus a rest token keeps each module as one
token (with modules smaller than the largest complexes, folding puts them all into the rest token).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .genes import GeneUniverse


def make_ppi_edges(
    rng: np.random.Generator,
    genes: GeneUniverse,
    module_degree: float = 9.0,
    background_degree: float = 6.0,
    cross_degree: float = 1.5,
    coverage: float = 0.85,
    background_community_size: tuple[int, int] = (10, 60),
) -> tuple[pd.DataFrame, pd.Series]:
    """Draw the PPI graph.

    Args:
        module_degree: expected within-community degree of a program-module gene.
        background_degree: expected within-community degree of a background gene.
        cross_degree: expected number of edges of a gene to genes outside its community.
        coverage: fraction of background genes present in the graph (module genes always are).
        background_community_size: min/max size of a background community (protein complexes; keep the maximum
            well below the module size for the modules to be the largest communities).

    Returns:
        edges: columns ``symbol_a``, ``symbol_b``, ``combined_score`` (one row per undirected edge).
        community: per symbol in the graph, the planted community (program name or ``bg<k>``).
    """
    lo, hi = background_community_size
    if not 1 <= lo <= hi:
        raise ValueError(f"background_community_size={background_community_size} must be (min, max) with "
                         "1 <= min <= max")
    symbols = genes.annotation["symbol"].to_numpy()
    module = genes.module.to_numpy()
    background = np.flatnonzero(module == "")
    covered_bg = np.sort(rng.choice(background, size=int(coverage * len(background)), replace=False))
    community = np.full(len(symbols), None, dtype=object)
    community[module != ""] = module[module != ""]
    shuffled = rng.permutation(covered_bg)
    start, k = 0, 0
    while start < len(shuffled):
        size = int(rng.integers(lo, hi + 1))
        community[shuffled[start:start + size]] = f"bg{k}"
        start, k = start + size, k + 1

    in_graph = np.flatnonzero(community != None)  # noqa: E711 (object array)
    labels = community[in_graph]
    n = len(in_graph)
    # Degree correction: heavy-tailed node propensities (hubs); module drivers are hubs.
    theta = rng.pareto(3.0, n) + 1.0
    driver_set = {s for members in genes.drivers.values() for s in members}
    theta[np.isin(symbols[in_graph], list(driver_set))] *= 2.0
    _, codes, sizes = np.unique(labels, return_inverse=True, return_counts=True)
    is_module = np.array([not str(c).startswith("bg") for c in labels])
    within_degree = np.where(is_module, module_degree, background_degree)

    iu, ju = np.triu_indices(n, k=1)
    same = codes[iu] == codes[ju]
    mean_theta = np.bincount(codes, weights=theta) / sizes
    p_within = within_degree[iu] / (sizes[codes[iu]] - 1) * theta[iu] * theta[ju] / mean_theta[codes[iu]] ** 2
    p_cross = cross_degree / n * theta[iu] * theta[ju] / theta.mean() ** 2
    p = np.clip(np.where(same, p_within, p_cross), 0.0, 1.0)
    keep = rng.random(len(p)) < p
    a, b, same_kept = in_graph[iu[keep]], in_graph[ju[keep]], same[keep]
    score = np.where(same_kept, rng.integers(600, 1000, len(a)), rng.integers(400, 800, len(a)))
    edges = pd.DataFrame({"symbol_a": symbols[a], "symbol_b": symbols[b], "combined_score": score})
    return edges, pd.Series(labels, index=pd.Index(symbols[in_graph], name="symbol"), name="community")
