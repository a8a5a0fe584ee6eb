"""StudyConfig validation and the run directory."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from gbhet_lib import config as config_module
from gbhet_lib.config import ConfigError, StudyConfig
from gbhet_lib.rundir import SUBDIRS, init_run_dir, write_metrics


def test_valid_config_creates_run_dir_and_round_trips(tmp_path: Path) -> None:
    cfg = StudyConfig(profile="reference", run_dir=tmp_path / "runs" / "a", seed=3, device="cpu")
    assert cfg.run_dir.is_dir() and cfg.run_dir.is_absolute()
    assert cfg.resolved_device == "cpu"
    assert StudyConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


@pytest.mark.parametrize("kwargs, message", [
    ({"profile": "tcga"}, "profile='tcga' is not one of demo, reference, full, stemri"),
    ({"seed": -1}, "seed=-1 must be a non-negative integer"),
    ({"seed": 1.5}, "seed=1.5"),
    ({"device": "tpu"}, "device='tpu' is not one of"),
])
def test_invalid_values_are_clear_errors(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        StudyConfig(run_dir=tmp_path, **kwargs)


def test_unwritable_run_dir_says_what_to_do(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="run_dir=.* is not a writable folder .*Pass run_dir="):
        StudyConfig(run_dir=blocker / "run")


def test_cuda_without_gpu_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_module, "cuda_available", lambda: False)
    with pytest.raises(ConfigError, match="device='cuda' but torch sees no CUDA GPU.*device='auto'"):
        StudyConfig(run_dir=tmp_path, device="cuda")
    assert StudyConfig(run_dir=tmp_path, device="auto").resolved_device == "cpu"


def test_data_mirror_from_environment_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config_module.ENV_DATA_MIRROR, str(tmp_path))
    assert StudyConfig(run_dir=tmp_path / "r").data_mirror == tmp_path.resolve()
    monkeypatch.setenv(config_module.ENV_DATA_MIRROR, str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="data_mirror=.*missing.* is not a folder"):
        StudyConfig(run_dir=tmp_path / "r")


def test_unknown_config_keys_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown config keys \['epochs'\]"):
        StudyConfig.from_dict({"run_dir": str(tmp_path), "epochs": 3})


def test_run_dir_layout_and_identity(tmp_path: Path) -> None:
    run = init_run_dir(StudyConfig(run_dir=tmp_path / "run", seed=1))
    assert all((run.root / name).is_dir() for name in SUBDIRS)
    assert json.loads(run.config_path.read_text())["seed"] == 1
    init_run_dir(StudyConfig(run_dir=tmp_path / "run", seed=1, device="cpu"))  # device may change
    with pytest.raises(ConfigError, match="made with other settings.*seed: 1 in config.json vs 2 now"):
        init_run_dir(StudyConfig(run_dir=tmp_path / "run", seed=2))
    path = write_metrics(run, "01_data", {"n": 3})
    assert json.loads(path.read_text()) == {"n": 3}
    assert not list(run.metrics.glob(".*"))  # no temporary files left behind


def test_a_notebook_shows_the_config_without_the_machines_paths(tmp_path, monkeypatch) -> None:
    from IPython.lib.pretty import pretty

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mirror").mkdir()
    config = StudyConfig(run_dir=tmp_path / "runs" / "x", data_mirror=tmp_path / "mirror", cache_dir=tmp_path / "c")
    shown = pretty(config)
    assert shown.startswith("StudyConfig(profile='demo', run_dir='runs/x', seed=0, device='auto' (")
    assert "data_mirror=set" in shown and str(tmp_path) not in shown
