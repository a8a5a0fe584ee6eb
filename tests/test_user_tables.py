"""The reader of a user's own tables (gbhet_lib.data.user_tables): every case a new user met (issue 16), the message
each one now gets, and the report of what the reader decided."""
from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from gbhet_lib.data.readers import ReaderError
from gbhet_lib.data.user_tables import (UserTableError, affix_patterns, read_clinical_table, read_expression_table,
                                        read_trait_table, report_table, sniff_delimiter)
from gbhet_lib.errors import GbhetError

ANNOTATION = pd.DataFrame({"gene_id": ["ENSG00000141510", "ENSG00000146648", "ENSG00000000003", "ENSG00000133703"],
                           "symbol": ["TP53", "EGFR", "TSPAN6", "KRAS"]})
SAMPLES = ["TCGA-02-0001-01A", "TCGA-02-0003-01A", "TCGA-06-0100-01A"]


def write(path: Path, text: str) -> Path:
    data = text.encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def expression(path: Path, **kwargs) -> pd.DataFrame:
    return read_expression_table(path, annotation=ANNOTATION, chapter="chapter 2", **kwargs)


def clinical(path: Path, samples: list[str] = SAMPLES, **kwargs) -> pd.DataFrame:
    return read_clinical_table(path, samples, chapter="chapter 2", **kwargs)


# --- the error type -------------------------------------------------------------------------------------------

def test_errors_are_gbhet_reader_and_value_errors(tmp_path: Path) -> None:
    with pytest.raises(UserTableError) as caught:
        expression(tmp_path / "missing.csv")
    assert isinstance(caught.value, GbhetError) and isinstance(caught.value, ReaderError)
    assert isinstance(caught.value, ValueError)
    assert str(caught.value) == (f"{tmp_path}/missing.csv: file not found (expected an expression matrix: genes × "
                                 "samples or samples × genes with one header row, as CSV/TSV (optionally .gz), or "
                                 ".h5ad (obs = samples, var = genes)). Fix: check `expression_path=` in chapter 2's "
                                 "parameters.")


# --- delimiters and empty files ----------------------------------------------------------------------------------

@pytest.mark.parametrize("lines, expected", [
    (["g,S1,S2", "TP53,1,2"], (",", 3)),
    (["g\tS1\tS2", "TP53\t1,5\t2"], ("\t", 3)),
    (["g;S1;S2", "TP53;1,5;2", "EGFR;3;4"], (";", 3)),
    (["S1\tS2", "TP53\t1\t2"], ("\t", 3)),  # R style: no corner cell
    (['"gene, long",S1', '"TP53, a",1'], (",", 2)),  # quoted delimiter
    (["just one column", "TP53"], ("", 0)),
])
def test_sniff_delimiter(lines: list[str], expected: tuple[str, int]) -> None:
    assert sniff_delimiter(lines) == expected


def test_semicolon_csv_is_sniffed_with_its_decimal_comma(tmp_path: Path) -> None:
    out = expression(write(tmp_path / "x.csv", "gene;S1;S2\nTP53;1,5;2\nEGFR;5;6,25\n"), values="normalised")
    assert out.loc["TP53"].tolist() == [1.5, 2.0] and out.loc["EGFR", "S2"] == 6.25
    assert out.attrs["report"].steps["format"] == ("text, semicolon-delimited (sniffed from the first 3 lines: 3 "
                                                   "fields per row), decimal comma; 2 data rows × 3 columns")


def test_tab_file_named_csv_and_gzip_are_sniffed(tmp_path: Path) -> None:
    out = expression(write(tmp_path / "x.csv.gz", "gene\tS1\tS2\nTP53\t1\t2\nEGFR\t3\t4\n"))
    assert out.loc["EGFR"].tolist() == [3.0, 4.0]
    assert out.attrs["report"].steps["format"].startswith("text, tab-delimited (sniffed from the first 3 lines")
    assert out.attrs["report"].steps["format"].endswith(", gzip; 2 data rows × 3 columns")


@pytest.mark.parametrize("name, text, message", [
    ("empty.csv", "", r"empty\.csv: the file is empty \(0 bytes; expected an expression matrix.*\)\. Fix: save the "
                      r"table again and point `expression_path=` at it\.$"),
    ("header.csv", "gene;S1;S2\n", r"header\.csv: the table has a header \(3 columns, semicolon-delimited\) but no "
                                   r"data rows\. Fix: save the table with its rows\.$"),
    ("blank.tsv.gz", "\n\n", r"blank\.tsv\.gz: holds no text lines"),
    ("one.csv", "gene\nTP53\n", r"one\.csv: found no delimiter \(comma, tab or semicolon\) that splits the first lines"
                                r" into the same number of columns \(first line: 'gene'\)"),
    ("binary.tsv", "\x00\xff", r"binary\.tsv: is not a UTF-8 text table"),
])
def test_empty_and_unreadable_files_say_what_to_do_about_the_users_own_file(tmp_path: Path, name: str, text: str,
                                                                             message: str) -> None:
    path = tmp_path / name
    if name == "binary.tsv":
        path.write_bytes(b"\x00\xff\xfe")
    else:
        write(path, text)
    with pytest.raises(UserTableError, match=message) as caught:
        expression(path)
    assert "gbhet fetch" not in str(caught.value)  # advice for manifest files, not for the user's own


# --- duplicated genes, repeated samples ----------------------------------------------------------------------------

def test_duplicated_gene_counts_are_summed_and_reported(tmp_path: Path) -> None:
    out = expression(write(tmp_path / "x.csv", "gene,S1,S2\nTP53,1,2\nTP53,3,4\nEGFR,5,6\n"))
    assert out.loc["TP53"].tolist() == [4.0, 6.0] and out.index.tolist() == ["TP53", "EGFR"]
    assert out.attrs["report"].steps["duplicated genes"] == (
        "1 gene label on 2 rows (e.g. 'TP53' × 2): summed (raw counts: reads of one gene split over rows) → 2 genes")


def test_duplicated_gene_normalised_values_are_averaged_and_reported(tmp_path: Path) -> None:
    out = expression(write(tmp_path / "x.tsv", "sample\tTP53\tTP53\tEGFR\nS1\t1\t3\t5\n"), values="normalised")
    assert out.loc["TP53", "S1"] == 2.0
    assert out.attrs["report"].steps["duplicated genes"] == (
        "1 gene label on 2 columns (e.g. 'TP53' × 2): averaged (normalised values) → 2 genes")


# --- wide tables: gene columns with an omics suffix beside clinical and other omics columns ---------------------

WIDE = ("case_id,slide_id,age,os_days,TP53_rnaseq,EGFR_rnaseq,TSPAN6_rnaseq,TP53_cnv,EGFR_cnv\n"
        "C1,s1,50,100,1,2,3,0,1\nC1,s2,50,100,6,4,5,0,1\nC2,s3,60,200,5,6,7,1,1\n")


def test_wide_table_without_columns_says_which_pattern_to_set(tmp_path: Path) -> None:
    with pytest.raises(UserTableError) as caught:
        expression(write(tmp_path / "wide.csv", WIDE))
    assert str(caught.value).endswith(
        "wide.csv: no column or row looks like gene ids: 0% of 3 row labels and 0% of 8 column labels look like gene "
        "ids (Ensembl ENSG… or annotation symbols). Fix: the columns look like genes with an affix: set "
        "`expression_columns='(.+)_rnaseq'` and `sample_column=` in chapter 2's parameters, sample_column naming the "
        "column of sample ids (other candidates: '(.+)_cnv').")


@pytest.mark.parametrize("rule, values, c1, done", [
    ("mean", "counts", [4.0, 3.0, 4.0], "averaged and rounded to whole counts"),  # DESeq2 needs integers
    ("mean", "normalised", [3.5, 3.0, 4.0], "averaged"),
    ("sum", "counts", [7.0, 6.0, 8.0], "summed"),
    ("first", "counts", [1.0, 2.0, 3.0], "first row kept"),
])
def test_wide_table_gene_columns_and_repeated_samples(tmp_path: Path, rule: str, values: str, c1: list[float],
                                                      done: str) -> None:
    out = expression(write(tmp_path / "wide.csv", WIDE), expression_columns="(.+)_rnaseq", sample_column="case_id",
                     aggregate_samples=rule, values=values)
    assert out.index.tolist() == ["TP53", "EGFR", "TSPAN6"] and out.columns.tolist() == ["C1", "C2"]
    assert out["C1"].tolist() == c1 and out["C2"].tolist() == [5.0, 6.0, 7.0]
    steps = out.attrs["report"].steps
    assert steps["columns"] == ("3 of 8 value columns match '(.+)_rnaseq', gene = group 1 ('TP53_rnaseq' → 'TP53'); 5 "
                                "ignored ('slide_id', 'age', 'os_days', 'TP53_cnv', 'EGFR_cnv')")
    assert steps["orientation"] == "samples × genes (rows = samples: implied by expression_columns/sample_column)"
    assert steps["repeated samples"] == (f"1 sample on 2 rows (e.g. 'C1' × 2): {done} (aggregate_samples={rule!r}) "
                                         "→ 2 samples")


@pytest.mark.parametrize("kwargs, message", [
    ({"expression_columns": "(.+)_rnaseq", "orientation": "genes_x_samples"},
     r"orientation='genes_x_samples' contradicts expression_columns/sample_column.*Fix: set "
     r"`orientation='samples_x_genes'` or `orientation='auto'` in chapter 2's parameters\."),
    ({"expression_columns": ".+_rnaseq"},
     r"expression_columns='.\+_rnaseq' has no group to take the gene name from\. Fix: set `expression_columns=` in "
     r"chapter 2's parameters with the gene in parentheses"),
    ({"expression_columns": "(.+"}, r"expression_columns='\(.\+' is not a regular expression"),
    ({"expression_columns": "(.+)_rna"},
     r"no column matches expression_columns='\(.\+\)_rna' in full \(columns: 'slide_id', 'age'.*\)\. Fix: set "
     r"`expression_columns=` in chapter 2's parameters to a regular expression matching the gene columns"),
    ({"expression_columns": "(.+)_rnaseq", "sample_column": "case"},
     r"no column named 'case' \(columns: 'case_id', 'slide_id'.*\)\. Fix: set `sample_column=` in chapter 2's "
     r"parameters to the column of sample ids\."),
    ({"sample_column": "case_id"},
     r"data row 1, column 'slide_id' \(gene 'slide_id', sample 'C1'\) holds 's1', not a number \(3 such cells in 1 "
     r"column\(s\): 'slide_id'\)\. Fix: set `expression_columns=` in chapter 2's parameters to a regular expression "
     r"matching only the gene columns.*and `sample_column=` to the column of sample ids"),
    ({"aggregate_samples": "median"},
     r"wide\.csv: aggregate_samples='median' is not one of 'mean', 'sum', 'first'\. Fix: set `aggregate_samples=` in "
     r"chapter 2's parameters to one of them\.$"),
])
def test_wide_table_bad_settings(tmp_path: Path, kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(UserTableError, match=message):
        expression(write(tmp_path / "wide.csv", WIDE), **kwargs)


def test_text_columns_beside_gene_columns_point_at_expression_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "x.tsv", "case\tsite\tTP53\tEGFR\tKRAS\nC1\tfrontal\t1\t2\t3\n")
    with pytest.raises(UserTableError, match=r"data row 1, column 'site' \(gene 'site', sample 'C1'\) holds 'frontal'"
                                             r".*Fix: set `expression_columns=` in chapter 2's parameters"):
        expression(path)


def test_affix_patterns_find_suffixes_and_prefixes() -> None:
    symbols = frozenset({"TP53", "EGFR", "KRAS"})
    assert affix_patterns(["id", "TP53_rna", "EGFR_rna", "KRAS_rna", "TP53.cnv", "EGFR.cnv"], symbols) == \
        ["(.+)_rna", r"(.+)\.cnv"]
    assert affix_patterns(["id", "rna|TP53", "rna|EGFR"], symbols) == [r"rna\|(.+)"]
    assert affix_patterns(["id", "age_years", "os_days"], symbols) == []


def test_h5ad_sample_column_and_expression_columns(tmp_path: Path) -> None:
    import anndata as ad
    import numpy as np

    adata = ad.AnnData(X=np.array([[1.0, 2, 9], [3, 4, 9]]), obs=pd.DataFrame({"case": ["C1", "C1"]}, index=["a", "b"]),
                       var=pd.DataFrame(index=["TP53_rna", "EGFR_rna", "TP53_cnv"]))
    adata.write_h5ad(tmp_path / "x.h5ad")
    out = expression(tmp_path / "x.h5ad", expression_columns="(.+)_rna", sample_column="case")
    assert out["C1"].tolist() == [2.0, 3.0] and out.index.tolist() == ["TP53", "EGFR"]
    with pytest.raises(UserTableError, match=r"x.h5ad: obs has no column 'patient' \(obs columns: \['case'\]\)\. "
                                             r"Fix: set `sample_column=` in chapter 2's parameters"):
        expression(tmp_path / "x.h5ad", sample_column="patient")


# --- clinical tables -------------------------------------------------------------------------------------------

CLINICAL = ("bcr_patient_barcode,age,subtype,OS.time,vital_status\nTCGA-02-0001,50,Classical,300,Dead\n"
            "TCGA-02-0003,60,Neural,400,Alive\nTCGA-99-9999,70,Neural,10,Dead\n")


def test_clinical_by_patient_id_matches_sample_barcodes_and_reports_it(tmp_path: Path) -> None:
    out = clinical(write(tmp_path / "c.csv", CLINICAL))
    assert out.index.tolist() == SAMPLES[:2] and out.index.name == "sample"
    assert out.columns.tolist() == ["os_days", "os_event", "age", "subtype"]
    assert out["os_days"].tolist() == [300.0, 400.0] and out["os_event"].tolist() == [1.0, 0.0]
    assert out["age"].dtype.kind == "i"
    steps = out.attrs["report"].steps
    assert steps["id column"] == ("'bcr_patient_barcode' (auto: matches 2 of 3 expression samples; "
                                  "clinical_id_column= sets it)")
    assert steps["matched samples"] == (
        "2 of 3 expression samples: 0 by their id, 2 by TCGA patient barcode (e.g. 'TCGA-02-0001-01A' → "
        "'TCGA-02-0001'); no row for 1 ('TCGA-06-0100-01A'); 1 of the file's 3 rows match no sample")
    assert steps["survival time"] == "'OS.time' in days → os_days (median 350 days; 0 missing)"
    assert steps["survival event"] == ("'vital_status': 'Dead' → 1, 'Alive' → 0: 1 event, 1 censored, 0 missing → "
                                       "os_event")


def test_clinical_exact_ids_and_months(tmp_path: Path) -> None:
    path = write(tmp_path / "c.tsv", "x\tsample\tos_months\tos_event\n1\tS1\t12\tTrue\n2\tS2\t6\tfalse\n")
    out = clinical(path, ["S1", "S2"], survival_time_unit="months")
    assert out["os_days"].tolist() == [365.25, 182.625] and out["os_event"].tolist() == [1.0, 0.0]
    assert out.attrs["report"].steps["survival time"] == ("'os_months' in months × 30.4375 days → os_days (median "
                                                          "274 days; 0 missing)")
    with pytest.raises(UserTableError, match=r"c\.tsv: survival time column 'os_months' looks like months but "
                                             r"survival_time_unit='days'\. Fix: set `survival_time_unit='months'` "
                                             r"in chapter 2's parameters if the times are in months\."):
        clinical(path, ["S1", "S2"])


@pytest.mark.parametrize("text, kwargs, message", [
    ("id,x\nA,1\nB,2\n", {},
     r"no column holds the expression's sample ids \(e\.g\. 'TCGA-02-0001-01A', 'TCGA-02-0003-01A', "
     r"'TCGA-06-0100-01A'\); the file's first columns start with 'id': 'A', 'B'; 'x': '1', '2'\. Fix: set "
     r"`clinical_id_column=` in chapter 2's parameters to the column of sample or patient ids"),
    (CLINICAL, {"clinical_id_column": "patient"},
     r"no column 'patient' \(columns: 'bcr_patient_barcode', 'age'.*\)\. Fix: set `clinical_id_column=` in chapter "
     r"2's parameters to the column of sample or patient ids\."),
    (CLINICAL, {"clinical_id_column": "subtype"},
     r"no row's 'subtype' matches an expression sample \(e\.g\. 'TCGA-02-0001-01A'.* vs 'Classical', 'Neural', "
     r"'Neural'\)\. Fix: set `clinical_id_column=` in chapter 2's parameters"),
    (CLINICAL, {"survival_time_column": "OS_days"},
     r"no column 'OS_days' \(columns: 'bcr_patient_barcode', 'age', 'subtype', 'OS.time', 'vital_status'\)\. Fix: set "
     r"`survival_time_column=` in chapter 2's parameters to one of the file's columns\."),
    (CLINICAL, {"survival_event_column": "status"},
     r"no column 'status' .*Fix: set `survival_event_column=` in chapter 2's parameters"),
    ("id,OS.time\nTCGA-02-0001,3\n", {},
     r"found the survival time column 'OS.time' but no event column \(columns: 'id', 'OS.time'\)\. Fix: set "
     r"`survival_event_column=` in chapter 2's parameters to the column that holds it\."),
    (CLINICAL.replace("Alive", "maybe"), {},
     r"column 'vital_status' holds 'maybe' for sample 'TCGA-02-0003-01A' \(codes not understood: 'maybe'\)\. Fix: code "
     r"survival events as 1 \(died\) / 0 \(censored\), or dead/alive"),
    ("id,os_days,os_event\nTCGA-02-0001,3,2\nTCGA-02-0003,4,1\n", {},
     r"column 'os_event' holds '2' .*R's 1/2 \(2 = dead\) coding is not guessed"),
    ("id,os_days,os_event\nTCGA-02-0001,soon,1\n", {},
     r"column 'os_days' holds 'soon' for sample 'TCGA-02-0001-01A', not a number \(1 such rows\)"),
    ("id,os_days,os_event\nTCGA-02-0001,-3,1\n", {},
     r"column 'os_days' holds a negative time for sample 'TCGA-02-0001-01A' \(-3\.0\)"),
    ("id,os_days,os_event\nTCGA-02-0001,3,1\nTCGA-02-0001,4,1\n", {},
     r"id 'TCGA-02-0001' has 2 rows \(data rows \[1, 2\]\) that differ in column 'os_days'\. Fix: keep one row per id"),
    (CLINICAL, {"survival_time_unit": "weeks"},
     r"survival_time_unit='weeks' is not one of 'days', 'months', 'years'\. Fix: set `survival_time_unit=` in "
     r"chapter 2's parameters to one of them\.$"),
    ("id,id\nA,B\n", {}, r"column name 'id' occurs more than once or is empty"),
])
def test_bad_clinical_tables(tmp_path: Path, text: str, kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(UserTableError, match=r"c\.csv: " + message):
        clinical(write(tmp_path / "c.csv", text), **kwargs)


def test_clinical_without_survival_says_the_evaluation_is_skipped(tmp_path: Path) -> None:
    out = clinical(write(tmp_path / "c.csv", "id,subtype\nTCGA-02-0001,X\n"))
    assert out.columns.tolist() == ["subtype"]
    assert out.attrs["report"].steps["survival"] == (
        "no survival columns (looked for os_days, os_time, os_months, os, … and os_event, os_status, event, status, …): "
        "the survival evaluation is skipped; to run it, set `survival_time_column=` and `survival_event_column=` in "
        "chapter 2's parameters")


def test_clinical_rows_repeated_per_slide_collapse_when_survival_agrees(tmp_path: Path) -> None:
    text = "case,slide,time,dead\nTCGA-02-0001,s1,3,yes\nTCGA-02-0001,s2,3,yes\nTCGA-02-0003,s3,5,no\n"
    out = clinical(write(tmp_path / "c.csv", text), survival_time_column="time", survival_event_column="dead")
    assert out["slide"].tolist() == ["s1", "s3"] and out["os_event"].tolist() == [1.0, 0.0]
    assert out.attrs["report"].steps["repeated ids"] == "1 id on 2 rows: first row kept (they agree on 'time', 'dead')"


# --- traits ----------------------------------------------------------------------------------------------------

def test_traits_table(tmp_path: Path) -> None:
    path = write(tmp_path / "t.tsv", "id\tnecrosis\tTRAIT_focal\nTCGA-02-0001\tyes\t0\nTCGA-02-0003\t1.0\tFALSE\n")
    out = read_trait_table(path, SAMPLES, ["necrosis", "focal"], chapter="chapter 8")
    assert out.to_dict(orient="list") == {"necrosis": [1.0, 1.0], "focal": [0.0, 0.0]}
    assert out.attrs["report"].steps["traits"] == ("necrosis ← 'necrosis': 2 of 2 positive; focal ← 'TRAIT_focal': "
                                                   "0 of 2 positive")
    with pytest.raises(UserTableError, match=r"t\.tsv: no column for trait\(s\) \['edema'\] \(columns: 'id', "
                                             r"'necrosis', 'TRAIT_focal'\)\. Fix: set `traits=` in chapter 8's "
                                             r"parameters to the traits the file holds"):
        read_trait_table(path, SAMPLES, ["necrosis", "edema"], chapter="chapter 8")
    bad = write(tmp_path / "b.tsv", "id\tnecrosis\nTCGA-02-0001\tsome\n")
    with pytest.raises(UserTableError, match=r"b\.tsv: column 'necrosis' holds 'some' for sample 'TCGA-02-0001-01A'.*"
                                             r"Fix: code trait values as 1/0"):
        read_trait_table(bad, SAMPLES, ["necrosis"], chapter="chapter 8")


# --- the report a chapter shows ------------------------------------------------------------------------------------

def test_report_table_lists_every_decision(tmp_path: Path) -> None:
    table = expression(write(tmp_path / "x.csv", "gene,S1,S2\nTP53,1,2\nEGFR,5,6\n"))
    rows = clinical(write(tmp_path / "c.csv", "id,os_days,os_event\nS1,3,1\n"), ["S1", "S2"])
    report = report_table(table.attrs["report"], None, rows.attrs["report"])
    assert report.columns.tolist() == ["table", "step", "decision"]
    assert report["step"].tolist() == ["format", "columns", "orientation", "repeated samples", "duplicated genes",
                                       "result", "format", "id column", "repeated ids", "matched samples",
                                       "survival time", "survival event", "columns kept"]
    assert report_table(None).empty


# --- chapter 2's use of the reader ----------------------------------------------------------------------------------

def test_chapter_2_reads_your_expression_and_clinical_table_and_reports_both(tmp_path: Path) -> None:
    from gbhet_lib.rna import stage

    path = write(tmp_path / "x.csv", "gene,S1,S2,S3\nTP53,10,20,30\nENSG00000141510.17,1,2,3\nEGFR,5,6,7\n"
                                     "KRAS,8,8,9\n")
    table = read_expression_table(path, annotation=ANNOTATION, chapter=stage.CHAPTER_NAME)
    rna = stage.own_expression(table, ANNOTATION, counts=True)
    assert rna.values.columns.tolist() == ["TP53", "EGFR", "KRAS"] and rna.n_merged == 1
    assert rna.reading.steps["gene ids"].endswith("; 1 row merged into another row of the same gene (counts "
                                                  "summed); 3 genes with a unique symbol kept")
    rows = stage.clinical_table(None, write(tmp_path / "c.csv", "id,os_days,os_event\nS1,3,dead\nS3,4,alive\n"),
                                rna.values.index)
    assert rows["os_event"].tolist() == [1.0, 0.0]
    report = stage.reading_report(rna, rows)
    assert report.index.names == ["table", "step"] and ("clinical", "matched samples") in report.index
    assert stage.reading_report(rna, None).index.get_level_values("table").unique().tolist() == ["expression"]
    with pytest.raises(UserTableError, match=r"c\.csv: no column 'OS' .*Fix: set `survival_time_column=` in chapter "
                                             r"2's parameters"):
        stage.clinical_table(None, tmp_path / "c.csv", rna.values.index, survival_time_column="OS")
