"""Chapter 1's checks on the demo cohort: what the pixels show per level, the power analysis row, the claims."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gbhet_lib.data import stage
from gbhet_lib.data.cohort import load_cohort
from gbhet_lib.data.synthetic import CohortSpec


def test_pixel_statistics_follow_their_programs_and_split_by_level(small_cohort: Path) -> None:
    cohort = load_cohort(small_cohort)
    slides = stage.slide_programs(cohort)
    assert len(slides) == len(cohort.slides) and set(stage.PROGRAM_PIXEL_STATISTIC.values()) <= set(slides.columns)
    levels = stage.pixel_levels(slides)
    parts = levels[["between patients", "between lineages of a patient", "between sections of a lineage"]]
    np.testing.assert_allclose(parts.astype(float).sum(axis=1), 1.0, rtol=1e-9)
    assert (levels["spearman with program"].astype(float) > 0.5).all(), levels


def test_nested_anova_sees_no_lineage_effect_when_lineages_do_not_differ(small_cohort: Path) -> None:
    cohort = load_cohort(small_cohort)
    slides = stage.slide_programs(cohort)
    rng = np.random.default_rng(0)
    for statistic in stage.PROGRAM_PIXEL_STATISTIC.values():  # section noise only, around one value per patient
        slides[statistic] = slides["patient"].map({p: rng.normal() for p in slides["patient"].unique()}) \
            + 0.1 * rng.standard_normal(len(slides))
    levels = stage.pixel_levels(slides)
    assert (levels["F lineages / sections"].astype(float) < levels["F critical (5 %)"].astype(float) * 3).all()
    assert (levels["between patients"].astype(float) > 0.8).all()


def test_claims_read_the_power_row_of_the_demo_size(small_cohort: Path, small_spec: CohortSpec) -> None:
    cohort = load_cohort(small_cohort)
    levels = stage.pixel_levels(stage.slide_programs(cohort))
    power = pd.DataFrame([{"n_patients": small_spec.n_patients, "min_lineages": small_spec.min_lineages,
                           "max_lineages": small_spec.max_lineages, "slides_per_lineage": small_spec.slides_per_lineage,
                           "power": 0.5, "blind_above_chance": 0.0, "replicates": 10}])
    power.attrs["model"] = {"image_noise_sd": 1.0}
    claims = {c.id: c for c in stage.data_claims(cohort, small_spec, power, levels)}
    assert claims["data.slides_per_lineage"].holds and claims["data.blind_at_chance"].holds
    assert not claims["data.power"].holds and claims["data.power"].value == 0.5  # below 0.8: the claim fails
    unanalysed = stage.data_claims(cohort, small_spec, power.assign(n_patients=99), levels)
    assert not {c.id: c for c in unanalysed}["data.power"].holds
