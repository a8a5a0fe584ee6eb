"""Run the study: execute the chapter notebooks in order with papermill, into the run directory.

A *stage* is one notebook ``notebooks/NN_name.ipynb``. Executing it writes ``<run_dir>/notebooks/NN_name.ipynb``
(atomically: the notebook is executed into a temporary file that is renamed only on success) and then a
completion record ``<run_dir>/notebooks/NN_name.done.json`` holding the injected parameters and the sha256 of
the source notebook. A stage is *finished* when both files exist and the record matches the parameters and
source of now; finished stages are skipped unless forced, so a run can be resumed or one chapter rerun alone.

Every stage receives the parameters ``profile``, ``run_dir`` (relative to the notebooks' working directory when
it lies below it, so executed notebooks and the book show ``runs/demo`` rather than a machine's absolute path;
absolute otherwise), ``seed`` and ``device`` from the
:class:`~gbhet_lib.config.StudyConfig`; ``data_mirror`` and ``cache_dir`` from it too when its ``parameters`` cell
declares them; plus those extra overrides that its ``parameters`` cell declares.
Overrides are checked before any kernel starts (:mod:`gbhet_lib.parameters`): a name no selected stage declares,
or a value that does not fit a stage's default or allowed values, is a :class:`~gbhet_lib.errors.UsageError`.

A failing cell, a cell that runs past the per-cell timeout (``cell_timeout``; by default
:data:`DEFAULT_CELL_TIMEOUT_S` for the profile) or a kernel that dies (killed for memory, a crash in native code)
stops the run with :class:`StageFailed`, which names the stage and the cell; the partially executed notebook,
traceback included, is kept as ``<run_dir>/notebooks/NN_name.failed.ipynb``.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import nbformat
import papermill
from nbclient.exceptions import CellTimeoutError, DeadKernelError

from .config import StudyConfig
from .errors import GbhetError, UsageError
from .io import atomic_path, file_sha256, read_json, write_json_atomic
from .parameters import Parameter, check_overrides, declared_parameters
from .rundir import RunDir, init_run_dir

#: parameters every stage receives from the StudyConfig (overrides may not set them)
CONFIG_PARAMETERS: tuple[str, ...] = ("profile", "run_dir", "seed", "device")
#: further StudyConfig fields, injected into the stages whose ``parameters`` cell declares them
OPTIONAL_CONFIG_PARAMETERS: tuple[str, ...] = ("data_mirror", "cache_dir")
#: the default limit on one cell's run time, seconds, by profile: an hour on the CPU profiles; a day on the GPU
#: ones, whose training cells run for hours (``cell_timeout=0`` lifts the limit)
DEFAULT_CELL_TIMEOUT_S: dict[str, int] = {"demo": 3600, "reference": 3600, "full": 86400, "stemri": 86400}
STAGE_GLOB = "[0-9][0-9]_*.ipynb"
_STAGE_NAME = re.compile(r"^(?P<number>\d\d)_(?P<name>.+)$")


@dataclass(frozen=True)
class Stage:
    """One chapter notebook; ``name`` is the file stem, e.g. ``01_data``."""

    name: str
    path: Path

    @property
    def keys(self) -> frozenset[str]:
        """The names that select this stage: ``01_data``, ``01``, ``1`` and ``data``."""
        match = _STAGE_NAME.match(self.name)
        if match is None:
            return frozenset({self.name})
        number = match["number"]
        return frozenset({self.name, number, str(int(number)), match["name"]})


@dataclass(frozen=True)
class StageResult:
    """What :func:`run_study` did with one stage; ``output`` is the executed notebook in the run dir."""

    stage: str
    status: Literal["ran", "skipped"]
    duration_s: float
    output: Path


FailureKind = Literal["error", "timeout", "dead_kernel"]


class StageFailed(GbhetError, RuntimeError):
    """A stage's notebook stopped: a cell raised, ran past the cell timeout, or its kernel died. The message says
    which stage and cell, and where the partially executed notebook is.

    Attributes:
        stage: the stage name, e.g. ``01_data``.
        notebook: the source notebook.
        cell_index: 0-based position of the failing cell in the source notebook (the message counts from 1);
            None when it is not known.
        execution_count: the cell's ``In [n]`` number in the executed notebook, if it ran.
        ename, evalue: the exception's type name and message (for a timeout or a dead kernel, nbclient's).
        failed_notebook: the partially executed notebook, with the traceback.
        kind: ``error`` (a cell raised), ``timeout`` (a cell ran past ``timeout_s``) or ``dead_kernel``.
        timeout_s: the cell timeout in force (seconds), for ``kind="timeout"``.
    """

    def __init__(self, stage: str, notebook: Path, cell_index: int | None, execution_count: int | None,
                 ename: str, evalue: str, failed_notebook: Path, kind: FailureKind = "error",
                 timeout_s: float | None = None) -> None:
        self.stage = stage
        self.notebook = notebook
        self.cell_index = cell_index
        self.execution_count = execution_count
        self.ename = ename
        self.evalue = evalue
        self.failed_notebook = failed_notebook
        self.kind = kind
        self.timeout_s = timeout_s
        super().__init__(stage, notebook, cell_index, execution_count, ename, evalue, failed_notebook)

    def __str__(self) -> str:
        return self.describe()

    def describe(self, timeout_fix: str = "run_study(cell_timeout=SECONDS)") -> str:
        """The one-line message; ``timeout_fix`` says how the caller allows a cell more time (the command line
        passes ``--cell-timeout SECONDS``)."""
        where = "an unknown cell" if self.cell_index is None else f"cell {self.cell_index + 1}"
        if self.execution_count is not None:
            where += f" (In [{self.execution_count}])"
        saved = f"The executed notebook with the traceback is at {display_path(self.failed_notebook)}"
        head = f"stage {self.stage} failed: {display_path(self.notebook)}, {where}"
        if self.kind == "timeout":
            return (f"{head} ran longer than the cell timeout of {self.timeout_s:g} s and was stopped. Allow more "
                    f"with {timeout_fix} (0: no limit). {saved}")
        if self.kind == "dead_kernel":
            return (f"{head}: the kernel died while running it (killed for memory, or a crash in native code); "
                    f"check the machine's free memory or lower the chapter's sizes. {saved}")
        error = f"{self.ename}: {self.evalue}" if self.evalue else self.ename
        stop = "" if error.rstrip().endswith((".", "!", "?")) else "."  # a message that ends its own sentence
        return f"{head}: {error.rstrip()}{stop} {saved}"


def discover_stages(notebook_dir: Path) -> list[Stage]:
    """The stages in ``notebook_dir``: its ``NN_name.ipynb`` files, sorted by name."""
    paths = sorted(Path(notebook_dir).glob(STAGE_GLOB))
    if not paths:
        raise UsageError(f"no stage notebooks ({STAGE_GLOB}) in folder {str(notebook_dir)!r}. "
                         "Pass the folder that holds the study's notebooks, e.g. notebooks/.")
    return [Stage(path.stem, path) for path in paths]


def select_stages(stages: list[Stage], only: list[str] | None) -> list[Stage]:
    """The stages named in ``only`` (all when ``only`` is empty or None), in study order.

    A stage ``02_rna_encoding`` is named by ``02_rna_encoding``, ``02``, ``2``, ``rna_encoding`` or a prefix of
    its name that no other stage shares (``rna``); an unknown or ambiguous name is a UsageError (a ValueError) that
    lists the valid ones.
    """
    if not only:
        return list(stages)
    chosen: set[str] = set()
    for key in only:
        exact = [stage for stage in stages if key in stage.keys]
        matches = exact or [stage for stage in stages if _bare_name(stage).startswith(key)]
        if len(matches) != 1:
            problem = "ambiguous" if matches else "unknown"
            raise UsageError(f"{problem} stage {key!r}; valid stages: {', '.join(s.name for s in stages)} (a stage "
                             "may also be named by its number, its name alone or a unique prefix of it, e.g. '1' "
                             "or 'data' for 01_data)")
        chosen.add(matches[0].name)
    return [stage for stage in stages if stage.name in chosen]


def _bare_name(stage: Stage) -> str:
    match = _STAGE_NAME.match(stage.name)
    return match["name"] if match else stage.name


def run_study(config: StudyConfig, notebook_dir: Path = Path("notebooks"), only: list[str] | None = None,
              force: bool = False, parameters: dict[str, Any] | None = None, progress: bool = True,
              kernel_name: str | None = None, cell_timeout: float | None = None) -> list[StageResult]:
    """Execute the selected stages in order into ``config.run_dir`` and say what was done.

    Args:
        config: the run's settings; ``profile``, ``run_dir``, ``seed`` and ``device`` become parameters.
        notebook_dir: the folder of stage notebooks; its parent is the working directory of the notebooks.
        only: stage names to run (see :func:`select_stages`); None runs all.
        force: rerun finished stages too.
        parameters: extra parameter overrides; each stage gets those its ``parameters`` cell declares. They are
            checked before anything runs (:func:`~gbhet_lib.parameters.check_overrides`).
        progress: show papermill's per-cell progress bar (the one-line-per-stage log is always printed).
        kernel_name: the Jupyter kernel to use; None uses each notebook's own kernelspec.
        cell_timeout: the most seconds one cell may run; None (the default) takes the profile's
            :data:`DEFAULT_CELL_TIMEOUT_S`, 0 sets no limit.

    Raises:
        UsageError: an unknown stage or parameter name, a value that does not fit, a bad ``cell_timeout``.
        StageFailed: a cell raised, timed out or its kernel died; later stages are not run.
    """
    notebook_dir = Path(notebook_dir).resolve()
    timeout_s = resolve_cell_timeout(cell_timeout, config.profile)
    stages = select_stages(discover_stages(notebook_dir), only)
    stage_parameters = _parameters_per_stage(config, stages, parameters or {}, cwd=notebook_dir.parent)
    run = init_run_dir(config)
    results = []
    for number, stage in enumerate(stages, start=1):
        prefix = f"[{number}/{len(stages)}] {stage.name} …"
        params = stage_parameters[stage.name]
        reason = "forced" if force else rerun_reason(stage, run, params)
        if reason is None:
            _log(f"{prefix} skipped (finished; use --force to rerun)")
            results.append(StageResult(stage.name, "skipped", 0.0, output_path(run, stage)))
            continue
        _log(f"{prefix} running ({reason})")
        result = _execute(stage, run, params, cwd=notebook_dir.parent, progress=progress,
                          kernel_name=kernel_name, prefix=prefix, timeout_s=timeout_s)
        _log(f"{prefix} done in {result.duration_s:.1f} s")
        results.append(result)
    return results


def resolve_cell_timeout(cell_timeout: float | None, profile: str) -> float | None:
    """Seconds one cell may run (None: no limit) from ``run_study``'s ``cell_timeout`` (see there)."""
    if cell_timeout is None:
        return float(DEFAULT_CELL_TIMEOUT_S.get(profile, 3600))
    if isinstance(cell_timeout, bool) or not isinstance(cell_timeout, (int, float)) or not cell_timeout >= 0:
        raise UsageError(f"cell_timeout={cell_timeout!r} must be a number of seconds >= 0 (0: no limit), e.g. "
                         "cell_timeout=3600")
    return float(cell_timeout) if cell_timeout > 0 else None


def rerun_reason(stage: Stage, run: RunDir, parameters: dict[str, Any]) -> str | None:
    """Why ``stage`` must run with ``parameters``, or None when it is finished (see the module docstring)."""
    if not output_path(run, stage).exists():
        return "not run yet"
    if not record_path(run, stage).exists():
        return "no completion record: the last run did not finish"
    try:
        record = read_json(record_path(run, stage))
    except ValueError:
        return "completion record unreadable"
    if record.get("source_sha256") != file_sha256(stage.path):
        return "notebook changed"
    previous = record.get("parameters", {})
    changed = sorted(name for name in set(previous) | set(parameters) if previous.get(name) != parameters.get(name))
    if changed:
        return f"parameters changed: {', '.join(changed)}"
    return None


def output_path(run: RunDir, stage: Stage) -> Path:
    """``<run_dir>/notebooks/<stage>.ipynb``: the executed notebook of a finished stage."""
    return run.notebooks / f"{stage.name}.ipynb"


def record_path(run: RunDir, stage: Stage) -> Path:
    """``<run_dir>/notebooks/<stage>.done.json``: the completion record of a stage."""
    return run.notebooks / f"{stage.name}.done.json"


def failed_path(run: RunDir, stage: Stage) -> Path:
    """``<run_dir>/notebooks/<stage>.failed.ipynb``: the partially executed notebook of a failed stage."""
    return run.notebooks / f"{stage.name}.failed.ipynb"


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it, else absolute."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _parameters_per_stage(config: StudyConfig, stages: list[Stage], overrides: dict[str, Any],
                          cwd: Path) -> dict[str, dict[str, Any]]:
    """The parameters to inject into each stage (JSON-normalised so they compare equal to the record), after
    checking ``overrides`` against the stages' ``parameters`` cells."""
    reserved = sorted(set(overrides) & set(CONFIG_PARAMETERS + OPTIONAL_CONFIG_PARAMETERS))
    if reserved:
        raise UsageError(f"parameter override(s) {', '.join(reserved)} come from the StudyConfig; "
                         "set them there (e.g. --seed, --run-dir, --data-mirror) instead.")
    declared: dict[str, dict[str, Parameter]] = {stage.name: declared_parameters(stage.path) for stage in stages}
    check_overrides(_json_normalised(overrides), declared)
    run_dir = Path(config.run_dir).resolve()
    if run_dir.is_relative_to(cwd):
        run_dir = run_dir.relative_to(cwd)
    base = {"profile": config.profile, "run_dir": str(run_dir),
            "seed": config.seed, "device": config.device}
    optional = {name: (str(value) if value is not None else None)
                for name in OPTIONAL_CONFIG_PARAMETERS for value in [getattr(config, name)]}
    return {name: _json_normalised({**base, **{k: v for k, v in optional.items() if k in names},
                                    **{k: v for k, v in overrides.items() if k in names}})
            for name, names in declared.items()}


def _json_normalised(parameters: dict[str, Any]) -> dict[str, Any]:
    try:
        return json.loads(json.dumps(parameters, sort_keys=True))
    except (TypeError, ValueError) as err:
        raise UsageError(f"notebook parameters must be JSON values (numbers, strings, lists, ...): {err}") from err


def _execute(stage: Stage, run: RunDir, parameters: dict[str, Any], cwd: Path, progress: bool,
             kernel_name: str | None, prefix: str, timeout_s: float | None = None) -> StageResult:
    """Execute one stage into the run dir; write its completion record on success, raise StageFailed if not
    (after keeping the partial notebook as ``.failed.ipynb``)."""
    record_path(run, stage).unlink(missing_ok=True)  # unfinished from now on, whatever happens
    source_sha256 = file_sha256(stage.path)
    started, clock = datetime.now(timezone.utc), time.perf_counter()
    with atomic_path(output_path(run, stage), suffix=".ipynb") as tmp:
        try:
            papermill.execute_notebook(str(stage.path), str(tmp), parameters=parameters, cwd=str(cwd),
                                       progress_bar=progress, kernel_name=kernel_name, report_mode=False,
                                       log_output=False, execution_timeout=timeout_s)
        except (papermill.PapermillExecutionError, CellTimeoutError, DeadKernelError) as err:
            kept = _keep_failed(tmp, failed_path(run, stage))
            _log(f"{prefix} failed after {time.perf_counter() - clock:.1f} s")
            raise _stage_failed(stage, err, kept, timeout_s) from None
    duration_s = round(time.perf_counter() - clock, 3)
    failed_path(run, stage).unlink(missing_ok=True)
    write_json_atomic(record_path(run, stage), {
        "stage": stage.name,
        "parameters": parameters,
        "source": str(stage.path),
        "source_sha256": source_sha256,
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "duration_s": duration_s,
        "papermill_version": papermill.__version__,
        "cell_timeout_s": timeout_s,
    })
    return StageResult(stage.name, "ran", duration_s, output_path(run, stage))


def _keep_failed(tmp: Path, target: Path) -> Path:
    """Move the partially executed notebook ``tmp`` (papermill saves it after every cell) to ``target``."""
    if tmp.exists() and tmp.stat().st_size > 0:
        os.replace(tmp, target)
    return target


def _stage_failed(stage: Stage, err: Exception, failed_notebook: Path, timeout_s: float | None) -> StageFailed:
    """StageFailed for ``err``, with the cell index mapped back to the source notebook.

    papermill counts cells in the executed notebook, where it inserted an ``injected-parameters`` cell after
    the ``parameters`` cell (or first, without one) unless the source already had such a cell. A cell error
    names its cell; for a timeout or a dead kernel the cell is the last one the partial notebook started.
    """
    if isinstance(err, papermill.PapermillExecutionError):
        cell_index, count, kind = err.cell_index, err.exec_count, "error"
        ename, evalue = err.ename, err.evalue
    else:
        cell_index, count = _last_started_cell(failed_notebook)
        kind = "timeout" if isinstance(err, CellTimeoutError) else "dead_kernel"
        ename, evalue = type(err).__name__, " ".join(str(err).split())
    source = nbformat.read(stage.path, as_version=4)
    if cell_index is not None and _first_tagged(source, "injected-parameters") < 0:
        injected_at = _first_tagged(source, "parameters") + 1
        if cell_index > injected_at:
            cell_index -= 1
    return StageFailed(stage.name, stage.path, cell_index, count, ename, evalue, failed_notebook, kind=kind,
                       timeout_s=timeout_s)


def _last_started_cell(executed: Path) -> tuple[int | None, int | None]:
    """Index and ``In [n]`` of the last cell papermill started in a partially executed notebook (None, None when
    it cannot be read)."""
    try:
        nb = nbformat.read(executed, as_version=4)
    except (OSError, ValueError):
        return None, None
    started = [i for i, cell in enumerate(nb.cells) if cell.metadata.get("papermill", {}).get("start_time")]
    if not started:
        return None, None
    return started[-1], nb.cells[started[-1]].get("execution_count")


def _first_tagged(nb: nbformat.NotebookNode, tag: str) -> int:
    """Index of the first cell tagged ``tag``, or -1."""
    return next((i for i, cell in enumerate(nb.cells) if tag in cell.metadata.get("tags", [])), -1)


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
