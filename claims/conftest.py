"""``make claims``: the planted-truth checks of a finished run, one pytest case per claim.

The run directory comes from ``--run-dir`` or ``$GBHET_RUN_DIR`` (default ``runs/demo``).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from gbhet_lib.claims import recheck

#: metrics files every finished demo run must hold claims in (one per chapter)
CHAPTER_METRICS = ("01_data", "rna", "wsi", "fusion", "retrieval", "interpret", "expression", "radiogenomics")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-dir", default=os.environ.get("GBHET_RUN_DIR", "runs/demo"),
                     help="the finished run whose metrics are checked (default $GBHET_RUN_DIR or runs/demo)")


def _run_dir(config: pytest.Config) -> Path:
    return Path(config.getoption("--run-dir"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "claim_row" in metafunc.fixturenames:
        run_dir = _run_dir(metafunc.config)
        rows = recheck(run_dir) if (run_dir / "metrics").is_dir() else []
        metafunc.parametrize("claim_row", rows, ids=[f"{stem}:{claim.id}" for stem, claim, _ in rows])


@pytest.fixture
def run_dir(request: pytest.FixtureRequest) -> Path:
    return _run_dir(request.config)
