"""Clinical variables driven by known programs: overall and progression-free survival (the imaging traits are
computed from each subject's MRI: :mod:`gbhet_lib.data.synthetic.imaging`)."""
from __future__ import annotations

import numpy as np
import pandas as pd

#: log-hazard per unit of program activity (Cox proportional hazards); neural is protective and image-invisible
OS_LOG_HAZARD: dict[str, float] = {"hypoxia": 0.7, "proliferation": 0.5, "neural": -0.5}
PFS_LOG_HAZARD: dict[str, float] = {"hypoxia": 0.5, "proliferation": 0.6}
AGE_LOG_HAZARD_PER_YEAR = 0.02


def draw_demographics(rng: np.random.Generator, index: pd.Index) -> pd.DataFrame:
    """Sex (F/M) and age at diagnosis (years, N(60, 10) clipped to 20–85)."""
    return pd.DataFrame({
        "sex": rng.choice(np.array(["F", "M"]), size=len(index), p=[0.4, 0.6]),
        "age_years": np.clip(rng.normal(60.0, 10.0, len(index)), 20, 85).round(1),
    }, index=index)


def draw_survival(
    rng: np.random.Generator, activity: pd.DataFrame, age_years: pd.Series,
    os_median_days: float = 450.0, pfs_median_days: float = 210.0, weibull_shape: float = 1.4,
    follow_up_days: tuple[float, float] = (300.0, 1800.0),
) -> pd.DataFrame:
    """Overall and progression-free survival with right-censoring (days; event 1 = observed).

    Death and progression times are Weibull proportional-hazards draws whose log-hazard is
    ``OS_LOG_HAZARD``/``PFS_LOG_HAZARD`` · activity (+ age effect for OS); the baseline scale puts the
    median at the given value for a patient with zero activity aged 60. PFS = min(progression, death),
    as in trials; follow-up ends uniformly within ``follow_up_days`` (administrative censoring).
    """
    def weibull_ph(log_hazard: np.ndarray, median: float) -> np.ndarray:
        scale = median / np.log(2.0) ** (1.0 / weibull_shape)
        u = rng.random(len(log_hazard))
        return scale * (-np.log(u) / np.exp(log_hazard)) ** (1.0 / weibull_shape)

    age_effect = AGE_LOG_HAZARD_PER_YEAR * (age_years.to_numpy() - 60.0)
    death = weibull_ph(_linear(activity, OS_LOG_HAZARD) + age_effect, os_median_days)
    progression = weibull_ph(_linear(activity, PFS_LOG_HAZARD), pfs_median_days)
    follow_up = rng.uniform(*follow_up_days, len(activity))
    pfs = np.minimum(progression, death)
    return pd.DataFrame({
        "os_days": np.minimum(death, follow_up).round(0).astype(int).clip(min=1),
        "os_event": (death <= follow_up).astype(int),
        "pfs_days": np.minimum(pfs, follow_up).round(0).astype(int).clip(min=1),
        "pfs_event": (pfs <= follow_up).astype(int),
    }, index=activity.index)


def _linear(activity: pd.DataFrame, coefficients: dict[str, float]) -> np.ndarray:
    total = np.zeros(len(activity))
    for program, coef in coefficients.items():
        total += coef * activity[program].to_numpy()
    return total
