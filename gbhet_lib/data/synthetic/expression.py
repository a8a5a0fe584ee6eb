"""Negative-binomial RNA-seq counts driven by program activities."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .genes import GeneUniverse


def draw_size_factors(rng: np.random.Generator, samples: pd.Index, sd_log: float = 0.35) -> pd.Series:
    """Per-sample library size factors, log-normal with median 1 (sd of log = ``sd_log``)."""
    return pd.Series(np.exp(rng.normal(0.0, sd_log, len(samples))), index=samples, name="size_factor")


def draw_counts(
    rng: np.random.Generator,
    genes: GeneUniverse,
    activity: pd.DataFrame,
    size_factors: pd.Series,
    log_offset: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Raw counts, genes × samples (int64).

    Mean: μ_gs = s_s · exp(b_g + Σ_p W_gp a_sp + o_gs), where s = ``size_factors``, b = log base mean,
    W = program loadings, a = ``activity`` (samples × programs) and o = ``log_offset`` (genes × samples,
    e.g. patient or batch effects). Counts ~ NB(μ, φ_g) drawn as a gamma–Poisson mixture.
    """
    log_mu = genes.log_base_mean.to_numpy()[:, None] + genes.loadings.to_numpy() @ activity.to_numpy().T
    if log_offset is not None:
        log_mu = log_mu + log_offset.loc[genes.loadings.index, activity.index].to_numpy()
    mu = size_factors.loc[activity.index].to_numpy()[None, :] * np.exp(log_mu)
    phi = genes.dispersion.to_numpy()[:, None]
    lam = rng.gamma(shape=1.0 / phi, scale=mu * phi)
    counts = rng.poisson(lam).astype(np.int64)
    return pd.DataFrame(counts, index=genes.loadings.index, columns=activity.index)


def patient_and_batch_offsets(
    rng: np.random.Generator, genes: GeneUniverse, lineages: pd.DataFrame, patient_sd: float, batch_sd: float
) -> pd.DataFrame:
    """Log-scale offsets for the lineage cohort, genes × lineages.

    Every gene gets a patient-specific shift N(0, patient_sd²) shared by the lineages of one patient
    (lineages of a patient resemble each other beyond programs), plus one cohort-wide batch shift
    N(0, batch_sd²) per gene (the cohort was sequenced apart from the pre-training pool).
    """
    patients = lineages["patient_id"].unique()
    n = len(genes.loadings)
    per_patient = pd.DataFrame(rng.normal(0.0, patient_sd, (n, len(patients))), columns=patients)
    batch = rng.normal(0.0, batch_sd, n)[:, None]
    values = per_patient[lineages["patient_id"].to_numpy()].to_numpy() + batch
    return pd.DataFrame(values, index=genes.loadings.index, columns=lineages.index)
