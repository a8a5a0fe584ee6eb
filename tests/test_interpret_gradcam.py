"""RNA Grad-CAM (spec §7.1) against autograd done by hand, integrated gradients' completeness, the aggregation and
the shuffled-pair null of chapter 6."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from gbhet_lib.fusion.data import PairedPatches, shuffled_pairing
from gbhet_lib.fusion.model import FusionModel
from gbhet_lib.interpret import gradcam, stage
from gbhet_lib.rna.model import ClusterTokenTransformer
from gbhet_lib.rna.train import TokenData
from gbhet_lib.wsi.encoder import demo_encoder

IMG = 32
TOKENS = [np.array([0, 2, 4, 6, 8]), np.array([1, 3, 5, 7, 9, 10, 11])]  # K = 2 tokens of 12 genes, any order
GENES = [f"G{j:02d}" for j in range(13)]  # G12 is in no token


def _model(seed: int = 0) -> FusionModel:
    torch.manual_seed(seed)
    image = demo_encoder(img_size=IMG, proj_dim=16)
    rna = ClusterTokenTransformer([len(t) for t in TOKENS], dim=32, heads=4)
    return FusionModel(image, rna, dim=64, heads=4, proj_dim=16).eval()


def _pairs(n_lineages: int = 4, per_lineage: int = 3, patients=("A", "A", "B", "B")) -> PairedPatches:
    rng = np.random.default_rng(0)
    lineage = np.repeat(np.arange(n_lineages), per_lineage)
    rna = TokenData(rng.normal(size=(n_lineages, len(GENES))).astype(np.float32), TOKENS, ["alpha", "beta"],
                    [f"L{i}" for i in range(n_lineages)], GENES)
    images = rng.integers(0, 256, (len(lineage), IMG, IMG, 3), dtype=np.uint8)
    slides = np.array([f"L{lid}-S1" for lid in lineage], dtype=object)
    keys = np.array([f"{s}:{i}" for i, s in enumerate(slides)], dtype=object)
    return PairedPatches(images, lineage, slides, keys, rna, np.array(patients, dtype=object))


def test_gradcam_matches_autograd_by_hand() -> None:
    model, data = _model(), _pairs()
    rows = np.array([0, 4, 7, 11])
    att = gradcam.rna_gradcam(model, data, rows, batch_size=3)  # two batches
    assert att.token_scores.shape == (4, 2) and att.gene_gradients.shape == (4, len(GENES))
    assert (att.token_scores >= 0).all() and (att.gene_gradients[:, 12] == 0).all()
    for i, row in enumerate(rows):  # one pair at a time, by hand
        pixels = torch.from_numpy(data.images[[row]])
        values = torch.from_numpy(data.rna.values[[data.patch_lineage[row]]]).requires_grad_(True)
        out = model(model.image_encoder.preprocess(pixels), [values[:, idx] for idx in TOKENS],
                    image_queries="all", return_attention=True, reconstruct=False)
        a = out.fused.image_attention  # (1, heads, T, K+1): every image query this time
        logit = model.itm_logits(out.fused)[0, 1]
        grad_a, grad_x = torch.autograd.grad(logit, [a, values])
        cam = (a * grad_a.clamp(min=0)).mean(1)[0, 0, 1:]
        np.testing.assert_allclose(att.token_scores[i], cam.detach().numpy(), rtol=1e-4, atol=1e-9)
        np.testing.assert_allclose(att.gene_gradients[i], grad_x.abs()[0].numpy(), rtol=1e-4, atol=1e-9)
        np.testing.assert_allclose(att.match_logit[i], logit.item(), rtol=1e-5)
    top = gradcam.top_genes_per_patch(att, TOKENS, n_genes=6)
    for i in range(len(rows)):
        k = att.token_scores[i].argmax()
        named = top[i][top[i] >= 0]
        assert set(named) <= set(TOKENS[k]) and len(named) == min(6, len(TOKENS[k]))
        assert (np.diff(att.gene_gradients[i, named]) <= 0).all()


def test_integrated_gradients_are_complete() -> None:
    model, data = _model(1), _pairs()
    rows = np.array([1, 5])
    ig = gradcam.integrated_gradients(model, data, rows, n_steps=128)
    with torch.no_grad():
        pixels = model.image_encoder.preprocess(torch.from_numpy(data.images[rows]))
        values = torch.from_numpy(data.rna.values[data.patch_lineage[rows]])

        def logit(x):
            out = model(pixels, [x[:, idx] for idx in TOKENS], reconstruct=False)
            return model.itm_logits(out.fused)[:, 1].numpy()

        gap = logit(values) - logit(torch.zeros_like(values))
    np.testing.assert_allclose(ig.sum(1), gap, rtol=0.02, atol=1e-3)  # completeness: Σ IG = f(x) − f(0)
    assert (ig[:, 12] == 0).all()


def test_saliency_and_match_scores_shapes() -> None:
    model, data = _model(), _pairs()
    assert gradcam.pixel_saliency(model, data, 2).shape == (3, IMG, IMG)
    scores = gradcam.match_scores(model, data, np.arange(6))
    assert scores.shape == (6,) and (np.abs(scores) <= 1 + 1e-6).all()


def test_weights_frequency_and_ranking() -> None:
    lineage = np.array([0, 0, 0, 1])
    w = gradcam.patch_weights(lineage)
    assert np.isclose(w.sum(), 1) and np.isclose(w[:3].sum(), w[3])  # each lineage weighs the same
    assert np.allclose(gradcam.patch_weights(lineage, "patch"), 0.25)
    with pytest.raises(ValueError, match="weighting"):
        gradcam.patch_weights(lineage, "slide")
    top = np.array([[0, 1], [0, 2], [0, -1], [3, 1]])
    freq = gradcam.gene_frequency(top, w, 5)
    np.testing.assert_allclose(freq, [0.5, 1 / 6 + 0.5, 1 / 6, 0.5, 0.0])
    att = stage.CvAttributions(np.arange(4), np.array(["f0"] * 4, dtype=object), lineage, top,
                               np.tile([0.1, 0.2, 0.3, 0.4, 0.0], (4, 1)), None, np.zeros((4, 2)), np.zeros(4))
    ranking = stage.gene_ranking(att, list("abcde"))
    assert list(ranking.index) == ["b", "d", "a", "c", "e"]  # a and d tie on frequency: d has the larger gradient
    with pytest.raises(ValueError, match="integrated gradients"):
        stage.gene_ranking(att, list("abcde"), method="integrated_gradients")
    # the paper's per-patch counting favours lineage 0 (three patches)
    assert stage.gene_ranking(att, list("abcde"), "patch").index[0] == "a"


def test_shuffled_pairing_gives_every_lineage_another_patients_profile() -> None:
    data = _pairs()
    shuffled = shuffled_pairing(data, seed=3)
    values, original = shuffled.rna.values, data.rna.values
    source = [int(np.flatnonzero((original == row).all(1))[0]) for row in values]
    assert sorted(source) == list(range(4))
    assert all(data.lineage_patient[s] != data.lineage_patient[i] for i, s in enumerate(source))
    assert (shuffled.patch_lineage == data.patch_lineage).all() and not shuffled.excluded["shuffled_within_patient"]
    lopsided = shuffled_pairing(_pairs(3, 2, ("A", "A", "B")), seed=0)  # no patient-level derangement exists
    assert lopsided.excluded["shuffled_within_patient"]
    assert not (lopsided.rna.values == _pairs(3, 2, ("A", "A", "B")).rna.values).all(1).any()


def _truth() -> SimpleNamespace:
    return SimpleNamespace(programs={"hyp": {"visible": True}, "imm": {"visible": False}},
                           modules={"hyp": ["a", "b", "c"], "imm": ["d", "e"]}, drivers={"hyp": ["a"], "imm": ["d"]},
                           visible_programs=["hyp"], invisible_programs=["imm"])


def test_driver_scores_and_permutation_p() -> None:
    genes = list("abcdefghij")
    sets = stage.truth_gene_sets(_truth(), genes)
    assert sets["visible_drivers"] == {"a"} and sets["invisible_modules"] == {"d", "e"}
    scores = stage.driver_scores(["a", "d", "f", "b"] + list("cehgij"), sets, len(genes), _truth(), top=4)
    assert scores["driver_precision_at_20"] == pytest.approx(0.1) and scores["driver_chance"] == pytest.approx(0.1)
    assert scores["visible_program_hits"] == {"hyp": 2} and scores["invisible_module_hits"] == 1
    assert scores["invisible_module_expected"] == pytest.approx(0.8)
    observed = pd.DataFrame({"score": [0.9, 0.5, 0.0]}, index=["a", "b", "c"])
    p = stage.gene_permutation_p(observed, [np.array([0.0, 0.6, 0.5]), np.array([0.1])])
    np.testing.assert_allclose(p, [1 / 5, 3 / 5, 5 / 5])
    assert stage.empirical_p(0.3, np.array([0.1, 0.3, 0.5])) == pytest.approx(3 / 4)
    assert stage.mean_pairwise_jaccard([["a", "b"], ["b", "c"], ["a", "b"]]) == pytest.approx((1 / 3 + 1 + 1 / 3) / 3)


def test_claims_follow_the_measurements() -> None:
    def summary(precision: float, p: float, hits: int) -> dict:
        entry = {"driver_precision_at_50": precision, "driver_chance": 0.036, "permutation_p_top50": p,
                 "invisible_module_hits": hits, "invisible_module_expected": 9.0}
        null = {"driver_precision_at_50": 0.04, "driver_chance": 0.036, "driver_precision_at_50_ci": (0.0, 0.08)}
        return {"variants": {"best": entry}, "null": {"best_shuffled0": null}}

    good = {c.id: c for c in stage.interpret_claims(summary(0.2, 0.01, 5))}
    assert set(good) == {"interpret.best.drivers_recovered", "interpret.best.invisible_at_base_rate",
                         "interpret.best_shuffled0.at_chance"}
    weak = {c.id: c for c in stage.interpret_claims(summary(0.2, 0.3, 12))}
    assert "interpret.best.drivers_not_shown" in weak and "interpret.best.invisible_above_base_rate" in weak
    from gbhet_lib.claims import evaluate

    assert all(evaluate(c) for c in list(good.values()) + list(weak.values()))
    hazards = {"program_hazards": {"hyp": {"p": 0.001, "hazard_ratio": 1.5, "planted_log_hazard": 0.7},
                                   "imm": {"p": 0.4, "hazard_ratio": 1.0, "planted_log_hazard": 0.0},
                                   "neu": {"p": 0.01, "hazard_ratio": 1.3, "planted_log_hazard": -0.5}}}
    claims = {c.id: c for c in stage.interpret_claims({"variants": {}}, hazards)}
    assert "interpret.survival.planted_hazards_missed" in claims  # neural: right p, wrong sign
    assert evaluate(claims["interpret.survival.planted_hazards_missed"])


def test_structures_at_patches_and_their_correlation() -> None:
    grid = np.zeros((8, 8), dtype=np.float32)
    grid[:4, :4] = 1.0  # necrosis in the top-left quarter (coarse cells of 8 level-0 px)
    geometry = pd.DataFrame({"x": [0, 32, 0], "y": [0, 0, 32], "size": [32, 32, 32]}, index=["p0", "p1", "p2"])
    at = stage.structure_at_patches({"necrosis": grid, "coarse_step": 8, "mpp": 0.5}, geometry)
    assert list(at.columns) == ["necrosis"] and at["necrosis"].tolist() == [1.0, 0.0, 0.0]
    maps = pd.DataFrame({"rho_necrosis": [0.5, -0.1, np.nan], "fold": ["a", "b", "c"]})
    table = stage.structure_correlation(maps)
    assert table.loc["necrosis", "slides"] == 2 and table.loc["necrosis", "positive"] == 1
    assert table.loc["necrosis", "mean rho"] == pytest.approx(0.2)
    assert stage.structure_correlation(maps[["fold"]]).empty


def test_verdict_says_only_what_was_measured() -> None:
    entry = {"driver_precision_at_50": 0.08, "driver_chance": 0.036, "driver_precision_at_50_ci": (0.02, 0.14),
             "permutation_p_top50": 0.6, "invisible_module_hits": 30, "invisible_module_expected": 9.0}
    survival = {"embedding_clusters": {"n": 8, "events": 8, "logrank_p": 0.6, "power": 0.16},
                "top_gene_score": {"n": 300, "cindex": 0.5, "cindex_ci": (0.46, 0.55), "logrank_p": 0.9}}
    text = stage.verdict({"variants": {"best": entry}}, survival)
    assert "not shown to reflect" in text and "too few patients" in text and "not shown to be prognostic" in text
    entry |= {"driver_precision_at_50": 0.3, "permutation_p_top50": 0.01}
    assert "the list reflects what the images show" in stage.verdict({"variants": {"best": entry}}, {})
