"""gbhet_lib.book_pdf: the book as one PDF (Sphinx's LaTeX builder, xelatex), checked by rendering its pages.

The build test renders the real book's prose pages with one hand-made "executed" chapter per chapter of _toc.yml
(titles taken from notebooks/, with a table, a PNG figure, math and Unicode), so no kernel is started. It needs
Debian's LaTeX and poppler-utils (``make pdf`` installs them): without them it is skipped, or fails when
``GBHET_REQUIRE_LATEX=1``.
"""
from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import unicodedata
from pathlib import Path

import nbformat
import numpy as np
import pytest
import yaml
from PIL import Image

from gbhet_lib import book_pdf
from gbhet_lib.book import chapter_names
from gbhet_lib.book_pdf import (PDF_EXTENSIONS, LatexMissingError, build_pdf, missing_glyphs, pdf_config, pdf_name,
                                require_latex)
from gbhet_lib.cli import main

REPO = Path(__file__).resolve().parents[1]
ENV_REQUIRE_LATEX = "GBHET_REQUIRE_LATEX"
#: poppler-utils programs the checks use
POPPLER = ("pdfinfo", "pdftotext", "pdftoppm")
UNICODE_LINE = "Tiles of 0.5 µm/px, r ≥ 0.3, σ = 1.2, α β γ Δ Ω, Holm–Šidák."
#: a rendered page whose grey levels vary less than this is blank
BLANK_STD = 2.0


def _latex_or_skip() -> None:
    """Skip when LaTeX or poppler-utils is missing; fail instead when GBHET_REQUIRE_LATEX=1."""
    missing = book_pdf.missing_programs() + [p for p in POPPLER if shutil.which(p) is None]
    if not missing:
        return
    message = f"the PDF build needs {', '.join(missing)} (Debian's LaTeX and poppler-utils; `make pdf` installs them)"
    if os.environ.get(ENV_REQUIRE_LATEX) == "1":
        pytest.fail(f"{message}, and {ENV_REQUIRE_LATEX}=1 makes that an error", pytrace=False)
    pytest.skip(message)


def chapter_titles() -> dict[str, str]:
    """Each chapter's title (its first Markdown heading in notebooks/), by chapter name, in book order."""
    titles = {}
    for name in chapter_names(REPO / "_toc.yml"):
        nb = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
        heading = next(c.source for c in nb.cells if c.cell_type == "markdown" and c.source.startswith("# "))
        titles[name] = heading.splitlines()[0][2:].strip()
    return titles


def png_bytes(seed: int) -> bytes:
    """A 96×64 PNG with a gradient and noise, so a rendered page that shows it is not blank."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, 96)[None, :] * np.ones((64, 1))
    pixels = np.clip(ramp + rng.normal(0, 30, (64, 96)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def executed_chapter(title: str, seed: int) -> nbformat.NotebookNode:
    """A notebook as papermill leaves it: a title, math and Unicode, a parameters cell, a table and a figure."""
    markdown = nbformat.v4.new_markdown_cell(
        f"# {title}\n\n{UNICODE_LINE}\n\nInline $\\mu_{{gs}} \\geq 0$ and display math:\n\n"
        "$$\\hat\\sigma^2 = \\frac{1}{n-1}\\sum_i (x_i - \\bar x)^2$$\n")
    params = nbformat.v4.new_code_cell('profile = "demo"\nrun_dir = "runs/demo"\n', execution_count=1)
    params.metadata["tags"] = ["parameters"]
    table = nbformat.v4.new_code_cell("table", execution_count=2, outputs=[nbformat.v4.new_output(
        "execute_result", execution_count=2,
        data={"text/plain": "   metric  value\n0  AUROC    0.81\n1  σ        1.20",
              "text/html": "<table><tr><th>metric</th><th>value</th></tr><tr><td>AUROC</td><td>0.81</td></tr></table>"})])
    figure = nbformat.v4.new_code_cell("plot()", execution_count=3, outputs=[nbformat.v4.new_output(
        "display_data", data={"image/png": base64.b64encode(png_bytes(seed)).decode(),
                              "text/plain": "<Figure size 300x200 with 1 Axes>"})])
    return nbformat.v4.new_notebook(cells=[markdown, params, table, figure], metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "papermill": {"parameters": {"run_dir": "runs/demo"}, "status": "completed"}})


def make_run(run_dir: Path, titles: dict[str, str]) -> Path:
    """A fake finished run: an executed notebook and a completion record per chapter."""
    notebooks = run_dir / "notebooks"
    notebooks.mkdir(parents=True)
    for k, (name, title) in enumerate(titles.items()):
        nbformat.write(executed_chapter(title, k), notebooks / f"{name}.ipynb")
        (notebooks / f"{name}.done.json").write_text(json.dumps({"parameters": {"seed": 0}}))
    return run_dir


def copy_book(root: Path) -> Path:
    """The real book's configuration, table of contents and prose pages, without chapters."""
    root.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "book", root / "book", ignore=shutil.ignore_patterns("chapters", "*.ipynb_checkpoints"))
    return root


def normalised(text: str) -> str:
    """Text compared without case, whitespace (line breaks), compatibility forms (µ → μ) or curly quotes."""
    text = unicodedata.normalize("NFKC", text).replace("\u2019", "'").replace("\u2018", "'")
    return re.sub(r"\s+", "", text).lower()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The PDF of the real book with fake chapters, its text and the grey-level spread of each page."""
    _latex_or_skip()
    base = tmp_path_factory.mktemp("pdf")
    titles = chapter_titles()
    pdf = build_pdf(make_run(base / "run", titles), copy_book(base / "root"), out=base / "out")
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    pages = int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))
    text = subprocess.run(["pdftotext", "-layout", "-enc", "UTF-8", str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout
    subprocess.run(["pdftoppm", "-r", "24", "-gray", "-png", str(pdf), str(base / "page")], check=True)
    spreads = [float(np.asarray(Image.open(p)).std()) for p in sorted(base.glob("page-*.png"))]
    return {"pdf": pdf, "pages": pages, "text": text, "spreads": spreads, "titles": titles, "out": base / "out"}


@pytest.mark.timeout(600)
def test_pdf_has_a_page_per_chapter_at_least_and_no_blank_page(built: dict) -> None:
    assert built["pdf"].name == "gbhet.pdf" and built["pdf"].parent == built["out"] / "latex"
    assert built["pages"] >= len(built["titles"]) == len(chapter_names(REPO / "_toc.yml"))
    assert len(built["spreads"]) == built["pages"]
    blank = [k + 1 for k, spread in enumerate(built["spreads"]) if spread < BLANK_STD]
    assert not blank, f"blank pages {blank} (grey-level std < {BLANK_STD})"


@pytest.mark.timeout(600)
def test_pdf_text_holds_every_chapter_title_and_the_unicode(built: dict) -> None:
    text = normalised(built["text"])
    missing = [title for title in built["titles"].values() if normalised(title) not in text]
    assert not missing, f"chapter titles not in the PDF's text: {missing}"
    assert normalised("0.5 µm/px, r ≥ 0.3, σ = 1.2, α β γ Δ Ω, Holm–Šidák") in text
    assert normalised("AUROC 0.81") in text  # the table, as text


@pytest.mark.timeout(600)
def test_pdf_build_lacks_no_glyph_and_keeps_its_log(built: dict) -> None:
    latex_log = built["pdf"].with_suffix(".log").read_text(encoding="utf-8", errors="replace")
    assert missing_glyphs(latex_log) == []
    assert "xdvipdfmx" in latex_log or "XeTeX" in latex_log  # xelatex made it
    assert "exit status 0" in (built["out"] / book_pdf.PDF_BUILD_LOG).read_text(encoding="utf-8")


def test_missing_glyphs_are_read_from_the_log() -> None:
    log = ("Missing character: There is no ✓ (U+2713) in font FreeSerif/OT:script=latn;language=dflt;!\n"
           "Missing character: There is no ✓ (U+2713) in font FreeSerif/OT:script=latn;language=dflt;!\n"
           "Overfull \\hbox (3.0pt too wide)\n")
    assert missing_glyphs(log) == ["✓ (U+2713) (FreeSerif/OT:script=latn;language=dflt;)"]
    assert missing_glyphs("Overfull \\hbox") == []


def test_pdf_config_adds_the_latex_settings_and_keeps_the_book_config(tmp_path: Path) -> None:
    root = copy_book(tmp_path / "root")
    before = (root / "_config.yml").read_text()
    config = pdf_config(root)
    assert (root / "_config.yml").read_text() == before  # the HTML's configuration is not changed
    book = yaml.safe_load(before)
    assert config["title"] == book["title"] and config["latex"]["latex_engine"] == "xelatex"
    assert config["latex"]["use_jupyterbook_latex"] is False  # its class needs bbm.sty (texlive-fonts-extra)
    for extension in PDF_EXTENSIONS:
        assert extension in config["sphinx"]["extra_extensions"]
    settings = config["sphinx"]["config"]
    for key, value in (book["sphinx"].get("config") or {}).items():
        if key != "latex_elements":
            assert settings[key] == value
    assert settings["latex_use_xindy"] is False
    assert "\\robustify\\hyperlink" in settings["latex_elements"]["preamble"]
    assert pdf_name(root) == "gbhet.pdf"


def test_pdf_config_merges_latex_elements_the_book_sets(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "_config.yml").write_text(yaml.safe_dump({"title": "t", "sphinx": {
        "extra_extensions": ["sphinx.ext.imgconverter", "x.ext"],
        "config": {"latex_elements": {"fontpkg": "\\usepackage{x}"}, "nb_merge_streams": True}}}))
    config = pdf_config(root)
    assert config["sphinx"]["extra_extensions"] == ["sphinx.ext.imgconverter", "x.ext"]  # no duplicate
    elements = config["sphinx"]["config"]["latex_elements"]
    assert elements["fontpkg"] == "\\usepackage{x}" and "preamble" in elements
    assert pdf_name(root) == "book.pdf"  # jupyter-book's name when latex_documents sets none


def test_missing_latex_is_named_with_its_packages(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(book_pdf.shutil, "which", lambda name: None if name in ("xelatex", "latexmk") else "/bin/x")
    with pytest.raises(LatexMissingError) as err:
        require_latex()
    message = str(err.value)
    assert "xelatex, latexmk" in message and "texlive-xetex" in message and "make pdf" in message
    root = copy_book(tmp_path / "root")
    with pytest.raises(LatexMissingError):  # checked before anything is copied or built
        build_pdf(tmp_path / "no-run", root, out=tmp_path / "out")
    assert not (root / "book" / "chapters").exists() and not (tmp_path / "out").exists()


def test_missing_book_root_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="_config.yml not found"):
        build_pdf(tmp_path / "run", tmp_path)


def test_cli_pdf_calls_build_pdf(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    calls = []

    def fake_build(run_dir: Path, book_root: Path, out: Path | None) -> Path:
        calls.append((run_dir, book_root, out))
        return tmp_path / "gbhet.pdf"

    monkeypatch.setattr(book_pdf, "build_pdf", fake_build)
    assert main(["pdf", "--run-dir", "runs/x", "--out", str(tmp_path)]) == 0
    assert calls == [(Path("runs/x"), Path("."), tmp_path)]
    assert "gbhet pdf:" in capsys.readouterr().err


def test_cli_pdf_without_latex_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(book_pdf.shutil, "which", lambda name: None)
    root = copy_book(tmp_path / "root")
    assert main(["pdf", "--run-dir", str(tmp_path / "run"), "--book-root", str(root)]) == 1  # failed work
    err = capsys.readouterr().err
    assert err.startswith("gbhet pdf: error: the PDF build needs xelatex") and len(err.splitlines()) == 1
