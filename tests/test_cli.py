"""The gbhet command line: synth, argument and parameter errors of run and train-fusion (one line, exit 2, before
any work), tile's messages in its own flags, and how errors map to exit statuses."""
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
    (["--set", "n_patients=[1,2"], "--set 'n_patients=[1,2': the value is not valid YAML (expected ',' or ']'"),
    (["--set", "n_patients=four"], "parameter n_patients='four' is a string (str), but n_patients takes an integer "
                                   "(01_data declares n_patients = 8); write the number in digits, e.g. 8"),
    (["--set", "n_patient=4"], "unknown parameter override(s) n_patient: no selected stage (01_data, "),
    (["--set", "n_patient=4"], "declares it; did you mean n_patients or "),
    (["--only", "3", "--set", "split_policy=random"],
     "parameter split_policy='random': 'random' is not one of 'patch', 'slide', 'lineage', 'patient' "
     "(03_wsi_encoding declares split_policy = \"slide\")"),
    (["--only", "2", "--set", "epochs=null"], "parameter epochs=None is not allowed (02_rna_encoding declares "
                                              "epochs = 40): give an integer"),
])
def test_run_argument_errors(tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], message: str) -> None:
    """Bad usage: exit 2 and one line on stderr, before any kernel starts (no notebook in the run dir)."""
    assert main(["run", "--run-dir", str(tmp_path / "run"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and err.startswith("gbhet run: error: ") and "Traceback" not in err
    assert not (tmp_path / "run" / "notebooks").exists()


def test_flag_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["run", "--run-dir", str(tmp_path / "run"), "--cell-timeout", "-1"])
    assert caught.value.code == 2
    assert capsys.readouterr().err == ("gbhet run: error: argument --cell-timeout: '-1' must be a number of seconds "
                                       ">= 0 (0: no limit) (see gbhet run --help)\n")


@pytest.mark.parametrize("args, message", [
    (["--set", "foo=1"], "--set foo=...: FusionConfig has no field foo; known: "),
    (["--set", "symetric=true"], "FusionConfig has no field symetric; did you mean symmetric?"),
    (["--set", "frozen_mode=live"], "parameter frozen_mode='live': 'live' is not one of 'eval', 'train' "
                                    "(FusionConfig declares frozen_mode = 'eval')"),
    (["--set", "lr=fast"], "parameter lr='fast' is a string (str), but lr takes a number"),
    (["--set", "device=cuda"], "--set device=...: set it with --device instead"),
    (["--set", "epochs=0"], "epochs=0 must be at least 1"),
    (["--epochs", "0"], "epochs=0 must be at least 1"),
    (["--set", "c_itc=0", "--set", "c_itm=0"], "loss weights c_itc, c_itm, c_rec must be non-negative and not all "
                                               "zero"),
    (["--set", "temperature=[1"], "the value is not valid YAML"),
])
def test_train_fusion_checks_its_whole_config_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                             monkeypatch: pytest.MonkeyPatch, args: list[str],
                                                             message: str) -> None:
    import gbhet_lib.fusion.stage as fusion_stage

    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("train_variant ran (and could have trained encoders) with a bad config")

    monkeypatch.setattr(fusion_stage, "train_variant", must_not_run)
    status = main(["train-fusion", "--run-dir", str(tmp_path), "--variant", "best", "--device", "cpu", *args])
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.startswith("gbhet train-fusion: error: ") and message in err and err.count("\n") == 1


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


def test_unexpected_errors_are_one_line_with_exit_1_and_debug_shows_the_traceback(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import gbhet_lib.cli as cli

    def broken(args: object) -> int:
        raise KeyError("cohort")

    monkeypatch.setattr(cli, "_cmd_book", broken)
    monkeypatch.delenv(cli.ENV_DEBUG, raising=False)
    assert main(["book"]) == 1
    assert capsys.readouterr().err == ("gbhet book: error: KeyError: 'cohort' (unexpected: rerun with gbhet --debug or "
                                       "GBHET_DEBUG=1 for the traceback, and report it)\n")
    with pytest.raises(KeyError):
        main(["--debug", "book"])
    monkeypatch.setenv(cli.ENV_DEBUG, "1")
    with pytest.raises(KeyError):
        main(["book"])


def test_failed_work_exits_1_and_bad_usage_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import gbhet_lib.cli as cli
    from gbhet_lib.errors import GbhetError
    from gbhet_lib.training.finite import NonFiniteLossError

    for error, status in ((NonFiniteLossError("fusion", 1, 2, float("nan")), 1), (GbhetError("gone\nwrong"), 1),
                          (FileNotFoundError("no cohort"), 2), (ValueError("bad"), 2)):
        def raising(args: object, error: Exception = error) -> int:
            raise error

        monkeypatch.setattr(cli, "_cmd_book", raising)
        assert main(["book"]) == status
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("gbhet book: error: "), err
    assert "gone wrong" in cli.error_report(GbhetError("gone\nwrong"))[1]  # one line


def _slide(path: Path, tags: bool) -> Path:
    """A 512×512 tiled TIFF that openslide opens, with or without µm/px tags."""
    import numpy as np
    import tifffile

    rgb = np.full((512, 512, 3), 240, np.uint8)
    rgb[128:384, 128:384] = (180, 80, 160)
    extra = {"resolution": (1e4 / 0.5, 1e4 / 0.5), "resolutionunit": "CENTIMETER"} if tags else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, rgb, tile=(256, 256), photometric="rgb", compression="jpeg", **extra)
    return path


def test_tile_messages_name_the_command_s_flags(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    slides = tmp_path / "slides"
    _slide(slides / "nompp.tif", tags=False)
    assert main(["tile", str(slides), "--out", str(tmp_path / "out"), "--jobs", "1", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert (f"gbhet tile: {slides / 'nompp.tif'} FAILED: ValueError: slide {slides / 'nompp.tif'} has no µm/px "
            "(openslide.mpp-x/y tags): give its level-0 µm/px with --mpp (e.g. --mpp 0.25 for a 40x scan; it applies "
            "to every slide tiled), or re-export the slide with resolution tags.") in err
    assert "mpp_override" not in err
    assert main(["tile", str(slides), "--out", str(tmp_path / "out"), "--jobs", "1", "--mpp", "0.5",
                 "--mag", "10", "--patch", "64", "--no-progress"]) == 0
    assert (tmp_path / "out" / "nompp.h5").is_file()
    capsys.readouterr()

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["tile", str(empty), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err == (f"gbhet tile: error: {empty}: no slide files matching *.svs, *.tif, *.tiff, *.ndpi, *.mrxs (it is "
                   "empty). Put the slides there, pass --pattern '*.EXT' for other extensions (repeatable), or "
                   "--recursive for sub-folders.\n")
    assert "patterns=" not in err and "recursive=True" not in err


def test_tile_pattern_and_recursive_widen_the_search(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _slide(tmp_path / "slides" / "case1" / "a.scan.tif", tags=True)
    (tmp_path / "slides" / "case1" / "a.scan.tif").rename(tmp_path / "slides" / "case1" / "a.qptiff")
    args = ["tile", str(tmp_path / "slides"), "--out", str(tmp_path / "out"), "--jobs", "1", "--no-progress",
            "--patch", "64"]
    assert main([*args, "--pattern", "*.qptiff"]) == 2  # not in the folder itself
    assert "--recursive for sub-folders" in capsys.readouterr().err
    assert main([*args, "--pattern", "*.qptiff", "--recursive"]) == 0
    assert (tmp_path / "out" / "a.h5").is_file()


@pytest.mark.parametrize("flag, value, message", [
    ("--mpp", "-1", "argument --mpp: '-1' must be > 0"), ("--mag", "x", "argument --mag: 'x' is not a number"),
    ("--patch", "0", "argument --patch: '0' must be > 0"), ("--min-tissue", "2", "must be a fraction in [0, 1]"),
    ("--overlap", "-1", "argument --overlap: '-1' must be >= 0"), ("--mpp", "nan", "must be a finite number"),
])
def test_tile_flag_values_are_checked_in_flag_terms(tmp_path: Path, capsys: pytest.CaptureFixture, flag: str,
                                                    value: str, message: str) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["tile", str(tmp_path), "--out", str(tmp_path / "o"), flag, value])
    err = capsys.readouterr().err
    assert caught.value.code == 2 and message in err and err.count("\n") == 1
    assert err.endswith("(see gbhet tile --help)\n")
