"""Readers of the deepRadiogenomics demo data (Smedley 2020; chapter 8's reference profile): the real files,
fetched through the project's fetch code from the data mirror, checked against the counts of related_papers.md §4–5;
the VASARI binarisation rules on a hand-made frame; bad files. The file tests need the data mirror: without it they
skip, or fail with GBHET_REQUIRE_MIRROR=1, as every mirror test (tests/data_mirror.py)."""
from __future__ import annotations

import dataclasses
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data_mirror import mirror_file, mirror_root

from gbhet_lib.data.readers import ReaderError
from gbhet_lib.data.readers.deepradiogenomics import (DEEPRADIOGENOMICS_INPUTS, VASARI_ANSWER_TRAITS,
                                                      DeepRadiogenomicsData, binarise_vasari_answers,
                                                      load_deepradiogenomics, patient_barcode, read_clanc840,
                                                      read_clinical_patient, read_vasari, verhaak_gene_sets)
from gbhet_lib.mri.traits import TRAITS

TRAIT_COLUMNS = [f"trait_{t}" for t in TRAITS]


@pytest.fixture(scope="module")
def data() -> DeepRadiogenomicsData:
    return load_deepradiogenomics(mirror=mirror_root())


# --- real files -----------------------------------------------------------------------------------------------

def test_loaded_through_fetch(data: DeepRadiogenomicsData) -> None:
    assert set(data.files) == set(DEEPRADIOGENOMICS_INPUTS.values())
    assert all(path.is_file() and path.is_relative_to(mirror_root()) for path in data.files.values())
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.expression = pd.DataFrame()  # type: ignore[misc]


def test_clanc840_shapes_and_subtypes(data: DeepRadiogenomicsData) -> None:
    expr, subtype, markers = data.expression, data.subtype, data.markers
    assert expr.shape == (173, 840) and (expr.dtypes == np.float64).all() and np.isfinite(expr.to_numpy()).all()
    assert expr.index.name == "sample_id" and expr.columns.name == "gene" and expr.columns.is_unique
    assert expr.index[0] == "TCGA-02-0003-01A-01" and expr.loc["TCGA-02-0003-01A-01", "CDKN1B"] == pytest.approx(1.251)
    assert -10.1 < expr.to_numpy().min() and expr.to_numpy().max() < 13.3
    assert subtype.index.equals(expr.index) and subtype.notna().all()
    assert subtype.value_counts().to_dict() == {"Mesenchymal": 56, "Proneural": 53, "Classical": 38, "Neural": 26}
    assert markers.index.equals(expr.columns)
    assert markers.value_counts().to_dict() == {"MES": 216, "PN": 178, "CL": 162, "NL": 129}
    assert markers.isna().sum() == 155


def test_verhaak_gene_sets(data: DeepRadiogenomicsData) -> None:
    sets = data.gene_sets
    assert {k: len(v) for k, v in sets.items()} == {"Proneural": 178, "Neural": 129, "Classical": 162,
                                                    "Mesenchymal": 216, "all_840": 840}
    subtype_sets = [set(sets[s]) for s in ("Proneural", "Neural", "Classical", "Mesenchymal")]
    assert all(a.isdisjoint(b) for a, b in combinations(subtype_sets, 2))  # one marker code a gene: disjoint
    assert len(set().union(*subtype_sets)) == 685 and set().union(*subtype_sets) < set(sets["all_840"])
    assert sets["all_840"] == list(data.expression.columns) and len(set(sets["all_840"])) == 840
    assert set(sets) - {"all_840"} == set(data.subtype.cat.categories)  # sets[subtype] works for every label
    with pytest.raises(ReaderError, match=r"gene 'B' has marker code 'XX'"):
        verhaak_gene_sets(pd.Series(["PN", "XX"], index=["A", "B"]))


def test_patient_barcode() -> None:
    assert patient_barcode("TCGA-02-0003-01A-01") == "TCGA-02-0003"
    assert patient_barcode("tcga.06.0174.01A") == "TCGA-06-0174"
    assert patient_barcode(" TCGA-08-0354 ") == "TCGA-08-0354"
    with pytest.raises(ReaderError, match=r"'02-0003' is not a TCGA barcode"):
        patient_barcode("02-0003")


def test_read_vasari_raw() -> None:
    path = mirror_file("vasari_annotations")
    raw = read_vasari(path)
    assert raw.shape == (20, 8) and raw.index.name == "patient_id" and raw.index.is_unique
    assert "comments" not in raw and "study.date" not in raw and raw.attrs["source"] == str(path)
    assert raw.loc["TCGA-14-1401", "f10.t1.flair.ratio"] == "n/a"  # the answer text is kept, not read as missing
    assert raw["f9.multifocal.or.multicentric"].value_counts().to_dict() == {"Focal": 16,
                                                                            "Multifocal or Multicentric": 4}
    assert read_vasari(path, keep_free_text=True).shape == (20, 10)


def test_vasari_binary_on_the_real_file(data: DeepRadiogenomicsData) -> None:
    binary = data.vasari_binary
    assert list(binary.columns) == TRAIT_COLUMNS and binary.shape == (20, 6)
    assert binary.sum().to_dict() == {"trait_enhancing": 9, "trait_ncet": 7, "trait_necrosis": 3, "trait_focal": 16,
                                      "trait_infiltrative": 8, "trait_edema": 8}
    assert binary.isna().sum().sum() == 1 and np.isnan(binary.loc["TCGA-14-1401", "trait_infiltrative"])
    assert binary.loc["TCGA-14-1401"].drop("trait_infiltrative").notna().all()  # column-wise: other traits kept
    # the 7 patients with expression: class counts (0, 1) of related_papers.md §5b (there f9 counts non-focal as 1)
    seven = binary.loc[sorted(set(data.expression_patients) & set(binary.index))]
    assert {c: (int((seven[c] == 0).sum()), int((seven[c] == 1).sum())) for c in seven} == {
        "trait_enhancing": (3, 4), "trait_ncet": (6, 1), "trait_necrosis": (5, 2), "trait_focal": (2, 5),
        "trait_infiltrative": (5, 2), "trait_edema": (4, 3)}


def test_overlap_counts(data: DeepRadiogenomicsData) -> None:
    assert data.overlap_counts() == {"expression": 173, "vasari": 20, "clinical": 548, "expression_and_vasari": 7,
                                     "expression_and_clinical": 156, "vasari_and_clinical": 20, "all_three": 7}
    seven = set(data.expression_patients) & set(data.vasari_binary.index)
    assert data.subtype.groupby(data.expression_patients.to_numpy()).first()[sorted(seven)].value_counts().to_dict() \
        == {"Proneural": 4, "Classical": 1, "Neural": 1, "Mesenchymal": 1}


def test_clinical_patient(data: DeepRadiogenomicsData) -> None:
    clin = data.clinical
    assert clin.shape == (548, 5) and list(clin.columns) == ["os_days", "os_event", "age_years", "sex", "race_white"]
    assert clin.index.name == "patient_id" and clin.index.is_unique
    assert clin.attrs["n_os_missing"] == 2 and clin.attrs["os_missing"] == ["TCGA-16-0861", "TCGA-28-2499"]
    usable = clin.dropna(subset=["os_days", "os_event"])
    assert len(usable) == 546 and usable.os_event.sum() == 411  # §5c: 546 usable, 411 deaths
    assert clin.race_white.value_counts(dropna=False).to_dict() == {True: 480, False: 43, pd.NA: 25}
    assert clin.age_years.median() == 59 and clin.sex.value_counts().to_dict() == {"male": 335, "female": 213}
    first = clin.loc["TCGA-02-0001"]
    assert (first.os_days, first.os_event, first.age_years, first.sex, first.race_white) == (358, 1, 44, "female", True)
    assert read_clinical_patient(mirror_file("tcga_gbm_clinical_patient")).equals(clin)


# --- binarisation rules on a hand-made frame -------------------------------------------------------------------

def _answers(**columns: list) -> pd.DataFrame:
    base = {"f9.multifocal.or.multicentric": "Focal", "f5.proportion.enhancing": "Minimal",
            "f6.proportion.ncet": "Minimal", "f7.proportion.necrosis": "Minimal", "f14.proportion.edema": "Minimal",
            "f10.t1.flair.ratio": "expansive (T1~FLAIR)"}
    n = len(next(iter(columns.values())))
    frame = {name: columns.get(name.split(".")[0], [value] * n) for name, value in base.items()}
    return pd.DataFrame(frame, index=pd.Index([f"TCGA-00-{i:04d}" for i in range(n)], name="patient_id"))


def test_mapping_covers_the_mri_traits() -> None:
    assert sorted(VASARI_ANSWER_TRAITS.values()) == sorted(TRAITS)
    assert list(binarise_vasari_answers(_answers(f5=["Minimal"]))) == TRAIT_COLUMNS


@pytest.mark.parametrize("code", ["f5", "f6", "f7", "f14"])
def test_proportion_rules(code: str) -> None:
    answers = ["Minimal", "Less than 1/3", "Between 1/3 and 2/3", "More than 2/3", "n/a", "indeterminate", None,
               "  more THAN 2/3 "]
    trait = f"trait_{VASARI_ANSWER_TRAITS[code]}"
    got = binarise_vasari_answers(_answers(**{code: answers}))
    np.testing.assert_array_equal(got[trait].to_numpy(), [0, 0, 1, 1, np.nan, np.nan, np.nan, 1])
    assert got.drop(columns=trait).notna().all().all()  # unrated in one column leaves the others alone


def test_focal_rule() -> None:
    got = binarise_vasari_answers(_answers(f9=["Focal", "Multifocal or Multicentric", "multifocal", "Multicentric",
                                               "n/a", "indeterminate"]))
    np.testing.assert_array_equal(got["trait_focal"].to_numpy(), [1, 0, 0, 0, np.nan, np.nan])


def test_infiltrative_rule() -> None:
    got = binarise_vasari_answers(_answers(f10=["expansive (T1~FLAIR)", "mixed (T1 less than FLAIR)",
                                                "infiltrative (T1 much smaller than FLAIR)", "Expansive", "n/a",
                                                "indeterminate"]))
    np.testing.assert_array_equal(got["trait_infiltrative"].to_numpy(), [0, 1, 1, 0, np.nan, np.nan])
    assert got.drop(columns="trait_infiltrative").notna().all().all()


def test_binarise_errors() -> None:
    with pytest.raises(ReaderError, match=r"patient TCGA-00-0001 \(data row 2\), column 'f5.proportion.enhancing' "
                                          r"holds 'Lots'; expected one of"):
        binarise_vasari_answers(_answers(f5=["Minimal", "Lots"]))
    with pytest.raises(ReaderError, match=r"no column for VASARI feature\(s\) f10"):
        binarise_vasari_answers(_answers(f5=["Minimal"]).drop(columns="f10.t1.flair.ratio"))


# --- malformed files -------------------------------------------------------------------------------------------

def _clanc_copy(tmp_path: Path, line: int, edit) -> Path:
    """The real ClaNC840 file with 1-based line ``line`` edited, written (CRLF kept) to tmp_path."""
    lines = mirror_file("verhaak2010_clanc840").read_bytes().decode().split("\r\n")
    lines[line - 1] = edit(lines[line - 1])
    out = tmp_path / "clanc_bad.txt"
    out.write_bytes("\r\n".join(lines).encode())
    return out


def test_clanc840_errors(tmp_path: Path) -> None:
    def set_field(i: int, value: str):
        return lambda line: "\t".join(value if j == i else f for j, f in enumerate(line.split("\t")))

    bad = _clanc_copy(tmp_path, 5, set_field(1, "XX"))
    with pytest.raises(ReaderError, match=r"clanc_bad\.txt: line 5 \(gene '[^']+'\) has marker code 'XX' in column 2"):
        read_clanc840(bad)
    bad = _clanc_copy(tmp_path, 300, set_field(10, "oops"))  # after the blank line 251: physical line named
    with pytest.raises(ReaderError, match=r"clanc_bad\.txt: line 300 \(gene '[^']+'\), column 11 \(sample TCGA-[^)]+\) "
                                          r"holds 'oops', not a number"):
        read_clanc840(bad)
    bad = _clanc_copy(tmp_path, 7, lambda line: line.rsplit("\t", 1)[0])
    with pytest.raises(ReaderError, match=r"clanc_bad\.txt: line 7 \(gene '[^']+'\) has 174 tab-separated fields, "
                                          r"line 1 has 175"):
        read_clanc840(bad)
    bad = _clanc_copy(tmp_path, 2, set_field(5, "Glial"))
    with pytest.raises(ReaderError, match=r"clanc_bad\.txt: sample TCGA-\S+ has subtype 'Glial'"):
        read_clanc840(bad)
    with pytest.raises(ReaderError, match=r"not the ClaNC840 layout.*verhaak2010_clanc840"):
        read_clanc840(mirror_file("vasari_annotations"))


def test_vasari_file_errors(tmp_path: Path) -> None:
    lines = mirror_file("vasari_annotations").read_text().splitlines()
    bad = tmp_path / "vasari_bad.csv"
    bad.write_text("\n".join(lines[:3] + [lines[3].replace('"Minimal"', '"Tiny"', 1)]) + "\n")
    with pytest.raises(ReaderError, match=r"vasari_bad\.csv: patient TCGA-08-0516 \(data row 3\), column "
                                          r"'f7.proportion.necrosis' holds 'Tiny'"):
        read_vasari(bad)
    bad.write_text("\n".join(lines[:2] + [lines[2].replace('"14-1401"', '"14-1402"')]) + "\n")
    with pytest.raises(ReaderError, match=r"vasari_bad\.csv: data row 2: research.id '14-1402' does not match "
                                          r"patient TCGA-14-1401"):
        read_vasari(bad)
    bad.write_text(lines[0].replace('"f10.t1.flair.ratio"', '"ratio"') + "\n" + lines[1] + "\n")
    with pytest.raises(ReaderError, match=r"vasari_bad\.csv: no column for VASARI feature\(s\) f10"):
        read_vasari(bad)
    bad.write_text("\n".join(lines[:2] + [lines[1]]) + "\n")
    with pytest.raises(ReaderError, match=r"vasari_bad\.csv: patient TCGA-08-0354 has more than one row"):
        read_vasari(bad)
