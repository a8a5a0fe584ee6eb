"""Faults stop the work with one clear message and keep what was good: a kernel that dies, a cell past the cell
timeout (each starts a kernel: 2 in all), a training loss that becomes NaN (the last good checkpoint stays)."""
from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import torch
from torch import nn

from gbhet_lib.cli import main
from gbhet_lib.config import StudyConfig
from gbhet_lib.errors import GbhetError, UsageError
from gbhet_lib.runner import DEFAULT_CELL_TIMEOUT_S, StageFailed, resolve_cell_timeout, run_study
from gbhet_lib.training import CHECKPOINT, HISTORY, Run, TrainConfig, constant_lr, fit, read_checkpoint
from gbhet_lib.training.checkpoint import save
from gbhet_lib.training.finite import LossWatch, NonFiniteLossError, check_finite_loss, check_finite_weights

PARAMETERS = 'profile = "demo"\nrun_dir = "x"\nseed = 0\ndevice = "auto"\n'


def write_stage(folder: Path, stage: str, body: list[str]) -> Path:
    """``folder/<stage>.ipynb``: a ``parameters`` cell, then ``body``'s code cells."""
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]}),
                *(nbformat.v4.new_code_cell(src) for src in body)]
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / f"{stage}.ipynb")
    return folder / f"{stage}.ipynb"


# --------------------------------------------------------------------------------------------- the runner
def test_a_dead_kernel_stops_the_run_and_keeps_the_partial_notebook(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "notebooks"
    write_stage(folder, "01_dies", ["print('before the crash')", "import os\nos._exit(1)", "print('never')"])
    write_stage(folder, "02_after", ["open('ran', 'w').close()"])
    config = StudyConfig(profile="demo", run_dir=tmp_path / "run", seed=0, device="cpu")
    with pytest.raises(StageFailed) as caught:
        run_study(config, folder, progress=False)
    err = caught.value
    assert isinstance(err, GbhetError) and isinstance(err, RuntimeError)
    assert (err.kind, err.stage, err.cell_index) == ("dead_kernel", "01_dies", 2)
    assert err.execution_count in (None, 4)  # None when the kernel died before it said it started the cell
    where = "" if err.execution_count is None else " (In [4])"
    assert str(err) == (f"stage 01_dies failed: notebooks/01_dies.ipynb, cell 3{where}: the kernel died while "
                        "running it (killed for memory, or a crash in native code); check the machine's free memory "
                        "or lower the chapter's sizes. The executed notebook with the traceback is at "
                        "run/notebooks/01_dies.failed.ipynb")
    partial = nbformat.read(err.failed_notebook, as_version=4)
    assert "before the crash" in str(partial.cells[2].outputs)  # [parameters, injected, print, crash, never]
    out = config.run_dir / "notebooks"
    assert sorted(p.name for p in out.iterdir()) == ["01_dies.failed.ipynb"]  # no output, no record, no temp file
    assert not (tmp_path / "ran").exists()  # the next stage did not run


def test_a_cell_past_the_timeout_is_one_line_naming_the_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    write_stage(tmp_path / "notebooks", "01_slow", ["x = 1", "import time\ntime.sleep(60)"])
    status = main(["run", "--run-dir", "run", "--notebooks", "notebooks", "--no-progress", "--cell-timeout", "2"])
    err = capsys.readouterr().err
    assert status == 1
    line = next(line for line in err.splitlines() if line.startswith("gbhet run:"))
    assert line == ("gbhet run: stage 01_slow failed: notebooks/01_slow.ipynb, cell 3 (In [4]) ran longer than the "
                    "cell timeout of 2 s and was stopped. Allow more with --cell-timeout SECONDS (0: no limit). The "
                    "executed notebook with the traceback is at run/notebooks/01_slow.failed.ipynb")
    assert "Traceback" not in line
    assert (tmp_path / "run" / "notebooks" / "01_slow.failed.ipynb").is_file()
    assert not (tmp_path / "run" / "notebooks" / "01_slow.ipynb").exists()


def test_the_cell_timeout_defaults_by_profile_and_is_checked() -> None:
    assert resolve_cell_timeout(None, "demo") == DEFAULT_CELL_TIMEOUT_S["demo"] == 3600
    assert resolve_cell_timeout(None, "full") == 86400
    assert resolve_cell_timeout(0, "demo") is None and resolve_cell_timeout(2, "demo") == 2.0
    for bad in (-1, "10", True, math.nan):
        with pytest.raises(UsageError, match="cell_timeout=.* must be a number of seconds >= 0 \\(0: no limit\\)"):
            resolve_cell_timeout(bad, "demo")


# --------------------------------------------------------------------------------------- NaN in training
class _Blows(nn.Module):
    """y = w·x, and a loss that is NaN at one (epoch, step)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(3))


def _nan_run(tmp_path: Path, nan_at: tuple[int, int] | None, epochs: int = 3) -> tuple[Run, Callable, list]:
    model = _Blows()
    config = TrainConfig(epochs=epochs, batch_size=2, lr=1e-2, warmup_lr=1e-2, min_lr=1e-3, warmup_epochs=0,
                         seed=0)
    run = Run(fmt="test/1", what="test", kind="toy", config=config, model_spec={}, modules={"model": model})
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    calls: list[tuple[int, int]] = []

    def step(rows: torch.Tensor) -> dict[str, torch.Tensor]:
        epoch, b = divmod(len(calls), 4)
        calls.append((epoch, b))
        loss = ((x[rows] @ model.w) ** 2).mean()
        if (epoch, b) == nan_at:
            loss = loss * float("nan")
        return {"loss": loss}

    return run, step, calls


def test_a_nan_loss_stops_fit_naming_epoch_and_step_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    run, step, calls = _nan_run(tmp_path, nan_at=(1, 2))
    with pytest.raises(NonFiniteLossError) as caught:
        fit(run, 8, step, None, tmp_path, False, constant_lr)
    err = caught.value
    assert isinstance(err, GbhetError) and isinstance(err, FloatingPointError)
    assert (err.where, err.epoch, err.step) == ("toy", 1, 2) and math.isnan(err.value)
    assert str(err) == (f"toy training stopped: the loss became nan at epoch 1 (as the history counts it), step 2 of "
                        f"it (from 0); the last good checkpoint, {tmp_path / CHECKPOINT}, is kept. To fix it, lower "
                        "the learning rate (lr), check the inputs for NaN or infinite values, or turn bf16 off "
                        "(amp_bf16=False).")
    state = read_checkpoint(tmp_path / CHECKPOINT, "test/1", "test")
    assert state["epoch"] == 0 and len(state["history"]) == 1  # epoch 0's, untouched by the bad epoch
    assert torch.isfinite(state["modules"]["model"]["w"]).all()
    assert len(pd.read_csv(tmp_path / HISTORY, sep="\t")) == 1
    assert torch.isfinite(run.modules["model"].w).all()  # the NaN step was not applied (checked before backward)


def test_a_nan_loss_in_the_first_epoch_says_no_checkpoint_is_kept(tmp_path: Path) -> None:
    run, step, _ = _nan_run(tmp_path, nan_at=(0, 0))
    with pytest.raises(NonFiniteLossError, match=r"at epoch 0 \(as the history counts it\), step 0 of it \(from 0\)\. "
                                                 "To fix it"):
        fit(run, 8, step, None, tmp_path, False, constant_lr)
    assert not (tmp_path / CHECKPOINT).exists()


def test_save_refuses_non_finite_weights_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    run, step, _ = _nan_run(tmp_path, nan_at=None, epochs=1)
    fit(run, 8, step, None, tmp_path, False, constant_lr)
    before = (tmp_path / CHECKPOINT).read_bytes()
    with torch.no_grad():
        run.modules["model"].w[1] = float("inf")
    optimizer = torch.optim.AdamW(run.modules["model"].parameters())
    with pytest.raises(NonFiniteLossError, match=r"toy training stopped: the weights became non-finite \(model\.w\) "
                                                 r"at epoch 1 \(as the history counts it\); the last good checkpoint"):
        save(tmp_path, run, optimizer, {}, torch.device("cpu"), 1, [])
    assert (tmp_path / CHECKPOINT).read_bytes() == before
    check_finite_weights({"model": nn.Linear(2, 2)}, "toy", 0)  # finite: no error


def test_the_deferred_watch_names_the_first_bad_step() -> None:
    """On a GPU the losses stay on the device and are looked at every ``every`` steps (here on the CPU)."""
    watch = LossWatch("fusion", 4, torch.device("cuda"), every=3)
    assert not watch.immediate
    watch.observe(torch.tensor(1.0), 0)
    watch.observe(torch.tensor(float("inf")), 1)  # recorded, not yet looked at
    with pytest.raises(NonFiniteLossError, match=r"the loss became inf at epoch 4 .*, step 1 of it") as caught:
        watch.observe(torch.tensor(float("nan")), 2)  # the third: a look
    assert caught.value.step == 1 and caught.value.checkpoint is None
    watch = LossWatch("fusion", 0, torch.device("cuda"), every=50)
    watch.observe(torch.tensor(2.0), 0)
    watch.observe(torch.tensor(float("nan")), 1)
    with pytest.raises(NonFiniteLossError, match="step 1"):
        watch.check()  # the epoch's end


def test_check_finite_loss_takes_floats_and_tensors() -> None:
    check_finite_loss(torch.tensor(0.5), 1, 0, "autoencoder")
    check_finite_loss(0.5, 1, 0, "autoencoder")
    with pytest.raises(NonFiniteLossError, match="autoencoder training stopped: the loss became -inf at epoch 3"):
        check_finite_loss(float("-inf"), 3, 7, "autoencoder")


def test_the_radiogenomic_epoch_loop_stops_on_a_nan_loss() -> None:
    from gbhet_lib.radiogenomics.training import _train_epoch

    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(6, 3)
    seen: list[int] = []

    def batch_loss(rows: torch.Tensor) -> torch.Tensor:
        seen.append(len(rows))
        loss = model(x[rows]).pow(2).mean()
        return loss * float("nan") if len(seen) == 2 else loss

    before = model.weight.detach().clone()
    with pytest.raises(NonFiniteLossError, match=r"trait network training stopped: the loss became nan at epoch 5 "
                                                 r"\(as the history counts it\), step 1 of it"):
        _train_epoch(model, optimizer, 6, 2, torch.Generator().manual_seed(0), batch_loss, 5, "trait network")
    assert torch.isfinite(model.weight).all() and not torch.equal(model.weight, before)  # step 0 applied, 1 not


def test_a_stage_error_ending_its_own_sentence_gets_no_second_period(tmp_path: Path) -> None:
    failed = StageFailed("02_rna_encoding", tmp_path / "02.ipynb", 3, 4, "UserTableError",
                         "x.csv: set `expression_columns=` in chapter 2's parameters.", tmp_path / "02.failed.ipynb")
    assert "parameters. The executed notebook" in str(failed) and ".." not in str(failed)
    plain = StageFailed("02_rna_encoding", tmp_path / "02.ipynb", 3, 4, "KeyError", "'TP53'", tmp_path / "f.ipynb")
    assert "KeyError: 'TP53'. The executed notebook" in str(plain)
