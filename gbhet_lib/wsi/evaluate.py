"""How good chapter 3's patch encoder is: lineage identification on held-out slides, the spread of its embedding
(collapse), and the chapter's checked statements. Every score comes with its chance level or a null encoder.

Imports numpy and pandas only (the features are computed elsewhere).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

#: a triplet loss within this fraction of the margin is what collapsed features give (all distances equal)
COLLAPSE_LOSS_FRACTION = 0.95
#: features whose mean pairwise cosine is at least this are collapsed onto one direction
COLLAPSE_COSINE = 0.95


def heldout_slide_lineages(features: np.ndarray, slide: np.ndarray, lineage: np.ndarray, patient: np.ndarray,
                           train_rows: np.ndarray, val_rows: np.ndarray, n_boot: int = 2000,
                           seed: int = 0) -> dict[str, Any]:
    """Which lineage a held-out slide comes from, for held-out slides whose lineage was trained on (another of its
    slides is on the training side).

    Each such slide's mean feature (over its patches, L2-normalised) is assigned to the nearest training-lineage
    centroid (cosine); accuracy is over slides, its interval a bootstrap over patients
    (:func:`~gbhet_lib.evaluate.metrics.bootstrap_ci`) and chance is 1 / the number of training lineages.

    Args:
        features: (N, D) patch features (the trained or a null encoder's).
        slide, lineage, patient: (N,) ids of each patch.
        train_rows, val_rows: the split's row indices.

    Returns ``{"accuracy", "low", "high", "chance", "n_slides", "n_lineages"}`` (accuracy NaN when no held-out
    slide has a trained lineage).
    """
    from ..evaluate.metrics import bootstrap_ci

    features = _unit(np.asarray(features, dtype=np.float64))
    slide, lineage, patient = (np.asarray(a, dtype=object) for a in (slide, lineage, patient))
    trained = sorted(set(lineage[train_rows]))
    centroids = _unit(np.stack([features[train_rows][lineage[train_rows] == lid].mean(0) for lid in trained]))
    val_slides = [s for s in dict.fromkeys(slide[val_rows]) if lineage[slide == s][0] in set(trained)]
    if not val_slides:
        return {"accuracy": float("nan"), "low": float("nan"), "high": float("nan"),
                "chance": 1.0 / max(len(trained), 1), "n_slides": 0, "n_lineages": len(trained)}
    means = _unit(np.stack([features[slide == s].mean(0) for s in val_slides]))
    predicted = np.asarray(trained, dtype=object)[(means @ centroids.T).argmax(1)]
    truth = np.array([lineage[slide == s][0] for s in val_slides], dtype=object)
    hits = (predicted == truth).astype(float)
    groups = np.array([patient[slide == s][0] for s in val_slides], dtype=object)
    if len(set(groups)) >= 2:
        accuracy, low, high = bootstrap_ci(hits, groups, n_boot=n_boot, seed=seed)
    else:
        accuracy, low, high = float(hits.mean()), float("nan"), float("nan")
    return {"accuracy": float(accuracy), "low": float(low), "high": float(high), "chance": 1.0 / len(trained),
            "n_slides": len(val_slides), "n_lineages": len(trained)}


def embedding_spread(features: np.ndarray, max_items: int = 2000, seed: int = 0) -> dict[str, float]:
    """How spread an embedding is: the mean pairwise cosine of (at most ``max_items`` random) features (1 = all on
    one direction) and the effective rank (exp of the entropy of the normalised singular values of the centred
    features; 1 = one direction, D = isotropic)."""
    features = np.asarray(features, dtype=np.float64)
    if len(features) > max_items:
        features = features[np.random.default_rng(seed).choice(len(features), max_items, replace=False)]
    unit = _unit(features)
    n = len(unit)
    cosine = (unit.sum(0) @ unit.sum(0) - n) / max(n * (n - 1), 1)
    singular = np.linalg.svd(features - features.mean(0), compute_uv=False)
    p = singular / max(singular.sum(), 1e-12)
    p = p[p > 0]
    return {"mean_pairwise_cosine": float(cosine), "effective_rank": float(np.exp(-(p * np.log(p)).sum()))}


def collapse_report(history: pd.DataFrame, features: np.ndarray, margin: float) -> dict[str, Any]:
    """Whether triplet training collapsed, from the loss and from the embedding.

    Collapsed features put every distance at the same value, so the triplet loss sits at the margin; the
    features then share one direction. ``collapsed`` is True when the training loss stayed within
    :data:`COLLAPSE_LOSS_FRACTION` of ``margin`` at every epoch, or the mean pairwise cosine is at least
    :data:`COLLAPSE_COSINE`.
    """
    losses = history["train_loss"].to_numpy(dtype=float)
    loss_at_margin = bool(margin > 0 and np.all(losses >= COLLAPSE_LOSS_FRACTION * margin))
    spread = embedding_spread(features)
    return {"loss_first": float(losses[0]), "loss_last": float(losses[-1]), "margin": float(margin),
            "loss_last_over_margin": float(losses[-1] / margin) if margin > 0 else float("nan"),
            "loss_at_margin_every_epoch": loss_at_margin, **spread,
            "collapsed": loss_at_margin or spread["mean_pairwise_cosine"] >= COLLAPSE_COSINE}


def wsi_claims(probe: pd.DataFrame, visible: Sequence[str], lineage_id: Mapping[str, Mapping[str, float]],
               collapse: Mapping[str, Any], n_slides: int) -> list[Any]:
    """Chapter 3's checked statements (:mod:`gbhet_lib.claims`).

    Args:
        probe: one row per program; columns ``trained encoder``, ``random encoder``, ``hand-crafted`` (slide-level
            held-out-patient probe R²) and ``trained low``/``trained high`` (interval over patients), when measured.
        visible: the image-visible programs (the others are negative controls).
        lineage_id: ``{"trained": ..., "random": ...}`` results of :func:`heldout_slide_lineages`.
        collapse: :func:`collapse_report` of the trained encoder.
        n_slides: slides the probe is scored over.
    """
    from ..claims import check

    claims = []
    for program, row in probe.iterrows():
        interval = (row["trained low"], row["trained high"]) if "trained low" in row else None
        if program in visible:
            claims.append(check(
                f"wsi.probe_visible.{program}", f"The patch encoder's features predict {program} on slides of "
                "patients never probed on (slide-averaged R²)", row["trained encoder"], at_least=0.5,
                null=row["random encoder"], null_name="random encoder", interval=interval, units="patients"))
            claims.append(check(
                f"wsi.probe_vs_handcrafted.{program}", f"For {program} the trained encoder reaches the hand-crafted "
                "colour and texture baseline (within 0.1 R²)", row["trained encoder"] - row["hand-crafted"],
                at_least=-0.1, null=0.0, null_name="equal to the baseline"))
        else:
            claims.append(check(
                f"wsi.probe_invisible.{program}", f"The features carry no {program}, which the slides do not show "
                "(negative control)", row["trained encoder"], at_most=0.1, null=0.0, null_name="no signal",
                interval=interval, units="patients"))
    trained, random = lineage_id["trained"], lineage_id["random"]
    claims.append(check(
        "wsi.lineage_id_heldout_slides", f"Held-out slides of trained lineages are assigned to their own lineage "
        f"above chance ({trained['n_slides']} slides)", trained["accuracy"], at_least=2 * trained["chance"],
        null=trained["chance"], null_name="chance", interval=(trained["low"], trained["high"]),
        interval_at_least=trained["chance"], units="patients"))
    claims.append(check(
        "wsi.lineage_id_above_random", "The trained encoder identifies lineages better than a random one",
        trained["accuracy"] - random["accuracy"], at_least=1e-9, null=0.0, null_name="random encoder's accuracy"))
    claims.append(check(
        "wsi.not_collapsed", "Triplet training did not collapse the features (mean pairwise cosine)",
        collapse["mean_pairwise_cosine"], at_most=COLLAPSE_COSINE, null=1.0, null_name="collapsed features"))
    claims.append(check(
        "wsi.loss_below_margin", "The triplet loss left the margin, where collapsed features hold it",
        collapse["loss_last_over_margin"], at_most=COLLAPSE_LOSS_FRACTION, null=1.0,
        null_name="loss of collapsed features (= margin)"))
    return claims


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
