"""Chapter 6 (interpretation) on a run directory: what it reads, what it writes, and each step it runs.

Reads (relative to the run directory)::

    data/cohort/                             the cohort: truth (demo), clinical tables, slides, planted structures
    data/rna_expression.h5ad                 chapter 2's expression (log scale, gene symbols)
    data/fusion/pairing.h5                   chapter 4's pairs
    models/splits/patient_cv-<k>of<K>.json   the patient folds (chapter 4 / 5)
    models/fusion/<name>-patient_cv-….json   the CV fusion models of chapters 4 and 5
    features/patches/<slide>.h5              chapter 3's patch stores (coordinates of every patch)

Writes::

    models/fusion/<name>-patient_cv-<k>of<K>-<digest>/   the models this chapter trains (resumable): the loss-fixed
                                             variant, the shuffled-pair null ``<v>_shuffled<r>`` and the seed
                                             replicates ``<v>_seed<s>``
    metrics/interpret.json, figures/06_*.png, figures/06_heatmaps/<slide>.png

**The gene ranking** (:func:`cv_attributions`, :func:`gene_ranking`): every patient's patches are explained by the
model of the fold that held that patient out, so no explained pair was trained on. Per patch, RNA Grad-CAM names
the top token's ten genes (:mod:`gbhet_lib.interpret.gradcam`); a gene's score is the share of patches naming it,
with every lineage weighing the same (``weighting="lineage"``; the paper's per-patch counting is
``weighting="patch"``); ties are broken by the gene's mean share of the gradient. Integrated gradients rank the
genes beside it (each patch's |attribution| scaled to sum 1, then the same weighted mean).

**Is it signal?** The same pipeline on models trained with the lineage profiles permuted across patients
(:func:`~gbhet_lib.fusion.data.shuffled_pairing`; ``null_replicates`` permutations, each trained on every fold). A
gene's empirical p is the share of the null's gene scores (every gene of every replicate, pooled) at or above its
score. The top list's p compares its driver precision with the null's, resampled over the null's held-out patients
(``n_boot`` times per replicate) so that its resolution does not rest on the few replicates a CPU can train.
Stability: Jaccard of the top genes between training seeds (``<v>_seed<s>``, the same folds) and between folds.

Importing this module needs only numpy and the standard library.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

CHAPTER = "06_interpretation"
TOP_PER_PATCH = 10  # the paper's genes per patch
TOP_LISTS = (20, 50)


# ------------------------------------------------------------------------------------------------ models
def null_name(variant: str, replicate: int) -> str:
    return f"{variant}_shuffled{replicate}"


def seed_name(variant: str, seed_offset: int) -> str:
    return f"{variant}_seed{seed_offset}"


def train_interpretation_models(run_dir: str | Path, variants: Sequence[str], folds: Mapping[str, Any],
                                pairs: Mapping[str, Any], device: str = "cpu",
                                settings: Mapping[str, Any] | None = None, fixes: Mapping[str, Any] | None = None,
                                null_variant: str = "best", null_replicates: int = 1,
                                seed_offsets: Sequence[int] = (1,), study_seed: int = 0,
                                progress: bool = True) -> dict[str, dict[str, Any]]:
    """Train what the chapter explains and chapters 4–5 did not: ``variants`` on every patient fold (a name
    ``<v>+fixes`` is ``v`` with ``fixes``), ``null_replicates`` shuffled-pair nulls of ``null_variant``
    (:func:`~gbhet_lib.fusion.data.shuffled_pairing`, seeds 0, 1, …; ``gbhet train-fusion --shuffled-pairing``)
    and ``null_variant`` again from other study seeds (``study_seed`` + each of ``seed_offsets``), with the same
    ``settings``. Finished trainings are reused.

    Returns kind (``variants``, ``null``, ``seeds``) → model name → the pairs it was trained on (and is explained
    on)."""
    from tqdm import tqdm

    from ..evaluate.stage import train_cv_models
    from ..fusion.data import shuffled_pairing
    from ..fusion.stage import train_variant
    from ..fusion.train import variant_tokens

    settings = dict(settings or {})
    train_cv_models(run_dir, variants, folds, pairs, device, settings, fixes)
    data = pairs[variant_tokens(null_variant)]
    jobs = [(null_name(null_variant, r), study_seed, r) for r in range(null_replicates)]
    jobs += [(seed_name(null_variant, s), study_seed + s, None) for s in seed_offsets]
    with tqdm(total=len(jobs) * len(folds), desc="null and seed models", disable=not progress) as bar:
        for name, job_seed, shuffle in jobs:
            for fold in folds:
                train_variant(run_dir, null_variant, fold, device, progress=False, data=data, name=name,
                              study_seed=job_seed, shuffled_pairing_seed=shuffle, **settings)
                bar.update()
    return {"variants": {v: pairs[variant_tokens(v.partition("+")[0])] for v in variants},
            "null": {null_name(null_variant, r): shuffled_pairing(data, r) for r in range(null_replicates)},
            "seeds": {seed_name(null_variant, s): data for s in seed_offsets}}


# ------------------------------------------------------------------------------------------------ attributions
@dataclass(frozen=True)
class CvAttributions:
    """Every held-out patch of a patient-level CV, explained by its fold's model.

    Attributes:
        rows: (n,) rows of the pairs; ``fold``: (n,) the fold that held each patch out; ``lineage``: (n,) its lineage
            code (row of ``data.rna``).
        top_genes: (n, 10) the Grad-CAM gene columns of each patch (-1 pads).
        gradient_share: (n, G) each patch's |∂ match / ∂ expression| scaled to sum 1.
        integrated: (n, G) |integrated gradients| scaled to sum 1 per patch, or None when not computed.
        token_scores: (n, K) cluster Grad-CAM; ``match_logit``: (n,).
    """

    rows: np.ndarray
    fold: np.ndarray
    lineage: np.ndarray
    top_genes: np.ndarray
    gradient_share: np.ndarray
    integrated: np.ndarray | None
    token_scores: np.ndarray
    match_logit: np.ndarray

    def take(self, keep: np.ndarray) -> CvAttributions:
        """The patches selected by ``keep`` (a boolean mask or index array)."""
        return CvAttributions(self.rows[keep], self.fold[keep], self.lineage[keep], self.top_genes[keep],
                              self.gradient_share[keep], None if self.integrated is None else self.integrated[keep],
                              self.token_scores[keep], self.match_logit[keep])


def _row_shares(values: np.ndarray) -> np.ndarray:
    totals = values.sum(axis=1, keepdims=True)
    return np.divide(values, totals, out=np.zeros_like(values, dtype=np.float32), where=totals > 0)


def cv_attributions(run_dir: str | Path, name: str, folds: Mapping[str, Any], data: Any, device: str = "cpu",
                    integrated: bool = True, ig_steps: int = 16) -> CvAttributions:
    """Grad-CAM (and integrated gradients) of every held-out patch of ``folds`` by the model ``name`` trained on
    its fold (loaded with :func:`~gbhet_lib.evaluate.models.load_trained`, which refuses another split's model).
    ``data`` must be the pairs the model was trained on (for a shuffled-pair null,
    :func:`~gbhet_lib.fusion.data.shuffled_pairing`'s)."""
    from ..evaluate.models import load_trained
    from ..fusion.stage import read_split, split_rows
    from .gradcam import integrated_gradients, rna_gradcam, top_genes_per_patch

    parts = []
    for fold in folds:
        model, _ = load_trained(run_dir, name, fold, device)
        _, held = split_rows(data, read_split(run_dir, fold))
        att = rna_gradcam(model, data, held)
        ig = _row_shares(np.abs(integrated_gradients(model, data, held, ig_steps))) if integrated else None
        parts.append((held, np.full(len(held), fold, dtype=object), top_genes_per_patch(att, data.rna.token_index,
                      TOP_PER_PATCH), _row_shares(att.gene_gradients), ig, att.token_scores, att.match_logit))
    rows, fold, top, share, ig, tokens, logit = (list(x) for x in zip(*parts))
    rows = np.concatenate(rows)
    return CvAttributions(rows, np.concatenate(fold), data.patch_lineage[rows], np.concatenate(top),
                          np.concatenate(share), np.concatenate(ig) if integrated else None, np.concatenate(tokens),
                          np.concatenate(logit))


def gene_ranking(att: CvAttributions, genes: Sequence[str], weighting: str = "lineage",
                 method: str = "gradcam", lineage_weights: np.ndarray | None = None) -> Any:
    """Genes ranked by one method: a DataFrame indexed by gene with ``score``, ``gradient_share`` and ``rank``
    (1 = first), best first.

    ``gradcam``: the weighted share of patches whose Grad-CAM top list names the gene, ties broken by the mean
    gradient share; ``integrated_gradients``: the weighted mean |IG| share. ``lineage_weights`` (L,) multiplies each
    lineage's weight (a bootstrap resample's lineage counts); zero drops a lineage.
    """
    import pandas as pd

    from .gradcam import gene_frequency, patch_weights

    weights = patch_weights(att.lineage, weighting)
    if lineage_weights is not None:
        weights = weights * lineage_weights[att.lineage]
        weights = weights / weights.sum()
    share = weights @ att.gradient_share
    if method == "gradcam":
        score = gene_frequency(att.top_genes, weights, len(genes))
    elif method == "integrated_gradients":
        if att.integrated is None:
            raise ValueError("integrated gradients were not computed: call cv_attributions(..., integrated=True)")
        score = weights @ att.integrated
    else:
        raise ValueError(f"method={method!r} must be 'gradcam' or 'integrated_gradients'")
    order = np.lexsort((np.arange(len(genes)), -share, -score))
    table = pd.DataFrame({"score": score[order], "gradient_share": share[order]},
                         index=pd.Index(np.asarray(genes, dtype=object)[order], name="gene"))
    table["rank"] = np.arange(1, len(table) + 1)
    return table


def fold_rankings(att: CvAttributions, genes: Sequence[str], weighting: str = "lineage") -> dict[str, Any]:
    """fold → its held-out patches' Grad-CAM ranking (:func:`gene_ranking`)."""
    return {fold: gene_ranking(att.take(att.fold == fold), genes, weighting) for fold in np.unique(att.fold)}


# ------------------------------------------------------------------------------------------------ truth
def truth_gene_sets(truth: Any, genes: Sequence[str]) -> dict[str, set[str]]:
    """The planted gene sets among ``genes``: ``visible_drivers`` and ``invisible_drivers`` (the strongest loadings of
    the image-visible and the invisible programs), ``visible_modules``/``invisible_modules`` (every gene of those
    programs' modules), and ``module:<program>`` for each program."""
    present = set(genes)
    visible, invisible = truth.visible_programs, truth.invisible_programs
    sets = {"visible_drivers": {g for p in visible for g in truth.drivers.get(p, [])},
            "invisible_drivers": {g for p in invisible for g in truth.drivers.get(p, [])},
            "visible_modules": {g for p in visible for g in truth.modules[p]},
            "invisible_modules": {g for p in invisible for g in truth.modules[p]}}
    sets |= {f"module:{p}": set(truth.modules[p]) for p in truth.programs}
    return {k: v & present for k, v in sets.items()}


def program_of(genes: Sequence[str], truth: Any) -> dict[str, str]:
    """gene → its planted program (``<program> (driver)`` for the drivers), for the genes of a module."""
    out = {}
    for program, members in truth.modules.items():
        drivers = set(truth.drivers.get(program, []))
        out |= {g: f"{program} (driver)" if g in drivers else program for g in members}
    return {g: out[g] for g in genes if g in out}


def precision_at(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """Share of the first ``k`` genes of ``ranked`` that are in ``relevant``."""
    return float(np.mean([g in relevant for g in list(ranked)[:k]]))


def driver_scores(ranked: Sequence[str], sets: Mapping[str, set[str]], n_genes: int, truth: Any,
                  top: int = 50) -> dict[str, Any]:
    """Precision of the visible programs' drivers among the first 20 and 50 genes, its chance (their share of all
    genes), and per program how many of its module's genes are in the top ``top`` beside their expected count."""
    visible, invisible = truth.visible_programs, truth.invisible_programs
    head = set(list(ranked)[:top])
    out = {f"driver_precision_at_{k}": precision_at(ranked, sets["visible_drivers"], k) for k in TOP_LISTS}
    out["driver_chance"] = len(sets["visible_drivers"]) / n_genes
    out["invisible_driver_precision_at_50"] = precision_at(ranked, sets["invisible_drivers"], 50)
    out["invisible_driver_chance"] = len(sets["invisible_drivers"]) / n_genes
    out["visible_program_hits"] = {p: len(head & sets[f"module:{p}"]) for p in visible}
    out["invisible_program_hits"] = {p: len(head & sets[f"module:{p}"]) for p in invisible}
    out["program_expected_hits"] = {p: top * len(sets[f"module:{p}"]) / n_genes for p in visible + invisible}
    out["invisible_module_hits"] = len(head & sets["invisible_modules"])
    out["invisible_module_expected"] = top * len(sets["invisible_modules"]) / n_genes
    return out


def jaccard(a: Sequence[str], b: Sequence[str]) -> float:
    a, b = set(a), set(b)
    return len(a & b) / len(a | b) if a | b else 1.0


def mean_pairwise_jaccard(lists: Sequence[Sequence[str]]) -> float:
    """Mean Jaccard over every pair of lists (NaN with fewer than two)."""
    pairs = [jaccard(a, b) for i, a in enumerate(lists) for b in lists[i + 1:]]
    return float(np.mean(pairs)) if pairs else float("nan")


# ------------------------------------------------------------------------------------------------ the null
def gene_permutation_p(observed: Any, null_scores: Sequence[np.ndarray]) -> Any:
    """Per gene, (1 + #null scores ≥ its score) / (1 + #null scores), the null's scores of every gene of every
    replicate pooled (the genes are exchangeable under the shuffled-pair null). ``observed``: a ranking table."""
    pooled = np.sort(np.concatenate([np.asarray(s, dtype=float) for s in null_scores]))
    at_or_above = len(pooled) - np.searchsorted(pooled, observed["score"].to_numpy(), side="left")
    return (1 + at_or_above) / (1 + len(pooled))


def null_precision_distribution(null_atts: Sequence[CvAttributions], genes: Sequence[str], relevant: set[str],
                                lineage_patient: np.ndarray, k: int = 50, n_boot: int = 200, seed: int = 0,
                                weighting: str = "lineage") -> np.ndarray:
    """Driver precision@k of the null pipeline: for each replicate, its ranking and ``n_boot`` rankings with the
    held-out patients resampled with replacement (a patient's lineages are drawn together; ``lineage_patient``
    (L,) gives each lineage's patient). Returns every value (replicates × (1 + n_boot))."""
    rng = np.random.default_rng(seed)
    lineage_patient = np.asarray(lineage_patient)
    values = []
    for att in null_atts:
        values.append(precision_at(gene_ranking(att, genes, weighting).index, relevant, k))
        patients = np.unique(lineage_patient[att.lineage])
        for _ in range(n_boot):
            drawn = rng.choice(patients, len(patients))
            counts = np.array([np.sum(drawn == p) for p in lineage_patient], dtype=float)
            ranking = gene_ranking(att, genes, weighting, lineage_weights=counts)
            values.append(precision_at(ranking.index, relevant, k))
    return np.asarray(values)


def bootstrap_precision(att: CvAttributions, genes: Sequence[str], relevant: set[str], lineage_patient: np.ndarray,
                        k: int = 50, n_boot: int = 200, seed: int = 0, weighting: str = "lineage",
                        level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of driver precision@k over resampled patients (as :func:`null_precision_distribution`)."""
    values = null_precision_distribution([att], genes, relevant, lineage_patient, k, n_boot, seed, weighting)[1:]
    return tuple(float(q) for q in np.quantile(values, [(1 - level) / 2, (1 + level) / 2]))


def empirical_p(observed: float, null: np.ndarray) -> float:
    """(1 + #null ≥ observed) / (1 + #null)."""
    return float((1 + np.sum(np.asarray(null) >= observed - 1e-12)) / (1 + len(null)))


# ------------------------------------------------------------------------------------------------ heat maps
def patch_geometry(run_dir: str | Path, patch_keys: Sequence[str]) -> Any:
    """Level-0 top-left (x, y) and size of each patch key ``"<slide>:<row>"`` from chapter 3's patch stores:
    a DataFrame indexed by key with ``slide``, ``x``, ``y``, ``size``."""
    import h5py
    import pandas as pd

    from ..wsi.stage import WsiEncoderRecord

    stores = {Path(p).stem: Path(run_dir) / p for p in WsiEncoderRecord.read(run_dir).patch_stores}
    rows = []
    keys = pd.Series(list(patch_keys), dtype=object)
    for slide, group in keys.groupby(keys.str.rsplit(":", n=1).str[0]):
        if slide not in stores:
            raise KeyError(f"patch keys name slide {slide!r}, which has no patch store in chapter 3's record; rerun "
                           "chapter 3 (`gbhet run --only 03_wsi_encoding --force`)")
        with h5py.File(stores[slide], "r") as h5:
            coords, size = h5["coords"][:], int(h5.attrs["patch_size_level0"])
        index = group.str.rsplit(":", n=1).str[1].astype(int).to_numpy()
        rows += [(k, slide, int(coords[i, 0]), int(coords[i, 1]), size) for k, i in zip(group, index)]
    table = pd.DataFrame(rows, columns=["key", "slide", "x", "y", "size"]).set_index("key")
    return table.loc[list(patch_keys)]


def structure_at_patches(structures: Mapping[str, Any], geometry: Any) -> Any:
    """Mean of each planted structure map (coarse grid, ``coarse_step`` level-0 pixels a cell) inside each patch's
    rectangle: a DataFrame like ``geometry`` with one column per structure."""
    import pandas as pd

    step = int(structures["coarse_step"])
    out = {}
    for name, grid in structures.items():
        grid = np.asarray(grid, dtype=np.float32)
        if grid.ndim != 2:  # coarse_step, mpp
            continue
        out[name] = [float(grid[y // step:(y + s) // step, x // step:(x + s) // step].mean())
                     for x, y, s in zip(geometry["x"], geometry["y"], geometry["size"])]
    return pd.DataFrame(out, index=geometry.index)


def slide_heatmaps(run_dir: str | Path, cohort: Any, name: str, folds: Mapping[str, Any], data: Any,
                   out_dir: str | Path, device: str = "cpu", thumbnail_size: int = 768) -> Any:
    """One heat-map figure per held-out slide (``out_dir/<slide>.png``): the model ``name`` of the fold that held
    the slide out scores each of its patches (:func:`~gbhet_lib.interpret.gradcam.match_scores`), the best patch's
    pixel saliency is drawn beside it, and the slide's planted structures when the cohort kept them.

    Returns one row per slide: ``fold``, ``lineage``, ``patches``, ``figure`` and, with planted structures, the
    Spearman correlation across the slide's patches between match score and each structure (``rho_<structure>``).
    """
    import matplotlib.pyplot as plt
    import pandas as pd
    from scipy.stats import spearmanr

    from ..evaluate.models import load_trained
    from ..fusion.stage import read_split, split_rows
    from ..plots import save_figure
    from ..wsi.slide_io import read_thumbnail
    from .gradcam import match_scores, pixel_saliency
    from .heatmaps import best_patch, slide_heatmap_figure

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for fold in folds:
        model, _ = load_trained(run_dir, name, fold, device)
        _, held = split_rows(data, read_split(run_dir, fold))
        scores = match_scores(model, data, held)
        keys = np.asarray(data.patch_key, dtype=object)[held]
        geometry = patch_geometry(run_dir, keys)
        slides = np.asarray(data.patch_slide, dtype=object)[held]
        for slide in np.unique(slides):
            mine = slides == slide
            slide_id = Path(str(slide)).stem
            thumbnail, downsample = read_thumbnail(cohort.slide_path(slide_id), thumbnail_size)
            geo = geometry.loc[keys[mine]]
            best = best_patch(scores[mine])
            row = held[mine][best]
            patch = data.images[np.array([row])][0]
            structures = cohort.planted_structures(slide_id) if hasattr(cohort, "planted_structures") else None
            fig = slide_heatmap_figure(slide_id, thumbnail, downsample, geo[["x", "y"]].to_numpy(),
                                       int(geo["size"].iloc[0]), scores[mine], patch,
                                       pixel_saliency(model, data, int(row)), structures,
                                       title_extra=f"{name}, {fold}")
            path = out_dir / f"{slide_id}.png"
            save_figure(fig, path)
            plt.close(fig)
            entry = {"slide": slide_id, "fold": fold, "lineage": data.lineage_ids[data.patch_lineage[row]],
                     "patient": str(data.patch_patient[row]), "patches": int(mine.sum()), "figure": str(path)}
            if structures is not None and mine.sum() >= 3:
                at = structure_at_patches(structures, geo).drop(columns="tissue", errors="ignore")  # a mask only
                for column in at.columns:
                    rho = spearmanr(scores[mine], at[column]).statistic if at[column].nunique() > 1 else np.nan
                    entry[f"rho_{column}"] = float(rho)
            rows.append(entry)
    return pd.DataFrame(rows).set_index("slide")


# ------------------------------------------------------------------------------------------------ summaries
def explain_all(run_dir: str | Path, models: Mapping[str, Mapping[str, Any]], folds: Mapping[str, Any],
                device: str = "cpu", integrated: Sequence[str] = (),
                progress: bool = True) -> dict[str, CvAttributions]:
    """:func:`cv_attributions` of every model of :func:`train_interpretation_models`' result (integrated gradients
    for the names in ``integrated``): name → attributions."""
    from tqdm import tqdm

    named = [(n, d) for kind in ("variants", "null", "seeds") for n, d in models.get(kind, {}).items()]
    return {n: cv_attributions(run_dir, n, folds, d, device, integrated=n in integrated)
            for n, d in tqdm(named, desc="explaining", disable=not progress)}


def ranking_summary(att: CvAttributions, genes: Sequence[str], sets: Mapping[str, set[str]], truth: Any,
                    lineage_patient: np.ndarray, weighting: str = "lineage", method: str = "gradcam",
                    n_boot: int = 200, seed: int = 0) -> dict[str, Any]:
    """One model's ranking scored against the planted truth (:func:`driver_scores`) with the patient-bootstrap
    interval of its precision@50 and its first 50 genes."""
    ranking = gene_ranking(att, genes, weighting, method)
    out = driver_scores(ranking.index, sets, len(genes), truth)
    if method == "gradcam":
        out["driver_precision_at_50_ci"] = bootstrap_precision(att, genes, sets["visible_drivers"], lineage_patient,
                                                               50, n_boot, seed, weighting)
    out["top50"] = list(ranking.index[:50])
    return out


def interpretation_summary(atts: Mapping[str, CvAttributions], models: Mapping[str, Mapping[str, Any]],
                           genes: Sequence[str], truth: Any, lineage_patient: np.ndarray, weighting: str = "lineage",
                           n_boot: int = 200, seed: int = 0) -> dict[str, Any]:
    """Every variant's Grad-CAM ranking and integrated-gradient ranking scored against the truth and the
    shuffled-pair null, the null's own precision, and the stability across seeds and folds.

    Returns ``variants`` (name → summary with ``permutation_p_top50``, ``topgene_jaccard_across_folds``,
    ``jaccard_gradcam_vs_ig`` and ``integrated_gradients`` when computed), ``null`` (the shuffled-pair
    replicates' summaries, the pooled ``null_precision`` distribution's mean and 95 % range), ``seeds`` (name →
    Jaccard of its top 50 with the seed-0 model's, for the null variant)."""
    sets = truth_gene_sets(truth, genes)
    null_atts = [atts[n] for n in models.get("null", {})]
    null_values = (null_precision_distribution(null_atts, genes, sets["visible_drivers"], lineage_patient, 50,
                                               n_boot, seed, weighting) if null_atts else np.array([]))
    null_scores = [gene_ranking(a, genes, weighting)["score"].to_numpy() for a in null_atts]
    out: dict[str, Any] = {"variants": {}, "null": {}, "seeds": {}}
    for name in models.get("variants", {}):
        att = atts[name]
        entry = ranking_summary(att, genes, sets, truth, lineage_patient, weighting, "gradcam", n_boot, seed)
        if len(null_values):
            entry["permutation_p_top50"] = empirical_p(entry["driver_precision_at_50"], null_values)
        entry["topgene_jaccard_across_folds"] = mean_pairwise_jaccard(
            [list(r.index[:50]) for r in fold_rankings(att, genes, weighting).values()])
        if att.integrated is not None:
            ig = ranking_summary(att, genes, sets, truth, lineage_patient, weighting, "integrated_gradients")
            entry["integrated_gradients"] = {k: v for k, v in ig.items() if k != "top50"} | {"top50": ig["top50"]}
            entry["jaccard_gradcam_vs_ig"] = jaccard(entry["top50"], ig["top50"])
        out["variants"][name] = entry
    for name in models.get("null", {}):
        out["null"][name] = ranking_summary(atts[name], genes, sets, truth, lineage_patient, weighting, "gradcam",
                                            n_boot, seed)
    if len(null_values):
        out["null_precision"] = {"mean": float(null_values.mean()),
                                 "range95": [float(q) for q in np.quantile(null_values, [0.025, 0.975])],
                                 "draws": int(len(null_values))}
        out["null_gene_scores"] = null_scores
    variants = list(models.get("variants", {}))
    for name in models.get("seeds", {}):
        base = name.rsplit("_seed", 1)[0]
        if base in out["variants"]:
            out["seeds"][name] = jaccard(out["variants"][base]["top50"],
                                         list(gene_ranking(atts[name], genes, weighting).index[:50]))
    if out["seeds"] and variants:
        base = next(iter(models["seeds"])).rsplit("_seed", 1)[0]
        out["variants"][base]["topgene_jaccard_across_seeds"] = float(np.mean(list(out["seeds"].values())))
    return out


def gene_ids(cohort: Any) -> dict[str, str]:
    """Gene symbol (chapter 2's gene names, from the pinned annotation) → its Ensembl id in the cohort's table."""
    table = cohort.genes.reset_index()
    id_column = "gene_id" if "gene_id" in table else table.columns[0]
    return dict(zip(table["symbol"], table[id_column])) if "symbol" in table else {}


def top_gene_table(att: CvAttributions, genes: Sequence[str], truth: Any, null_scores: Sequence[np.ndarray],
                   ids: Mapping[str, str] | None = None, n: int = 50, weighting: str = "lineage") -> Any:
    """The first ``n`` genes of a Grad-CAM ranking: ``rank``, ``gene`` (symbol), ``gene_id`` (from ``ids``),
    ``score`` (weighted share of patches naming it), ``gradient_share``, ``permutation_p`` (against the pooled
    shuffled-pair null), ``permutation_q`` (Benjamini–Hochberg over every gene: the first genes of any ranking get
    small pooled p values, so only q says whether one stands out) and ``program`` (its planted program, else
    empty)."""
    from statsmodels.stats.multitest import multipletests

    ranking = gene_ranking(att, genes, weighting)
    if null_scores:
        ranking["permutation_p"] = gene_permutation_p(ranking, null_scores)
        ranking["permutation_q"] = multipletests(ranking["permutation_p"], method="fdr_bh")[1]
    head = ranking.iloc[:n].copy()
    programs = program_of(head.index, truth) if truth is not None else {}
    head["gene_id"] = [(ids or {}).get(g, "") for g in head.index]
    head["program"] = [programs.get(g, "") for g in head.index]
    return head.reset_index()


# ------------------------------------------------------------------------------------------------ survival
def patient_embeddings(run_dir: str | Path, name: str, folds: Mapping[str, Any], data: Any,
                       device: str = "cpu") -> Any:
    """Patient-level fused embeddings: per held-out patient, the mean over its patches of [ITC image embedding,
    its lineage's ITC RNA embedding], from the model ``name`` of the fold that held the patient out: a DataFrame
    patients × 2·proj_dim."""
    import pandas as pd

    from ..evaluate.models import load_trained
    from ..fusion.retrieval import itc_embeddings
    from ..fusion.stage import read_split, split_rows

    parts = []
    for fold in folds:
        model, _ = load_trained(run_dir, name, fold, device)
        _, held = split_rows(data, read_split(run_dir, fold))
        image, rna = itc_embeddings(model, data, held, 128)
        joint = np.concatenate([image, rna[data.patch_lineage[held]]], axis=1)
        parts.append(pd.DataFrame(joint, index=pd.Index(data.patch_patient[held], name="patient_id")))
    return pd.concat(parts).groupby(level=0).mean()


AGE_COLUMNS = ("age_years", "age")  # the demo's and the reference tables' names


def age_column(clinical: Any) -> str | None:
    """The clinical table's age column (years), or None."""
    return next((c for c in AGE_COLUMNS if c in clinical), None)


def program_hazards(expression: Any, clinical: Any, gene_sets: Mapping[str, Sequence[str]],
                    planted: Mapping[str, float] | None = None, seed: int = 0) -> Any:
    """Per gene set, a Cox model of overall survival on its score (scanpy ``score_genes``, per SD) with age:
    ``hazard_ratio``, ``hr_low``, ``hr_high``, ``p`` and, with ``planted`` (the demo's program → log-hazard), the
    planted log-hazard per unit of program activity. ``expression``: samples × genes (log scale)."""
    import pandas as pd

    from .survival import gene_set_score, score_cox

    rows = {}
    for name, genes in gene_sets.items():
        if len(set(genes) & set(expression.columns)) < 3:  # too few of its genes are expressed to score it
            continue
        fit = score_cox(clinical, gene_set_score(expression, genes, seed), age_column(clinical))
        rows[name] = fit.summary.loc["score"].to_dict()
        if planted is not None:
            rows[name]["planted_log_hazard"] = float(planted.get(name, 0.0))
    return pd.DataFrame(rows).T


def survival_analyses(cohort: Any, expression: Any, top_genes: Sequence[str], embeddings: Any,
                      gene_sets: Mapping[str, Sequence[str]], n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The chapter's three survival analyses (``expression``: the RNA pool's samples × genes, log scale):

    * ``program_hazards``: :func:`program_hazards` of ``gene_sets`` on the pool (the demo's planted modules, with
      their planted log-hazards: positive and negative controls of the method);
    * ``top_gene_score``: :func:`~gbhet_lib.interpret.survival.score_survival` of the top genes' score on the pool;
    * ``embedding_clusters``: :func:`~gbhet_lib.interpret.survival.cluster_survival` of the patients' fused
      embeddings (two clusters), or ``{"skipped": reason}`` with too few patients.

    Entries are dicts of plain values; ``comparisons`` holds the Kaplan–Meier group comparisons for plotting.
    """
    from .survival import cluster_survival, gene_set_score, score_survival

    clinical = cohort.pool_clinical.loc[expression.index]
    planted = cohort.truth.survival.get("os") if cohort.kind == "synthetic" else None
    hazards = program_hazards(expression, clinical, gene_sets, planted, seed)
    score = gene_set_score(expression, top_genes, seed).rename("top-gene score")
    by_score = score_survival(clinical, score, age_column=age_column(clinical), n_boot=n_boot, seed=seed)
    out = {"program_hazards": hazards.to_dict(orient="index"),
           "top_gene_score": {k: by_score[k] for k in ("n", "events", "logrank_p", "cindex", "cindex_ci", "power")},
           "comparisons": {"top-gene score (pool)": by_score["groups"]}}
    out["top_gene_score"]["cox"] = by_score["cox"].summary.to_dict(orient="index")
    if "subtype" in clinical and clinical["subtype"].nunique() > 1:  # real data: the known null and age
        from .survival import compare_groups, cox_model

        by_subtype = compare_groups(clinical["os_days"], clinical["os_event"], clinical["subtype"], "subtype")
        out["subtype"] = {"logrank_p": by_subtype.logrank_p, "n": int(len(by_subtype.groups))}
        out["comparisons"]["subtype (pool)"] = by_subtype
        age = age_column(clinical)
        aged = clinical.dropna(subset=[age, "os_days", "os_event"]) if age else clinical.iloc[:0]
        if len(aged) > 10:
            fit = cox_model(aged["os_days"], aged["os_event"], aged[[age]].astype(float)).summary.loc[age]
            out["age"] = {k: float(v) for k, v in fit.items()}
    try:
        by_cluster = cluster_survival(embeddings, cohort.patients.loc[embeddings.index], 2, seed)
    except ValueError as error:  # too few patients to cluster
        out["embedding_clusters"] = {"skipped": str(error)}
    else:
        out["embedding_clusters"] = {k: by_cluster[k] for k in ("n", "events", "logrank_p", "power")}
        out["comparisons"]["fused-embedding clusters (patients)"] = by_cluster["groups"]
    return out


# ------------------------------------------------------------------------------------------------ tables, claims
def variant_table(summary: Mapping[str, Any]) -> Any:
    """One row per explained variant (and per shuffled-pair null): driver precision at 20 and 50 with its
    patient-bootstrap interval, chance, the top list's permutation p, module hits of the invisible programs beside
    their expected count, and the stability columns."""
    import pandas as pd

    rows = {}
    for kind in ("variants", "null"):
        for name, e in summary.get(kind, {}).items():
            low, high = e.get("driver_precision_at_50_ci", (np.nan, np.nan))
            rows[name] = {"precision@20": e["driver_precision_at_20"], "precision@50": e["driver_precision_at_50"],
                          "@50 low": low, "@50 high": high, "chance": e["driver_chance"],
                          "p (shuffled null)": e.get("permutation_p_top50", np.nan),
                          "invisible-module genes": e["invisible_module_hits"],
                          "expected": e["invisible_module_expected"],
                          "Jaccard seeds": e.get("topgene_jaccard_across_seeds", np.nan),
                          "Jaccard folds": e.get("topgene_jaccard_across_folds", np.nan),
                          "IG precision@50": e.get("integrated_gradients", {}).get("driver_precision_at_50", np.nan),
                          "Jaccard Grad-CAM/IG": e.get("jaccard_gradcam_vs_ig", np.nan)}
    return pd.DataFrame(rows).T


def interpret_claims(summary: Mapping[str, Any], survival: Mapping[str, Any] | None = None,
                     alpha: float = 0.05, fold: float = 3.0, structures: Any = None) -> list[Any]:
    """Chapter 6's checked statements, each worded by what was measured (as chapter 5's): per variant whether its
    top 50 genes hold the visible programs' drivers at ``fold`` × chance with a shuffled-pair p below ``alpha``, and
    whether the invisible programs' genes stay at or below their base rate; the shuffled-pair null at chance; and
    on the demo, that the survival analysis finds the planted hazard programs; with ``structures``
    (:func:`structure_correlation`), whether the heat maps' hot patches follow each planted structure."""
    from ..claims import check

    claims = []
    for name, e in summary.get("variants", {}).items():
        value, chance = e["driver_precision_at_50"], e["driver_chance"]
        p = e.get("permutation_p_top50", float("nan"))
        told = (f"precision@50 {value:.2f}, chance {chance:.3f} ({fold:g}× = {fold * chance:.2f}), "
                f"shuffled-pair p {p:.3f}")
        shown = value >= fold * chance and p < alpha
        claims.append(check(f"interpret.{name}.drivers_recovered", f"Grad-CAM of the {name} model puts the visible "
                            f"programs' driver genes in its top 50 at {fold:g}× chance or more, beyond the "
                            f"shuffled-pair null ({told})", value, at_least=fold * chance, null=chance,
                            null_name="chance") if shown else
                      check(f"interpret.{name}.drivers_not_shown", f"Grad-CAM of the {name} model is not shown to "
                            f"name the visible programs' drivers: its top 50 stay below {fold:g}× chance or within "
                            f"the shuffled-pair null ({told}; value: the smaller of precision / {fold:g}× chance and "
                            f"α / p, at most 1 exactly when either falls short)",
                            min(value / max(fold * chance, 1e-12), alpha / max(p, 1e-12)), at_most=1.0,
                            null=1.0, null_name="threshold"))
        hits, expected = e["invisible_module_hits"], e["invisible_module_expected"]
        told = f"{hits} of the top 50 in invisible programs' modules, {expected:.1f} expected by their share of genes"
        claims.append(check(f"interpret.{name}.invisible_at_base_rate", f"Genes of the programs the images cannot "
                            f"show are not favoured by the {name} model's Grad-CAM ({told})", hits,
                            at_most=expected, null=expected, null_name="base rate") if hits <= expected else
                      check(f"interpret.{name}.invisible_above_base_rate", f"Genes of the programs the images cannot "
                            f"show are over-represented in the {name} model's Grad-CAM top 50 ({told}): what it "
                            "names is not only what the images show", hits, at_least=expected + 1e-9, null=expected,
                            null_name="base rate"))
    for name, e in summary.get("null", {}).items():
        value, chance = e["driver_precision_at_50"], e["driver_chance"]
        low, high = e["driver_precision_at_50_ci"]
        told = f"precision@50 {value:.2f} [{low:.2f}, {high:.2f}], chance {chance:.3f}"
        at_chance = low <= chance <= high
        claims.append(check(f"interpret.{name}.at_chance", f"The shuffled-pair null ({name}) names drivers "
                            f"({told}): not distinguishable from chance, so the pipeline alone is not shown to favour "
                            "them", value, at_least=low - 1e-12,
                            at_most=high + 1e-12, null=chance, null_name="chance", interval=(low, high),
                            units="patients") if at_chance else
                      check(f"interpret.{name}.not_at_chance", f"The shuffled-pair null ({name}) does not name drivers "
                            f"at chance ({told}): the gene ranking favours some genes whatever the pairing, which is "
                            "why every list is tested against this null", abs(value - chance),
                            at_least=1e-12, null=0.0, null_name="chance", interval=(low, high), units="patients"))
    hazards = (survival or {}).get("program_hazards") or {}
    planted = {p: h for p, h in hazards.items() if h.get("planted_log_hazard", 0.0) != 0.0}
    if planted:
        found = [p for p, h in planted.items()
                 if h["p"] < alpha and np.sign(np.log(h["hazard_ratio"])) == np.sign(h["planted_log_hazard"])]
        claims.append(check("interpret.survival.planted_hazards_found", f"On the RNA pool, Cox models with age find "
                            f"{len(found)} of the {len(planted)} planted hazard programs "
                            f"({', '.join(found) or 'none'}) "
                            f"at p < {alpha} with the planted sign", len(found), at_least=len(planted), null=0.0,
                            null_name="none found") if len(found) == len(planted) else
                      check("interpret.survival.planted_hazards_missed", f"On the RNA pool, Cox models with age miss "
                            f"planted hazard programs: found {', '.join(found) or 'none'} of {', '.join(planted)}",
                            len(found), at_most=len(planted) - 1, null=float(len(planted)), null_name="all planted"))
    for structure, row in (structures.iterrows() if structures is not None else ()):
        p = row["p (patients)"]
        if not np.isfinite(p):
            continue
        told = (f"mean Spearman ρ {row['mean rho']:.2f} over {int(row['slides'])} slides, positive on "
                f"{int(row['positive'])}; Wilcoxon over {int(row['patients'])} patients p {p:.3f}")
        claims.append(check(f"interpret.heatmaps.follow_{structure}", f"The heat maps' match scores follow the "
                            f"planted {structure} within slides ({told})", p, at_most=alpha, null=alpha,
                            null_name="α") if p < alpha else
                      check(f"interpret.heatmaps.{structure}_not_shown", f"The heat maps' match scores are not shown "
                            f"to follow the planted {structure} within slides ({told})", p, at_least=alpha,
                            null=alpha, null_name="α"))
    subtype, age = (survival or {}).get("subtype"), (survival or {}).get("age")
    if subtype:  # real survival: the published null (Verhaak subtypes not prognostic in this set) and age
        p = subtype["logrank_p"]
        claims.append(check("interpret.survival.subtype_not_prognostic", f"Expression subtypes do not separate "
                            f"overall survival on the pool (log-rank p {p:.3f}), as known for this set", p,
                            at_least=alpha, null=alpha, null_name="α") if p >= alpha else
                      check("interpret.survival.subtype_prognostic", f"Expression subtypes separate overall survival "
                            f"on the pool here (log-rank p {p:.3f}), unlike the published null", p, at_most=alpha,
                            null=alpha, null_name="α"))
    if age:
        p = age["p"]
        claims.append(check("interpret.survival.age_prognostic", f"Age is prognostic on the pool (Cox p {p:.3g}, "
                            f"hazard ratio {age['hazard_ratio']:.3f} per year)", p, at_most=alpha, null=alpha,
                            null_name="α") if p < alpha else
                      check("interpret.survival.age_not_shown", f"Age is not shown to be prognostic on the pool "
                            f"(Cox p {p:.3g})", p, at_least=alpha, null=alpha, null_name="α"))
    return claims


def enrichment_sentences(enriched: Any, invisible: Sequence[str] = (), q: float = 0.05) -> list[str]:
    """What the enrichment found at ``q``, per test, naming the sets of programs the images cannot show."""
    lines = []
    for test, rows in enriched.groupby("test", sort=False) if len(enriched) else ():
        hits = list(rows.loc[rows["q"] < q, "set"])
        hidden = [h for h in hits if h in set(invisible)]
        lines.append(f"- Enrichment ({test}) of `best`'s genes at q < {q}: {len(hits)} set(s)"
                     + (f" ({', '.join(map(str, hits[:8]))}{', …' if len(hits) > 8 else ''})" if hits else "")
                     + (f", including {len(hidden)} program(s) the images cannot show ({', '.join(hidden)}): "
                        "enrichment of this list does not by itself show what the images see." if hidden else "."))
    return lines


def verdict(summary: Mapping[str, Any], survival: Mapping[str, Any], main: str = "best",
            fold: float = 3.0, alpha: float = 0.05, enriched: Any = None, invisible: Sequence[str] = (),
            structures: Any = None) -> str:
    """The chapter's conclusion in sentences written from the measured numbers (nothing else)."""
    lines = []
    for name, e in summary.get("variants", {}).items():
        value, chance = e["driver_precision_at_50"], e["driver_chance"]
        low, high = e.get("driver_precision_at_50_ci", (np.nan, np.nan))
        p = e.get("permutation_p_top50", float("nan"))
        shown = value >= fold * chance and p < alpha
        lines.append(f"- **{name}**: {value:.0%} of its top 50 genes are visible-program drivers "
                     f"([{low:.0%}, {high:.0%}] over patients; chance {chance:.1%}; shuffled-pair p {p:.3f}) — "
                     + ("the list reflects what the images show." if shown else
                        "not shown to reflect what the images show.")
                     + f" {e['invisible_module_hits']} of the 50 belong to programs the images cannot show "
                       f"({e['invisible_module_expected']:.1f} expected by chance).")
    null = summary.get("null_precision")
    if null:
        lines.append(f"- The shuffled-pair null reaches a driver precision of {null['mean']:.1%} on average (95 % "
                     f"of its resamples within [{null['range95'][0]:.0%}, {null['range95'][1]:.0%}]).")
    e = summary.get("variants", {}).get(main, {})
    if "topgene_jaccard_across_seeds" in e:
        lines.append(f"- Stability of `{main}`'s top 50: Jaccard {e['topgene_jaccard_across_seeds']:.2f} between "
                     f"training seeds, {e['topgene_jaccard_across_folds']:.2f} between folds"
                     + (f", {e['jaccard_gradcam_vs_ig']:.2f} with integrated gradients." if "jaccard_gradcam_vs_ig"
                        in e else "."))
    if enriched is not None:
        lines += enrichment_sentences(enriched, invisible, alpha)
    for structure, row in (structures.iterrows() if structures is not None else ()):
        if np.isfinite(row["p (patients)"]):
            lines.append(f"- Heat maps and the planted {structure}: mean ρ {row['mean rho']:.2f} within slides, "
                         f"p {row['p (patients)']:.3f} over {int(row['patients'])} patients"
                         + (" — the hot patches follow it." if row["p (patients)"] < alpha else " — not shown."))
    hazards = survival.get("program_hazards") or {}
    planted = [p for p, h in hazards.items() if h.get("planted_log_hazard", 0.0) != 0.0]
    if planted:
        found = [p for p in planted if hazards[p]["p"] < alpha]
        spurious = [p for p, h in hazards.items() if p not in planted and h["p"] < alpha]
        lines.append(f"- Survival on the RNA pool finds {len(found)} of the {len(planted)} planted hazard programs "
                     f"({', '.join(found) or 'none'}) and {len(spurious)} program(s) without a planted hazard "
                     f"({', '.join(spurious) or 'none'}) at p < {alpha}.")
    if survival.get("subtype"):
        age = survival.get("age", {})
        lines.append(f"- Subtypes and survival on the pool: log-rank p {survival['subtype']['logrank_p']:.3f}"
                     + (f"; age: Cox p {age['p']:.3g}." if age else "."))
    score = survival.get("top_gene_score")
    if score:
        lo, hi = score["cindex_ci"]
        lines.append(f"- The top genes' score: C-index {score['cindex']:.2f} [{lo:.2f}, {hi:.2f}] on {score['n']} pool "
                     f"samples, log-rank p {score['logrank_p']:.3f} (median split)"
                     + (" — prognostic here." if lo > 0.5 else " — not shown to be prognostic."))
    clusters = survival.get("embedding_clusters")
    if clusters and "skipped" in clusters:
        lines.append(f"- Clusters of the patients' fused embeddings: not analysed ({clusters['skipped']}).")
    elif clusters:
        lines.append(f"- Clusters of the {clusters['n']} patients' fused embeddings: log-rank p "
                     f"{clusters['logrank_p']:.2f}, power {clusters['power']:.2f} to detect a hazard ratio of 2"
                     + (" — too few patients for a null result to mean anything." if clusters["power"] < 0.8
                        else "."))
    return "\n".join(lines)


def interpret_metrics(summary: Mapping[str, Any], top: Any, survival: Mapping[str, Any], enriched: Any, maps: Any,
                      main: str = "best") -> dict[str, Any]:
    """``metrics/interpret.json`` (without the claims): the main variant's figures at the top level (``top_genes``,
    ``driver_precision_at_20``/``_50``, ``driver_chance``, ``visible_program_hits``, ``invisible_program_hits``,
    ``permutation_p_top50``, ``topgene_jaccard_across_seeds``/``_folds``, ``cindex``, ``cindex_ci``,
    ``logrank_p``), every variant's and null's summary, the enrichment at q < 0.05, the heat maps' structure
    correlations and the survival analyses."""
    e = summary["variants"][main]
    keys = ("driver_precision_at_20", "driver_precision_at_50", "driver_precision_at_50_ci", "driver_chance",
            "visible_program_hits", "invisible_program_hits", "invisible_module_hits", "invisible_module_expected",
            "permutation_p_top50", "topgene_jaccard_across_seeds", "topgene_jaccard_across_folds")
    score = survival.get("top_gene_score", {})
    columns = [c for c in ("rank", "gene", "gene_id", "score", "permutation_p", "permutation_q", "program")
               if c in top]
    return {"main_variant": main, **{k: e[k] for k in keys if k in e},
            "top_genes": top[columns].to_dict(orient="records"),
            "cindex": score.get("cindex"), "cindex_ci": score.get("cindex_ci"), "logrank_p": score.get("logrank_p"),
            "variants": summary["variants"],
            "null": summary.get("null", {}), "null_precision": summary.get("null_precision"),
            "seeds": summary.get("seeds", {}),
            "enrichment": enriched[enriched["q"] < 0.05].to_dict(orient="records") if len(enriched) else [],
            "heatmap_structure_rho": structure_correlation(maps)[["mean rho", "p (patients)"]].to_dict(orient="index"),
            "heatmap_slides": int(len(maps)),
            "survival": {k: v for k, v in survival.items() if k != "comparisons"}}


def structure_correlation(maps: Any) -> Any:
    """Per planted structure, the Spearman correlation between patch match score and the structure's share of the
    patch (``rho_*`` columns of :func:`slide_heatmaps`): its mean over slides, the slides counted and how many
    correlate positively, and a Wilcoxon signed-rank test of the per-patient means against 0 (slides of one patient
    are not independent, so patients are the units). Empty when the cohort kept no planted structures."""
    import pandas as pd
    from scipy.stats import wilcoxon

    rho = maps.filter(like="rho_")
    columns = ["mean rho", "slides", "positive", "patients", "p (patients)"]
    if rho.empty:
        return pd.DataFrame(columns=columns)
    per_patient = rho.groupby(maps["patient"]).mean() if "patient" in maps else rho

    def test(values: pd.Series) -> float:
        values = values.dropna()
        return float(wilcoxon(values).pvalue) if len(values) >= 5 and values.abs().sum() > 0 else float("nan")

    table = pd.DataFrame({"mean rho": rho.mean(), "slides": rho.notna().sum(), "positive": (rho > 0).sum(),
                          "patients": per_patient.notna().sum(), "p (patients)": per_patient.apply(test)})
    return table[columns].rename(index=lambda c: c.removeprefix("rho_"))
