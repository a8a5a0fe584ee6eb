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
    """Whether triplet training collapsed, from the embedding, with what the loss says beside it.

    Collapsed features share one direction (mean pairwise cosine ≥ :data:`COLLAPSE_COSINE`): ``collapsed``. Their
    distances are then all equal and the triplet loss sits at the margin, so a loss that never left the margin
    (within :data:`COLLAPSE_LOSS_FRACTION`, every epoch) is reported as ``loss_at_margin_every_epoch``. It is
    consistent with collapse but does not prove it: online mining averages only the triplets that still violate
    the margin, and a semi-hard negative lies inside the margin band by definition, so the mined loss stays near
    m while the features spread and separate lineages (measured in chapter 3).
    """
    losses = history["train_loss"].to_numpy(dtype=float)
    loss_at_margin = bool(margin > 0 and np.all(losses >= COLLAPSE_LOSS_FRACTION * margin))
    spread = embedding_spread(features)
    return {"loss_first": float(losses[0]), "loss_last": float(losses[-1]), "margin": float(margin),
            "loss_last_over_margin": float(losses[-1] / margin) if margin > 0 else float("nan"),
            "loss_min_over_margin": float(losses.min() / margin) if margin > 0 else float("nan"),
            "loss_at_margin_every_epoch": loss_at_margin, **spread,
            "collapsed": spread["mean_pairwise_cosine"] >= COLLAPSE_COSINE}


#: the slide-level probe R² issue 11 asks of each visible program
VISIBLE_TARGET = 0.5
#: the most an invisible program (negative control) may reach
INVISIBLE_LIMIT = 0.1


def wsi_claims(probe: pd.DataFrame, visible: Sequence[str], lineage_id: Mapping[str, Mapping[str, float]],
               collapse: Mapping[str, Any]) -> list[Any]:
    """Chapter 3's checked statements (:mod:`gbhet_lib.claims`).

    The negative controls and the baseline are fixed claims, which fail when the data contradict them: no
    encoding reads an invisible program (R² ≤ :data:`INVISIBLE_LIMIT`), and the hand-crafted colour and texture
    features read proliferation (R² ≥ :data:`VISIBLE_TARGET`: the signal is in the pixels). Whether the trained
    encoder reaches :data:`VISIBLE_TARGET` for each visible program, identifies the lineage of held-out slides
    above chance and escaped collapse is stated as measured: the claim made is the one the value supports, so the
    chapter never says an encoder succeeded when it did not.

    Args:
        probe: one row per program; columns ``trained encoder``, ``random encoder``, ``hand-crafted`` and, when the
            encoder was pre-trained, ``pre-trained encoder`` (slide-level held-out-patient probe R²), and
            ``<encoder> low``/``high`` (interval over patients) where computed.
        visible: the image-visible programs (the others are negative controls).
        lineage_id: ``{"trained": ..., "random": ...}`` results of :func:`heldout_slide_lineages`.
        collapse: :func:`collapse_report` of the trained encoder.
    """
    from ..claims import check

    claims = []
    learned = [e for e in ("trained encoder", "pre-trained encoder") if e in probe.columns]
    controls = [e for e in ("trained encoder", "pre-trained encoder", "random encoder", "hand-crafted")
                if e in probe.columns]
    for program, row in probe.iterrows():
        if program not in visible:
            for encoding in controls:
                claims.append(check(
                    f"wsi.invisible.{program}.{encoding.replace(' ', '_').replace('-', '')}", f"The {encoding} "
                    f"features do not carry {program}, which the slides do not show (negative control)",
                    row[encoding], at_most=INVISIBLE_LIMIT, null=0.0, null_name="no signal"))
            continue
        baseline = f"hand-crafted {row['hand-crafted']:.2f}, random encoder {row['random encoder']:.2f}"
        for encoding in learned:
            interval = (row[f"{encoding} low"], row[f"{encoding} high"]) if f"{encoding} low" in row else None
            value, prefix = row[encoding], "wsi." if encoding == "trained encoder" else "wsi.pretrained_"
            if value >= VISIBLE_TARGET:
                claims.append(check(
                    f"{prefix}visible.{program}", f"The {encoding}'s features predict {program} on slides of unseen "
                    f"patients (slide R² ≥ {VISIBLE_TARGET}; {baseline})", value, at_least=VISIBLE_TARGET,
                    null=row["random encoder"], null_name="random encoder", interval=interval, units="patients"))
            else:
                claims.append(check(
                    f"{prefix}visible_not_reached.{program}", f"The {encoding} does not reach slide R² "
                    f"{VISIBLE_TARGET} for {program} ({baseline})", value, at_most=VISIBLE_TARGET,
                    null=row["random encoder"], null_name="random encoder", interval=interval, units="patients"))
    if "proliferation" in probe.index:
        claims.append(check(
            "wsi.handcrafted_sees_proliferation", "Hand-crafted colour and texture features read proliferation from "
            "the pixels: the signal is there to be learned", probe.loc["proliferation", "hand-crafted"],
            at_least=VISIBLE_TARGET, null=probe.loc["proliferation", "random encoder"], null_name="random encoder"))
    trained, random = lineage_id["trained"], lineage_id["random"]
    summary = (f"{trained['accuracy']:.2f} of {trained['n_slides']} slides, chance {trained['chance']:.2f}, random "
               f"encoder {random['accuracy']:.2f}")
    if trained["n_slides"] and trained["low"] > trained["chance"]:
        claims.append(check(
            "wsi.lineage_id_heldout_slides", f"Held-out slides of trained lineages are assigned to their own lineage "
            f"above chance ({summary})", trained["accuracy"], at_least=trained["chance"], null=trained["chance"],
            null_name="chance", interval=(trained["low"], trained["high"]), interval_at_least=trained["chance"],
            units="patients"))
    else:
        claims.append(check(
            "wsi.lineage_id_not_shown", f"Held-out slides of trained lineages are not assigned to their own lineage "
            f"above chance: the interval reaches chance ({summary})", trained["low"],
            at_most=trained["chance"], null=trained["chance"], null_name="chance",
            interval=(trained["low"], trained["high"]), units="patients"))
    spread = (f"mean pairwise cosine {collapse['mean_pairwise_cosine']:.2f}, effective rank "
              f"{collapse['effective_rank']:.1f}")
    if collapse["collapsed"]:
        claims.append(check(
            "wsi.collapse_by_embedding", f"Triplet training collapsed the features onto one direction ({spread})",
            collapse["mean_pairwise_cosine"], at_least=COLLAPSE_COSINE, null=0.0, null_name="isotropic features"))
    else:
        at_margin = (" The mined-triplet loss never left the margin (lowest epoch "
                     f"{collapse['loss_min_over_margin']:.2f} × m): online mining keeps only violating triplets, so "
                     "this does not by itself show collapse.") if collapse["loss_at_margin_every_epoch"] else ""
        claims.append(check(
            "wsi.not_collapsed", f"Triplet training did not collapse the features ({spread}).{at_margin}",
            collapse["mean_pairwise_cosine"], at_most=COLLAPSE_COSINE, null=1.0,
            null_name="collapsed features (cosine 1)"))
    return claims


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
