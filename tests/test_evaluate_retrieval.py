"""Retrieval metrics of chapter 5: ranks with ties, exact chance levels (checked by simulation), summaries."""
from __future__ import annotations

import numpy as np
import pytest

from gbhet_lib.evaluate.retrieval import chance_levels, cosine_scores, mean_slide_scores, rank_queries, summarise


def _one_relevant(truth: np.ndarray, g: int) -> np.ndarray:
    relevant = np.zeros((len(truth), g), dtype=bool)
    relevant[np.arange(len(truth)), truth] = True
    return relevant


def test_hand_example_ranks_ties_and_hits() -> None:
    scores = np.array([[0.9, 0.1, 0.5],   # own candidate (0) first
                       [0.2, 0.2, 0.9],   # own (1) tied with 0, below 2: rank 1 + 1 + 0.5
                       [0.3, 0.3, 0.3]])  # constant scorer: chance rank (G + 1) / 2
    table = rank_queries(scores, _one_relevant(np.array([0, 1, 2]), 3), ["a", "b", "c"], ["P1", "P1", "P2"],
                         ["P1", "P1", "P2"], candidate_trained=[True, True, False])
    assert table["rank"].tolist() == [1.0, 2.5, 2.0]
    assert table["percentile"].tolist() == [1.0, 0.25, 0.5]
    assert table["top1"].tolist() == [1.0, 0.0, 0.0]
    assert table["patient_top1"].tolist() == [1.0, 0.0, 0.0]  # query 1's winner c belongs to P2
    assert table["winner"].tolist() == ["a", "c", "a"]
    assert table["winner_trained"].tolist() == [1.0, 0.0, 1.0]
    assert table["top1_chance"].tolist() == pytest.approx([1 / 3] * 3)
    assert table["patient_top1_chance"].tolist() == pytest.approx([2 / 3, 2 / 3, 1 / 3])
    assert table["rank_chance"].iloc[0] == pytest.approx(2.0) and table["rr_chance"].iloc[0] == pytest.approx(11 / 18)


@pytest.mark.parametrize("g, r", [(7, 1), (9, 3), (12, 2)])
def test_chance_levels_match_random_rankings(g: int, r: int) -> None:
    rng = np.random.default_rng(0)
    n = 20000
    relevant = np.zeros((n, g), dtype=bool)
    relevant[:, :r] = True
    table = rank_queries(rng.random((n, g)), relevant, list(range(g)), ["P"] * g, ["P"] * n)
    chance = chance_levels(g, np.array([r]))
    for column in ("rank", "percentile", "top1", "rr", "recall_at_5"):
        assert table[column].mean() == pytest.approx(chance[column][0], abs=0.02 * max(1, chance[column][0])), column


def test_summary_weights_intervals_and_hubness() -> None:
    # lineage A: 3 patch queries all right; lineage B: 1 query wrong; patients P1 (A) and P2 (B)
    scores = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    table = rank_queries(scores, _one_relevant(np.array([0, 0, 0, 1]), 2), ["A", "B"], ["P1", "P2"],
                         ["P1"] * 3 + ["P2"], candidate_trained=[True, False])
    table["lineage"], table["patient"], table["fold"] = ["A"] * 3 + ["B"], ["P1"] * 3 + ["P2"], 0
    patch, lineage = summarise(table, "patch", n_boot=200), summarise(table, "lineage", n_boot=200)
    assert patch["lineage_top1"] == pytest.approx(0.75) and lineage["lineage_top1"] == pytest.approx(0.5)
    assert patch["lineage_top1_chance"] == pytest.approx(0.5)
    assert patch["hub"] == "A" and patch["hub_share"] == 1.0 and patch["never_trained_share"] == 0.0
    low, high = patch["lineage_top1_ci"]
    assert 0.0 <= low <= patch["lineage_top1"] <= high <= 1.0
    assert patch["n_queries"] == 4 and lineage["n_patients"] == 2 and patch["n_folds"] == 1
    with pytest.raises(ValueError, match="lacks column"):
        summarise(table.drop(columns="patient"))


def test_errors_and_helpers() -> None:
    with pytest.raises(ValueError, match="at least one relevant"):
        rank_queries(np.zeros((1, 2)), np.zeros((1, 2), dtype=bool), ["a", "b"], ["P", "P"], ["P"])
    with pytest.raises(ValueError, match="non-finite"):
        rank_queries(np.array([[np.nan, 0.0]]), np.array([[True, False]]), ["a", "b"], ["P", "P"], ["P"])
    slides, mean = mean_slide_scores(np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]]), ["s1", "s1", "s2"])
    assert slides.tolist() == ["s1", "s2"] and mean.tolist() == [[0.5, 0.5], [2.0, 2.0]]
    cos = cosine_scores(np.array([[2.0, 1.0]]), np.array([[1.0, 1.0], [3.0, 1.0]]), centre=np.array([1.0, 1.0]))
    assert cos.round(6).tolist() == [[0.0, 1.0]]


def _pairs():
    """4 lineages (2 patients × 2), 2 slides per lineage, 3 patches per slide."""
    from types import SimpleNamespace

    lineage = np.repeat(np.arange(4), 6)
    slide = np.array([f"L{lid}-S{(i // 3) % 2}" for i, lid in enumerate(lineage)], dtype=object)
    return SimpleNamespace(lineage_ids=("A1", "A2", "B1", "B2"), patch_lineage=lineage, patch_slide=slide,
                           patch_key=np.array([f"{s}:{i}" for i, s in enumerate(slide)], dtype=object),
                           lineage_patient=np.array(["A", "A", "B", "B"], dtype=object))


def test_score_split_perfect_model_and_blind_null() -> None:
    from gbhet_lib.evaluate.stage import retrieval_metrics, score_split

    data = _pairs()
    rna = np.eye(4)
    held = np.flatnonzero(np.isin(data.patch_lineage, [2, 3]))  # patient B held out
    train = np.flatnonzero(np.isin(data.patch_lineage, [0, 1]))
    image = rna[data.patch_lineage[held]] + 0.01  # each patch points at its own profile
    table = score_split(image, rna[data.patch_lineage[train]].mean(0), rna, data, held, train)
    model = table[table["scorer"] == "model"]
    assert set(model["direction"]) == {"image→rna", "rna→slide"}
    assert (model["top1"] == 1).all() and (model["percentile"] == 1).all()
    patch_all = model[(model["level"] == "patch") & (model["gallery"] == "all")]
    assert len(patch_all) == 12 and patch_all["candidates"].eq(4).all() and patch_all["winner_trained"].eq(0).all()
    rna_slide = model[model["direction"] == "rna→slide"]
    assert len(rna_slide) == 2 and rna_slide["relevant"].eq(2).all() and rna_slide["candidates"].eq(4).all()
    null = table[(table["scorer"] == "null") & (table["gallery"] == "held_out") & (table["level"] == "patch")]
    assert null["winner"].nunique() == 1  # the image-blind null ranks the gallery the same way for every query
    metrics = retrieval_metrics(table.assign(variant="v", protocol="patient_cv", fold="f0"), n_boot=50)
    entry = metrics["v"]["patient_cv"]
    assert entry["percentile"] == 1.0 and entry["n_queries"] == 12 and entry["never_trained_share"] == 1.0
    assert entry["held_out_gallery_balanced"]["null_percentile"] == pytest.approx(0.5)
    assert entry["rna_to_slide"]["lineage_top1"] == 1.0


def test_claims_follow_the_intervals() -> None:
    from gbhet_lib.evaluate.stage import retrieval_claims

    def entry(p, low, high, null=0.5, null_high=0.6, top1=0.3):
        return {"percentile": p, "percentile_ci": [low, high], "null_percentile": null,
                "null_percentile_ci": [0.4, null_high], "lineage_top1": top1}

    metrics = {"best": {"patient_cv": {**entry(0.7, 0.6, 0.8), "held_out_gallery": entry(0.7, 0.62, 0.8),
                                       "held_out_gallery_balanced": entry(0.7, 0.6, 0.8)},
                        "patch": entry(0.9, 0.85, 0.95, top1=0.8)},
               "frozen": {"patient_cv": {**entry(0.55, 0.45, 0.65), "held_out_gallery": entry(0.55, 0.45, 0.65),
                                         "held_out_gallery_balanced": entry(0.55, 0.4, 0.7, null=0.5)}},
               "linear": {"patient_cv": {"held_out_gallery": entry(0.6, 0.5, 0.65)}}}
    claims = {c.id: c for c in retrieval_claims(metrics, ["best", "frozen"], oracle_power=1.0)}
    assert claims["retrieval.best.cv_above_null"].holds and "retrieval.frozen.cv_not_shown" in claims
    assert claims["retrieval.best.paper_protocol_optimistic"].value == pytest.approx(0.5)
    assert claims["retrieval.best.cv_null_at_chance"].holds
    assert claims["retrieval.best_vs_linear"].holds and "above the linear" in claims["retrieval.best_vs_linear"].statement
    metrics["best"]["patient_cv"]["held_out_gallery_balanced"]["null_percentile"] = 0.6  # a leak
    assert not {c.id: c for c in retrieval_claims(metrics, ["best"])}["retrieval.best.cv_null_at_chance"].holds
