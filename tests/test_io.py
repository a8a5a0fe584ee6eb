"""Atomic writes: the target appears complete or not at all."""
from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from gbhet_lib.io import atomic_path, read_json, write_json_atomic, write_table_atomic


def test_failed_write_leaves_no_target_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("{half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_failed_rewrite_keeps_the_previous_version(tmp_path: Path) -> None:
    target = write_json_atomic(tmp_path / "m.json", {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("{")
            raise RuntimeError
    assert read_json(target) == {"v": 1}
    assert (target.stat().st_mode & 0o777) != 0o600  # permissions of a plain file, not mkstemp's


def test_gzip_tables_are_byte_identical_for_equal_content(tmp_path: Path) -> None:
    table = pd.DataFrame({"a": [1, 2]}, index=pd.Index(["x", "y"], name="gene_id"))
    a = write_table_atomic(tmp_path / "a.tsv.gz", table).read_bytes()
    b = write_table_atomic(tmp_path / "sub" / "b.tsv.gz", table).read_bytes()
    assert a == b
    assert gzip.decompress(a).decode() == "gene_id\ta\nx\t1\ny\t2\n"


def test_invalid_json_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        read_json(bad)
