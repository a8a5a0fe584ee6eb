"""Binder (binder/: CPU torch, demo defaults) and Colab (each chapter's first cell, binder/colab_setup.py), and the
one repository URL they share (binder/set_repository.py).

The Colab cell is executed outside Colab (it must do nothing) and with a fake ``google.colab`` module and a
recording ``subprocess.run`` (it must clone, set up and name its own chapter). The Binder requirements are
resolved by pip's resolver in a dry run: everything but the CPU torch wheels against PyPI (skipped when PyPI
cannot be reached), and the whole file only when PyTorch's CPU index can be reached (it cannot from the
development machines).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
import yaml
from packaging.specifiers import SpecifierSet
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook

REPO = Path(__file__).resolve().parents[1]
BINDER = REPO / "binder"
sys.path.insert(0, str(BINDER))
import colab_setup  # noqa: E402
import set_repository  # noqa: E402

CHAPTERS = sorted((REPO / "notebooks").glob("0[1-8]_*.ipynb"))
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PYPI = "https://pypi.org/simple/pip/"


def pins(text: str) -> dict[str, str]:
    """``name → version`` of the ``name==version`` lines of a requirements text."""
    found = {}
    for line in text.splitlines():
        match = re.match(r"^\s*([A-Za-z0-9._-]+)==([^\s#;]+)", line)
        if match:
            found[match.group(1).lower()] = match.group(2)
    return found


def colab_cell(path: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    return next(c for c in nb.cells if c.cell_type == "code")


# --- Binder -------------------------------------------------------------------------------------------------------

def test_binder_pins_the_cpu_builds_of_the_tested_torch() -> None:
    binder, base = (BINDER / "requirements.txt").read_text(), (REPO / "requirements.txt").read_text()
    assert f"--extra-index-url {CPU_INDEX}" in binder.splitlines()
    assert "-r ../requirements.txt" in binder.splitlines() and (BINDER / "../requirements.txt").is_file()
    for name in ("torch", "torchvision"):
        assert pins(binder)[name] == pins(base)[name] + "+cpu"
        # ../requirements.txt's public pin admits the local +cpu build, so pip merges the two pins (PEP 440)
        assert SpecifierSet(f"=={pins(base)[name]}").contains(pins(binder)[name])
    assert (BINDER / "runtime.txt").read_text().strip() == "python-3.11"


def test_binder_scripts_are_executable_shell_and_start_sets_demo_defaults() -> None:
    for name in ("postBuild", "start"):
        script = BINDER / name
        assert os.access(script, os.X_OK) and script.read_text().startswith("#!/usr/bin/env bash\n")
        subprocess.run(["bash", "-n", str(script)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "HF_HUB_OFFLINE")}
    out = subprocess.run([str(BINDER / "start"), "env"], env=env, capture_output=True, text=True, check=True).stdout
    assert "OMP_NUM_THREADS=2" in out.splitlines() and "HF_HUB_OFFLINE=1" in out.splitlines()
    assert "pip install --no-deps -e ." in (BINDER / "postBuild").read_text()


def _reachable(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=10):
            return True
    except OSError:
        return False


def _dry_run(requirements: Path, report: Path) -> dict:
    """pip's resolver on ``requirements`` (nothing installed); returns the install report."""
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
               "-r", str(requirements), "--report", str(report)]
    proc = subprocess.run(command, capture_output=True, text=True, check=False, cwd=requirements.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(report.read_text())


@pytest.mark.timeout(600)
def test_binder_requirements_resolve_without_the_cpu_index(tmp_path: Path) -> None:
    """Everything of binder/requirements.txt but the +cpu wheels resolves against PyPI at the tested pins."""
    if not _reachable(PYPI):
        pytest.skip(f"PyPI ({PYPI}) cannot be reached")
    lines = []
    for line in (BINDER / "requirements.txt").read_text().splitlines():
        if line.startswith("--extra-index-url") or "+cpu" in line:
            continue  # PyTorch's index: the test below
        lines.append(line.replace("-r ../requirements.txt", f"-r {REPO / 'requirements.txt'}"))
    (tmp_path / "requirements.txt").write_text("\n".join(lines) + "\n")
    started = time.monotonic()
    report = _dry_run(tmp_path / "requirements.txt", tmp_path / "report.json")
    resolved = {item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"]
                for item in report["install"]}
    wanted = pins((REPO / "requirements.txt").read_text())
    wrong = {n: (v, resolved.get(n.replace("_", "-"))) for n, v in wanted.items()
             if resolved.get(n.replace("_", "-")) != v}
    assert not wrong, f"pinned → resolved: {wrong}"
    assert time.monotonic() - started < 550


@pytest.mark.timeout(600)
def test_binder_requirements_resolve_with_the_cpu_index(tmp_path: Path) -> None:
    if not _reachable(f"{CPU_INDEX}/torch/"):
        pytest.skip(f"PyTorch's CPU index ({CPU_INDEX}) cannot be reached from here; the rest of "
                    "binder/requirements.txt is resolved by the test above")
    shutil.copy(BINDER / "requirements.txt", tmp_path / "requirements.txt")
    (tmp_path / "requirements.txt").write_text((BINDER / "requirements.txt").read_text().replace(
        "-r ../requirements.txt", f"-r {REPO / 'requirements.txt'}"))
    report = _dry_run(tmp_path / "requirements.txt", tmp_path / "report.json")
    resolved = {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in report["install"]}
    assert resolved["torch"].endswith("+cpu") and resolved["torchvision"].endswith("+cpu")
    assert not any(name.startswith("nvidia-") for name in resolved)  # no CUDA wheels


# --- the Colab cell -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_colab_cell_comes_first_hidden_empty_and_before_the_parameters(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    cell = code[0]
    assert "remove-cell" in cell.metadata["tags"] and "colab-setup" in cell.metadata["tags"]
    assert cell.outputs == [] and cell.execution_count is None
    assert 'if "google.colab" in sys.modules:' in cell.source
    assert f'"--chapter", "{path.stem}"' in cell.source
    assert "parameters" in code[1].metadata.get("tags", [])
    assert sum("colab-setup" in c.metadata.get("tags", []) for c in code) == 1


@pytest.mark.parametrize("path", CHAPTERS[:1] + CHAPTERS[-1:], ids=lambda p: p.stem)
def test_papermill_injects_after_the_parameters_cell_and_keeps_the_colab_cell_first(path: Path) -> None:
    injected = parameterize_notebook(load_notebook_node(str(path)), {"run_dir": "runs/x", "seed": 3})
    code = [c for c in injected.cells if c.cell_type == "code"]
    assert "colab-setup" in code[0].metadata["tags"]
    assert "parameters" in code[1].metadata["tags"] and "injected-parameters" in code[2].metadata["tags"]
    assert 'run_dir = "runs/x"' in code[2].source


_GUARD = """
import os, subprocess, sys
calls = []
def refuse(*args, **kwargs):
    calls.append(args)
    raise AssertionError(f"called outside Colab: {args}")
subprocess.run = subprocess.Popen = subprocess.check_call = os.system = os.chdir = refuse
"""


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_colab_cell_does_nothing_outside_colab(path: Path, tmp_path: Path) -> None:
    source = _GUARD + colab_cell(path).source + "\nprint('sys.path', len(sys.path), 'calls', len(calls))\n"
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", source], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("calls 0") and time.monotonic() - started < 30
    assert list(tmp_path.iterdir()) == []  # nothing cloned or written


_FAKE_COLAB = """
import os, subprocess, sys, types
sys.modules["google"] = types.ModuleType("google")
sys.modules["google.colab"] = types.ModuleType("google.colab")
calls = []
subprocess.run = lambda command, **kw: calls.append(command)
os.path.isdir = lambda path: False
os.chdir = lambda path: calls.append(["chdir", path])
"""


def test_colab_cell_in_colab_clones_chdirs_and_sets_up_its_chapter(tmp_path: Path) -> None:
    path = CHAPTERS[4]
    source = _FAKE_COLAB + colab_cell(path).source + "\nimport json; print(json.dumps(calls))\n"
    env = {**os.environ, "GBHET_REPO_URL": "https://github.com/o/r"}
    proc = subprocess.run([sys.executable, "-c", source], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    calls = json.loads(proc.stdout.strip().splitlines()[-1])
    assert calls[0] == ["git", "clone", "--depth", "1", "https://github.com/o/r", "/content/gbhet"]
    assert calls[1] == ["chdir", "/content/gbhet"]
    assert calls[2][1:] == ["binder/colab_setup.py", "--chapter", path.stem]
    env.pop("GBHET_REPO_URL")
    proc = subprocess.run([sys.executable, "-c", source], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode != 0 and "GBHET_REPO_URL" in proc.stderr  # no URL: a clear error, no clone


# --- binder/colab_setup.py ------------------------------------------------------------------------------------------

def test_colab_requirements_keep_colabs_torch_and_kernel() -> None:
    text = (REPO / "requirements.txt").read_text()
    kept = colab_setup.colab_requirements(text)
    names = {colab_setup.requirement_name(line) for line in kept}
    assert not names & (colab_setup.COLAB_KEEPS | colab_setup.NOT_NEEDED)
    assert {"numpy", "timm", "openslide-bin", "papermill", "monai"} <= names
    assert all("==" in line and "#" not in line for line in kept)
    assert len(kept) == len(pins(text)) - len({"torch", "torchvision", "ipykernel"} | colab_setup.NOT_NEEDED)
    assert colab_setup.requirement_name("Foo_Bar.baz>=1  # x") == "foo-bar-baz"
    assert colab_setup.requirement_name("--extra-index-url x") is None


def test_colab_setup_installs_then_runs_the_earlier_chapters() -> None:
    calls = []
    commands = colab_setup.setup("03_wsi_encoding", REPO, run=lambda cmd, **kw: calls.append((cmd, kw)))
    assert [c for c, _ in calls] == commands and all(kw == {"cwd": REPO, "check": True} for _, kw in calls)
    install, package, study = commands
    assert install[1:4] == ["-m", "pip", "install"] and "timm==1.0.31" in install and "torch" not in " ".join(install)
    assert package[-3:] == ["--no-deps", "-e", str(REPO)]
    assert study[1:] == ["-m", "gbhet_lib.cli", "run", "--profile", "demo", "--run-dir", "runs/demo",
                         "--only", "01_data", "--only", "02_rna_encoding"]
    first = colab_setup.setup("01_data", REPO, run=lambda cmd, **kw: None)
    assert len(first) == 2  # the first chapter needs no earlier one
    with pytest.raises(SystemExit, match="no chapter '09_x'"):
        colab_setup.setup("09_x", REPO, run=lambda cmd, **kw: None)


# --- one repository URL -------------------------------------------------------------------------------------------

def test_launch_buttons_only_with_a_repository_url() -> None:
    """sphinx-book-theme fails the HTML build on a launch URL without ``repository: url:``."""
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    launch, url = config["launch_buttons"], config["repository"]["url"]
    if not url:
        assert not launch["binderhub_url"] and not launch["colab_url"]
    else:
        assert launch["binderhub_url"] == set_repository.BINDERHUB_URL
        assert launch["colab_url"] == set_repository.COLAB_URL


def test_readme_badges_and_colab_cells_follow_the_configured_repository() -> None:
    url = yaml.safe_load((REPO / "_config.yml").read_text())["repository"]["url"]
    slug = set_repository.github_slug(url) if url else set_repository.PLACEHOLDER
    assert set_repository.badges(slug) in (REPO / "README.md").read_text()
    for path in CHAPTERS:
        assert f'REPO_URL = "{url}"' in colab_cell(path).source


def test_set_repository_writes_the_url_everywhere(tmp_path: Path) -> None:
    for name in ("_config.yml", "README.md"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "notebooks", tmp_path / "notebooks")
    before = {p.name: p.read_text() for p in (tmp_path / "notebooks").glob("*.ipynb")}
    changed = set_repository.set_repository(tmp_path, "https://github.com/Org-1/gb.het.git", branch="dev")
    assert len(changed) == 2 + len(CHAPTERS)
    config = yaml.safe_load((tmp_path / "_config.yml").read_text())
    assert config["repository"] == {**config["repository"], "url": "https://github.com/Org-1/gb.het", "branch": "dev"}
    assert config["launch_buttons"]["binderhub_url"] == "https://mybinder.org"
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    readme = (tmp_path / "README.md").read_text()
    assert "https://mybinder.org/v2/gh/Org-1/gb.het/dev?urlpath=tree/notebooks" in readme
    assert set_repository.PLACEHOLDER not in readme.split(set_repository.BADGES_END)[0]
    for path in sorted((tmp_path / "notebooks").glob("0[1-8]_*.ipynb")):
        text = path.read_text()
        assert 'REPO_URL = \\"https://github.com/Org-1/gb.het\\"' in text
        diff = [(a, b) for a, b in zip(before[path.name].splitlines(), text.splitlines()) if a != b]
        assert len(diff) == 1 and len(text.splitlines()) == len(before[path.name].splitlines())
    assert set_repository.set_repository(tmp_path, "https://github.com/Org-1/gb.het", branch="dev") == []
    with pytest.raises(ValueError, match="not a GitHub repository URL"):
        set_repository.github_slug("https://gitlab.com/a/b")


def test_set_repository_command_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(BINDER / "set_repository.py"), "ftp://x", "--root", str(tmp_path)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "not a GitHub repository URL" in proc.stderr
    assert textwrap.dedent(set_repository.__doc__).startswith("Write the public repository's URL")
