"""The paper's own validation on real data (reference spec §3.9): a network predicts the Verhaak subtype from
expression and is probed by gene-set masking and single-gene masking, plus the real VASARI rows as an illustration.

Two real TCGA-GBM expression sets, each fetched and verified through the data manifest:

* ``clanc840`` — Verhaak et al.'s unified core: 173 samples × the 840 ClaNC classifier genes, each sample's
  subtype and each gene's marker group (PN/NL/CL/MES; 155 genes mark none). **Circular by construction:** these
  840 genes were chosen to separate these subtypes on these very samples, so a high accuracy says nothing about
  the network. What it can test is masking: does keeping only one subtype's marker set (every other gene at the
  training mean) let the network recognise that subtype best (``masking_recovery``)?
* ``wide`` — CancerSubtypes' TCGA-GBM matrix, 1,500 genes × 100 patients, of which the 78 with a subtype call in
  the ClaNC file enter. 106 of the 840 Verhaak genes are among the 1,500 (base rate 7.1 %, near the paper's 6.6 %
  on its 12,042-gene array), so the share of Verhaak genes among the top single-masking genes can be set against a
  base rate, as the paper did. The paper's 12,042-gene matrix is not available offline (the mirror lacks it).

The network is the paper's subtype model (sigmoid, input dropout 0.4, Nadam, no autoencoder, softmax over the
four subtypes) at the demo's widths; ``ClassifierConfig.subtype_paper()`` widths (3000-1500-750) are a setting.
As in the paper the probed network is trained on every patient (early-stopped on an inner split here) and probed
in-sample; its cross-validated accuracy, which the paper did not report, is given beside it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

#: the four Verhaak subtypes, in the ClaNC file's order
SUBTYPES: tuple[str, ...] = ("Proneural", "Neural", "Classical", "Mesenchymal")
#: manifest entries of the wide set (CancerSubtypes' GeneExp, time, status)
WIDE_INPUTS: tuple[str, str, str] = ("cancersubtypes_geneexp_rda", "cancersubtypes_time_rda",
                                     "cancersubtypes_status_rda")
ALL_VERHAAK = "all_verhaak"


@dataclass(frozen=True)
class SubtypeData:
    """One expression set with Verhaak subtypes.

    Attributes:
        name: ``clanc840`` or ``wide``.
        x: samples × genes float64 expression (the files' centred log values).
        subtype: (samples,) subtype name per sample (one of :data:`SUBTYPES`).
        marker_sets: subtype → its marker genes among ``x``'s columns.
        verhaak_genes: the 840 ClaNC genes among ``x``'s columns.
        source: what the set is, in words.
    """

    name: str
    x: pd.DataFrame
    subtype: pd.Series
    marker_sets: dict[str, list[str]]
    verhaak_genes: list[str]
    source: str

    @property
    def base_rate(self) -> float:
        """Share of Verhaak genes among the genes (what a random ranking puts in any top N)."""
        return len(self.verhaak_genes) / self.x.shape[1]

    @property
    def labels(self) -> np.ndarray:
        """(samples,) int class index into :data:`SUBTYPES`."""
        return pd.Categorical(self.subtype, categories=list(SUBTYPES)).codes.astype(np.int64)


@dataclass(frozen=True)
class SubtypeSettings:
    """The subtype network and its probes.

    Attributes:
        network: overrides of ``ClassifierConfig.subtype_paper()`` (demo: widths 256-128-64, at most 60 epochs,
            early stopping patience 15; the paper's 3000-1500-750 and 200 epochs by ``{"hidden": [3000, 1500,
            750], "epochs": 200, "patience": 200}``).
        n_folds, fold_seed: the cross-validated accuracy's stratified folds (10, seed 425 as the paper's CV).
        val_fraction: share of the training patients the network early-stops on (0.2).
        random_size: genes in the random control set, drawn outside every marker set (the paper: 200 non-Verhaak
            genes; fewer when fewer are left).
        top: the top-N single-masking genes whose Verhaak share is reported.
        n_boot: patient resamples of the accuracy's interval.
    """

    network: Mapping[str, Any] = field(default_factory=lambda: {"hidden": (256, 128, 64), "epochs": 60,
                                                                "patience": 15})
    n_folds: int = 10
    fold_seed: int = 425
    val_fraction: float = 0.2
    random_size: int = 200
    top: tuple[int, ...] = (20, 50, 100)
    n_boot: int = 1000

    def config(self, seed: int) -> Any:
        """The network's :class:`~gbhet_lib.radiogenomics.networks.ClassifierConfig`: the paper's subtype model
        with :attr:`network`'s overrides, seeded with ``seed``."""
        from .networks import ClassifierConfig

        values = dict(self.network)
        if "hidden" in values:
            values["hidden"] = tuple(values["hidden"])
        return ClassifierConfig.subtype_paper(n_classes=len(SUBTYPES), **{"seed": seed, **values})


# ------------------------------------------------------------------------------------------------ data
def subtype_datasets(mirror: Path | None = None, cache_dir: Path | None = None) -> tuple[dict[str, SubtypeData], Any]:
    """Both expression sets (fetched and verified) and the parsed deepRadiogenomics data (for the VASARI rows).

    Raises:
        DataError: a file cannot be fetched or verified (the message says how to get it).
    """
    from ..data.fetch import fetch
    from ..data.readers.deepradiogenomics import load_deepradiogenomics
    from ..data.reference import cancersubtypes_expression_and_clinical

    drg = load_deepradiogenomics(mirror=mirror, cache_dir=cache_dir)
    verhaak = list(drg.expression.columns)
    markers = {s: [g for g in drg.expression.columns if drg.markers.get(g) is not None
                   and str(drg.markers[g]) == code] for s, code in zip(SUBTYPES, ("PN", "NL", "CL", "MES"))}
    clanc = SubtypeData("clanc840", drg.expression.astype(np.float64), drg.subtype.astype(str), markers, verhaak,
                        "Verhaak 2010 unified core: 173 samples × the 840 ClaNC genes (U133A, centred)")
    wide_x, _ = cancersubtypes_expression_and_clinical(*(fetch(n, mirror=mirror, cache_dir=cache_dir)
                                                         for n in WIDE_INPUTS))
    called = pd.Series(drg.subtype.astype(str).to_numpy(), index=drg.expression_patients)
    called = called[~called.index.duplicated()]
    patients = [p for p in wide_x.index if p in called.index]
    genes = list(wide_x.columns)
    present = set(genes)
    wide = SubtypeData("wide", wide_x.loc[patients].astype(np.float64), called.loc[patients],
                       {s: [g for g in m if g in present] for s, m in markers.items()},
                       [g for g in verhaak if g in present],
                       f"CancerSubtypes TCGA-GBM: {len(patients)} patients with a Verhaak call × {len(genes)} genes")
    return {"clanc840": clanc, "wide": wide}, drg


def masking_sets(data: SubtypeData, size: int, seed: int = 504) -> dict[str, list[str]]:
    """The four subtypes' marker sets, all Verhaak genes (when they are not every gene) and a random control set
    of ``size`` genes (fewer when fewer are left) outside the Verhaak genes, as the paper's; where every gene is a
    Verhaak gene (ClaNC 840), outside every marker set (the genes that mark no subtype)."""
    from ..interpret.radiogenomics import random_gene_sets

    sets: dict[str, list[str]] = dict(data.marker_sets)
    if len(data.verhaak_genes) < data.x.shape[1]:
        sets[ALL_VERHAAK] = list(data.verhaak_genes)
        excluded = sorted(data.verhaak_genes)
    else:
        excluded = sorted({g for m in data.marker_sets.values() for g in m})
    left = data.x.shape[1] - len(excluded)
    if left:
        sets.update(random_gene_sets(list(data.x.columns), [min(size, left)], exclude=excluded, seed=seed))
    return sets


# ------------------------------------------------------------------------------------------------ models
def _fit(x: np.ndarray, y: np.ndarray, settings: SubtypeSettings, seed: int) -> Any:
    """The subtype network trained on ``x`` (standardised), early-stopped on a stratified inner split."""
    from sklearn.model_selection import train_test_split

    from .training import fit_classifier

    from .crossval import single_threaded

    train, val = train_test_split(np.arange(len(y)), test_size=settings.val_fraction, stratify=y,
                                  random_state=seed)
    return single_threaded(lambda: fit_classifier(x[train], y[train], x[val], y[val], settings.config(seed)))


def _fold_probabilities(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, settings: SubtypeSettings,
                        seed: int) -> np.ndarray:
    """(m, C) held-out softmax probabilities of a scaler and network fitted on the training patients only."""
    from scipy.special import softmax
    from sklearn.preprocessing import StandardScaler

    from .training import predict_logits

    scaler = StandardScaler().fit(x_train)
    model, _ = _fit(scaler.transform(x_train).astype(np.float32), y_train, settings, seed)
    return softmax(predict_logits(model, scaler.transform(x_test).astype(np.float32)), axis=1)


def cross_validated_subtypes(data: SubtypeData, settings: SubtypeSettings = SubtypeSettings(), seed: int = 0,
                             n_jobs: int = 1) -> dict[str, Any]:
    """Out-of-fold subtype predictions (stratified K folds; per fold a scaler and a network fitted on the
    training patients only, ``n_jobs`` folds at once): ``accuracy`` with a patient-bootstrap interval, its chance
    (``majority``: the largest subtype's share), ``macro_auc`` (one-vs-rest, chance 0.5) and per-subtype recall."""
    from joblib import Parallel, delayed
    from sklearn.metrics import roc_auc_score

    from ..evaluate.metrics import group_resamples
    from .crossval import stratified_folds

    y = data.labels
    x = data.x.to_numpy()
    folds = stratified_folds(y, settings.n_folds, settings.fold_seed, name=f"{data.name} subtypes")
    ids = np.unique(folds)
    parts = Parallel(n_jobs=min(n_jobs, len(ids)))(
        delayed(_fold_probabilities)(x[folds != k], y[folds != k], x[folds == k], settings, seed + int(k))
        for k in ids)
    probabilities = np.zeros((len(y), len(SUBTYPES)))
    for k, part in zip(ids, parts):
        probabilities[folds == k] = part
    correct = (probabilities.argmax(1) == y).astype(float)
    _, _, draws = group_resamples(np.arange(len(y)), settings.n_boot, 0.95, seed)  # one patient per sample
    boot = correct[draws].mean(axis=1)
    return {"accuracy": float(correct.mean()), "accuracy_ci": [float(np.quantile(boot, 0.025)),
                                                             float(np.quantile(boot, 0.975))],
            "majority": float(np.bincount(y).max() / len(y)),
            "macro_auc": float(roc_auc_score(y, probabilities, multi_class="ovr", average="macro")),
            "recall": {s: float(correct[y == c].mean()) for c, s in enumerate(SUBTYPES)},
            "n_patients": int(len(y)), "n_genes": int(x.shape[1]), "n_folds": int(len(np.unique(folds)))}


def probe_subtype_network(data: SubtypeData, settings: SubtypeSettings = SubtypeSettings(),
                          seed: int = 0) -> dict[str, Any]:
    """The paper's probes of a subtype network trained on every patient (in-sample, as the paper did).

    Returns:
        ``masking`` (one row per set: one-vs-rest AUC/AP per subtype, keeping only that set's genes);
        ``best_set`` (subtype → the set that recognises it best, by its one-vs-rest AUC, among the marker sets and
        the random control; ``all_verhaak`` is a superset and does not compete); ``masking_recovery`` (share of
        subtypes whose own marker set is best); ``single`` (every gene alone, ranked by macro AP);
        ``verhaak_share`` (``top_<N>`` share of Verhaak genes among the top N genes, and ``base_rate``);
        ``own_marker_share`` (subtype → share of its own markers among its top ``top[0]`` genes by its AP, and
        that subtype's base rate).
    """
    from sklearn.preprocessing import StandardScaler

    from ..interpret.radiogenomics import (best_set_per_class, mask_gene_sets, mask_single_genes, model_score_fn,
                                           share_in_set, top_genes_per_class)

    y = data.labels
    genes = list(data.x.columns)
    x = StandardScaler().fit_transform(data.x.to_numpy()).astype(np.float32)
    model, history = _fit(x, y, settings, seed)
    score = model_score_fn(model)
    sets = masking_sets(data, settings.random_size)
    masking = mask_gene_sets(score, x, y, genes, sets, class_names=SUBTYPES)
    competing = masking[masking["set"] != ALL_VERHAAK]
    best = best_set_per_class(competing, SUBTYPES)
    single = mask_single_genes(score, x, y, genes, class_names=SUBTYPES)
    top = tuple(n for n in settings.top if n <= len(genes))
    share = share_in_set(list(single["gene"]), data.verhaak_genes, top=top)
    n_own = top[0]
    own = {}
    for s, top_genes in top_genes_per_class(single, SUBTYPES, top=n_own).items():
        markers = set(data.marker_sets[s])
        own[s] = {f"top_{n_own}": sum(g in markers for g in top_genes) / n_own,
                  "base_rate": len(markers) / len(genes)}
    return {"masking": masking, "best_set": best,
            "masking_recovery": float(np.mean([best[s] == s for s in SUBTYPES])), "single": single,
            "verhaak_share": share, "own_marker_share": own,
            "best_epoch": int(history["best_epoch"].iloc[0]), "n_patients": int(len(y)), "n_genes": len(genes)}


def enrichment_p(share: float, top: int, base_rate: float, n_genes: int) -> float:
    """One-sided hypergeometric p of at least ``share·top`` Verhaak genes among the top ``top`` of ``n_genes``
    genes of which a ``base_rate`` share are Verhaak genes (the chance of a ranking blind to them)."""
    from scipy.stats import hypergeom

    hits = int(round(share * top))
    return float(hypergeom(n_genes, int(round(base_rate * n_genes)), top).sf(hits - 1))


# ------------------------------------------------------------------------------------------------ VASARI rows
def vasari_illustration(drg: Any) -> pd.DataFrame:
    """The real VASARI rows of the patients who also have ClaNC expression (7 of the 20): their binarised traits
    and Verhaak subtype. Too few for any model; see :func:`loo_prevalence_auc`."""
    subtype = pd.Series(drg.subtype.astype(str).to_numpy(), index=drg.expression_patients)
    subtype = subtype[~subtype.index.duplicated()]
    rows = drg.vasari_binary.loc[[p for p in drg.vasari_binary.index if p in subtype.index]].copy()
    rows.columns = [c.removeprefix("trait_") for c in rows.columns]
    rows.insert(0, "subtype", subtype.reindex(rows.index))
    return rows


def loo_prevalence_auc(labels: pd.DataFrame) -> pd.Series:
    """Per 0/1 column: the leave-one-out AUC of a predictor that ignores expression and scores each held-out
    patient by the prevalence among the others. It is 0 whenever both classes occur: leaving a positive out
    lowers the others' prevalence, so positives always score below negatives. This is why leave-one-out AUC on
    n = 7 would be biased below 0.5 (NaN where a column holds one class)."""
    from sklearn.metrics import roc_auc_score

    out = {}
    for column in labels.columns:
        y = labels[column].dropna().astype(int).to_numpy()
        if len(np.unique(y)) < 2:
            out[column] = float("nan")
            continue
        scores = (y.sum() - y) / (len(y) - 1)
        out[column] = float(roc_auc_score(y, scores))
    return pd.Series(out, name="loo_auc_of_prevalence")


# ------------------------------------------------------------------------------------------------ the section
def validate_subtypes(datasets: Mapping[str, SubtypeData], settings: SubtypeSettings = SubtypeSettings(),
                      seed: int = 0, n_jobs: int = 1) -> dict[str, dict[str, Any]]:
    """Cross-validated accuracy (``n_jobs`` folds at once) and the probes, per expression set."""
    return {name: {"cv": cross_validated_subtypes(data, settings, seed, n_jobs),
                   "probes": probe_subtype_network(data, settings, seed)} for name, data in datasets.items()}


def subtype_summary(results: Mapping[str, Mapping[str, Any]], datasets: Mapping[str, SubtypeData]) -> pd.DataFrame:
    """One row per expression set: patients, genes, CV accuracy [interval] and its chance, macro AUC, masking
    recovery, the Verhaak share of the top 20/50 single-masking genes against the base rate."""
    rows = []
    for name, r in results.items():
        cv, probes = r["cv"], r["probes"]
        share = probes["verhaak_share"]
        rows.append({"set": name, "patients": cv["n_patients"], "genes": cv["n_genes"],
                     "cv accuracy": round(cv["accuracy"], 3),
                     "95 % CI": f"[{cv['accuracy_ci'][0]:.2f}, {cv['accuracy_ci'][1]:.2f}]",
                     "chance (majority)": round(cv["majority"], 3), "macro AUC": round(cv["macro_auc"], 3),
                     "masking recovery": probes["masking_recovery"],
                     "Verhaak share top 20": share.get("top_20"), "Verhaak share top 50": share.get("top_50"),
                     "base rate": round(share["base_rate"], 4), "source": datasets[name].source})
    return pd.DataFrame(rows).set_index("set")


def subtype_masking_table(probes: Mapping[str, Any]) -> pd.DataFrame:
    """Sets (rows, with their gene counts) × subtypes (columns): one-vs-rest AUC keeping only the set's genes."""
    table = probes["masking"].set_index("set")
    out = table[[f"auc_{s}" for s in SUBTYPES]].rename(columns=lambda c: c.removeprefix("auc_")).round(3)
    out.insert(0, "genes", table["n_genes"])
    return out


def subtype_claims(results: Mapping[str, Mapping[str, Any]], datasets: Mapping[str, SubtypeData]) -> list[Any]:
    """Checked statements: masking recovers each subtype's own set (ClaNC 840); the Verhaak share of the top 50
    single-masking genes against 5× its base rate (wide set), with the hypergeometric p; the cross-validated
    accuracy above the majority share (worded as circular for ClaNC 840)."""
    from ..claims import check

    claims = []
    for name, r in results.items():
        probes, cv = r["probes"], r["cv"]
        recovery = probes["masking_recovery"]
        told = ", ".join(f"{s}: {b}" for s, b in probes["best_set"].items())
        ident = f"radiogenomics.subtypes.{name}"
        claims.append(check(f"{ident}.masking_recovers", f"Keeping only one subtype's marker genes, the network "
                            f"recognises that subtype best, for every subtype ({name}; best set per subtype: {told})",
                            recovery, at_least=1.0, null=0.25, null_name="a random set per subtype")
                      if recovery == 1.0 else
                      check(f"{ident}.masking_recovers_not_all", f"Masking recovers the own marker set of "
                            f"{recovery:.0%} of the subtypes, not all ({name}; {told})", recovery, at_most=0.75,
                            null=0.25, null_name="a random set per subtype"))
        low = cv["accuracy_ci"][0]
        circular = " (circular: these genes were chosen to separate these subtypes on these samples)" \
            if name == "clanc840" else ""
        told = (f"{cv['accuracy']:.2f} [{low:.2f}, {cv['accuracy_ci'][1]:.2f}] over patients; the largest subtype "
                f"is {cv['majority']:.2f}")
        claims.append(check(f"{ident}.cv_above_majority", f"The subtype network's cross-validated accuracy is "
                            f"above the majority share ({name}: {told}){circular}", cv["accuracy"],
                            interval=tuple(cv["accuracy_ci"]), interval_at_least=cv["majority"],
                            null=cv["majority"], null_name="majority share") if low > cv["majority"] else
                      check(f"{ident}.cv_not_above_majority", f"The subtype network's cross-validated accuracy is "
                            f"not shown above the majority share ({name}: {told})", low, at_most=cv["majority"],
                            null=cv["majority"], null_name="majority share"))
        data = datasets[name]
        if data.base_rate >= 1.0 or "top_50" not in probes["verhaak_share"]:
            continue
        share, base = probes["verhaak_share"]["top_50"], probes["verhaak_share"]["base_rate"]
        p = enrichment_p(share, 50, base, data.x.shape[1])
        told = (f"{share:.0%} of the top 50 single-masking genes are Verhaak genes, {share / base:.1f}× the base "
                f"rate {base:.1%}; hypergeometric p = {p:.1g}; the paper: 92 % against 6.6 %")
        claims.append(check(f"{ident}.verhaak_share_top50.at_least_5x", f"Single-gene masking ranks Verhaak genes first, at "
                            f"least 5× their base rate ({name}: {told})", share, at_least=5 * base, null=base,
                            null_name="base rate") if share >= 5 * base else
                      check(f"{ident}.verhaak_share_top50.below_5x", f"Single-gene masking ranks Verhaak genes above "
                            f"their base rate but below 5× it ({name}: {told})", share, at_most=5 * base, null=base,
                            null_name="base rate") if share > base else
                      check(f"{ident}.verhaak_share_top50.at_base", f"Single-gene masking does not favour Verhaak "
                            f"genes ({name}: {told})", share, at_most=base, null=base, null_name="base rate"))
    return claims


def subtype_metrics(results: Mapping[str, Mapping[str, Any]], datasets: Mapping[str, SubtypeData],
                    settings: SubtypeSettings, vasari: pd.DataFrame, loo: pd.Series) -> dict[str, Any]:
    """The ``subtypes`` block of ``metrics/radiogenomics.json``, with the issue's headline keys at its top:
    ``subtype_masking_recovery`` (ClaNC 840), ``verhaak_share_top20``/``top50`` and ``verhaak_base_rate`` (the
    wide set, the only one where Verhaak genes are a minority)."""
    out: dict[str, Any] = {"settings": {**dataclasses.asdict(settings), "network": dict(settings.network)}}
    for name, r in results.items():
        probes = r["probes"]
        out[name] = {"cv": r["cv"], "best_set": probes["best_set"], "masking_recovery": probes["masking_recovery"],
                     "verhaak_share": probes["verhaak_share"], "own_marker_share": probes["own_marker_share"],
                     "top_genes": list(probes["single"]["gene"].head(20)), "source": datasets[name].source,
                     "best_epoch": probes["best_epoch"]}
    if "clanc840" in results:
        out["subtype_masking_recovery"] = results["clanc840"]["probes"]["masking_recovery"]
    if "wide" in results:
        share = results["wide"]["probes"]["verhaak_share"]
        out.update(verhaak_share_top20=share.get("top_20"), verhaak_share_top50=share.get("top_50"),
                   verhaak_base_rate=share["base_rate"],
                   verhaak_p_top50=enrichment_p(share["top_50"], 50, share["base_rate"],
                                                results["wide"]["probes"]["n_genes"]))
    out["vasari"] = {"n_rows": int(len(vasari)), "patients": list(vasari.index),
                     "loo_auc_of_prevalence": {k: (None if not np.isfinite(v) else v) for k, v in loo.items()}}
    return out


def subtype_verdict(results: Mapping[str, Mapping[str, Any]], datasets: Mapping[str, SubtypeData]) -> str:
    """The real-data paragraph, written from the numbers."""
    parts = []
    for name, r in results.items():
        cv, probes = r["cv"], r["probes"]
        recovered = [s for s, b in probes["best_set"].items() if b == s]
        line = (f"**{name}** ({datasets[name].source}): cross-validated accuracy {cv['accuracy']:.2f} "
                f"[{cv['accuracy_ci'][0]:.2f}, {cv['accuracy_ci'][1]:.2f}] against a majority share of "
                f"{cv['majority']:.2f}; keeping one marker set, the network recognised {len(recovered)} of "
                f"{len(SUBTYPES)} subtypes best from their own set")
        if datasets[name].base_rate < 1.0 and "top_50" in probes["verhaak_share"]:
            share = probes["verhaak_share"]
            ratio = share["top_50"] / share["base_rate"]
            p = enrichment_p(share["top_50"], 50, share["base_rate"], probes["n_genes"])
            line += (f"; Verhaak genes are {share['top_20']:.0%} of the top 20 and {share['top_50']:.0%} of the "
                     f"top 50 single-masking genes against a base rate of {share['base_rate']:.1%} ({ratio:.1f}×, "
                     f"hypergeometric p = {p:.1g}; the paper: 100 % and 92 % against 6.6 %)")
        else:
            line += "; every gene here is a Verhaak gene, so no base-rate comparison is possible"
        parts.append(line + ".")
    return " ".join(parts)


def subtype_settings(overrides: Mapping[str, Any] | None = None, **changes: Any) -> SubtypeSettings:
    """:class:`SubtypeSettings` with ``overrides`` laid over its demo network (e.g. ``{"hidden": [3000, 1500,
    750], "epochs": 200, "patience": 200}`` for the paper's) and ``changes`` to its other fields (``n_folds``)."""
    base = SubtypeSettings()
    return dataclasses.replace(base, network={**dict(base.network), **dict(overrides or {})}, **changes)
