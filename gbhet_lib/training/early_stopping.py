"""Early stopping for the one loop (:func:`~gbhet_lib.training.loop.fit`'s ``stop``) and the best epoch's weights.

* :func:`best_epoch`: the row of a history where a metric was best (the first such row; NaN never counts);
* :func:`patience_stop`: a ``stop`` rule, True once ``patience`` epochs have passed without improvement (and, if
  given, at least ``min_epochs`` epochs have run);
* :class:`KeepBest`: a ``stop`` rule that also keeps the weights of the best epoch in ``best.pt`` beside
  ``last.pt`` (written atomically), and :meth:`KeepBest.restore` to load them at the end.

Why ``best.pt`` survives a resume: :func:`fit` calls ``stop`` after each epoch's ``last.pt`` is saved, and once on
resume with the history read back; either time the modules hold the weights of the history's last epoch. So
``KeepBest`` saves them exactly when that last epoch is the best one and ``best.pt`` does not hold it yet: a job
killed between ``last.pt`` and ``best.pt`` catches up on resume. ``best.pt`` records its epoch, and
:meth:`KeepBest.restore` refuses weights that are not those of the history's best epoch.

Imports only torch and pandas (plus this package's stdlib-only helpers): it runs on the GPU machine.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Literal, Mapping

import pandas as pd
import torch
from torch import nn

from ..io import atomic_path
from .checkpoint import CHECKPOINT, load_weights
from .distributed import distributed

BEST = "best.pt"
Mode = Literal["max", "min"]


def _check(metric: str, mode: str, patience: int | None = None, min_epochs: int = 0) -> None:
    if not isinstance(metric, str) or not metric:
        raise ValueError(f"metric={metric!r} must be a history column name, e.g. 'val_r'")
    if mode not in ("max", "min"):
        raise ValueError(f"mode={mode!r} must be 'max' (higher is better) or 'min' (lower is better)")
    if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int) or patience < 1):
        raise ValueError(f"patience={patience!r} must be a positive integer (epochs without improvement)")
    if isinstance(min_epochs, bool) or not isinstance(min_epochs, int) or min_epochs < 0:
        raise ValueError(f"min_epochs={min_epochs!r} must be a non-negative integer (epochs before stopping may "
                         "begin)")


def best_epoch(history: pd.DataFrame, metric: str, mode: Mode) -> int | None:
    """The ``epoch`` of the history row where ``metric`` was best (``max`` or ``min``), the first one on ties;
    None when the metric is NaN in every row (or there are no rows). A missing column is a KeyError naming it."""
    _check(metric, mode)
    if metric not in history.columns:
        raise KeyError(f"the history has no column {metric!r} (it has {list(history.columns)}); does the "
                       "trainer's evaluate() return it (fit prefixes its names with 'val_')?")
    values = pd.to_numeric(history[metric], errors="coerce").to_numpy(dtype=float)
    best, where = None, None
    for i, v in enumerate(values):
        if math.isnan(v):
            continue
        if best is None or (v > best if mode == "max" else v < best):
            best, where = v, i
    if where is None:
        return None
    return int(history["epoch"].iloc[where]) if "epoch" in history.columns else where


def _epochs_without_improvement(history: pd.DataFrame, metric: str, mode: Mode) -> int:
    best = best_epoch(history, metric, mode)
    if best is None:
        return len(history)
    epochs = history["epoch"].tolist() if "epoch" in history.columns else list(range(len(history)))
    return len(history) - 1 - epochs.index(best)


def patience_stop(metric: str, patience: int, mode: Mode = "max",
                  min_epochs: int = 0) -> Callable[[pd.DataFrame], bool]:
    """A ``stop`` rule for :func:`~gbhet_lib.training.loop.fit`: True once the last ``patience`` epochs brought no
    improvement of ``metric`` (strictly better than the best so far; NaN is no improvement) and at least
    ``min_epochs`` epochs have run.

    With an improvement at epoch e, training stops after epoch max(e + ``patience``, ``min_epochs`` − 1) (HE2RNA:
    patience 50 on the validation correlation, ``mode="max"``). ``min_epochs`` guards a model whose validation
    score stays at chance for its first epochs while it learns, so that a noisy early peak on a small
    validation set cannot end it.
    """
    _check(metric, mode, patience, min_epochs)

    def stop(history: pd.DataFrame) -> bool:
        return len(history) >= max(1, min_epochs) and \
            _epochs_without_improvement(history, metric, mode) >= patience

    return stop


class KeepBest:
    """A ``stop`` rule that keeps the best epoch's weights of ``modules`` in ``<checkpoint_dir>/best.pt``.

    Args:
        checkpoint_dir: the run's folder (the ``checkpoint_dir`` given to :func:`fit`).
        modules: the modules to keep, by name (usually ``{"model": model}``, the run's modules).
        metric, mode: the history column that decides (e.g. ``val_r``, ``max``).
        patience: stop after this many epochs without improvement; None: never stop early, only keep the best.
        min_epochs: never stop before this many epochs have run (0: no floor; see :func:`patience_stop`).

    A ``best.pt`` without a ``last.pt`` beside it is left over from an earlier run and is deleted when the
    rule is made (a fresh run starts afresh). Under ``torchrun`` rank 0 writes and every rank can restore.
    """

    def __init__(self, checkpoint_dir: str | Path, modules: Mapping[str, nn.Module], metric: str,
                 mode: Mode = "max", patience: int | None = None, min_epochs: int = 0) -> None:
        _check(metric, mode, patience, min_epochs)
        if not modules:
            raise ValueError("modules is empty: give the modules whose best weights to keep, e.g. {'model': model}")
        self.folder, self.modules = Path(checkpoint_dir), dict(modules)
        self.metric, self.mode, self.patience, self.min_epochs = metric, mode, patience, min_epochs
        self.path = self.folder / BEST
        if self.path.exists() and not (self.folder / CHECKPOINT).exists() and distributed()[0] == 0:
            self.path.unlink()
        self._saved: int | None = self._stored_epoch()

    def _stored_epoch(self) -> int | None:
        if not self.path.exists():
            return None
        return int(torch.load(self.path, map_location="cpu", weights_only=True)["epoch"])

    def __call__(self, history: pd.DataFrame) -> bool:
        """Save the weights if the history's last epoch is its best one; then whether to stop."""
        best = best_epoch(history, self.metric, self.mode)
        last = int(history["epoch"].iloc[-1]) if len(history) else None
        if best is not None and best == last and self._saved != best:
            if distributed()[0] == 0:
                state = {"epoch": best, "metric": self.metric, "mode": self.mode,
                         "value": float(history[self.metric].iloc[-1]),
                         "modules": {name: m.state_dict() for name, m in self.modules.items()}}
                with atomic_path(self.path) as tmp:
                    torch.save(state, tmp)
            self._saved = best
        if self.patience is None or len(history) < self.min_epochs:
            return False
        return _epochs_without_improvement(history, self.metric, self.mode) >= self.patience

    def restore(self, history: pd.DataFrame) -> int:
        """Load the best epoch's weights into the modules and return that epoch.

        Raises a ValueError when no epoch had a finite ``metric`` or ``best.pt`` holds another epoch than the
        history's best (a ``best.pt`` from another run: train in a fresh ``checkpoint_dir``)."""
        if distributed()[1] > 1:
            torch.distributed.barrier()
        best = best_epoch(history, self.metric, self.mode)
        if best is None:
            raise ValueError(f"no epoch has a finite {self.metric!r}, so there are no best weights; check the "
                             "validation data (e.g. every target constant over the validation rows)")
        if not self.path.exists():
            raise ValueError(f"{self.path} is missing although epoch {best} was the best by {self.metric!r}; was "
                             "the run trained without this KeepBest as its stop rule?")
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        if int(state["epoch"]) != best:
            raise ValueError(f"{self.path} holds epoch {state['epoch']}, but the history's best by "
                             f"{self.metric!r} is epoch {best}; it belongs to another run (use a fresh "
                             "checkpoint_dir)")
        for name, module in self.modules.items():
            load_weights(module, state["modules"][name], str(self.path))
        return best
