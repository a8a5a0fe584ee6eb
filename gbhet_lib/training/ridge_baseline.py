"""The linear baseline of the expression models: PCA + ridge regression under the same patient folds
(HEST-Benchmark style: standardised features, PCA to 256 components, ridge).

Per fold, everything is fitted on the fold's training patients only: the ``StandardScaler``, the ``PCA``
(``n_components`` clipped to n_train − 1 and to D) and ``RidgeCV`` (one ridge penalty for all genes, chosen among
``alphas`` by the efficient leave-one-out error over the training patients); then the test patients are predicted.

Imports numpy and scikit-learn (not imported by :mod:`gbhet_lib.training`, which stays free of it).
"""
from __future__ import annotations

import numpy as np

#: HEST-Benchmark's PCA size
N_COMPONENTS = 256
#: the ridge penalties tried, 1e-2 … 1e4
ALPHAS = np.logspace(-2, 4, 13)


def ridge_cv_predictions(features: np.ndarray, targets: np.ndarray, folds: np.ndarray,
                         n_components: int = N_COMPONENTS, alphas: np.ndarray = ALPHAS) -> np.ndarray:
    """Out-of-fold ridge predictions (n, G) float32 of ``targets`` (n, G) from ``features`` (n, D).

    ``folds``: (n,) integer fold index per patient (the same folds as the neural models', at least 2). For each
    fold: scaler, PCA (min(``n_components``, n_train − 1, D) components) and ``RidgeCV(alphas)`` are fitted on the
    other folds' patients, and the fold's patients are predicted. The chosen penalties are not returned; the
    whole pipeline is deterministic (full SVD).
    """
    from sklearn.decomposition import PCA
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    folds = np.asarray(folds)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y) or len(x) < 3:
        raise ValueError(f"features {x.shape} and targets {y.shape} must be (patients, D) and (patients, G) with "
                         "the same patients, at least 3")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("features or targets hold NaN or infinite values; impute or drop them first")
    if folds.shape != (len(x),) or not np.issubdtype(folds.dtype, np.integer) or len(np.unique(folds)) < 2:
        raise ValueError(f"folds must be one integer fold index per patient, shape ({len(x)},), with at least "
                         f"2 folds; got {folds.dtype} {folds.shape}")
    if isinstance(n_components, bool) or not isinstance(n_components, (int, np.integer)) or n_components < 1:
        raise ValueError(f"n_components={n_components!r} must be a positive integer")
    alphas = np.asarray(alphas, dtype=np.float64).reshape(-1)
    if alphas.size == 0 or not (alphas > 0).all():
        raise ValueError(f"alphas={alphas} must be one or more positive ridge penalties")
    out = np.full(y.shape, np.nan)
    for k in np.unique(folds):
        test, train = folds == k, folds != k
        n_train = int(train.sum())
        if n_train < 2:
            raise ValueError(f"fold {k} leaves {n_train} training patient(s); ridge needs at least 2")
        components = int(min(n_components, n_train - 1, x.shape[1]))
        model = make_pipeline(StandardScaler(), PCA(n_components=components, svd_solver="full"),
                              RidgeCV(alphas=alphas))
        model.fit(x[train], y[train])
        out[test] = model.predict(x[test]).reshape(int(test.sum()), -1)
    return out.astype(np.float32)
