"""Readers of the real reference data in upstream formats: each parse against its derived oracle, known facts,
and bad inputs (messages naming the file and the fix). Needs the data mirror; fails (never skips) without it."""
from __future__ import annotations

import gzip
from pathlib import Path

import anndata as ad
import networkx as nx
import numpy as np
import pandas as pd
import pytest
import rdata

from data_mirror import mirror_file

from gbhet_lib.data.readers import (ReaderError, attach_clinical, ppi_graph, read_cancersubtypes_gbm,
                                    read_edge_table, read_gliovis_estimate_rdata, read_gliovis_gene_sets,
                                    read_gliovis_subtypes_rds, read_gmt, read_id_mapping_rda, read_innatedb_rda,
                                    read_iobr_annotation_rda, read_iobr_hallmark_rda, read_pirlygenes_reference,
                                    read_pirlygenes_sets, read_puchalski_xlsx, read_string_rda, read_tcga_cdr_rdata,
                                    read_tcga_clinical_patient, read_verhaak_clanc840, read_wang2017_subtype_calls,
                                    write_gmt)
from gbhet_lib.data.readers._common import TCGA_PLACEHOLDER
from gbhet_lib.data.readers._rxdr import read_r_dataframe



def _gmt_lines(path: Path) -> dict[str, list[str]]:
    """Independent (naive) GMT parse for oracles."""
    return {f[0]: f[2:] for f in (line.rstrip("\n").split("\t") for line in path.read_text().splitlines()) if f[0]}


def _na_to_none(values: pd.Series) -> list:
    return [None if pd.isna(v) else v for v in values]


@pytest.fixture(scope="module")
def string_edges() -> pd.DataFrame:
    return read_string_rda(mirror_file("string_v12_ppi_rda"))


@pytest.fixture(scope="module")
def string_graph(string_edges: pd.DataFrame) -> nx.Graph:
    return ppi_graph(string_edges)


@pytest.fixture(scope="module")
def cdr() -> pd.DataFrame:
    return read_tcga_cdr_rdata(mirror_file("tcga_cdr_pancancer_rdata"))


@pytest.fixture(scope="module")
def verhaak() -> ad.AnnData:
    return read_verhaak_clanc840(mirror_file("verhaak2010_clanc840"))


@pytest.fixture(scope="module")
def clinical() -> pd.DataFrame:
    return read_tcga_clinical_patient(mirror_file("tcga_gbm_clinical_patient"))


# --- PPI ------------------------------------------------------------------------------------------------------

def test_string_rda_equals_the_derived_tsv(string_edges: pd.DataFrame) -> None:
    oracle = pd.read_csv(mirror_file("string_v12_ppi_tsv"), sep="\t")
    assert list(string_edges.columns) == list(oracle.columns)
    key = ["entrez_a", "entrez_b"]
    pd.testing.assert_frame_equal(string_edges.sort_values(key).reset_index(drop=True),
                                  oracle.sort_values(key).reset_index(drop=True), check_dtype=False)


def test_string_facts(string_edges: pd.DataFrame, string_graph: nx.Graph) -> None:
    assert len(string_edges) == 174_962
    assert pd.concat([string_edges.symbol_a, string_edges.symbol_b]).nunique() == 17_288
    assert string_edges.combined_score.between(400, 999).all()
    assert (string_graph.number_of_nodes(), string_graph.number_of_edges()) == (17_288, 174_962)
    assert nx.number_connected_components(string_graph) == 1
    for a, b in [("EGFR", "GRB2"), ("TP53", "MDM2"), ("PDGFRA", "PDGFA"), ("CDK4", "CDKN2A")]:
        assert string_graph.has_edge(a, b), (a, b)
    row = string_edges[((string_edges.symbol_a == "EGFR") & (string_edges.symbol_b == "GRB2"))
                       | ((string_edges.symbol_a == "GRB2") & (string_edges.symbol_b == "EGFR"))]
    assert string_graph["EGFR"]["GRB2"]["weight"] == row.combined_score.max()


def test_ppi_graph_min_score_keeps_only_strong_edges(string_edges: pd.DataFrame) -> None:
    graph = ppi_graph(string_edges, min_score=700)
    assert graph.number_of_edges() == (string_edges.combined_score >= 700).sum()
    assert min(w for _, _, w in graph.edges(data="weight")) >= 700
    assert graph.graph["n_below_min_score"] == (string_edges.combined_score < 700).sum()


def test_ppi_graph_merges_duplicates_drops_loops_and_missing() -> None:
    edges = pd.DataFrame({"symbol_a": ["A", "B", "A", "C", None], "symbol_b": ["B", "A", "A", "D", "E"],
                          "combined_score": [500, 900, 999, 400, 700]})
    graph = ppi_graph(edges)
    assert sorted(graph.edges(data="weight")) == [("A", "B", 900.0), ("C", "D", 400.0)]
    assert graph.graph == {"n_input_rows": 5, "n_missing": 1, "n_self_loops": 1, "n_duplicates": 1,
                           "n_below_min_score": 0}
    assert ppi_graph(edges, weight=None).number_of_edges() == 2
    with pytest.raises(ReaderError, match=r"no column\(s\) \['score'\].*weight=None for an unweighted graph"):
        ppi_graph(edges, weight="score")
    with pytest.raises(ReaderError, match="min_score needs a score column"):
        ppi_graph(edges, weight=None, min_score=1)


def test_innatedb_rda_equals_the_derived_tsv() -> None:
    table = read_innatedb_rda(mirror_file("innatedb_ppi_rda"))
    oracle = pd.read_csv(mirror_file("innatedb_ppi_tsv"), sep="\t")
    assert len(table) == len(oracle) == 152_259
    for ours, theirs in [("symbol_a", "hgnc_symbol_A"), ("symbol_b", "hgnc_symbol_B"),
                         ("ensembl_a", "ensembl_gene_A"), ("ensembl_b", "ensembl_gene_B")]:
        assert _na_to_none(table[ours]) == _na_to_none(oracle[theirs]), ours
    assert (table.ensembl_a == table.ensembl_b).sum() == 2_634  # self-loops kept as published
    graph = ppi_graph(table, weight=None, source="ensembl_a", target="ensembl_b")
    assert graph.graph["n_self_loops"] == 2_634


def test_id_mapping_rda_equals_the_derived_tsv() -> None:
    table = read_id_mapping_rda(mirror_file("biomart_id_mapping_rda"))
    oracle = pd.read_csv(mirror_file("biomart_id_mapping_tsv"), sep="\t")
    assert len(table) == 75_130
    assert table.gene_id.tolist() == oracle.ensembl_gene_id.tolist()
    assert _na_to_none(table.symbol) == _na_to_none(oracle.hgnc_symbol)
    assert _na_to_none(table.entrez) == _na_to_none(oracle.entrez_gene_id.astype("Int64"))
    assert table.loc[table.symbol == "EGFR", "entrez"].tolist() == [1956]


def test_edge_table_reads_the_derived_tsv_like_the_rda(string_edges: pd.DataFrame) -> None:
    table = read_edge_table(mirror_file("string_v12_ppi_tsv"), score_col="combined_score")
    assert list(table.columns) == ["symbol_a", "symbol_b", "combined_score"]
    assert table.symbol_a.tolist() == string_edges.symbol_a.tolist()
    assert table.combined_score.tolist() == string_edges.combined_score.astype(float).tolist()
    innate = read_edge_table(mirror_file("innatedb_ppi_tsv"), source_col="hgnc_symbol_A",
                             target_col="hgnc_symbol_B", drop_missing=True)
    assert len(innate) == 152_259 - 440  # 440 rows lack a symbol on one side or both


def test_edge_table_user_csv_and_its_errors(tmp_path: Path) -> None:
    good = tmp_path / "net.csv"
    good.write_text("from,to,w\nEGFR,GRB2,0.9\nGRB2,EGFR,0.5\nTP53,MDM2,0.7\n")
    graph = ppi_graph(read_edge_table(good, "from", "to", score_col="w"), weight="w")
    assert sorted(graph.edges(data="weight")) == [("EGFR", "GRB2", 0.9), ("MDM2", "TP53", 0.7)]
    with pytest.raises(ReaderError, match=r"net\.csv: missing column\(s\) 'gene1'.*found: from, to, w.*"
                                          r"source_col='from', target_col='to'"):
        read_edge_table(good, source_col="gene1", target_col="to")
    bad_score = tmp_path / "bad.tsv"
    bad_score.write_text("a\tb\ts\nEGFR\tGRB2\thigh\n")
    with pytest.raises(ReaderError, match=r"bad\.tsv: line 2 has score 'high' in 's', not a number"):
        read_edge_table(bad_score, "a", "b", score_col="s")
    gap = tmp_path / "gap.tsv"
    gap.write_text("a\tb\nEGFR\tGRB2\nTP53\t\n")
    with pytest.raises(ReaderError, match=r"gap\.tsv: line 3 has an empty gene.*drop_missing=True"):
        read_edge_table(gap, "a", "b")
    with pytest.raises(ReaderError, match=r"is an R data file, not a text table.*read_\*_rda"):
        read_edge_table(mirror_file("innatedb_ppi_rda"))


# --- R files: wrong, empty, truncated -------------------------------------------------------------------------

def test_r_readers_reject_wrong_files_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ReaderError, match=r"not an R data file.*string\.v12\.Entrez.*string_v12_ppi_rda"):
        read_string_rda(mirror_file("string_v12_ppi_tsv"))
    with pytest.raises(ReaderError, match=r"iobr_hallmark_be5d893\.rda: the R object is not an igraph graph"):
        read_string_rda(mirror_file("msigdb_hallmark_iobr_rda"))
    with pytest.raises(ReaderError, match=r"has no column\(s\) \['ensembl_gene_A'.*innatedb_exp\.rda"):
        read_innatedb_rda(mirror_file("biomart_id_mapping_rda"))
    with pytest.raises(ReaderError, match=r"has no column\(s\) \[.*bcr_patient_barcode.*tcga_cdr_pancancer_rdata"):
        read_tcga_cdr_rdata(mirror_file("iobr_gene_annotation_rda"))
    empty = tmp_path / "empty.rda"
    empty.touch()
    with pytest.raises(ReaderError, match=r"empty\.rda: the file is empty.*gbhet fetch"):
        read_iobr_annotation_rda(empty)
    with pytest.raises(ReaderError, match=r"missing\.rda: file not found"):
        read_id_mapping_rda(tmp_path / "missing.rda")
    truncated = tmp_path / "truncated.rda"
    raw = gzip.decompress(mirror_file("gliovis_si_geneset_rdata").read_bytes())
    truncated.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    with pytest.raises(ReaderError, match=r"truncated\.rda: cannot be read as an R data frame"):
        read_gliovis_estimate_rdata(truncated)
    with pytest.raises(ReaderError, match=r"truncated\.rda: cannot be parsed as R data.*fetch it again"):
        read_gliovis_subtypes_rds(truncated)


@pytest.mark.filterwarnings("ignore:Missing constructor:UserWarning")  # rdata on tibble classes
def test_fast_frame_reader_equals_rdata() -> None:
    for name in ["biomart_id_mapping_rda", "gliovis_si_geneset_rdata"]:
        path = mirror_file(name)
        ours = read_r_dataframe(path)
        theirs = next(iter(rdata.read_rda(path).values()))
        assert list(ours.columns) == [str(c) for c in theirs.columns]
        for col in ours.columns:
            assert _na_to_none(ours[col]) == _na_to_none(theirs[col]), (name, col)


# --- gene annotation -------------------------------------------------------------------------------------------

def test_iobr_annotation_equals_the_derived_tsv() -> None:
    table = read_iobr_annotation_rda(mirror_file("iobr_gene_annotation_rda"))
    oracle = pd.read_csv(mirror_file("iobr_gene_annotation_tsv"), sep="\t", dtype={"chr": str})
    oracle = oracle.drop_duplicates("id").reset_index(drop=True)
    assert len(table) == len(oracle) == 66_533 - 545
    assert table.attrs["n_duplicates_dropped"] == 545 and table.attrs["n_nonstandard_contig"] == 5_648
    assert table.gene_id.tolist() == oracle.id.tolist()
    assert table.symbol.tolist() == oracle.symbol.tolist()
    primary = oracle.chr.isin([str(i) for i in range(1, 23)] + ["X", "Y", "MT"])
    assert _na_to_none(table.chromosome.astype(object)) == oracle.chr.where(primary, None).tolist()
    assert table.start.tolist() == oracle.start.tolist() and table.end.tolist() == oracle.end.tolist()
    egfr = table.set_index("symbol").loc["EGFR"]
    assert (egfr.gene_id, egfr.chromosome, egfr.start, egfr.end) == ("ENSG00000146648", "7", 55_019_021, 55_256_620)


def test_pirlygenes_reference_agrees_with_iobr() -> None:
    table = read_pirlygenes_reference(mirror_file("pirlygenes_gene_reference"))
    assert len(table) == 63_140 and table.attrs["n_duplicates_dropped"] == 0
    assert (table.biotype == "protein_coding").sum() == 20_089
    assert table.start.isna().all() and set(table.chromosome.dropna()) == {*map(str, range(1, 23)), "X", "Y", "MT"}
    iobr = read_iobr_annotation_rda(mirror_file("iobr_gene_annotation_rda"))
    both = table.merge(iobr, on="gene_id", suffixes=("", "_iobr")).dropna(subset=["chromosome", "chromosome_iobr"])
    agree = (both.chromosome.astype(str) == both.chromosome_iobr.astype(str)).mean()
    assert agree > 0.999, agree


# --- gene sets ------------------------------------------------------------------------------------------------

def test_iobr_hallmark_rda_equals_the_gmt() -> None:
    sets = read_iobr_hallmark_rda(mirror_file("msigdb_hallmark_iobr_rda"))
    gmt = mirror_file("msigdb_hallmark_iobr_gmt")
    assert sets == _gmt_lines(gmt) == read_gmt(gmt)
    assert len(sets) == 50 and sum(map(len, sets.values())) == 7_321
    assert {len(g) for g in sets.values()} <= set(range(32, 201))
    v62 = read_gmt(mirror_file("msigdb_hallmark_v62_gmt"))  # v6.2 still spells it "OXIGEN"
    assert len(v62) == 50 and set(v62) ^ set(sets) == {"HALLMARK_REACTIVE_OXIGEN_SPECIES_PATHWAY",
                                                       "HALLMARK_REACTIVE_OXYGEN_SPECIES_PATHWAY"}


def test_gliovis_files_give_their_sets_and_equal_the_gmt() -> None:
    verhaak = read_gliovis_subtypes_rds(mirror_file("gliovis_subtype_list_rds"))
    wang = read_gliovis_subtypes_rds(mirror_file("gliovis_subtype_list_2016_rds"))
    estimate = read_gliovis_estimate_rdata(mirror_file("gliovis_si_geneset_rdata"))
    assert {k: len(v) for k, v in verhaak.items()} == {"VERHAAK2010_PRONEURAL": 178, "VERHAAK2010_NEURAL": 129,
                                                        "VERHAAK2010_MESENCHYMAL": 216, "VERHAAK2010_CLASSICAL": 162}
    assert {len(v) for v in wang.values()} == {70} and all(k.startswith("WANG2017_PREPRINT70_") for k in wang)
    assert {k: len(v) for k, v in estimate.items()} == {"ESTIMATE_STROMALSIGNATURE": 141,
                                                         "ESTIMATE_IMMUNESIGNATURE": 141}
    combined = read_gliovis_gene_sets(mirror_file("gliovis_subtype_list_rds"),
                                      mirror_file("gliovis_subtype_list_2016_rds"),
                                      mirror_file("gliovis_si_geneset_rdata"))
    assert combined == _gmt_lines(mirror_file("gbm_subtypes_gliovis_gmt"))
    with pytest.raises(ReaderError, match=r"iobr_hallmark_be5d893\.rda: list names .* neither the Verhaak"):
        read_gliovis_subtypes_rds(mirror_file("msigdb_hallmark_iobr_rda"))


def test_neftel_and_pirlygenes_sets() -> None:
    neftel = read_gmt(mirror_file("neftel2019_gmt"))
    assert {k: len(v) for k, v in neftel.items()} == {"NEFTEL2019_MES2_LIKE": 50, "NEFTEL2019_MES1_LIKE": 50,
                                                      "NEFTEL2019_AC_LIKE": 39, "NEFTEL2019_OPC_LIKE": 50,
                                                      "NEFTEL2019_NPC1_LIKE": 50, "NEFTEL2019_NPC2_LIKE": 50}
    lineage = read_pirlygenes_sets(mirror_file("pirlygenes_lineage_genes"), cancer_type="GBM")
    assert lineage == {"GBM_LINEAGE_HIGH": ["FABP7", "GFAP", "NES", "OLIG2", "SOX2", "SOX9"]}
    roles = read_pirlygenes_sets(mirror_file("pirlygenes_cancer_type_genes"), cancer_type="GBM")
    assert "EGFR" in roles["GBM_DRIVER"] and "IDH1" in roles["GBM_SUBTYPE"]
    estimate = read_pirlygenes_sets(mirror_file("pirlygenes_estimate_signatures"))
    gliovis = read_gliovis_estimate_rdata(mirror_file("gliovis_si_geneset_rdata"))
    for name, genes in estimate.items():  # same 141-gene signatures; a few symbols renamed since 2013
        assert len(genes) == 141 and len(set(genes) & set(gliovis[name])) >= 135, name
    with pytest.raises(ReaderError, match=r"no rows for cancer_type='XYZ'"):
        read_pirlygenes_sets(mirror_file("pirlygenes_cancer_type_genes"), cancer_type="XYZ")


def test_puchalski_xlsx_equals_the_csv() -> None:
    sets = read_puchalski_xlsx(mirror_file("puchalski2018_gene_sets_xlsx"))
    oracle = pd.read_csv(mirror_file("puchalski2018_gene_sets_csv"))
    assert list(sets) == list(oracle.columns) and len(sets) == 21
    for name in sets:
        assert sets[name] == [g for g in oracle[name].dropna() if g != "na"], name
    assert min(map(len, sets.values())) == 11 and max(map(len, sets.values())) == 53
    with pytest.raises(ReaderError, match=r"not a readable \.xlsx workbook.*aaf2666_Table-S15\.xlsx"):
        read_puchalski_xlsx(mirror_file("puchalski2018_gene_sets_csv"))


def test_gmt_round_trip_and_strict_errors(tmp_path: Path) -> None:
    sets = {"UP": ["EGFR", "GRB2", "EGFR"], "DOWN": ["TP53"]}
    path = write_gmt(sets, tmp_path / "s.gmt", descriptions={"UP": "up genes"})
    assert path.read_text() == "UP\tup genes\tEGFR\tGRB2\nDOWN\t\tTP53\n"
    assert read_gmt(path) == {"UP": ["EGFR", "GRB2"], "DOWN": ["TP53"]}
    cases = {
        "short.gmt": ("A\tdesc\tG1\nB\tdesc\n", r"short\.gmt: line 2 has 2 tab-separated field\(s\).*one gene"),
        "dup.gmt": ("A\td\tG1\n\nA\td\tG2\n", r"dup\.gmt: line 3 repeats set name 'A' \(first on line 1\)"),
        "hole.gmt": ("A\td\tG1\t\tG2\n", r"hole\.gmt: line 1 has an empty gene field \(field 4\)"),
        "spaces.gmt": ("A d G1 G2\n", r"spaces\.gmt: line 1 has 1 tab-separated.*use tabs"),
        "blank.gmt": ("\n\n", r"blank\.gmt: no gene sets"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ReaderError, match=message):
            read_gmt(tmp_path / name)
    with pytest.raises(ReaderError, match=r"not a UTF-8 text file"):
        read_gmt(mirror_file("msigdb_hallmark_iobr_rda"))
    with pytest.raises(ReaderError, match="contains a tab or newline"):
        write_gmt({"A\tB": ["G"]}, tmp_path / "x.gmt")


# --- TCGA -----------------------------------------------------------------------------------------------------

def test_verhaak_clanc840(verhaak: ad.AnnData) -> None:
    assert verhaak.shape == (173, 840)
    assert verhaak.obs.subtype.value_counts().to_dict() == {"Mesenchymal": 56, "Proneural": 53,
                                                             "Classical": 38, "Neural": 26}
    assert verhaak.var.marker_of.value_counts().to_dict() == {"MES": 216, "PN": 178, "CL": 162, "NL": 129}
    assert verhaak.var.marker_of.isna().sum() == 155
    assert verhaak.obs.patient_id.nunique() == 173 and verhaak.obs.patient_id.str.fullmatch(r"TCGA-\d\d-\d{4}").all()
    assert verhaak.obs_names[0] == "TCGA-02-0003-01A-01" and verhaak.obs.patient_id.iloc[0] == "TCGA-02-0003"
    assert verhaak[0, "CDKN1B"].X.item() == pytest.approx(1.251)
    assert np.isfinite(verhaak.X).all() and -10.1 < verhaak.X.min() and verhaak.X.max() < 13.3


def test_clinical_patient_file(clinical: pd.DataFrame) -> None:
    assert clinical.shape[0] == 548 and clinical.index.name == "patient_id"
    assert clinical.os_event.value_counts(dropna=False).to_dict() == {1: 411, 0: 135, pd.NA: 2}
    assert clinical.sex.value_counts().to_dict() == {"male": 335, "female": 213}
    assert clinical.age.between(10, 89).all() and clinical.age.median() == 59
    first = clinical.loc["TCGA-02-0001"]
    assert (first.os_days, first.os_event, first.age, first.sex) == (358, 1, 44, "female")
    assert not clinical.map(lambda v: isinstance(v, str) and bool(TCGA_PLACEHOLDER.match(v))).any().any()


def test_attach_clinical_matches_156_patients(verhaak: ad.AnnData, clinical: pd.DataFrame) -> None:
    joined, report = attach_clinical(verhaak, clinical, columns=["os_days", "os_event", "age", "sex"])
    assert (report.n_samples, report.n_patients, report.n_matched_patients, report.n_clinical_patients) == \
        (173, 173, 156, 548)
    assert len(report.unmatched_patients) == 17 and "156 of 173 patients" in str(report)
    assert joined.obs.sex.notna().sum() == 156  # every clinical row has a sex
    assert joined.obs.set_index("patient_id").loc["TCGA-02-0003", "os_days"] == 144
    assert joined.uns["clinical_join"]["n_matched_patients"] == 156 and "os_days" not in verhaak.obs
    assert {"vital_status", "participant_code"} <= set(attach_clinical(verhaak, clinical)[0].obs)
    with pytest.raises(ReaderError, match=r"obs already has column\(s\) \['subtype'\]"):
        attach_clinical(verhaak, clinical.assign(subtype="x"))
    with pytest.raises(ReaderError, match=r"adata\.obs has no 'case_id' column.*Pass on="):
        attach_clinical(verhaak, clinical, on="case_id")


def test_clinical_errors(tmp_path: Path) -> None:
    lines = mirror_file("tcga_gbm_clinical_patient").read_text().splitlines()
    bad_vital = tmp_path / "vital.txt"
    bad_vital.write_text("\n".join(lines[:4] + [lines[4].replace("\tDead\t", "\tMaybe\t")]) + "\n")
    with pytest.raises(ReaderError, match=r"vital\.txt: line 5, column 'vital_status' holds 'Maybe'; expected Dead"):
        read_tcga_clinical_patient(bad_vital)
    no_column = tmp_path / "nocol.tsv"
    no_column.write_text("bcr_patient_barcode\tgender\nTCGA-02-0001\tFEMALE\n")
    with pytest.raises(ReaderError, match=r"nocol\.tsv: missing column\(s\) 'vital_status', 'death_days_to'"):
        read_tcga_clinical_patient(no_column)
    with pytest.raises(ReaderError, match=r"not the ClaNC840 layout.*verhaak2010_clanc840"):
        read_verhaak_clanc840(mirror_file("tcga_gbm_clinical_patient"))


def test_verhaak_clanc840_names_the_physical_line_of_a_bad_value(tmp_path: Path) -> None:
    lines = mirror_file("verhaak2010_clanc840").read_bytes().decode().split("\r\n")
    blank = lines.index("")  # the upstream file has an empty line; pandas skips it, the message must not
    target = blank + 3  # a gene row after it (0-based)
    fields = lines[target].split("\t")
    fields[5] = "n/a"
    bad = tmp_path / "clanc.txt"
    bad.write_bytes("\r\n".join(lines[:target] + ["\t".join(fields)] + lines[target + 1:]).encode())
    with pytest.raises(ReaderError, match=rf"gene '{fields[0]}' \(line {target + 1}\), sample .* has 'n/a'"):
        read_verhaak_clanc840(bad)


def test_cdr_equals_the_derived_tsv(cdr: pd.DataFrame) -> None:
    assert cdr.acronym.value_counts().to_dict() == {"GBM": 596, "LGG": 515}
    oracle = pd.read_csv(mirror_file("tcga_cdr_gbm_lgg_tsv"), sep="\t", dtype={"tissue_source_site": str})
    assert cdr.index.tolist() == oracle.bcr_patient_barcode.tolist()
    for col in oracle.columns:
        theirs = oracle[col].map(lambda v: None if isinstance(v, str) and TCGA_PLACEHOLDER.match(v) else v)
        ours = cdr[col].reset_index(drop=True)
        if pd.api.types.is_numeric_dtype(theirs):
            np.testing.assert_allclose(pd.to_numeric(ours).astype(float), theirs.astype(float), err_msg=col)
        else:
            assert _na_to_none(ours) == _na_to_none(theirs), col
    first = cdr.loc["TCGA-02-0001"]
    assert (first.os_days, first.os_event, first.age, first.sex) == (358, 1, 44, "female")
    with pytest.raises(ReaderError, match=r"no project\(s\) \['GMB'\].*available: ACC, BLCA"):
        read_tcga_cdr_rdata(mirror_file("tcga_cdr_pancancer_rdata"), projects=["GMB"])


def test_cancersubtypes_equals_the_derived_tsvs(cdr: pd.DataFrame) -> None:
    adata = read_cancersubtypes_gbm(mirror_file("cancersubtypes_geneexp_rda"), mirror_file("cancersubtypes_time_rda"),
                                    mirror_file("cancersubtypes_status_rda"))
    expression = pd.read_csv(mirror_file("cancersubtypes_gbm_expression_tsv"), sep="\t", index_col=0)
    survival = pd.read_csv(mirror_file("cancersubtypes_gbm_survival_tsv"), sep="\t", index_col=0)
    assert adata.shape == (100, 1500)
    assert adata.var_names.tolist() == expression.index.tolist()
    assert adata.obs_names.tolist() == expression.columns.tolist() == survival.index.tolist()
    np.testing.assert_allclose(adata.X, expression.to_numpy().T)
    assert adata.obs.os_days.tolist() == survival.time_days.tolist()
    assert adata.obs.os_event.tolist() == survival.status.tolist()
    assert adata.obs.loc["TCGA-02-0001", "os_days"] == 358 == cdr.loc["TCGA-02-0001", "os_days"]
    with pytest.raises(ReaderError, match=r"cancersubtypes_time\.rda: holds R object\(s\) \['time'\], not 'GeneExp'"):
        read_cancersubtypes_gbm(mirror_file("cancersubtypes_time_rda"), mirror_file("cancersubtypes_time_rda"),
                                mirror_file("cancersubtypes_status_rda"))


def test_wang2017_subtype_calls() -> None:
    calls = read_wang2017_subtype_calls(mirror_file("wang2017_subtype_calls"))
    assert len(calls) == 162 and calls.index.is_unique
    assert calls.subtype_u133a.value_counts().to_dict() == {"Classical": 62, "Mesenchymal": 54, "Proneural": 46}
    assert calls.subtype_rnaseq.value_counts().to_dict() == {"Classical": 68, "Mesenchymal": 48, "Proneural": 46}
    assert calls.discordant.sum() == 10
    assert calls.loc["TCGA-06-2569", "sample_rnaseq"] == "TCGA-06-2569-01A-01R-1849-01"
    assert (calls.pearson_r < 0.15).sum() == 18  # the footnote's "18 pairs discarded"
