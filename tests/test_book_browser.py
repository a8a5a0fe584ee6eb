"""The rendered book checked in a real browser (gbhet_lib.book_check, headless Debian Chromium driven by Playwright).

(a) Tiny hand-made books in tmp_path, one defect a page: each defect is reported with its kind, a clean page
reports nothing. They skip when Playwright or /usr/bin/chromium is missing, and fail instead with
``GBHET_REQUIRE_BROWSER=1`` (set it where the browser must be there, so that a broken install cannot skip them).

(b) ``test_the_rendered_book_has_no_defects``: the whole rendered book; it runs only when ``GBHET_BOOK_HTML`` names
its folder (``GBHET_BOOK_HTML=_build/html pytest tests/test_book_browser.py``), since ``make test`` runs before
``make book`` renders it; ``make check-book`` runs the same check through ``gbhet check-book``.
"""
from __future__ import annotations

import os
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from gbhet_lib.book_check import (BROKEN_IMAGE, BROKEN_LINK, EMPTY_PAGE, FAILED_REQUEST, LOCAL_PATH, OVERFLOW,
                                  Problem, browser_problem, check_book, screenshot_name, serve)
from gbhet_lib.cli import main

ENV_REQUIRE_BROWSER = "GBHET_REQUIRE_BROWSER"
ENV_BOOK_HTML = "GBHET_BOOK_HTML"
PROSE = "<p>" + "This paragraph is the authored text of a chapter, long enough for the empty-page check. " * 4 + "</p>"
#: a 1x1 PNG
PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d4944415478da63f8cf"
                    "c0f01f0005000201a2e5bd3e0000000049454e44ae426082")

#: one page a defect (name -> body of its main column), and the kinds each must report: exactly these
PAGES: dict[str, tuple[str, set[str]]] = {
    "clean.html": (f"<h1 id='top'>Clean</h1>{PROSE}<img src='_images/dot.png' alt='dot'>"
                   "<a href='other.html#there'>a link</a> <a href='#top'>up</a> <a href='https://example.org/home/x'>"
                   "out</a> <div style='overflow-x: auto'><table style='width: 3000px'><tr><td>wide</td></tr></table>"
                   "</div><p>Downloads are cached in ~/.cache/gbhet by default.</p>", set()),
    "missing_image.html": (f"{PROSE}<img src='_images/none.png' alt='gone'>", {BROKEN_IMAGE}),
    "corrupt_image.html": (f"{PROSE}<img src='_images/corrupt.png' alt='bad bytes'>", {BROKEN_IMAGE}),
    "missing_file_link.html": (f"{PROSE}<a href='book/nowhere.html'>nowhere</a>", {BROKEN_LINK}),
    "missing_anchor_link.html": (f"{PROSE}<a href='other.html#not-there'>not there</a>", {BROKEN_LINK}),
    "missing_script.html": (f"{PROSE}<script src='_static/none.js'></script>", {FAILED_REQUEST}),
    "empty.html": ("<h1>Title</h1><p>Almost nothing.</p>", {EMPTY_PAGE}),
    "local_path.html": (f"{PROSE}<details><summary>code</summary><pre>cache_dir = '/root/.cache/gbhet'</pre>"
                        "</details>", {LOCAL_PATH}),
    "output_cache.html": (f"{PROSE}<div class='cell_output'><pre>saved to ~/.cache/huggingface/x</pre></div>",
                          {LOCAL_PATH}),
    "wide_element.html": (f"{PROSE}<table style='width: 3000px'><tr><td>wide</td></tr></table>", {OVERFLOW}),
}


def _page(body: str) -> str:
    """A page with the Sphinx book theme's main column around ``body``."""
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>t</title></head><body><main>"
            f"<article class='bd-article' style='max-width: 700px'>{body}</article></main></body></html>")


def make_book(root: Path, pages: dict[str, str]) -> Path:
    """A book folder: ``pages`` (name -> main column), other.html (anchor #there), _images/dot.png, and a broken
    _images/corrupt.png."""
    (root / "_images").mkdir(parents=True)
    (root / "_images" / "dot.png").write_bytes(PNG)
    (root / "_images" / "corrupt.png").write_bytes(b"not a png at all")
    (root / "other.html").write_text(_page(f"<h2 id='there'>There</h2>{PROSE}"), encoding="utf-8")
    for name, body in pages.items():
        (root / name).write_text(_page(body), encoding="utf-8")
    return root


def require_browser() -> None:
    """Skip without Playwright or Chromium, or fail with GBHET_REQUIRE_BROWSER=1."""
    reason = browser_problem()
    if reason is None:
        return
    if os.environ.get(ENV_REQUIRE_BROWSER) == "1":
        pytest.fail(f"no browser: {reason}; {ENV_REQUIRE_BROWSER}=1 makes that an error", pytrace=False)
    pytest.skip(f"no browser to check the book in: {reason}")


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Problem]]:
    """The hand-made book (every page of PAGES) checked once: its screenshots folder and the problems found."""
    require_browser()
    root = tmp_path_factory.mktemp("book")
    html = make_book(root / "html", {name: body for name, (body, _) in PAGES.items()})
    return root / "shots", check_book(html, root / "shots")


@pytest.mark.parametrize("name", sorted(PAGES))
def test_each_page_reports_exactly_its_defect(checked: tuple[Path, list[Problem]], name: str) -> None:
    _, problems = checked
    found = [p for p in problems if p.page == name]
    assert {p.kind for p in found} == PAGES[name][1], found


def test_problems_say_what_is_wrong(checked: tuple[Path, list[Problem]]) -> None:
    details = {name: " | ".join(p.detail for p in checked[1] if p.page == name) for name in PAGES}
    assert "book/nowhere.html: no file book/nowhere.html in the book" in details["missing_file_link.html"]
    assert "other.html#not-there: no anchor #not-there in other.html" in details["missing_anchor_link.html"]
    assert "_images/none.png: HTTP 404" in details["missing_image.html"]
    assert "_images/corrupt.png: naturalWidth 0 (alt 'bad bytes')" in details["corrupt_image.html"]
    assert "_static/none.js: HTTP 404" in details["missing_script.html"]
    assert "1 path(s) under /root/.cache, e.g. /root/.cache/gbhet in" in details["local_path.html"]
    assert "1 path(s) under ~/.cache, e.g. ~/.cache/huggingface/x in" in details["output_cache.html"]
    assert "table spans x 8..3008 px, the column 8..708 px ('wide')" in details["wide_element.html"]
    assert details["empty.html"].startswith("the main column (article.bd-article) has 21 characters of text (< 200): 'Title Almost nothing.'")


def test_every_page_gets_a_full_page_screenshot(checked: tuple[Path, list[Problem]]) -> None:
    from PIL import Image

    shots = checked[0]
    assert sorted(p.name for p in shots.iterdir()) == sorted(screenshot_name(n) for n in [*PAGES, "other.html"])
    with Image.open(shots / "clean.png") as image:
        assert image.width == 1280 and image.height >= 900


def test_a_redirect_to_a_missing_page_is_a_broken_link(tmp_path: Path) -> None:
    require_browser()
    html = make_book(tmp_path / "html", {})
    (html / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=book/intro.html" />')
    problems = check_book(html, tmp_path / "shots")
    assert [(p.page, p.kind) for p in problems] == [("index.html", BROKEN_LINK)]
    assert "book/intro.html" in problems[0].detail


def test_the_main_column_wider_than_itself_is_an_overflow(tmp_path: Path) -> None:
    require_browser()
    html = make_book(tmp_path / "html", {})
    (html / "other.html").write_text(_page(f"{PROSE}<pre style='overflow: visible'>{'x' * 400}</pre>"))
    problems = check_book(html, tmp_path / "shots")
    assert {p.kind for p in problems} == {OVERFLOW}
    assert any("the main column (article.bd-article) is" in p.detail for p in problems)


def test_serve_answers_on_localhost_and_stops(tmp_path: Path) -> None:
    (tmp_path / "a.html").write_text("hello")
    with serve(tmp_path) as base:
        assert base.startswith("http://127.0.0.1:")
        assert urllib.request.urlopen(base + "a.html", timeout=10).read() == b"hello"
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(base + "b.html", timeout=10)
    port = int(base.rstrip("/").rsplit(":", 1)[1])
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


def test_cli_reports_each_problem_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    require_browser()
    html = make_book(tmp_path / "html", {"empty.html": PAGES["empty.html"][0]})
    assert main(["check-book", "--html", str(html), "--screenshots", str(tmp_path / "shots")]) == 1
    out, err = capsys.readouterr()
    assert out.startswith("empty.html: empty-page: the main column (article.bd-article) has ")
    assert "gbhet check-book: 2 page(s), 1 problem(s) (empty-page 1)" in err
    assert (tmp_path / "shots" / "empty.png").is_file()


def test_cli_clean_book_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    require_browser()
    html = make_book(tmp_path / "html", {"clean.html": PAGES["clean.html"][0]})
    assert main(["check-book", "--html", str(html), "--screenshots", str(tmp_path / "shots")]) == 0
    assert "gbhet check-book: 2 page(s), no problems" in capsys.readouterr().err


def test_cli_without_a_book_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["check-book", "--html", str(tmp_path / "none"), "--screenshots", str(tmp_path / "s")]) == 2
    assert "no HTML pages (render the book first: make book)" in capsys.readouterr().err


def test_the_rendered_book_has_no_defects(tmp_path: Path) -> None:
    """The whole rendered book (GBHET_BOOK_HTML, e.g. _build/html): no problem on any page."""
    html = os.environ.get(ENV_BOOK_HTML)
    if not html:
        pytest.skip(f"set {ENV_BOOK_HTML}=_build/html to check the rendered book (make check-book does it too)")
    if not (Path(html) / "index.html").is_file():
        pytest.fail(f"{ENV_BOOK_HTML}={html} has no index.html: render the book first (make book)", pytrace=False)
    require_browser()
    problems = check_book(html, tmp_path / "book_screenshots")
    assert not problems, "\n".join(map(str, problems))
