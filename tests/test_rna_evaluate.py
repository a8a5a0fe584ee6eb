"""Evaluation helpers of the RNA chapter, on inputs with a known answer."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gbhet_lib.claims import Claim, as_metrics
from gbhet_lib.rna.evaluate import (EMBEDDING_COLUMN, RAW_COLUMN, TOKENS_COLUMN, classification_accuracy,
                                    majority_class_accuracy, probe_r2, program_probe, survival_c_index,
                                    token_enrichment)
from gbhet_lib.rna.stage import FOLDED_ARI_MIN, PROBE_GAP_MAX, chapter_claims


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


class _Truth:
    """The two attributes of a cohort truth :func:`program_probe` reads."""

    def __init__(self, activity: pd.DataFrame, visible: tuple[str, ...]) -> None:
        self.activity, self.visible_programs = activity, visible


def test_program_probe_scores_each_representation_on_the_embedding_rows() -> None:
    rng = np.random.default_rng(3)
    samples = [f"s{i}" for i in range(150)]
    activity = pd.DataFrame(rng.standard_normal((150, 2)), index=samples, columns=["hypoxia", "immune"])
    embedding = pd.DataFrame(rng.standard_normal((150, 4)), index=samples)  # carries nothing
    raw = np.column_stack([activity.to_numpy(), rng.standard_normal((150, 3))])
    tokens = pd.DataFrame(np.column_stack([activity["hypoxia"], rng.standard_normal((150, 5))]), index=samples)
    probe = program_probe(embedding, raw, _Truth(activity, ("hypoxia",)), tokens.iloc[::-1])  # rows re-aligned
    assert list(probe.columns) == [EMBEDDING_COLUMN, RAW_COLUMN, TOKENS_COLUMN, "visible in slides"]
    assert (probe[EMBEDDING_COLUMN] < 0.05).all() and (probe[RAW_COLUMN] > 0.95).all()
    assert probe.loc["hypoxia", TOKENS_COLUMN] > 0.95 and probe.loc["immune", TOKENS_COLUMN] < 0.05
    assert probe["visible in slides"].to_dict() == {"hypoxia": True, "immune": False}
    assert TOKENS_COLUMN not in program_probe(embedding, raw, _Truth(activity, ()))


def _chapter_metrics(folded_ari: float = 0.99, embedding_r2: float = 0.8) -> dict:
    programs = ["hypoxia", "immune", "neural"]
    return {"louvain_ari": 0.99, "folded_ari": folded_ari, "n_tokens": 7,
            "probe_r2": {p: embedding_r2 + 0.01 * i for i, p in enumerate(programs)},
            "probe_r2_raw": {p: 0.99 for p in programs}, "probe_r2_tokens": {p: 0.94 for p in programs}}


def test_chapter_claims_hold_on_good_metrics_and_fail_on_the_earlier_demo() -> None:
    claims = {c.id: c for c in chapter_claims(_chapter_metrics())}
    assert list(claims) == ["rna.louvain_ari", "rna.folded_ari", "rna.probe_embedding", "rna.probe_vs_raw",
                            "rna.probe_tokens_vs_raw"]
    assert all(c.holds for c in claims.values())
    folded = claims["rna.folded_ari"]
    assert (folded.value, folded.at_least, folded.null) == (0.99, FOLDED_ARI_MIN, 0.0) and "K = 7" in folded.statement
    gap = claims["rna.probe_vs_raw"]
    assert gap.value == pytest.approx(0.81 - 0.99) and gap.at_least == -PROBE_GAP_MAX
    assert gap.null == pytest.approx(-0.99)
    assert claims["rna.probe_embedding"].value == pytest.approx(0.8)  # the worst program
    stored = as_metrics(claims.values())
    assert [Claim.from_dict(c).holds for c in stored] == [True] * 5
    # the earlier demo: modules folded into the rest token (ARI 0) and an embedding at R² 0.2
    earlier = {c.id: c.holds for c in chapter_claims(_chapter_metrics(folded_ari=0.0, embedding_r2=0.2))}
    assert earlier == {"rna.louvain_ari": True, "rna.folded_ari": False, "rna.probe_embedding": False,
                       "rna.probe_vs_raw": False, "rna.probe_tokens_vs_raw": True}


def test_chapter_claims_only_what_was_measured() -> None:
    """Real data (no planted truth) or chromosome tokens: no ARI, no program probe, no claim about them."""
    assert chapter_claims({"n_tokens": 25, "token_method": "chromosome"}) == []
    metrics = _chapter_metrics()
    del metrics["probe_r2_tokens"], metrics["louvain_ari"]
    assert [c.id for c in chapter_claims(metrics)] == ["rna.folded_ari", "rna.probe_embedding", "rna.probe_vs_raw"]
