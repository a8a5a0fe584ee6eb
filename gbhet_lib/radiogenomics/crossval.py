"""Cross-validation of the trait models (reference spec §3.4–3.6) and patient-bootstrap AUC intervals.

* :func:`stratified_folds`: the paper's ``StratifiedKFold(10, shuffle=True, random_state=425)`` as a fold index
  per patient.
* :func:`cross_validated_network`: per outer fold, the network is early-stopped on an inner stratified
  validation split **of the training fold** and the held-out fold is scored once with the kept weights (honest
  out-of-fold logits). In the same loop, optionally, the paper's selection: a network trained on the whole
  training fold with the **held-out fold as its validation set**, reporting the best held-out AUC over epochs
  (``cv_average`` in the authors' code). ``optimism = paper_auc − honest_auc`` measures what that selection adds.
  Part of the gap is not selection: the honest network trains on ``1 − val_fraction`` of the training fold, the
  paper's on all of it.
* :func:`cross_validated_comparator`: out-of-fold scores of a comparator whose grid is searched inside each
  training fold (:func:`~gbhet_lib.radiogenomics.comparators.fit_comparator`).
* :func:`fold_aucs`, :func:`auc_with_ci`, :func:`auc_difference_ci`: per-fold AUCs (their mean is what the paper
  reports), and percentile intervals from a bootstrap over patients (the independent unit; draws from
  :func:`gbhet_lib.evaluate.metrics.group_resamples`, one group per patient).

Scaling: the network's inputs are standardised by a ``StandardScaler`` fitted on each training fold, or by a
prefitted ``scaler`` applied to everyone (the paper re-used the autoencoder cohort's scaler; that is leak-free
because the autoencoder cohort holds no imaging patients). The comparators standardise inside their pipelines.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.preprocessing import StandardScaler

from ..evaluate.metrics import group_resamples
from .comparators import GridSize, comparator_scores, fit_comparator
from .networks import ClassifierConfig, GeneAutoencoder
from .training import fit_classifier, predict_logits

PAPER_SEED = 425


def stratified_folds(y: np.ndarray, n_folds: int = 10, seed: int = PAPER_SEED, name: str = "y") -> np.ndarray:
    """(n,) int64 fold index (0..n_folds−1) of each patient from ``StratifiedKFold(n_folds, shuffle=True,
    random_state=seed)`` over the labels ``y`` (n,); ``name`` (e.g. the trait) is used in error messages.

    Raises a ValueError naming the class when one has fewer than ``n_folds`` patients (a fold would lack it).
    """
    labels = np.asarray(y).reshape(-1)
    if isinstance(n_folds, bool) or not isinstance(n_folds, int) or n_folds < 2:
        raise ValueError(f"n_folds={n_folds!r} must be an integer ≥ 2")
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        raise ValueError(f"{name}: a single class {classes.tolist()}; there is nothing to classify")
    small = {c: k for c, k in zip(classes.tolist(), counts.tolist()) if k < n_folds}
    if small:
        raise ValueError(f"{name}: class(es) {small} (label: patients) have fewer than n_folds={n_folds} patients, "
                         f"so some folds would lack them; lower n_folds to at most {counts.min()}")
    folds = np.empty(len(labels), dtype=np.int64)
    splitter = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
    for k, (_, test) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        folds[test] = k
    return folds


def _binary(y: Any, n: int) -> np.ndarray:
    labels = np.asarray(y).reshape(-1)
    if len(labels) != n:
        raise ValueError(f"y has {len(labels)} labels for {n} patients")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"y must hold 0/1 labels, got {sorted(set(labels.tolist()))[:5]}")
    return labels.astype(np.int64)


def _fold_ids(folds: Any, y: np.ndarray) -> np.ndarray:
    f = np.asarray(folds).reshape(-1)
    if len(f) != len(y) or not np.issubdtype(f.dtype, np.integer):
        raise ValueError(f"folds must be one integer fold index per patient ({len(y)}), e.g. stratified_folds(y)")
    ids = np.unique(f)
    for k in ids:
        if len(np.unique(y[f == k])) < 2 or len(np.unique(y[f != k])) < 2:
            raise ValueError(f"fold {k} lacks a class on its held-out or training side; use stratified_folds with "
                             "fewer folds")
    return ids


def fold_aucs(y: np.ndarray, scores: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """(K,) ROC AUC of out-of-fold ``scores`` (n,) within each fold (sorted fold ids); their mean is the paper's
    CV AUC."""
    labels = _binary(y, len(np.asarray(scores).reshape(-1)))
    f = np.asarray(folds).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    return np.array([roc_auc_score(labels[f == k], s[f == k]) for k in _fold_ids(f, labels)])


def _scaled(x: np.ndarray, train: np.ndarray, scaler: StandardScaler | None) -> tuple[np.ndarray, np.ndarray]:
    fitted = scaler if scaler is not None else StandardScaler().fit(x[train])
    return (fitted.transform(x[train]).astype(np.float32), fitted.transform(x[~train]).astype(np.float32))


def single_threaded(task: Any) -> Any:
    """Run ``task()`` with one torch thread (restored after): the same arithmetic in the main process and in a
    worker, so that results do not depend on ``n_jobs``, and faster for these small networks."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return task()
    finally:
        torch.set_num_threads(threads)


def _network_fold(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                  ae: GeneAutoencoder | None, config: ClassifierConfig, val_fraction: float, split_seed: int,
                  paper_selection: bool) -> dict[str, Any]:
    """One outer fold of :func:`cross_validated_network`: the honest network (early-stopped on an inner split of
    the training fold) scores the held-out fold; optionally the paper's network (the held-out fold as validation)."""
    def task() -> dict[str, Any]:
        inner_train, inner_val = train_test_split(np.arange(len(y_train)), test_size=val_fraction,
                                                  stratify=y_train, random_state=split_seed)
        model, history = fit_classifier(x_train[inner_train], y_train[inner_train], x_train[inner_val],
                                        y_train[inner_val], config, ae)
        logits = predict_logits(model, x_test)
        out = {"logits": logits, "honest": float(roc_auc_score(y_test, logits)),
               "epoch_honest": int(history["best_epoch"].iloc[0]), "histories": [history.assign(selection="honest")],
               "paper": float("nan"), "epoch_paper": 0}
        if paper_selection:
            _, history = fit_classifier(x_train, y_train, x_test, y_test, config, ae)
            best = int(history["val_auc"].to_numpy().argmax())
            out.update(paper=float(history["val_auc"].iloc[best]), epoch_paper=int(history["epoch"].iloc[best]))
            out["histories"].append(history.assign(selection="paper"))
        return out

    return single_threaded(task)


def cross_validated_network(x: np.ndarray, y: np.ndarray, folds: np.ndarray, ae: GeneAutoencoder | None,
                            config: ClassifierConfig, val_fraction: float = 0.2, seed: int = 0,
                            paper_selection: bool = True, scaler: StandardScaler | None = None,
                            n_jobs: int = 1) -> dict[str, Any]:
    """Out-of-fold evaluation of a binary :class:`~gbhet_lib.radiogenomics.networks.TraitNet`.

    Args:
        x: (n, G) expression (unscaled; see ``scaler``).
        y: (n,) 0/1 trait labels.
        folds: (n,) fold index per patient (:func:`stratified_folds`).
        ae: the pretrained autoencoder (None when ``config.ae_init`` is False). It must not have seen these
            patients.
        config: the network's settings (``n_classes`` 1); fold k trains with seed ``config.seed + k``.
        val_fraction: share of each training fold (stratified, ``train_test_split`` seeded ``seed + k``, at least
            one patient per class) held out for early stopping.
        seed: seeds the inner splits.
        paper_selection: also run the paper's selection (held-out fold as validation set, best epoch's AUC).
        scaler: a prefitted scaler applied to every patient (the autoencoder cohort's); None fits a
            ``StandardScaler`` on each training fold.
        n_jobs: outer folds trained at once in separate processes (joblib); every fold trains on one torch
            thread whatever ``n_jobs`` is, so the results do not depend on it.

    Returns:
        ``oof_logits`` (n,) float32 honest held-out logits; ``folds`` (K,) fold ids; ``fold_auc_honest`` and
        ``fold_auc_paper`` (K,) (NaN when ``paper_selection`` is False); ``honest_auc`` and ``paper_auc`` (their
        means); ``optimism`` (paper − honest); ``pooled_auc`` (AUC of all out-of-fold logits together);
        ``best_epoch_honest`` / ``best_epoch_paper`` (K,) int (the latter the epoch of the held-out maximum,
        0 when not run); ``history`` (every epoch, with ``fold`` and ``selection`` ∈ {honest, paper}).
    """
    from joblib import Parallel, delayed

    if config.n_classes != 1:
        raise ValueError("cross_validated_network evaluates binary traits (config.n_classes=1); use "
                         "fit_classifier and predict_logits for the multiclass model")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction={val_fraction!r} must lie in (0, 1): the honest network early-stops on "
                         "part of the training fold")
    x = np.asarray(x, dtype=np.float64)
    labels = _binary(y, len(x))
    f = np.asarray(folds).reshape(-1)
    ids = _fold_ids(f, labels)
    tasks = []
    for k in ids:
        train = f != k
        x_train, x_test = _scaled(x, train, scaler)
        tasks.append(delayed(_network_fold)(x_train, labels[train], x_test, labels[~train], ae,
                                            dataclasses.replace(config, seed=config.seed + int(k)), val_fraction,
                                            seed + int(k), paper_selection))
    results = Parallel(n_jobs=min(n_jobs, len(ids)))(tasks)
    oof = np.full(len(x), np.nan, dtype=np.float32)
    for k, r in zip(ids, results):
        oof[f == k] = r["logits"]
    honest = np.array([r["honest"] for r in results])
    paper = np.array([r["paper"] for r in results])
    table = pd.concat([h.assign(fold=int(k)) for k, r in zip(ids, results) for h in r["histories"]],
                      ignore_index=True)
    honest_auc = float(honest.mean())
    paper_auc = float(paper.mean()) if paper_selection else float("nan")
    return {"oof_logits": oof, "folds": ids, "fold_auc_honest": honest, "fold_auc_paper": paper,
            "honest_auc": honest_auc, "paper_auc": paper_auc, "optimism": paper_auc - honest_auc,
            "pooled_auc": float(roc_auc_score(labels, oof)),
            "best_epoch_honest": np.array([r["epoch_honest"] for r in results], dtype=np.int64),
            "best_epoch_paper": np.array([r["epoch_paper"] for r in results], dtype=np.int64),
            "history": table[["fold", "selection"] + [c for c in table.columns if c not in ("fold", "selection")]]}


def _comparator_fold(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                     grid_size: GridSize, inner_folds: int, seed: int) -> np.ndarray:
    return comparator_scores(fit_comparator(name, x_train, y_train, grid_size, inner_folds, seed), x_test)


def cross_validated_comparator(name: str, x: np.ndarray, y: np.ndarray, folds: np.ndarray,
                               grid_size: GridSize = "demo", seed: int = 0, inner_folds: int = 3,
                               n_jobs: int = 1) -> np.ndarray:
    """(n,) float64 out-of-fold scores of comparator ``name``: per fold, its grid searched and refitted on the
    training rows only (:func:`~gbhet_lib.radiogenomics.comparators.fit_comparator`), then the held-out rows
    scored (:func:`~gbhet_lib.radiogenomics.comparators.comparator_scores`). x (n, G) unscaled, y (n,) 0/1.

    ``n_jobs``: outer folds fitted at once in separate processes (joblib), each grid searched serially. On two
    cores this halves the time, where parallel grid points did not pay (10-fold demo grids, 160 patients × 2,495
    genes, one run: serial 64 s, grid points on 2 processes 52 s, L1 logistic slower at 11 against 4 s)."""
    from joblib import Parallel, delayed

    x = np.asarray(x, dtype=np.float64)
    labels = _binary(y, len(x))
    f = np.asarray(folds).reshape(-1)
    ids = _fold_ids(f, labels)

    scores = Parallel(n_jobs=min(n_jobs, len(ids)))(
        delayed(_comparator_fold)(name, x[f != k], labels[f != k], x[f == k], grid_size, inner_folds, seed)
        for k in ids)
    out = np.full(len(x), np.nan)
    for k, s in zip(ids, scores):
        out[f == k] = s
    return out


# --------------------------------------------------------------------------------------------------- intervals
def _boot_aucs(labels: np.ndarray, scores: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """AUC (Mann–Whitney with mid-ranks, equal to ``roc_auc_score``) of each bootstrap draw (B, n) of patients;
    NaN for a draw holding one class."""
    y = labels[draws]
    ranks = rankdata(scores[draws], axis=1)
    n1 = y.sum(1).astype(np.float64)
    n0 = y.shape[1] - n1
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = ((ranks * y).sum(1) - n1 * (n1 + 1) / 2) / (n1 * n0)
    auc[(n1 == 0) | (n0 == 0)] = np.nan
    return auc


def _draws(labels: np.ndarray, n_boot: int, level: float, seed: int) -> np.ndarray:
    _, _, draws = group_resamples(np.arange(len(labels)), n_boot, level, seed)  # one group per patient
    return draws


def _interval(values: np.ndarray, level: float) -> tuple[float, float]:
    kept = values[np.isfinite(values)]
    if len(kept) < 2:
        raise ValueError("fewer than 2 bootstrap draws held both classes; the interval needs more patients")
    low, high = np.quantile(kept, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def auc_with_ci(y: np.ndarray, scores: np.ndarray, n_boot: int = 1000, seed: int = 0,
                level: float = 0.95) -> tuple[float, tuple[float, float]]:
    """ROC AUC of (n,) ``scores`` for (n,) 0/1 ``y`` and its patient-bootstrap percentile interval:
    (auc, (low, high)). Each of ``n_boot`` draws resamples the n patients with replacement; draws with a single
    class are skipped (the interval is conditional on both classes being drawn)."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = _binary(y, len(s))
    auc = float(roc_auc_score(labels, s))
    return auc, _interval(_boot_aucs(labels, s, _draws(labels, n_boot, level, seed)), level)


def auc_difference_ci(y: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray, n_boot: int = 1000,
                      seed: int = 0, level: float = 0.95) -> tuple[float, tuple[float, float]]:
    """AUC(a) − AUC(b) of two (n,) score vectors for the same patients and its paired patient-bootstrap percentile
    interval: (difference, (low, high)); both AUCs are recomputed on the same draw (single-class draws skipped)."""
    a = np.asarray(scores_a, dtype=np.float64).reshape(-1)
    b = np.asarray(scores_b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"scores_a {a.shape} and scores_b {b.shape} must score the same patients")
    labels = _binary(y, len(a))
    draws = _draws(labels, n_boot, level, seed)
    difference = float(roc_auc_score(labels, a) - roc_auc_score(labels, b))
    return difference, _interval(_boot_aucs(labels, a, draws) - _boot_aucs(labels, b, draws), level)
