"""Render the Jupyter Book from one run's executed notebooks.

The book root is the repository root (``_config.yml``, ``_toc.yml``, ``book/``). Chapters listed in ``_toc.yml``
under ``book/chapters/`` are not kept in git: :func:`build_book` copies them from ``<run_dir>/notebooks/``, where
``gbhet run`` left the executed notebook ``NN_name.ipynb`` and its completion record ``NN_name.done.json``, and
then runs Jupyter Book 1.0 (Sphinx; offline) with execution switched off, so the book shows exactly what the run
computed. By default every Sphinx warning is an error (``-W -n --keep-going``, all pages re-read).

The copy in ``book/chapters/`` is made for reading (:func:`prepare_chapter`); the executed notebook in the run
directory is never changed: papermill's injected-parameters cell is removed, the ``parameters`` cell folded whole,
every other code cell's source folded (its outputs shown), stderr warnings and repeated images dropped, the run's
machine paths replaced by ``RUN_DIR``/``CACHE_DIR``/``DATA_MIRROR``, each figure of a cell given its own numbered,
captioned figure, and a stamp of the run (profile, seed, config hash, commit, date) set under the title.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping

import nbformat
import yaml

from .book_results import write_results_pages
from .io import atomic_path

#: folder (relative to the book root) whose pages are filled from a run's executed notebooks
CHAPTERS_DIR = Path("book") / "chapters"
#: the default output folder of a build, relative to the book root (the HTML goes to its ``html/``)
BUILD_DIR = Path("_build")
#: the HTML entry page, relative to the book root
INDEX_HTML = BUILD_DIR / "html" / "index.html"
#: where the full log of the last build is kept, relative to the book root
BUILD_LOG = BUILD_DIR / "book-build.log"
#: how much of the build log a failure quotes: its warning/error lines, then its last lines
LOG_PROBLEM_LINES = 40
LOG_TAIL_LINES = 25

# Jupyter Book's own ``build`` command always writes to ``<path-output>/_build/html``; to write to any folder, run
# the function it calls (jupyter_book.sphinx.build_sphinx) with the same settings, in this interpreter's
# environment. argv: book root, HTML folder, "1" for warnings as errors.
_JUPYTER_BOOK = """
import sys
from pathlib import Path
from jupyter_book.sphinx import build_sphinx
root, html, strict = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "1"
result = build_sphinx(root, html, use_external_toc=True, noconfig=True, path_config=str(root / "_config.yml"),
                      confoverrides={"external_toc_path": (root / "_toc.yml").as_posix(),
                                     "latex_individualpages": False, "nitpicky": True},
                      builder="html", warningiserror=strict, keep_going=strict, freshenv=True)
if isinstance(result, BaseException):
    print(f"ERROR: {type(result).__name__}: {result}")
sys.exit(result if isinstance(result, int) else 1)
"""
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
    ``figures/`` (executed notebooks normally embed their figures). Each copy is made for reading by
    :func:`prepare_chapter`, stamped with :meth:`BuildProvenance.stamp`, with the figure captions of the
    chapter's notebook in ``<book_root>/notebooks/`` where the run's has none.

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
    provenance = BuildProvenance.of(run_dir, book_root)
    copied, wants_figures = [], False
    for name in names:
        source, dest = notebooks / f"{name}.ipynb", target / f"{name}.ipynb"
        nb = prepare_chapter(nbformat.read(source, as_version=4), provenance.stamp(name),
                             _source_notebook(book_root / "notebooks" / f"{name}.ipynb"), provenance.paths())
        with atomic_path(dest) as tmp:
            nbformat.write(nb, tmp)
        copied.append(dest)
        wants_figures = wants_figures or _refers_to_figures(dest)
    if wants_figures and (run_dir / "figures").is_dir():
        shutil.copytree(run_dir / "figures", target / "figures", dirs_exist_ok=True)
    return copied


# ------------------------------------------------------------------------------------- chapters for reading
#: MyST-NB cell tags (https://myst-nb.readthedocs.io/en/latest/render/hiding.html)
TAG_REMOVE_CELL, TAG_HIDE_CELL, TAG_HIDE_INPUT, TAG_REMOVE_INPUT = "remove-cell", "hide-cell", "hide-input", "remove-input"
#: tags by which the notebook already decides how a cell shows; such a cell is left as it is
_DISPLAY_TAGS = {TAG_REMOVE_CELL, TAG_HIDE_CELL, TAG_HIDE_INPUT, TAG_REMOVE_INPUT, "hide-output", "remove-output"}
#: tag on the stamp cell :func:`prepare_chapter` inserts
TAG_STAMP = "gbhet-run-stamp"
_IMAGE_TYPES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")
# the first line of a Python warning as ``warnings.showwarning`` prints it: ``path:line: SomeWarning: message``
_WARNING_LINE = re.compile(r"^\S.*:\d+: (?:[A-Za-z_][\w.]*\.)?[A-Za-z_]\w*Warning: ")


def strip_warnings(text: str) -> str:
    """``text`` (a stderr stream) without its Python warnings.

    A warning is a line ``path:lineno: XxxWarning: message`` and the indented source lines that follow it (as
    :func:`warnings.showwarning` prints them). Everything else — tracebacks, error messages, log lines, progress
    output — is kept, so a stream that held only warnings comes back empty and a real error stays visible.
    """
    kept, in_warning = [], False
    for line in text.splitlines(keepends=True):
        if _WARNING_LINE.match(line):
            in_warning = True
        elif not (in_warning and line[:1] in (" ", "\t")):
            in_warning = False
            kept.append(line)
    return "".join(kept)


def strip_stderr_warnings(nb: nbformat.NotebookNode) -> int:
    """Remove the Python warnings from every stderr stream output of ``nb`` (in place), dropping streams left
    empty; other stderr text (errors, tracebacks, logs) stays. Returns how many outputs were dropped.

    The warnings a library raises while a chapter runs (e.g. tqdm's ``TqdmWarning: IProgress not found`` when
    ``tqdm.auto`` is imported in a kernel without ipywidgets) say nothing about the study; the executed notebook
    in the run directory keeps them, the book's copy does not.
    """
    dropped = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for output in cell.get("outputs", []):
            if output.output_type == "stream" and output.get("name") == "stderr":
                output.text = strip_warnings(output.text if isinstance(output.text, str) else "".join(output.text))
                if not output.text.strip():
                    dropped += 1
                    continue
            outputs.append(output)
        cell.outputs = outputs
    return dropped


def tag_cells(nb: nbformat.NotebookNode) -> None:
    """Set MyST-NB display tags on the code cells of ``nb`` (in place).

    papermill's ``injected-parameters`` cell (the machine's paths) is removed from the page; the ``parameters``
    cell is folded whole (``hide-cell``); every other code cell gets ``hide-input``: outputs shown, source one
    click away. A cell that already carries a display tag (``remove-*``, ``hide-*``) keeps its own choice.
    """
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = list(cell.metadata.get("tags", []))
        if "injected-parameters" in tags:
            tags = [t for t in tags if t not in _DISPLAY_TAGS] + [TAG_REMOVE_CELL]
        elif _DISPLAY_TAGS.intersection(tags):
            continue
        else:
            tags.append(TAG_HIDE_CELL if "parameters" in tags else TAG_HIDE_INPUT)
        cell.metadata["tags"] = tags


def _is_image(output: nbformat.NotebookNode) -> bool:
    return output.output_type in ("display_data", "execute_result") and any(
        mime in output.get("data", {}) for mime in _IMAGE_TYPES)


def _is_rich(output: nbformat.NotebookNode) -> bool:
    return output.output_type in ("display_data", "execute_result")


def drop_repeated_images(nb: nbformat.NotebookNode) -> int:
    """Keep one copy of an image a cell shows twice (in place); returns how many were dropped.

    A cell that displays a figure (``display(fig)``, or ``fig`` as its last line) while the inline backend also
    shows the open figure at the end of the cell leaves the same image twice in the executed notebook.
    """
    dropped = 0
    for cell in nb.cells:
        seen, outputs = set(), []
        for output in cell.get("outputs", []):
            if _is_image(output):
                key = tuple(str(output.data[m]) for m in _IMAGE_TYPES if m in output.data)
                if key in seen:
                    dropped += 1
                    continue
                seen.add(key)
            outputs.append(output)
        if cell.cell_type == "code":
            cell.outputs = outputs
    return dropped


def figure_options(cell: nbformat.NotebookNode) -> list[dict[str, str]]:
    """The caption and name of each figure a cell draws, in order, from its metadata: ``gbhet.figures`` (a list,
    for a cell that draws several) or else MyST-NB's own ``mystnb.figure`` (one figure)."""
    listed = cell.metadata.get("gbhet", {}).get("figures")
    if listed:
        return [dict(options) for options in listed]
    single = cell.metadata.get("mystnb", {}).get("figure")
    return [dict(single)] if single else []


def adopt_figure_metadata(nb: nbformat.NotebookNode, source: nbformat.NotebookNode) -> int:
    """Give the code cells of ``nb`` (an executed chapter) the figure captions of the same cells (same cell id) in
    ``source`` (the chapter's notebook in ``notebooks/``), in place, where ``nb``'s cell has none; returns how many
    cells took them. A run executed before the captions were written is rendered with them; a caption the executed
    notebook carries itself wins."""
    by_id = {cell.get("id"): cell for cell in source.cells if cell.cell_type == "code" and figure_options(cell)}
    adopted = 0
    for cell in nb.cells:
        origin = by_id.get(cell.get("id")) if cell.cell_type == "code" else None
        if origin is None or figure_options(cell):
            continue
        for key, field in (("mystnb", "figure"), ("gbhet", "figures")):
            if field in origin.metadata.get(key, {}):
                cell.metadata.setdefault(key, {})[field] = copy.deepcopy(origin.metadata[key][field])
        adopted += 1
    return adopted


def split_figure_cells(nb: nbformat.NotebookNode) -> None:
    """Give each image output of a captioned cell its own figure (in place).

    MyST-NB wraps *every* rich output of a cell with ``mystnb.figure`` metadata in that figure, tables included,
    and repeats its name when the cell draws two images (a duplicate label). So a captioned cell whose rich
    outputs are not exactly one image is split, outputs in order, into the cell itself (its source and the
    outputs before its first image) and one input-less cell (``remove-input``) per following image or run of
    other outputs; each image cell gets
    its own caption and name from :func:`figure_options` (a name repeated with ``-2``, ``-3`` when there are
    more images than listed figures). The figure metadata of cells that draw no image is dropped.
    """
    cells = []
    for cell in nb.cells:
        options = figure_options(cell) if cell.cell_type == "code" else []
        rich = [o for o in cell.get("outputs", []) if _is_rich(o)]
        if not options or (len(rich) == 1 and _is_image(rich[0]) and len(options) == 1):
            cells.append(cell)
            continue
        cells.extend(_split_cell(cell, options))
    nb.cells = cells


def _split_cell(cell: nbformat.NotebookNode, options: list[dict[str, str]]) -> list[nbformat.NotebookNode]:
    """The pieces of one captioned cell (see :func:`split_figure_cells`)."""
    segments: list[list[nbformat.NotebookNode]] = [[]]
    for output in cell.outputs:
        if _is_image(output) or (segments[-1] and _is_image(segments[-1][-1])):
            segments.append([])
        segments[-1].append(output)
    head = copy.deepcopy(cell)
    head.outputs = segments[0]
    _drop_figure_metadata(head)
    pieces, n_images = [head], 0
    for outputs in segments[1:]:
        # MyST-NB skips a code cell whose source is empty: the piece says what it is (its input is removed)
        piece = nbformat.v4.new_code_cell("# outputs of the cell above, continued", outputs=outputs,
                                          metadata={"tags": [TAG_REMOVE_INPUT]})
        if _is_image(outputs[0]):
            figure = dict(options[min(n_images, len(options) - 1)])
            if n_images >= len(options) and figure.get("name"):
                figure["name"] = f"{figure['name']}-{n_images + 1}"
            piece.metadata["mystnb"] = {"figure": figure}
            n_images += 1
        pieces.append(piece)
    return pieces


def _drop_figure_metadata(cell: nbformat.NotebookNode) -> None:
    cell.metadata.get("mystnb", {}).pop("figure", None)
    cell.metadata.get("gbhet", {}).pop("figures", None)
    for key in ("mystnb", "gbhet"):
        if key in cell.metadata and not cell.metadata[key]:
            del cell.metadata[key]


def insert_stamp(nb: nbformat.NotebookNode, markdown: str) -> None:
    """Insert a Markdown cell ``markdown`` (tagged ``gbhet-run-stamp``) right under the chapter's title (in place):
    the title line of the first Markdown cell is split from the rest of that cell when it has more."""
    stamp = nbformat.v4.new_markdown_cell(markdown, metadata={"tags": [TAG_STAMP]})
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        title, _, rest = cell.source.lstrip("\n").partition("\n")
        if title.startswith("# ") and rest.strip():
            cell.source = title
            nb.cells[index + 1:index + 1] = [stamp, nbformat.v4.new_markdown_cell(rest.strip("\n"))]
        else:
            nb.cells.insert(index + 1, stamp)
        return
    nb.cells.insert(0, stamp)


#: the run's folders named in its config.json, and the word that replaces each in the book's text
PATH_PLACEHOLDERS = {"run_dir": "RUN_DIR", "cache_dir": "CACHE_DIR", "data_mirror": "DATA_MIRROR"}
_TEXT_TYPES = ("text/plain", "text/html", "text/markdown", "text/latex")


def redact_paths(nb: nbformat.NotebookNode, paths: Mapping[str, str]) -> int:
    """Replace each absolute folder of ``paths`` (path → placeholder, e.g. ``/work/main/runs/v7`` → ``RUN_DIR``)
    in the text outputs of ``nb`` (streams, plain text, HTML, Markdown, LaTeX) by its placeholder, in place;
    returns how many outputs changed. The run's own machine paths (a ``StudyConfig`` repr, a table indexed by
    slide file) then read the same for every reader; images are left as they are."""
    ordered = sorted(((path.rstrip("/"), word) for path, word in paths.items() if len(path.rstrip("/")) > 1),
                     key=lambda item: -len(item[0]))
    changed = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            before = json.dumps(output, sort_keys=True)
            if output.output_type == "stream":
                output.text = _replace_all(_text(output.text), ordered)
            for mime in _TEXT_TYPES:
                if mime in output.get("data", {}):
                    output.data[mime] = _replace_all(_text(output.data[mime]), ordered)
            changed += json.dumps(output, sort_keys=True) != before
    return changed


def _text(value: str | list[str]) -> str:
    return value if isinstance(value, str) else "".join(value)


def _replace_all(text: str, ordered: list[tuple[str, str]]) -> str:
    """``text`` with each whole path replaced (``/a/run`` in ``/a/run/x`` but not in ``/a/running``)."""
    for path, word in ordered:
        text = re.sub(re.escape(path) + r"(?![\w-]|\.\w)", word, text)
    return text


def prepare_chapter(nb: nbformat.NotebookNode, stamp: str | None = None,
                    source: nbformat.NotebookNode | None = None,
                    paths: Mapping[str, str] | None = None) -> nbformat.NotebookNode:
    """The book's copy of an executed chapter: captions taken from the chapter's ``source`` notebook where the
    run has none (:func:`adopt_figure_metadata`), repeated images dropped (:func:`drop_repeated_images`), figures
    split (:func:`split_figure_cells`), display tags set (:func:`tag_cells`), stderr warnings dropped
    (:func:`strip_stderr_warnings`), the run's machine ``paths`` replaced by placeholders (:func:`redact_paths`)
    and ``stamp`` inserted under the title (:func:`insert_stamp`). ``nb`` itself is not changed."""
    nb = copy.deepcopy(nb)
    if source is not None:
        adopt_figure_metadata(nb, source)
    drop_repeated_images(nb)
    split_figure_cells(nb)
    tag_cells(nb)
    strip_stderr_warnings(nb)
    if paths:
        redact_paths(nb, paths)
    if stamp:
        insert_stamp(nb, stamp)
    return nb


# ------------------------------------------------------------------------------------- the run's stamp
def config_hash(config: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a run's ``config.json`` (sorted keys, no spaces, UTF-8)."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def git_commit(root: Path) -> tuple[str, bool]:
    """``(short commit, tree dirty)`` of the git repository holding ``root``; ``("unknown", False)`` outside git
    or without git. Dirty means tracked files differ from the commit (untracked files do not count)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True, timeout=30).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                capture_output=True, text=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown", False
    return head or "unknown", bool(status.strip())


def colab_url(repository_url: str, branch: str, name: str) -> str | None:
    """The Colab link of notebook ``notebooks/<name>.ipynb`` of a GitHub repository, or None when
    ``repository_url`` is empty or not on github.com."""
    match = re.match(r"^https?://github\.com/([^/\s]+)/([^/\s]+?)(?:\.git)?/?$", repository_url.strip())
    if not match:
        return None
    org, repo = match.groups()
    return f"https://colab.research.google.com/github/{org}/{repo}/blob/{branch}/notebooks/{name}.ipynb"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _when(finished: str) -> str:
    """An ISO time as ``YYYY-MM-DD HH:MM UTC`` (as given when it is not ISO or has no time zone)."""
    try:
        moment = datetime.fromisoformat(finished)
    except (TypeError, ValueError):
        return str(finished)
    if moment.tzinfo is None:
        return moment.strftime("%Y-%m-%d %H:%M")
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class BuildProvenance:
    """What every chapter's stamp says about the run and the code: read once per build by :meth:`of`.

    ``config`` is the run's ``config.json`` ({} when absent), ``commit``/``dirty`` the book root's git state at
    build time (a ``commit`` in a stage's completion record wins: it is the code that ran).
    """

    run_dir: Path
    config: dict[str, Any]
    commit: str
    dirty: bool
    repository_url: str = ""
    branch: str = "main"

    @classmethod
    def of(cls, run_dir: Path, book_root: Path) -> "BuildProvenance":
        """The provenance of a build of ``run_dir``'s chapters in the book at ``book_root``."""
        commit, dirty = git_commit(Path(book_root))
        try:
            book_config = yaml.safe_load((Path(book_root) / "_config.yml").read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            book_config = {}
        repository = book_config.get("repository") or {}
        return cls(Path(run_dir), _read_json(Path(run_dir) / "config.json"), commit, dirty,
                   str(repository.get("url") or ""), str(repository.get("branch") or "main"))

    def paths(self) -> dict[str, str]:
        """The run's absolute folders (``run_dir``, ``cache_dir``, ``data_mirror`` of its config.json, and the
        run directory as found) → their placeholders for :func:`redact_paths`."""
        found = {str(self.run_dir.resolve()): PATH_PLACEHOLDERS["run_dir"]}
        for key, word in PATH_PLACEHOLDERS.items():
            value = self.config.get(key)
            if isinstance(value, str) and Path(value).is_absolute():
                found[value] = word
        return found

    def stamp(self, name: str) -> str:
        """The Markdown stamp of chapter ``name``: profile, seed, config hash, commit (dirty or not), the time
        the stage finished, and a Colab link when the book's ``repository.url`` is a GitHub repository."""
        record = _read_json(self.run_dir / "notebooks" / f"{name}.done.json")
        parameters = record.get("parameters") or {}
        profile = self.config.get("profile", parameters.get("profile", "unknown"))
        seed = self.config.get("seed", parameters.get("seed", "unknown"))
        digest = f"sha256:{config_hash(self.config)[:12]}" if self.config else "unknown (no config.json)"
        commit, dirty = (record["commit"], bool(record.get("dirty"))) if record.get("commit") else (
            self.commit, self.dirty)
        state = " (with uncommitted changes)" if dirty else ""
        parts = [f"profile `{profile}`", f"seed `{seed}`", f"config `{digest}`", f"commit `{commit}`{state}",
                 f"finished {_when(record['finished'])}" if record.get("finished") else "finish time unknown"]
        link = colab_url(self.repository_url, self.branch, name)
        if link:
            parts.append(f"[open in Colab]({link})")
        return ":::{container} run-stamp\n" + f"Run `{self.run_dir.name}`: " + " · ".join(parts) + "\n:::"


def _source_notebook(path: Path) -> nbformat.NotebookNode | None:
    """The chapter's notebook in ``notebooks/`` (its figure captions), or None when the book root has none."""
    return nbformat.read(path, as_version=4) if path.is_file() else None


def _refers_to_figures(notebook: Path) -> bool:
    nb = nbformat.read(notebook, as_version=4)
    return any(cell.cell_type == "markdown" and "figures/" in cell.source for cell in nb.cells)


def build_book(run_dir: Path, book_root: Path = Path("."), warnings_as_errors: bool = True,
               out: Path | None = None) -> Path:
    """Copy the run's executed chapters into the book and render it to ``<out>/html``.

    Args:
        run_dir: a run directory written by ``gbhet run`` (its ``notebooks/`` holds the executed chapters).
        book_root: the folder with ``_config.yml`` and ``_toc.yml`` (the repository root).
        warnings_as_errors: fail on any Sphinx warning (``-W -n --keep-going``: all warnings are reported).
        out: the build folder: the HTML goes to ``<out>/html``, Sphinx's caches to ``<out>/.doctrees`` and the
            build log to ``<out>/book-build.log``; default ``<book_root>/_build``.

    Returns:
        The path of ``<out>/html/index.html``.

    Raises:
        FileNotFoundError: a chapter's executed notebook or completion record is missing.
        RuntimeError: the build failed; the message quotes the end of the build log.
    """
    book_root = prepare_sources(run_dir, book_root)
    out = Path(out).resolve() if out is not None else book_root / BUILD_DIR

    html = out / "html"
    command = [sys.executable, "-c", _JUPYTER_BOOK, str(book_root), str(html), "1" if warnings_as_errors else "0"]
    started = time.monotonic()
    proc = subprocess.run(command, cwd=book_root, env=build_environment(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, check=False)
    log_path = out / BUILD_LOG.name
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = _ANSI.sub("", proc.stdout)
    log_path.write_text(log, encoding="utf-8")
    index = html / "index.html"
    if proc.returncode != 0 or not index.is_file():
        tail = "\n".join(log.splitlines()[-LOG_TAIL_LINES:])
        raise RuntimeError(f"jupyter-book build failed (exit {proc.returncode}) after "
                           f"{time.monotonic() - started:.0f} s; full log: {log_path}\n{log_problems(log)}"
                           f"end of the log:\n{tail}")
    return index


def prepare_sources(run_dir: Path, book_root: Path) -> Path:
    """What every build of the book (HTML, PDF) starts with: check that ``book_root`` holds ``_config.yml`` and
    ``_toc.yml``, copy the run's executed chapters (:func:`copy_chapters`) and write the results and claims pages
    (:func:`gbhet_lib.book_results.write_results_pages`). Returns ``book_root`` resolved."""
    book_root = Path(book_root).resolve()
    for required in ("_config.yml", "_toc.yml"):
        if not (book_root / required).is_file():
            raise FileNotFoundError(f"{book_root / required} not found: book_root must be the repository root.")
    copy_chapters(Path(run_dir), book_root)
    write_results_pages(Path(run_dir), book_root)
    return book_root


def build_environment() -> dict[str, str]:
    """The environment of a build's subprocess: unbuffered, no colours, the hub offline unless set otherwise."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1",
            "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}


def log_problems(log: str, pattern: re.Pattern[str] = _PROBLEM) -> str:
    """The first :data:`LOG_PROBLEM_LINES` lines of a build log that match ``pattern`` (warnings, errors), as a
    ``warnings and errors:`` block ending in a newline; empty when there are none."""
    problems = [line for line in log.splitlines() if pattern.search(line)][:LOG_PROBLEM_LINES]
    return ("warnings and errors:\n" + "\n".join(problems) + "\n") if problems else ""
