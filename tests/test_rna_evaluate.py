"""Evaluation helpers of the RNA chapter, on inputs with a known answer."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gbhet_lib.rna.evaluate import (classification_accuracy, majority_class_accuracy, probe_r2, survival_c_index,
                                    token_enrichment)


def test_probe_r2_finds_linear_signal_and_not_noise() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 10))
    targets = pd.DataFrame({"signal": x[:, 0] * 2 + 0.3 * rng.standard_normal(200), "noise": rng.standard_normal(200)})
    r2 = probe_r2(x, targets)
    assert r2["signal"] > 0.9 and r2["noise"] < 0.05
    # a target that is constant within groups and unrelated to the features is not learnable across groups
    groups = np.repeat(np.arange(20), 10)
    per_group = pd.DataFrame({"group_level": np.repeat(rng.standard_normal(20), 10)})
    assert probe_r2(x, per_group, groups=groups)["group_level"] < 0.1


def test_classification_accuracy_above_chance_only_with_signal() -> None:
    rng = np.random.default_rng(1)
    labels = np.repeat(["a", "b", "c"], 50)
    informative = rng.standard_normal((150, 5)) + np.repeat(np.eye(3, 5) * 3, 50, axis=0)
    assert classification_accuracy(informative, labels) > 0.9
    assert classification_accuracy(informative, labels, method="knn") > 0.9
    assert abs(classification_accuracy(rng.standard_normal((150, 5)), labels) - 1 / 3) < 0.15
    assert majority_class_accuracy(["a", "a", "b"]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="same samples"):
        classification_accuracy(informative[:10], labels)


def test_survival_c_index_recovers_a_risk_feature() -> None:
    rng = np.random.default_rng(2)
    n = 200
    features = pd.DataFrame(rng.standard_normal((n, 6)), index=[f"s{i}" for i in range(n)])
    durations = pd.Series(rng.exponential(1.0 / np.exp(1.5 * features[0])) * 100 + 1, index=features.index)
    events = pd.Series(1, index=features.index)
    assert survival_c_index(features, durations, events, n_components=6) > 0.7
    noise = pd.DataFrame(rng.standard_normal((n, 6)), index=features.index)
    assert abs(survival_c_index(noise, durations, events, n_components=6) - 0.5) < 0.1


def test_token_enrichment_flags_the_planted_overlap() -> None:
    universe = [f"g{i}" for i in range(200)]
    tokens = {"0": universe[:40], "1": universe[40:]}
    sets = {"planted": universe[:30] + universe[100:103], "random": universe[::10]}
    table = token_enrichment(tokens, sets, universe)
    top = table.iloc[0]
    assert (top["token"], top["gene_set"]) == ("0", "planted") and top["q"] < 1e-10
    assert table.set_index(["token", "gene_set"]).loc[("0", "random"), "q"] > 0.05
