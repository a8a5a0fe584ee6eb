"""The data manifest: the real one validates and matches the mirror; broken ones fail with entry and field."""
from __future__ import annotations

import copy
import dataclasses
import fnmatch
from pathlib import Path
from typing import Any

import pytest
import yaml

from data_mirror import mirror_root

from gbhet_lib.data.fetch import file_sha256
from gbhet_lib.data.manifest import DataError, ManifestError, load_manifest

#: the names other modules code against
REQUIRED_NAMES = """
string_v12_ppi_rda string_v12_ppi_tsv innatedb_ppi_rda innatedb_ppi_tsv biomart_id_mapping_rda biomart_id_mapping_tsv
iobr_gene_annotation_rda iobr_gene_annotation_tsv pirlygenes_gene_reference msigdb_hallmark_iobr_rda
msigdb_hallmark_iobr_gmt neftel2019_gmt gliovis_subtype_list_rds gliovis_subtype_list_2016_rds gliovis_si_geneset_rdata
gbm_subtypes_gliovis_gmt pirlygenes_lineage_genes pirlygenes_cancer_type_genes pirlygenes_estimate_signatures
verhaak2010_clanc840 tcga_gbm_clinical_patient vasari_annotations msigdb_hallmark_v62_gmt puchalski2018_gene_sets_xlsx
tcga_cdr_pancancer_rdata tcga_cdr_gbm_lgg_tsv cancersubtypes_geneexp_rda cancersubtypes_time_rda
cancersubtypes_status_rda cancersubtypes_gbm_expression_tsv cancersubtypes_gbm_survival_tsv wang2017_subtype_calls
wang2017_table_s3_xlsx porpoise_gbm_slide_filenames gdc_manifest_example cmu1_small_region_svs tcga_06_0174_roi_png
tcga_26_1442_roi_png tcga_ht_7470_roi_png tcga_06_0174_roi_pyramidal_tiff
""".split()

#: files of the mirror that are documentation or scripts, not datasets
NOT_DATASETS = ("README.md", "*/README.md", "SHA256SUMS", "*/LICENSE", "*/SOURCE_COMMIT", "*.py")

GOOD_ENTRY: dict[str, Any] = {
    "name": "tiny_table", "description": "a tiny table", "role": "upstream",
    "url": "https://raw.githubusercontent.com/o/r/0123456789abcdef0123456789abcdef01234567/tiny.tsv",
    "sha256": "a" * 64, "size": 10, "format": "tsv", "licence": "CC0-1.0", "citation": "nobody",
    "profiles": ["reference"], "mirror_path": "misc/tiny.tsv",
}


@pytest.fixture(scope="module")
def mirror() -> Path:
    path = mirror_root()  # skips without a mirror (fails with GBHET_REQUIRE_MIRROR=1): tests/data_mirror.py
    if not (path / "SHA256SUMS").is_file():
        pytest.fail(f"the data mirror {path} has no SHA256SUMS: point GBHET_DATA_MIRROR at a complete copy of the "
                    "data manifest's files (e.g. ../shared/data). This test checks the manifest against it.")
    return path


def write_manifest(tmp_path: Path, entries: list[dict[str, Any]]) -> Path:
    path = tmp_path / "datasets.yaml"
    path.write_text(yaml.safe_dump({"manifest_version": 1, "datasets": entries}), encoding="utf-8")
    return path


def test_real_manifest_validates_and_names_every_required_dataset() -> None:
    manifest = load_manifest()
    missing = sorted(set(REQUIRED_NAMES) - set(manifest.entries))
    assert not missing, f"datasets missing from the manifest: {missing}"
    assert len(manifest.for_profile("reference")) == len(manifest) >= len(REQUIRED_NAMES)
    assert manifest.for_profile("demo") == []
    for entry in manifest:
        if entry.role == "derived" or entry.url is None:
            assert entry.url is None and entry.notes, f"{entry.name}: no url, so notes must give the provenance"
        if entry.url is not None:
            assert entry.url.startswith(("https://raw.githubusercontent.com/", "https://files.pythonhosted.org/"))
        if entry.url and entry.url.startswith("https://raw.githubusercontent.com/"):
            commit = entry.url.split("/")[5]
            assert len(commit) == 40, f"{entry.name}: URL not pinned to a full commit hash: {entry.url}"


def test_names_of_the_loaders_have_the_agreed_roles_and_paths() -> None:
    manifest = load_manifest()
    assert manifest["string_v12_ppi_rda"].mirror_path == "ppi/raw/string.v12.Entrez.ntm.700.400.k3.rda"
    assert manifest["string_v12_ppi_tsv"].role == "derived"
    assert manifest["string_v12_ppi_tsv"].derived_from == ("string_v12_ppi_rda",)
    assert manifest["msigdb_hallmark_iobr_rda"].mirror_path == "genesets/raw/iobr_hallmark_be5d893.rda"
    assert manifest["tcga_cdr_pancancer_rdata"].mirror_path.startswith("tcga_gbm/raw/gerkelab_")
    wheel = manifest["pirlygenes_gene_reference"]
    assert wheel.member == "pirlygenes/data/canonical-gene-reference.csv.gz"
    assert wheel.url is not None and wheel.url.endswith("pirlygenes-6.0.18-py3-none-any.whl")


def test_every_mirror_file_matches_the_manifest(mirror: Path) -> None:
    bad = []
    for entry in load_manifest():
        path = mirror / entry.mirror_path
        if not path.is_file():
            bad.append(f"{entry.name}: {path} missing")
        elif path.stat().st_size != entry.size or file_sha256(path) != entry.sha256:
            bad.append(f"{entry.name}: {path} differs (size {path.stat().st_size}, manifest {entry.size})")
    assert not bad, "\n".join(bad)


def test_manifest_agrees_with_the_mirror_sha256sums(mirror: Path) -> None:
    sums = {}
    for line in (mirror / "SHA256SUMS").read_text(encoding="utf-8").splitlines():
        sha, _, path = line.partition("  ")
        sums[path.removeprefix("./")] = sha
    manifest = load_manifest()
    listed = {entry.mirror_path: entry for entry in manifest}
    disagree = [f"{e.name}: {e.sha256} vs {sums[p]}" for p, e in listed.items() if p in sums and sums[p] != e.sha256]
    assert not disagree
    assert not sorted(set(listed) - set(sums)), "manifest files absent from SHA256SUMS"
    unlisted = sorted(p for p in sums if p not in listed and not any(fnmatch.fnmatch(p, g) for g in NOT_DATASETS))
    # duplicates of listed files (same bytes under another name) need no entry of their own
    unlisted = [p for p in unlisted if sums[p] not in {e.sha256 for e in manifest}]
    assert not unlisted, f"mirror data files missing from the manifest: {unlisted}"


def test_unknown_name_lists_close_names() -> None:
    with pytest.raises(DataError, match=r"no dataset named 'string_ppi'.*Did you mean: string_v12_ppi_"):
        load_manifest()["string_ppi"]


def test_unknown_profile_is_an_error() -> None:
    with pytest.raises(DataError, match="profile='refrence' is not one of"):
        load_manifest().for_profile("refrence")


def test_entries_are_frozen(tmp_path: Path) -> None:
    entry = load_manifest(write_manifest(tmp_path, [GOOD_ENTRY]))["tiny_table"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.sha256 = "b" * 64  # type: ignore[misc]


@pytest.mark.parametrize("change, field, message", [
    ({"sha256": "abc"}, "sha256", "must be 64 lower-case hex digits"),
    ({"sha256": "A" * 64}, "sha256", "must be 64 lower-case hex digits"),
    ({"size": 0}, "size", "integer number of bytes > 0"),
    ({"size": "10"}, "size", "integer number of bytes > 0"),
    ({"profiles": ["reference", "paper"]}, "profiles", "unknown profile(s) 'paper'"),
    ({"profiles": []}, "profiles", "non-empty list"),
    ({"role": "copied"}, "role", "must be one of upstream, derived"),
    ({"url": None}, "url", "an 'upstream' entry needs the pinned URL"),
    ({"url": "ftp://x/y"}, "url", "must be an http(s) URL or null"),
    ({"mirror_path": "../outside.tsv"}, "mirror_path", "relative POSIX path inside the mirror"),
    ({"licence": ""}, "licence", "must be a non-empty string"),
    ({"colour": "red"}, "colour", "unknown field"),
    ({"archive_sha256": "b" * 64}, "archive_sha256", "only an entry with a 'member'"),
    ({"name": "Tiny Table"}, "name", "lower-case letters"),
])
def test_invalid_entry_names_entry_and_field(tmp_path: Path, change: dict[str, Any], field: str,
                                             message: str) -> None:
    entry = {**copy.deepcopy(GOOD_ENTRY), **change}
    with pytest.raises(ManifestError) as err:
        load_manifest(write_manifest(tmp_path, [entry]))
    assert f"entry 1 {entry['name']!r}, field {field!r}" in str(err.value)
    assert message in str(err.value)


def test_missing_field_is_named(tmp_path: Path) -> None:
    entry = {k: v for k, v in GOOD_ENTRY.items() if k != "citation"}
    with pytest.raises(ManifestError, match="entry 1 'tiny_table', field 'citation': missing"):
        load_manifest(write_manifest(tmp_path, [entry]))


def test_duplicate_name_is_an_error(tmp_path: Path) -> None:
    second = {**GOOD_ENTRY, "mirror_path": "misc/other.tsv"}
    with pytest.raises(ManifestError, match=r"entry 2 'tiny_table', field 'name': duplicate name \(also entry 1\)"):
        load_manifest(write_manifest(tmp_path, [GOOD_ENTRY, second]))


def test_derived_from_must_name_an_entry(tmp_path: Path) -> None:
    derived = {**GOOD_ENTRY, "name": "tiny_derived", "role": "derived", "url": None, "notes": "made here",
               "derived_from": ["tiny_tabel"]}
    with pytest.raises(ManifestError, match=r"'tiny_derived', field 'derived_from': no dataset named 'tiny_tabel'"
                                            r".*Did you mean: tiny_table"):
        load_manifest(write_manifest(tmp_path, [GOOD_ENTRY, derived]))


def test_missing_or_malformed_manifest_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="not found"):
        load_manifest(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("datasets: [unclosed", encoding="utf-8")
    with pytest.raises(ManifestError, match="not valid YAML"):
        load_manifest(tmp_path / "bad.yaml")
    (tmp_path / "flat.yaml").write_text("- name: x\n", encoding="utf-8")
    with pytest.raises(ManifestError, match="'datasets:' list"):
        load_manifest(tmp_path / "flat.yaml")
