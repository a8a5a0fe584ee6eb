"""Chapter 5 (retrieval evaluation) on a run directory: what it reads, what it writes, and each step it runs.

Reads (relative to the run directory)::

    data/fusion/pairing.h5                   chapter 4's pairs (lineage RNA, token sets, lineages, patients)
    models/splits/<policy>.json              chapter 4's splits (patch, slide, lineage) and patient_cv-<k>of<K> folds
    models/fusion/<name>-<split>.json        the fusion models chapter 4 trained, with their checkpoints
    models/wsi/encoder.json                  chapter 3's record (the patch encoder's kind and settings)
    models/rna/encoder.json                  chapter 2's record (the pre-trained RNA encoder)
    metrics/01_data.json                     chapter 1's power of the cohort's size (cited, not required)

Writes::

    models/fusion/<name>-patient_cv-<k>of<K>-<digest>/   the CV models chapter 4 did not train (resumable)
    models/fusion/{simclr,wsi-patient_cv-…}-<digest>/    their patch encoders, trained without the fold's patients
    metrics/retrieval.json, figures/05_*.png

Each split is scored the same way (:func:`score_split`): the held-out patches (and their slides) query a gallery of
lineage RNA profiles, every profile (``all``, the paper's: lineages without held-out patches are distractors) or
the held-out ones only (``held_out``), image → RNA; and each held-out lineage's profile queries the held-out slides
(RNA → slide). Beside each model, the image-blind null: the same model with every image embedding replaced by the
mean embedding of the training patches, so every query ranks the gallery the same way. Baselines replace the
fusion model by a ridge map, fitted on the training patches only, from image features to chapter 2's RNA
embedding: of a randomly initialised patch encoder (``random_init``), of the patch encoder pre-trained on the
split's training patches but not fused (``not_fused``), and of hand-crafted colour and texture features
(``linear``).

Importing this module needs only numpy and the standard library.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

CHAPTER = "05_retrieval"
#: the protocols, in the chapter's order: the paper's random patch split, then the honest ones
PROTOCOLS = ("patch", "slide", "lineage", "patient_cv")
#: the baselines, scored under every protocol like the variants
BASELINES = ("random_init", "not_fused", "linear")
#: ridge penalties of the baselines' map (chosen per split by grouped cross-validation over training patients)
RIDGE_ALPHAS = np.logspace(-2, 5, 15)
IMAGE_TO_RNA, RNA_TO_SLIDE = "image→rna", "rna→slide"


# ------------------------------------------------------------------------------------------------ splits
def load_pairs(run_dir: str | Path, names: Sequence[str], memory_budget_bytes: int | None = None) -> dict[str, Any]:
    """Chapter 4's pairs (``data/fusion/pairing.h5``, as it sampled them) for every token set the fusion model
    names use (``best+fixes`` uses ``best``'s), and always ``ppi`` (the baselines'): token set →
    :class:`~gbhet_lib.fusion.data.PairedPatches`."""
    from ..fusion.stage import load_pairing
    from ..fusion.train import variant_tokens
    from ..wsi.stage import WsiEncoderRecord

    img_size = WsiEncoderRecord.read(run_dir).encoder["img_size"]
    tokens = {"ppi"} | {variant_tokens(n.partition("+")[0]) for n in names if n not in BASELINES}
    return {t: load_pairing(run_dir, t, img_size, memory_budget_bytes) for t in sorted(tokens)}


def protocol_splits(run_dir: str | Path, data: Any, protocols: Sequence[str], cv_folds: int,
                    seed: int = 0) -> dict[str, dict[str, Any]]:
    """protocol → {split name → split record}: chapter 4's split files for ``patch``/``slide``/``lineage`` and the
    ``cv_folds`` patient folds for ``patient_cv`` (written when missing, as chapter 4 writes them)."""
    from ..fusion.stage import read_split, write_cv_splits

    unknown = sorted(set(protocols) - set(PROTOCOLS))
    if unknown:
        raise ValueError(f"protocols {unknown} are not among {PROTOCOLS}")
    out = {}
    for protocol in protocols:
        out[protocol] = write_cv_splits(run_dir, data, cv_folds, seed) if protocol == "patient_cv" else \
            {protocol: read_split(run_dir, protocol)}
    return out


def train_cv_models(run_dir: str | Path, variants: Sequence[str], folds: Mapping[str, Any],
                    pairs: Mapping[str, Any], device: str = "cpu", settings: Mapping[str, Any] | None = None,
                    fixes: Mapping[str, Any] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    """Train every variant on every patient fold that chapter 4 did not (same settings: its runs are reused;
    :func:`gbhet_lib.fusion.stage.train_grid`). A variant named ``<v>+fixes`` is ``v`` trained with ``fixes``
    (chapter 4's ``report.ALL_FIXES``). Returns (name, fold) → training record."""
    from ..fusion.stage import train_grid

    records = {}
    for variant in variants:
        base, _, suffix = variant.partition("+")
        extra = dict(fixes or {}) if suffix == "fixes" else {}
        records |= train_grid(run_dir, [base], folds, pairs, device, name=variant if suffix else None,
                              **{**(settings or {}), **extra})
    return records


# ------------------------------------------------------------------------------------------------ scoring
def score_split(image_held: np.ndarray, image_train_mean: np.ndarray, rna: np.ndarray, data: Any,
                held_rows: np.ndarray, train_rows: np.ndarray, centre: np.ndarray | None = None) -> Any:
    """Every query of one split, scored by the model and by the image-blind null (module docstring).

    Args:
        image_held: (n, P) image embeddings of the held-out patches ``held_rows`` (rows of ``data``, a
            :class:`~gbhet_lib.fusion.data.PairedPatches`).
        image_train_mean: (P,) the mean image embedding of the training patches (the null's image).
        rna: (L, P) the RNA embedding of every lineage of ``data.rna``.
        centre: (P,) subtracted from images and profiles before the cosine (the ridge baselines' training mean);
            None for the fusion models' unit embeddings.

    Returns:
        A long table, one row per (direction, level, gallery, scorer, query): :func:`rank_queries` columns plus
        ``direction``, ``level`` (patch, slide, lineage), ``gallery`` (all, held_out), ``scorer`` (model, null),
        ``query``, ``lineage``, ``patient``.
    """
    import pandas as pd

    from .retrieval import cosine_scores, mean_slide_scores, rank_queries

    lineage_ids = np.asarray(data.lineage_ids, dtype=object)
    held_lineage = data.patch_lineage[held_rows]
    held = np.unique(held_lineage)
    trained = np.isin(np.arange(len(lineage_ids)), np.unique(data.patch_lineage[train_rows]))
    slides = np.asarray(data.patch_slide, dtype=object)[held_rows]
    parts = []

    def add(scores: np.ndarray, truth: np.ndarray, candidate_lineage: np.ndarray, meta: dict[str, Any],
            **labels: str) -> None:
        """Rank the queries with a relevant candidate and another one; ``truth``: each query's lineage code."""
        relevant = candidate_lineage[None, :] == truth[:, None]
        keep = relevant.any(1) & ~relevant.all(1)
        if not keep.any():
            return
        table = rank_queries(scores[keep], relevant[keep], meta["candidate_ids"], meta["candidate_patient"],
                             data.lineage_patient[truth[keep]], meta.get("candidate_trained"))
        parts.append(table.assign(**labels, query=meta["query"][keep], lineage=lineage_ids[truth[keep]],
                                  patient=data.lineage_patient[truth[keep]]))

    keys = np.asarray(data.patch_key, dtype=object)[held_rows]
    for scorer, images in (("model", image_held), ("null", np.tile(image_train_mean, (len(held_rows), 1)))):
        patch_scores = cosine_scores(images, rna, centre)  # (n, L)
        slide_ids, slide_scores = mean_slide_scores(patch_scores, slides)
        slide_lineage = np.array([held_lineage[slides == s][0] for s in slide_ids])
        for gallery, columns in (("all", np.arange(len(lineage_ids))), ("held_out", held)):
            if len(columns) < 2:
                continue
            meta = {"candidate_ids": lineage_ids[columns], "candidate_patient": data.lineage_patient[columns],
                    "candidate_trained": trained[columns]}
            add(patch_scores[:, columns], held_lineage, columns, {**meta, "query": keys},
                direction=IMAGE_TO_RNA, level="patch", gallery=gallery, scorer=scorer)
            add(slide_scores[:, columns], slide_lineage, columns, {**meta, "query": slide_ids},
                direction=IMAGE_TO_RNA, level="slide", gallery=gallery, scorer=scorer)
        if len(slide_ids) >= 2:  # RNA → slide: each held-out lineage's profile ranks the held-out slides
            meta = {"candidate_ids": slide_ids, "candidate_patient": data.lineage_patient[slide_lineage],
                    "query": lineage_ids[held]}
            add(slide_scores[:, held].T, held, slide_lineage, meta, direction=RNA_TO_SLIDE, level="lineage",
                gallery="held_out", scorer=scorer)
    return pd.concat(parts, ignore_index=True)


def model_queries(run_dir: str | Path, name: str, split_name: str, data: Any, device: str = "cpu",
                  batch_size: int = 128) -> Any:
    """:func:`score_split` for the fusion model ``name`` trained on ``split_name`` (loaded with
    :func:`gbhet_lib.evaluate.models.load_trained`, which refuses a model of another split): the ITC embeddings
    of the uni-modal image and RNA paths, as the paper's evaluation."""
    from ..fusion.retrieval import itc_embeddings
    from ..fusion.stage import read_split, split_rows
    from .models import load_trained

    model, _ = load_trained(run_dir, name, split_name, device)
    train_rows, held_rows = split_rows(data, read_split(run_dir, split_name))
    image_held, rna = itc_embeddings(model, data, held_rows, batch_size)
    image_train, _ = itc_embeddings(model, data, train_rows, batch_size)
    return score_split(image_held, image_train.mean(0), rna, data, held_rows, train_rows)


def baseline_features(run_dir: str | Path, baseline: str, split_name: str, data: Any, device: str = "cpu",
                      seed: int = 0, cache: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """(N, F) image features of every pair for a baseline: ``random_init`` (a randomly initialised patch encoder
    of chapter 3's kind, seeded), ``not_fused`` (the patch encoder trained on ``split_name``'s training patches,
    :func:`gbhet_lib.fusion.stage.wsi_encoder_for_split`), ``linear`` (hand-crafted features at the pairs' size).
    ``cache`` keeps the split-independent ones between calls."""
    import torch

    from ..fusion.stage import wsi_encoder_for_split
    from ..wsi.features import extract_features
    from ..wsi.handcrafted import handcrafted_features
    from ..wsi.stage import WsiEncoderRecord, encoder_factory

    cache = {} if cache is None else cache
    if baseline in cache:
        return cache[baseline]
    if baseline == "linear":
        cache[baseline] = handcrafted_features(data.images, downsample=1)[0]
        return cache[baseline]
    if baseline == "random_init":
        torch.manual_seed(seed)
        encoder = encoder_factory(WsiEncoderRecord.read(run_dir).encoder)().eval()
    elif baseline == "not_fused":
        encoder, _ = wsi_encoder_for_split(run_dir, split_name, data, device)
    else:
        raise ValueError(f"baseline={baseline!r} is not one of {BASELINES}")
    features = extract_features(encoder, data.triplet_data(np.arange(len(data))), batch_size=128, device=device)
    if baseline == "random_init":
        cache[baseline] = features
    return features


def rna_embedding(run_dir: str | Path, data: Any, device: str = "cpu") -> np.ndarray:
    """(L, D) chapter 2's pre-trained RNA encoder's CLS embedding of every lineage profile of ``data`` (PPI tokens),
    the target of the baselines' ridge map."""
    from ..fusion.stage import rna_encoder_for
    from ..rna.train import embed

    encoder, _ = rna_encoder_for(run_dir, "ppi", device)
    return embed(encoder, data.rna, device=device, output="cls")


def ridge_map(features: np.ndarray, targets: np.ndarray, groups: np.ndarray, folds: int = 4):
    """Standardised ridge regression of ``targets`` (n, D) on ``features`` (n, F), the penalty chosen among
    :data:`RIDGE_ALPHAS` by cross-validation grouped by ``groups`` (patients: a patient's patches share targets, so
    per-patch folds would pick too little shrinkage; with a single training patient, ``RidgeCV``'s leave-one-out
    choice is the only one left). Returns the fitted scikit-learn pipeline."""
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GridSearchCV, GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n_groups = len(np.unique(groups))
    if n_groups < 2:  # one training patient (a tiny cohort): the penalty can only be chosen per patch (RidgeCV)
        from sklearn.linear_model import RidgeCV

        return make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS)).fit(features, targets)
    search = GridSearchCV(make_pipeline(StandardScaler(), Ridge()), {"ridge__alpha": RIDGE_ALPHAS},
                          cv=GroupKFold(min(folds, n_groups)), scoring="neg_mean_squared_error")
    return search.fit(features, targets, groups=groups).best_estimator_


def baseline_queries(run_dir: str | Path, baseline: str, split_name: str, data: Any, targets: np.ndarray,
                     device: str = "cpu", seed: int = 0, cache: dict[str, np.ndarray] | None = None) -> Any:
    """:func:`score_split` for a baseline: its features (:func:`baseline_features`) mapped onto the RNA embedding
    ``targets`` (L, D) by :func:`ridge_map` fitted on the split's training patches (each with its lineage's
    embedding); cosines are taken after removing the training targets' mean."""
    from ..fusion.stage import read_split, split_rows

    train_rows, held_rows = split_rows(data, read_split(run_dir, split_name))
    features = baseline_features(run_dir, baseline, split_name, data, device, seed, cache)
    y = targets[data.patch_lineage[train_rows]]
    ridge = ridge_map(features[train_rows], y, data.patch_patient[train_rows])
    predicted = ridge.predict(features[held_rows])
    return score_split(predicted, ridge.predict(features[train_rows]).mean(0), targets, data, held_rows, train_rows,
                       centre=y.mean(0))


def evaluate_protocols(run_dir: str | Path, names: Sequence[str], splits: Mapping[str, Mapping[str, Any]],
                       pairs: Mapping[str, Any], device: str = "cpu", seed: int = 0,
                       cv_names: Sequence[str] | None = None, progress: bool = True) -> Any:
    """Score every variant (fusion model names, e.g. ``best``, ``best+fixes``) and baseline under every protocol's
    splits (:func:`protocol_splits`); splits that hold out the same patches as an earlier protocol's
    (:func:`~gbhet_lib.evaluate.splits.identical_splits`) reuse its model, as chapter 4 trained them once.
    ``cv_names``: the fusion models trained on the patient folds (default all ``names``); the others are scored
    under the other protocols only.

    Returns one long table of queries (:func:`score_split` columns plus ``variant``, ``protocol``, ``fold``).
    """
    import pandas as pd
    from tqdm import tqdm

    from ..evaluate.splits import identical_splits
    from ..fusion.train import variant_tokens

    flat = {name: split for protocol in splits.values() for name, split in protocol.items()}
    same = identical_splits(flat)
    ppi = pairs["ppi"]
    targets = rna_embedding(run_dir, ppi, device)
    cache: dict[str, np.ndarray] = {}
    cv = set(names if cv_names is None else cv_names) | set(BASELINES)
    jobs = [(name, protocol, fold) for protocol, folds in splits.items() for fold in folds for name in names
            if protocol != "patient_cv" or name in cv]
    parts = []
    for name, protocol, fold in tqdm(jobs, desc="retrieval", disable=not progress):
        if name in BASELINES:
            table = baseline_queries(run_dir, name, fold, ppi, targets, device, seed, cache)
        else:
            data = pairs[variant_tokens(name.partition("+")[0])]
            table = model_queries(run_dir, name, same[fold], data, device)
        parts.append(table.assign(variant=name, protocol=protocol, fold=fold))
    return pd.concat(parts, ignore_index=True)


# ------------------------------------------------------------------------------------------------ metrics
def select(queries: Any, direction: str = IMAGE_TO_RNA, level: str = "patch", gallery: str = "all",
           scorer: str = "model") -> Any:
    """The rows of one (direction, level, gallery, scorer) of :func:`evaluate_protocols`' table."""
    keep = (queries["direction"] == direction) & (queries["level"] == level) & (queries["gallery"] == gallery) & \
        (queries["scorer"] == scorer)
    return queries[keep]


#: the views summarised per (variant, protocol) beside the headline (image → RNA, patches, every profile)
VIEWS = {"held_out_gallery": dict(gallery="held_out"), "slide_queries": dict(level="slide"),
         "rna_to_slide": dict(direction=RNA_TO_SLIDE, level="lineage", gallery="held_out")}
#: lineage-balanced views (every query lineage counts once); with the held-out gallery the image-blind null's
#: percentile is exactly 0.5 per fold (each held-out profile is the true one of one lineage, and the null ranks
#: them the same way for all): a leak check
BALANCED_VIEWS = {"lineage_balanced": dict(), "held_out_gallery_balanced": dict(gallery="held_out")}


def retrieval_metrics(queries: Any, n_boot: int = 2000, seed: int = 0) -> dict[str, dict[str, Any]]:
    """``{variant: {protocol: {...}}}`` for ``metrics/retrieval.json``: the headline view (image → RNA, patch
    queries, every profile in the gallery, patch-weighted) with the keys the issue fixes (lineage_top1 and its
    interval and chance, patient_top1 and chance, percentile with interval, the null's percentile with interval,
    recall_at_5, mean_rank, hub_share, n_queries, n_folds), then each of :data:`VIEWS` (patch-weighted) and
    :data:`BALANCED_VIEWS` (lineage-balanced), with the same keys."""
    from .retrieval import summarise

    def view(rows: Any, null_rows: Any, weighting: str = "patch") -> dict[str, Any]:
        model = summarise(rows, weighting, n_boot=n_boot, seed=seed)
        null = summarise(null_rows, weighting, n_boot=n_boot, seed=seed)
        return {**model, "null_percentile": null["percentile"], "null_percentile_ci": null["percentile_ci"],
                "null_lineage_top1": null["lineage_top1"], "null_hub_share": null["hub_share"]}

    out: dict[str, dict[str, Any]] = {}
    for (variant, protocol), rows in queries.groupby(["variant", "protocol"], sort=False):
        entry = view(select(rows), select(rows, scorer="null"))
        for views, weighting in ((VIEWS, "patch"), (BALANCED_VIEWS, "lineage")):
            for name, spec in views.items():
                model_rows = select(rows, **spec)
                if len(model_rows):
                    entry[name] = view(model_rows, select(rows, **spec, scorer="null"), weighting)
        out.setdefault(variant, {})[protocol] = entry
    return out


def main_table(metrics: Mapping[str, Mapping[str, Any]], view: str | None = None) -> Any:
    """variants × protocols table of a view's percentile and top-1 with intervals, chance and null."""
    import pandas as pd

    rows = []
    for variant, protocols in metrics.items():
        for protocol, entry in protocols.items():
            m = entry if view is None else entry.get(view)
            if not m:
                continue
            rows.append({"variant": variant, "protocol": protocol, "percentile": m["percentile"],
                         "percentile low": m["percentile_ci"][0], "percentile high": m["percentile_ci"][1],
                         "null percentile": m["null_percentile"], "null low": m["null_percentile_ci"][0],
                         "null high": m["null_percentile_ci"][1], "top-1": m["lineage_top1"],
                         "top-1 low": m["lineage_top1_ci"][0], "top-1 high": m["lineage_top1_ci"][1],
                         "top-1 chance": m["lineage_top1_chance"], "patient top-1": m["patient_top1"],
                         "patient chance": m["patient_top1_chance"], "R@5": m["recall_at_5"],
                         "mean rank": m["mean_rank"], "hub share": m["hub_share"],
                         "never-trained winner": m["never_trained_share"], "queries": m["n_queries"],
                         "folds": m["n_folds"]})
    return pd.DataFrame(rows).set_index(["variant", "protocol"])


def optimism(metrics: Mapping[str, Mapping[str, Any]], paper: str = "patch", honest: str = "patient_cv") -> Any:
    """Per variant, the paper's protocol's number minus the patient-CV number (top-1 and percentile)."""
    import pandas as pd

    rows = {v: {"top-1 (paper protocol)": p[paper]["lineage_top1"], "top-1 (patient CV)": p[honest]["lineage_top1"],
                "top-1 optimism": p[paper]["lineage_top1"] - p[honest]["lineage_top1"],
                "percentile optimism": p[paper]["percentile"] - p[honest]["percentile"]}
            for v, p in metrics.items() if paper in p and honest in p}
    return pd.DataFrame(rows).T


def confusion(queries: Any, variant: str, protocol: str = "patient_cv", level: str = "slide") -> Any:
    """Query lineage × retrieved lineage counts (image → RNA, every profile in the gallery) of one variant."""
    import pandas as pd

    rows = select(queries[(queries["variant"] == variant) & (queries["protocol"] == protocol)], level=level)
    return pd.crosstab(rows["lineage"], rows["winner"]).rename_axis(index="query lineage", columns="retrieved")


# ------------------------------------------------------------------------------------------------ claims
def retrieval_claims(metrics: Mapping[str, Mapping[str, Any]], variants: Sequence[str],
                     oracle_power: float | None = None) -> list[Any]:
    """Chapter 5's checked statements. Under patient-level CV with the held-out gallery (every candidate new to
    the model, so no hub of never-trained profiles can help or hurt): each variant's percentile is stated as above
    chance and above its image-blind null when its interval says so, else as not shown; the best variant is
    compared with the baselines; and the paper's protocol's optimism is stated as measured."""
    from ..claims import check

    power = "" if oracle_power is None else f"; chapter 1: an oracle would show it with power {oracle_power:.2f}"
    claims = []
    for variant in variants:
        entry = metrics.get(variant, {}).get("patient_cv", {}).get("held_out_gallery")
        if not entry:
            continue
        low, high = entry["percentile_ci"]
        null_high = entry["null_percentile_ci"][1]
        summary = (f"percentile {entry['percentile']:.2f} [{low:.2f}, {high:.2f}], image-blind null "
                   f"{entry['null_percentile']:.2f}, chance 0.5{power}")
        claims.append(check(f"retrieval.{variant}.cv_above_chance", f"Under patient-level CV, held-out patches of "
                            f"the {variant} model rank their own lineage's profile above chance among the held-out "
                            f"lineages ({summary})", low, at_least=0.5, null=0.5, null_name="chance",
                            interval=(low, high), units="patients") if low > 0.5 else
                      check(f"retrieval.{variant}.cv_chance_not_excluded", f"Under patient-level CV the {variant} "
                            f"model's interval reaches chance ({summary})", low, at_most=0.5, null=0.5,
                            null_name="chance", interval=(low, high), units="patients"))
        if low > 0.5 and low > null_high:
            claims.append(check(f"retrieval.{variant}.cv_above_null", f"Under patient-level CV, held-out patches of "
                                f"the {variant} model retrieve their own lineage's profile among the held-out "
                                f"lineages above chance and above the image-blind null ({summary})", low,
                                at_least=max(0.5, null_high), null=entry["null_percentile"],
                                null_name="image-blind null", interval=(low, high), units="patients"))
        else:
            claims.append(check(f"retrieval.{variant}.cv_not_shown", f"Under patient-level CV the {variant} model's "
                                f"retrieval of held-out lineages is not shown to beat both chance and the "
                                f"image-blind null: its interval reaches one of them ({summary})", low,
                                at_most=max(0.5, null_high), null=entry["null_percentile"],
                                null_name="image-blind null", interval=(low, high), units="patients"))
        balanced = metrics[variant]["patient_cv"].get("held_out_gallery_balanced")
        if balanced:
            claims.append(check(f"retrieval.{variant}.cv_null_at_chance", "Under patient-level CV the image-blind "
                                "null ranks the held-out profiles alike for every query, so its lineage-balanced "
                                "percentile is chance: no query-independent score leaks into the evaluation",
                                balanced["null_percentile"], at_least=0.5 - 1e-9, at_most=0.5 + 1e-9, null=0.5,
                                null_name="chance"))
        paper = metrics[variant].get("patch")
        if paper:
            cv_top1 = metrics[variant]["patient_cv"]["lineage_top1"]
            gap = paper["lineage_top1"] - cv_top1
            told = (f"the paper's protocol (random patches) gives {variant} top-1 {paper['lineage_top1']:.2f}, "
                    f"patient-level CV with the same gallery {cv_top1:.2f}")
            claims.append(check(f"retrieval.{variant}.paper_protocol_optimistic", f"The paper's protocol overstates "
                                f"how well {variant} retrieves new patients' lineages: {told}", gap, at_least=1e-12,
                                null=0.0, null_name="no optimism") if gap > 0 else
                          check(f"retrieval.{variant}.paper_protocol_not_optimistic", f"The paper's protocol does not "
                                f"overstate {variant}'s retrieval here: {told}", gap, at_most=0.0, null=0.0,
                                null_name="no optimism"))
    published = [v for v in variants if v in metrics and "patient_cv" in metrics[v]]
    if published:
        best = max(published, key=lambda v: metrics[v]["patient_cv"]["held_out_gallery"]["percentile"])
        value = metrics[best]["patient_cv"]["held_out_gallery"]["percentile"]
        for baseline in BASELINES:
            other = metrics.get(baseline, {}).get("patient_cv", {}).get("held_out_gallery")
            if not other:
                continue
            better = value > other["percentile_ci"][1]
            claims.append(check(
                f"retrieval.{best}_vs_{baseline}", f"Under patient-level CV the best fusion variant ({best}, "
                f"percentile {value:.2f}) is {'above' if better else 'not shown above'} the {baseline} baseline "
                f"({other['percentile']:.2f} [{other['percentile_ci'][0]:.2f}, {other['percentile_ci'][1]:.2f}])",
                value, **({"at_least": other["percentile_ci"][1]} if better else
                          {"at_most": other["percentile_ci"][1]}),
                null=other["percentile"], null_name=baseline))
    return claims


def verdict(metrics: Mapping[str, Mapping[str, Any]], variants: Sequence[str], baselines: Sequence[str] = BASELINES,
            paper: str = "patch", honest: str = "patient_cv") -> str:
    """The chapter's closing paragraph, written from the numbers (Markdown): what the paper's protocol reports, what
    survives patient-level CV against chance, the image-blind null and the baselines, and where the queries go when
    every profile is in the gallery. Each sentence restates a value of ``metrics``; none is fixed text about the
    outcome."""
    def interval(m: Mapping[str, Any], key: str = "percentile") -> str:
        low, high = m[f"{key}_ci"]
        return f"{m[key]:.2f} [{low:.2f}, {high:.2f}]"

    lines = []
    for variant in variants:
        entry = metrics.get(variant, {})
        if honest not in entry or "held_out_gallery" not in entry[honest]:
            continue
        cv, p = entry[honest]["held_out_gallery"], entry.get(paper)
        above_chance = cv["percentile_ci"][0] > 0.5
        above_null = cv["percentile_ci"][0] > cv["null_percentile_ci"][1]
        said = (f"**{variant}**: " + (f"under the paper's protocol, percentile {interval(p)} and top-1 "
                                       f"{p['lineage_top1']:.2f} (chance {p['lineage_top1_chance']:.2f}); "
                                       if p else "")
                + f"under patient-level CV, among the held-out profiles, percentile {interval(cv)}, which is "
                + ("above" if above_chance else "not distinguishable from") + " chance (0.5) and "
                + ("above" if above_null else "not above") + " the image-blind null's interval "
                + f"{interval({'percentile': cv['null_percentile'], 'percentile_ci': cv['null_percentile_ci']})}.")
        everyone = entry[honest]
        said += (f" With every profile in the gallery, its top-1 is {everyone['lineage_top1']:.2f} (chance "
                 f"{everyone['lineage_top1_chance']:.2f}); {1 - everyone['never_trained_share']:.0%} of the queries "
                 f"retrieve a profile the model trained on, and the most retrieved profile wins "
                 f"{everyone['hub_share']:.0%}.")
        lines.append(said)
    rows = [(b, metrics[b][honest]["held_out_gallery"]) for b in baselines
            if honest in metrics.get(b, {}) and "held_out_gallery" in metrics[b][honest]]
    if rows:
        lines.append("Baselines under patient-level CV (held-out profiles): " + "; ".join(
            f"{b} {interval(m)}" for b, m in rows) + ".")
    return "\n\n".join(f"- {line}" for line in lines)
