"""Render the Jupyter Book as one PDF (Sphinx's LaTeX builder, xelatex) from the same run as the HTML.

:func:`build_pdf` prepares the book's pages with :func:`gbhet_lib.book.prepare_sources`, as
:func:`gbhet_lib.book.build_book` does (the run's chapters, the results and claims pages), runs Jupyter Book's Sphinx build with the ``latex`` builder
and a *PDF overlay* of ``_config.yml`` (the book's own configuration plus the few settings only LaTeX needs,
:data:`PDF_SPHINX_CONFIG` and :data:`PDF_EXTENSIONS`, written to ``<out>/_config.pdf.yml`` so the HTML build never
sees them), then runs latexmk through the Makefile Sphinx writes (``make all-pdf``).

LaTeX comes from Debian's packages (:data:`DEBIAN_PACKAGES`, installed by ``make pdf`` when missing): xelatex with
the FreeFont OpenType fonts, which cover the book's Unicode (µ, ≥, σ, Greek, Š). The SVG figure of the
introduction is converted to PNG by ``sphinx.ext.imgconverter`` (ImageMagick with ``rsvg-convert``).
``sphinx_jupyterbook_latex`` is switched off in ``_config.yml`` (``latex: use_jupyterbook_latex: false``): its
document class needs ``bbm.sty``, which only Debian's 1.4 GB ``texlive-fonts-extra`` has.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from .book import build_environment, log_problems, prepare_sources
from .errors import GbhetError

#: Debian packages that build the PDF (xelatex, the LaTeX packages Sphinx loads, latexmk, the FreeFont fonts that
#: Sphinx's xelatex setup names, SVG conversion) and check it (poppler-utils: pdfinfo, pdftotext, pdftoppm)
DEBIAN_PACKAGES = ("texlive-xetex", "texlive-latex-recommended", "texlive-latex-extra", "texlive-fonts-recommended",
                   "latexmk", "fonts-freefont-otf", "imagemagick", "librsvg2-bin", "poppler-utils")
#: programs the build runs; a missing one is named with the packages above
LATEX_PROGRAMS = ("xelatex", "latexmk", "make", "convert", "rsvg-convert")
#: Sphinx settings of the PDF build only (added to ``sphinx: config:`` in the overlay)
PDF_SPHINX_CONFIG: dict[str, Any] = {
    # makeindex (in texlive-binaries) instead of xindy: the book has no index entries worth a 40 MB package
    "latex_use_xindy": False,
    "latex_elements": {
        "papersize": "a4paper",
        "pointsize": "10pt",
        # one chapter may start on any page: no blank pages between chapters
        "extraclassoptions": "openany,oneside",
        # citations (\hyperlink) and roles in figure captions are moved into the list of figures: keep them robust
        # (sphinxcontrib-bibtex issue 276, jupyter-book issue 1621). No LaTeX numbers on chapters and sections: the
        # chapters number themselves in their titles ("1. The data"), as the HTML shows them
        "preamble": ("\\usepackage{etoolbox}\n\\AtBeginDocument{\\robustify\\hyperlink\\robustify\\DUrole}\n"
                     "\\setcounter{secnumdepth}{-1}\n"),
    },
}
#: Sphinx extensions of the PDF build only: SVG figures become PNG (the HTML shows SVG as it is)
PDF_EXTENSIONS = ("sphinx.ext.imgconverter",)
#: the build log and the overlay configuration, in the output folder
PDF_BUILD_LOG = "pdf-build.log"
PDF_CONFIG = "_config.pdf.yml"
#: how much of a failed build's log the error quotes
LOG_TAIL_LINES, LATEX_ERRORS = 25, 10
#: Jupyter Book's Sphinx build with the LaTeX builder: argv = book root, output folder, configuration file
_SPHINX_LATEX = """
import sys
from pathlib import Path
from jupyter_book.sphinx import build_sphinx
root, latex, config = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
result = build_sphinx(root, latex, use_external_toc=True, noconfig=True, path_config=config,
                      confoverrides={"external_toc_path": (root / "_toc.yml").as_posix(),
                                     "latex_individualpages": False},
                      builder="latex", freshenv=True)
if isinstance(result, BaseException):
    print(f"ERROR: {type(result).__name__}: {result}")
sys.exit(result if isinstance(result, int) else 1)
"""
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_PROBLEM = re.compile(r"WARNING|ERROR|CRITICAL|SEVERE|Traceback|Error:|^!|Latexmk: Errors")
#: a glyph the font lacks, as xelatex reports it in its log
_MISSING_GLYPH = re.compile(r"Missing character: There is no (.+?) in font ([^!]+)!")


class LatexMissingError(GbhetError):
    """A program the PDF build needs (xelatex, latexmk, ...) is not installed."""


def missing_programs(programs: tuple[str, ...] = LATEX_PROGRAMS) -> list[str]:
    """The programs of ``programs`` that are not on ``PATH``."""
    return [name for name in programs if shutil.which(name) is None]


def require_latex() -> None:
    """Raise :class:`LatexMissingError` naming every missing program and the Debian packages that provide them."""
    missing = missing_programs()
    if missing:
        raise LatexMissingError(f"the PDF build needs {', '.join(missing)}, which "
                                f"{'is' if len(missing) == 1 else 'are'} not installed: run `make pdf` (it installs "
                                f"them as root) or `apt-get install --no-install-recommends {' '.join(DEBIAN_PACKAGES)}`")


def pdf_config(book_root: Path) -> dict[str, Any]:
    """The book's ``_config.yml`` with the PDF-only settings added (the file itself is not changed)."""
    config = yaml.safe_load((Path(book_root) / "_config.yml").read_text(encoding="utf-8")) or {}
    sphinx = config.setdefault("sphinx", {}) or {}
    config["sphinx"] = sphinx
    extensions = list(sphinx.get("extra_extensions") or [])
    sphinx["extra_extensions"] = extensions + [name for name in PDF_EXTENSIONS if name not in extensions]
    settings = dict(sphinx.get("config") or {})
    for key, value in PDF_SPHINX_CONFIG.items():
        settings[key] = {**settings.get(key, {}), **value} if isinstance(value, dict) else value
    sphinx["config"] = settings
    return config


def pdf_name(book_root: Path) -> str:
    """The PDF's file name: ``latex: latex_documents: targetname`` of ``_config.yml`` with ``.pdf`` (``book.pdf``
    when unset, as jupyter-book names it)."""
    config = yaml.safe_load((Path(book_root) / "_config.yml").read_text(encoding="utf-8")) or {}
    target = ((config.get("latex") or {}).get("latex_documents") or {}).get("targetname") or "book.tex"
    return Path(target).with_suffix(".pdf").name


def missing_glyphs(log_text: str) -> list[str]:
    """Each distinct ``character (font)`` that xelatex's log says the font lacks (it prints nothing there)."""
    found = {f"{char} ({font.strip()})" for char, font in _MISSING_GLYPH.findall(log_text)}
    return sorted(found)


def build_pdf(run_dir: Path, book_root: Path = Path("."), out: Path | None = None) -> Path:
    """Prepare the book's pages from the run and render the whole book as one PDF.

    Args:
        run_dir: a run directory written by ``gbhet run`` (the same one the HTML is built from).
        book_root: the folder with ``_config.yml`` and ``_toc.yml`` (the repository root); its ``book/chapters/``
            and results pages are written from the run, as for the HTML.
        out: the build folder: the PDF is ``<out>/latex/<targetname>.pdf``, beside the LaTeX sources, and the log
            is ``<out>/pdf-build.log`` (default ``<book_root>/_build``, beside ``_build/html``).

    Returns:
        The path of the PDF.

    Raises:
        LatexMissingError: xelatex, latexmk or another program of the build is not installed.
        FileNotFoundError: a chapter's executed notebook or completion record is missing.
        RuntimeError: the build failed; the message quotes the log's problems and its end.
    """
    require_latex()
    book_root = prepare_sources(run_dir, book_root)
    out = Path(out).resolve() if out is not None else book_root / "_build"
    out.mkdir(parents=True, exist_ok=True)
    config_path = out / PDF_CONFIG
    config_path.write_text(yaml.safe_dump(pdf_config(book_root), sort_keys=False, allow_unicode=True),
                           encoding="utf-8")
    latex = out / "latex"
    pdf = latex / pdf_name(book_root)
    pdf.unlink(missing_ok=True)  # a PDF left by an earlier build must not pass for this one
    started = time.monotonic()
    log = _run([sys.executable, "-c", _SPHINX_LATEX, str(book_root), str(latex), str(config_path)], book_root)
    if pdf.with_suffix(".tex").is_file():
        log += _run(["make", "all-pdf", "LATEXMKOPTS=-interaction=nonstopmode -halt-on-error"], latex)
    (out / PDF_BUILD_LOG).write_text(log, encoding="utf-8")
    if not pdf.is_file() or not log.rstrip().endswith("exit status 0]"):
        raise RuntimeError(_failure(log, pdf, out / PDF_BUILD_LOG, time.monotonic() - started))
    return pdf


def _run(command: list[str], cwd: Path) -> str:
    """Run one step of the build with no stdin (LaTeX stops on an error instead of waiting for an answer) and
    return its output without colours, ending with its exit status."""
    proc = subprocess.run(command, cwd=cwd, env=build_environment(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, errors="replace", check=False)
    return _ANSI.sub("", proc.stdout) + f"\n[{command[0]}: exit status {proc.returncode}]\n"


def _failure(log: str, pdf: Path, log_path: Path, seconds: float) -> str:
    """The message of a failed build: its Sphinx and LaTeX problems, then the end of the log."""
    lines = log.splitlines()
    found = log_problems(log, _PROBLEM)
    latex_log = pdf.with_suffix(".log")
    if latex_log.is_file():
        latex_lines = latex_log.read_text(encoding="utf-8", errors="replace").splitlines()
        errors = [" ".join(latex_lines[i:i + 3]) for i, line in enumerate(latex_lines) if line.startswith("!")]
        if errors:
            found += f"LaTeX errors ({latex_log}):\n" + "\n".join(errors[:LATEX_ERRORS]) + "\n"
    tail = "\n".join(lines[-LOG_TAIL_LINES:])
    return f"the PDF build failed after {seconds:.0f} s; full log: {log_path}\n{found}end of the log:\n{tail}"
