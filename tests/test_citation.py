"""CITATION.cff is valid CFF 1.2.0; the licences (code MIT, text CC BY 4.0) are stated where readers look; and the
data statement lists the licence of every dataset of the manifest, word for word (a test keeps them from drifting).

The CFF check is a JSON schema of CFF 1.2.0's required keys and the types of the keys this file uses (offline,
with jsonschema). When ``cffconvert`` is installed, its copy of the full CFF 1.2.0 schema is used as well
(``cffconvert --validate`` passed on this file; cffconvert 2.0 pins jsonschema < 4, so it is not in .venv).
"""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from gbhet_lib import __version__
from gbhet_lib.data.manifest import load_manifest

REPO = Path(__file__).resolve().parents[1]
STATEMENT = REPO / "book" / "data_statement.md"
TABLE_HEADING = "## Licence of each file"

_PERSON = {"type": "object", "properties": {"family-names": {"type": "string", "minLength": 1},
                                            "given-names": {"type": "string"}, "orcid": {"type": "string"}},
           "required": ["family-names"]}
_ENTITY = {"type": "object", "properties": {"name": {"type": "string", "minLength": 1}}, "required": ["name"]}
_AUTHORS = {"type": "array", "minItems": 1, "items": {"anyOf": [_PERSON, _ENTITY]}}
#: CFF 1.2.0: required keys, and the types and values of the keys CITATION.cff uses
CFF_CORE_SCHEMA = {
    "type": "object",
    "required": ["cff-version", "message", "title", "authors"],
    "properties": {
        "cff-version": {"const": "1.2.0"},
        "message": {"type": "string", "minLength": 1},
        "title": {"type": "string", "minLength": 1},
        "type": {"enum": ["software", "dataset"]},
        "version": {"type": ["string", "number"]},
        "license": {"type": "string", "pattern": r"^[A-Za-z0-9.+-]+$"},
        "authors": _AUTHORS,
        "references": {"type": "array", "items": {
            "type": "object", "required": ["type", "title", "authors"],
            "properties": {"type": {"type": "string"}, "title": {"type": "string"}, "authors": _AUTHORS,
                           "identifiers": {"type": "array", "items": {
                               "type": "object", "required": ["type", "value"],
                               "properties": {"type": {"enum": ["doi", "url", "swh", "other"]}}}}}}},
    },
}


@pytest.fixture(scope="module")
def citation() -> dict:
    return yaml.safe_load((REPO / "CITATION.cff").read_text(encoding="utf-8"))


def test_citation_cff_has_the_required_keys_of_cff_1_2_0(citation: dict) -> None:
    errors = [e.message for e in jsonschema.Draft7Validator(CFF_CORE_SCHEMA).iter_errors(citation)]
    assert errors == []


def test_core_schema_catches_what_cff_forbids(citation: dict) -> None:
    validator = jsonschema.Draft7Validator(CFF_CORE_SCHEMA)
    broken = [{k: v for k, v in citation.items() if k != "authors"}, {**citation, "cff-version": "1.1.0"},
              {**citation, "authors": [{"given-names": "only"}]}, {**citation, "type": "article"}]
    assert all(not validator.is_valid(doc) for doc in broken)


def test_citation_cff_against_the_full_schema_of_cffconvert(citation: dict) -> None:
    spec = importlib.util.find_spec("cffconvert")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("cffconvert is not installed (its pins clash with .venv's jsonschema); the core schema above "
                    "checks the required keys")
    schema_path = Path(list(spec.submodule_search_locations)[0]) / "schemas" / "1.2.0" / "schema.json"
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    assert [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(citation)] == []


def test_citation_agrees_with_the_package_and_the_licence_file(citation: dict) -> None:
    assert str(citation["version"]) == __version__
    assert citation["license"] == "MIT"
    assert (REPO / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")


def test_the_text_is_cc_by_4_0_and_the_book_says_so() -> None:
    docs = (REPO / "LICENSE-docs").read_text(encoding="utf-8")
    assert docs.startswith("Creative Commons Attribution 4.0 International (CC BY 4.0)")
    assert "https://creativecommons.org/licenses/by/4.0/legalcode" in docs and "MIT" in docs
    footer = yaml.safe_load((REPO / "_config.yml").read_text(encoding="utf-8"))["html"]["extra_footer"]
    assert "MIT" in footer and "CC BY 4.0" in footer
    statement = STATEMENT.read_text(encoding="utf-8")
    assert "CC BY 4.0 (`LICENSE-docs`)" in statement and "MIT (`LICENSE`)" in statement  # also in the PDF


def statement_table(text: str) -> dict[str, list[str]]:
    """The data statement's table of licences: licence → dataset names, as typed on the page."""
    section = text.split(TABLE_HEADING, 1)[1].split("\n## ", 1)[0]
    table = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")] if line.startswith("| ") else []
        if len(cells) == 2 and not cells[0].startswith("Licence") and not set(cells[0]) <= set("-"):
            table[cells[0]] = re.findall(r"`([^`]+)`", cells[1])
    return table


def manifest_table() -> dict[str, list[str]]:
    """The manifest's licences: licence → dataset names, in manifest order."""
    table: dict[str, list[str]] = {}
    for entry in load_manifest():
        table.setdefault(entry.licence, []).append(entry.name)
    return table


def test_data_statement_lists_every_manifest_licence_word_for_word() -> None:
    typed, manifest = statement_table(STATEMENT.read_text(encoding="utf-8")), manifest_table()
    expected = "\n".join(f"| {lic} | {', '.join(f'`{n}`' for n in names)} |" for lic, names in manifest.items())
    assert typed == manifest, f"book/data_statement.md's table drifted from the manifest; its rows are:\n{expected}"


def test_statement_table_parser_sees_drift() -> None:
    page = (f"{TABLE_HEADING}\n\n| Licence (as in the manifest) | Files |\n|---|---|\n"
            "| MIT | `a`, `b` |\n| CC0-1.0 | `c` |\n\n## Next\n| GPL | `z` |\n")
    assert statement_table(page) == {"MIT": ["a", "b"], "CC0-1.0": ["c"]}
    assert statement_table(page.replace("`b`", "`b2`")) != {"MIT": ["a", "b"], "CC0-1.0": ["c"]}


#: SPDX identifiers of the manifest as the statement's prose writes them
SPDX_SPELLINGS = {"CC-BY-4.0": "CC BY 4.0", "CC-BY-NC-4.0": "CC BY-NC 4.0", "CC0-1.0": "CC0",
                  "GPL-2.0-or-later": "GPL (≥ 2)"}
_SPDX = re.compile(r"\b(CC0-1\.0|CC-BY(?:-NC)?-\d\.\d|A?GPL-\d\.\d(?:-or-later)?|Apache-2\.0|MIT)\b")


def test_data_statement_prose_names_every_licence_of_the_manifest() -> None:
    prose = STATEMENT.read_text(encoding="utf-8").split(TABLE_HEADING, 1)[0]
    ids = {match for entry in load_manifest() for match in _SPDX.findall(entry.licence)}
    assert {"CC-BY-4.0", "GPL-3.0", "Apache-2.0", "CC0-1.0"} <= ids  # the pattern reads the manifest
    missing = sorted(i for i in ids if SPDX_SPELLINGS.get(i, i) not in prose)
    assert not missing, f"licences of the manifest that the data statement's prose never names: {missing}"
