"""A first look at cross-modal retrieval under patient-level cross-validation (chapter 5 does it in full).

For each fold ``patient_cv-<k>of<K>`` a fusion model trained without the fold's patients
(:func:`gbhet_lib.fusion.stage.train_grid`) ranks the RNA profiles of the fold's held-out lineages for each held-out
lineage's patches:

* **model**: the score of candidate profile c for query lineage q is the mean, over q's patches, of the cosine
  between the patch's ITC image embedding and c's ITC RNA embedding;
* **image-blind**: every query ranks the candidates the same way, by how close each profile's RNA embedding lies to
  the centroid of the training lineages' (a profile "typical" of the training data ranks first). The gallery is
  exactly the held-out lineages and each is the true candidate of one query, so the true ranks of a fold are a
  permutation and its mean percentile is 0.5 whatever the data: the check that no query-independent score leaks.

Percentiles follow :func:`gbhet_lib.evaluate.metrics.percentile` (1 = ranked first, chance 0.5); intervals
resample patients (:func:`gbhet_lib.evaluate.metrics.bootstrap_ci`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch


@torch.no_grad()
def itc_embeddings(model: Any, data: Any, rows: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(image ITC embeddings of the patches ``rows`` (n, P), RNA ITC embeddings of every lineage (L, P))."""
    from .data import PairBatches

    device = next(model.parameters()).device
    batches = PairBatches(data, device)
    images = []
    for start in range(0, len(rows), batch_size):
        pixels, _, _ = batches.batch(rows[start:start + batch_size])
        tokens = model.encode_image(model.image_encoder.preprocess(pixels))
        images.append(model.image_embedding(tokens).cpu().numpy())
    rna_tokens = model.encode_rna(batches.tokens)
    return np.concatenate(images), model.rna_embedding(rna_tokens).cpu().numpy()


def fold_retrieval(run_dir: str | Path, name: str, fold: str, data: Any, device: str = "cpu",
                   batch_size: int = 128) -> pd.DataFrame:
    """One row per held-out lineage of ``fold``: its patient, patches, candidates and the percentile of its own
    profile by the model trained as ``name`` on that fold and by the image-blind predictor (module docstring).

    The model is loaded with :func:`gbhet_lib.evaluate.models.load_trained`, which refuses one trained on another
    split than the fold's file.
    """
    from ..evaluate.metrics import percentile, retrieval_ranks
    from ..evaluate.models import load_trained
    from .stage import read_split, split_rows

    model, _ = load_trained(run_dir, name, fold, device)
    train_rows, val_rows = split_rows(data, read_split(run_dir, fold))
    held = np.unique(data.patch_lineage[val_rows])
    trained = np.unique(data.patch_lineage[train_rows])
    if len(held) < 2:
        raise ValueError(f"fold {fold} holds out {len(held)} lineage(s): retrieval needs at least two candidates; "
                         "use fewer folds (cv_folds)")
    image, rna = itc_embeddings(model, data, val_rows, batch_size)
    candidates = rna[held]
    query_lineage = data.patch_lineage[val_rows]
    scores = np.stack([(image[query_lineage == q] @ candidates.T).mean(0) for q in held])
    centroid = rna[trained].mean(0)
    blind = -np.linalg.norm(candidates - centroid, axis=1)
    truth = np.arange(len(held))
    model_pct = percentile(retrieval_ranks(scores, truth), len(held))
    blind_pct = percentile(retrieval_ranks(np.tile(blind, (len(held), 1)), truth), len(held))
    return pd.DataFrame({
        "fold": fold, "lineage": np.asarray(data.lineage_ids, dtype=object)[held],
        "patient": data.lineage_patient[held],
        "patches": [int((query_lineage == q).sum()) for q in held], "candidates": len(held),
        "model_percentile": model_pct, "blind_percentile": blind_pct})


def cv_retrieval(run_dir: str | Path, name: str, folds: Mapping[str, Any], data: Any, device: str = "cpu",
                 n_boot: int = 2000, seed: int = 0) -> tuple[pd.DataFrame, dict[str, Any]]:
    """:func:`fold_retrieval` over every fold, and the summary: mean percentile of the model and of the image-blind
    predictor with patient-bootstrap intervals, top-1 accuracy and chance.

    Returns (one row per held-out lineage, summary dict).
    """
    from ..evaluate.metrics import bootstrap_ci, percentile_rank_chance

    rows = pd.concat([fold_retrieval(run_dir, name, fold, data, device) for fold in folds], ignore_index=True)
    summary: dict[str, Any] = {"variant": name, "folds": len(folds), "lineages": len(rows),
                               "patients": int(rows["patient"].nunique()), "chance": percentile_rank_chance(),
                               "top1_chance": float((1.0 / rows["candidates"]).mean())}
    for who in ("model", "blind"):
        values = rows[f"{who}_percentile"].to_numpy()
        estimate, low, high = bootstrap_ci(values, rows["patient"].to_numpy(), n_boot=n_boot, seed=seed)
        summary[who] = {"percentile": float(estimate), "low": float(low), "high": float(high),
                        "top1": float((values == 1.0).mean())}
    return rows, summary


def retrieval_claims(summary: Mapping[str, Any], oracle_power: float | None = None) -> list[Any]:
    """Chapter 4's checked statements on the first look: the image-blind predictor sits at chance (a leak check),
    and the model's mean percentile is above chance or its interval covers chance (the statement made is the one
    the interval supports; ``oracle_power``, from chapter 1, says whether the data could have shown it)."""
    from ..claims import check

    chance, model, blind = summary["chance"], summary["model"], summary["blind"]
    power = "" if oracle_power is None else f" (chapter 1: an oracle would show it with power {oracle_power:.2f})"
    claims = [check("fusion.cv_blind_at_chance", "Under patient-level CV the image-blind predictor's mean percentile "
                    "is chance, so no query-independent score leaks into the evaluation", blind["percentile"],
                    at_least=chance - 1e-9, at_most=chance + 1e-9, null=chance, null_name="chance",
                    interval=(blind["low"], blind["high"]), units="patients")]
    if model["low"] > chance:
        claims.append(check("fusion.cv_retrieval", "Held-out lineages retrieve their own RNA profile above chance "
                            f"among the held-out lineages{power}", model["percentile"], at_least=chance,
                            null=chance, null_name="chance", interval=(model["low"], model["high"]),
                            interval_at_least=chance, units="patients"))
    else:
        claims.append(check("fusion.cv_retrieval_not_shown", "The model's held-out retrieval is not distinguishable "
                            f"from chance: its interval covers 0.5{power}", model["low"], at_most=chance,
                            null=chance, null_name="chance", interval=(model["low"], model["high"]),
                            units="patients"))
    return claims
