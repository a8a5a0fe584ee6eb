"""GDC client against a local fake GDC server (127.0.0.1, ephemeral port): no network is used.

The fake answers as the public GDC API documents: search hits under ``data.hits`` with a ``pagination``
object, ``/status`` with ``data_release``, ``/data/{id}`` with the file bytes (``Range`` honoured).
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fake_gdc import FakeGDC, serve_fake_gdc

from gbhet_lib.data import gdc

REPO = Path(__file__).resolve().parents[1]
TOKEN = "s3cret-GDC-token-0123456789"


def _uuid(k: int) -> str:
    return str(uuid.UUID(int=0x5EED_0000_0000_4000_8000_0000_0000_0000 + k))


# --------------------------------------------------------------------------------------------------- fake GDC

@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGDC]:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy",
                gdc.ENV_TOKEN, gdc.ENV_TOKEN_FILE):
        monkeypatch.delenv(var, raising=False)
    with serve_fake_gdc() as fake:
        yield fake


def _client(fake: FakeGDC, **kwargs: Any) -> gdc.GDCClient:
    return gdc.GDCClient(base_url=fake.url, timeout=5, max_retries=3, backoff_s=0.01, **kwargs)


def _add_files(fake: FakeGDC, sizes: list[int], seed: int = 0) -> pd.DataFrame:
    """Serve random files of the given sizes (bytes); return their manifest."""
    rng = np.random.default_rng(seed)
    rows = []
    for k, size in enumerate(sizes):
        file_id, content = _uuid(100 * seed + k), rng.bytes(size)
        fake.files[file_id] = content
        rows.append({"id": file_id, "filename": f"TCGA-{k:02d}.rna_seq.augmented_star_gene_counts.tsv",
                     "md5": hashlib.md5(content).hexdigest(), "size": size, "state": "released"})
    return pd.DataFrame(rows)


def _file_hit(k: int) -> dict[str, Any]:
    return {"id": _uuid(k), "file_id": _uuid(k), "file_name": f"f{k}.tsv", "md5sum": f"{k:032x}",
            "file_size": 100 + k, "state": "released", "data_format": "TSV", "access": "open",
            "cases": [{"case_id": _uuid(1000 + k), "submitter_id": f"TCGA-02-{k:04d}",
                       "project": {"project_id": "TCGA-GBM"},
                       "samples": [{"sample_id": _uuid(2000 + k), "submitter_id": f"TCGA-02-{k:04d}-01A",
                                    "sample_type": "Primary Tumor"}]}]}


# --------------------------------------------------------------------------------------------------- queries

def test_query_files_pages_with_from_and_size_and_sends_the_builders_filters(server: FakeGDC) -> None:
    server.hits["files"] = [_file_hit(k) for k in range(7)]
    query = gdc.star_counts_query()
    table = _client(server).query_files(query.filters, query.fields, page_size=3)
    posts = [r["body"] for r in server.received if r["path"] == "/files"]
    assert [(p["from"], p["size"]) for p in posts] == [("0", "3"), ("3", "3"), ("6", "3")]
    assert all(p["filters"] == query.filters for p in posts)
    assert posts[0]["fields"] == ",".join(gdc.FILE_FIELDS) and posts[0]["format"] == "JSON"
    assert list(table.columns) == list(gdc.FILE_FIELDS) and len(table) == 7
    assert table.loc[6, "cases.samples.submitter_id"] == "TCGA-02-0006-01A"
    assert table.loc[0, "cases.project.project_id"] == "TCGA-GBM" and table["file_size"].tolist()[:2] == [100, 101]


def test_builders_filter_on_the_documented_gdc_fields() -> None:
    def clauses(query: gdc.GDCQuery) -> dict[str, list[str]]:
        assert query.filters["op"] == "and"
        return {c["content"]["field"]: c["content"]["value"] for c in query.filters["content"]}

    assert clauses(gdc.star_counts_query()) == {
        "cases.project.project_id": ["TCGA-GBM", "TCGA-LGG"],
        "files.data_category": ["Transcriptome Profiling"], "files.data_type": ["Gene Expression Quantification"],
        "files.analysis.workflow_type": ["STAR - Counts"], "files.access": ["open"]}
    assert clauses(gdc.diagnostic_slides_query("TCGA-GBM")) == {
        "cases.project.project_id": ["TCGA-GBM"], "files.data_type": ["Slide Image"],
        "files.experimental_strategy": ["Diagnostic Slide"], "files.data_format": ["SVS"]}
    assert clauses(gdc.cases_survival_query()) == {"project.project_id": ["TCGA-GBM", "TCGA-LGG"]}
    assert gdc.diagnostic_slides_query("TCGA-GBM").name == "diagnostic_slides_tcga_gbm"
    with pytest.raises(ValueError, match="project ids"):
        gdc.project_filter([])


def test_cases_are_flattened_one_row_each_and_give_overall_survival(server: FakeGDC,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    def case(k: int, status: str | None, death: float | None, diagnoses: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": _uuid(k), "case_id": _uuid(k), "submitter_id": f"TCGA-06-{k:04d}",
                "project": {"project_id": "TCGA-GBM"},
                "demographic": {"gender": "female", "vital_status": status, "days_to_death": death},
                "diagnoses": diagnoses}

    server.hits["cases"] = [
        case(1, "Dead", 400.0, [{"days_to_last_follow_up": 100.0, "age_at_diagnosis": 20000,
                                 "primary_diagnosis": "Glioblastoma"}]),
        case(2, "Alive", None, [{"days_to_last_follow_up": 900.0, "age_at_diagnosis": 15500,
                                 "primary_diagnosis": "Glioblastoma"},
                                {"days_to_last_follow_up": 1200.0, "age_at_diagnosis": 15000,
                                 "primary_diagnosis": "Astrocytoma, NOS"}]),
        case(3, "Not Reported", None, [{"days_to_last_follow_up": 50.0}]),
        case(4, "Dead", None, [{"days_to_last_follow_up": 30.0}]),  # death time missing
    ]
    query = gdc.cases_survival_query()
    cases = _client(server).query(query, page_size=3)
    assert server.received[0]["body"]["filters"] == query.filters
    assert len(cases) == 4 and cases["case_id"].is_unique
    two = cases.set_index("submitter_id").loc["TCGA-06-0002"]
    assert two["diagnoses.days_to_last_follow_up"] == 1200.0 and two["diagnoses.age_at_diagnosis"] == 15000
    assert two["diagnoses.primary_diagnosis"] == "Glioblastoma;Astrocytoma, NOS"
    assert two["demographic.gender"] == "female" and pd.isna(two["demographic.days_to_death"])

    with caplog.at_level(logging.WARNING, logger="gbhet_lib.data.gdc"):
        surv = gdc.survival_table(cases)
    assert surv.to_dict("index") == {"TCGA-06-0001": {"os_days": 400.0, "os_event": 1, "project_id": "TCGA-GBM"},
                                     "TCGA-06-0002": {"os_days": 1200.0, "os_event": 0, "project_id": "TCGA-GBM"}}
    assert "2 case(s)" in caplog.text and "TCGA-06-0004" in caplog.text
    with pytest.raises(ValueError, match=r"demographic.vital_status.*SURVIVAL_FIELDS"):
        gdc.survival_table(cases.drop(columns="demographic.vital_status"))


def test_unexpected_answer_shape_is_a_clear_error(server: FakeGDC) -> None:
    server.hits.pop("files")  # the fake now answers 400 to POST /files
    with pytest.raises(gdc.GDCError, match=r"POST .*/files: HTTP 400"):
        _client(server).query_files(gdc.project_filter())


def test_resolve_writes_manifest_table_and_release_record(server: FakeGDC, tmp_path: Path) -> None:
    server.hits["files"] = [_file_hit(k) for k in range(4)]
    record_path = _client(server).resolve(gdc.star_counts_query(), tmp_path / "run" / "data" / "gdc")
    record = json.loads(record_path.read_text())
    assert record["data_release"] == "Data Release 99.0 - test" and record["n_rows"] == 4
    assert record["total_bytes"] == 100 + 101 + 102 + 103 and record["resolved_utc"].endswith("+00:00")
    manifest = gdc.read_manifest(record_path.parent / record["manifest"])
    assert manifest["id"].tolist() == [_uuid(k) for k in range(4)]
    table = pd.read_csv(record_path.parent / record["table"], sep="\t")
    assert table["cases.submitter_id"].tolist() == [f"TCGA-02-{k:04d}" for k in range(4)]


def test_committed_query_files_equal_what_the_builders_write(tmp_path: Path) -> None:
    written = gdc.export_queries(tmp_path)
    committed = REPO / "data_manifest" / "gdc"
    assert sorted(p.name for p in committed.glob("*.json")) == sorted(p.name for p in written) == [
        "cases_survival_tcga_gbm_lgg.json", "diagnostic_slides_tcga_gbm_lgg.json", "star_counts_tcga_gbm_lgg.json"]
    for path in written:
        assert (committed / path.name).read_bytes() == path.read_bytes(), (
            f"{path.name} is stale: run python -c 'from gbhet_lib.data.gdc import export_queries; "
            "export_queries(\"data_manifest/gdc\")'")
        assert gdc.load_query(committed / path.name).to_dict() == json.loads(path.read_text())


# --------------------------------------------------------------------------------------------------- token

def test_token_is_sent_as_header_and_never_logged_or_shown(server: FakeGDC, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    manifest = _add_files(server, [10, 20])
    server.forbidden.add(manifest.loc[1, "id"])
    server.fail_once.add("/files")
    client = _client(server, token=TOKEN)
    with caplog.at_level(logging.DEBUG):  # every logger, urllib3 included
        client.query_files(gdc.project_filter())
        with pytest.raises(gdc.DownloadError) as info:
            client.download_files(manifest, tmp_path, concurrency=1, progress=False)
    assert {r["headers"].get("X-Auth-Token") for r in server.received} == {TOKEN}
    assert "HTTP 403" in str(info.value) and "<redacted>" in str(info.value)  # the server echoed the token
    assert "retry 1/3" in caplog.text
    for text in (str(info.value), caplog.text, repr(client), (tmp_path / gdc.REPORT_NAME).read_text()):
        assert TOKEN not in text
    assert repr(client) == f"GDCClient(base_url={server.url!r}, token=<redacted>)"


def test_token_comes_from_environment_or_file(server: FakeGDC, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "gdc-user-token.txt"
    token_file.write_text(TOKEN + "\n")
    monkeypatch.setenv(gdc.ENV_TOKEN_FILE, str(token_file))
    _client(server).status()
    monkeypatch.setenv(gdc.ENV_TOKEN, "from-env")
    _client(server).status()
    assert [r["headers"].get("X-Auth-Token") for r in server.received] == [TOKEN, "from-env"]
    with pytest.raises(ValueError, match="missing.txt.*cannot be read") as info:
        _client(server, token_file=tmp_path / "missing.txt")
    assert TOKEN not in str(info.value)


def test_token_is_not_forwarded_when_a_redirect_leaves_the_host(server: FakeGDC, tmp_path: Path) -> None:
    manifest = _add_files(server, [64])
    real_id, moved_id = manifest.loc[0, "id"], _uuid(999)
    port = server.url.rsplit(":", 1)[1]
    server.redirects[moved_id] = f"http://localhost:{port}/data/{real_id}"
    manifest.loc[0, "id"] = moved_id
    _client(server, token=TOKEN).download_files(manifest, tmp_path, progress=False)
    hosts = {r["headers"]["Host"].split(":")[0]: r["headers"].get("X-Auth-Token") for r in server.data_requests()}
    assert hosts == {"127.0.0.1": TOKEN, "localhost": None}


# --------------------------------------------------------------------------------------------------- downloads

def test_download_verifies_md5_and_a_second_run_skips_verified_files(server: FakeGDC, tmp_path: Path) -> None:
    manifest = _add_files(server, [1000, 0, 5000])
    client = _client(server)
    paths = client.download_files(manifest, tmp_path / "dl", concurrency=2, progress=False)
    assert paths == [tmp_path / "dl" / r.id / r.filename for r in manifest.itertuples()]
    assert [p.read_bytes() for p in paths] == [server.files[i] for i in manifest["id"]]
    assert not list((tmp_path / "dl").rglob("*.part"))
    report = json.loads((tmp_path / "dl" / gdc.REPORT_NAME).read_text())
    assert [f["status"] for f in report["files"]] == ["downloaded"] * 3

    n_requests = len(server.data_requests())
    assert client.download_files(manifest, tmp_path / "dl", progress=False) == paths
    assert len(server.data_requests()) == n_requests  # nothing fetched again
    report = json.loads((tmp_path / "dl" / gdc.REPORT_NAME).read_text())
    assert [f["status"] for f in report["files"]] == ["skipped"] * 3


def test_md5_mismatch_removes_the_file_and_names_id_and_both_checksums(server: FakeGDC, tmp_path: Path) -> None:
    manifest = _add_files(server, [300])
    actual = manifest.loc[0, "md5"]
    manifest.loc[0, "md5"] = "0" * 32
    with pytest.raises(gdc.DownloadError) as info:
        _client(server).download_files(manifest, tmp_path, progress=False)
    message = str(info.value)
    assert manifest.loc[0, "id"] in message and "expected " + "0" * 32 in message and f"got {actual}" in message
    assert not list((tmp_path / manifest.loc[0, "id"]).iterdir())  # neither the file nor its .part is kept
    assert info.value.results[0].status == "failed"


def test_truncated_transfer_is_resumed_with_a_range_request(server: FakeGDC, tmp_path: Path) -> None:
    manifest = _add_files(server, [3 * 2**20 + 123])
    file_id = manifest.loc[0, "id"]
    server.truncate_once.add(file_id)
    [path] = _client(server).download_files(manifest, tmp_path, progress=False)
    assert hashlib.md5(path.read_bytes()).hexdigest() == manifest.loc[0, "md5"]
    ranges = [r["headers"].get("Range") for r in server.data_requests(file_id)]
    assert len(ranges) == 2 and ranges[0] is None
    start = int(re.fullmatch(r"bytes=(\d+)-", ranges[1]).group(1))
    assert 0 < start <= (3 * 2**20 + 123) // 2
    report = json.loads((tmp_path / gdc.REPORT_NAME).read_text())["files"][0]
    assert report["attempts"] == 2 and report["bytes_transferred"] == 3 * 2**20 + 123


def test_a_part_left_by_an_earlier_run_is_resumed(server: FakeGDC, tmp_path: Path) -> None:
    manifest = _add_files(server, [4000])
    row = manifest.iloc[0]
    (tmp_path / row["id"]).mkdir()
    (tmp_path / row["id"] / f"{row['filename']}.part").write_bytes(server.files[row["id"]][:1500])
    [path] = _client(server).download_files(manifest, tmp_path, progress=False)
    assert path.read_bytes() == server.files[row["id"]]
    assert [r["headers"].get("Range") for r in server.data_requests()] == ["bytes=1500-"]


def test_http_500_once_is_retried(server: FakeGDC, tmp_path: Path) -> None:
    manifest = _add_files(server, [700])
    server.fail_once.add(f"/data/{manifest.loc[0, 'id']}")
    [path] = _client(server).download_files(manifest, tmp_path, progress=False)
    assert path.read_bytes() == server.files[manifest.loc[0, "id"]]
    assert len(server.data_requests()) == 2


def test_failures_are_reported_together_after_the_other_files(server: FakeGDC, tmp_path: Path) -> None:
    manifest = _add_files(server, [100, 200, 300])
    missing, broken, good = manifest["id"]
    del server.files[missing]
    manifest.loc[1, "md5"] = "f" * 32
    with pytest.raises(gdc.DownloadError) as info:
        _client(server).download_files(manifest, tmp_path, concurrency=3, progress=False)
    message = str(info.value)
    assert message.startswith("2 of 3 GDC download(s) failed")
    assert f"{missing} (TCGA-00.rna_seq.augmented_star_gene_counts.tsv): GDC file {missing}" in message
    assert "not found (HTTP 404)" in message and f"{broken}" in message and "md5 mismatch" in message
    assert [r.status for r in info.value.results] == ["failed", "failed", "downloaded"]
    assert (tmp_path / good / manifest.loc[2, "filename"]).read_bytes() == server.files[good]
    assert len(server.data_requests(missing)) == 1  # a 404 is not retried


@pytest.mark.parametrize("bad_name", ["../x", "/etc/passwd", "..", "a\\b", "C:evil", "a\x00b", " "])
def test_unsafe_file_names_are_refused_before_anything_is_fetched(server: FakeGDC, tmp_path: Path,
                                                                  bad_name: str) -> None:
    manifest = _add_files(server, [10, 10])
    manifest.loc[1, "filename"] = bad_name
    out = tmp_path / "out"
    with pytest.raises(gdc.ManifestError, match=re.escape(f"filename {bad_name!r} refused")):
        _client(server).download_files(manifest, out, progress=False)
    assert server.received == [] and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad_name", ["../../evil.sh", "/etc/cron.d/x", "x\x00.svs"])
def test_unsafe_names_from_the_server_never_become_paths(server: FakeGDC, tmp_path: Path, bad_name: str) -> None:
    server.hits["files"] = [_file_hit(0), {**_file_hit(1), "file_name": bad_name}]
    out = tmp_path / "run" / "data" / "gdc"
    with pytest.raises(gdc.ManifestError, match=re.escape(f"row 1: file {_uuid(1)}: filename {bad_name!r} refused")):
        _client(server).resolve(gdc.star_counts_query(), out)
    assert not out.exists() or not any(out.iterdir())  # no manifest was written
    assert server.data_requests() == []


def test_concurrency_bound_is_respected(server: FakeGDC, tmp_path: Path) -> None:
    manifest = _add_files(server, [50] * 6)
    server.delay_s = 0.1
    _client(server).download_files(manifest, tmp_path, concurrency=2, progress=False)
    assert server.max_active == 2 and len(server.data_requests()) == 6
    with pytest.raises(ValueError, match="concurrency=0"):
        _client(server).download_files(manifest, tmp_path, concurrency=0, progress=False)


# --------------------------------------------------------------------------------------------------- manifests

REAL_MANIFEST_LINES = (  # two rows of a real GDC manifest (shared/data/tcga_gbm/gdc_manifest_example_…txt)
    "id\tfilename\tmd5\tsize\tstate\n"
    "03b86f9c-97db-4b38-b514-96a73bb5276d\tTCGA-HE-7128-01Z-00-DX1.29FBDF7D-24CE-44F8-B72F-1A403042F8E2.svs\t"
    "acbed7142416d550d510d1dc3cc7dbc3\t595890682\tvalidated\n"
    "09f62988-5a9b-4d1b-976b-123c0017122e\tTCGA-NH-A8F7-01Z-00-DX1.5CB8911D-07C3-4EF2-A97D-A62B441CF79E.svs\t"
    "dd165271e7d3ad1aae9978dfbade8417\t1149778127\tvalidated\n"
)


def test_manifest_round_trip_from_a_files_query_table(tmp_path: Path) -> None:
    real = tmp_path / "real.txt"
    real.write_text(REAL_MANIFEST_LINES)
    table = gdc.read_manifest(real)
    assert table["size"].tolist() == [595890682, 1149778127] and table["size"].dtype == np.int64
    query_table = pd.DataFrame([gdc.flatten_hit(_file_hit(k), gdc.FILE_FIELDS) for k in range(3)])
    path = gdc.write_manifest(query_table, tmp_path / "m.txt")
    assert path.read_text().splitlines()[:2] == ["id\tfilename\tmd5\tsize\tstate",
                                                 f"{_uuid(0)}\tf0.tsv\t{0:032x}\t100\treleased"]
    pd.testing.assert_frame_equal(gdc.read_manifest(path), gdc.manifest_frame(query_table))


def test_bad_manifest_lines_are_named(tmp_path: Path) -> None:
    lines = REAL_MANIFEST_LINES.splitlines()
    bad = tmp_path / "bad.txt"
    bad_md5, bad_size = lines[1].replace("acbed71", "zzzzzzz"), lines[2].replace("\t1149778127", "\t-5")
    bad.write_text("\n".join([lines[0], bad_md5, bad_size, lines[1], "only\ttwo"]) + "\n")
    with pytest.raises(gdc.ManifestError) as info:
        gdc.read_manifest(bad)
    message = str(info.value)
    assert message.startswith(f"{bad}: 4 problem(s)")
    assert "line 2: file 03b86f9c-97db-4b38-b514-96a73bb5276d: md5 'zzzzzzz" in message
    assert "line 3: file 09f62988-5a9b-4d1b-976b-123c0017122e: size '-5'" in message
    assert "line 4: id 03b86f9c-97db-4b38-b514-96a73bb5276d already on line 2" in message
    assert "line 5: 2 tab-separated field(s), the header has 5" in message
    header_only = tmp_path / "header.txt"
    header_only.write_text("id filename md5 size state\n")  # spaces, not tabs
    with pytest.raises(gdc.ManifestError, match=r"header.txt line 1: header .* lacks"):
        gdc.read_manifest(header_only)


# --------------------------------------------------------------------------------------------------- STAR counts

STAR_HEADER = ("gene_id\tgene_name\tgene_type\tunstranded\tstranded_first\tstranded_second\ttpm_unstranded\t"
               "fpkm_unstranded\tfpkm_uq_unstranded\n")


def _star_file(path: Path, counts: dict[str, int], order: list[str] | None = None) -> Path:
    """A STAR - Counts file as the GDC writes it: comment line, header, four N_* rows, then genes."""
    genes = {"ENSG00000000003.15": ("TSPAN6", "protein_coding"), "ENSG00000000005.6": ("TNMD", "protein_coding"),
             "ENSG00000275287.1": ("MIR7-3HG", "lncRNA")}
    lines = ["# gene-model: GENCODE v36\n", STAR_HEADER]
    lines += [f"{n}\t\t\t{v}\t{v}\t{v}\t\t\t\n" for n, v in
              [("N_unmapped", 2291406), ("N_multimapping", 4036718), ("N_noFeature", 1794004),
               ("N_ambiguous", 2734212)]]
    for gene_id in order or list(genes):
        name, kind = genes[gene_id]
        lines.append(f"{gene_id}\t{name}\t{kind}\t{counts[gene_id]}\t{counts[gene_id] // 2}\t0\t"
                     f"12.3456\t3.2\t3.9\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines))
    return path


def test_star_counts_become_a_samples_by_genes_anndata(tmp_path: Path) -> None:
    ids = ["ENSG00000000003.15", "ENSG00000000005.6", "ENSG00000275287.1"]
    a = _star_file(tmp_path / _uuid(1) / "a.rna_seq.augmented_star_gene_counts.tsv", dict(zip(ids, [1373, 0, 7])))
    b = _star_file(tmp_path / "b.rna_seq.augmented_star_gene_counts.tsv", dict(zip(ids, [2000, 5, 1])),
                   order=ids[::-1])
    adata = gdc.read_star_counts({"s1": a, "s2": b})
    assert adata.shape == (2, 3) and adata.X.dtype == np.int64
    assert adata.X.tolist() == [[1373, 0, 7], [2000, 5, 1]]
    assert adata.var_names.tolist() == ids and adata.var.index.name == "gene_id"
    assert adata.var["gene_name"].tolist() == ["TSPAN6", "TNMD", "MIR7-3HG"]
    assert adata.var["gene_type"].tolist() == ["protein_coding", "protein_coding", "lncRNA"]
    assert adata.obs_names.tolist() == ["s1", "s2"] and adata.uns["gene_model"] == "GENCODE v36"
    assert gdc.read_star_counts([a, b]).obs_names.tolist() == [_uuid(1), "b"]  # folder UUID, else name stem


def test_bad_star_files_get_clear_errors(tmp_path: Path) -> None:
    ids = ["ENSG00000000003.15", "ENSG00000000005.6", "ENSG00000275287.1"]
    good = _star_file(tmp_path / "good.tsv", dict(zip(ids, [1, 2, 3])))
    htseq = tmp_path / "htseq.tsv"
    htseq.write_text("ENSG00000000003.15\t1373\nENSG00000000005.6\t0\n")
    with pytest.raises(gdc.StarCountsError, match=r"htseq.tsv: not a GDC STAR - Counts file: the header lacks "
                                                  r"\['gene_id', 'gene_name', 'gene_type', 'unstranded'\]"):
        gdc.read_star_counts([good, htseq])
    fewer = _star_file(tmp_path / "fewer.tsv", dict(zip(ids, [1, 2, 3])), order=ids[:2])
    with pytest.raises(gdc.StarCountsError, match=r"fewer.tsv: its genes differ from .*good.tsv's: 0 only here.*"
                                                  r"1 only there \(e.g. \['ENSG00000275287.1'\]\)"):
        gdc.read_star_counts([good, fewer])
    fractional = _star_file(tmp_path / "tpm.tsv", dict(zip(ids, [1, 2, 3])))
    fractional.write_text(fractional.read_text().replace("\t2\t1\t0\t", "\t2.5\t1\t0\t"))
    with pytest.raises(gdc.StarCountsError, match=r"tpm.tsv: 'unstranded' of gene\(s\) \['ENSG00000000005.6'\]"):
        gdc.read_star_counts({"x": fractional})
    with pytest.raises(gdc.StarCountsError, match="occur twice"):
        gdc.read_star_counts([good, tmp_path / "other" / "good.tsv"])
