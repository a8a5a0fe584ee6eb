"""Gene tokens (gbhet_lib.rna.tokens): Louvain module recovery on the planted demo PPI graph, folding, the
largest-component choice, chromosome tokens, JSON round trip, bad inputs, PrimeKG parsing, and the real STRING
graph on the Verhaak 840 genes (needs the data mirror; fails, never skips, without it)."""
from __future__ import annotations

import json

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from data_mirror import mirror_file

from gbhet_lib.data.cohort import load_cohort
from gbhet_lib.data.readers import ReaderError, read_string_rda, read_verhaak_clanc840
from gbhet_lib.data.synthetic.genes import (DEMO_MODULE_SIZE, DEMO_N_DRIVERS, DEMO_N_GENES, make_gene_universe,
                                           pathway_module_size)
from gbhet_lib.data.synthetic.ppi import make_ppi_edges
from gbhet_lib.rna.tokens import (GeneTokens, chromosome_tokens, module_tokens, ppi_tokens, read_primekg_ppi,
                                  token_agreement)




def clique_chain(sizes: list[int]) -> pd.DataFrame:
    """Cliques ``C<k>_<i>`` of the given sizes, clique k joined to clique k+1 by one edge."""
    rows = [(f"C{k}_{i}", f"C{k}_{j}") for k, n in enumerate(sizes) for i in range(n) for j in range(i + 1, n)]
    rows += [(f"C{k}_0", f"C{k + 1}_0") for k in range(len(sizes) - 1)]
    return pd.DataFrame(rows, columns=["symbol_a", "symbol_b"])


def planted_graph(seed: int, n_genes: int = DEMO_N_GENES, module_size: int = DEMO_MODULE_SIZE,
                  n_drivers: int = DEMO_N_DRIVERS) -> tuple[pd.DataFrame, list[str], dict[str, list[str]]]:
    """The planted PPI graph of a demo cohort made with this seed and these sizes (edges, all gene symbols, planted
    modules).

    make_demo_cohort draws the genes from child 0 and the graph from child 6 of SeedSequence(seed).spawn(9);
    drawing them here directly skips the slides (the slow part)."""
    streams = np.random.SeedSequence(seed).spawn(9)
    genes = make_gene_universe(np.random.default_rng(streams[0]), n_genes, module_size, n_drivers)
    edges, _ = make_ppi_edges(np.random.default_rng(streams[6]), genes)
    return edges, genes.annotation["symbol"].tolist(), genes.module_symbols()


@pytest.fixture(scope="module")
def demo_graph() -> tuple[pd.DataFrame, list[str], dict[str, list[str]]]:
    """The graph of the demo cohort, seed 0, at the generator's default (pathway-sized) modules."""
    return planted_graph(0)


def test_louvain_recovers_planted_modules_on_the_demo_graph(demo_graph):
    """louvain_ari: Louvain's own partition (no folding) against the planted modules, over the module genes."""
    edges, genes, modules = demo_graph
    for weight in (None, "combined_score"):
        unfolded = ppi_tokens(edges, genes, n_tokens=None, weight=weight)
        assert token_agreement(unfolded, modules) >= 0.9
    assert unfolded.params["n_in_graph"] == unfolded.params["n_largest_component"]


def test_paper_folding_to_7_tokens_keeps_each_demo_module(demo_graph):
    """Pathway-sized modules (150 genes) outsize the background complexes (10–60 genes): the six largest
    communities are the six modules, so K = 7 folding keeps each module as its own token."""
    edges, genes, modules = demo_graph
    folded = ppi_tokens(edges, genes)
    assert list(folded.tokens) == ["0", "1", "2", "3", "4", "5", "6"] and folded.rest_token == "6"
    assert token_agreement(folded, modules) >= 0.95
    held = module_tokens(folded, modules)
    assert sorted(h["token"] for h in held.values()) == ["0", "1", "2", "3", "4", "5"]  # one token each, none rest
    assert all(h["fraction"] >= 0.95 and not h["rest"] and h["n_genes"] == DEMO_MODULE_SIZE for h in held.values())
    assert max(folded.params["community_sizes"][6:]) < 0.8 * DEMO_MODULE_SIZE  # a clear margin to the complexes


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_folding_keeps_pathway_sized_modules_in_a_small_universe(seed):
    """Folded ARI ≥ 0.8 with the generator's background complexes on a smaller universe (1000 genes, 100-gene
    modules) and other seeds."""
    edges, genes, modules = planted_graph(seed, 1000, 100, 20)
    folded = ppi_tokens(edges, genes, seed=seed)
    assert token_agreement(folded, modules) >= 0.8
    assert not any(h["rest"] for h in module_tokens(folded, modules).values())


def test_modules_smaller_than_complexes_are_folded_away():
    """The earlier demo's 40-gene modules, smaller than the largest complexes: Louvain still finds them, but the
    six largest communities are complexes, so K = 7 folding puts (nearly) every module into the rest token."""
    edges, genes, modules = planted_graph(0, 2000, 40, 8)
    assert token_agreement(ppi_tokens(edges, genes, n_tokens=None), modules) >= 0.9
    folded = ppi_tokens(edges, genes)
    assert token_agreement(folded, modules) < 0.2
    assert sum(h["rest"] for h in module_tokens(folded, modules).values()) >= 5


def test_pathway_sized_modules_for_a_universe_and_bad_complex_sizes():
    assert pathway_module_size(DEMO_N_GENES) == (DEMO_MODULE_SIZE, DEMO_N_DRIVERS) == (150, 30)
    assert pathway_module_size(20_000) == (150, 30) and pathway_module_size(400) == (24, 5)
    with pytest.raises(ValueError, match="too small"):
        pathway_module_size(12)
    genes = make_gene_universe(np.random.default_rng(0), 300, *pathway_module_size(300))
    assert genes.module.value_counts().drop("").tolist() == [18] * 6
    with pytest.raises(ValueError, match=r"background_community_size=\(30, 10\)"):
        make_ppi_edges(np.random.default_rng(0), genes, background_community_size=(30, 10))


def test_module_recovery_on_the_small_cohort_files(small_cohort):
    cohort = load_cohort(small_cohort)
    genes = cohort.genes["symbol"].tolist()
    tokens = ppi_tokens(cohort.ppi_edges, genes, n_tokens=None, weight="combined_score", source="demo")
    assert token_agreement(tokens, cohort.truth.modules) >= 0.9
    assert sorted(tokens.genes) == sorted(genes)  # genes outside the graph are in the rest token
    assert tokens.params["graph_source"] == "demo"


def test_same_seed_same_tokens_whatever_the_edge_order(small_cohort):
    cohort = load_cohort(small_cohort)
    genes = cohort.genes["symbol"].tolist()
    shuffled = cohort.ppi_edges.sample(frac=1.0, random_state=3)
    swapped = shuffled.rename(columns={"symbol_a": "symbol_b", "symbol_b": "symbol_a"})
    first = ppi_tokens(cohort.ppi_edges, genes, seed=5)
    assert ppi_tokens(cohort.ppi_edges, genes, seed=5) == first
    assert ppi_tokens(shuffled, genes, seed=5) == first
    assert ppi_tokens(swapped, genes, seed=5) == first


def test_folding_keeps_the_largest_communities_and_gathers_the_rest():
    edges = clique_chain([3, 8, 5, 7, 4, 6])
    genes = sorted(set(edges["symbol_a"]) | set(edges["symbol_b"])) + ["ORPHAN1", "ORPHAN2"]
    tokens = ppi_tokens(edges, genes, n_tokens=3)
    assert tokens.params["community_sizes"] == [8, 7, 6, 5, 4, 3]
    assert tokens.sizes == {"0": 8, "1": 7, "2": 6 + 5 + 4 + 3 + 2}
    assert tokens.tokens["0"] == tuple(f"C1_{i}" for i in range(8))
    assert set(tokens.tokens["1"]) == {f"C3_{i}" for i in range(7)}
    assert tokens.rest_token == "2" and {"ORPHAN1", "ORPHAN2"} <= set(tokens.tokens["2"])
    assert tokens.params["n_unconnected"] == 2 and tokens.params["n_tokens"] == 3
    unfolded = ppi_tokens(edges, genes, n_tokens=None)
    assert list(unfolded.sizes.values()) == [8, 7, 6, 5, 4, 3, 2] and unfolded.rest_token == "6"
    few = ppi_tokens(edges, genes[:-2], n_tokens=10)  # fewer communities than tokens, nothing to fold
    assert list(few.sizes.values()) == [8, 7, 6, 5, 4, 3] and few.rest_token is None


def test_genes_follow_the_given_order_within_tokens():
    edges = clique_chain([4])
    genes = ["C0_3", "C0_1", "C0_0", "C0_2"]
    assert ppi_tokens(edges, genes, n_tokens=None).tokens == {"0": tuple(genes)}


def test_the_largest_component_is_clustered_not_the_first():
    """The authors kept components[0], the first found; a small component listed first must not win."""
    triangle = pd.DataFrame([("T1", "T2"), ("T2", "T3"), ("T1", "T3")], columns=["symbol_a", "symbol_b"])
    edges = pd.concat([triangle, clique_chain([5, 5])], ignore_index=True)
    assert len(next(iter(nx.connected_components(nx.from_pandas_edgelist(edges, "symbol_a", "symbol_b"))))) == 3
    genes = ["T1", "T2", "T3"] + [f"C{k}_{i}" for k in range(2) for i in range(5)]
    tokens = ppi_tokens(edges, genes, n_tokens=None)
    assert tokens.params["n_largest_component"] == 10 and tokens.params["n_components"] == 2
    assert tokens.sizes == {"0": 5, "1": 5, "2": 3} and tokens.tokens["2"] == ("T1", "T2", "T3")
    faithful = ppi_tokens(edges, genes, n_tokens=None, rest_includes_unconnected=False)
    assert faithful.sizes == {"0": 5, "1": 5} and faithful.rest_token is None


def test_overlap_error_names_the_numbers_and_both_identifier_kinds():
    edges = clique_chain([5, 5])
    genes = [f"C0_{i}" for i in range(5)] + [f"ENSG{i:011d}" for i in range(45)]
    with pytest.raises(ValueError, match=r"only 5 of 50 genes \(10\.0%\) are in the PPI graph") as err:
        ppi_tokens(edges, genes)
    assert "ENSG00000000000" in str(err.value) and "C0_0" in str(err.value)
    assert ppi_tokens(edges, genes, min_overlap=0.1).sizes == {"0": 5, "1": 45}


@pytest.mark.parametrize("call, message", [
    (lambda e: ppi_tokens(e, ["C0_0", "C0_1", "C0_0"]), "'C0_0' is given more than once"),
    (lambda e: ppi_tokens(e, []), "no genes given"),
    (lambda e: ppi_tokens(e, ["C0_0", "C0_1"], n_tokens=1), "n_tokens must be >= 2"),
    (lambda e: ppi_tokens(e, ["C0_0", "C0_1"], weight="combined_score"), "no column"),
])
def test_bad_ppi_inputs(call, message):
    with pytest.raises(ValueError, match=message):
        call(clique_chain([3]))


def test_read_primekg_ppi_keeps_protein_edges_once(tmp_path):
    header = "relation,display_relation,x_index,x_id,x_type,x_name,x_source,y_index,y_id,y_type,y_name,y_source"
    rows = ["protein_protein,ppi,0,1,gene/protein,TP53,NCBI,1,2,gene/protein,MDM2,NCBI",
            "protein_protein,ppi,1,2,gene/protein,MDM2,NCBI,0,1,gene/protein,TP53,NCBI",
            "drug_protein,target,5,DB1,drug,Nutlin,DrugBank,1,2,gene/protein,MDM2,NCBI",
            "protein_protein,ppi,0,1,gene/protein,TP53,NCBI,2,3,gene/protein,EGFR,NCBI",
            "protein_protein,ppi,0,1,gene/protein,TP53,NCBI,0,1,gene/protein,TP53,NCBI",
            "disease_protein,associated with,9,D1,disease,glioma,MONDO,2,3,gene/protein,EGFR,NCBI",
            "protein_protein,ppi,2,3,gene/protein,EGFR,NCBI,0,1,gene/protein,TP53,NCBI"]
    path = tmp_path / "kg.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    edges = read_primekg_ppi(path, chunksize=2)
    assert edges.to_dict("records") == [{"symbol_a": "MDM2", "symbol_b": "TP53"},
                                        {"symbol_a": "EGFR", "symbol_b": "TP53"}]
    assert ppi_tokens(edges, ["TP53", "MDM2", "EGFR"], n_tokens=None).genes == ["TP53", "MDM2", "EGFR"]
    (tmp_path / "bad.csv").write_text("rel,x_name,y_name\nprotein_protein,A,B\n")
    with pytest.raises(ReaderError, match="missing column.*'relation'"):
        read_primekg_ppi(tmp_path / "bad.csv")
    (tmp_path / "none.csv").write_text("relation,x_name,y_name\ndrug_protein,A,B\n")
    with pytest.raises(ReaderError, match="no rows with relation == 'protein_protein'"):
        read_primekg_ppi(tmp_path / "none.csv")


def small_annotation() -> pd.DataFrame:
    return pd.DataFrame({
        "symbol": ["G10", "G1a", "GX", "G2", "G1b", "GM", "GPATCH", "GNONE", "CD99", "CD99"],
        "chromosome": ["10", "chr1", "chrX", "2", "1", "chrM", "KI270728.1", None, "X", "Y"]})


def test_chromosome_tokens_in_genome_order_with_unplaced_last():
    genes = ["G2", "G10", "G1b", "GX", "G1a", "GM", "GPATCH", "GNONE", "CD99", "NOT_ANNOTATED"]
    tokens = chromosome_tokens(genes, small_annotation())
    assert tokens.tokens == {"1": ("G1b", "G1a"), "2": ("G2",), "10": ("G10",), "X": ("GX", "CD99"),
                             "MT": ("GM",), "unplaced": ("GPATCH", "GNONE", "NOT_ANNOTATED")}
    assert tokens.rest_token == "unplaced" and tokens.params["n_ambiguous"] == 1
    dropped = chromosome_tokens(genes, small_annotation(), keep_unplaced=False)
    assert list(dropped.tokens) == ["1", "2", "10", "X", "MT"] and dropped.rest_token is None


def test_chromosome_tokens_have_no_cap_and_read_numeric_columns():
    chromosomes = [str(i) for i in range(1, 23)] + ["X", "Y", "MT"]
    annotation = pd.DataFrame({"symbol": [f"G{c}" for c in chromosomes], "chromosome": chromosomes})
    tokens = chromosome_tokens([f"G{c}" for c in chromosomes] + ["EXTRA"], annotation)
    assert list(tokens.tokens) == chromosomes + ["unplaced"]  # 26 tokens
    numeric = pd.DataFrame({"chromosome": [7, 7, 12]}, index=pd.Index(["A", "B", "C"], name="gene_id"))
    assert chromosome_tokens(["C", "A", "B"], numeric, symbol_col="gene_id").tokens == {"7": ("A", "B"),
                                                                                      "12": ("C",)}


def test_chromosome_tokens_of_the_cohort_gene_table(small_cohort):
    table = load_cohort(small_cohort).genes
    tokens = chromosome_tokens(list(table.index), table, symbol_col="gene_id")
    assert tokens.params["n_placed"] == len(table) and tokens.rest_token is None
    assert sum(tokens.sizes.values()) == len(table)
    with pytest.raises(ValueError, match=r"only 0 of 600 genes \(0\.0%\) are placed on a chromosome"):
        chromosome_tokens(list(table.index), table)  # gene ids against the symbol column
    with pytest.raises(ValueError, match="no column 'hgnc'"):
        chromosome_tokens(list(table.index), table, symbol_col="hgnc")


def test_json_round_trip_keeps_order_and_metadata(tmp_path):
    tokens = ppi_tokens(clique_chain([3, 8, 5, 7, 4, 6]), [f"C{k}_0" for k in range(6)] + ["C1_1", "C3_1", "X"],
                        n_tokens=3, min_overlap=0.0, source="chain")
    chromosomes = chromosome_tokens(["G2", "G10", "G1a"], small_annotation())
    for original in (tokens, chromosomes):
        path = original.save_json(tmp_path / f"{original.method}.json")
        assert GeneTokens.load_json(path) == original
    saved = json.loads((tmp_path / "chromosome.json").read_text())
    assert saved["tokens"] == {"1": ["G1a"], "2": ["G2"], "10": ["G10"]}
    assert saved["token_order"] == ["1", "2", "10"] and saved["method"] == "chromosome"


def test_load_the_papers_bare_schema_and_reject_other_json(tmp_path):
    (tmp_path / "paper.json").write_text('{"0": ["ENSG1", "ENSG2"], "1": ["ENSG3"]}')
    tokens = GeneTokens.load_json(tmp_path / "paper.json")
    assert tokens.tokens == {"0": ("ENSG1", "ENSG2"), "1": ("ENSG3",)} and tokens.method == "file"
    (tmp_path / "other.json").write_text('{"a": 1}')
    with pytest.raises(ValueError, match="not gene tokens"):
        GeneTokens.load_json(tmp_path / "other.json")


@pytest.mark.parametrize("tokens, rest, message", [
    ({"0": ["A", "B"], "1": ["B"]}, None, "gene 'B' is in token '0' and '1'"),
    ({"0": ["A", "A"]}, None, "token '0' twice"),
    ({"0": ["A"], "1": []}, None, r"token\(s\) \['1'\] have no genes"),
    ({}, None, "at least one token"),
    ({"0": ["A"]}, "6", "rest_token '6' is not a token"),
])
def test_gene_tokens_validation(tokens, rest, message):
    with pytest.raises(ValueError, match=message):
        GeneTokens(tokens, "test", rest_token=rest)


def test_restrict_keeps_order_and_drops_empty_tokens():
    tokens = GeneTokens({"0": ["A", "B", "C"], "1": ["D"], "2": ["E", "F"]}, "test", {"seed": 1}, rest_token="2")
    kept = tokens.restrict(["F", "A", "C", "Z"])
    assert kept.tokens == {"0": ("A", "C"), "2": ("F",)} and kept.rest_token == "2"
    assert kept.params == {"seed": 1, "n_genes_before_restrict": 6}
    assert tokens.restrict(["D"]).rest_token is None
    assert kept.genes == ["A", "C", "F"] and kept.gene_to_token == {"A": "0", "C": "0", "F": "2"}
    with pytest.raises(ValueError, match="none of the 2 genes given"):
        tokens.restrict(["Y", "Z"])


def test_token_agreement_known_values_and_scored_genes():
    tokens = GeneTokens({"0": ["g1", "g2", "bg1"], "1": ["g3"], "2": ["g4", "bg2"]}, "test")
    reference = {"a": ["g1", "g2"], "b": ["g3", "g4", "missing"]}
    # scored genes g1..g4: labels (a, a, b, b) vs (0, 0, 1, 2); sklearn's documented example gives 4/7
    assert token_agreement(tokens, reference) == pytest.approx(4 / 7)
    assert token_agreement(tokens, {"x": ["g1", "g2"], "y": ["g3"], "z": ["g4"]}) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="gene 'g1' is in reference groups 'a' and 'c'"):
        token_agreement(tokens, {**reference, "c": ["g1"]})
    with pytest.raises(ValueError, match="only 1 of the 2 reference genes"):
        token_agreement(tokens, {"a": ["g1", "nope"]})


def test_module_tokens_names_the_token_holding_most_of_each_group():
    tokens = GeneTokens({"0": ["g1", "g2", "g5"], "1": ["g3"], "rest": ["g4", "g6", "bg"]}, "test", rest_token="rest")
    reference = {"a": ["g1", "g2", "g3"], "b": ["g4", "g5", "g6", "missing"], "c": ["g3", "g9"], "d": ["nope"]}
    held = module_tokens(tokens, reference)
    assert held["a"] == {"token": "0", "fraction": pytest.approx(2 / 3, abs=1e-4), "n_genes": 3, "rest": False}
    assert held["b"] == {"token": "rest", "fraction": pytest.approx(2 / 3, abs=1e-4), "n_genes": 3, "rest": True}
    assert held["c"] == {"token": "1", "fraction": 1.0, "n_genes": 1, "rest": False}
    assert held["d"] == {"token": None, "fraction": 0.0, "n_genes": 0, "rest": False}
    tie = module_tokens(tokens, {"t": ["g3", "g4"]})["t"]  # one gene each: the token first in order wins
    assert tie["token"] == "1" and tie["fraction"] == 0.5


def test_string_tokens_of_the_verhaak_840_genes():
    """The real STRING v12 network (score ≥ 700) on the 840 ClaNC genes: sparse, so a large rest token."""
    edges = read_string_rda(mirror_file("string_v12_ppi_rda"))
    genes = list(read_verhaak_clanc840(mirror_file("verhaak2010_clanc840")).var_names)
    tokens = ppi_tokens(edges, genes, source="STRING v12")
    print("STRING v12 x Verhaak 840 token sizes:", tokens.sizes, "communities:", tokens.params["community_sizes"])
    params = tokens.params
    assert (params["n_in_graph"], params["n_largest_component"], params["n_components"]) == (713, 305, 330)
    sizes = list(tokens.sizes.values())
    assert len(sizes) == 7 and sum(sizes) == 840 and sizes[:6] == sorted(sizes[:6], reverse=True)
    assert sizes[6] == 305 - sum(sizes[:6]) + 840 - 305
    faithful = ppi_tokens(edges, genes, rest_includes_unconnected=False)
    assert sum(faithful.sizes.values()) == 305
