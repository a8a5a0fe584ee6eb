"""Training of expression models (HE2RNA on slide tiles, :class:`~gbhet_lib.wsi.he2rna.HE2RNA`; Farooq et al.'s
MRI model, :class:`~gbhet_lib.mri.model.FarooqNet`; any module mapping patient inputs to (B, G)) under
patient-level cross-validation, as HE2RNA did (reference spec §1.2–1.3):

* :func:`fit_expression_model`: MSE over genes, Adam at a constant learning rate (3e-4, no weight decay), the
  validation score after every epoch the mean over genes of the per-gene Pearson r across the validation patients
  (:func:`mean_gene_pearson`), early stopping with patience on it, the best epoch's weights restored. It runs on
  the project's one loop (:func:`~gbhet_lib.training.loop.fit`): a checkpoint per epoch, exact resume, and
  ``best.pt`` (:class:`~gbhet_lib.training.early_stopping.KeepBest`) beside ``last.pt``.
* :func:`predict`: predictions in evaluation mode.
* :func:`cross_validated_predictions`: per fold, a seeded 10 % of the training patients (at least 2) for early
  stopping, training, then predictions for the fold's test patients: out-of-fold predictions, every patient
  predicted once. A finished fold (its ``predictions.npy``) is reused, not retrained.

Models get their inputs through ``inputs(rows)``: a function of a 1-D int64 CPU tensor of patient rows (indices into
``targets``) returning the positional arguments of ``model(...)`` for those patients, e.g.
``lambda rows: pad_bags([bags[i] for i in rows])`` for HE2RNA or ``lambda rows: (crops[rows],)`` for the MRI
model; tensors are moved to the model's device here.

Imports only torch, numpy, pandas and tqdm (plus this package's stdlib-only helpers): it runs on the GPU machine.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from ..io import atomic_path, write_table_atomic
from .config import TrainConfig, require
from .device import bf16_autocast, resolve_device
from .early_stopping import KeepBest
from .loop import Run, fit
from .schedule import constant_lr
from .seeds import seed_everything

CHECKPOINT_FORMAT = "gbhet.expression_checkpoint/1"
PREDICTIONS = "predictions.npy"  # a finished fold's test predictions (written last: the fold's "done" mark)
TEST_ROWS = "test_rows.npy"
FOLD_HISTORY = "fold_history.tsv"
VAL_METRIC = "val_r"

#: ``inputs(rows)``: the positional arguments of ``model(...)`` for the patients ``rows`` (1-D int64 CPU tensor)
Inputs = Callable[[Tensor], Sequence[Any]]
#: ``train_transform(args)``: the model arguments of a training step, transformed (e.g. augmented)
TrainTransform = Callable[[Sequence[Any]], Sequence[Any]]


@dataclass(frozen=True)
class ExpressionTrainConfig:
    """Settings of :func:`fit_expression_model`; defaults are a demo, :meth:`paper` HE2RNA's.

    Attributes:
        epochs: at most this many epochs (60; HE2RNA 200).
        patience: stop after this many epochs without a better validation r (10; HE2RNA 50).
        min_epochs: never stop before this many epochs (0, HE2RNA's; see
            :func:`~gbhet_lib.training.early_stopping.patience_stop`).
        batch_size: patients per step (16, HE2RNA's).
        lr: Adam's constant learning rate (3e-4, HE2RNA's; no weight decay, no warm-up, no decay).
        seed: seeds dropout, shuffling and k draws (fold k of :func:`cross_validated_predictions` uses seed + k).
        device: ``cpu``, ``cuda`` or ``cuda:<n>``.
        amp_bf16: bf16 autocast of the forward pass (CUDA only); the loss is computed in float32.
    """

    epochs: int = 60
    patience: int = 10
    min_epochs: int = 0
    batch_size: int = 16
    lr: float = 3e-4
    seed: int = 0
    device: str = "cpu"
    amp_bf16: bool = False

    def __post_init__(self) -> None:
        require(isinstance(self.patience, int) and self.patience >= 1,
                f"patience={self.patience!r} must be a positive number of epochs")
        require(isinstance(self.min_epochs, int) and not isinstance(self.min_epochs, bool) and self.min_epochs >= 0,
                f"min_epochs={self.min_epochs!r} must be a non-negative number of epochs")
        self.train_config()  # checks the rest

    @classmethod
    def paper(cls, **changes: Any) -> ExpressionTrainConfig:
        """HE2RNA's settings: 200 epochs at most, patience 50 (batch 16, Adam 3e-4 are the defaults)."""
        return dataclasses.replace(cls(epochs=200, patience=50), **changes)

    def train_config(self) -> TrainConfig:
        """The loop's settings: Adam (AdamW without decay) at the constant rate ``lr``."""
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, weight_decay=0.0,
                           warmup_lr=self.lr, min_lr=self.lr, warmup_epochs=0, seed=self.seed, device=self.device,
                           amp_bf16=self.amp_bf16)


# ------------------------------------------------------------------------------------------------------- metrics
def gene_pearson(predictions: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-gene Pearson r between (n, G) ``predictions`` and ``targets`` across the n patients, (G,).

    NaN for a gene constant in ``targets`` (no correlation to predict: skipped by :func:`mean_gene_pearson`); 0 for
    a gene whose predictions are constant (e.g. a dead ReLU output: no information, so it is not skipped, which
    would flatter the mean).
    """
    p, t = np.asarray(predictions, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    if p.shape != t.shape or p.ndim != 2:
        raise ValueError(f"predictions {p.shape} and targets {t.shape} must both be (patients, genes)")
    pc, tc = p - p.mean(0), t - t.mean(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (pc * tc).sum(0) / np.sqrt((pc ** 2).sum(0) * (tc ** 2).sum(0))
    r[np.ptp(p, axis=0) == 0] = 0.0
    r[np.ptp(t, axis=0) == 0] = np.nan
    return np.clip(r, -1.0, 1.0)


def mean_gene_pearson(predictions: np.ndarray, targets: np.ndarray) -> float:
    """HE2RNA's validation score: the mean over genes of :func:`gene_pearson`, genes constant in ``targets``
    skipped (NaN when every gene is)."""
    r = gene_pearson(predictions, targets)
    return float(np.nanmean(r)) if np.isfinite(r).any() else float("nan")


# ---------------------------------------------------------------------------------------------------- training
def _rows(rows: np.ndarray | Sequence[int], n: int, name: str) -> np.ndarray:
    array = np.asarray(rows)
    if array.ndim != 1 or array.size == 0 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must be a non-empty 1-D array of integer row indices into targets")
    if array.min() < 0 or array.max() >= n or len(np.unique(array)) != len(array):
        raise ValueError(f"{name} must hold distinct rows in [0, {n}); got min {array.min()}, max {array.max()}, "
                         f"{len(array) - len(np.unique(array))} repeated")
    return array.astype(np.int64)


def _targets(targets: np.ndarray) -> np.ndarray:
    y = np.asarray(targets, dtype=np.float32)
    if y.ndim != 2 or y.shape[0] < 2 or y.shape[1] < 1:
        raise ValueError(f"targets must be a (patients, genes) matrix with at least 2 patients, got {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError("targets hold NaN or infinite values; impute or drop those genes first")
    return y


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _device_args(inputs: Inputs, rows: Tensor, device: torch.device) -> list[Any]:
    args = inputs(rows)
    if isinstance(args, (Tensor, np.ndarray)) or not isinstance(args, (tuple, list)):
        raise TypeError(f"inputs(rows) must return a tuple of model arguments, got {type(args).__name__}; wrap a "
                        "single tensor as (tensor,)")
    return [a.to(device, non_blocking=True) if isinstance(a, Tensor) else a for a in args]


def _model_generators(model: nn.Module) -> dict[str, torch.Generator]:
    """The model's own k generator (HE2RNA, FarooqNet ``generator``), checkpointed so a resume draws the same k."""
    generator = getattr(model, "generator", None)
    return {"model": generator} if isinstance(generator, torch.Generator) else {}


def fit_expression_model(model: nn.Module, inputs: Inputs, targets: np.ndarray, train_rows: np.ndarray,
                         val_rows: np.ndarray, config: ExpressionTrainConfig, checkpoint_dir: str | Path,
                         progress: bool = False,
                         train_transform: TrainTransform | None = None) -> tuple[nn.Module, pd.DataFrame]:
    """Train ``model`` on ``train_rows`` with early stopping on ``val_rows``; return it with the best epoch's weights.

    Args:
        model: maps ``*inputs(rows)`` to (len(rows), G) predictions; initialised by the caller (its output bias
            at the training rows' mean target, e.g. ``HE2RNA(..., gene_means=targets[train_rows].mean(0))``).
            Moved to ``config.device``.
        inputs: see the module docstring.
        targets: (n, G) float32 targets of all patients (e.g. log10(1 + FPKM-UQ)).
        train_rows, val_rows: disjoint patient rows; validation needs at least 2 patients and a gene that varies.
        config: :class:`ExpressionTrainConfig`.
        checkpoint_dir: ``last.pt`` (every epoch), ``history.tsv`` and ``best.pt``; a run found there is resumed
            (the same settings, rows and targets required).
        train_transform: applied to the model arguments (on the device) of training steps only, e.g. random flips
            of MRI crops, ``lambda args: (augment(args[0]),) + tuple(args[1:])``
            (:func:`gbhet_lib.mri.preprocess.augment`; torch's global generator is saved in every checkpoint).

    Returns:
        The model (evaluation mode, best weights) and the history: ``epoch``, ``lr``, ``train_loss`` (MSE),
        ``train_samples``, ``skipped_batches``, ``train_seconds``, ``val_r`` (mean per-gene Pearson r),
        ``val_mse``, and ``best_epoch`` (the epoch whose weights were restored).
    """
    y = _targets(targets)
    train_rows, val_rows = _rows(train_rows, len(y), "train_rows"), _rows(val_rows, len(y), "val_rows")
    if np.intersect1d(train_rows, val_rows).size:
        raise ValueError("train_rows and val_rows overlap; early stopping needs patients the model never trains on")
    if len(val_rows) < 2 or not (y[val_rows].std(0) > 0).any():
        raise ValueError(f"the {len(val_rows)} validation patients give no correlation (need ≥ 2 patients and a "
                         "gene that varies among them); use a larger val_fraction")
    train_config = config.train_config()
    device = resolve_device(config.device)
    seed_everything(config.seed)
    model = model.to(device)
    y_all = torch.from_numpy(y).to(device)
    train_index = torch.from_numpy(train_rows)

    def step(batch: Tensor) -> dict[str, Tensor]:
        rows = train_index[batch]
        args = _device_args(inputs, rows, device)
        if train_transform is not None:
            args = list(train_transform(args))
        with bf16_autocast(config.amp_bf16, device):
            prediction = model(*args)
        target = y_all[rows.to(device)]
        if prediction.shape != target.shape:
            raise ValueError(f"the model returned {tuple(prediction.shape)} for {len(rows)} patients; expected "
                             f"{tuple(target.shape)} (patients, genes)")
        return {"loss": torch.nn.functional.mse_loss(prediction.float(), target)}

    def evaluate() -> dict[str, float]:
        prediction = predict(model, inputs, val_rows, config.batch_size, config.amp_bf16)
        return {"r": mean_gene_pearson(prediction, y[val_rows]),
                "mse": float(np.mean((prediction.astype(np.float64) - y[val_rows]) ** 2))}

    spec = {"model": type(model).__name__, "hparams": getattr(model, "hparams", None),
            "n_parameters": sum(p.numel() for p in model.parameters()), "targets": _digest(y),
            "train_rows": _digest(train_rows), "val_rows": _digest(val_rows), "patience": config.patience,
            "min_epochs": config.min_epochs}
    run = Run(CHECKPOINT_FORMAT, "expression", "expression", train_config, spec, {"model": model},
              _model_generators(model))
    keep = KeepBest(checkpoint_dir, {"model": model}, VAL_METRIC, "max", config.patience, config.min_epochs)
    history = fit(run, len(train_rows), step, evaluate, checkpoint_dir, progress, constant_lr, stop=keep)
    history["best_epoch"] = keep.restore(history)
    return model.eval(), history


@torch.no_grad()
def predict(model: nn.Module, inputs: Inputs, rows: np.ndarray | Sequence[int], batch_size: int = 16,
            amp_bf16: bool = False) -> np.ndarray:
    """``model``'s predictions (len(rows), G) float32 for patient ``rows``, in evaluation mode (its mode is
    restored afterwards), on the model's device, ``batch_size`` patients at a time."""
    array = np.asarray(rows, dtype=np.int64).reshape(-1)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be a positive integer")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    parts = []
    try:
        for start in range(0, len(array), batch_size):
            rows_t = torch.from_numpy(array[start:start + batch_size])
            with bf16_autocast(amp_bf16 and device.type == "cuda", device):
                parts.append(model(*_device_args(inputs, rows_t, device)).float().cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


# ------------------------------------------------------------------------------------------- cross-validation
def inner_validation_rows(rows: np.ndarray, val_fraction: float, seed: int) -> np.ndarray:
    """A seeded ``val_fraction`` of ``rows`` (rounded, at least 2), sorted: the early-stopping patients of a fold."""
    rows = np.asarray(rows, dtype=np.int64)
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction={val_fraction} must be in (0, 1)")
    n_val = max(2, int(round(val_fraction * len(rows))))
    if len(rows) - n_val < 1:
        raise ValueError(f"{len(rows)} training patients leave none to train on after {n_val} for validation")
    return np.sort(np.random.default_rng(seed).choice(rows, size=n_val, replace=False))


def cross_validated_predictions(make_model: Callable[[np.ndarray], nn.Module], inputs: Inputs,
                                targets: np.ndarray, folds: np.ndarray, val_fraction: float = 0.1,
                                config: ExpressionTrainConfig = ExpressionTrainConfig(),
                                checkpoint_root: str | Path | None = None, progress: bool = False,
                                train_transform: TrainTransform | None = None) -> tuple[np.ndarray, pd.DataFrame]:
    """Out-of-fold predictions of a model trained per fold (HE2RNA's protocol, reference spec §1.3).

    For each fold k (ascending): test = the patients with ``folds == k``; from the others, a seeded
    ``val_fraction`` (at least 2, :func:`inner_validation_rows` with seed ``config.seed + k``) is the validation
    set for early stopping; ``make_model(train_rows)`` (called after seeding with ``config.seed + k``) builds
    the model, e.g. with its output bias at ``targets[train_rows].mean(0)``; :func:`fit_expression_model` trains
    it under ``checkpoint_root/fold<k>/`` with seed ``config.seed + k``; the test patients are predicted.

    A fold whose ``predictions.npy`` exists is not retrained: its predictions and history are read back (its test
    rows must be those of ``folds``, else a ValueError: use another ``checkpoint_root``).

    Args:
        make_model: builds a fresh model from the fold's training rows.
        inputs, targets, config, train_transform: as for :func:`fit_expression_model`.
        folds: (n,) integer fold index per patient, at least 2 folds (from
            :func:`gbhet_lib.evaluate.splits.patient_folds`: ``folds[held_out] = k`` for its k-th pair).
        val_fraction: share of each fold's training patients held out for early stopping (0.1, HE2RNA's).
        checkpoint_root: the folder of ``fold<k>/`` (required).

    Returns:
        Out-of-fold predictions (n, G) float32 (each patient predicted by the one model that never saw it) and
        the per-fold histories stacked: ``fold``, ``epoch``, …, ``best_epoch``, ``n_train``, ``n_val``,
        ``n_test``.
    """
    if checkpoint_root is None:
        raise ValueError("checkpoint_root is required: the folder that holds fold<k>/ (checkpoints, best weights "
                         "and the finished folds' predictions, reused by a later call)")
    y = _targets(targets)
    folds = np.asarray(folds)
    if folds.shape != (len(y),) or not np.issubdtype(folds.dtype, np.integer):
        raise ValueError(f"folds must be one integer fold index per patient, shape ({len(y)},); got "
                         f"{folds.dtype} {folds.shape}")
    fold_ids = np.unique(folds)
    if len(fold_ids) < 2:
        raise ValueError(f"folds holds {len(fold_ids)} fold(s); cross-validation needs at least 2")
    root = Path(checkpoint_root)
    out = np.full(y.shape, np.nan, dtype=np.float32)
    histories = []
    for k in fold_ids.tolist():
        test_rows = np.flatnonzero(folds == k)
        rest = np.flatnonzero(folds != k)
        folder = root / f"fold{k}"
        fold_config = dataclasses.replace(config, seed=config.seed + int(k))
        val_rows = inner_validation_rows(rest, val_fraction, fold_config.seed)
        train_rows = np.setdiff1d(rest, val_rows)
        if (folder / PREDICTIONS).exists():
            predictions, history = _finished_fold(folder, test_rows, y.shape[1])
        else:
            seed_everything(fold_config.seed)
            model = make_model(train_rows)
            model, history = fit_expression_model(model, inputs, y, train_rows, val_rows, fold_config, folder,
                                                  progress, train_transform)
            predictions = predict(model, inputs, test_rows, config.batch_size, config.amp_bf16)
            if predictions.shape != (len(test_rows), y.shape[1]):
                raise ValueError(f"fold {k}: predictions of shape {predictions.shape}, expected "
                                 f"{(len(test_rows), y.shape[1])}")
            history = history.assign(n_train=len(train_rows), n_val=len(val_rows), n_test=len(test_rows))
            write_table_atomic(folder / FOLD_HISTORY, history, index=False)
            _save_npy(folder / TEST_ROWS, test_rows)
            _save_npy(folder / PREDICTIONS, predictions.astype(np.float32))  # last: marks the fold finished
        out[test_rows] = predictions
        histories.append(history.assign(fold=int(k)))
    table = pd.concat(histories, ignore_index=True)
    return out, table[["fold"] + [c for c in table.columns if c != "fold"]]


def _save_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` atomically (through a handle: given a name, numpy would append ``.npy`` to the temporary one)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def _finished_fold(folder: Path, test_rows: np.ndarray, n_genes: int) -> tuple[np.ndarray, pd.DataFrame]:
    """A finished fold's predictions and history, checked against this call's test rows and gene count."""
    stored_rows = np.load(folder / TEST_ROWS, allow_pickle=False) if (folder / TEST_ROWS).exists() else None
    predictions = np.load(folder / PREDICTIONS, allow_pickle=False)
    if stored_rows is None or not np.array_equal(stored_rows, test_rows) or \
            predictions.shape != (len(test_rows), n_genes):
        raise ValueError(f"{folder} holds a finished fold of another split or gene set (its test rows or "
                         f"predictions {predictions.shape} differ from this call's {(len(test_rows), n_genes)}); use "
                         "another checkpoint_root")
    history = pd.read_csv(folder / FOLD_HISTORY, sep="\t", float_precision="round_trip")
    return predictions, history
