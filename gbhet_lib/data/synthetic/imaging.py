"""The radiogenomic side of a synthetic cohort: an MRI for every subject, and a diagnostic slide for some pool samples.

Every patient (its activity: the mean over its lineages) and every pool sample gets a pre-operative MRI
(:func:`~gbhet_lib.data.synthetic.mri.render_mri_files`); its VASARI-style traits are **computed from the volumes**
(:func:`~gbhet_lib.mri.traits.binarise_vasari`), so a chapter that predicts them predicts what the images show.
The first ``n_diagnostic`` pool samples also get one diagnostic slide (``<sample>-DX1``, as TCGA names its FFPE
diagnostic slides), rendered like the lineage slides from the slide-visible programs. With RNA, MRI and a slide,
those samples are the cohort on which chapter 7 sets an MRI model beside a slide model on the same patients.

Used by the demo generator and by the semi-synthetic (reference) cohort, whose activities are real program scores.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...mri.traits import binarise_vasari
from ..cohort import DIAGNOSTIC_SLIDES, MRI
from .mri import MriEffects, MriGeometry, render_mri_files
from .programs import VISIBLE_PROGRAMS
from .slides import ProgramEffects, SlideGeometry, render_slide_files

#: what each computed trait reads and which program drives it (None: no program, a negative control)
TRAIT_RULES: dict[str, dict[str, Any]] = {
    "enhancing": {"vasari": "f5", "feature": "proportion_enhancing", "rule": ">= 1/3 of the core",
                  "program": "angiogenesis"},
    "ncet": {"vasari": "f6", "feature": "proportion_ncet", "rule": ">= 1/3 of the core",
             "program": "angiogenesis (negatively: the non-enhancing share falls as the rim grows)"},
    "necrosis": {"vasari": "f7", "feature": "proportion_necrosis", "rule": ">= 1/3 of the core", "program": "hypoxia"},
    "focal": {"vasari": "f9", "feature": "n_lesions", "rule": "one lesion (vs multifocal)", "program": None},
    "infiltrative": {"vasari": "f10", "feature": "t1_flair_ratio",
                     "rule": "T1 lesion well inside the FLAIR abnormality", "program": "mesenchymal"},
    "edema": {"vasari": "f14", "feature": "proportion_edema", "rule": ">= 1/3 of the abnormality",
              "program": "mesenchymal"},
}


#: continuous MRI feature → (the program that drives it, the sign of the effect); the others drive none of them
FEATURE_PROGRAMS: dict[str, tuple[str, int]] = {
    "proportion_necrosis": ("hypoxia", 1), "proportion_enhancing": ("angiogenesis", 1),
    "proportion_ncet": ("angiogenesis", -1), "proportion_edema": ("mesenchymal", 1),
    "t1_flair_ratio": ("mesenchymal", -1), "margin_irregularity": ("mesenchymal", 1),
}


def imaging_traits_truth() -> dict[str, dict[str, Any]]:
    """``truth.json["imaging_traits"]``: trait → VASARI number, the feature it is computed from, the rule, the
    program that drives it (None for the negative control)."""
    return {name: dict(rule) for name, rule in TRAIT_RULES.items()}


@dataclass(frozen=True)
class CohortImaging:
    """What :func:`render_cohort_imaging` made.

    Attributes:
        mri: ``mri.tsv``: index ``subject_id``; ``role`` (patient | pool), ``mri_folder`` and the computed features.
        traits: subject → binary ``trait_*`` columns (0/1), computed from the volumes.
        diagnostic_slides: ``diagnostic_slides.tsv``: index ``slide_id``; ``sample_id``, ``slide_file``.
        planted: subject → what the MRI renderer planted (radii, shares, lesions).
        slide_stats: diagnostic slide file → what the slide renderer drew.
    """

    mri: pd.DataFrame
    traits: pd.DataFrame
    diagnostic_slides: pd.DataFrame
    planted: dict[str, dict[str, float]]
    slide_stats: dict[str, dict[str, float]]


def render_cohort_imaging(out: Path, patient_activity: pd.DataFrame, pool_activity: pd.DataFrame, n_diagnostic: int,
                          slide_geometry: SlideGeometry, slide_effects: ProgramEffects, mri_geometry: MriGeometry,
                          mri_effects: MriEffects, mri_seed: np.random.SeedSequence,
                          slide_seed: np.random.SeedSequence, n_jobs: int | None = None, progress: bool = True,
                          description: str = "gbhet diagnostic slide") -> CohortImaging:
    """Write ``mri/`` for every patient and pool sample and ``diagnostic_slides/`` for the first ``n_diagnostic``
    pool samples under the cohort folder ``out``; return the tables (see :class:`CohortImaging`).

    ``patient_activity`` and ``pool_activity``: subjects × programs (standard-normal scale); programs a modality
    does not show are ignored by its renderer.
    """
    if not 0 <= n_diagnostic <= len(pool_activity):
        raise ValueError(f"n_diagnostic={n_diagnostic} must be between 0 and the {len(pool_activity)} pool samples")
    subjects = pd.concat([patient_activity, pool_activity]).rename_axis("subject_id")
    if subjects.index.has_duplicates:
        raise ValueError("patient and pool sample ids overlap: "
                         f"{sorted(set(subjects.index[subjects.index.duplicated()]))[:3]}")
    table = render_mri_files(out / MRI, subjects, mri_seed, mri_geometry, mri_effects, progress=progress)
    role = pd.Series("pool", index=subjects.index).where(~subjects.index.isin(patient_activity.index), "patient")
    planted_columns = [c for c in table.columns if c.startswith("planted_")]
    planted = {s: {c.removeprefix("planted_"): _plain(v) for c, v in row.items()}
               for s, row in table[planted_columns].iterrows()}
    mri = table.drop(columns=planted_columns).assign(role=role.reindex(table.index))
    mri = mri[["role", "mri_folder", *[c for c in mri.columns if c not in ("role", "mri_folder")]]]
    traits = binarise_vasari(mri).rename_axis(None)

    samples = pool_activity.index[:n_diagnostic]
    slide_ids = [f"{s}-DX1" for s in samples]
    visible = pool_activity.loc[samples, list(VISIBLE_PROGRAMS)].set_axis(pd.Index(slide_ids, name="slide_id"))
    stats = render_slide_files(out / DIAGNOSTIC_SLIDES, visible, slide_geometry, slide_seed, n_jobs, progress,
                               description, slide_effects) if len(visible) else {}
    diagnostic = pd.DataFrame({"sample_id": [str(s) for s in samples],
                               "slide_file": [f"{DIAGNOSTIC_SLIDES}/{sid}.tiff" for sid in slide_ids]},
                              index=pd.Index(slide_ids, name="slide_id"))
    return CohortImaging(mri=mri, traits=traits, diagnostic_slides=diagnostic, planted=planted, slide_stats=stats)


def _plain(value: Any) -> Any:
    """A JSON-friendly scalar (numpy numbers become Python numbers, rounded floats)."""
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return round(float(value), 6)
    return value
