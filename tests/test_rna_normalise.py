"""RNA normalisation and expression input: DESeq2 size factors against worked examples and the demo cohort's
planted factors, log2 normalised counts, gene filters, AnnData, reading user matrices, and every bad-input path."""
from __future__ import annotations

import gzip
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from gbhet_lib.data.cohort import load_cohort
from gbhet_lib.data.readers import ReaderError
from gbhet_lib.rna.expression_io import read_expression_table
from gbhet_lib.rna.normalise import (deseq2_size_factors, filter_by_variance, filter_genes, normalise_counts,
                                     to_anndata)


def table(rows: list[list[float]], samples: list[str] | None = None) -> pd.DataFrame:
    samples = samples or [f"s{j + 1}" for j in range(len(rows[0]))]
    return pd.DataFrame(rows, columns=samples, index=[f"g{i + 1}" for i in range(len(rows))])


# --- size factors: known values -------------------------------------------------------------------------------

def test_planted_size_factors_are_recovered_up_to_a_common_constant() -> None:
    """counts = s_j × b_g exactly (integers), so every ratio count / geometric mean is s_j / geomean(s)."""
    planted = np.array([0.5, 1.0, 2.0, 4.0, 1.5])
    base = np.array([4, 8, 12, 100, 36, 2000, 64, 10])  # × every factor stays an integer
    counts = pd.DataFrame(np.outer(base, planted), columns=list("ABCDE"))
    assert (counts.to_numpy() == np.round(counts.to_numpy())).all()
    factors = deseq2_size_factors(counts)
    ratio = factors.to_numpy() / planted
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-9)
    np.testing.assert_allclose(ratio[0], 1 / np.exp(np.log(planted).mean()), rtol=1e-9)
    assert factors.name == "size_factor" and factors.index.tolist() == list("ABCDE")


def test_hand_computed_median_of_ratios() -> None:
    """Geometric means 4, 6, 5; ratios s1 = (0.5, 0.5, 1) → 0.5, s2 = (2, 2, 1) → 2. A gene with a zero is left out
    of the reference, as in DESeq2."""
    counts = table([[2, 8], [3, 12], [5, 5], [0, 100]])
    np.testing.assert_allclose(deseq2_size_factors(counts).to_numpy(), [0.5, 2.0], rtol=1e-12)


def test_even_number_of_genes_takes_the_mean_of_the_middle_ratios() -> None:
    """Ratios of s1 over geometric means (2, 3, 4, 6) of rows (1,4), (1,9), (2,8), (3,12): 0.5, 1/3, 0.5, 0.5."""
    counts = table([[1, 4], [1, 9], [2, 8], [3, 12]])
    np.testing.assert_allclose(deseq2_size_factors(counts).to_numpy(), [0.5, 2.0], rtol=1e-12)


def test_demo_cohort_size_factors_track_the_planted_ones(small_cohort: Path) -> None:
    cohort = load_cohort(small_cohort)
    estimated = deseq2_size_factors(cohort.expression_pool)
    truth = cohort.truth.size_factors.loc[estimated.index]
    r = np.corrcoef(np.log(estimated), np.log(truth))[0, 1]
    assert r > 0.95, f"log size factors correlate r={r:.3f} with the planted ones"


# --- size factors: bad inputs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("counts, message", [
    (table([[1, np.nan], [2, 3]]), r"gene 'g1' in sample 's2' \(nan\) is missing or infinite \(1 such cells\): fill"),
    (table([[1, np.inf], [2, 3]]), r"gene 'g1' in sample 's2' \(inf\) is missing or infinite"),
    (table([[1, 2], [-3, 3]]), r"gene 'g2' in sample 's1' \(-3\) is negative .*not log or centred values"),
    (table([[1, 2.5], [2, 3]]), r"gene 'g1' in sample 's2' \(2.5\) is not an integer .*require_integers=False"),
    (table([[0, 2], [0, 3]]), r"sample\(s\) \['s1'\] have zero counts for every gene.*drop these samples"),
    (table([[0, 2], [5, 0]]), r"every gene has a zero count in at least one sample.*sample 's1' has zeros in 1 of 2"),
    (pd.DataFrame(index=["g1"]), r"counts table is empty \(1 genes × 0 samples\)"),
    (table([[1, 2]]).assign(symbol=["TP53"]), r"sample column\(s\) \['symbol'\] are not numeric"),
])
def test_size_factor_bad_inputs(counts: pd.DataFrame, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        deseq2_size_factors(counts)


def test_non_integer_counts_are_allowed_when_asked() -> None:
    """Geometric means 5 and 6: ratios (0.5, 0.5) and (2, 2)."""
    counts = table([[2.5, 10.0], [3, 12]])
    np.testing.assert_allclose(deseq2_size_factors(counts, require_integers=False).to_numpy(), [0.5, 2.0])


def test_not_a_dataframe() -> None:
    with pytest.raises(TypeError, match="pandas DataFrame \\(genes × samples\\), not ndarray"):
        deseq2_size_factors(np.ones((2, 2)))  # type: ignore[arg-type]


# --- normalised values, filters -------------------------------------------------------------------------------

def test_normalise_counts_is_log2_of_counts_over_size_factor_plus_one() -> None:
    counts = table([[2, 8], [3, 12], [5, 5]])
    out = normalise_counts(counts)
    np.testing.assert_allclose(out.to_numpy(), np.log2(np.array([[4, 4], [6, 6], [10, 2.5]]) + 1), rtol=1e-12)
    np.testing.assert_allclose(out.attrs["size_factors"].to_numpy(), [0.5, 2.0])
    linear = normalise_counts(counts, log=False, size_factors=pd.Series({"s1": 1.0, "s2": 4.0}))
    np.testing.assert_allclose(linear.to_numpy(), [[2, 2], [3, 3], [5, 1.25]])


def test_normalise_counts_bad_arguments() -> None:
    counts = table([[2, 8], [3, 12]])
    with pytest.raises(ValueError, match=r"size_factors lack sample\(s\) \['s2'\]"):
        normalise_counts(counts, size_factors=pd.Series({"s1": 1.0}))
    with pytest.raises(ValueError, match="size_factors must be finite and > 0"):
        normalise_counts(counts, size_factors=pd.Series({"s1": 1.0, "s2": 0.0}))
    with pytest.raises(ValueError, match="pseudocount=0 must be > 0"):
        normalise_counts(counts, pseudocount=0)


def test_filter_genes_keeps_genes_with_enough_reads_in_enough_samples() -> None:
    counts = table([[10, 10, 0, 0], [9, 50, 50, 0], [0, 0, 0, 30], [10, 10, 10, 10]])
    assert filter_genes(counts, min_count=10, min_samples=2).index.tolist() == ["g1", "g2", "g4"]
    assert filter_genes(counts, min_count=10, min_samples=9).index.tolist() == ["g4"]  # capped at 4 samples
    with pytest.raises(ValueError, match=r"no gene has >= 100 counts in >= 3 samples.*raw counts"):
        filter_genes(counts, min_count=100)


def test_filter_by_variance_keeps_the_most_variable_in_order() -> None:
    values = table([[0, 0, 0], [0, 5, 10], [1, 2, 3], [0, 10, 20]])
    assert filter_by_variance(values, n_top=2).index.tolist() == ["g2", "g4"]
    assert filter_by_variance(values, n_top=10).index.tolist() == ["g1", "g2", "g3", "g4"]
    with pytest.raises(ValueError, match="n_top=0 must be >= 1"):
        filter_by_variance(values, n_top=0)


# --- AnnData --------------------------------------------------------------------------------------------------

def test_to_anndata_from_counts(tmp_path: Path) -> None:
    counts = table([[2, 8], [3, 12], [5, 5]])
    obs = pd.DataFrame({"age": [50, 60, 70]}, index=["s2", "s1", "extra"])
    var = pd.DataFrame({"symbol": ["A", "B"]}, index=["g1", "g3"])
    adata = to_anndata(counts, obs=obs, var=var)
    assert adata.shape == (2, 3) and adata.obs_names.tolist() == ["s1", "s2"]
    assert adata.obs["age"].tolist() == [60, 50]
    np.testing.assert_allclose(adata.obs["size_factor"], [0.5, 2.0], rtol=1e-12)
    assert adata.var["symbol"].tolist()[::2] == ["A", "B"] and pd.isna(adata.var["symbol"].iloc[1])
    np.testing.assert_array_equal(adata.layers["counts"], counts.to_numpy().T)
    np.testing.assert_allclose(adata.X, normalise_counts(counts).to_numpy().T)
    norm = adata.uns["normalisation"]
    assert norm["log_base"] == 2 and norm["pseudocount"] == 1.0 and list(norm["size_factors"]) == ["s1", "s2"]
    np.testing.assert_allclose(list(norm["size_factors"].values()), [0.5, 2.0], rtol=1e-12)
    adata.write_h5ad(tmp_path / "a.h5ad")
    assert ad.read_h5ad(tmp_path / "a.h5ad").uns["normalisation"]["counts_layer"] == "counts"


def test_to_anndata_from_normalised_values_and_bad_obs() -> None:
    values = table([[-1.5, 2.0], [0.25, 3.0]])
    adata = to_anndata(values, values="normalised")
    np.testing.assert_array_equal(adata.X, values.to_numpy().T)
    assert not adata.layers and adata.uns["normalisation"]["method"].startswith("none")
    with pytest.raises(ValueError, match=r"obs has no row for sample\(s\) \['s2'\]"):
        to_anndata(values, obs=pd.DataFrame(index=["s1"]), values="normalised")
    with pytest.raises(ValueError, match="values='tpm'"):
        to_anndata(values, values="tpm")  # type: ignore[arg-type]


# --- reading user matrices ------------------------------------------------------------------------------------

ENSG = ["ENSG00000141510.17", "ENSG00000002586", "ENSG00000000003_TSPAN6"]


def write(path: Path, text: str) -> Path:
    data = text.encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def test_read_genes_x_samples_tsv(tmp_path: Path) -> None:
    path = write(tmp_path / "x.tsv", "gene_id\tS1\tS2\n" + "".join(f"{g}\t{i}\t{2 * i}\n" for i, g in enumerate(ENSG)))
    out = read_expression_table(path)
    assert out.index.tolist() == ENSG and out.columns.tolist() == ["S1", "S2"] and out.dtypes.eq(float).all()
    assert out.loc["ENSG00000002586", "S2"] == 2.0
    assert out.attrs["orientation"] == ("auto: genes × samples: 100% of 3 row labels and 0% of 2 column labels look "
                                        "like gene ids (Ensembl ENSG…)")


def test_read_samples_x_genes_csv_gz_is_transposed(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv.gz", "sample," + ",".join(ENSG) + "\nS1,1,2,3\nS2,4,5,6\n")
    out = read_expression_table(path)
    assert out.index.tolist() == ENSG and out.columns.tolist() == ["S1", "S2"]
    assert out["S2"].tolist() == [4.0, 5.0, 6.0]
    assert out.attrs["orientation"].startswith("auto: samples × genes (transposed): 0% of 2 row labels and 100%")


def test_symbols_need_an_annotation_or_an_orientation(tmp_path: Path) -> None:
    path = write(tmp_path / "x.tsv", "\tS1\tS2\nTP53\t1\t2\nTSPAN6\t3\t4\n")
    with pytest.raises(ReaderError, match=r"x.tsv: no column or row looks like gene ids: 0% of 2 row labels.*Fix: "
                                          r"set `orientation='genes_x_samples'` or `orientation='samples_x_genes'` "
                                          r"in the chapter's parameters \(gene symbols are recognised only with an "
                                          r"annotation\)"):
        read_expression_table(path)
    annotation = pd.DataFrame({"gene_id": ["ENSG00000141510", "ENSG00000000003"], "symbol": ["TP53", "TSPAN6"]})
    assert read_expression_table(path, annotation=annotation).index.tolist() == ["TP53", "TSPAN6"]
    assert read_expression_table(path, orientation="samples_x_genes").index.tolist() == ["S1", "S2"]


def test_r_style_header_without_corner_cell(tmp_path: Path) -> None:
    path = write(tmp_path / "x.txt", "S1\tS2\n" + "".join(f"{g}\t1\t2\n" for g in ENSG))
    assert read_expression_table(path).columns.tolist() == ["S1", "S2"]


def test_read_h5ad_samples_x_genes(tmp_path: Path) -> None:
    counts = sparse.csr_matrix(np.array([[1.0, 0, 3], [4, 5, 0]]))
    adata = ad.AnnData(X=counts, obs=pd.DataFrame(index=["S1", "S2"]), var=pd.DataFrame(index=ENSG),
                       layers={"raw": np.array([[7.0, 8, 9], [1, 2, 3]])})
    adata.write_h5ad(tmp_path / "x.h5ad")
    out = read_expression_table(tmp_path / "x.h5ad")
    assert out.index.tolist() == ENSG and out["S2"].tolist() == [4.0, 5.0, 0.0]
    assert read_expression_table(tmp_path / "x.h5ad", layer="raw")["S1"].tolist() == [7.0, 8.0, 9.0]
    with pytest.raises(ReaderError, match=r"x.h5ad: no layer 'counts' \(layers: \['raw'\]\)"):
        read_expression_table(tmp_path / "x.h5ad", layer="counts")


@pytest.mark.parametrize("text, kwargs, message", [
    ("g\tS1\tS2\n" + "".join(f"{g}\t1\t2\n" for g in ENSG[:2]) + f"{ENSG[2]}\t1\tlots\n", {},
     r"data row 3, column 'S2' \(gene 'ENSG00000000003_TSPAN6', sample 'S2'\) holds 'lots', not a number \(1 such "
     r"cells in 1 column\(s\): 'S2'\)\. Fix: remove the text columns"),
    ("g\tS1\tS2\n" + "".join(f"{g}\t1\t-2\n" for g in ENSG), {},
     r"gene 'ENSG00000141510.17', sample 'S2' is negative \(-2.0; 3 such cells\)\. Fix: .*"
     r"set `expression_values='normalised'` in the chapter's parameters"),
    ("g\tS1\tS2\n" + "".join(f"{g}\t1\t\n" for g in ENSG), {"values": "normalised"},
     r"gene 'ENSG00000141510.17', sample 'S2' is empty, NA or infinite"),
    ("g\tS1\tS2\n" + "".join(f"{g}\t1\t2\n" for g in ENSG) + "\t1\t2\n", {},
     r"data row 4 has no label \(1 such rows\)"),
    ("g\tS1\tS2\n" + "".join(f"{g}\t1\t2\n" for g in ENSG) + "x\t1\t2\t3\t4\n", {},
     r"cannot be parsed as a tab-delimited table \(line 5 has 5 fields where the rows above have 3\)"),
    ("g\t" + "\t".join(ENSG[:2]) + "\n" + "".join(f"{g}\t1\t2\n" for g in ENSG[:2]), {},
     r"rows and columns look equally like gene ids"),
])
def test_read_bad_tables(tmp_path: Path, text: str, kwargs: dict[str, str], message: str) -> None:
    path = write(tmp_path / "bad.tsv", text)
    with pytest.raises(ReaderError, match=r"bad\.tsv: " + message):
        read_expression_table(path, **kwargs)  # type: ignore[arg-type]


def test_normalised_values_may_be_negative_and_bad_files(tmp_path: Path) -> None:
    path = write(tmp_path / "x.tsv", "g\tS1\tS2\n" + "".join(f"{g}\t-1.5\t2\n" for g in ENSG))
    assert read_expression_table(path, values="normalised")["S1"].tolist() == [-1.5] * 3
    with pytest.raises(ReaderError, match=r"x.xlsx: unsupported file type.*Fix: save the matrix as TSV, CSV or h5ad"):
        read_expression_table(write(tmp_path / "x.xlsx", "junk"))
    with pytest.raises(ReaderError, match=r"missing.tsv: file not found"):
        read_expression_table(tmp_path / "missing.tsv")
    with pytest.raises(ReaderError, match=r"x.h5ad: cannot be read as .h5ad"):
        read_expression_table(write(tmp_path / "x.h5ad", "not hdf5"))
    with pytest.raises(ReaderError, match=r"layer='raw' applies to .h5ad files only"):
        read_expression_table(path, layer="raw")
    with pytest.raises(ValueError, match=r"x.tsv: orientation='rows' is not one of 'auto', 'genes_x_samples', "
                                         r"'samples_x_genes'\. Fix: set `orientation=` in the chapter's parameters"):
        read_expression_table(path, orientation="rows")  # type: ignore[arg-type]


def test_repeated_sample_columns_are_averaged_and_reported(tmp_path: Path) -> None:
    path = write(tmp_path / "x.tsv", "g\tS1\tS1\n" + "".join(f"{g}\t1\t2\n" for g in ENSG))
    out = read_expression_table(path, values="normalised")
    assert out.columns.tolist() == ["S1"] and out["S1"].tolist() == [1.5] * 3
    assert out.attrs["report"].steps["repeated samples"] == ("1 sample on 2 rows (e.g. 'S1' × 2): averaged "
                                                             "(aggregate_samples='mean') → 1 sample")


def test_read_then_normalise_the_demo_cohort(small_cohort: Path) -> None:
    """The cohort's own file read back as a user matrix gives the same size factors."""
    cohort = load_cohort(small_cohort)
    read = read_expression_table(small_cohort / "expression_lineages.tsv.gz")
    pd.testing.assert_series_equal(deseq2_size_factors(read), deseq2_size_factors(cohort.expression_lineages),
                                   check_index_type=False, check_names=False)
