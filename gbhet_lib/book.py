"""Render the Jupyter Book from one run's executed notebooks.

The book root is the repository root (``_config.yml``, ``_toc.yml``, ``book/``). Chapters listed in ``_toc.yml``
under ``book/chapters/`` are not kept in git: :func:`build_book` copies them from ``<run_dir>/notebooks/``, where
``gbhet run`` left the executed notebook ``NN_name.ipynb`` and its completion record ``NN_name.done.json``, and
then runs Jupyter Book 1.0 (Sphinx; offline) with execution switched off, so the book shows exactly what the run
computed. By default every Sphinx warning is an error (``-W -n --keep-going``, all pages re-read).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import nbformat
import yaml

from .io import atomic_path

#: folder (relative to the book root) whose pages are filled from a run's executed notebooks
CHAPTERS_DIR = Path("book") / "chapters"
#: the HTML entry page, relative to the book root
INDEX_HTML = Path("_build") / "html" / "index.html"
#: where the full log of the last build is kept, relative to the book root
BUILD_LOG = Path("_build") / "book-build.log"
#: how much of the build log a failure quotes: its warning/error lines, then its last lines
LOG_PROBLEM_LINES = 40
LOG_TAIL_LINES = 25

# jupyter_book has no ``__main__``; run its click entry point with this interpreter (same environment).
_JUPYTER_BOOK = "import sys; from jupyter_book.cli.main import main; sys.exit(main())"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_PROBLEM = re.compile(r"WARNING|ERROR|CRITICAL|SEVERE|Traceback|Error:")


def toc_files(toc_path: Path) -> list[str]:
    """Every document path named in a jb-book ``_toc.yml`` (root first, then in reading order)."""
    try:
        toc = yaml.safe_load(Path(toc_path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{toc_path}: no table of contents. Build from the repository root, "
                                "or pass book_root= the folder that holds _toc.yml and _config.yml.") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{toc_path}: not valid YAML ({err}).") from err
    if not isinstance(toc, dict) or "root" not in toc:
        raise ValueError(f"{toc_path}: expected a jb-book table of contents with a 'root:' entry.")
    return [str(toc["root"])] + list(_walk_files(toc))


def _walk_files(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if "file" in node:
            yield str(node["file"])
        for key in ("parts", "chapters", "sections"):
            yield from _walk_files(node.get(key))
    elif isinstance(node, list):
        for item in node:
            yield from _walk_files(item)


def chapter_names(toc_path: Path) -> list[str]:
    """Stems of the ``_toc.yml`` entries under ``book/chapters/`` (e.g. ``["01_data"]``), in book order."""
    names = []
    for entry in toc_files(toc_path):
        path = Path(entry)
        if path.parent == CHAPTERS_DIR:
            names.append(path.stem if path.suffix in (".ipynb", ".md") else path.name)
    return names


def copy_chapters(run_dir: Path, book_root: Path = Path(".")) -> list[Path]:
    """Copy the executed notebook of every chapter in ``_toc.yml`` from ``run_dir`` into ``book/chapters/``.

    Every chapter is checked before anything is copied; a missing executed notebook or completion record raises
    :class:`FileNotFoundError` naming each missing file and the ``gbhet run`` command that makes it. Notebooks
    left in ``book/chapters/`` by earlier builds that the book no longer lists are removed. Figures in
    ``run_dir/figures`` are copied to ``book/chapters/figures`` only when a chapter's Markdown refers to
    ``figures/`` (executed notebooks normally embed their figures).

    Returns:
        The copied notebooks, in book order.
    """
    run_dir, book_root = Path(run_dir), Path(book_root)
    names = chapter_names(book_root / "_toc.yml")
    notebooks = run_dir / "notebooks"
    problems = []
    for name in names:
        executed, record = notebooks / f"{name}.ipynb", notebooks / f"{name}.done.json"
        command = f"`gbhet run --run-dir {run_dir} --only {name}`"
        if not executed.is_file():
            problems.append(f"executed notebook {executed} is missing: run {command} first")
        elif not record.is_file():
            failed = notebooks / f"{name}.failed.ipynb"
            why = f" (it failed: see {failed})" if failed.is_file() else ""
            problems.append(f"{record} is missing, so stage {name} did not finish{why}: run {command} first")
    if problems:
        raise FileNotFoundError("cannot build the book from run directory "
                                f"{run_dir}:\n  " + "\n  ".join(problems))

    target = book_root / CHAPTERS_DIR
    target.mkdir(parents=True, exist_ok=True)
    for stale in target.glob("*.ipynb"):
        if stale.stem not in names:
            stale.unlink()
    copied, wants_figures = [], False
    for name in names:
        source, dest = notebooks / f"{name}.ipynb", target / f"{name}.ipynb"
        with atomic_path(dest) as tmp:
            shutil.copyfile(source, tmp)
        copied.append(dest)
        wants_figures = wants_figures or _refers_to_figures(dest)
    if wants_figures and (run_dir / "figures").is_dir():
        shutil.copytree(run_dir / "figures", target / "figures", dirs_exist_ok=True)
    return copied


def _refers_to_figures(notebook: Path) -> bool:
    nb = nbformat.read(notebook, as_version=4)
    return any(cell.cell_type == "markdown" and "figures/" in cell.source for cell in nb.cells)


def build_book(run_dir: Path, book_root: Path = Path("."), warnings_as_errors: bool = True) -> Path:
    """Copy the run's executed chapters into the book and render it to ``<book_root>/_build/html``.

    Args:
        run_dir: a run directory written by ``gbhet run`` (its ``notebooks/`` holds the executed chapters).
        book_root: the folder with ``_config.yml`` and ``_toc.yml`` (the repository root).
        warnings_as_errors: fail on any Sphinx warning (``-W -n --keep-going``: all warnings are reported).

    Returns:
        The path of ``_build/html/index.html``.

    Raises:
        FileNotFoundError: a chapter's executed notebook or completion record is missing.
        RuntimeError: the build failed; the message quotes the end of the build log.
    """
    book_root = Path(book_root).resolve()
    for required in ("_config.yml", "_toc.yml"):
        if not (book_root / required).is_file():
            raise FileNotFoundError(f"{book_root / required} not found: book_root must be the repository root.")
    copy_chapters(Path(run_dir), book_root)

    command = [sys.executable, "-c", _JUPYTER_BOOK, "build", str(book_root), "--path-output", str(book_root),
               "--all", "-n"]
    if warnings_as_errors:
        command += ["-W", "--keep-going"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1",
           "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    started = time.monotonic()
    proc = subprocess.run(command, cwd=book_root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, check=False)
    log_path = book_root / BUILD_LOG
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = _ANSI.sub("", proc.stdout)
    log_path.write_text(log, encoding="utf-8")
    index = book_root / INDEX_HTML
    if proc.returncode != 0 or not index.is_file():
        lines = log.splitlines()
        problems = [line for line in lines if _PROBLEM.search(line)][:LOG_PROBLEM_LINES]
        found = ("warnings and errors:\n" + "\n".join(problems) + "\n") if problems else ""
        tail = "\n".join(lines[-LOG_TAIL_LINES:])
        raise RuntimeError(f"jupyter-book build failed (exit {proc.returncode}) after "
                           f"{time.monotonic() - started:.0f} s; full log: {log_path}\n{found}"
                           f"end of the log:\n{tail}")
    return index
