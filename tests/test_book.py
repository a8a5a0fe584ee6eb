"""Tests of gbhet_lib.book: chapter validation and copying, and real (offline) book builds on a fake run.

The two builds run jupyter-book on a temporary copy of the book's files (a few seconds each); the chapters are
hand-made "executed" notebooks, so no kernel is started.
"""
from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import nbformat
import pytest

from gbhet_lib.book import CHAPTERS_DIR, INDEX_HTML, build_book, chapter_names, copy_chapters, toc_files

REPO = Path(__file__).resolve().parents[1]
# a 1×1 PNG, enough for a display_data output
PNG_1PX = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")

TOC = """format: jb-book
root: book/intro
parts:
  - caption: The study
    chapters:
      - file: book/chapters/01_data
      - file: book/chapters/02_rna
  - caption: About
    chapters:
      - file: book/references
"""


def executed_notebook(title: str, extra_markdown: str = "") -> nbformat.NotebookNode:
    """A notebook that looks like papermill's output: parameters, injected parameters and the usual outputs."""
    params = nbformat.v4.new_code_cell('profile = "demo"\nrun_dir = "runs/demo"\nseed = 0\n', execution_count=1)
    params.metadata["tags"] = ["parameters"]
    injected = nbformat.v4.new_code_cell('run_dir = "/tmp/run"\n', execution_count=2)
    injected.metadata["tags"] = ["injected-parameters"]
    stream = nbformat.v4.new_code_cell("print('12 patients')", execution_count=3, outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="12 patients\n"),
        nbformat.v4.new_output("stream", name="stderr", text="a warning on stderr\n")])
    table = nbformat.v4.new_code_cell("table", execution_count=4, outputs=[nbformat.v4.new_output(
        "execute_result", execution_count=4,
        data={"text/plain": "   a\n0  1", "text/html": "<table><tr><th>a</th></tr><tr><td>1</td></tr></table>"})])
    figure = nbformat.v4.new_code_cell("plot()", execution_count=5, outputs=[nbformat.v4.new_output(
        "display_data", data={"image/png": PNG_1PX, "text/plain": "<Figure size 300x200 with 1 Axes>"})])
    cells = [nbformat.v4.new_markdown_cell(f"# {title}\n\nMath $\\mu_{{gs}}$.{extra_markdown}"),
             params, injected, stream, table, figure]
    nb = nbformat.v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "papermill": {"parameters": {"run_dir": "/tmp/run"}, "status": "completed"}})
    base64.b64decode(PNG_1PX)  # the fixture must stay valid base64
    return nb


def make_run(run_dir: Path, names: list[str], done: bool = True, **extra_markdown: str) -> Path:
    """A fake run directory holding an executed notebook (and completion record) per chapter name."""
    notebooks = run_dir / "notebooks"
    notebooks.mkdir(parents=True, exist_ok=True)
    for name in names:
        nbformat.write(executed_notebook(f"Chapter {name}", extra_markdown.get(name, "")), notebooks / f"{name}.ipynb")
        if done:
            (notebooks / f"{name}.done.json").write_text(json.dumps({"parameters": {"seed": 0}}))
    return run_dir


@pytest.fixture
def toy_root(tmp_path: Path) -> Path:
    """A book root with a toy _toc.yml (two chapters) and nothing else."""
    root = tmp_path / "book_root"
    root.mkdir()
    (root / "_toc.yml").write_text(TOC)
    return root


@pytest.fixture
def book_copy(tmp_path: Path) -> Path:
    """A copy of the real book's files (config, toc, prose, figures, bibliography), without chapters."""
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "book", root / "book", ignore=shutil.ignore_patterns("chapters", "*.ipynb_checkpoints"))
    return root


def test_toc_files_and_chapter_names(toy_root: Path) -> None:
    assert toc_files(toy_root / "_toc.yml") == [
        "book/intro", "book/chapters/01_data", "book/chapters/02_rna", "book/references"]
    assert chapter_names(toy_root / "_toc.yml") == ["01_data", "02_rna"]


def test_real_toc_lists_the_data_chapter() -> None:
    names = chapter_names(REPO / "_toc.yml")
    assert names[0] == "01_data"
    for entry in toc_files(REPO / "_toc.yml"):  # every prose page of the toc exists
        if not entry.startswith(str(CHAPTERS_DIR)):
            assert (REPO / f"{entry}.md").is_file(), entry


def test_missing_toc_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="_toc.yml"):
        chapter_names(tmp_path / "_toc.yml")


def test_missing_notebook_is_named(toy_root: Path, tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", ["01_data"])
    with pytest.raises(FileNotFoundError) as err:
        copy_chapters(run, toy_root)
    message = str(err.value)
    assert "02_rna.ipynb" in message and "01_data" not in message.replace(str(run), "")
    assert f"gbhet run --run-dir {run} --only 02_rna" in message
    assert not (toy_root / CHAPTERS_DIR).exists()  # nothing copied when any chapter is missing


def test_unfinished_stage_is_refused(toy_root: Path, tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", ["01_data", "02_rna"], done=False)
    (run / "notebooks" / "02_rna.failed.ipynb").write_text("{}")
    with pytest.raises(FileNotFoundError) as err:
        copy_chapters(run, toy_root)
    message = str(err.value)
    assert "01_data.done.json is missing, so stage 01_data did not finish" in message
    assert "02_rna.failed.ipynb" in message


def test_copy_replaces_chapters_and_drops_stale_ones(toy_root: Path, tmp_path: Path) -> None:
    chapters = toy_root / CHAPTERS_DIR
    chapters.mkdir(parents=True)
    (chapters / "99_old.ipynb").write_text("{}")
    (chapters / "01_data.ipynb").write_text("{}")
    run = make_run(tmp_path / "run", ["01_data", "02_rna"])
    copied = copy_chapters(run, toy_root)
    assert copied == [chapters / "01_data.ipynb", chapters / "02_rna.ipynb"]
    assert sorted(p.name for p in chapters.iterdir()) == ["01_data.ipynb", "02_rna.ipynb"]
    assert nbformat.read(chapters / "01_data.ipynb", as_version=4).cells[0].source.startswith("# Chapter 01_data")
    assert not (chapters / "figures").exists()  # no chapter refers to figures/


def test_figures_copied_only_when_referred_to(toy_root: Path, tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", ["01_data", "02_rna"], **{"02_rna": "\n\n![umap](figures/umap.png)"})
    (run / "figures").mkdir()
    (run / "figures" / "umap.png").write_bytes(base64.b64decode(PNG_1PX))
    copy_chapters(run, toy_root)
    assert (toy_root / CHAPTERS_DIR / "figures" / "umap.png").is_file()


def test_build_book_offline_without_warnings(book_copy: Path, tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", chapter_names(book_copy / "_toc.yml"))
    index = build_book(run, book_copy)
    assert index == book_copy / INDEX_HTML and index.is_file()
    html = book_copy / "_build" / "html"
    chapter = (html / "book" / "chapters" / "01_data.html").read_text(encoding="utf-8")
    assert "Chapter 01_data" in chapter and "12 patients" in chapter
    intro = (html / "book" / "intro.html").read_text(encoding="utf-8")
    assert "Berjaoui" in intro and "pipeline.svg" in intro  # citations resolved, figure included
    assert (html / "book" / "references.html").is_file()
    log = (book_copy / "_build" / "book-build.log").read_text(encoding="utf-8")
    assert "build succeeded" in log and "WARNING" not in log


def test_build_book_fails_on_a_warning(book_copy: Path, tmp_path: Path) -> None:
    names = chapter_names(book_copy / "_toc.yml")
    run = make_run(tmp_path / "run", names, **{names[0]: "\n\nSee {ref}`no-such-label`."})
    with pytest.raises(RuntimeError, match="no-such-label"):
        build_book(run, book_copy)
