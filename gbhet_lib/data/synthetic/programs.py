"""Latent biological programs of the synthetic GBM cohort and how their activities are drawn.

A program is a latent per-sample activity (standard-normal scale, unitless). Each program drives one gene
module; only the *image-visible* programs change slide textures, and only the *MRI-visible* ones change the MRI
volumes; the others are negative controls (immune and neural are seen by neither modality, proliferation only
by the slides, mesenchymal only by the MRI).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Program:
    """One latent program: its name, whether slides show it, whether the MRI shows it, and what it stands for."""

    name: str
    visible: bool
    description: str
    mri_visible: bool = False


PROGRAMS: tuple[Program, ...] = (
    Program("hypoxia", True, "hypoxia / necrosis: pale necrotic foci with pseudopalisading nuclei; on MRI a larger "
            "necrotic core", mri_visible=True),
    Program("proliferation", True, "cell cycle: nuclear density and hyperchromasia (invisible on MRI)"),
    Program("angiogenesis", True, "microvascular proliferation: vessel density, glomeruloid tufts; on MRI a thicker, "
            "brighter enhancing rim", mri_visible=True),
    Program("immune", False, "myeloid / lymphoid infiltration (rendered nowhere: negative control)"),
    Program("neural", False, "neuronal / OPC-like state (rendered nowhere: negative control)"),
    Program("mesenchymal", False, "mesenchymal / invasive state: not on the slides; on MRI wider oedema with "
            "infiltrative margins", mri_visible=True),
)
PROGRAM_NAMES: tuple[str, ...] = tuple(p.name for p in PROGRAMS)
VISIBLE_PROGRAMS: tuple[str, ...] = tuple(p.name for p in PROGRAMS if p.visible)
#: the programs that change the MRI volumes (:mod:`gbhet_lib.data.synthetic.mri`); the others leave them untouched
MRI_VISIBLE_PROGRAMS: tuple[str, ...] = tuple(p.name for p in PROGRAMS if p.mri_visible)


def draw_cohort_activities(
    rng: np.random.Generator, n_patients: int, min_lineages: int, max_lineages: int, lineage_sd: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Patient → lineage program activities.

    Each patient gets a mean activity vector ~ N(0, I); each of its lineages (between ``min_lineages``
    and ``max_lineages``) deviates from it by N(0, lineage_sd² I): intra-tumour heterogeneity.

    Returns:
        lineages: index ``lineage_id`` (``P01-L1`` …), column ``patient_id``.
        activity: index ``lineage_id``, one column per program.
    """
    if n_patients < 1 or not 1 <= min_lineages <= max_lineages <= 9:
        raise ValueError("need n_patients >= 1 and 1 <= min_lineages <= max_lineages <= 9, got "
                         f"{n_patients}, {min_lineages}, {max_lineages}")
    rows, acts = [], []
    for p in range(n_patients):
        patient = f"P{p + 1:02d}"
        mean = rng.standard_normal(len(PROGRAMS))
        for lin in range(int(rng.integers(min_lineages, max_lineages + 1))):
            rows.append((f"{patient}-L{lin + 1}", patient))
            acts.append(mean + lineage_sd * rng.standard_normal(len(PROGRAMS)))
    index = pd.Index([r[0] for r in rows], name="lineage_id")
    lineages = pd.DataFrame({"patient_id": [r[1] for r in rows]}, index=index)
    return lineages, pd.DataFrame(np.array(acts), index=index, columns=list(PROGRAM_NAMES))


def draw_pool_activities(rng: np.random.Generator, n_samples: int) -> pd.DataFrame:
    """Independent N(0, I) activities for the RNA-only pre-training pool (index ``POOL-0001`` …)."""
    index = pd.Index([f"POOL-{i + 1:04d}" for i in range(n_samples)], name="sample_id")
    return pd.DataFrame(rng.standard_normal((n_samples, len(PROGRAMS))), index=index, columns=list(PROGRAM_NAMES))
