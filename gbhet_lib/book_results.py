"""The book's results overview and claims table, written at build time from one run's ``metrics/*.json``.

:func:`write_results_pages` writes two Markdown pages into the book (both git-ignored, rewritten on every build):

* ``book/results.md``: per chapter, a few headline numbers, each beside the chance level or null and the interval
  the metrics give, and how many of the chapter's claims hold;
* ``book/claims.md``: every claim of every chapter (the claims ``make claims`` checks), grouped by chapter, with its
  statement, value, bound, null, interval and whether it holds, and the counts.

Every number on these pages is read from the run's metrics; none is typed here. What a page says in words is
only what the numbers say: a claim "holds" or "does not hold" as :func:`gbhet_lib.claims.evaluate` computes it
from the value and its bound. A chapter whose metrics file is missing is stated as not run; a headline whose key
is missing from the metrics is stated as not recorded.

The headlines are named by paths into a chapter's metrics (``"patient_cv/model/percentile"``); a ``*`` matches
every key at its level, and the matched keys fill the label's ``{}`` and the same ``*`` of the null and interval
paths, so one :class:`Headline` can list every variant, trait or model a run wrote.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from .claims import CLAIMS_KEY, Claim
from .io import read_json, write_text_atomic

#: the generated pages, relative to the book root (git-ignored; listed in ``_toc.yml``)
RESULTS_PAGE = Path("book") / "results.md"
CLAIMS_PAGE = Path("book") / "claims.md"
GENERATED_PAGES = (RESULTS_PAGE, CLAIMS_PAGE)
#: where the executed chapters are copied (as gbhet_lib.book.CHAPTERS_DIR; not imported: book imports this module)
_CHAPTERS_DIR = Path("book") / "chapters"

_NOT_RECORDED = "not recorded"


@dataclass(frozen=True)
class Headline:
    """One headline row of the results overview: a value, the nulls beside it and its interval.

    Attributes:
        label: what the value is; each ``{}`` is filled with the key a ``*`` of ``value`` matched.
        value: path into the chapter's metrics (keys joined by ``/``; ``*`` matches every key at its level).
        nulls: (name, path) of each chance level, null or reference shown beside the value.
        interval: path of a ``[low, high]`` pair; or ``low`` and ``high``: paths of its two ends.
        units: what the interval resamples (e.g. ``patients``).
        claim: instead of paths, a claim id of the chapter: value, null and interval are the claim's.
    """

    label: str
    value: str = ""
    nulls: tuple[tuple[str, str], ...] = ()
    interval: str | None = None
    low: str | None = None
    high: str | None = None
    units: str = ""
    claim: str | None = None


@dataclass(frozen=True)
class ChapterMetrics:
    """A chapter of the book and the metrics file its notebook writes (``metrics/<stem>.json``)."""

    chapter: str
    stem: str
    title: str
    headlines: tuple[Headline, ...] = ()


def _chance(path: str) -> tuple[tuple[str, str], ...]:
    return (("chance", path),)


#: the study's chapters in book order, with the headline numbers of each (paths into its metrics)
CHAPTERS: tuple[ChapterMetrics, ...] = (
    ChapterMetrics("01_data", "01_data", "1. The data", (
        Headline("patients", "patients"),
        Headline("lineages", "lineages"),
        Headline("slides", "slides"),
        Headline("RNA-only pool samples", "pool_samples"),
        Headline("genes", "genes"),
        Headline("MRI subjects", "mri_subjects"),
        Headline("mean correlation of genes within a planted module", "module_coexpression_within_mean",
                 nulls=(("across modules", "module_coexpression_across_mean"),)),
        Headline("power of the cohort's size (share of simulated cohorts where an oracle beats chance)",
                 claim="data.power"),
        Headline("the same for an image-blind predictor", claim="data.blind_at_chance"),
    )),
    ChapterMetrics("02_rna_encoding", "rna", "2. Encoding RNA", (
        Headline("Louvain communities against the planted modules (ARI)", claim="rna.louvain_ari"),
        Headline("gene tokens after folding against the planted modules (ARI)", claim="rna.folded_ari"),
        Headline("modularity of the Louvain partition", "modularity"),
        Headline("estimated against planted size factors (r of logs)", "size_factor_log_r"),
        Headline("held-out contrastive loss", "held_out/contrastive", nulls=_chance("held_out/contrastive_chance")),
        Headline("held-out reconstruction loss", "held_out/reconstruction",
                 nulls=(("baseline", "held_out/baseline_reconstruction"),)),
        Headline("linear probe of the planted programs from the embedding (worst program, R²)",
                 claim="rna.probe_embedding"),
    )),
    ChapterMetrics("03_wsi_encoding", "wsi", "3. Encoding whole-slide images", (
        Headline("lineage of a patch by nearest neighbours, trained encoder", "lineage_knn_acc",
                 nulls=_chance("lineage_chance")),
        Headline("the same, random encoder", "lineage_knn_acc_random_encoder", nulls=_chance("lineage_chance")),
        Headline("lineage of held-out slides, {} encoder", "lineage_id_heldout_slides/*/accuracy",
                 nulls=_chance("lineage_id_heldout_slides/*/chance"),
                 low="lineage_id_heldout_slides/*/low", high="lineage_id_heldout_slides/*/high"),
        Headline("slide-level probe R² of {}, trained encoder", "probe_r2_slide/*",
                 nulls=(("random encoder", "probe_r2_slide_random_encoder/*"),
                        ("hand-crafted features", "probe_r2_slide_handcrafted/*"))),
    )),
    ChapterMetrics("04_fusion_training", "fusion", "4. Fusion training", (
        Headline("patient-level CV: mean percentile of the own lineage's profile", "patient_cv/model/percentile",
                 nulls=_chance("patient_cv/chance"), low="patient_cv/model/low", high="patient_cv/model/high"),
        Headline("the same, image-blind null", "patient_cv/blind/percentile", nulls=_chance("patient_cv/chance"),
                 low="patient_cv/blind/low", high="patient_cv/blind/high"),
        Headline("patient-level CV: top-1 lineage", "patient_cv/model/top1", nulls=_chance("patient_cv/top1_chance")),
        Headline("held-out ITC loss, {} variant, {} split", "variants/*/*/held_out_itc",
                 nulls=_chance("variants/*/*/held_out_itc_chance")),
        Headline("held-out ITC loss, {} (loss fixes), {} split", "fixes/*/*/held_out_itc",
                 nulls=_chance("fixes/*/*/held_out_itc_chance")),
    )),
    ChapterMetrics("05_retrieval", "retrieval", "5. Retrieval", (
        Headline("{}: patient-level CV, held-out lineages, mean percentile",
                 "*/patient_cv/held_out_gallery/percentile",
                 nulls=(("chance", "*/patient_cv/held_out_gallery/percentile_chance"),
                        ("image-blind null", "*/patient_cv/held_out_gallery/null_percentile")),
                 interval="*/patient_cv/held_out_gallery/percentile_ci"),
        Headline("{}: patient-level CV, held-out lineages, top-1 lineage",
                 "*/patient_cv/held_out_gallery/lineage_top1",
                 nulls=_chance("*/patient_cv/held_out_gallery/lineage_top1_chance"),
                 interval="*/patient_cv/held_out_gallery/lineage_top1_ci"),
        Headline("{}: the paper's patch split, top-1 lineage", "*/patch/lineage_top1",
                 nulls=_chance("*/patch/lineage_top1_chance"), interval="*/patch/lineage_top1_ci"),
        Headline("{}: top-1 optimism of the paper's protocol over patient-level CV", "optimism/*/top-1 optimism"),
    )),
    ChapterMetrics("06_interpretation", "interpret", "6. Interpretation", (
        Headline("{}: precision@50 of Grad-CAM's top genes for the planted drivers",
                 "variants/*/driver_precision_at_50", nulls=_chance("variants/*/driver_chance"),
                 interval="variants/*/driver_precision_at_50_ci"),
        Headline("shuffled-pair null {}: precision@50", "null/*/driver_precision_at_50",
                 nulls=_chance("null/*/driver_chance"), interval="null/*/driver_precision_at_50_ci"),
        Headline("{}: top-50 genes from programs the slides cannot show", "variants/*/invisible_module_hits",
                 nulls=(("expected by share of genes", "variants/*/invisible_module_expected"),)),
        Headline("Cox hazard ratio of the {} program score", "survival/program_hazards/*/hazard_ratio",
                 low="survival/program_hazards/*/hr_low", high="survival/program_hazards/*/hr_high"),
        Headline("C-index of the top-gene score", "survival/top_gene_score/cindex",
                 interval="survival/top_gene_score/cindex_ci"),
    )),
    ChapterMetrics("07_expression_from_images", "expression", "7. Expression from images", (
        Headline("{}: genes significant after Holm–Šidák", "*/n_significant",
                 nulls=(("shuffled, 95th percentile", "*/null_n_significant_q95"),
                        ("shuffled, mean", "*/null_n_significant_mean"))),
        Headline("{}: significant genes from programs the modality cannot show", "*/n_significant_invisible",
                 nulls=(("shuffled, 95th percentile", "*/null_n_significant_q95"),)),
        Headline("{}: median per-gene r", "*/median_r", interval="*/median_r_ci"),
        Headline("oracle reading the programs {} shows: genes significant", "oracle_power/*/n_significant"),
    )),
    ChapterMetrics("08_radiogenomic_traits", "radiogenomics", "8. Imaging traits from expression", (
        Headline("{}: network AUC (selection inside the training folds)", "traits/*/network/auc",
                 interval="traits/*/network/auc_ci"),
        Headline("{}: network AUC with the paper's epoch selection on the scored fold",
                 "traits/*/network/auc_paper_selection"),
        Headline("subtypes ({}): cross-validated accuracy", "subtypes/*/cv/accuracy",
                 nulls=(("majority share", "subtypes/*/cv/majority"),), interval="subtypes/*/cv/accuracy_ci"),
    )),
)


# ---------------------------------------------------------------------------------------------------------------
# reading the run

@dataclass
class ChapterResult:
    """What one metrics file of the run holds: its metrics, its claims, or why it could not be read."""

    stem: str
    path: Path
    metrics: dict[str, Any] | None = None
    claims: list[Claim] | None = None
    stored_holds: list[Any] | None = None
    problem: str = ""

    @property
    def ran(self) -> bool:
        return self.metrics is not None

    @property
    def n_hold(self) -> int:
        return sum(c.holds for c in self.claims or [])

    @property
    def n_fail(self) -> int:
        return sum(not c.holds for c in self.claims or [])


def read_chapter(run_dir: Path, stem: str) -> ChapterResult:
    """Read ``<run_dir>/metrics/<stem>.json`` and rebuild its claims (``holds`` recomputed from value and bound)."""
    path = Path(run_dir) / "metrics" / f"{stem}.json"
    result = ChapterResult(stem, path)
    if not path.is_file():
        return result
    try:
        metrics = read_json(path)
    except (OSError, ValueError) as err:
        result.problem = f"could not be read ({err})"
        return result
    if not isinstance(metrics, dict):
        result.problem = "does not hold a JSON object"
        return result
    result.metrics = metrics
    stored = metrics.get(CLAIMS_KEY)
    if stored is None:
        return result
    try:
        result.claims = [Claim.from_dict(c) for c in stored]
        result.stored_holds = [c.get("holds") for c in stored]
    except (TypeError, ValueError, AttributeError) as err:
        result.claims, result.problem = None, f"a claim under '{CLAIMS_KEY}' is malformed ({err})"
    return result


def read_run(run_dir: Path) -> tuple[list[ChapterResult], list[ChapterResult]]:
    """(every chapter of :data:`CHAPTERS` in order, the other metrics files of the run that hold claims)."""
    run_dir = Path(run_dir)
    chapters = [read_chapter(run_dir, ch.stem) for ch in CHAPTERS]
    known = {ch.stem for ch in CHAPTERS}
    folder = run_dir / "metrics"
    others = []
    if folder.is_dir():
        for path in sorted(folder.glob("*.json")):
            if path.stem not in known:
                result = read_chapter(run_dir, path.stem)
                if result.claims or result.problem:
                    others.append(result)
    return chapters, others


# ---------------------------------------------------------------------------------------------------------------
# formatting

def fmt(value: Any) -> str:
    """A number as the pages print it: integers whole, others to 3 significant digits; NaN as not measured."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "not measured"
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        if value.is_integer() and abs(value) < 1e6:
            return str(int(value))
        if value != 0 and abs(value) < 1e-3:
            return f"{value:.2e}"
        return f"{value:.3g}"
    return text(str(value))


def fmt_interval(low: Any, high: Any, units: str = "") -> str:
    if not _is_number(low) or not _is_number(high):
        return "—"
    return f"[{fmt(float(low))}, {fmt(float(high))}]" + (f" over {text(units)}" if units else "")


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|$])")


def text(value: str) -> str:
    """Text from the metrics made safe inside a Markdown table cell (no markup, no math, no cell breaks)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(value)).replace("\n", " ")


def code(value: str) -> str:
    value = str(value).replace("`", "'").replace("|", "/")
    return f"`{value}`"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


# ---------------------------------------------------------------------------------------------------------------
# headline rows

def _lookup(metrics: Any, keys: Sequence[str]) -> Any:
    node = metrics
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _expand(metrics: Any, keys: Sequence[str], bound: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(the keys each ``*`` matched, the value) for every match of a key path with wildcards."""
    if not keys:
        yield bound, metrics
        return
    head, rest = keys[0], keys[1:]
    if not isinstance(metrics, Mapping):
        return
    if head == "*":
        for key, child in metrics.items():
            if key != CLAIMS_KEY:
                yield from _expand(child, rest, bound + (str(key),))
    elif head in metrics:
        yield from _expand(metrics[head], rest, bound)


def _fill(path: str | None, matched: Sequence[str]) -> list[str] | None:
    if path is None:
        return None
    keys, it = path.split("/"), iter(matched)
    return [next(it, "*") if key == "*" else key for key in keys]


def headline_rows(headline: Headline, metrics: Mapping[str, Any], claims: Sequence[Claim] | None) -> list[list[str]]:
    """The table rows of one headline: quantity, value, chance / null, interval."""
    if headline.claim is not None:
        claim = next((c for c in claims or [] if c.id == headline.claim), None)
        if claim is None:
            return [[text(headline.label), f"{_NOT_RECORDED} (no claim {code(headline.claim)})", "—", "—"]]
        null = f"{fmt(claim.null)} ({text(claim.null_name)})" if claim.null is not None else "—"
        interval = fmt_interval(*claim.interval, claim.units) if claim.interval else "—"
        return [[text(headline.label), fmt(claim.value), null, interval]]

    rows = []
    for matched, value in _expand(metrics, headline.value.split("/")):
        if not _is_number(value):
            continue
        nulls = []
        for name, path in headline.nulls:
            null = _lookup(metrics, _fill(path, matched))
            if _is_number(null):
                nulls.append(f"{fmt(null)} ({text(name)})")
        interval = "—"
        if headline.interval is not None:
            pair = _lookup(metrics, _fill(headline.interval, matched))
            if isinstance(pair, (list, tuple)) and len(pair) == 2:
                interval = fmt_interval(pair[0], pair[1], headline.units)
        elif headline.low is not None and headline.high is not None:
            interval = fmt_interval(_lookup(metrics, _fill(headline.low, matched)),
                                    _lookup(metrics, _fill(headline.high, matched)), headline.units)
        label = headline.label.format(*matched) if matched else headline.label
        rows.append([text(label), fmt(value), "; ".join(nulls) or "—", interval])
    if not rows:
        label = headline.label.replace("{}", "…")
        rows.append([text(label), f"{_NOT_RECORDED} ({code(headline.value)})", "—", "—"])
    return rows


# ---------------------------------------------------------------------------------------------------------------
# the pages

def _chapter_title(book_root: Path, chapter: ChapterMetrics) -> str:
    """The executed notebook's own title when the book holds it, else the chapter's short title."""
    notebook = book_root / _CHAPTERS_DIR / f"{chapter.chapter}.ipynb"
    if notebook.is_file():
        try:
            import nbformat

            nb = nbformat.read(notebook, as_version=4)
            for cell in nb.cells:
                if cell.cell_type == "markdown":
                    first = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
                    if first.startswith("# "):
                        return first[2:].strip()
                    break
        except Exception:  # a notebook the book cannot read fails the build itself, with its own message
            pass
    return chapter.title


def _chapter_link(book_root: Path, chapter: ChapterMetrics, title: str) -> str:
    if (book_root / _CHAPTERS_DIR / f"{chapter.chapter}.ipynb").is_file():
        return f"{{doc}}`{_role_text(title)} <chapters/{chapter.chapter}>`"
    return text(title)


def _role_text(title: str) -> str:
    return title.replace("`", "'").replace("<", "‹").replace(">", "›")


def _claims_label(stem: str) -> str:
    return "claims-" + re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")


def _claims_count(result: ChapterResult) -> str:
    if result.claims is None:
        return "no claims recorded"
    n = len(result.claims)
    return f"{result.n_hold} of {n} hold, {result.n_fail} do not hold"


def _run_line(run_dir: Path) -> str:
    config_path = run_dir / "config.json"
    parts = [f"run {code(run_dir.name)}"]
    try:
        config = read_json(config_path) if config_path.is_file() else {}
    except (OSError, ValueError):
        config = {}
    if isinstance(config, dict):
        for key in ("profile", "seed"):
            if key in config:
                parts.append(f"{key} {code(config[key])}")
    return ", ".join(parts)


def _totals(results: Sequence[ChapterResult]) -> tuple[int, int, int]:
    claims = [c for r in results for c in r.claims or []]
    held = sum(c.holds for c in claims)
    return len(claims), held, len(claims) - held


def results_page(run_dir: Path, book_root: Path, chapters: Sequence[ChapterResult],
                 others: Sequence[ChapterResult]) -> str:
    """The Markdown of ``book/results.md``."""
    n_ran = sum(r.ran for r in chapters)
    n_claims, held, failed = _totals(list(chapters) + list(others))
    lines = [
        "# Results overview", "",
        f"Generated when the book was built, from {_run_line(run_dir)}: every number on this page is read from "
        f"the run's `metrics/*.json`. {n_ran} of {len(CHAPTERS)} chapters wrote their metrics. "
        f"Of {n_claims} claims, {held} hold and {failed} do not hold ({{doc}}`the claims table <claims>`).", "",
        "Each value stands beside the chance level, null or reference that the metrics record for it, and "
        "beside its interval where one was measured; — means the metrics record none.", "",
    ]
    summary = []
    for spec, result in zip(CHAPTERS, chapters):
        title = _chapter_title(book_root, spec)
        status = ("not run" if not result.path.is_file() else
                  f"unreadable: {text(result.problem)}" if not result.ran else _claims_count(result))
        summary.append([text(title), code(f"metrics/{spec.stem}.json"), status])
    lines += _table(["chapter", "metrics", "claims"], summary) + [""]

    for spec, result in zip(CHAPTERS, chapters):
        title = _chapter_title(book_root, spec)
        lines += [f"## {text(title)}", ""]
        if not result.path.is_file():
            lines += [f"Not run: this run has no `metrics/{spec.stem}.json`, so there are no numbers for this "
                      "chapter.", ""]
            continue
        if not result.ran:
            lines += [f"`metrics/{spec.stem}.json` {text(result.problem)}.", ""]
            continue
        lines += [f"Chapter: {_chapter_link(book_root, spec, title)}. Metrics: `metrics/{spec.stem}.json`. "
                  f"Claims: {_claims_count(result)} ({{ref}}`the chapter's claims <{_claims_label(spec.stem)}>`).",
                  ""]
        if result.problem:
            lines += [f"Its claims could not be read: {text(result.problem)}.", ""]
        rows = [row for h in spec.headlines for row in headline_rows(h, result.metrics, result.claims)]
        if rows:
            lines += _table(["quantity", "value", "chance / null", "interval"], rows) + [""]
    return "\n".join(lines).rstrip() + "\n"


def _claim_row(claim: Claim, stored: Any) -> list[str]:
    null = "—"
    if claim.null is not None:
        null = fmt(claim.null) + (f" ({text(claim.null_name)})" if claim.null_name else "")
    interval = fmt_interval(*claim.interval, claim.units) if claim.interval else "—"
    holds = "holds" if claim.holds else "**does not hold**"
    if stored is not None and stored != claim.holds:
        holds += " (the stored verdict disagrees)"
    return [code(claim.id), text(claim.statement), fmt(claim.value), text(claim.bound), null, interval, holds]


def _claims_section(title: str, result: ChapterResult) -> list[str]:
    lines = [f"({_claims_label(result.stem)})=", f"## {text(title)}", ""]
    if not result.path.is_file():
        return lines + [f"Not run: this run has no `metrics/{result.stem}.json`, so this chapter has no claims "
                        "here.", ""]
    if result.problem:
        lines += [f"`metrics/{result.stem}.json`: {text(result.problem)}.", ""]
    if result.claims is None:
        return lines + ([] if result.problem else [f"`metrics/{result.stem}.json` records no claims.", ""])
    lines += [f"`metrics/{result.stem}.json`: {len(result.claims)} claims; {result.n_hold} hold, "
              f"{result.n_fail} do not hold.", ""]
    if result.claims:
        stored = result.stored_holds or [None] * len(result.claims)
        rows = [_claim_row(c, s) for c, s in zip(result.claims, stored)]
        lines += _table(["claim", "statement", "value", "bound", "null", "interval", "verdict"], rows) + [""]
    return lines


def claims_page(run_dir: Path, book_root: Path, chapters: Sequence[ChapterResult],
                others: Sequence[ChapterResult]) -> str:
    """The Markdown of ``book/claims.md``."""
    n_claims, held, failed = _totals(list(chapters) + list(others))
    not_run = [spec.stem for spec, r in zip(CHAPTERS, chapters) if not r.path.is_file()]
    lines = [
        "# The claims table", "",
        f"Every claim the chapters of {_run_line(run_dir)} wrote into their metrics, as `make claims` checks them: "
        "the statement, the measured value, the bound it must meet, the null (chance level, or what a predictor "
        "that ignores the signal reaches), the interval over the independent units where one was measured, and "
        "the verdict, recomputed here from the value and its bound (`gbhet_lib.claims`).", "",
        f"**{n_claims} claims: {held} hold, {failed} do not hold.**"
        + (" Not run: " + ", ".join(code(f"metrics/{s}.json") for s in not_run) + "." if not_run else ""), "",
    ]
    for spec, result in zip(CHAPTERS, chapters):
        lines += _claims_section(_chapter_title(book_root, spec), result)
    for result in others:
        lines += _claims_section(f"Other metrics: {result.stem}", result)
    return "\n".join(lines).rstrip() + "\n"


def write_results_pages(run_dir: Path, book_root: Path) -> list[Path]:
    """Write ``book/results.md`` and ``book/claims.md`` of the book at ``book_root`` from ``run_dir``'s metrics.

    Call it after the chapters are copied into the book (:func:`gbhet_lib.book.copy_chapters`): a chapter's title
    and link come from its executed notebook there. A run without a ``metrics/`` folder gives pages that say every
    chapter was not run.

    Returns:
        The two pages written.
    """
    run_dir, book_root = Path(run_dir), Path(book_root)
    chapters, others = read_run(run_dir)
    pages = {RESULTS_PAGE: results_page(run_dir, book_root, chapters, others),
             CLAIMS_PAGE: claims_page(run_dir, book_root, chapters, others)}
    written = []
    for relative, markdown in pages.items():
        path = book_root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        written.append(write_text_atomic(path, markdown))
    return written
