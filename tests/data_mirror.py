"""Where the tests find the shared data mirror, and how they fetch a dataset from it (never from the network)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from gbhet_lib.data.fetch import fetch


def mirror_root() -> Path:
    """``$GBHET_DATA_MIRROR``, else ``shared/data`` beside the repository (CI's ``../shared/data``).

    Without a mirror the calling test fails with a message; it is never skipped.
    """
    root = Path(os.environ.get("GBHET_DATA_MIRROR") or Path(__file__).resolve().parents[2] / "shared" / "data")
    if not root.is_dir():
        pytest.fail(f"no data mirror at {root}: set GBHET_DATA_MIRROR to a copy of the data manifest's files")
    return root


def mirror_file(name: str) -> Path:
    """Verified local path of manifest entry ``name``, through the project's fetch code and the mirror."""
    return fetch(name, mirror=mirror_root())
