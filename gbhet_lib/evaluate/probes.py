"""Slide-level linear probes: do patch features predict a slide's program activity on slides of unseen patients?

The probe is the ridge probe of :func:`gbhet_lib.rna.evaluate.probe_r2` (standardised features, ridge regression,
the penalty chosen by cross-validation), moved to slides:

* it is **trained on patches**, each patch carrying its slide's target (``train_on="patches"``), or on the slides'
  mean-pooled features (``train_on="slides"``);
* the outer folds are **grouped** (by patient): all slides of a patient are in one test fold, so every prediction
  is for a slide of a patient the probe never saw;
* a slide's prediction is the **mean of its patches'** out-of-fold predictions;
* **R² is over slides**: 1 − Σ_slides (y − ŷ)² / Σ_slides (y − ȳ)², ȳ the mean of the slide targets (0 = no better
  than the mean, can be < 0). The per-patch R² (every patch against its target) is reported beside it.

The penalty is chosen inside each training fold by an inner cross-validation that is grouped the same way
(``alpha_cv="group"``, the default): a per-patch leave-one-out choice (``alpha_cv="patch"``, what ``RidgeCV`` does
and what :func:`~gbhet_lib.rna.evaluate.probe_r2` uses) rewards memorising slides from their stain and texture, since
the other patches of a left-out patch's slide share its target, and so picks too little shrinkage.

The two trainings differ for focal patterns. Patch-level least squares is Σ_s n_s (y_s − w·x̄_s)² +
Σ_s Σ_p (w·(x_p − x̄_s))²: the slide-level fit plus a penalty on how much the prediction varies between the patches
of one slide. A feature that marks a focal pattern (a necrosis focus, a vessel) varies most within slides, so a
patch-trained probe down-weights it and its slide-level R² falls, although mean pooling would read the pattern well.
:attr:`SlideProbe.null_r2` gives the chance level of the slide R² under these grouped folds (about −0.1 to −0.4
with a handful of patients, not 0).

:func:`r2_interval` gives a cluster-bootstrap interval of the slide-level R², resampling patients (the independent
unit; :func:`gbhet_lib.evaluate.metrics.bootstrap_ci` resamples the same way but takes a statistic of one value
per item, not of (prediction, target) pairs).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import pandas as pd

#: ridge penalties tried: those of :func:`gbhet_lib.rna.evaluate.probe_r2` (10⁻³…10³) extended to 10⁶, since a
#: probe here sees 10³–10⁵ patches and the penalty adds to XᵀX, which grows with the number of patches
ALPHAS: np.ndarray = np.logspace(-3, 6, 19)


@dataclass(frozen=True)
class SlideProbe:
    """What :func:`slide_probe` computed (P programs, S slides, N patches).

    Attributes:
        slide_r2: (P,) R² over slides of the slide-averaged out-of-fold predictions.
        patch_r2: (P,) R² over patches of the out-of-fold patch predictions against each patch's target.
        null_r2: (P,) the chance level of ``slide_r2``: the slide R² of predicting each test fold with the mean
            target of its training rows (negative: held-out patients' mean differs from the training mean).
        slide_predictions: slides × programs, the mean out-of-fold prediction of each slide's patches.
        slide_targets: slides × programs, each slide's target (the mean of its patches' targets).
        slide_group: (S,) the group (patient) of each slide.
        slide_fold: (S,) the outer fold in which each slide was predicted.
        patch_predictions: (N, P) out-of-fold prediction of each patch, in the order of the features.
        alphas: folds × programs, the ridge penalty chosen in each outer fold.
        alpha_cv: how the penalties were chosen (``group`` or ``patch``; what ``auto`` decided).
    """

    slide_r2: pd.Series
    patch_r2: pd.Series
    null_r2: pd.Series
    slide_predictions: pd.DataFrame
    slide_targets: pd.DataFrame
    slide_group: pd.Series
    slide_fold: pd.Series
    patch_predictions: np.ndarray
    alphas: pd.DataFrame
    alpha_cv: str = "group"

    def table(self) -> pd.DataFrame:
        """programs × (``slide_r2``, ``patch_r2``, ``null_r2``)."""
        return pd.DataFrame({"slide_r2": self.slide_r2, "patch_r2": self.patch_r2, "null_r2": self.null_r2})

    def intervals(self, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
        """programs × (``r2``, ``low``, ``high``): the slide-level R² and its patient-bootstrap interval."""
        rows = {p: r2_interval(self.slide_predictions[p], self.slide_targets[p], self.slide_group, n_boot, level,
                               seed) for p in self.slide_targets.columns}
        return pd.DataFrame(rows, index=["r2", "low", "high"]).T


def slide_probe_r2(features: np.ndarray, targets: pd.DataFrame, slide: Sequence[object], group: Sequence[object],
                   folds: int = 5, seed: int = 0, **options: object) -> pd.Series:
    """Slide-level R² (programs,) of a ridge probe trained on patch features, tested on unseen patients' slides.

    See :func:`slide_probe` for the arguments and ``options``; this returns its ``slide_r2``.
    """
    return slide_probe(features, targets, slide, group, folds, seed, **options).slide_r2  # type: ignore[arg-type]


def slide_probe(features: np.ndarray, targets: pd.DataFrame, slide: Sequence[object], group: Sequence[object],
                folds: int = 5, seed: int = 0, alpha_cv: Literal["group", "patch", "auto"] = "group",
                alphas: Sequence[float] = tuple(ALPHAS),
                targets_per: Literal["auto", "slide", "patch"] = "auto",
                train_on: Literal["patches", "slides"] = "patches") -> SlideProbe:
    """Cross-validated ridge probe of each target column from patch features, scored per slide and per patch.

    Args:
        features: (N, D) patch features (finite).
        targets: programs as columns, rows either one per slide (index = the slide ids, every slide of ``slide``
            present; extra rows are ignored) or one per patch (N rows, in the order of ``features``; a slide's target
            is then the mean of its patches'). Finite numbers.
        slide: (N,) the slide of each patch.
        group: (N,) the independent unit of each patch, e.g. its patient; every slide lies in one group.
        folds: outer folds (≤ the number of groups); groups are shuffled into folds with ``seed``
            (``GroupKFold(shuffle=True)``).
        alpha_cv: how each training fold chooses the penalty among ``alphas``: ``"group"``, an inner grouped
            cross-validation (min(folds, training groups) folds, lowest pooled squared error over patches), or
            ``"patch"``, ``RidgeCV``'s leave-one-patch-out (as :func:`gbhet_lib.rna.evaluate.probe_r2`), or
            ``"auto"``: ``group`` when every training fold holds at least two groups, else ``patch``.
        alphas: the ridge penalties tried (default :data:`ALPHAS`).
        train_on: ``"patches"``: the ridge is fitted on patches, each with its slide's target; ``"slides"``: on
            the slides' mean features (mean pooling; one row per slide). Either way a slide's prediction is the
            mean of its patches' predictions (the model is linear), and the folds are the same.
        targets_per: ``"slide"`` or ``"patch"`` rows; ``"auto"`` decides from the index and the row count and
            raises when both readings fit but differ.

    Returns:
        :class:`SlideProbe`: slide-level and patch-level R² per program, the predictions, folds and penalties.

    Raises:
        ValueError: mismatched lengths, non-finite values, a slide in two groups, fewer groups than folds,
            targets that are neither per slide nor per patch.
    """
    x, y_patch, slide_ids, group_ids, columns = _check_inputs(features, targets, slide, group, folds, targets_per)
    if alpha_cv not in ("group", "patch", "auto"):
        raise ValueError(f"alpha_cv={alpha_cv!r} must be 'group', 'patch' or 'auto'")
    grid = np.asarray(alphas, dtype=np.float64).reshape(-1)
    if grid.size == 0 or np.any(grid <= 0):
        raise ValueError(f"alphas must be positive penalties, got {alphas}")
    if train_on not in ("patches", "slides"):
        raise ValueError(f"train_on={train_on!r} must be 'patches' or 'slides'")

    slides, slide_index = np.unique(slide_ids, return_inverse=True)
    first = np.unique(slide_index, return_index=True)[1]
    slide_x, slide_true = _slide_means(x, slide_index), _slide_means(y_patch, slide_index)
    fold_of = _outer_folds(group_ids, folds, seed)  # per patch; a slide's patches share a fold
    slide_fold, slide_groups = fold_of[first], group_ids[first]
    rows = (x, y_patch, group_ids, fold_of) if train_on == "patches" else \
        (slide_x, slide_true, slide_groups, slide_fold)
    row_x, row_y, row_group, row_fold = rows

    if alpha_cv == "auto":  # grouped where every training fold holds two groups or more, else per row
        alpha_cv = "group" if all(len(np.unique(row_group[row_fold != k])) >= 2 for k in range(folds)) else "patch"
    predicted = np.empty_like(y_patch)
    null = np.empty_like(slide_true)
    chosen = np.empty((folds, len(columns)))
    for k in range(folds):
        train = row_fold != k
        if alpha_cv == "group":
            chosen[k] = _grouped_alpha(row_x[train], row_y[train], row_group[train], folds, grid)
        else:
            chosen[k] = _loo_alpha(row_x[train], row_y[train], grid)
        predicted[fold_of == k] = _Ridge.fit(row_x[train], row_y[train]).predict(x[fold_of == k], chosen[k])
        null[slide_fold == k] = row_y[train].mean(axis=0)
    slide_pred = _slide_means(predicted, slide_index)

    def r2(truth: np.ndarray, guess: np.ndarray, name: str) -> pd.Series:
        return pd.Series([r2_score(truth[:, j], guess[:, j]) for j in range(len(columns))], index=columns, name=name)

    name = pd.Index(slides, name="slide")
    return SlideProbe(
        slide_r2=r2(slide_true, slide_pred, "slide_r2"), patch_r2=r2(y_patch, predicted, "patch_r2"),
        null_r2=r2(slide_true, null, "null_r2"),
        slide_predictions=pd.DataFrame(slide_pred, index=name, columns=columns),
        slide_targets=pd.DataFrame(slide_true, index=name, columns=columns),
        slide_group=pd.Series(slide_groups, index=name, name="group"),
        slide_fold=pd.Series(slide_fold, index=name, name="fold"),
        patch_predictions=predicted,
        alphas=pd.DataFrame(chosen, index=pd.RangeIndex(folds, name="fold"), columns=columns), alpha_cv=alpha_cv,
    )


def r2_score(target: np.ndarray, predicted: np.ndarray) -> float:
    """1 − Σ (y − ŷ)² / Σ (y − ȳ)² over the items given; NaN when the targets are all equal."""
    y = np.asarray(target, dtype=np.float64).reshape(-1)
    p = np.asarray(predicted, dtype=np.float64).reshape(-1)
    if len(y) != len(p):
        raise ValueError(f"one prediction per target: got {len(p)} predictions and {len(y)} targets")
    sst = np.sum((y - y.mean()) ** 2)
    return float(1.0 - np.sum((y - p) ** 2) / sst) if sst > 0 else float("nan")


def r2_interval(predicted: Sequence[float], target: Sequence[float], group: Sequence[object], n_boot: int = 2000,
                level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """R² of S item predictions (e.g. slides) and its cluster-bootstrap percentile interval: (r2, low, high).

    Each of ``n_boot`` resamples draws the G groups (patients) with replacement (``default_rng(seed)``, as
    :func:`gbhet_lib.evaluate.metrics.bootstrap_ci`) and pools all their items; R² is recomputed on the pool with
    the pool's own mean. Resamples whose targets are all equal (R² undefined, e.g. one patient drawn G times) are
    left out of the quantiles. With few patients (under about ten) the interval is wide and skewed low: a resample
    that repeats a patient has little target spread, so its R² can be very negative.

    Args:
        predicted, target: (S,) one prediction and one target per item.
        group: (S,) the group of each item (G ≥ 2 distinct).
    """
    from .metrics import group_resamples

    p = np.asarray(predicted, dtype=np.float64).reshape(-1)
    y = np.asarray(target, dtype=np.float64).reshape(-1)
    groups = np.asarray(group, dtype=object).reshape(-1).astype(str)
    if not len(p) == len(y) == len(groups):
        raise ValueError(f"one prediction, target and group per item: got {len(p)}, {len(y)} and {len(groups)}")
    _, members, draws = group_resamples(groups, n_boot, level, seed)
    stats = np.array([r2_score(y[rows], p[rows]) for rows in (np.concatenate([members[j] for j in d])
                                                               for d in draws)])
    if np.all(np.isnan(stats)):
        return r2_score(y, p), float("nan"), float("nan")
    low, high = np.nanquantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return r2_score(y, p), float(low), float(high)


# ------------------------------------------------------------------------------------------------ internals
class _Ridge:
    """Standardised ridge regression for many penalties and targets at once (``StandardScaler`` + ``Ridge``).

    Features are centred and scaled by the training mean and standard deviation (constant features: scale 1),
    targets centred; the coefficients for penalty α are (XᵀX + αI)⁻¹XᵀY, from one eigendecomposition of XᵀX.
    """

    def __init__(self, mean: np.ndarray, scale: np.ndarray, y_mean: np.ndarray, eigvec: np.ndarray,
                 eigval: np.ndarray, xty_rotated: np.ndarray) -> None:
        self.mean, self.scale, self.y_mean = mean, scale, y_mean
        self.eigvec, self.eigval, self.xty_rotated = eigvec, eigval, xty_rotated

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray) -> "_Ridge":
        """Fit on x (n, D) and y (n, T)."""
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale < 1e-12 * np.maximum(np.abs(mean), 1.0)] = 1.0
        xs = (x - mean) / scale
        y_mean = y.mean(axis=0)
        eigval, eigvec = np.linalg.eigh(xs.T @ xs)
        return cls(mean, scale, y_mean, eigvec, np.maximum(eigval, 0.0), eigvec.T @ (xs.T @ (y - y_mean)))

    def predict(self, x: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """Predictions (m, T) for x (m, D), target t with penalty ``alpha[t]`` (T,)."""
        coef = self.eigvec @ (self.xty_rotated / (self.eigval[:, None] + np.asarray(alpha)[None, :]))  # (D, T)
        return ((x - self.mean) / self.scale) @ coef + self.y_mean

    def predict_all(self, x: np.ndarray, alphas: np.ndarray) -> np.ndarray:
        """Predictions (A, m, T) for every penalty of ``alphas`` (A,)."""
        xs = ((x - self.mean) / self.scale) @ self.eigvec  # (m, D) in the eigenbasis
        return np.stack([xs @ (self.xty_rotated / (self.eigval[:, None] + a)) for a in alphas]) + self.y_mean


def _grouped_alpha(x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int, alphas: np.ndarray) -> np.ndarray:
    """Per target, the penalty with the lowest pooled squared error over an inner grouped cross-validation."""
    from sklearn.model_selection import GroupKFold

    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise ValueError("a training fold holds a single group, so the penalty cannot be chosen on held-out groups: "
                         "use more groups (patients) than folds, or alpha_cv='patch'")
    sse = np.zeros((len(alphas), y.shape[1]))
    for train, test in GroupKFold(min(folds, n_groups)).split(x, groups=groups):
        predicted = _Ridge.fit(x[train], y[train]).predict_all(x[test], alphas)
        sse += ((predicted - y[test][None]) ** 2).sum(axis=1)
    return alphas[np.argmin(sse, axis=0)]


def _loo_alpha(x: np.ndarray, y: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Per target, ``RidgeCV``'s leave-one-out choice on standardised features (as ``probe_r2``)."""
    from sklearn.linear_model import RidgeCV
    from sklearn.preprocessing import StandardScaler

    ridge = RidgeCV(alphas=alphas, alpha_per_target=True).fit(StandardScaler().fit_transform(x), y)
    return np.broadcast_to(np.asarray(ridge.alpha_, dtype=np.float64), (y.shape[1],)).copy()


def _slide_means(values: np.ndarray, slide_index: np.ndarray) -> np.ndarray:
    """Row means (S, k) of values (N, k) per slide (``slide_index`` (N,) in [0, S), every slide present)."""
    order = np.argsort(slide_index, kind="stable")
    counts = np.bincount(slide_index)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return np.add.reduceat(values[order], starts, axis=0) / counts[:, None]


def _outer_folds(groups: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """(N,) outer fold of each row: groups shuffled into ``folds`` folds of similar size."""
    from sklearn.model_selection import GroupKFold

    fold_of = np.empty(len(groups), dtype=np.int64)
    for k, (_, test) in enumerate(GroupKFold(folds, shuffle=True, random_state=seed).split(groups, groups=groups)):
        fold_of[test] = k
    return fold_of


def _check_inputs(features: np.ndarray, targets: pd.DataFrame, slide: Sequence[object], group: Sequence[object],
                  folds: int, targets_per: str = "auto") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                                    pd.Index]:
    """Validated (features (N, D) float64, patch targets (N, P) float64, slide ids (N,), group ids (N,), programs)."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0 or x.shape[1] == 0:
        raise ValueError(f"features must be a non-empty 2-D array (patches × dimensions), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"features hold {int((~np.isfinite(x)).sum())} non-finite values (NaN or inf)")
    slide_ids = np.asarray(slide, dtype=object).reshape(-1)
    group_ids = np.asarray(group, dtype=object).reshape(-1)
    if not len(slide_ids) == len(group_ids) == len(x):
        raise ValueError(f"one slide and one group per patch: features have {len(x)} rows, slide has "
                         f"{len(slide_ids)} and group has {len(group_ids)}")
    if not isinstance(targets, pd.DataFrame) or targets.shape[1] == 0:
        raise ValueError("targets must be a DataFrame with one column per program")
    per_slide = pd.DataFrame({"slide": slide_ids, "group": group_ids}).drop_duplicates()
    spanning = per_slide["slide"][per_slide["slide"].duplicated()].unique()
    if len(spanning):
        raise ValueError(f"every slide must lie in one group (patient); slides in several: {list(spanning[:5])}")
    n_groups = per_slide["group"].nunique()
    if not isinstance(folds, (int, np.integer)) or folds < 2 or folds > n_groups:
        raise ValueError(f"folds={folds} must be an integer in [2, number of groups = {n_groups}]")
    y = _patch_targets(targets, slide_ids, pd.Index(per_slide["slide"]), targets_per)
    try:
        y_values = y.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"targets must be numeric: {error}") from None
    if not np.isfinite(y_values).all():
        raise ValueError("targets hold NaN or inf values; drop those slides (or patches) first")
    return x, y_values, slide_ids, group_ids, targets.columns


def _patch_targets(targets: pd.DataFrame, slide_ids: np.ndarray, slides: pd.Index, targets_per: str) -> pd.DataFrame:
    """The target rows of each patch (N rows): ``targets`` itself (per patch) or its slide rows (per slide)."""
    if targets_per not in ("auto", "slide", "patch"):
        raise ValueError(f"targets_per={targets_per!r} must be 'auto', 'slide' or 'patch'")
    index = targets.index
    by_slide = index.is_unique and bool(slides.isin(index).all())
    by_patch = len(targets) == len(slide_ids)
    if targets_per == "auto" and by_slide and by_patch and not np.array_equal(index.to_numpy(dtype=object),
                                                                              slide_ids):
        raise ValueError("targets could be one row per slide (its index holds every slide id) or one row per patch "
                         "(it has one row per patch): pass targets_per='slide' or 'patch'")
    if targets_per == "slide" or (targets_per == "auto" and by_slide):
        if not by_slide:
            missing = slides.difference(index)[:5]
            raise ValueError(f"targets per slide need a unique index holding every slide id; missing e.g. "
                             f"{list(missing)}")
        return targets.loc[slide_ids]
    if not by_patch:
        missing = slides.difference(index)[:5]
        raise ValueError(f"targets must have one row per slide (index = slide ids; missing e.g. {list(missing)}) or "
                         f"one row per patch ({len(slide_ids)} rows); got {len(targets)} rows")
    return targets
