"""Set up gbhet in a Google Colab runtime, for one chapter: what the first (hidden) cell of each chapter calls.

That cell clones the repository to ``/content/gbhet``, makes it the working directory and runs
``python binder/colab_setup.py --chapter NN_name``, which

1. installs the pinned ``requirements.txt`` except what Colab keeps its own build of (:data:`COLAB_KEEPS`: torch
   and torchvision, CUDA builds matching its GPU, and ipykernel, its kernel) and except what only builds or tests
   the book (:data:`NOT_NEEDED`), then the package itself (``pip install --no-deps -e .``);
2. runs the chapters before this one on the demo profile into ``runs/demo`` (``gbhet run --only ...``; finished
   stages are skipped), because each chapter reads what the earlier ones wrote and a Colab runtime starts empty.

Standard library only: it runs before anything of gbhet is installed.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable, Sequence

#: requirements Colab has its own builds of: reinstalling them from PyPI would replace its CUDA torch or its kernel
COLAB_KEEPS = frozenset({"torch", "torchvision", "ipykernel"})
#: requirements that only build or test the book, not needed to run a chapter
NOT_NEEDED = frozenset({"jupyter-book", "sphinxcontrib-bibtex", "pytest", "pytest-xdist", "pytest-timeout"})
#: the run directory and profile a chapter's parameters cell defaults to
RUN_DIR, PROFILE = "runs/demo", "demo"
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")

Runner = Callable[..., subprocess.CompletedProcess]


def requirement_name(line: str) -> str | None:
    """The normalised project name of a requirements line (``Foo_Bar==1`` → ``foo-bar``), or None for a comment,
    a blank line or an option (``-r``, ``--extra-index-url``)."""
    text = line.split("#", 1)[0].strip()
    if not text or text.startswith("-"):
        return None
    match = _NAME.match(text)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else None


def colab_requirements(requirements: str) -> list[str]:
    """The requirement lines (comments dropped) to install on Colab: all but :data:`COLAB_KEEPS` and
    :data:`NOT_NEEDED`."""
    skip = COLAB_KEEPS | NOT_NEEDED
    kept = []
    for line in requirements.splitlines():
        name = requirement_name(line)
        if name is not None and name not in skip:
            kept.append(line.split("#", 1)[0].strip())
    return kept


def earlier_chapters(chapter: str, notebook_dir: Path) -> list[str]:
    """The chapters before ``chapter`` (``NN_name`` stems of ``notebook_dir/NN_*.ipynb``, in order)."""
    names = sorted(p.stem for p in Path(notebook_dir).glob("[0-9][0-9]_*.ipynb"))
    if chapter not in names:
        raise SystemExit(f"colab_setup: no chapter {chapter!r} in {notebook_dir} (chapters: {', '.join(names)})")
    return names[:names.index(chapter)]


def setup(chapter: str, repo_dir: Path, run: Runner = subprocess.run) -> list[list[str]]:
    """Install what Colab lacks and run the chapters before ``chapter`` (see the module docstring).

    Args:
        chapter: the chapter about to run, e.g. ``05_retrieval``.
        repo_dir: the cloned repository (the working directory of the chapter).
        run: runs one command (``subprocess.run``; a test passes a recorder).

    Returns:
        The commands run, in order.
    """
    repo_dir = Path(repo_dir)
    pins = colab_requirements((repo_dir / "requirements.txt").read_text(encoding="utf-8"))
    pip = [sys.executable, "-m", "pip", "install", "--quiet"]
    commands = [pip + pins, pip + ["--no-deps", "-e", str(repo_dir)]]
    before = earlier_chapters(chapter, repo_dir / "notebooks")
    if before:
        only = [arg for name in before for arg in ("--only", name)]
        commands.append([sys.executable, "-m", "gbhet_lib.cli", "run", "--profile", PROFILE, "--run-dir", RUN_DIR,
                         *only])
    for command in commands:
        run(command, cwd=repo_dir, check=True)
    return commands


def main(argv: Sequence[str] | None = None) -> int:
    """``python binder/colab_setup.py --chapter NN_name [--repo-dir DIR]``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chapter", required=True, help="the chapter about to run, e.g. 05_retrieval")
    parser.add_argument("--repo-dir", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the cloned repository (default: the one holding this script)")
    args = parser.parse_args(argv)
    setup(args.chapter, args.repo_dir)
    print(f"colab_setup: gbhet is installed; {args.chapter} runs on the {PROFILE} profile in {RUN_DIR}. "
          "If Colab asks to restart the session (upgraded numpy or pandas), restart and run the chapter again.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
