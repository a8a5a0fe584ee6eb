"""Gene tokens: groups of genes, each of which becomes one input token of the RNA encoder.

Two ways to group genes, as in the paper (reference spec §2.4–2.5):

* :func:`ppi_tokens` — Louvain communities of a protein–protein interaction graph, the largest ones kept and
  the others folded into one catch-all ("rest") token (the paper: PrimeKG, 6 communities + rest = 7 tokens).
* :func:`chromosome_tokens` — one token per chromosome.

A :class:`GeneTokens` keeps the tokens in order (token order = model input order), each token's genes in a fixed
order (the order of the expressed genes given), how they were made, and reads/writes the paper's JSON schema.
:func:`token_agreement` scores tokens against planted modules (adjusted Rand index), :func:`module_tokens` says
which token holds each module; :func:`read_primekg_ppi`
turns PrimeKG's ``kg.csv`` into an edge table.

Differences from the authors' code, on purpose: the *largest* connected component is clustered (they took the
first one found); genes are the expression's own identifiers (no live symbol → Ensembl look-up); networkx Louvain
with Newman modularity (scikit-network's "Dugué" directed modularity reduces to it on an undirected graph) with
an explicit seed; expressed genes outside the clustered component go to the rest token unless
``rest_includes_unconnected=False`` (the paper drops them).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import networkx as nx
import pandas as pd
from sklearn.metrics import adjusted_rand_score

from ..data.readers._common import ReaderError, check_file, read_text_table, require_columns
from ..data.readers.annotation import CHROMOSOMES, normalise_chromosome
from ..data.readers.ppi import ppi_graph
from ..io import read_json, write_json_atomic

FORMAT = "gbhet.gene_tokens/1"
UNPLACED = "unplaced"
PRIMEKG_WHAT = ("PrimeKG's kg.csv (Harvard Dataverse doi:10.7910/DVN/IXA7BM, file 6180620; columns relation, "
                "x_name, y_name, ...)")
PRIMEKG_PPI = "protein_protein"


@dataclass(frozen=True)
class GeneTokens:
    """Ordered gene tokens: token name → gene identifiers (each gene in exactly one token).

    Attributes:
        tokens: token name → genes, in model input order (stored as tuples: the object is immutable).
        method: how the tokens were made: ``ppi_louvain``, ``chromosome``, or ``file`` (a bare JSON mapping).
        params: how exactly (JSON-compatible values: resolution, seed, sizes before folding, ...).
        rest_token: the name of the catch-all token (folded communities, unplaced genes), None when there is none.
    """

    tokens: Mapping[str, Sequence[str]]
    method: str
    params: dict[str, Any] = field(default_factory=dict)
    rest_token: str | None = None

    def __post_init__(self) -> None:
        tokens = {str(name): tuple(str(g) for g in genes) for name, genes in self.tokens.items()}
        if not tokens:
            raise ValueError("GeneTokens needs at least one token.")
        empty = [name for name, genes in tokens.items() if not genes]
        if empty:
            raise ValueError(f"GeneTokens: token(s) {empty} have no genes; drop empty tokens.")
        seen: dict[str, str] = {}
        for name, genes in tokens.items():
            for gene in genes:
                if gene in seen:
                    where = f"token {seen[gene]!r} and {name!r}" if seen[gene] != name else f"token {name!r} twice"
                    raise ValueError(f"GeneTokens: gene {gene!r} is in {where}; each gene must be in one token once.")
                seen[gene] = name
        if self.rest_token is not None and self.rest_token not in tokens:
            raise ValueError(f"GeneTokens: rest_token {self.rest_token!r} is not a token (tokens: {list(tokens)}).")
        object.__setattr__(self, "tokens", tokens)

    @property
    def sizes(self) -> dict[str, int]:
        """Token name → number of genes, in token order."""
        return {name: len(genes) for name, genes in self.tokens.items()}

    @property
    def gene_to_token(self) -> dict[str, str]:
        """Gene → the name of its token."""
        return {gene: name for name, genes in self.tokens.items() for gene in genes}

    @property
    def genes(self) -> list[str]:
        """Every gene, token by token, in token order."""
        return [gene for genes in self.tokens.values() for gene in genes]

    def restrict(self, genes: Iterable[str]) -> GeneTokens:
        """The tokens keeping only ``genes`` (order and token names unchanged; tokens left empty are dropped).

        ``params["n_genes_before_restrict"]`` records the gene count before. Raises ValueError when no gene is left.
        """
        keep = set(genes)
        tokens = {name: [g for g in members if g in keep] for name, members in self.tokens.items()}
        tokens = {name: members for name, members in tokens.items() if members}
        if not tokens:
            raise ValueError(f"restrict: none of the {len(keep)} genes given is in the {len(self.genes)} genes of "
                             f"the tokens (tokens have e.g. {self.genes[:3]}, given e.g. {sorted(keep)[:3]}).")
        rest = self.rest_token if self.rest_token in tokens else None
        params = {**self.params, "n_genes_before_restrict": len(self.genes)}
        return dataclasses.replace(self, tokens=tokens, params=params, rest_token=rest)

    def save_json(self, path: str | Path) -> Path:
        """Write atomically: the paper's ``{"0": [genes], ...}`` mapping under ``tokens``, plus ``token_order``
        (JSON objects are unordered), ``method``, ``params``, ``rest_token`` and ``format``."""
        return write_json_atomic(path, {"format": FORMAT, "tokens": {k: list(v) for k, v in self.tokens.items()},
                                        "token_order": list(self.tokens), "method": self.method,
                                        "params": self.params, "rest_token": self.rest_token})

    @classmethod
    def load_json(cls, path: str | Path) -> GeneTokens:
        """Read :meth:`save_json`'s file, or a bare ``{"token": [genes], ...}`` mapping such as the authors'
        ``ppi_cluster_to_ensembl_genes.json`` (then tokens keep file order, method ``file``, no rest token)."""
        raw = read_json(path)
        if isinstance(raw, dict) and raw.get("format") == FORMAT:
            order = raw["token_order"]
            if sorted(order) != sorted(raw["tokens"]):
                raise ValueError(f"{path}: token_order {order} does not list the tokens {sorted(raw['tokens'])}.")
            return cls({name: raw["tokens"][name] for name in order}, raw["method"], raw["params"],
                       raw["rest_token"])
        if not isinstance(raw, dict) or not all(isinstance(v, list) for v in raw.values()):
            raise ValueError(f"{path}: not gene tokens: expected {{\"0\": [genes], ...}} or a file written by "
                             "GeneTokens.save_json.")
        return cls(raw, "file", {"source": str(path)})


def read_primekg_ppi(path: str | Path, chunksize: int = 1_000_000) -> pd.DataFrame:
    """The protein–protein edges of PrimeKG's ``kg.csv`` as an edge table ``symbol_a``, ``symbol_b``.

    Keeps rows with ``relation == "protein_protein"`` (x_name/y_name are gene symbols). PrimeKG lists each
    undirected edge in both directions: each pair is kept once, as (smaller, larger) symbol, in order of first
    appearance; self-loops are dropped. The file (~8 M rows) is read in chunks of ``chunksize`` rows.
    """
    p = check_file(path, PRIMEKG_WHAT)
    columns = ["relation", "x_name", "y_name"]
    require_columns(read_text_table(p, PRIMEKG_WHAT, nrows=1, dtype=str), columns, p, f"Expected {PRIMEKG_WHAT}.")
    sep = "," if p.name.lower().removesuffix(".gz").endswith(".csv") else "\t"  # as read_text_table
    parts = [chunk.loc[chunk["relation"] == PRIMEKG_PPI, ["x_name", "y_name"]]
             for chunk in pd.read_csv(p, sep=sep, usecols=columns, dtype=str, chunksize=chunksize)]
    pairs = pd.concat(parts, ignore_index=True).dropna()
    if pairs.empty:
        raise ReaderError(f"{p}: no rows with relation == {PRIMEKG_PPI!r}. Expected {PRIMEKG_WHAT}.")
    a, b = pairs["x_name"].str.strip(), pairs["y_name"].str.strip()
    lo, hi = a.where(a <= b, b), b.where(a <= b, a)
    edges = pd.DataFrame({"symbol_a": lo, "symbol_b": hi})
    return edges[lo != hi].drop_duplicates().reset_index(drop=True)


def ppi_tokens(edges: pd.DataFrame, genes: Sequence[str], n_tokens: int | None = 7, resolution: float = 1.0,
               seed: int = 0, weight: str | None = None, *, min_score: float | None = None,
               rest_includes_unconnected: bool = True, min_overlap: float = 0.2,
               source: str | None = None) -> GeneTokens:
    """Louvain communities of the PPI graph on the expressed genes, folded to ``n_tokens`` tokens.

    Steps: the graph of ``edges`` (:func:`~gbhet_lib.data.readers.ppi.ppi_graph`; ``weight`` names the score
    column, None = unweighted as in the paper) restricted to ``genes``; its largest connected component (ties:
    the one with the smallest gene name); ``networkx.community.louvain_communities(seed, resolution)`` on it,
    nodes and edges in sorted order so the result does not depend on the edge table's row order; communities
    ranked by size (ties: smallest gene name first). Tokens ``"0".."n_tokens-2"`` are the ``n_tokens - 1``
    largest communities; the last token (``rest_token``; ``"6"`` for 7 tokens, as in the paper's JSON) holds
    the other communities plus, when ``rest_includes_unconnected`` (default), every expressed gene outside the
    largest component or absent from the graph, so that every expressed gene reaches the model.
    ``rest_includes_unconnected=False`` drops those genes, as the paper does. ``n_tokens=None`` keeps every
    community (no folding). Fewer communities than ``n_tokens - 1`` give fewer tokens; empty tokens are never
    made. Genes within a token follow the order of ``genes``.

    ``params`` records the settings and ``n_genes``, ``n_in_graph``, ``n_components``,
    ``n_largest_component``, ``n_unconnected``, ``community_sizes`` (before folding) and ``modularity``.

    Raises:
        ValueError: duplicated or no genes, bad ``n_tokens``, or fewer than ``min_overlap`` of the genes in
            the graph (usually identifiers of another kind: Ensembl ids against a symbol graph).
    """
    if n_tokens is not None and n_tokens < 2:
        raise ValueError(f"ppi_tokens: n_tokens must be >= 2 (communities + rest) or None, got {n_tokens}.")
    expressed = _unique_genes(genes, "ppi_tokens")
    graph = ppi_graph(edges, min_score=min_score, weight=weight)
    in_graph = [g for g in expressed if g in graph]
    _check_overlap(in_graph, expressed, "in the PPI graph", list(graph.nodes), min_overlap)
    restricted = graph.subgraph(in_graph)
    main = _sorted_graph(restricted, _largest_component(restricted))
    communities = nx.community.louvain_communities(main, weight="weight" if weight else None,
                                                   resolution=resolution, seed=seed)
    ranked = sorted((sorted(c) for c in communities), key=lambda c: (-len(c), c[0]))
    n_kept = len(ranked) if n_tokens is None else min(n_tokens - 1, len(ranked))
    unconnected = [g for g in expressed if g not in main]
    rest = [g for c in ranked[n_kept:] for g in c] + (unconnected if rest_includes_unconnected else [])
    groups = {str(i): c for i, c in enumerate(ranked[:n_kept])}
    rest_token = str(n_kept) if rest else None
    if rest_token:
        groups[rest_token] = rest
    params = {"graph_source": source, "n_tokens": n_tokens, "resolution": resolution, "seed": seed,
              "weight": weight, "min_score": min_score, "rest_includes_unconnected": rest_includes_unconnected,
              "n_genes": len(expressed), "n_in_graph": len(in_graph),
              "n_components": nx.number_connected_components(restricted),
              "n_largest_component": main.number_of_nodes(), "n_unconnected": len(unconnected),
              "community_sizes": [len(c) for c in ranked],
              "modularity": _modularity(main, communities, weight="weight" if weight else None,
                                        resolution=resolution)}
    return GeneTokens(_in_gene_order(groups, expressed), "ppi_louvain", params, rest_token)


def chromosome_tokens(genes: Sequence[str], annotation: pd.DataFrame, symbol_col: str = "symbol", *,
                      keep_unplaced: bool = True, min_overlap: float = 0.2) -> GeneTokens:
    """One token per chromosome, in the order 1..22, X, Y, MT (only chromosomes that have genes; no cap).

    ``genes`` are matched against ``annotation[symbol_col]`` (or its index, when the index has that name, e.g.
    ``gene_id`` in the cohort's ``genes.tsv``); ``annotation["chromosome"]`` may say ``7``, ``chr7``, ``chrM``.
    An identifier on several chromosomes (e.g. CD99 on X and Y) takes its first placed row
    (``params["n_ambiguous"]`` counts such genes). Genes not in the annotation or on no primary chromosome go to the
    rest token ``"unplaced"`` (last) when ``keep_unplaced`` (default), else are dropped. Genes within a token
    follow ``genes``.

    Raises:
        ValueError: duplicated or no genes, a missing column, or fewer than ``min_overlap`` of the genes placed.
    """
    expressed = _unique_genes(genes, "chromosome_tokens")
    placement, ambiguous = _chromosome_of(annotation, symbol_col)
    placed = {g: placement[g] for g in expressed if g in placement}
    _check_overlap(list(placed), expressed, f"placed on a chromosome by annotation[{symbol_col!r}]",
                   list(placement), min_overlap)
    groups: dict[str, list[str]] = {c: [] for c in CHROMOSOMES}
    for gene, chromosome in placed.items():
        groups[chromosome].append(gene)
    groups = {c: members for c, members in groups.items() if members}
    unplaced = [g for g in expressed if g not in placed]
    rest_token = UNPLACED if keep_unplaced and unplaced else None
    if rest_token:
        groups[UNPLACED] = unplaced
    params = {"annotation_column": symbol_col, "keep_unplaced": keep_unplaced, "n_genes": len(expressed),
              "n_placed": len(placed), "n_unplaced": len(unplaced),
              "n_ambiguous": sum(g in ambiguous for g in expressed)}
    return GeneTokens(groups, "chromosome", params, rest_token)


def token_agreement(tokens: GeneTokens, reference: Mapping[str, Sequence[str]]) -> float:
    """Adjusted Rand index between token labels and reference labels (e.g. planted program modules).

    Genes scored: those both in a reference group and in a token; genes of the tokens outside every reference
    group (background genes) and reference genes missing from the tokens are left out. The rest token counts as
    one more label, like any token: reference groups folded together into it score as merged (all module genes
    in the rest token → 0). 1 = the tokens split the scored genes exactly as the reference; ~0 = chance.
    For the partition found by Louvain itself ("louvain ARI"), pass ``ppi_tokens(..., n_tokens=None)``.

    Raises:
        ValueError: a gene in two reference groups, or fewer than 2 genes scored.
    """
    truth: dict[str, str] = {}
    for group, members in reference.items():
        for gene in members:
            if truth.setdefault(gene, group) != group:
                raise ValueError(f"token_agreement: gene {gene!r} is in reference groups {truth[gene]!r} and "
                                 f"{group!r}; each gene must be in one group.")
    label = tokens.gene_to_token
    scored = [g for g in truth if g in label]
    if len(scored) < 2:
        raise ValueError(f"token_agreement: only {len(scored)} of the {len(truth)} reference genes are in the "
                         f"tokens (tokens have e.g. {tokens.genes[:3]}, reference e.g. {list(truth)[:3]}).")
    return float(adjusted_rand_score([truth[g] for g in scored], [label[g] for g in scored]))


def module_tokens(tokens: GeneTokens, reference: Mapping[str, Sequence[str]]) -> dict[str, dict[str, Any]]:
    """Per reference group (e.g. planted module): the token holding most of its genes and what share it holds.

    Returns group → ``{"token": name, "fraction": share of the group's genes found in the tokens that this token
    holds (0–1, rounded to 1e-4), "n_genes": genes of the group found in the tokens, "rest": whether that token is
    the rest token}``. Ties go to the token first in token order. A group with no gene in the tokens gets
    ``{"token": None, "fraction": 0.0, "n_genes": 0, "rest": False}``.
    """
    label = tokens.gene_to_token
    order = {name: i for i, name in enumerate(tokens.tokens)}
    out: dict[str, dict[str, Any]] = {}
    for group, members in reference.items():
        counts = pd.Series([label[g] for g in members if g in label], dtype=object).value_counts()
        if counts.empty:
            out[str(group)] = {"token": None, "fraction": 0.0, "n_genes": 0, "rest": False}
            continue
        best = min(counts.index, key=lambda t: (-counts[t], order[t]))
        out[str(group)] = {"token": best, "fraction": round(float(counts[best] / counts.sum()), 4),
                           "n_genes": int(counts.sum()), "rest": best == tokens.rest_token}
    return out


def _unique_genes(genes: Sequence[str], who: str) -> list[str]:
    """``genes`` as a list of strings; an error for none or duplicates."""
    out = [str(g) for g in genes]
    if not out:
        raise ValueError(f"{who}: no genes given.")
    dupes = pd.Index(out)[pd.Index(out).duplicated()]
    if len(dupes):
        raise ValueError(f"{who}: gene {dupes[0]!r} is given more than once ({len(dupes)} duplicate(s)); "
                         "pass each expressed gene once.")
    return out


def _check_overlap(found: Sequence[str], genes: list[str], where: str, known: list[str], min_overlap: float) -> None:
    """A ValueError when fewer than ``min_overlap`` of ``genes`` were ``found``, with examples of the genes not
    found and of the identifiers they were looked up among (``known``)."""
    if found and len(found) >= min_overlap * len(genes):
        return
    hits = set(found)
    missed = [g for g in genes if g not in hits][:3]
    raise ValueError(f"only {len(found)} of {len(genes)} genes ({100 * len(found) / len(genes):.1f}%) are {where} "
                     f"(min_overlap={min_overlap:.0%}); check that the gene identifiers are of the same kind: genes "
                     f"not found look like {missed}, the identifiers looked up like {sorted(known)[:3]} (map Ensembl "
                     "ids to symbols or back first).")


def _largest_component(graph: nx.Graph) -> set[str]:
    """The largest connected component (ties: the one holding the smallest node name)."""
    return min(nx.connected_components(graph), key=lambda c: (-len(c), min(c)))


def _sorted_graph(graph: nx.Graph, nodes: set[str]) -> nx.Graph:
    """The subgraph on ``nodes`` rebuilt with nodes and edges in sorted order (Louvain visits them in order)."""
    sub = graph.subgraph(nodes)
    out = nx.Graph()
    out.add_nodes_from(sorted(nodes))
    out.add_edges_from(sorted((min(u, v), max(u, v), d) for u, v, d in sub.edges(data=True)))
    return out


def _modularity(graph: nx.Graph, communities: list[set[str]], weight: str | None,
                resolution: float) -> float | None:
    """Newman modularity of the partition, rounded to 1e-6; None for a graph without edges."""
    if graph.number_of_edges() == 0:
        return None
    return round(nx.community.modularity(graph, communities, weight=weight, resolution=resolution), 6)


def _in_gene_order(groups: dict[str, list[str]], genes: list[str]) -> dict[str, list[str]]:
    """Each group's genes in the order of ``genes``."""
    position = {g: i for i, g in enumerate(genes)}
    return {name: sorted(members, key=position.__getitem__) for name, members in groups.items()}


def _chromosome_of(annotation: pd.DataFrame, symbol_col: str) -> tuple[dict[str, str], set[str]]:
    """Identifier → chromosome (1..22, X, Y, MT) of its first placed row, and the identifiers placed on more
    than one chromosome."""
    if symbol_col in annotation.columns:
        keys = annotation[symbol_col]
    elif annotation.index.name == symbol_col:
        keys = annotation.index.to_series()
    else:
        raise ValueError(f"chromosome_tokens: the annotation has no column {symbol_col!r} (columns: "
                         f"{list(annotation.columns)}, index {annotation.index.name!r}); pass symbol_col=.")
    if "chromosome" not in annotation.columns:
        raise ValueError(f"chromosome_tokens: the annotation has no 'chromosome' column (columns: "
                         f"{list(annotation.columns)}).")
    names = annotation["chromosome"].astype("object").map(_chromosome_text)
    table = pd.DataFrame({"key": keys.astype("object").to_numpy(),
                          "chromosome": normalise_chromosome(names).astype("object")}).dropna()
    table["key"] = table["key"].astype(str)
    n_places = table.groupby("key")["chromosome"].nunique()
    first = table.drop_duplicates("key").set_index("key")["chromosome"]
    return first.to_dict(), set(n_places.index[n_places > 1])


def _chromosome_text(value: object) -> object:
    """A chromosome value as text: 7 and 7.0 (numeric columns read from a table) → "7"; missing stays missing."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(int(value)) if value == value and float(value).is_integer() else None
    return value
