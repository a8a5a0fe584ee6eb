"""Where the tests find the shared data mirror, and how they fetch a dataset from it (never from the network).

The rule (the same for every test that needs the mirror, through :func:`mirror_root`):

* ``$GBHET_DATA_MIRROR`` names the mirror; unset, the tests look for ``shared/data`` beside the repository
  (CI's ``../shared/data``). The variable is read once, when the tests start, so a test that changes it for
  the code under test does not move the tests' own mirror.
* No mirror there (or ``GBHET_DATA_MIRROR=`` set empty: "no mirror"): the test is SKIPPED with a reason that
  says how to provide one, so the suite runs anywhere; with ``GBHET_REQUIRE_MIRROR=1`` (CI sets it when it has
  the mirror) it FAILS instead, so a lost mirror cannot silently skip the data tests.
* ``$GBHET_DATA_MIRROR`` set to a path that is not a folder always FAILS: that is a typo to fix, not a machine
  without data.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import pytest

from gbhet_lib.data.fetch import fetch

ENV_MIRROR = "GBHET_DATA_MIRROR"
ENV_REQUIRE = "GBHET_REQUIRE_MIRROR"
#: where the tests look without ``$GBHET_DATA_MIRROR``: ``shared/data`` beside the repository
DEFAULT_MIRROR = Path(__file__).resolve().parents[2] / "shared" / "data"
#: the environment as the test session started (see the module docstring)
SESSION_ENV: dict[str, str] = {k: os.environ[k] for k in (ENV_MIRROR, ENV_REQUIRE) if k in os.environ}
NO_MIRROR = (f"no data mirror: set {ENV_MIRROR} to a copy of the data manifest's files (e.g. ../shared/data, "
             "checked against data_manifest/datasets.yaml)")


def find_mirror(environ: Mapping[str, str], default: Path = DEFAULT_MIRROR) -> Path | None:
    """The mirror folder that ``environ`` names, or ``None`` when there is none.

    Raises:
        NotADirectoryError: ``$GBHET_DATA_MIRROR`` names a path that is not a folder.
    """
    value = environ.get(ENV_MIRROR)
    if value is None:
        return default if default.is_dir() else None
    if not value.strip():
        return None  # set empty on purpose: run without the mirror
    root = Path(value).expanduser()
    if not root.is_dir():
        raise NotADirectoryError(f"{ENV_MIRROR}={value!r} is not a folder: point it at a copy of the data "
                                 f"manifest's files (e.g. ../shared/data), or unset it (then the tests use "
                                 f"{default} when it exists and skip the mirror tests when it does not).")
    return root


def mirror_root(environ: Mapping[str, str] | None = None, default: Path = DEFAULT_MIRROR) -> Path:
    """The data mirror of this test session; skips the calling test without one (fails, see the docstring).

    Args:
        environ: the variables to read; default the environment as the session started (:data:`SESSION_ENV`).
        default: the folder looked at when ``$GBHET_DATA_MIRROR`` is unset.
    """
    environ = SESSION_ENV if environ is None else environ
    try:
        root = find_mirror(environ, default)
    except NotADirectoryError as err:
        pytest.fail(str(err), pytrace=False)
    if root is None:
        if environ.get(ENV_REQUIRE) == "1":
            pytest.fail(f"{NO_MIRROR}; {ENV_REQUIRE}=1 makes a missing mirror an error (CI sets it).", pytrace=False)
        pytest.skip(NO_MIRROR)
    return root


def mirror_file(name: str) -> Path:
    """Verified local path of manifest entry ``name``, through the project's fetch code and the mirror."""
    return fetch(name, mirror=mirror_root())
