"""Tests of gbhet_lib.book_results (the generated results overview and claims table) and of the book's citations."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from gbhet_lib.book_results import CHAPTERS, CLAIMS_PAGE, RESULTS_PAGE, Headline, fmt, headline_rows, \
    write_results_pages
from gbhet_lib.claims import as_metrics, check, read_run_claims

REPO = Path(__file__).resolve().parents[1]
#: a finished demo run to check the pages against: $GBHET_RUN_DIR, else runs/demo (what `make book` writes)
RUN = Path(os.environ.get("GBHET_RUN_DIR") or REPO / "runs" / "demo")


def fake_run(tmp_path: Path) -> Path:
    """A run with chapter 2's and chapter 5's metrics (one claim holding, one not) and no other chapter."""
    run = tmp_path / "run"
    (run / "metrics").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"profile": "demo", "seed": 3}))
    rna = {"louvain_ari": 0.8125, "modularity": 0.6543,
           "held_out": {"contrastive": 1.25, "contrastive_chance": 3.4012},
           "claims": as_metrics([check("rna.louvain_ari", "Louvain finds the planted modules", 0.8125,
                                       at_least=0.75, null=0.0, null_name="random token labels")])}
    retrieval = {"best": {"patient_cv": {"held_out_gallery": {
        "percentile": 0.5432, "percentile_chance": 0.5, "null_percentile": 0.4999,
        "percentile_ci": [0.4321, 0.6789], "lineage_top1": 0.2468, "lineage_top1_chance": 0.2105,
        "lineage_top1_ci": [0.1111, 0.3333]}}},
        "claims": as_metrics([check("retrieval.best.cv_above_chance", "Held-out lineages | retrieve above chance",
                                    0.4321, at_least=0.5, null=0.5, null_name="chance",
                                    interval=(0.4321, 0.6789), units="patients")])}
    (run / "metrics" / "rna.json").write_text(json.dumps(rna))
    (run / "metrics" / "retrieval.json").write_text(json.dumps(retrieval))
    return run


def test_pages_from_a_fake_run(tmp_path: Path) -> None:
    run, root = fake_run(tmp_path), tmp_path / "book_root"
    written = write_results_pages(run, root)
    assert written == [root / RESULTS_PAGE, root / CLAIMS_PAGE]
    results = (root / RESULTS_PAGE).read_text(encoding="utf-8")
    claims = (root / CLAIMS_PAGE).read_text(encoding="utf-8")

    # the values, beside their nulls and intervals, as the metrics give them
    assert "| 0.812 | 0 (random token labels) |" in results  # a claim's value and null
    assert "| modularity of the Louvain partition | 0.654 | — | — |" in results
    assert "| held-out contrastive loss | 1.25 | 3.4 (chance) | — |" in results
    assert ("| best: patient-level CV, held-out lineages, mean percentile | 0.543 | 0.5 (chance); "
            "0.5 (image-blind null) | [0.432, 0.679] |") in results
    assert "profile `demo`, seed `3`" in results
    # a chapter without metrics is stated as not run, never filled in
    assert results.count("Not run: this run has no `metrics/") == len(CHAPTERS) - 2
    assert "Not run: this run has no `metrics/wsi.json`" in results
    assert "2 of 8 chapters wrote their metrics" in results
    assert "Of 2 claims, 1 hold and 1 do not hold" in results
    assert "1 of 1 hold, 0 do not hold" in results and "0 of 1 hold, 1 do not hold" in results
    # a headline whose key the metrics lack is stated as not recorded
    assert "not recorded (`size_factor_log_r`)" in results

    assert "**2 claims: 1 hold, 1 do not hold.**" in claims
    assert "| `rna.louvain_ari` | Louvain finds the planted modules | 0.812 | ≥ 0.75 | 0 (random token labels) | — " \
           "| holds |" in claims
    row = next(line for line in claims.splitlines() if "retrieval.best.cv_above_chance" in line)
    assert "Held-out lineages \\| retrieve above chance" in row  # a | in a statement does not break the table
    assert "[0.432, 0.679] over patients" in row and row.endswith("| **does not hold** |")
    assert "Not run: this run has no `metrics/01_data.json`" in claims
    assert "(claims-rna)=" in claims and "{ref}`the chapter's claims <claims-rna>`" in results


def test_a_run_without_metrics_says_every_chapter_was_not_run(tmp_path: Path) -> None:
    root = tmp_path / "book_root"
    write_results_pages(tmp_path / "empty_run", root)
    results = (root / RESULTS_PAGE).read_text(encoding="utf-8")
    assert results.count("Not run: this run has no") == len(CHAPTERS)
    assert "**0 claims: 0 hold, 0 do not hold.**" in (root / CLAIMS_PAGE).read_text(encoding="utf-8")


def test_unreadable_metrics_and_a_disagreeing_stored_verdict_are_stated(tmp_path: Path) -> None:
    run = fake_run(tmp_path)
    (run / "metrics" / "wsi.json").write_text("{not json")
    stored = json.loads((run / "metrics" / "rna.json").read_text())
    stored["claims"][0]["holds"] = False  # recomputed: it holds
    (run / "metrics" / "rna.json").write_text(json.dumps(stored))
    root = tmp_path / "book_root"
    write_results_pages(run, root)
    assert "could not be read" in (root / RESULTS_PAGE).read_text(encoding="utf-8")
    assert "holds (the stored verdict disagrees)" in (root / CLAIMS_PAGE).read_text(encoding="utf-8")


def test_wildcard_headlines_fill_their_labels_nulls_and_intervals() -> None:
    metrics = {"traits": {"a": {"auc": 0.75, "chance": 0.5, "ci": [0.6, 0.9]}, "b": {"auc": 0.55, "chance": 0.5}},
               "claims": []}
    rows = headline_rows(Headline("{}: AUC", "traits/*/auc", nulls=(("chance", "traits/*/chance"),),
                                  interval="traits/*/ci", units="patients"), metrics, [])
    assert rows == [["a: AUC", "0.75", "0.5 (chance)", "[0.6, 0.9] over patients"],
                    ["b: AUC", "0.55", "0.5 (chance)", "—"]]


def test_numbers_are_formatted_not_invented() -> None:
    assert [fmt(v) for v in (None, 178.0, 7, 0.12345, float("nan"), 1.5e-11, True)] == \
        ["—", "178", "7", "0.123", "not measured", "1.50e-11", "yes"]


@pytest.mark.skipif(not (RUN / "metrics").is_dir(),
                    reason="no finished run: set GBHET_RUN_DIR to one (default runs/demo, written by make book)")
def test_every_claim_of_the_demo_run_is_in_the_claims_table(tmp_path: Path) -> None:
    write_results_pages(RUN, tmp_path)
    claims = (tmp_path / CLAIMS_PAGE).read_text(encoding="utf-8")
    ids = [c.id for chapter in read_run_claims(RUN).values() for c in chapter]
    assert ids
    missing = [i for i in ids if f"| `{i}` |" not in claims]
    assert not missing, missing
    results = (tmp_path / RESULTS_PAGE).read_text(encoding="utf-8")
    ran = [c.stem for c in CHAPTERS if (RUN / "metrics" / f"{c.stem}.json").is_file()]
    assert results.count("Not run: this run has no") == len(CHAPTERS) - len(ran)


# ---------------------------------------------------------------------------------------------------------------
# citations: the book is built with -n -W, so a cite key missing from references.bib fails the build

_CITE_ROLE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]*)`")


def bib_keys(path: Path) -> set[str]:
    return set(re.findall(r"^@\w+\s*\{\s*([^,\s]+)\s*,", path.read_text(encoding="utf-8"), re.M))


def test_every_cite_key_in_the_book_exists_in_references_bib() -> None:
    keys = bib_keys(REPO / "book" / "references.bib")
    pages = [p for p in sorted((REPO / "book").glob("*.md")) if p.name not in {RESULTS_PAGE.name, CLAIMS_PAGE.name}]
    used: dict[str, list[str]] = {}
    for page in pages:
        for group in _CITE_ROLE.findall(page.read_text(encoding="utf-8")):
            for key in (k.strip() for k in group.split(",")):
                used.setdefault(key, []).append(page.name)
    assert used, "no {cite} role found in book/*.md"
    missing = {key: pages for key, pages in used.items() if key not in keys}
    assert not missing, f"cite keys not in book/references.bib: {missing}"


def test_references_bib_has_no_duplicate_keys() -> None:
    text = (REPO / "book" / "references.bib").read_text(encoding="utf-8")
    keys = re.findall(r"^@\w+\s*\{\s*([^,\s]+)\s*,", text, re.M)
    assert len(keys) == len(set(keys)), sorted({k for k in keys if keys.count(k) > 1})


# ---------------------------------------------------------------------------------------------------------------
# the methods page names the code of each stage: every name it gives must exist

def _resolve(dotted: str) -> bool:
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def test_every_library_name_on_the_methods_page_exists() -> None:
    text = (REPO / "book" / "methods.md").read_text(encoding="utf-8")
    names = sorted(set(re.findall(r"`(gbhet_lib(?:\.\w+)+)`", text)))
    assert len(names) > 50, "the methods page should name the library functions of every stage"
    missing = [name for name in names if not _resolve(name)]
    assert not missing, f"book/methods.md names what gbhet_lib does not define: {missing}"


def test_the_methods_page_has_a_section_per_stage() -> None:
    text = (REPO / "book" / "methods.md").read_text(encoding="utf-8")
    headings = re.findall(r"^### (\d)\. ", text, re.M)
    assert headings == [str(i) for i in range(1, len(CHAPTERS) + 1)]
