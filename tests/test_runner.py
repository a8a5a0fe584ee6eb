"""Tests of gbhet_lib.runner on tiny notebooks built here (each execution starts a kernel: 5 in all)."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from gbhet_lib.config import StudyConfig
from gbhet_lib.io import write_json_atomic
from gbhet_lib.rundir import RunDir
from gbhet_lib.runner import (Stage, StageFailed, discover_stages, file_sha256, rerun_reason, run_study,
                              select_stages)

PARAMETERS_CELL = 'profile = "reference"\nrun_dir = "runs/elsewhere"\nseed = 99\ndevice = "auto"\n'
#: a cell that records the parameters the notebook saw (and its working directory) in run_dir/seen/
RECORD_CELL = """import json, os
from pathlib import Path
seen = {name: globals().get(name) for name in ("profile", "run_dir", "seed", "device", "n_items")}
seen["cwd"] = os.getcwd()
(Path(run_dir) / "seen").mkdir(exist_ok=True)
(Path(run_dir) / "seen" / "{stage}.json").write_text(json.dumps(seen))
"""


def write_notebook(folder: Path, stage: str, extra_parameters: str = "", body: list[str] | None = None) -> Path:
    """Write ``folder/<stage>.ipynb``: a title, a ``parameters`` cell, then ``body`` (default: RECORD_CELL)."""
    params = nbformat.v4.new_code_cell(PARAMETERS_CELL + extra_parameters)
    params.metadata["tags"] = ["parameters"]
    cells = [nbformat.v4.new_markdown_cell(f"# {stage}"), params]
    cells += [nbformat.v4.new_code_cell(src) for src in (body or [RECORD_CELL.replace("{stage}", stage)])]
    nb = nbformat.v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stage}.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture
def config(tmp_path: Path) -> StudyConfig:
    return StudyConfig(profile="demo", run_dir=tmp_path / "run", seed=0, device="cpu")


@pytest.fixture
def notebooks(tmp_path: Path) -> Path:
    """Two stages: 01_x declares the extra parameter ``n_items``, 02_y does not."""
    folder = tmp_path / "notebooks"
    write_notebook(folder, "01_x", extra_parameters="n_items = 1\n")
    write_notebook(folder, "02_y")
    return folder


def seen(config: StudyConfig, stage: str) -> dict:
    return json.loads((config.run_dir / "seen" / f"{stage}.json").read_text())


def test_discover_and_select_stages(notebooks: Path) -> None:
    stages = discover_stages(notebooks)
    assert [s.name for s in stages] == ["01_x", "02_y"]
    assert stages[0] == Stage("01_x", notebooks / "01_x.ipynb")
    for key in ("01_x", "01", "1", "x"):
        assert select_stages(stages, [key]) == [stages[0]]
    assert select_stages(stages, ["y", "1"]) == stages  # study order, not the order asked
    assert select_stages(stages, None) == stages


def test_unknown_stage_lists_valid_ones(notebooks: Path) -> None:
    with pytest.raises(ValueError, match=r"'3'.*01_x, 02_y"):
        select_stages(discover_stages(notebooks), ["3"])


def test_no_stages_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        discover_stages(tmp_path / "empty")


def test_unknown_override_is_an_error_before_running(config: StudyConfig, notebooks: Path) -> None:
    with pytest.raises(ValueError, match="n_itmes"):
        run_study(config, notebooks, parameters={"n_items": 2, "n_itmes": 2}, progress=False)
    with pytest.raises(ValueError, match="n_items"):  # only 02_y selected: it does not declare n_items
        run_study(config, notebooks, only=["y"], parameters={"n_items": 2}, progress=False)
    with pytest.raises(ValueError, match="seed"):
        run_study(config, notebooks, parameters={"seed": 1}, progress=False)
    assert not (config.run_dir / "notebooks").exists()  # checked before the run dir is set up


def test_override_values_are_checked_against_the_defaults_before_running(config: StudyConfig,
                                                                         notebooks: Path) -> None:
    from gbhet_lib.errors import UsageError

    with pytest.raises(UsageError, match=r"parameter n_items='two' is a string \(str\), but n_items takes an integer "
                                         r"\(01_x declares n_items = 1\); write the number in digits, e.g. 1"):
        run_study(config, notebooks, parameters={"n_items": "two"}, progress=False)
    with pytest.raises(UsageError, match=r"unknown parameter override\(s\) n_itmes: .*did you mean n_items\?"):
        run_study(config, notebooks, parameters={"n_itmes": 2}, progress=False)
    with pytest.raises(UsageError, match=r"cell_timeout=-5 must be a number of seconds >= 0"):
        run_study(config, notebooks, progress=False, cell_timeout=-5)
    assert not (config.run_dir / "notebooks").exists()


def test_run_skip_force_and_parameter_change(config: StudyConfig, notebooks: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = config.run_dir / "notebooks"
    results = run_study(config, notebooks, parameters={"n_items": 3}, progress=False)
    assert [(r.stage, r.status, r.output) for r in results] == [
        ("01_x", "ran", out / "01_x.ipynb"), ("02_y", "ran", out / "02_y.ipynb")]
    # the run dir lies below the notebooks' working directory (tmp_path), so it is injected relative to it
    assert seen(config, "01_x") == {"profile": "demo", "run_dir": "run", "seed": 0,
                                    "device": "cpu", "n_items": 3, "cwd": str(tmp_path)}
    assert seen(config, "02_y")["n_items"] is None  # not declared there, so not injected
    record = json.loads((out / "01_x.done.json").read_text())
    assert record["parameters"]["n_items"] == 3
    assert record["source_sha256"] == file_sha256(notebooks / "01_x.ipynb")
    assert record["cell_timeout_s"] == 3600  # the demo profile's default
    assert "[2/2] 02_y … done in" in capsys.readouterr().err

    mtime = (out / "01_x.ipynb").stat().st_mtime_ns
    results = run_study(config, notebooks, parameters={"n_items": 3}, progress=False)
    assert [r.status for r in results] == ["skipped", "skipped"]
    assert (out / "01_x.ipynb").stat().st_mtime_ns == mtime
    assert "[1/2] 01_x … skipped (finished; use --force to rerun)" in capsys.readouterr().err

    results = run_study(config, notebooks, only=["1"], force=True, parameters={"n_items": 3}, progress=False)
    assert [(r.stage, r.status) for r in results] == [("01_x", "ran")]
    assert (out / "01_x.ipynb").stat().st_mtime_ns != mtime

    results = run_study(config, notebooks, only=["x"], parameters={"n_items": 4}, progress=False)
    assert [r.status for r in results] == ["ran"]
    assert "parameters changed: n_items" in capsys.readouterr().err
    assert seen(config, "01_x")["n_items"] == 4
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_rerun_reason_tracks_source_and_parameters(config: StudyConfig, notebooks: Path) -> None:
    run = RunDir(config.run_dir).create()
    stage = discover_stages(notebooks)[0]
    params = {"profile": "demo", "seed": 0}
    assert rerun_reason(stage, run, params) == "not run yet"
    (run.notebooks / "01_x.ipynb").write_text("{}")
    assert "no completion record" in rerun_reason(stage, run, params)
    write_json_atomic(run.notebooks / "01_x.done.json",
                      {"parameters": params, "source_sha256": file_sha256(stage.path)})
    assert rerun_reason(stage, run, params) is None
    assert rerun_reason(stage, run, {**params, "seed": 1}) == "parameters changed: seed"
    write_notebook(notebooks, "01_x", extra_parameters="n_items = 2\n")
    assert rerun_reason(stage, run, params) == "notebook changed"


def test_failing_cell_raises_stage_failed(config: StudyConfig, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "notebooks"
    write_notebook(folder, "01_bad", body=["x = 1", 'raise ValueError("boom")'])
    write_notebook(folder, "02_after")
    out = config.run_dir / "notebooks"
    out.mkdir(parents=True)
    (out / "01_bad.done.json").write_text("{}")  # stale record of an earlier run

    with pytest.raises(StageFailed) as info:
        run_study(config, folder, progress=False)

    err = info.value
    assert (err.stage, err.cell_index, err.execution_count, err.ename) == ("01_bad", 3, 4, "ValueError")
    assert str(err) == ("stage 01_bad failed: notebooks/01_bad.ipynb, cell 4 (In [4]): ValueError: boom. "
                        "The executed notebook with the traceback is at run/notebooks/01_bad.failed.ipynb")
    assert err.failed_notebook == out / "01_bad.failed.ipynb"
    assert "boom" in err.failed_notebook.read_text()
    assert sorted(p.name for p in out.iterdir()) == ["01_bad.failed.ipynb"]
    assert not (config.run_dir / "seen").exists()  # 02_after did not run


def test_a_unique_prefix_of_the_name_selects_a_stage(tmp_path: Path) -> None:
    stages = [Stage("01_data", tmp_path / "a"), Stage("02_rna_encoding", tmp_path / "b"),
              Stage("03_rna_survival", tmp_path / "c")]
    assert select_stages(stages, ["rna_e"]) == [stages[1]]
    assert select_stages(stages, ["dat"]) == [stages[0]]
    with pytest.raises(ValueError, match="ambiguous stage 'rna'"):
        select_stages(stages, ["rna"])
