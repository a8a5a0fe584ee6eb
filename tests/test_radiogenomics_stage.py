"""Chapter 8's stage: the pool split, the settings checks, and claims that hold whatever was measured."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from gbhet_lib.config import ConfigError
from gbhet_lib.radiogenomics import stage


def fake_cohort() -> SimpleNamespace:
    traits = {"necrosis": {"program": "hypoxia"}, "ncet": {"program": "angiogenesis (negatively: ...)"},
              "focal": {"program": None}}
    return SimpleNamespace(truth=SimpleNamespace(imaging_traits=traits))


def test_split_pool_is_seeded_disjoint_and_refuses_a_small_pool() -> None:
    samples = [f"S{i:03d}" for i in range(100)]
    a, b = stage.split_pool(samples, 60, seed=0)
    assert len(a) == 60 and len(b) == 40 and not set(a) & set(b) and sorted(a + b) == samples
    assert stage.split_pool(samples, 60, seed=0) == (a, b) and stage.split_pool(samples, 60, seed=1) != (a, b)
    with pytest.raises(ValueError, match="n_radiogenomic=90 must leave at least 20"):
        stage.split_pool(samples, 90, seed=0)


def test_settings_name_what_is_wrong() -> None:
    with pytest.raises(ConfigError, match="traits="):
        stage.RadiogenomicSettings(traits=("necrosis", "size"))
    with pytest.raises(ConfigError, match="comparators"):
        stage.RadiogenomicSettings(comparators=("xgboost",))
    assert stage.RadiogenomicSettings().to_dict()["traits"][0] == "enhancing"


def test_driving_program_reads_the_truth() -> None:
    cohort = fake_cohort()
    assert stage.driving_program(cohort, "necrosis") == "hypoxia"
    assert stage.driving_program(cohort, "ncet") == "angiogenesis"
    assert stage.driving_program(cohort, "focal") is None


def aucs(network: float, comparator: float, low_shift: float) -> pd.DataFrame:
    rows = []
    for trait in ("necrosis", "focal"):
        rows.append({"trait": trait, "model": "network", "auc": network, "auc_low": network - low_shift,
                     "auc_high": network + 0.05, "auc_fold_mean": network, "auc_paper_selection": network + 0.04,
                     "optimism": 0.04})
        diff = network - comparator
        rows.append({"trait": trait, "model": "logit_l2", "auc": comparator, "auc_low": comparator - 0.05,
                     "auc_high": comparator + 0.05, "auc_fold_mean": comparator, "network_minus": diff,
                     "network_minus_low": diff - 0.05, "network_minus_high": diff + 0.05})
    return pd.DataFrame(rows).set_index(["trait", "model"])


@pytest.mark.parametrize("network, comparator, low_shift", [(0.85, 0.6, 0.05), (0.55, 0.9, 0.1), (0.7, 0.7, 0.3)])
def test_every_claim_holds_as_worded(network: float, comparator: float, low_shift: float) -> None:
    table = aucs(network, comparator, low_shift)
    masking = pd.DataFrame({"set": ["hypoxia", "immune"], "auc": [0.9, 0.5]})
    enriched = pd.DataFrame({"hypoxia": [True, False, False], "immune": [False] * 3})
    interpretation = pd.DataFrame({"masking_top_set": ["hypoxia"], "masking_top_auc": [0.9], "driving_rank": [1],
                                   "single_top_share": [0.02], "single_base_rate": [0.06]}, index=["necrosis"])
    claims = stage.radiogenomic_claims(table, interpretation, {"necrosis": {"masking": masking,
                                                                           "enriched": enriched}}, fake_cohort())
    assert claims and all(c.holds for c in claims)
    ids = {c.id for c in claims}
    assert "radiogenomics.necrosis.masking_names.hypoxia" in ids
    assert "radiogenomics.necrosis.single_genes_not_in.hypoxia" in ids  # 0.02 < base rate 0.06
    assert "radiogenomics.necrosis.saliency_enriches.hypoxia" in ids  # 1 of 3 patients > 5 %
    assert ("radiogenomics.focal.control_at_chance" in ids) == (network - low_shift <= 0.5)
    assert any(i.endswith(".ahead") for i in ids) == (network - comparator - 0.05 > 0)
    assert "radiogenomics.paper_selection_optimism" in ids
    published = stage.published_table(table, "demo pool")
    assert list(published.index) == ["necrosis", "focal"] and np.isclose(published.loc["necrosis", "paper margin"],
                                                                        0.751 - 0.638)
