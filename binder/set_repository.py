"""Write the public repository's URL everywhere Binder and Colab need it, from one value.

``python binder/set_repository.py https://github.com/ORG/REPO [--branch main]`` sets, in the repository root:

- ``_config.yml``: ``repository: url:`` and ``branch:``, and the launch buttons' ``binderhub_url`` and
  ``colab_url`` (Jupyter Book shows launch buttons only with a repository URL; sphinx-book-theme 1.1 even fails the
  HTML build when a launch URL is set without one, so the four are set together);
- ``README.md``: the Binder and Colab badges between the ``launch badges`` markers;
- ``notebooks/NN_*.ipynb``: the ``REPO_URL`` of each chapter's Colab cell (a one-line text edit; nothing else of
  the notebook changes).

``_config.yml``'s ``repository: url:`` is the one value the others are derived from: run this script again after
changing it. Standard library only (plus the lines it edits), so it runs anywhere.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Sequence

BINDERHUB_URL = "https://mybinder.org"
COLAB_URL = "https://colab.research.google.com"
BADGES_START = "<!-- launch badges: written by binder/set_repository.py from _config.yml's repository url -->"
BADGES_END = "<!-- /launch badges -->"
#: the repository as the badges show it before a URL is set (the README cannot compute a URL)
PLACEHOLDER = "<org>/<repo>"
_GITHUB = re.compile(r"^https://github\.com/([\w.-]+)/([\w.-]+?)(?:\.git)?/?$")
_REPO_URL_LINE = re.compile(r'(REPO_URL = \\")[^\\"]*(\\")')


def github_slug(url: str) -> str:
    """``ORG/REPO`` of a GitHub repository URL; anything else is refused (Binder's and Colab's GitHub links)."""
    match = _GITHUB.match(url.strip())
    if not match:
        raise ValueError(f"{url!r} is not a GitHub repository URL (https://github.com/ORG/REPO)")
    return f"{match.group(1)}/{match.group(2)}"


def badges(slug: str, branch: str = "main") -> str:
    """The README's badge block: Binder opens the notebooks folder, Colab the first chapter."""
    binder = f"{BINDERHUB_URL}/v2/gh/{slug}/{branch}?urlpath=tree/notebooks"
    colab = f"{COLAB_URL}/github/{slug}/blob/{branch}/notebooks/01_data.ipynb"
    return (f"{BADGES_START}\n[![Binder](https://mybinder.org/badge_logo.svg)]({binder})\n"
            f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab})\n{BADGES_END}")


def set_config(text: str, url: str, branch: str) -> str:
    """``_config.yml``'s text with the repository URL and branch and both launch URLs set (line edits)."""
    edits = [(r'(?m)^(repository:\n  url: )"[^"\n]*"', rf'\1"{url}"'),
             (r'(?m)^(repository:\n(?:  .*\n)*?  branch: ).*$', rf"\g<1>{branch}"),
             (r'(?m)^(  binderhub_url: )"[^"\n]*"', rf'\1"{BINDERHUB_URL}"'),
             (r'(?m)^(  colab_url: )"[^"\n]*"', rf'\1"{COLAB_URL}"')]
    for pattern, replacement in edits:
        text, count = re.subn(pattern, replacement, text, count=1)
        if count != 1:
            raise ValueError(f"_config.yml: no line matches {pattern!r}")
    return text


def set_readme(text: str, slug: str, branch: str) -> str:
    """``README.md``'s text with the badge block written for ``slug``."""
    start, end = text.find(BADGES_START), text.find(BADGES_END)
    if start < 0 or end < start:
        raise ValueError(f"README.md: no badge block ({BADGES_START} ... {BADGES_END})")
    return text[:start] + badges(slug, branch) + text[end + len(BADGES_END):]


def set_notebook(text: str, url: str) -> str:
    """A chapter notebook's JSON text with its Colab cell's ``REPO_URL`` set (the one line changes)."""
    new, count = _REPO_URL_LINE.subn(lambda m: m.group(1) + url + m.group(2), text, count=1)
    if count != 1:
        raise ValueError("no Colab cell with a REPO_URL line")
    json.loads(new)  # still a notebook
    return new


def set_repository(root: Path, url: str, branch: str = "main") -> list[Path]:
    """Write ``url`` into the config, the README and the chapter notebooks under ``root``; returns the files."""
    root, slug = Path(root), github_slug(url)
    url = f"https://github.com/{slug}"
    changed = []
    for path, edit in [(root / "_config.yml", lambda t: set_config(t, url, branch)),
                       (root / "README.md", lambda t: set_readme(t, slug, branch))] + [
            (nb, lambda t: set_notebook(t, url)) for nb in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))]:
        text = path.read_text(encoding="utf-8")
        new = edit(text)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="the public GitHub repository, https://github.com/ORG/REPO")
    parser.add_argument("--branch", default="main")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args(argv)
    try:
        changed = set_repository(args.root, args.url, args.branch)
    except ValueError as err:
        parser.exit(2, f"set_repository: error: {err}\n")
    print("\n".join(str(p) for p in changed) or "nothing to change")
    return 0


if __name__ == "__main__":
    sys.exit(main())
