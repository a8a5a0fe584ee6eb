"""Chapters 2 and 8 run on a user's own file (papermill, through the project's runner): a file the reader cannot take as
it is stops the chapter with the reader's message, which names the file and the chapter parameter to set."""
from __future__ import annotations

from pathlib import Path

import pytest

from data_mirror import mirror_root

from gbhet_lib.config import StudyConfig
from gbhet_lib.runner import StageFailed, run_study

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
#: gene columns with an omics suffix beside clinical and other omics columns, one row per slide (a case repeated)
WIDE = ("case_id;slide_id;age;TP53_rnaseq;EGFR_rnaseq;KRAS_rnaseq;TP53_cnv\n"
        "TCGA-02-0001-01A;s1;50;10;20;30;0\nTCGA-02-0001-01A;s2;50;11;21;31;0\nTCGA-02-0003-01A;s3;61;12;22;32;1\n")


@pytest.mark.notebook
@pytest.mark.timeout(300)
def test_chapter_2_stops_on_a_wide_table_and_names_the_parameters_to_set(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text(WIDE)
    config = StudyConfig(profile="demo", run_dir=tmp_path / "run", seed=0, device="cpu", data_mirror=mirror_root())
    with pytest.raises(StageFailed) as caught:
        run_study(config, notebook_dir=NOTEBOOKS, only=["02"], parameters={"expression_path": str(path), "epochs": 2},
                  progress=False)
    message = str(caught.value)
    assert "stage 02_rna_encoding failed" in message and "UserTableError" in message
    assert (f"{path}: no column or row looks like gene ids: 0% of 3 row labels and 0% of 6 column labels look like "
            "gene ids (Ensembl ENSG… or annotation symbols). Fix: the columns look like genes with an affix: set "
            "`expression_columns='(.+)_rnaseq'` and `sample_column=` in chapter 2's parameters") in message
    assert "gbhet fetch" not in message


def _own_expression_and_traits(folder: Path) -> tuple[Path, Path]:
    """60 samples × 52 genes of counts (samples as rows; the gene names are not annotation symbols, so the
    orientation must be given) and a traits table of 30 of them whose ``necrosis`` column holds a code the reader
    does not know ('maybe')."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    samples = [f"S{i:03d}" for i in range(60)]
    counts = pd.DataFrame(rng.poisson(20, (60, 52)), index=pd.Index(samples, name="sample"),
                          columns=[f"G{i}" for i in range(50)] + ["TP53", "EGFR"])
    counts.to_csv(folder / "expr.csv")
    traits = pd.DataFrame({"sample": samples[:30], "enhancing": rng.integers(0, 2, 30),
                           "necrosis": ["yes"] * 15 + ["maybe"] * 15})
    traits.to_csv(folder / "traits.csv", index=False)
    return folder / "expr.csv", folder / "traits.csv"


@pytest.mark.notebook
@pytest.mark.timeout(300)
@pytest.mark.parametrize("traits, expected", [
    (["enhancing", "edema"], "no column for trait(s) ['edema'] (columns: 'sample', 'enhancing', 'necrosis'). Fix: "
                             "set `traits=` in chapter 8's parameters"),
    (["enhancing", "necrosis"], "column 'necrosis' holds 'maybe' for sample 'S015' (codes not understood: 'maybe')"),
])
def test_chapter_8_stops_on_a_bad_traits_table_and_says_what_to_change(tmp_path: Path, traits: list[str],
                                                                       expected: str) -> None:
    expression, trait_table = _own_expression_and_traits(tmp_path)
    config = StudyConfig(profile="demo", run_dir=tmp_path / "run", seed=0, device="cpu", data_mirror=mirror_root())
    with pytest.raises(StageFailed) as caught:
        run_study(config, notebook_dir=NOTEBOOKS, only=["08"], progress=False,
                  parameters={"expression_path": str(expression), "traits_path": str(trait_table), "traits": traits,
                              "orientation": "samples_x_genes", "real_data": False})
    message = str(caught.value)
    assert "stage 08_radiogenomic_traits failed" in message and "UserTableError" in message
    assert f"{trait_table}: {expected}" in message
    assert "gbhet fetch" not in message
