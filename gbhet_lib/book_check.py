"""Check a rendered book in a real browser: every page of ``_build/html`` opened in headless Chromium.

:func:`serve` serves the HTML folder on a free 127.0.0.1 port; :func:`check_book` opens every page there (driven by
Playwright, with Debian's ``/usr/bin/chromium``: no browser is downloaded), saves a full-page screenshot of it and
returns every :class:`Problem` it finds:

* ``broken-image``: an ``<img>`` with ``naturalWidth`` 0, or an image request that failed (HTTP >= 400, refused);
* ``failed-request``: any other request to the book's server that failed (a style sheet, a script, a font);
* ``broken-link``: an internal ``href`` (``<a>``, ``<link>``, ``<area>``) whose file is not in the book, or whose
  ``#anchor`` is no ``id`` (nor ``<a name>``) of the target page; a ``file:`` URL;
* ``empty-page``: the main column's text is shorter than ``min_chars`` (Sphinx's ``search.html`` and
  ``genindex.html`` are exempt: they have no authored text);
* ``local-path``: a path of the machine that built the book in the page's text (hidden cells included):
  ``/root/``, ``/home/NAME``, ``/tmp/``, ``/work/``, ``/var/folders/``, ``/Users/NAME``, ``C:\\Users\\``,
  ``file:///``; ``~/.cache`` only inside a cell's output (prose may document a default such as ``~/.cache/gbhet``);
* ``overflow``: the main column is wider than itself (``scrollWidth > clientWidth``), or an element in it reaches
  past its edges and is not inside a scroll container (``overflow-x: auto`` or ``scroll``);
* ``page-error``: a page that did not load (HTTP status, timeout, browser error).

Requests to other hosts (a CDN's MathJax) are aborted: the check runs on a closed network and tests the book's own
files. ``gbhet check-book`` is the command line.
"""
from __future__ import annotations

import contextlib
import functools
import html.parser
import http.server
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator
from urllib.parse import unquote, urlsplit

from .errors import GbhetError

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Request

#: Debian's Chromium (``apt-get install chromium``); Playwright drives it, ``playwright install`` is never needed
CHROMIUM = "/usr/bin/chromium"
#: without the background-networking flags Chromium's own connections are refused on a closed network
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-proxy-server")
BROKEN_IMAGE, FAILED_REQUEST, BROKEN_LINK = "broken-image", "failed-request", "broken-link"
EMPTY_PAGE, LOCAL_PATH, OVERFLOW, PAGE_ERROR = "empty-page", "local-path", "overflow", "page-error"
#: pages Sphinx generates without authored text (the search page fills itself from the search box)
NO_TEXT_PAGES = frozenset({"search.html", "genindex.html"})
#: the main column, first match: the Sphinx book theme's article, then any main element
COLUMN_SELECTORS = ("article.bd-article", "article", "main", "[role=main]", "body")
#: absolute paths of the build machine (a run's folders, a user's home, temporary and cache folders)
LOCAL_PATH_RE = re.compile(r"(?:(?<![\w.~/-])(?:/root/|/home/\w|/tmp/|/work/|/var/folders/|/private/(?:var|tmp)/"
                           r"|/Users/\w)|\b[A-Za-z]:\\Users\\|\bfile:///)[^\s'\"<>)\]]*")
#: a home-relative cache folder, reported only inside a cell's output (the run printed its environment)
OUTPUT_PATH_RE = re.compile(r"~/\.cache\b[^\s'\"<>)\]]*")
#: the folder a local path is reported under: its first two components (``/work/main``, ``C:\\Users\\ann``)
_TOP_FOLDER_RE = re.compile(r"file:///[^/]+|[A-Za-z]:\\Users\\[^\\]+|~/[^/]+|/[^/]+/[^/]+")
_REFRESH_RE = re.compile(r"""<meta\s+http-equiv=["']?refresh["']?\s+content=["']\s*\d+\s*;\s*url=([^"']+)["']""",
                         re.IGNORECASE)


@dataclass(frozen=True)
class Problem:
    """One defect of one page: ``page`` (path in the HTML folder), ``kind`` (see the module docstring), ``detail``."""

    page: str
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.page}: {self.kind}: {self.detail}"


class BrowserUnavailable(GbhetError):
    """Playwright or ``/usr/bin/chromium`` is missing, so the book cannot be checked in a browser."""


def browser_problem(executable: str = CHROMIUM) -> str | None:
    """Why the book cannot be opened in a browser here (Playwright or Chromium missing), or None if it can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package playwright is not installed (pip install -r requirements.txt)"
    if not Path(executable).is_file() and not shutil.which(executable):
        return f"no Chromium at {executable} (apt-get install -y chromium; `make check-book` installs it)"
    return None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files of one folder without logging every request to stderr."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


@contextlib.contextmanager
def serve(html_dir: Path | str) -> Iterator[str]:
    """Serve ``html_dir`` on a free 127.0.0.1 port with a threaded HTTP server; yields its base URL (ends in /)."""
    handler = functools.partial(_QuietHandler, directory=str(html_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="book-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def book_pages(html_dir: Path) -> list[str]:
    """Every HTML page of the book, as paths relative to ``html_dir`` (folders starting with _ left out)."""
    return sorted(p.relative_to(html_dir).as_posix() for p in html_dir.rglob("*.html")
                  if not any(part.startswith("_") for part in p.relative_to(html_dir).parts))


def screenshot_name(page: str) -> str:
    """The screenshot file of a page: ``book/chapters/01_data.html`` -> ``book-chapters-01_data.png``."""
    return page.removesuffix(".html").replace("/", "-") + ".png"


def check_book(html_dir: Path | str, screenshots_dir: Path | str, *, min_chars: int = 200,
               viewport: tuple[int, int] = (1280, 900), timeout_s: float = 60.0) -> list[Problem]:
    """Open every page of ``html_dir`` in headless Chromium, save ``screenshots_dir/<page>.png`` (full page) and
    return every problem found (see the module docstring), in page order."""
    html_dir, screenshots_dir = Path(html_dir), Path(screenshots_dir)
    if not (html_dir / "index.html").is_file() and not book_pages(html_dir):
        raise FileNotFoundError(f"{html_dir}: no HTML pages (render the book first: make book)")
    reason = browser_problem()
    if reason:
        raise BrowserUnavailable(f"cannot check the book in a browser: {reason}")
    from playwright.sync_api import sync_playwright

    screenshots_dir.mkdir(parents=True, exist_ok=True)
    links = _LinkChecker(html_dir)
    problems: list[Problem] = []
    with serve(html_dir) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
        try:
            for page in book_pages(html_dir):
                target = _redirect_target(html_dir / page)
                if target is not None:
                    problems += links.check(page, base, base + page, [target])
                    continue
                problems += _check_page(browser, base, page, links, screenshots_dir / screenshot_name(page),
                                        min_chars=min_chars, viewport=viewport, timeout_s=timeout_s)
        finally:
            browser.close()
    return problems


def _redirect_target(path: Path) -> str | None:
    """The URL of a page that only redirects (``<meta http-equiv="refresh" ... url=X>``), else None."""
    head = path.read_text(encoding="utf-8", errors="replace")[:4096]
    match = _REFRESH_RE.search(head)
    return match.group(1).strip() if match and "<body" not in head.lower() else None


def _check_page(browser: Browser, base: str, page: str, links: _LinkChecker, screenshot: Path, *,
                min_chars: int, viewport: tuple[int, int], timeout_s: float) -> list[Problem]:
    """Load one page, run every check on it and save its screenshot."""
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(base) else route.abort())
    tab = context.new_page()
    failed = _watch_requests(tab, page, base)
    try:
        response = tab.goto(base + page, wait_until="load", timeout=timeout_s * 1000)
        if response is None or not response.ok:
            return [Problem(page, PAGE_ERROR, f"HTTP {response.status if response else 'no response'}")]
        facts = tab.evaluate(_PAGE_FACTS_JS, [list(COLUMN_SELECTORS), timeout_s * 1000])
        tab.screenshot(path=str(screenshot), full_page=True, timeout=timeout_s * 1000)
    except Exception as err:  # noqa: BLE001 - a page that cannot be loaded is a problem of the book, not a crash
        return [Problem(page, PAGE_ERROR, " ".join(str(err).split())[:300])]
    finally:
        context.close()
    problems = list(failed)
    problems += _image_problems(page, facts["images"])
    problems += links.check(page, base, base + page, facts["links"])
    problems += _text_problems(page, facts, min_chars)
    problems += _overflow_problems(page, facts["overflow"])
    return problems


def _watch_requests(tab: Page, page: str, base: str) -> list[Problem]:
    """A list that fills with the failed requests of ``tab`` to the book's server (refused, or HTTP >= 400)."""
    failed: list[Problem] = []

    def note(request: Request, why: str) -> None:
        if request.url.startswith(base):  # other hosts are aborted on purpose
            kind = BROKEN_IMAGE if request.resource_type == "image" else FAILED_REQUEST
            failed.append(Problem(page, kind, f"{request.url.removeprefix(base)}: {why}"))

    tab.on("requestfailed", lambda request: note(request, request.failure or "failed"))
    tab.on("response", lambda response: note(response.request, f"HTTP {response.status}")
           if response.status >= 400 else None)
    return failed


def _image_problems(page: str, images: list[dict[str, Any]]) -> list[Problem]:
    """Images that did not decode (``naturalWidth`` 0)."""
    return [Problem(page, BROKEN_IMAGE, f"{img['src'] or '(no src)'}: naturalWidth 0 (alt {img['alt']!r})")
            for img in images if not img["naturalWidth"]]


def _text_problems(page: str, facts: dict[str, Any], min_chars: int) -> list[Problem]:
    """An empty main column, and local paths in the page's text."""
    problems = []
    column_text = " ".join(facts["columnText"].split())
    if len(column_text) < min_chars and page.rsplit("/", 1)[-1] not in NO_TEXT_PAGES:
        problems.append(Problem(page, EMPTY_PAGE, f"the main column ({facts['column']}) has {len(column_text)} "
                                                  f"characters of text (< {min_chars}): {column_text[:80]!r}"))
    found = _local_paths(facts["outputText"], OUTPUT_PATH_RE) | _local_paths(facts["text"], LOCAL_PATH_RE)
    problems += [Problem(page, LOCAL_PATH, detail) for _, detail in sorted(found.items())]
    return problems


def _local_paths(text: str, pattern: re.Pattern[str]) -> dict[str, str]:
    """The local paths in ``text`` grouped by their top folder (``/work/main``, ``/root/.cache``), each group told in
    one line: how many distinct paths, the first one and the text around it."""
    paths: dict[str, set[str]] = {}
    first: dict[str, str] = {}
    for match in pattern.finditer(text):
        path = match.group(0).rstrip(".,;:")
        top = _TOP_FOLDER_RE.match(path)
        group = top.group(0) if top else path
        if group not in first:
            context = " ".join(text[max(0, match.start() - 40):match.end() + 20].split())
            first[group] = f"{path} in {context!r}"
        paths.setdefault(group, set()).add(path)
    return {group: f"{len(paths[group])} path(s) under {group}, e.g. {first[group]}" for group in first}


def _overflow_problems(page: str, overflow: dict[str, Any]) -> list[Problem]:
    """The main column wider than itself, and elements reaching past it outside any scroll container."""
    problems = []
    if overflow["scrollWidth"] > overflow["clientWidth"]:
        problems.append(Problem(page, OVERFLOW, f"the main column ({overflow['column']}) is {overflow['scrollWidth']}"
                                                f" px wide inside {overflow['clientWidth']} px"))
    for element in overflow["elements"]:
        problems.append(Problem(page, OVERFLOW, f"{element['what']} spans x {element['left']}..{element['right']} "
                                                f"px, the column {overflow['left']}..{overflow['right']} px "
                                                f"({element['text']!r})"))
    return problems


class _LinkChecker:
    """Resolves a page's internal links against the served files, with the anchors of each target page cached."""

    def __init__(self, html_dir: Path) -> None:
        self.html_dir = html_dir.resolve()
        self._anchors: dict[Path, frozenset[str]] = {}

    def check(self, page: str, base: str, page_url: str, hrefs: list[str]) -> list[Problem]:
        """Problems of the links ``hrefs`` (absolute, or relative to ``page_url``) of ``page``, one per href."""
        from urllib.parse import urljoin

        problems, seen = [], set()
        for href in hrefs:
            if href in seen:
                continue
            seen.add(href)
            why = self.problem(urljoin(page_url, href), base)
            if why:
                problems.append(Problem(page, BROKEN_LINK, f"{href.removeprefix(base)}: {why}"))
        return problems

    def problem(self, url: str, base: str) -> str | None:
        """Why an absolute URL is a broken internal link, or None (fine, or not internal)."""
        if url.startswith("file:"):
            return "a file: URL (a path on the machine that built the book)"
        if not url.startswith(base):
            return None
        parts = urlsplit(url)
        path = (self.html_dir / unquote(parts.path).lstrip("/")).resolve()
        if path.is_dir():
            path = path / "index.html"
        if not path.is_relative_to(self.html_dir):
            return "points outside the book's folder"
        if not path.is_file():
            return f"no file {path.relative_to(self.html_dir).as_posix()} in the book"
        anchor = unquote(parts.fragment)
        if anchor and path.suffix == ".html" and anchor not in self.anchors(path):
            return f"no anchor #{anchor} in {path.relative_to(self.html_dir).as_posix()}"
        return None

    def anchors(self, path: Path) -> frozenset[str]:
        """The ``id`` attributes (and ``<a name>``) of an HTML file."""
        if path not in self._anchors:
            collector = _AnchorCollector()
            collector.feed(path.read_text(encoding="utf-8", errors="replace"))
            self._anchors[path] = frozenset(collector.anchors)
        return self._anchors[path]


class _AnchorCollector(html.parser.HTMLParser):
    """Collects the targets of ``#fragment`` links of one page."""

    def __init__(self) -> None:
        super().__init__()
        self.anchors: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and (name == "id" or (name == "name" and tag == "a")):
                self.anchors.add(value)


#: Runs in the page: waits for its images, then returns what the Python checks read (images, hrefs, texts, and the
#: elements that reach past the main column outside a scroll container).
_PAGE_FACTS_JS = r"""
async ([selectors, timeoutMs]) => {
  const column = selectors.map(s => document.querySelector(s)).find(e => e);
  const describe = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
    (typeof el.className === 'string' && el.className.trim() ? '.' + el.className.trim().split(/\s+/).join('.') : '');
  for (const img of document.images) { if (img.loading === 'lazy') img.loading = 'eager'; }
  await Promise.race([
    Promise.all([...document.images].map(img => img.complete ? null :
      new Promise(done => { img.addEventListener('load', done); img.addEventListener('error', done); }))),
    new Promise(done => setTimeout(done, timeoutMs / 2)),
  ]);
  const images = [...document.images].map(img => ({src: img.getAttribute('src'), alt: img.alt,
                                                   naturalWidth: img.naturalWidth}));
  const links = [...document.querySelectorAll('a[href], link[href], area[href]')].map(a => a.href);
  const texts = (root, skipOutsideOutput) => {
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    const parts = [];
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const parent = node.parentElement;
      if (!parent || parent.closest('script, style, noscript, template')) continue;
      if (skipOutsideOutput && !parent.closest('.cell_output, .output')) continue;
      parts.push(node.textContent);
    }
    return parts.join('\n');
  };
  const scrolls = el => {
    for (let a = el.parentElement; a && a !== column; a = a.parentElement) {
      const ox = getComputedStyle(a).overflowX;
      if (ox === 'auto' || ox === 'scroll') return true;
    }
    return false;
  };
  const box = column.getBoundingClientRect();
  const wide = [];
  for (const el of column.querySelectorAll('*')) {
    if (wide.length >= 20) break;
    if (wide.some(w => w.contains(el))) continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0 || getComputedStyle(el).visibility === 'hidden') continue;
    if (r.right <= box.right + 1 && r.left >= box.left - 1) continue;
    if (scrolls(el)) continue;
    wide.push(el);
  }
  return {
    column: describe(column), images, links,
    text: texts(document.body, false), outputText: texts(document.body, true),
    columnText: column.innerText || '',
    overflow: {
      column: describe(column), scrollWidth: column.scrollWidth, clientWidth: column.clientWidth,
      left: Math.round(box.left), right: Math.round(box.right),
      elements: wide.map(el => { const r = el.getBoundingClientRect();
        return {what: describe(el), left: Math.round(r.left), right: Math.round(r.right),
                text: (el.innerText || el.textContent || '').trim().replace(/\s+/g, ' ').slice(0, 60)}; }),
    },
  };
}
"""
