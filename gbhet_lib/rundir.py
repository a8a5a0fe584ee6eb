"""The run directory: one folder holds everything a study run reads and writes.

Layout (DESIGN.md)::

    <run_dir>/config.json      the StudyConfig of the run
    <run_dir>/data/            cohort tables, slides, truth (demo), fetched files (other profiles)
    <run_dir>/models/          checkpoints
    <run_dir>/features/        one HDF5 per slide (coords N×2 at level 0, features N×D)
    <run_dir>/metrics/         <stage>.json, one per finished stage
    <run_dir>/figures/         figures the chapters save
    <run_dir>/notebooks/       executed notebooks (what the book renders)

Every artifact a chapter reads or writes is named once, on :class:`RunDir` (``run.expression``,
``run.wsi_record``, ``run.split_path("wsi-slide")`` …); the stage modules (``gbhet_lib/<stage>/stage.py``) say
which stage writes and which reads each one. :class:`StageRecord` is the base of the typed records a stage leaves
for later ones (e.g. ``models/rna/encoder.json``): written atomically, validated when read.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from .config import ConfigError, StudyConfig
from .errors import GbhetError
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

    @classmethod
    def of(cls, run_dir: str | Path | RunDir) -> RunDir:
        """The :class:`RunDir` of a path (or the same object); creates nothing."""
        return run_dir if isinstance(run_dir, RunDir) else cls(Path(run_dir))

    def relative(self, path: str | Path) -> str:
        """``path`` relative to the run directory (as records store paths); relative paths are kept."""
        path = Path(path)
        return str(path.relative_to(self.root) if path.is_absolute() or
                   path.parts[:len(self.root.parts)] == self.root.parts else path)

    # ---- chapter 1 (data): the cohort and fetched files
    @property
    def cohort(self) -> Path:
        """``data/cohort``: tables, slides, ``truth.json``, ``cohort.json`` (see :mod:`gbhet_lib.data.cohort`)."""
        return self.data / "cohort"

    def figure(self, name: str) -> Path:
        """``figures/<name>`` (e.g. ``01_expression.png``)."""
        return self.figures / name

    # ---- chapter 2 (RNA)
    @property
    def expression(self) -> Path:
        """``data/rna_expression.h5ad``: samples × genes AnnData (log expression in X, size factors, role, pool
        split, scaling, and the encoder's embedding in ``obsm["X_rna_encoder"]``)."""
        return self.data / "rna_expression.h5ad"

    @property
    def rna_models(self) -> Path:
        return self.models / "rna"

    @property
    def gene_tokens(self) -> Path:
        """``models/rna/gene_tokens.json``: the gene tokens the RNA encoder was trained on."""
        return self.rna_models / "gene_tokens.json"

    @property
    def rna_record(self) -> Path:
        """``models/rna/encoder.json``: chapter 2's :class:`~gbhet_lib.rna.stage.RnaEncoderRecord`."""
        return self.record("rna")

    # ---- chapter 3 (WSI)
    @property
    def wsi_models(self) -> Path:
        return self.models / "wsi"

    @property
    def wsi_record(self) -> Path:
        """``models/wsi/encoder.json``: chapter 3's :class:`~gbhet_lib.wsi.stage.WsiEncoderRecord`."""
        return self.record("wsi")

    @property
    def coords(self) -> Path:
        """``features/coords``: one tiling file ``<slide>.h5`` per slide (level-0 coords + attributes)."""
        return self.features / "coords"

    def coords_file(self, slide: str) -> Path:
        return self.coords / f"{slide}.h5"

    @property
    def patch_stores(self) -> Path:
        """``features/patches``: one uint8 patch store ``<slide>.h5`` per slide."""
        return self.features / "patches"

    def patch_store(self, slide: str) -> Path:
        return self.patch_stores / f"{slide}.h5"

    def features_file(self, slide: str) -> Path:
        """``features/<slide>.h5``: ``features`` N×D and ``coords`` N×2 of one slide."""
        return self.features / f"{slide}.h5"

    @property
    def real_coords(self) -> Path:
        """``features/real_coords``: tiling files of the real slides of the reference profile."""
        return self.features / "real_coords"

    # ---- splits (chapter 3 and later) and fusion (chapter 4)
    @property
    def splits(self) -> Path:
        """``models/splits``: one split file ``<name>.json`` per drawn split (:mod:`gbhet_lib.evaluate`)."""
        return self.models / "splits"

    def split_path(self, name: str) -> Path:
        return self.splits / f"{name}.json"

    @property
    def fusion_models(self) -> Path:
        """``models/fusion``: fusion checkpoints and records (see :mod:`gbhet_lib.fusion.stage`)."""
        return self.models / "fusion"

    @property
    def pairing(self) -> Path:
        """``data/fusion/pairing.h5``: lineage RNA, the pool and token sets, for fusion training."""
        return self.data / "fusion" / "pairing.h5"

    @property
    def expression_models(self) -> Path:
        """``models/expression``: chapter 7's image→expression models, one folder per model and fold."""
        return self.models / "expression"

    @property
    def expression_inputs(self) -> Path:
        """``data/expression_from_images/inputs.h5``: chapter 7's prepared inputs (targets, slide bags, MRI crops)."""
        return self.data / "expression_from_images" / "inputs.h5"

    def record(self, stage: str) -> Path:
        """``models/<stage>/encoder.json``: the encoder record of a stage (``rna``, ``wsi``)."""
        return self.models / stage / "encoder.json"

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


def open_run(profile: str, run_dir: str | Path, seed: int = 0, device: str = "auto",
             data_mirror: str | Path | None = None, cache_dir: str | Path | None = None) -> tuple[StudyConfig, RunDir]:
    """A chapter's start: its validated :class:`~gbhet_lib.config.StudyConfig` (from the notebook's parameters)
    and the run directory, created and checked by :func:`init_run_dir`."""
    config = StudyConfig(profile=profile, run_dir=run_dir, seed=seed, device=device, data_mirror=data_mirror,
                         cache_dir=cache_dir)
    return config, init_run_dir(config)


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


class RecordError(GbhetError, ValueError):
    """A stage record is missing, unreadable or lacks a field; the message names the file and the fix."""


_R = TypeVar("_R", bound="StageRecord")


@dataclass(frozen=True)
class StageRecord:
    """Base of the typed records a stage leaves in the run directory (JSON, paths relative to the run).

    Subclasses are frozen dataclasses that set ``STAGE`` (the folder under ``models/``) and ``CHAPTER`` (the
    notebook that writes them, e.g. ``02_rna_encoding``). Fields without a default are required when read.
    """

    STAGE: ClassVar[str] = ""
    CHAPTER: ClassVar[str] = ""

    @classmethod
    def path(cls, run: str | Path | RunDir) -> Path:
        return RunDir.of(run).record(cls.STAGE)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def write(self, run: str | Path | RunDir) -> Path:
        """Write the record atomically to :meth:`path`."""
        return write_json_atomic(self.path(run), self.to_dict())

    @classmethod
    def _fix(cls, run: RunDir) -> str:
        return (f"rerun chapter {cls.CHAPTER[:2].lstrip('0')} with "
                f"`gbhet run --run-dir {run.root} --only {cls.CHAPTER} --force`")

    @classmethod
    def read(cls: type[_R], run: str | Path | RunDir) -> _R:
        """Read and validate the record: a missing file or field is a :class:`RecordError` naming the file, the
        field and the fix (rerun the chapter that writes it); unknown fields are kept out."""
        run = RunDir.of(run)
        path = cls.path(run)
        if not path.exists():
            raise RecordError(f"{path} is missing (chapter {cls.CHAPTER}'s record): {cls._fix(run)}")
        try:
            raw = read_json(path)
        except ValueError as err:
            raise RecordError(f"{path} is not valid JSON ({err}): {cls._fix(run)}") from err
        if not isinstance(raw, dict):
            raise RecordError(f"{path} must hold a JSON object: {cls._fix(run)}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        required = [n for n, f in fields.items() if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING]  # type: ignore[misc]
        missing = [n for n in required if n not in raw]
        if missing:
            raise RecordError(f"{path} has no field {missing[0]!r}" + (f" (nor {missing[1:]})" if missing[1:] else "")
                              + f"; it was written by an older or interrupted chapter {cls.CHAPTER}: {cls._fix(run)}")
        record = cls(**{k: v for k, v in raw.items() if k in fields})
        problem = record.problem()
        if problem:
            raise RecordError(f"{path}: {problem}: {cls._fix(run)}")
        return record

    def problem(self) -> str | None:
        """What is wrong with the field values (None when they are fine); subclasses check their fields."""
        return None
