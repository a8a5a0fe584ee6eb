"""Offline gene-set enrichment: over-representation and preranked GSEA on a synthetic 1,000-gene universe."""
from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy.stats import hypergeom

from data_mirror import mirror_root

from gbhet_lib.interpret.enrichment import (ORA_COLUMNS, PRERANK_COLUMNS, enrich_top_genes, enrichment_collections,
                                            over_representation, ranked_enrichment)

GENES = [f"G{i:04d}" for i in range(1000)]


@pytest.fixture
def gene_sets() -> dict[str, list[str]]:
    """PLANTED: 40 genes (30 in the top list); DISJOINT: 30 genes, none in it; SPREAD: every 20th gene; TINY: 3."""
    return {"PLANTED": GENES[:40], "DISJOINT": GENES[900:930], "SPREAD": GENES[5::20],
            "TINY": GENES[950:953], "OUTSIDE": ["NOT_EXPRESSED"] * 2 + GENES[960:962]}


@pytest.fixture
def top() -> list[str]:
    """50 top genes: 30 of PLANTED, 20 from the middle of the universe (none in DISJOINT)."""
    return GENES[:30] + GENES[401:441:2]


def test_over_representation_finds_planted_set(gene_sets: dict, top: list[str], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    table = over_representation(top, gene_sets, GENES, collection="toy")
    assert list(table.columns) == ORA_COLUMNS
    assert list(os.listdir(tmp_path)) == []  # gseapy wrote nothing
    assert table["p"].is_monotonic_increasing
    assert set(table["set"]) == {"PLANTED", "DISJOINT", "SPREAD"}  # TINY (3) and OUTSIDE (2 expressed) dropped
    assert table.attrs["dropped"] == {"TINY": 3, "OUTSIDE": 2}
    rows = table.set_index("set")
    planted = rows.loc["PLANTED"]
    assert planted["overlap"] == 30 and planted["n_set"] == 40
    assert planted["expected"] == pytest.approx(50 * 40 / 1000)
    assert planted["q"] < 0.01 and planted["fold"] > 3
    assert planted["genes"].split(";") == GENES[:30]
    assert planted["p"] == pytest.approx(hypergeom.sf(29, 1000, 40, 50), rel=1e-12)
    assert rows.loc["DISJOINT", "overlap"] == 0 and rows.loc["DISJOINT", "p"] == pytest.approx(1.0)
    assert (table["q"] >= table["p"] - 1e-15).all()
    assert (table["collection"] == "toy").all()


def test_over_representation_rejects_genes_outside_background(gene_sets: dict, top: list[str]) -> None:
    with pytest.raises(ValueError, match=r"2 of the 52 top genes.*'FOO1', 'FOO2'.*expressed genes"):
        over_representation(top + ["FOO1", "FOO2"], gene_sets, GENES)


def _scores(top_genes: list[str]) -> pd.Series:
    """Scores 1000..1 in a shuffled gene order, ``top_genes`` moved to the top; shuffled index order."""
    rng = np.random.default_rng(3)
    rest = [g for g in rng.permutation(GENES) if g not in set(top_genes)]
    ranked = list(top_genes) + rest
    scores = pd.Series(np.arange(len(ranked), 0, -1, dtype=float), index=ranked)
    return scores.sample(frac=1.0, random_state=1)


@pytest.mark.parametrize("seed", [0, 1])
def test_ranked_enrichment_top_set_positive_random_set_not(seed: int, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    sets = {"PLANTED": GENES[:40], "SPREAD": GENES[5::20], "TINY": GENES[950:953]}
    # PLANTED at the top; SPREAD evenly through the ranking (every 20th rank), so its ES is near 0 for any seed.
    order = _scores(GENES[:40]).sort_values(ascending=False).index
    spread_ranks = {g: i for i, g in enumerate(order[5::20])}
    sets["SPREAD"] = list(spread_ranks)
    table = ranked_enrichment(_scores(GENES[:40]), sets, permutations=200, seed=seed, collection="toy")
    assert list(table.columns) == PRERANK_COLUMNS
    assert list(os.listdir(tmp_path)) == []
    rows = table.set_index("set")
    assert "TINY" not in rows.index  # below min_size
    assert rows.loc["PLANTED", "nes"] > 0 and rows.loc["PLANTED", "p"] <= 1 / 201 + 1e-12
    assert rows.loc["PLANTED", "n_set"] == 40
    assert rows.loc["SPREAD", "p"] > 0.2
    assert (table["q"] >= table["p"] - 1e-15).all() and table["p"].is_monotonic_increasing


def test_ranked_enrichment_is_deterministic_with_ties() -> None:
    scores = pd.Series(np.repeat([3.0, 2.0, 1.0, 0.0], 250), index=GENES)  # heavy ties
    sets = {"FIRST": GENES[:30], "LAST": GENES[-30:]}
    a = ranked_enrichment(scores, sets, permutations=100, seed=0)
    b = ranked_enrichment(scores.iloc[::-1], sets, permutations=100, seed=0)  # same scores, other input order
    pd.testing.assert_frame_equal(a, b)
    rows = a.set_index("set")
    assert rows.loc["FIRST", "nes"] > 0 > rows.loc["LAST", "nes"]


def test_ranked_enrichment_rejects_bad_scores() -> None:
    with pytest.raises(ValueError, match="repeated genes.*'G0000'"):
        ranked_enrichment(pd.Series([1.0, 2.0], index=["G0000", "G0000"]), {"A": ["G0000"]})
    with pytest.raises(ValueError, match="missing or infinite.*'G0001'"):
        ranked_enrichment(pd.Series([1.0, np.nan], index=["G0000", "G0001"]), {"A": ["G0000"]})
    assert ranked_enrichment(pd.Series([1.0, 2.0], index=["G0000", "G0001"]), {"A": ["G0000"]}).empty


def test_enrichment_collections_demo_returns_planted_programs() -> None:
    modules = {"hypoxia": ["G0001", "G0002"], "proliferation": ["G0003"]}
    cohort = SimpleNamespace(kind="synthetic", truth=SimpleNamespace(modules=modules))
    assert enrichment_collections(cohort, config=None) == {"planted programs": modules}
    assert enrichment_collections(cohort, config=None, include_planted=False) == {}


def test_enrichment_collections_real_gmts_through_manifest(tmp_path: Path) -> None:
    config = SimpleNamespace(data_mirror=mirror_root(), cache_dir=tmp_path / "cache")
    cohort = SimpleNamespace(kind="reference")
    collections = enrichment_collections(cohort, config)
    assert list(collections) == ["Hallmark", "Verhaak 2010", "Neftel 2019"]
    assert len(collections["Hallmark"]) == 50
    assert sum(len(g) for g in collections["Hallmark"].values()) == 7321
    assert sorted(collections["Verhaak 2010"]) == [f"VERHAAK2010_{s}" for s in
                                                   ("CLASSICAL", "MESENCHYMAL", "NEURAL", "PRONEURAL")]
    assert len(collections["Neftel 2019"]) == 6
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.gmt"))  # served from mirror


def test_enrich_top_genes_stacks_both_tests(gene_sets: dict, top: list[str], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    collections = {"toy": gene_sets, "planted only": {"PLANTED": GENES[:40]}}
    table = enrich_top_genes(top, _scores(GENES[:40]), collections, GENES, permutations=100, seed=0)
    assert list(os.listdir(tmp_path)) == []
    assert list(table.columns[:2]) == ["collection", "test"]
    assert set(table.columns) == {"collection", "test"} | set(ORA_COLUMNS) | set(PRERANK_COLUMNS)
    assert set(zip(table["collection"], table["test"])) == {("toy", "ORA"), ("toy", "prerank"),
                                                            ("planted only", "ORA"), ("planted only", "prerank")}
    best = table[table["set"] == "PLANTED"]
    assert (best["p"] < 0.01).all()
    assert best.loc[best["test"] == "prerank", "nes"].gt(0).all()
    assert best.loc[best["test"] == "ORA", "fold"].gt(3).all()


def test_over_representation_counts_exact_symbols_despite_gseapy_case_folding() -> None:
    # gseapy upper-cases a mostly lower-case query when the sets are upper case ("C1orf112" -> "C1ORF112");
    # the overlap and p must still be those of the exact symbols.
    odd = [f"Xorf{i}" for i in range(100)]
    background = GENES + ["C1orf112"] + odd
    sets = {"PLANTED": GENES[:40] + ["C1orf112"]}
    top = GENES[:30] + ["C1orf112"] + odd[:20]
    row = over_representation(top, sets, background).iloc[0]
    assert row["overlap"] == 31 and row["n_set"] == 41
    assert row["p"] == pytest.approx(hypergeom.sf(30, len(background), 41, len(top)), rel=1e-12)
