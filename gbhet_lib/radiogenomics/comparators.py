"""The paper's comparator models (reference spec §3.5), each a ``Pipeline(StandardScaler → model)`` whose
hyper-parameters are chosen by ``GridSearchCV(scoring="roc_auc")`` on the **training fold only** (an inner
stratified CV), so a held-out fold never influences its own model.

Models (:data:`COMPARATORS`):

* ``logit_l1`` / ``logit_l2``: logistic regression, class-balanced, C over ``logspace(−3, 3, n)``, with the
  penalty really applied (L1 with liblinear, L2 with lbfgs). The paper's grid had 1000 C values, and its "logit1"
  set ``solver='liblinear'`` without ``penalty='l1'``, so both of its logistic models were L2 (fixed here).
* ``rf``: random forest, class-balanced, ``max_features`` × ``criterion`` × ``n_estimators``.
* ``gb``: gradient-boosted trees. The paper used XGBoost (``XGBClassifier``, ``scale_pos_weight`` = n_neg/n_pos),
  which this project does not install; sklearn's ``GradientBoostingClassifier`` over the same ``max_depth``,
  ``n_estimators`` and ``learning_rate`` ranges stands in, with class-balanced sample weights in place of
  ``scale_pos_weight`` (XGBoost's ``gamma`` has no exact sklearn counterpart and is dropped).
* ``svm``: ``SVC``, class-balanced, C over ``logspace(−6, 6, n)`` × kernel {linear, rbf, poly, sigmoid};
  ``probability=False``, its ``decision_function`` is the score.

:func:`comparator_grids` gives the ``demo`` grids (small: a 10-fold CV of all five on ~160 patients × ~2,500
genes runs in well under a minute on two cores) or the ``paper`` grids (as published; tens of thousands of fits,
documented as parameters, never run in tests). Imports numpy and sklearn only.
"""
from __future__ import annotations

from typing import Any, Literal

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

COMPARATORS: tuple[str, ...] = ("logit_l1", "logit_l2", "rf", "gb", "svm")
GridSize = Literal["demo", "paper"]


def _logistic(l1: bool, seed: int = 0) -> LogisticRegression:
    """Class-balanced logistic regression with an L1 (liblinear) or L2 (lbfgs) penalty. sklearn ≥ 1.8 sets the
    penalty by ``l1_ratio`` (``penalty`` is deprecated); older versions by ``penalty``. liblinear shuffles the
    data, so ``seed`` fixes it (without it two runs gave AUCs 0.01–0.03 apart)."""
    common: dict[str, Any] = {"class_weight": "balanced", "max_iter": 2000, "solver": "liblinear" if l1 else "lbfgs",
                              "random_state": seed}
    if LogisticRegression().get_params().get("penalty") == "deprecated":
        return LogisticRegression(l1_ratio=1.0 if l1 else 0.0, **common)
    return LogisticRegression(penalty="l1" if l1 else "l2", **common)


def _pipeline(model: BaseEstimator) -> Pipeline:
    return Pipeline([("scale", StandardScaler()), ("model", model)])


def comparator_grids(size: GridSize = "demo", seed: int = 0) -> dict[str, tuple[Pipeline, dict[str, list[Any]]]]:
    """name → (unfitted ``Pipeline(scale, model)``, its parameter grid with ``model__`` keys) for
    :data:`COMPARATORS`; ``seed`` is the logistic (liblinear), random forest and boosting ``random_state``.

    ``demo``: C 6 values (logistic) / 5 values (SVM) over the paper's ranges; RF 100 trees × max_features {sqrt,
    log2} (gini); GB n_estimators {50, 100} × depth {1, 2} × learning_rate {0.1}, each split drawn from √G genes
    (``max_features="sqrt"``, akin to XGBoost's column sampling; the paper's boosting saw every gene).
    ``paper``: C 1000 / 2000 values; RF 50–2000 trees (step 50) × max_features {sqrt, log2, None} × criterion
    {gini, entropy}; GB depth 1–4 × n_estimators 50–950 (step 50) × learning_rate 0.01–0.46 (step 0.05), all genes.
    """
    if size not in ("demo", "paper"):
        raise ValueError(f"size={size!r} must be 'demo' or 'paper'")
    demo = size == "demo"
    logit_c = np.logspace(-3, 3, 6 if demo else 1000).tolist()
    svm_c = np.logspace(-6, 6, 5 if demo else 2000).tolist()
    rf = {"model__n_estimators": [100] if demo else list(range(50, 2001, 50)),
          "model__max_features": ["sqrt", "log2"] if demo else ["sqrt", "log2", None],
          "model__criterion": ["gini"] if demo else ["gini", "entropy"]}
    gb = {"model__max_depth": [1, 2] if demo else [1, 2, 3, 4],
          "model__n_estimators": [50, 100] if demo else list(range(50, 951, 50)),
          "model__learning_rate": [0.1] if demo else np.round(np.arange(0.01, 0.5, 0.05), 2).tolist(),
          # every tree scanning all ~2,500 genes costs ~6 s per 100 trees; the demo samples √G genes per split
          "model__max_features": ["sqrt"] if demo else [None]}
    return {
        "logit_l1": (_pipeline(_logistic(l1=True, seed=seed)), {"model__C": logit_c}),
        "logit_l2": (_pipeline(_logistic(l1=False, seed=seed)), {"model__C": logit_c}),
        "rf": (_pipeline(RandomForestClassifier(class_weight="balanced", random_state=seed)), rf),
        "gb": (_pipeline(GradientBoostingClassifier(random_state=seed)), gb),
        "svm": (_pipeline(SVC(class_weight="balanced", decision_function_shape="ovo")),
                {"model__C": svm_c, "model__kernel": ["linear", "rbf", "poly", "sigmoid"]}),
    }


def fit_comparator(name: str, x_train: np.ndarray, y_train: np.ndarray, grid_size: GridSize = "demo",
                   inner_folds: int = 3, seed: int = 0, n_jobs: int = 1) -> GridSearchCV:
    """The comparator ``name`` fitted to the training patients only: its grid searched by an inner
    ``StratifiedKFold(inner_folds, shuffle, seed)`` scored by ROC AUC, the best setting refitted on all of
    ``x_train``.

    Args:
        x_train: (n, G) expression (any scale: the pipeline standardises with training statistics).
        y_train: (n,) 0/1 labels; each class needs at least ``inner_folds`` patients.
        n_jobs: GridSearchCV's parallel fits (1: serial).

    Returns:
        The fitted ``GridSearchCV`` (``best_params_``, ``best_score_``); score new patients with
        :func:`comparator_scores`.
    """
    grids = comparator_grids(grid_size, seed)
    if name not in grids:
        raise ValueError(f"name={name!r} is not a comparator; use one of {list(grids)}")
    x = np.asarray(x_train, dtype=np.float64)
    y = np.asarray(y_train).reshape(-1)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"x_train {x.shape} must be (patients, genes) with one label per patient ({len(y)})")
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) != 2 or counts.min() < inner_folds:
        raise ValueError(f"comparators need two classes with at least inner_folds={inner_folds} patients each, "
                         f"got counts {dict(zip(classes.tolist(), counts.tolist()))}; lower inner_folds")
    pipeline, grid = grids[name]
    search = GridSearchCV(pipeline, grid, scoring="roc_auc", n_jobs=n_jobs, refit=True,
                          cv=StratifiedKFold(inner_folds, shuffle=True, random_state=seed))
    params: dict[str, Any] = {}
    if name == "gb":  # no class_weight in sklearn's boosting: balanced sample weights (sliced per inner fold)
        weight = {c: len(y) / (2 * k) for c, k in zip(classes.tolist(), counts.tolist())}
        params["model__sample_weight"] = np.array([weight[c] for c in y.tolist()])
    return search.fit(x, y, **params)


def comparator_scores(estimator: Any, x: np.ndarray) -> np.ndarray:
    """(n,) float64 scores of the positive class for (n, G) ``x``: ``decision_function`` where the model has one
    (logistic, SVM, boosting), else ``predict_proba[:, 1]`` (random forest). Only their ranking matters (AUC)."""
    x = np.asarray(x, dtype=np.float64)
    if hasattr(estimator, "decision_function"):
        return np.asarray(estimator.decision_function(x), dtype=np.float64).reshape(-1)
    return np.asarray(estimator.predict_proba(x)[:, 1], dtype=np.float64)
