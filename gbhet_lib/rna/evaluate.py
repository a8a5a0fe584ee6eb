"""How good an RNA embedding is: program recovery (demo), subtype prediction and survival (real data),
and the biology of the gene tokens (enrichment). Every score comes with its baseline or chance level."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import hypergeom
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from statsmodels.stats.multitest import multipletests


def probe_r2(features: np.ndarray, targets: pd.DataFrame, folds: int = 5, seed: int = 0,
             groups: Sequence[object] | None = None) -> pd.Series:
    """Cross-validated R² of a ridge linear probe predicting each target column from ``features``.

    ``features``: samples × d; ``targets``: samples × programs (same row order). Out-of-fold predictions
    are pooled over ``folds`` folds; R² = 1 − SSE/SST on them (0 = no better than the mean, can be < 0).
    With ``groups`` (e.g. the slide of each patch), a group never spans training and test folds.
    """
    _check_rows(features, targets)
    splitter = (KFold(folds, shuffle=True, random_state=seed) if groups is None
                else list(GroupKFold(folds).split(features, groups=groups)))
    probe = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
    scores = {}
    for column in targets.columns:
        y = targets[column].to_numpy(dtype=float)
        predicted = cross_val_predict(probe, features, y, cv=splitter)
        scores[column] = 1.0 - np.sum((y - predicted) ** 2) / np.sum((y - y.mean()) ** 2)
    return pd.Series(scores, name="probe_r2")


def classification_accuracy(features: np.ndarray, labels: Sequence[str], method: str = "logistic",
                            folds: int = 5, seed: int = 0) -> float:
    """Stratified cross-validated accuracy of a ``logistic`` (L2) or ``knn`` (k = 10) classifier."""
    labels = np.asarray(labels)
    _check_rows(features, labels)
    if method == "logistic":
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
    elif method == "knn":
        model = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=10))
    else:
        raise ValueError(f"method={method!r}: use 'logistic' or 'knn'")
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    predicted = cross_val_predict(model, features, labels, cv=splitter)
    return float(np.mean(predicted == labels))


def majority_class_accuracy(labels: Sequence[str]) -> float:
    """Accuracy of always predicting the most frequent label: the chance level of a classifier."""
    counts = pd.Series(labels).value_counts()
    return float(counts.iloc[0] / counts.sum())


def survival_c_index(features: pd.DataFrame, durations: pd.Series, events: pd.Series,
                     covariates: pd.DataFrame | None = None, n_components: int = 10, penalizer: float = 0.1,
                     folds: int = 5, seed: int = 0) -> float:
    """Cross-validated concordance index of a penalised Cox model on the first ``n_components`` principal
    components of ``features`` (+ ``covariates``, e.g. age), predicting the held-out folds' risk.

    Rows with a missing duration, event or covariate are left out. 0.5 = chance, 1 = perfect ranking.
    """
    from lifelines import CoxPHFitter
    from lifelines.utils import concordance_index
    from sklearn.decomposition import PCA

    table = pd.DataFrame(index=features.index)
    if covariates is not None:
        table = table.join(covariates)
    table = table.assign(_time=durations, _event=events).dropna()
    x = features.loc[table.index].to_numpy(dtype=float)
    risk = pd.Series(np.nan, index=table.index)
    for train, test in KFold(folds, shuffle=True, random_state=seed).split(x):
        pca = PCA(n_components=min(n_components, x.shape[1], len(train) - 1), random_state=seed).fit(x[train])
        pcs = pd.DataFrame(pca.transform(x), index=table.index).add_prefix("pc")
        data = pcs.join(table.drop(columns=["_time", "_event"])).assign(_time=table["_time"],
                                                                         _event=table["_event"])
        fit = CoxPHFitter(penalizer=penalizer).fit(data.iloc[train], duration_col="_time", event_col="_event")
        risk.iloc[test] = fit.predict_partial_hazard(data.iloc[test]).to_numpy()
    return float(concordance_index(table["_time"], -risk, table["_event"]))


def token_enrichment(tokens: Mapping[str, Sequence[str]], gene_sets: Mapping[str, Sequence[str]],
                     universe: Sequence[str], min_overlap: int = 3) -> pd.DataFrame:
    """Over-representation of each gene set in each token (one-sided hypergeometric test, BH-adjusted over all
    token × set pairs). ``universe``: every gene that could be in a token (the tokenised genes).

    Returns one row per (token, set) with overlap ≥ ``min_overlap``: overlap, token size, set size in the
    universe, fold enrichment, p and BH q, sorted by q.
    """
    universe = set(universe)
    n = len(universe)
    rows = []
    for token, genes in tokens.items():
        members = set(genes) & universe
        for name, gene_set in gene_sets.items():
            in_universe = set(gene_set) & universe
            overlap = len(members & in_universe)
            if overlap < min_overlap:
                continue
            p = hypergeom.sf(overlap - 1, n, len(in_universe), len(members))
            rows.append({"token": token, "gene_set": name, "overlap": overlap, "token_size": len(members),
                         "set_size": len(in_universe),
                         "fold": overlap / (len(members) * len(in_universe) / n), "p": p})
    table = pd.DataFrame(rows, columns=["token", "gene_set", "overlap", "token_size", "set_size", "fold", "p"])
    table["q"] = multipletests(table["p"], method="fdr_bh")[1] if len(table) else []
    return table.sort_values(["q", "p"]).reset_index(drop=True)


def _check_rows(features: np.ndarray, targets: object) -> None:
    if len(features) != len(targets):  # type: ignore[arg-type]
        raise ValueError(f"features have {len(features)} rows but targets have {len(targets)}; "  # type: ignore[arg-type]
                         "they must list the same samples in the same order")


def principal_components(values: pd.DataFrame, n_components: int = 20, seed: int = 0) -> np.ndarray:
    """The first principal components of standardised ``values`` (samples × features): the raw-expression
    baseline the embedding is compared with, at a similar dimension."""
    from sklearn.decomposition import PCA

    x = StandardScaler().fit_transform(values.to_numpy(dtype=float))
    return PCA(n_components=min(n_components, *x.shape), random_state=seed).fit_transform(x)


# ------------------------------------------------------------------------------------------------ chapter 2
#: columns of :func:`program_probe`
EMBEDDING_COLUMN, RAW_COLUMN, TOKENS_COLUMN = "embedding", "raw expression (20 PCs)", "token outputs"


def program_probe(embedding: pd.DataFrame, raw_pcs: np.ndarray, truth,
                  token_outputs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Probe R² of each planted program (demo truth) from the embedding and from the raw-expression PCs (same
    sample order), with whether the program is visible in slides.

    With ``token_outputs`` (samples × K·dim, e.g. :func:`~gbhet_lib.rna.stage.token_outputs`; any row order, the
    embedding's is used) a third column probes the encoder's gene-token outputs, where the reconstruction loss puts
    the expression, beside the CLS embedding, which only the contrastive loss trains.
    """
    programs = truth.activity.loc[embedding.index]
    probe = pd.DataFrame({EMBEDDING_COLUMN: probe_r2(embedding.to_numpy(), programs),
                          RAW_COLUMN: probe_r2(raw_pcs, programs)})
    if token_outputs is not None:
        probe[TOKENS_COLUMN] = probe_r2(token_outputs.loc[embedding.index].to_numpy(), programs)
    probe["visible in slides"] = [p in truth.visible_programs for p in probe.index]
    return probe


def subtype_prediction(embedding: pd.DataFrame, raw_pcs: np.ndarray,
                       clinical: pd.DataFrame | None) -> tuple[dict[str, float], pd.Series | None]:
    """Cross-validated subtype accuracy from the embedding and from the raw-expression PCs, beside the majority
    class, over the samples with a known ``subtype``. Returns the scores and the known labels (indexed by sample),
    or ``({}, None)`` when ``clinical`` has no subtype."""
    if clinical is None or "subtype" not in clinical:
        return {}, None
    labels = clinical["subtype"].reindex(embedding.index)
    known = labels.notna().to_numpy()
    return {"subtype_acc": classification_accuracy(embedding[known].to_numpy(), labels[known]),
            "subtype_acc_raw": classification_accuracy(raw_pcs[known], labels[known]),
            "subtype_chance": majority_class_accuracy(labels[known])}, labels[known]


def survival_prediction(embedding: pd.DataFrame, clinical: pd.DataFrame | None,
                        seed: int = 0) -> dict[str, float] | None:
    """Cross-validated C-index of the embedding for OS (and of the embedding + age when ``age`` is known);
    None when ``clinical`` lacks ``os_days``/``os_event``."""
    if clinical is None or not {"os_days", "os_event"} <= set(clinical.columns):
        return None
    survival = clinical.reindex(embedding.index)
    c_index = {"embedding": survival_c_index(embedding, survival["os_days"], survival["os_event"], seed=seed)}
    if "age" in survival:
        c_index["embedding + age"] = survival_c_index(embedding, survival["os_days"], survival["os_event"],
                                                      covariates=survival[["age"]], seed=seed)
    return c_index


def enrichment_preview(enrichment: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """The ``n`` most significant rows of :func:`token_enrichment`, rounded, p and q in scientific notation."""
    head = enrichment.head(n)
    return head.round(3).assign(p=head["p"].map("{:.1e}".format), q=head["q"].map("{:.1e}".format))
