"""The gbhet command line: synth, and argument errors of run."""
from __future__ import annotations

from pathlib import Path

import pytest

from gbhet_lib.cli import main
from gbhet_lib.data.cohort import load_cohort


def test_synth_writes_a_cohort_of_the_requested_size(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    status = main(["synth", "--out", str(tmp_path / "c"), "--seed", "3", "--patients", "2", "--min-lineages", "2",
                   "--max-lineages", "2", "--pool", "15", "--genes", "400", "--slide-width", "512",
                   "--slide-height", "512", "--jobs", "1"])
    assert status == 0
    cohort = load_cohort(tmp_path / "c")
    assert len(cohort.lineages) == 4 and cohort.expression_pool.shape == (400, 15)
    assert "gbhet synth: cohort in" in capsys.readouterr().err


def test_synth_bad_size_is_exit_2_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["synth", "--out", str(tmp_path / "c"), "--patients", "0"]) == 2
    assert "n_patients=0 must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--set", "no_equals_sign"], "expected NAME=VALUE"),
    (["--only", "99_nothing"], "unknown stage '99_nothing'"),
    (["--set", "not_a_parameter=1"], "unknown parameter override(s) not_a_parameter"),
    (["--profile", "demo", "--set", "seed=2"], "come from the StudyConfig"),
])
def test_run_argument_errors(tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], message: str) -> None:
    assert main(["run", "--run-dir", str(tmp_path / "run"), *args]) == 2
    assert message in capsys.readouterr().err


def test_load_of_an_unfinished_cohort_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no complete cohort"):
        load_cohort(tmp_path)


def test_run_failure_exits_1_and_names_notebook_and_cell(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import nbformat

    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell('profile = "demo"\nrun_dir = "x"\nseed = 0\ndevice = "auto"',
                                          metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("x = 1"),
                nbformat.v4.new_code_cell("raise ValueError('cohort table has no patient_id column')")]
    nbformat.write(nb, notebooks / "01_broken.ipynb")
    status = main(["run", "--run-dir", str(tmp_path / "run"), "--notebooks", str(notebooks), "--no-progress"])
    err = capsys.readouterr().err
    assert status == 1
    assert "stage 01_broken failed" in err and "01_broken.ipynb, cell 3" in err
    assert "ValueError: cohort table has no patient_id column" in err
    assert (tmp_path / "run" / "notebooks" / "01_broken.failed.ipynb").exists()


def test_set_values_are_typed_like_yaml_and_exponents_are_numbers() -> None:
    from gbhet_lib.cli import _parse_overrides

    parsed = _parse_overrides(["lr=1e-5", "epochs=3", "name=abc", "flag=true", "sizes=[1, 2]", "none=null"])
    assert parsed == {"lr": 1e-5, "epochs": 3, "name": "abc", "flag": True, "sizes": [1, 2], "none": None}
