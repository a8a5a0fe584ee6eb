"""The run directory: one folder holds everything a study run reads and writes.

Layout (DESIGN.md)::

    <run_dir>/config.json      the StudyConfig of the run
    <run_dir>/data/            cohort tables, slides, truth (demo), fetched files (other profiles)
    <run_dir>/models/          checkpoints
    <run_dir>/features/        one HDF5 per slide (coords N×2 at level 0, features N×D)
    <run_dir>/metrics/         <stage>.json, one per finished stage
    <run_dir>/figures/         figures the chapters save
    <run_dir>/notebooks/       executed notebooks (what the book renders)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import ConfigError, StudyConfig
from .io import read_json, write_json_atomic

SUBDIRS: tuple[str, ...] = ("data", "models", "features", "metrics", "figures", "notebooks")
#: config fields that define a run's results; a run dir may not be reused with other values
IDENTITY_FIELDS: tuple[str, ...] = ("profile", "seed")


@dataclass(frozen=True)
class RunDir:
    """Paths of one run directory (see the module docstring)."""

    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def features(self) -> Path:
        return self.root / "features"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def notebooks(self) -> Path:
        return self.root / "notebooks"

    def metrics_path(self, stage: str) -> Path:
        return self.metrics / f"{stage}.json"

    def create(self) -> RunDir:
        """Create every sub-folder (idempotent) and return self."""
        for name in SUBDIRS:
            (self.root / name).mkdir(parents=True, exist_ok=True)
        return self


def init_run_dir(config: StudyConfig) -> RunDir:
    """Create the run directory of ``config`` and record the config in ``config.json``.

    A run directory belongs to one profile and seed: reusing it with other values would mix results, so
    that is an error that says how to proceed. Device and paths may differ between sessions (a run
    started on a laptop can be continued on a GPU server).
    """
    run = RunDir(Path(config.run_dir)).create()
    current = config.to_dict()
    if run.config_path.exists():
        previous = read_json(run.config_path)
        clash = {k: (previous.get(k), current[k]) for k in IDENTITY_FIELDS if previous.get(k) != current[k]}
        if clash:
            detail = ", ".join(f"{k}: {old!r} in config.json vs {new!r} now" for k, (old, new) in clash.items())
            raise ConfigError(f"run_dir {run.root} was made with other settings ({detail}). "
                              "Use a new run_dir, or delete this one to start over.")
    write_json_atomic(run.config_path, current)
    return run


def write_metrics(run: RunDir, stage: str, metrics: dict[str, Any]) -> Path:
    """Write ``metrics/<stage>.json`` atomically."""
    return write_json_atomic(run.metrics_path(stage), metrics)


def settings_folder(root: Path, prefix: str, *settings: Any) -> Path:
    """``root/<prefix>-<digest of settings>``: one folder per training configuration (and inputs), so a rerun
    with the same settings resumes its checkpoint and one with other settings starts afresh beside it."""
    import hashlib
    import json

    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return Path(root) / f"{prefix}-{digest}"


def write_model_record(run: RunDir, stage: str, checkpoint: str | Path, **fields: Any) -> Path:
    """``models/<stage>/encoder.json``: where a stage's trained encoder is and how it was made (paths relative to
    the run directory), for the chapters that build on it. ``fields`` must be JSON-compatible."""
    checkpoint = Path(checkpoint)
    if checkpoint.is_absolute() or checkpoint.parts[:len(run.root.parts)] == run.root.parts:
        checkpoint = checkpoint.relative_to(run.root)
    return write_json_atomic(run.models / stage / "encoder.json", {"checkpoint": str(checkpoint), **fields})
