"""Tests of gbhet_lib.book: chapter validation and copying, the chapter copy made for reading (tags, stamp,
stderr warnings, figures), and real (offline) book builds on a fake run.

The two builds run jupyter-book on a temporary copy of the book's files (a few seconds each); the chapters are
hand-made "executed" notebooks, so no kernel is started.
"""
from __future__ import annotations

import base64
import copy
import json
import re
import shutil
import struct
import zlib
from pathlib import Path

import nbformat
import pytest

from gbhet_lib.book import (CHAPTERS_DIR, INDEX_HTML, TAG_STAMP, BuildProvenance, build_book, chapter_names,
                            colab_url, config_hash, copy_chapters, git_commit, prepare_chapter, redact_paths,
                            strip_warnings, toc_files)

REPO = Path(__file__).resolve().parents[1]
# a 1×1 PNG, enough for a display_data output
PNG_1PX = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
# what tqdm.auto prints on stderr in a kernel without ipywidgets (a Python warning and its source line)
TQDM_WARNING = ("/venv/lib/python3.11/site-packages/tqdm/auto.py:21: TqdmWarning: IProgress not found. Please "
                "update jupyter and ipywidgets.\n  from .autonotebook import tqdm as notebook_tqdm\n")
RUN_CONFIG = {"profile": "demo", "seed": 7, "device": "cpu", "run_dir": "/tmp/run", "cache_dir": "/root/.cache/x"}
FINISHED = "2026-11-30T03:09:17+00:00"

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
    injected = nbformat.v4.new_code_cell('run_dir = "/tmp/run"\ncache_dir = "/root/.cache/x"\n', execution_count=2)
    injected.metadata["tags"] = ["injected-parameters"]
    stream = nbformat.v4.new_code_cell("print('12 patients')", execution_count=3, outputs=[
        nbformat.v4.new_output("stream", name="stderr", text=TQDM_WARNING),
        nbformat.v4.new_output("stream", name="stdout", text="12 patients\n"),
        nbformat.v4.new_output("stream", name="stderr", text="a message on stderr\n")])
    table = nbformat.v4.new_code_cell("table", execution_count=4, outputs=[nbformat.v4.new_output(
        "execute_result", execution_count=4,
        data={"text/plain": "   a\n0  1", "text/html": "<table><tr><th>a</th></tr><tr><td>1</td></tr></table>"})])
    figure = nbformat.v4.new_code_cell("plot()", execution_count=5, outputs=[image_output()])
    slug = title.lower().replace(" ", "-").replace("_", "-")
    figure.metadata["mystnb"] = {"figure": {"caption": f"The one figure of {title}.", "name": f"fig-{slug}"}}
    both = nbformat.v4.new_code_cell("display(table); plot(); plot()", execution_count=6, outputs=[
        table.outputs[0], image_output((255, 0, 0)), image_output((0, 0, 255))])
    both.metadata["gbhet"] = {"figures": [{"caption": "First panel.", "name": f"fig-{slug}-a"},
                                          {"caption": "Second panel.", "name": f"fig-{slug}-b"}]}
    cells = [nbformat.v4.new_markdown_cell(f"# {title}\n\nMath $\\mu_{{gs}}$.{extra_markdown}"),
             params, injected, stream, table, figure, both]
    nb = nbformat.v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "papermill": {"parameters": {"run_dir": "/tmp/run"}, "status": "completed"}})
    base64.b64decode(PNG_1PX)  # the fixture must stay valid base64
    return nb


def png_1px(rgb: tuple[int, int, int]) -> str:
    """A valid 1×1 PNG of colour ``rgb``, base64 (so two figures of a test differ)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" + bytes(rgb)))
    return base64.b64encode(png + chunk(b"IEND", b"")).decode("ascii")


def image_output(rgb: tuple[int, int, int] | None = None) -> nbformat.NotebookNode:
    """A display_data output holding a figure (the fixed 1-pixel PNG, or one of colour ``rgb``)."""
    return nbformat.v4.new_output("display_data", data={"image/png": png_1px(rgb) if rgb else PNG_1PX,
                                                        "text/plain": "<Figure size 300x200 with 1 Axes>"})


def make_run(run_dir: Path, names: list[str], done: bool = True, **extra_markdown: str) -> Path:
    """A fake run directory holding config.json and an executed notebook (and completion record) per chapter."""
    notebooks = run_dir / "notebooks"
    notebooks.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(RUN_CONFIG))
    for name in names:
        nbformat.write(executed_notebook(f"Chapter {name}", extra_markdown.get(name, "")), notebooks / f"{name}.ipynb")
        if done:
            (notebooks / f"{name}.done.json").write_text(json.dumps({"parameters": {"seed": 0},
                                                                     "finished": FINISHED}))
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
    shutil.copytree(REPO / "_static", root / "_static")
    shutil.copytree(REPO / "book", root / "book", ignore=shutil.ignore_patterns("chapters", "*.ipynb_checkpoints"))
    return root


def test_toc_files_and_chapter_names(toy_root: Path) -> None:
    assert toc_files(toy_root / "_toc.yml") == [
        "book/intro", "book/chapters/01_data", "book/chapters/02_rna", "book/references"]
    assert chapter_names(toy_root / "_toc.yml") == ["01_data", "02_rna"]


def test_real_toc_lists_the_data_chapter() -> None:
    names = chapter_names(REPO / "_toc.yml")
    assert names[0] == "01_data"
    from gbhet_lib.book_results import GENERATED_PAGES

    generated = {str(page.with_suffix("")) for page in GENERATED_PAGES}  # written from the run at build time
    for entry in toc_files(REPO / "_toc.yml"):  # every prose page of the toc exists
        if not entry.startswith(str(CHAPTERS_DIR)) and entry not in generated:
            assert (REPO / f"{entry}.md").is_file(), entry
    assert generated <= set(toc_files(REPO / "_toc.yml"))


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


def tags(cell: nbformat.NotebookNode) -> list[str]:
    return list(cell.metadata.get("tags", []))


def test_prepare_chapter_hides_parameters_and_folds_code() -> None:
    source = executed_notebook("Chapter 01_data")
    before = nbformat.writes(source)
    nb = prepare_chapter(source, "STAMP")
    assert nbformat.writes(source) == before  # the executed notebook itself is not changed
    by_source = {cell.source: cell for cell in nb.cells if cell.cell_type == "code"}
    injected = next(c for c in nb.cells if "injected-parameters" in tags(c))
    params = next(c for c in nb.cells if "parameters" in tags(c))
    assert "remove-cell" in tags(injected) and "hide-cell" not in tags(injected)
    assert "hide-cell" in tags(params) and "hide-input" not in tags(params)
    for code in ("print('12 patients')", "table", "plot()"):
        assert tags(by_source[code]) == ["hide-input"], code


def test_prepare_chapter_keeps_a_cells_own_display_tag() -> None:
    source = executed_notebook("Chapter 01_data")
    source.cells[3].metadata["tags"] = ["remove-input"]
    nb = prepare_chapter(source)
    assert tags(nb.cells[3]) == ["remove-input"]
    assert not any(TAG_STAMP in tags(cell) for cell in nb.cells)  # no stamp asked for, none inserted


def test_stderr_warnings_stripped_real_messages_kept() -> None:
    nb = prepare_chapter(executed_notebook("Chapter 01_data"))
    streams = next(c for c in nb.cells if c.source == "print('12 patients')").outputs
    assert [(o.name, o.text) for o in streams] == [("stdout", "12 patients\n"), ("stderr", "a message on stderr\n")]
    error = "Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: bad\n"
    assert strip_warnings(TQDM_WARNING + error) == error
    assert strip_warnings("x.py:3: DeprecationWarning: old\n  call()\nWARNING: kept\n") == "WARNING: kept\n"
    assert strip_warnings(TQDM_WARNING) == ""


def test_stamp_goes_under_the_title() -> None:
    nb = prepare_chapter(executed_notebook("Chapter 01_data"), "STAMP")
    assert nb.cells[0].source == "# Chapter 01_data"
    assert nb.cells[1].source == "STAMP" and tags(nb.cells[1]) == [TAG_STAMP]
    assert nb.cells[2].source.startswith("Math $")  # the rest of the title cell follows the stamp
    only_title = executed_notebook("Only a title")
    only_title.cells[0].source = "# Only a title"
    nb = prepare_chapter(only_title, "STAMP")
    assert [c.source for c in nb.cells[:2]] == ["# Only a title", "STAMP"]


def test_each_figure_of_a_cell_gets_its_own_caption() -> None:
    nb = prepare_chapter(executed_notebook("Chapter 01_data"))
    figures = [c.metadata["mystnb"]["figure"] for c in nb.cells if "mystnb" in c.metadata]
    assert [f["name"] for f in figures] == ["fig-chapter-01-data", "fig-chapter-01-data-a", "fig-chapter-01-data-b"]
    assert figures[1]["caption"] == "First panel."
    head = next(c for c in nb.cells if c.source.startswith("display(table)"))
    assert "gbhet" not in head.metadata and [o.output_type for o in head.outputs] == ["execute_result"]
    pieces = nb.cells[nb.cells.index(head) + 1:nb.cells.index(head) + 3]
    assert all(p.source.strip() and tags(p) == ["remove-input"] and len(p.outputs) == 1 for p in pieces)


def test_more_images_than_captions_get_distinct_names() -> None:
    source = executed_notebook("Chapter 01_data")
    cell = next(c for c in source.cells if c.source == "plot()")
    cell.outputs = [image_output((1, 2, 3)), image_output((4, 5, 6))]
    nb = prepare_chapter(source)
    names = [c.metadata["mystnb"]["figure"]["name"] for c in nb.cells if "mystnb" in c.metadata]
    assert names[:2] == ["fig-chapter-01-data", "fig-chapter-01-data-2"]


def test_an_image_shown_twice_is_kept_once() -> None:
    shown = [image_output(), image_output((0, 128, 0)), image_output()]  # display(fig), another, the inline copy
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("display(fig); other()", outputs=shown)])
    images = [o.data["image/png"] for c in prepare_chapter(nb).cells for o in c.outputs]
    assert images == [PNG_1PX, png_1px((0, 128, 0))]
    assert len(nb.cells[0].outputs) == 3  # the executed notebook keeps all three


def test_figure_metadata_without_an_image_is_dropped() -> None:
    source = executed_notebook("Chapter 01_data")
    cell = next(c for c in source.cells if c.source == "table")
    cell.metadata["mystnb"] = {"figure": {"caption": "Not drawn in this profile.", "name": "fig-x"}}
    nb = prepare_chapter(source)
    table = next(c for c in nb.cells if c.source == "table")
    assert "mystnb" not in table.metadata and len(table.outputs) == 1


def test_captions_adopted_from_the_source_notebook() -> None:
    executed = executed_notebook("Chapter 01_data")
    plot = next(c for c in executed.cells if c.source == "plot()")
    del plot.metadata["mystnb"]  # a run executed before the captions were written
    source = copy.deepcopy(executed)
    next(c for c in source.cells if c.id == plot.id).metadata["mystnb"] = {
        "figure": {"caption": "From notebooks/.", "name": "fig-from-source"}}
    both = next(c for c in source.cells if c.source.startswith("display(table)"))
    both.metadata["gbhet"]["figures"][0]["caption"] = "Not taken: the run has its own."
    nb = prepare_chapter(executed, source=source)
    figures = {c.metadata["mystnb"]["figure"]["name"]: c.metadata["mystnb"]["figure"]["caption"]
               for c in nb.cells if "mystnb" in c.metadata}
    assert figures["fig-from-source"] == "From notebooks/."
    assert figures["fig-chapter-01-data-a"] == "First panel."
    assert "mystnb" not in plot.metadata  # the executed notebook is untouched


def test_machine_paths_replaced_in_outputs(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", ["01_data"])
    source = executed_notebook("Chapter 01_data")
    repr_ = f"StudyConfig(run_dir=PosixPath('{run.resolve()}'), cache_dir=PosixPath('/root/.cache/x'))"
    source.cells.append(nbformat.v4.new_code_cell("config", outputs=[
        nbformat.v4.new_output("execute_result", data={"text/plain": repr_,
                                                       "text/html": f"<th>{run.resolve()}/data/a.tiff</th>"}),
        nbformat.v4.new_output("stream", name="stdout", text=f"wrote {run.resolve()}/figures\n")]))
    nb = prepare_chapter(source, paths=BuildProvenance.of(run, tmp_path).paths())
    outputs = nb.cells[-1].outputs
    assert outputs[0].data["text/plain"] == "StudyConfig(run_dir=PosixPath('RUN_DIR'), cache_dir=PosixPath('CACHE_DIR'))"
    assert outputs[0].data["text/html"] == "<th>RUN_DIR/data/a.tiff</th>"
    assert outputs[1].text == "wrote RUN_DIR/figures\n"
    other = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="/tmp/running /tmp/run.json /tmp/run.\n")])])
    assert redact_paths(other, {"/tmp/run": "RUN_DIR"}) == 1
    assert other.cells[0].outputs[0].text == "/tmp/running /tmp/run.json RUN_DIR.\n"  # whole paths only
    assert str(run.resolve()) in source.cells[-1].outputs[1].text  # the executed notebook keeps them


def test_provenance_stamp(tmp_path: Path) -> None:
    run = make_run(tmp_path / "v9", ["01_data"])
    (tmp_path / "_config.yml").write_text("repository:\n  url: ''\n")
    stamp = BuildProvenance.of(run, tmp_path).stamp("01_data")
    assert "profile `demo`" in stamp and "seed `7`" in stamp and "Run `v9`" in stamp
    assert f"config `sha256:{config_hash(RUN_CONFIG)[:12]}`" in stamp
    assert "commit `unknown`" in stamp  # tmp_path is not in a git repository
    assert "finished 2026-11-30 03:09 UTC" in stamp
    assert "colab" not in stamp.lower()  # no repository URL, no invented badge
    assert "/tmp/run" not in stamp and "/root/.cache" not in stamp
    record = run / "notebooks" / "01_data.done.json"
    record.write_text(json.dumps({"commit": "abc1234", "dirty": True}))
    assert "commit `abc1234` (with uncommitted changes)" in BuildProvenance.of(run, tmp_path).stamp("01_data")


def test_stamp_links_colab_for_a_github_repository(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", ["01_data"])
    (tmp_path / "_config.yml").write_text("repository:\n  url: https://github.com/org/gbhet\n  branch: dev\n")
    stamp = BuildProvenance.of(run, tmp_path).stamp("01_data")
    assert "(https://colab.research.google.com/github/org/gbhet/blob/dev/notebooks/01_data.ipynb)" in stamp
    assert colab_url("", "main", "01_data") is None
    assert colab_url("https://gitlab.com/org/gbhet", "main", "01_data") is None
    assert colab_url("https://github.com/org/gbhet.git", "main", "x").endswith("/org/gbhet/blob/main/notebooks/x.ipynb")


def test_config_hash_is_canonical() -> None:
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})
    assert len(config_hash({})) == 64


def test_git_commit_of_this_repository() -> None:
    commit, dirty = git_commit(REPO)
    if (REPO / ".git").exists():
        assert len(commit) >= 7 and all(c in "0123456789abcdef" for c in commit)
    assert isinstance(dirty, bool)


def test_copy_writes_the_prepared_chapter(toy_root: Path, tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", ["01_data", "02_rna"])
    copy_chapters(run, toy_root)
    nb = nbformat.read(toy_root / CHAPTERS_DIR / "02_rna.ipynb", as_version=4)
    assert TAG_STAMP in tags(nb.cells[1]) and "seed `7`" in nb.cells[1].source
    assert any("remove-cell" in tags(c) for c in nb.cells)
    executed = nbformat.read(run / "notebooks" / "02_rna.ipynb", as_version=4)
    assert not any("remove-cell" in tags(c) for c in executed.cells)  # the run directory is untouched


def test_build_book_offline_without_warnings(book_copy: Path, tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", chapter_names(book_copy / "_toc.yml"))
    out = tmp_path / "site"
    index = build_book(run, book_copy, out=out)
    assert index == out / "html" / "index.html" and index.is_file()
    assert not (book_copy / INDEX_HTML).exists()  # --out replaces <book_root>/_build
    html = out / "html"
    chapter = (html / "book" / "chapters" / "01_data.html").read_text(encoding="utf-8")
    assert "Chapter 01_data" in chapter and "12 patients" in chapter and "a message on stderr" in chapter
    assert "/root/.cache" not in chapter and 'run_dir = "/tmp/run"' not in chapter  # injected cell removed
    assert "TqdmWarning" not in chapter
    assert "run-stamp" in chapter and "seed <code" in chapter  # the stamp, rendered
    numbered = re.search(r'caption-number">Figure (\d+) </span><span class="caption-text">The one figure of', chapter)
    assert numbered, "the captioned figure is not numbered"  # numbered across the book (the intro's come first)
    assert 'id="fig-chapter-01-data-b"' in chapter
    assert "toggle-details" in chapter or "<details" in chapter  # folded code
    assert (html / "_static" / "custom.css").is_file() and "custom.css" in chapter
    intro = (html / "book" / "intro.html").read_text(encoding="utf-8")
    assert "Berjaoui" in intro and "pipeline.svg" in intro  # citations resolved, figure included
    assert (html / "book" / "references.html").is_file()
    log = (out / "book-build.log").read_text(encoding="utf-8")
    assert "build succeeded" in log and "WARNING" not in log


def test_build_book_fails_on_a_warning(book_copy: Path, tmp_path: Path) -> None:
    names = chapter_names(book_copy / "_toc.yml")
    run = make_run(tmp_path / "run", names, **{names[0]: "\n\nSee {ref}`no-such-label`."})
    with pytest.raises(RuntimeError, match="no-such-label"):
        build_book(run, book_copy)
