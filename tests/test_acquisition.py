"""Chapter 1's acquisition reports: the reference table from the mirror, data-use statements, and the
composition of the GDC and Zenodo overviews (their network clients are tested against fake servers elsewhere)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from data_mirror import mirror_root

from gbhet_lib.data import acquisition
from gbhet_lib.data.acquisition import acquisition_table, data_use_statement, gdc_overview, stemri_overview
from gbhet_lib.data.gdc import GDCQuery
from gbhet_lib.data.zenodo import RecordFile




def test_reference_acquisition_table_verifies_every_dataset() -> None:
    table = acquisition_table("reference", mirror=mirror_root())
    assert (table["status"] == "ok").all() and table["sha256_ok"].all()
    assert set(table["source"]) == {"mirror"} and table["licence"].str.len().gt(0).all()


@pytest.mark.parametrize("profile, phrase", [("demo", "synthetic"), ("reference", "CC-BY-4.0 (STRING data)"),
                                             ("full", "GDC Data Use Agreement"), ("stemri", "non-commercial")])
def test_data_use_statement_names_the_terms(profile: str, phrase: str) -> None:
    assert phrase in data_use_statement(profile)


class _StubGDC:
    """Writes what GDCClient.resolve writes, from canned tables."""

    def resolve(self, query: GDCQuery, out_dir: Path) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if query.endpoint == "files":
            pd.DataFrame({"file_id": ["a"], "file_name": [f"{query.name}.x"], "file_size": [10]}).to_csv(
                out / f"{query.name}.files.tsv", sep="\t", index=False)
        else:
            pd.DataFrame({"submitter_id": ["TCGA-02-0001", "TCGA-02-0003"], "project.project_id": ["TCGA-GBM"] * 2,
                          "demographic.vital_status": ["Dead", "Alive"], "demographic.days_to_death": [358, None],
                          "diagnoses.days_to_last_follow_up": [None, 400]}).to_csv(
                out / f"{query.name}.cases.tsv", sep="\t", index=False)
        record = out / f"{query.name}.resolved.json"
        record.write_text(json.dumps({"data_release": "test"}))
        return record


def test_gdc_overview_reads_back_what_the_queries_resolved(tmp_path: Path) -> None:
    overview = gdc_overview(tmp_path, ("TCGA-GBM",), client=_StubGDC())
    assert len(overview.counts_files) == 1 and len(overview.slide_files) == 1
    assert overview.survival.loc["TCGA-02-0001", "os_days"] == 358 and overview.survival["os_event"].sum() == 1
    assert set(overview.records) == {"counts", "slides", "cases"}


def test_stemri_overview_lists_fetches_and_checks_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = [RecordFile(name="wsi.tar.gz", size=10, md5="0" * 32, url="http://127.0.0.1/wsi.tar.gz")]
    monkeypatch.setattr(acquisition, "record_files", lambda *a, **k: files)
    fetched = []
    monkeypatch.setattr(acquisition, "fetch_record_file",
                        lambda name, cache, **k: fetched.append(name) or type("F", (), {"path": cache / name})())
    (tmp_path / "gbdata").mkdir()
    overview = stemri_overview(tmp_path, download=["wsi.tar.gz"], gbdata_root=tmp_path / "gbdata")
    assert overview.files["name"].tolist() == ["wsi.tar.gz"] and fetched == ["wsi.tar.gz"]
    assert overview.layout is not None and not overview.layout.ok  # an empty tree misses everything
