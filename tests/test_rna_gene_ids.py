"""Gene-id harmonisation: every identifier form on a hand-written annotation, duplicate collapsing, bad inputs,
the demo cohort, and the real pirlygenes annotation with the Verhaak 840 symbols (needs the data mirror; fails,
never skips, without it)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data_mirror import mirror_file

from gbhet_lib.data.cohort import load_cohort
from gbhet_lib.data.readers import read_pirlygenes_reference, read_verhaak_clanc840
from gbhet_lib.rna.gene_ids import (KINDS, PAPER_DROPPED_IDS, PAR_Y_WITH_X, classify_gene_id, harmonise_expression,
                                    harmonise_gene_ids)

TP53, CD99_X, CD99_Y, DROPPED, TSPAN6 = ("ENSG00000141510", "ENSG00000002586", "ENSG00000292348",
                                         "ENSG00000286105", "ENSG00000000003")


@pytest.fixture()
def annotation() -> pd.DataFrame:
    """A hand-written standard table: CD99 is on X and (as its own Ensembl 112 gene) on Y."""
    return pd.DataFrame({"gene_id": [TP53, CD99_X, CD99_Y, DROPPED, TSPAN6],
                         "symbol": ["TP53", "CD99", "CD99", "AC000000.1", "TSPAN6"],
                         "chromosome": ["17", "X", "Y", "1", "X"]})




@pytest.mark.parametrize("identifier, kind, key", [
    ("ENSG00000141510", "ensembl", TP53),
    ("ENSG00000141510.17", "ensembl_versioned", TP53),
    ("ENSG00000002586.20_PAR_Y", "par_y", CD99_X),
    ("ENSG00000002586_PAR_Y", "par_y", CD99_X),
    ("ENSG00000141510_TP53", "ensembl_symbol", TP53),
    ("ENSG00000141510.17_TP53", "ensembl_symbol", TP53),
    ("TP53", "symbol", "TP53"),
    ("ENSG0000014151", "symbol", "ENSG0000014151"),  # 10 digits: not an Ensembl gene id
])
def test_classify_every_form(identifier: str, kind: str, key: str) -> None:
    assert classify_gene_id(identifier) == (kind, key)


def test_each_form_maps_to_the_unversioned_id(annotation: pd.DataFrame) -> None:
    ids = ["ENSG00000141510.17", " ENSG00000000003 ", "ENSG00000000003_TSPAN6", "TSPAN6", "tspan6"]
    match = harmonise_gene_ids(ids, annotation)
    t = match.table
    assert t["gene_id"].tolist() == [TP53, TSPAN6, TSPAN6, TSPAN6, TSPAN6]
    assert t["kind"].tolist() == ["ensembl_versioned", "ensembl", "ensembl_symbol", "symbol", "symbol"]
    assert t["reason"].tolist()[-2:] == ["symbol", "symbol, case-insensitive"]
    assert t["keep"].all() and match.n_matched == match.n_kept == 5 and match.unmatched == []
    assert list(t.columns) == ["input", "kind", "gene_id", "reason", "keep"]


def test_unmatched_ids_say_why(annotation: pd.DataFrame) -> None:
    ids = ["CD99", "NOTAGENE", "ENSG00000999999.1", None, "", "ENSG00000999999_FOO"]
    match = harmonise_gene_ids(ids, annotation)
    t = match.table
    assert t["gene_id"].isna().all() and not t["keep"].any()
    assert t["reason"].iloc[0] == f"ambiguous: symbol names 2 genes ({CD99_X}, {CD99_Y})"
    assert t["reason"].tolist()[1:] == ["not in annotation", "not in annotation", "missing id", "missing id",
                                        "not in annotation"]
    assert match.unmatched == ["CD99", "NOTAGENE", "ENSG00000999999.1", "None", "", "ENSG00000999999_FOO"]
    assert str(match).startswith("0 of 6 identifiers matched; 6 unmatched, e.g. CD99 (ambiguous: symbol names 2")


def test_case_insensitive_is_used_only_when_exact_fails() -> None:
    annotation = pd.DataFrame({"gene_id": [TP53, TSPAN6], "symbol": ["Abc", "ABC"]})
    t = harmonise_gene_ids(["Abc", "ABC", "abc"], annotation).table
    assert t["gene_id"].tolist()[:2] == [TP53, TSPAN6] and t["reason"].tolist()[:2] == ["symbol", "symbol"]
    assert pd.isna(t["gene_id"].iloc[2]) and t["reason"].iloc[2].startswith("ambiguous: symbol names 2 genes")


def test_par_y_copy_is_dropped_when_the_x_row_is_present(annotation: pd.DataFrame) -> None:
    match = harmonise_gene_ids(["ENSG00000002586.20_PAR_Y", "ENSG00000002586.20"], annotation)
    t = match.table
    assert t["gene_id"].tolist() == [CD99_X, CD99_X] and t["keep"].tolist() == [False, True]
    assert t["reason"].iloc[0] == PAR_Y_WITH_X
    alone = harmonise_gene_ids(["ENSG00000002586.20_PAR_Y"], annotation).table
    assert alone["keep"].tolist() == [True] and alone["reason"].iloc[0] == "PAR_Y copy, mapped to the X gene id"
    assert "1 matched but dropped (ENSG00000002586.20_PAR_Y)" in str(match)


def test_counts_and_summary(annotation: pd.DataFrame) -> None:
    ids = ["ENSG00000141510.17", "ENSG00000002586.20", "ENSG00000002586.20_PAR_Y", "ENSG00000000003_TSPAN6",
           "tp53", "CD99", "FOO", "ENSG00000286105"]
    match = harmonise_gene_ids(ids, annotation, drop_ids=PAPER_DROPPED_IDS)
    expected = pd.DataFrame({"input": [1, 2, 1, 1, 3], "matched": [1, 2, 1, 1, 1], "kept": [0, 2, 0, 1, 1]},
                            index=pd.Index(list(KINDS), name="kind"))
    pd.testing.assert_frame_equal(match.counts, expected)
    assert match.table["reason"].iloc[-1] == "Ensembl id; dropped (drop_ids)"
    assert str(match) == (
        "6 of 8 identifiers matched (ensembl 1, ensembl_versioned 2, par_y 1, ensembl_symbol 1, symbol 1); "
        f"2 unmatched, e.g. CD99 (ambiguous: symbol names 2 genes ({CD99_X}, {CD99_Y})); FOO (not in annotation); "
        "2 matched but dropped (ENSG00000002586.20_PAR_Y, ENSG00000286105); 1 matched only case-insensitively")


def test_drop_ids_accepts_versioned_ids(annotation: pd.DataFrame) -> None:
    t = harmonise_gene_ids(["ENSG00000286105.1", "TP53"], annotation, drop_ids=["ENSG00000286105.3"]).table
    assert t["keep"].tolist() == [False, True]


def test_annotation_indexed_by_gene_id_and_missing_columns(annotation: pd.DataFrame) -> None:
    indexed = annotation.set_index("gene_id")
    assert harmonise_gene_ids(["TP53"], indexed).table["gene_id"].tolist() == [TP53]
    with pytest.raises(ValueError, match=r"annotation lacks \['symbol'\].*read_pirlygenes_reference"):
        harmonise_gene_ids(["TP53"], annotation.drop(columns="symbol"))


@pytest.mark.parametrize("duplicates, tp53_row", [("sum", [10.0, 12.0]), ("first", [8.0, 9.0]),
                                                   ("mean", [5.0, 6.0])])
def test_harmonise_expression_collapses_duplicates(annotation: pd.DataFrame, duplicates: str,
                                                   tp53_row: list[float]) -> None:
    expression = pd.DataFrame([[8, 9], [0, 0], [5, 7], [2, 3], [1, 1], [4, 4]], columns=["s1", "s2"], dtype=float,
                              index=["ENSG00000141510.17", "ENSG00000002586.20_PAR_Y", "ENSG00000002586.20", "tp53",
                                     "CD99", "ENSG00000286105"])
    out, match = harmonise_expression(expression, annotation, duplicates=duplicates, drop_ids=PAPER_DROPPED_IDS)
    assert out.index.tolist() == [TP53, CD99_X] and out.index.name == "gene_id"
    assert out.loc[TP53].tolist() == tp53_row
    assert out.loc[CD99_X].tolist() == [5.0, 7.0]  # the X row, not the PAR_Y zeros, whatever the row order
    assert out.attrs["n_collapsed"] == 1 and match.unmatched == ["CD99"]


def test_harmonise_expression_bad_inputs(annotation: pd.DataFrame) -> None:
    expression = pd.DataFrame({"s1": [1, 2]}, index=["TP53", "TSPAN6"])
    with pytest.raises(ValueError, match=r"duplicates='max'.*'sum' \(raw counts\)"):
        harmonise_expression(expression, annotation, duplicates="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"column\(s\) \['symbol'\] are not numeric.*genes × samples"):
        harmonise_expression(expression.assign(symbol=["a", "b"]), annotation)
    with pytest.raises(ValueError, match=r"no expression row maps to a gene.*0 of 1 identifiers matched.*transpose"):
        harmonise_expression(expression.T, annotation)


def test_demo_cohort_rows_all_match_its_genes(small_cohort: Path) -> None:
    cohort = load_cohort(small_cohort)
    out, match = harmonise_expression(cohort.expression_pool, cohort.genes)
    assert match.n_kept == match.n_input == len(cohort.genes)
    assert match.counts.loc["ensembl_versioned", "kept"] == len(cohort.genes)
    assert out.index.equals(cohort.genes.index.rename("gene_id"))
    np.testing.assert_array_equal(out.to_numpy(), cohort.expression_pool.to_numpy())


def test_real_annotation_verhaak_symbols_and_gencode_ids() -> None:
    annotation = read_pirlygenes_reference(mirror_file("pirlygenes_gene_reference"))
    symbols = read_verhaak_clanc840(mirror_file("verhaak2010_clanc840")).var_names
    match = harmonise_gene_ids(symbols, annotation)
    assert match.n_input == 840 and match.n_matched >= 700
    assert len(match.unmatched) == 840 - match.n_matched
    assert f"{match.n_matched} of 840 identifiers matched (symbol {match.n_matched}); " in str(match)
    assert "TMSL8 (not in annotation)" in str(match)  # an old alias (now TMSB15A): reported, not guessed
    gencode = harmonise_gene_ids(["ENSG00000141510.17", "ENSG00000002586.20", "ENSG00000002586.20_PAR_Y", "CD99"],
                                 annotation).table
    assert gencode["gene_id"].tolist()[:3] == [TP53, CD99_X, CD99_X] and gencode["keep"].tolist()[:3] == [True,
                                                                                                       True, False]
    assert gencode["reason"].iloc[3].startswith("ambiguous: symbol names 2 genes")  # X and Y copies in Ensembl 112
