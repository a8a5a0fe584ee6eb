"""Chapter 3's encoder checks: held-out-slide lineage identification, embedding spread, collapse, stain jitter."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from gbhet_lib.wsi.augment import hed_jitter
from gbhet_lib.wsi.evaluate import collapse_report, embedding_spread, heldout_slide_lineages


def _two_sections(signal: float, stain: float, seed: int = 0):
    """8 patients × 2 lineages × 2 slides × 5 patches: features = lineage code · signal + slide stain · stain."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(8):
        for lin in range(2):
            code = rng.standard_normal(8)
            for s in range(2):
                shift = rng.standard_normal(8)
                for _ in range(5):
                    rows.append((f"P{p}", f"P{p}-L{lin}", f"P{p}-L{lin}-S{s}",
                                 signal * code + stain * shift + 0.1 * rng.standard_normal(8)))
    patient, lineage, slide = (np.array([r[k] for r in rows], dtype=object) for k in range(3))
    return np.stack([r[3] for r in rows]), slide, lineage, patient


def test_lineage_of_a_held_out_section_is_found_from_its_sibling_section() -> None:
    features, slide, lineage, patient = _two_sections(signal=1.0, stain=0.2)
    val = np.array([s.endswith("S1") for s in slide])
    result = heldout_slide_lineages(features, slide, lineage, patient, np.flatnonzero(~val), np.flatnonzero(val))
    assert result["n_slides"] == 16 and result["chance"] == pytest.approx(1 / 16)
    assert result["accuracy"] > 0.9 and result["low"] > result["chance"]
    stain_only = heldout_slide_lineages(*_two_sections(signal=0.0, stain=1.0)[:1], slide, lineage, patient,
                                        np.flatnonzero(~val), np.flatnonzero(val))
    assert stain_only["accuracy"] < 0.4  # features that only know the slide's stain do not find the lineage


def test_held_out_slides_of_untrained_lineages_are_not_scored() -> None:
    features, slide, lineage, patient = _two_sections(1.0, 0.2)
    val = np.array([lid.endswith("L1") for lid in lineage])  # whole lineages held out
    result = heldout_slide_lineages(features, slide, lineage, patient, np.flatnonzero(~val), np.flatnonzero(val))
    assert result["n_slides"] == 0 and np.isnan(result["accuracy"])


def test_spread_and_collapse_are_read_from_the_embedding_and_the_loss() -> None:
    rng = np.random.default_rng(0)
    spread = rng.standard_normal((300, 16))
    collapsed = np.ones((300, 16)) + 1e-3 * rng.standard_normal((300, 16))
    assert embedding_spread(spread)["mean_pairwise_cosine"] == pytest.approx(0.0, abs=0.05)
    assert embedding_spread(collapsed)["mean_pairwise_cosine"] > 0.99
    assert embedding_spread(spread)["effective_rank"] > 12
    at_margin = pd.DataFrame({"train_loss": [0.2, 0.199, 0.2]})
    learning = pd.DataFrame({"train_loss": [0.2, 0.12, 0.05]})
    # collapse is read from the embedding; a loss at the margin is reported beside it, not taken as proof
    assert collapse_report(learning, collapsed, 0.2)["collapsed"]
    both = collapse_report(at_margin, collapsed, 0.2)
    assert both["collapsed"] and both["loss_at_margin_every_epoch"]
    mined = collapse_report(at_margin, spread, 0.2)
    assert not mined["collapsed"] and mined["loss_at_margin_every_epoch"]
    report = collapse_report(learning, spread, 0.2)
    assert not report["collapsed"] and not report["loss_at_margin_every_epoch"]
    assert report["loss_last_over_margin"] == pytest.approx(0.25)


def test_stain_jitter_changes_colour_not_structure_and_is_reproducible() -> None:
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.uniform(0.2, 0.95, (4, 3, 16, 16)).astype(np.float32))
    same = hed_jitter(images, 0.0, torch.Generator().manual_seed(0), bias=0.0)
    torch.testing.assert_close(same, images, atol=1e-4, rtol=1e-4)
    a = hed_jitter(images, 0.2, torch.Generator().manual_seed(1))
    b = hed_jitter(images, 0.2, torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    assert a.shape == images.shape and 0 <= float(a.min()) and float(a.max()) <= 1
    assert float((a - images).abs().mean()) > 1e-3
    # the spatial pattern survives: per image, jittered and original pixels stay strongly correlated
    for x, y in zip(a, images):
        assert np.corrcoef(x.flatten().numpy(), y.flatten().numpy())[0, 1] > 0.9
    with pytest.raises(ValueError, match="sigma"):
        hed_jitter(images, -0.1, torch.Generator())


def test_claims_state_what_was_measured() -> None:
    from gbhet_lib.wsi.evaluate import wsi_claims

    probe = pd.DataFrame({"trained encoder": [0.2, 0.7, -0.3], "pre-trained encoder": [0.6, 0.55, 0.05],
                          "random encoder": [-0.1, 0.3, -0.2], "hand-crafted": [0.8, 0.9, 0.0]},
                         index=["hypoxia", "proliferation", "immune"])
    lineage = {"trained": {"accuracy": 0.4, "low": 0.1, "high": 0.7, "chance": 0.06, "n_slides": 7},
               "random": {"accuracy": 0.1, "low": 0.0, "high": 0.3, "chance": 0.06, "n_slides": 7}}
    spread = collapse_report(pd.DataFrame({"train_loss": [0.2, 0.21]}), np.random.default_rng(0).normal(size=(50, 8)),
                             0.2)
    claims = {c.id: c for c in wsi_claims(probe, ["hypoxia", "proliferation"], lineage, spread)}
    assert {"wsi.visible_not_reached.hypoxia", "wsi.visible.proliferation", "wsi.pretrained_visible.hypoxia",
            "wsi.pretrained_visible.proliferation", "wsi.lineage_id_heldout_slides", "wsi.not_collapsed",
            "wsi.handcrafted_sees_proliferation"} <= set(claims)
    assert {f"wsi.invisible.immune.{e}" for e in ("trained_encoder", "pretrained_encoder", "random_encoder",
                                                   "handcrafted")} <= set(claims)
    assert all(c.holds for c in claims.values())
    assert "does not by itself show collapse" in claims["wsi.not_collapsed"].statement
    # a negative control that carries signal fails its claim
    probe.loc["immune", "pre-trained encoder"] = 0.4
    failed = {c.id: c.holds for c in wsi_claims(probe, ["hypoxia", "proliferation"], lineage, spread)}
    assert failed["wsi.invisible.immune.pretrained_encoder"] is False
