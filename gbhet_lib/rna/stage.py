"""Chapter 2 (RNA encoding) on a run directory: what it reads, what it writes, and each step the chapter runs.

Reads (relative to the run directory; :class:`~gbhet_lib.rundir.RunDir` names every path)::

    data/cohort/                     chapter 1's cohort (expression tables, genes, PPI edges, truth), unless
                                     your own files are given (expression, clinical table, edge table, gene sets)

Writes::

    data/rna_expression.h5ad         samples × genes AnnData (:func:`expression_anndata`): X = log2 expression;
                                     obs: role (lineage | pool), size_factor, pool_split (train | validation);
                                     var: scaling_mean, scaling_std (fitted on the pool's training samples);
                                     uns["scaling"], uns["normalisation"]; obsm["X_rna_encoder"] = the encoder's
                                     128-d CLS embedding of every sample (rows = obs_names)
    models/rna/gene_tokens.json      the gene tokens (:class:`~gbhet_lib.rna.tokens.GeneTokens`)
    models/rna/pretrain-<digest>/    last.pt + history.tsv of the pre-training (one folder per settings)
    models/rna/encoder.json          :class:`RnaEncoderRecord`: what the fusion chapter builds on
    metrics/rna.json, figures/02_*.png

Importing this module needs numpy, pandas and the standard library only (anndata, torch, networkx, sklearn are
imported by the functions that use them), so :class:`RnaEncoderRecord` loads on the GPU machine.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..data.cohort import Cohort
from ..rundir import RunDir, StageRecord, settings_folder
from .gene_ids import GeneIdMatch, harmonise_expression

CHAPTER = "02_rna_encoding"
#: how errors about your own files name this chapter ("set `expression_columns=` in chapter 2's parameters")
CHAPTER_NAME = "chapter 2"
#: where the encoder's sample embedding lives in the expression AnnData
EMBEDDING_KEY = "X_rna_encoder"
#: the baseline beside it: principal components of the raw log expression
RAW_PCS_KEY = "X_pca_raw"
#: share of the pre-training pool held out for validation
POOL_VALIDATION_FRACTION = 0.1
#: bounds of the chapter's claims (:func:`chapter_claims`)
FOLDED_ARI_MIN = 0.8
LOUVAIN_ARI_MIN = 0.9
PROBE_R2_MIN = 0.5
PROBE_GAP_MAX = 0.25
TOKENS_GAP_MAX = 0.1


@dataclass(frozen=True)
class RnaEncoderRecord(StageRecord):
    """``models/rna/encoder.json``: chapter 2's pre-trained RNA encoder and how its inputs were made.

    Attributes:
        checkpoint: the pre-trained encoder (``last.pt``), relative to the run directory.
        token_method: ``ppi`` or ``chromosome`` (the tokens of ``gene_tokens``).
        standardise: whether the encoder was fed per-gene z-scores (fitted on ``fit_on``) instead of log values.
        fit_on: the pool samples it was trained on (and the scaling fitted on); ``validation``: the held-out pool.
        pool: every sample of the RNA-only pre-training pool.
        settings: the :class:`~gbhet_lib.rna.train.PretrainConfig` as a dict.
        gene_tokens, expression: the token file and the expression AnnData (relative paths).
        embedding: the ``obsm`` key of the encoder's sample embedding in ``expression``.
    """

    STAGE = "rna"
    CHAPTER = CHAPTER

    checkpoint: str
    token_method: str
    standardise: bool
    fit_on: list[str]
    pool: list[str]
    settings: dict[str, Any]
    validation: list[str] = field(default_factory=list)
    gene_tokens: str | None = None
    expression: str | None = None
    embedding: str = EMBEDDING_KEY

    def problem(self) -> str | None:
        if self.token_method not in ("ppi", "chromosome"):
            return f"token_method={self.token_method!r} must be 'ppi' or 'chromosome'"
        outside = sorted(set(self.fit_on) - set(self.pool))
        if outside:
            return f"'fit_on' holds samples outside 'pool' (e.g. {outside[:3]})"
        return None


@dataclass(frozen=True)
class RnaExpression:
    """Log expression of every sample on gene symbols, and how it was obtained.

    Attributes:
        values: samples × gene symbols, log2 scale (DESeq2-normalised counts, or the given normalised values).
        lineages, pool: the sample ids with a slide (lineages) and the RNA-only pool.
        size_factors: DESeq2 size factors per sample when the input was counts, else None.
        gene_match: how the input gene identifiers mapped to the annotation.
        n_merged: input rows merged into another row of the same gene after the id mapping.
        reading: what the reader decided about your own file (:class:`~gbhet_lib.data.user_tables.ReadReport`);
            None for chapter 1's cohort.
    """

    values: pd.DataFrame
    lineages: pd.Index
    pool: pd.Index
    size_factors: pd.Series | None
    gene_match: GeneIdMatch
    n_merged: int = 0
    reading: Any = None


def cohort_expression(cohort: Cohort) -> RnaExpression:
    """Lineage and pool expression of a cohort on symbols: counts are harmonised to Ensembl ids, normalised
    jointly (DESeq2 median-of-ratios, log2(x + 1)); already-normalised values are only re-indexed."""
    table = pd.concat([cohort.expression_lineages, cohort.expression_pool], axis=1)
    annotation = cohort.genes.reset_index()
    return _log_symbols(table, annotation, cohort.expression_unit == "raw_counts",
                        pd.Index(cohort.expression_lineages.columns), pd.Index(cohort.expression_pool.columns))


def own_expression(table: pd.DataFrame, annotation: pd.DataFrame, counts: bool) -> RnaExpression:
    """Your own genes × samples table (symbols or Ensembl ids; counts or normalised values) prepared the same
    way; every sample counts as pool (there are no slides). The reader's report (``table.attrs["report"]``, if
    any) gains the gene-id mapping and is kept in ``reading``."""
    rna = _log_symbols(table, annotation, counts, pd.Index([]), pd.Index(table.columns))
    report = table.attrs.get("report")
    if report is not None:
        rule = "counts summed" if counts else "normalised values averaged"
        rows = f"{rna.n_merged} row{'s' if rna.n_merged > 1 else ''}"
        merged = (f"{rows} merged into another row of the same gene ({rule})" if rna.n_merged
                  else "no two rows map to one gene")
        report.note("gene ids", f"{rna.gene_match}; {merged}; {rna.values.shape[1]} genes with a unique symbol kept")
    return replace(rna, reading=report)


def _log_symbols(table: pd.DataFrame, annotation: pd.DataFrame, counts: bool, lineages: pd.Index,
                 pool: pd.Index) -> RnaExpression:
    from .normalise import normalise_counts

    by_id, match = harmonise_expression(table, annotation, duplicates="sum" if counts else "mean")
    n_merged = int(by_id.attrs["n_collapsed"])
    size_factors = None
    if counts:
        by_id = normalise_counts(by_id)
        size_factors = by_id.attrs["size_factors"]
    symbol = annotation.drop_duplicates("gene_id").set_index("gene_id")["symbol"]
    symbols = symbol.reindex(by_id.index)
    keep = symbols.notna().to_numpy() & ~symbols.duplicated().to_numpy()
    values = by_id.loc[keep].set_axis(symbols[keep].to_numpy()).T
    values.columns.name = "symbol"
    return RnaExpression(values.astype(np.float64), lineages, pool, size_factors, match,
                         n_merged=n_merged)


def split_pool(pool: pd.Index, validation_fraction: float = 0.1, seed: int = 0) -> tuple[pd.Index, pd.Index]:
    """Random train / validation split of the pre-training pool (validation at least one sample)."""
    if len(pool) < 2:
        raise ValueError(f"the pre-training pool has {len(pool)} sample(s); it needs at least 2")
    order = np.random.default_rng(seed).permutation(len(pool))
    n_val = max(1, int(round(validation_fraction * len(pool))))
    return pool[np.sort(order[n_val:])], pool[np.sort(order[:n_val])]


def token_source_edges(cohort: Cohort | None, ppi_path: str | Path | None, mirror: Path | None = None,
                       cache_dir: Path | None = None) -> pd.DataFrame:
    """The gene graph for the tokens: your edge table if given, else the cohort's own graph (demo: the planted
    PPI), else STRING v12 from the data manifest (the reference cohort keeps only the edges among its genes,
    so the full graph is read for the tokens)."""
    from ..data.readers import read_edge_table

    if ppi_path is not None:
        return read_edge_table(ppi_path, score_col=None)
    if cohort is not None and cohort.kind == "synthetic":
        return cohort.ppi_edges
    from ..data.fetch import fetch
    from ..data.readers import read_string_rda

    return read_string_rda(fetch("string_v12_ppi_rda", mirror=mirror, cache_dir=cache_dir))


def standardise_genes(values: pd.DataFrame, fit_on: pd.Index) -> pd.DataFrame:
    """Per-gene z-scores (samples × genes) with means and standard deviations from the ``fit_on`` samples only
    (the training pool), so held-out samples never inform the scaling. Constant genes are centred, not scaled."""
    reference = values.loc[fit_on]
    sd = reference.std(ddof=0).replace(0.0, 1.0)
    return (values - reference.mean()) / sd



# ------------------------------------------------------------------------------------------------ expression
def load_expression(run: RunDir, config: Any, expression_path: str | Path | None = None,
                    expression_values: str = "counts", *, orientation: str = "auto",
                    expression_columns: str | None = None, sample_column: str | None = None,
                    aggregate_samples: str = "mean",
                    chapter: str = CHAPTER_NAME) -> tuple[RnaExpression, Cohort | None, pd.DataFrame]:
    """The chapter's expression: chapter 1's cohort (``expression_path`` None) or your own table, on gene symbols.

    Your table is read by :func:`~gbhet_lib.data.user_tables.read_expression_table` with the chapter's
    parameters (``expression_values`` ``counts`` or ``normalised``, ``orientation``, ``expression_columns``,
    ``sample_column``, ``aggregate_samples``); its errors name those parameters of ``chapter``. ``config`` (a
    :class:`~gbhet_lib.config.StudyConfig`) gives the data mirror and cache for the gene annotation.

    Returns the expression, the cohort (None for your own files) and the gene annotation (symbol, chromosome…).
    """
    from ..data.cohort import load_cohort

    if expression_path is None:
        cohort = load_cohort(run.cohort)
        return cohort_expression(cohort), cohort, cohort.genes
    from ..data.fetch import fetch
    from ..data.readers import read_pirlygenes_reference
    from ..data.user_tables import read_expression_table

    annotation = read_pirlygenes_reference(fetch("pirlygenes_gene_reference", config.data_mirror, config.cache_dir))
    table = read_expression_table(expression_path, orientation, expression_values, annotation,
                                  expression_columns=expression_columns, sample_column=sample_column,
                                  aggregate_samples=aggregate_samples, chapter=chapter)
    return own_expression(table, annotation, counts=expression_values == "counts"), None, annotation


def expression_anndata(rna: RnaExpression, seed: int, standardise: bool,
                       validation_fraction: float = POOL_VALIDATION_FRACTION):
    """The expression side as one AnnData (samples × genes; see the module docstring).

    ``obs``: ``role`` (``lineage`` | ``pool``), ``size_factor`` (NaN without counts), ``pool_split`` (``train`` |
    ``validation`` for pool samples, ``""`` for lineages; :func:`split_pool` with ``seed``). ``var``: per-gene
    ``scaling_mean`` and ``scaling_std`` fitted on the pool's training samples (std 1 for constant genes);
    ``uns["scaling"]`` says what was fitted on what and whether the encoder was fed the z-scores.
    """
    import anndata as ad

    train_ids, val_ids = split_pool(rna.pool, validation_fraction, seed)
    samples = rna.values.index.astype(str)
    obs = pd.DataFrame(index=samples)
    obs["role"] = np.where(samples.isin(rna.lineages.astype(str)), "lineage", "pool")
    factors = rna.size_factors.reindex(samples) if rna.size_factors is not None else None
    obs["size_factor"] = np.nan if factors is None else factors.to_numpy(dtype=np.float64)
    obs["pool_split"] = np.where(samples.isin(train_ids), "train", np.where(samples.isin(val_ids), "validation", ""))
    reference = rna.values.loc[train_ids]
    var = pd.DataFrame({"scaling_mean": reference.mean().to_numpy(),
                        "scaling_std": reference.std(ddof=0).replace(0.0, 1.0).to_numpy()},
                       index=rna.values.columns.astype(str))
    adata = ad.AnnData(X=rna.values.to_numpy(dtype=np.float64), obs=obs, var=var)
    adata.uns["normalisation"] = {
        "method": "DESeq2 median-of-ratios size factors, then log2(x / size factor + 1)"
        if rna.size_factors is not None else "none: values given already normalised (log scale)",
        "gene_match": str(rna.gene_match)}
    adata.uns["scaling"] = {"method": "per-gene z-score: (X - scaling_mean) / scaling_std",
                            "fit_on": "obs.pool_split == 'train'", "n_fit": int(len(train_ids)),
                            "validation_fraction": float(validation_fraction), "seed": int(seed),
                            "fed_to_encoder": bool(standardise)}
    return adata


def write_expression(run: RunDir, adata) -> Path:
    """Write the expression AnnData to ``data/rna_expression.h5ad`` atomically."""
    from ..io import atomic_path

    with atomic_path(run.expression) as tmp:
        adata.write_h5ad(tmp)
    return run.expression


def read_expression(run: str | Path | RunDir):
    """Chapter 2's expression AnnData (``data/rna_expression.h5ad``); a clear error when it is not there."""
    import anndata as ad

    run = RunDir.of(run)
    if not run.expression.exists():
        raise FileNotFoundError(f"{run.expression} is missing (chapter 2's expression): rerun chapter 2 with "
                                f"`gbhet run --run-dir {run.root} --only {CHAPTER} --force`")
    return ad.read_h5ad(run.expression)


def pool_split_ids(adata) -> tuple[pd.Index, pd.Index]:
    """(train, validation) sample ids of the pre-training pool recorded in ``obs["pool_split"]``."""
    split = adata.obs["pool_split"].astype(str)
    return pd.Index(split.index[split == "train"]), pd.Index(split.index[split == "validation"])


def encoder_values(adata) -> pd.DataFrame:
    """What the encoder is fed (samples × genes): log expression, z-scored with the recorded per-gene scaling
    when ``uns["scaling"]["fed_to_encoder"]`` (the same numbers as :func:`standardise_genes` on the pool's
    training samples)."""
    values = pd.DataFrame(np.asarray(adata.X, dtype=np.float64), index=adata.obs_names, columns=adata.var_names)
    if adata.uns["scaling"]["fed_to_encoder"]:
        train_ids, _ = pool_split_ids(adata)
        values = standardise_genes(values, train_ids)
    return values


def size_factor_check(rna: RnaExpression, cohort: Cohort | None) -> tuple[pd.DataFrame, float] | None:
    """Planted vs DESeq2-estimated size factors (demo cohort from counts): the table and the log–log Pearson r;
    None when there is nothing to compare."""
    if rna.size_factors is None or cohort is None or cohort.kind != "synthetic":
        return None
    planted = cohort.truth.size_factors.loc[rna.size_factors.index]
    r = np.corrcoef(np.log(planted), np.log(rna.size_factors))[0, 1]
    return pd.DataFrame({"planted": planted, "estimated": rna.size_factors}), float(r)


# ------------------------------------------------------------------------------------------------ tokens
def make_tokens(run: RunDir, config: Any, genes: list[str], token_method: str, cohort: Cohort | None,
                annotation: pd.DataFrame, n_tokens: int | None = 7, resolution: float = 1.0,
                ppi_path: str | Path | None = None):
    """Gene tokens of ``genes``: Louvain communities of the PPI graph folded to ``n_tokens`` (``ppi``; seeded with
    ``config.seed``, the graph from :func:`token_source_edges`) or one token per chromosome (``chromosome``);
    written to ``models/rna/gene_tokens.json``.

    Returns the tokens, the PPI edges used (None for chromosome tokens) and the chapter's token metrics.
    """
    from .tokens import chromosome_tokens, ppi_tokens

    if token_method not in ("ppi", "chromosome"):
        raise ValueError(f"token_method={token_method!r} must be 'ppi' or 'chromosome'")
    metrics: dict[str, Any] = {}
    edges = None
    if token_method == "ppi":
        edges = token_source_edges(cohort, ppi_path, config.data_mirror, config.cache_dir)
        tokens = ppi_tokens(edges, genes, n_tokens=n_tokens, resolution=resolution, seed=config.seed)
        metrics["modularity"] = tokens.params["modularity"]
    else:
        tokens = chromosome_tokens(genes, annotation)
    tokens.save_json(run.gene_tokens)
    metrics |= {"token_method": token_method, "n_tokens": len(tokens.sizes), "token_sizes": tokens.sizes}
    return tokens, edges, metrics


def module_agreement(tokens, edges: pd.DataFrame | None, genes: list[str], cohort: Cohort | None,
                     resolution: float = 1.0, seed: int = 0) -> dict[str, Any]:
    """On the demo with PPI tokens, the tokens against the planted modules; else {}.

    Returns ``louvain_ari`` (adjusted Rand index of Louvain's own, unfolded communities), ``folded_ari`` (of
    ``tokens``, folded to K), ``n_communities`` (before folding) and ``module_tokens``: per planted module, the
    token holding most of its genes, the share it holds (0–1), its genes in the tokens and whether that token is
    the rest token (:func:`~gbhet_lib.rna.tokens.module_tokens`).
    """
    from .tokens import module_tokens, ppi_tokens, token_agreement

    if cohort is None or cohort.kind != "synthetic" or edges is None:
        return {}
    unfolded = ppi_tokens(edges, genes, n_tokens=None, resolution=resolution, seed=seed)
    return {"louvain_ari": token_agreement(unfolded, cohort.truth.modules),
            "folded_ari": token_agreement(tokens, cohort.truth.modules), "n_communities": len(unfolded.sizes),
            "module_tokens": module_tokens(tokens, cohort.truth.modules)}


def gene_sets_for(cohort: Cohort | None, gene_sets_path: str | Path | None, config: Any) -> dict[str, list[str]]:
    """The gene sets the tokens are tested against: your GMT file, else the demo's planted modules, else MSigDB
    Hallmark (from the data manifest)."""
    from ..data.fetch import fetch
    from ..data.readers import read_gmt, read_iobr_hallmark_rda

    if gene_sets_path is not None:
        return read_gmt(gene_sets_path)
    if cohort is not None and cohort.kind == "synthetic":
        return cohort.truth.modules
    return read_iobr_hallmark_rda(fetch("msigdb_hallmark_iobr_rda", config.data_mirror, config.cache_dir))


# ------------------------------------------------------------------------------------------------ pre-training
@dataclass(frozen=True, eq=False)
class Pretrained:
    """The outcome of :func:`pretrain_encoder`: the record, the trained model, its history, the token data of
    every sample (rows = the AnnData's obs_names) and its pool train / validation subsets."""

    record: RnaEncoderRecord
    model: Any
    history: pd.DataFrame
    data: Any
    train: Any
    val: Any
    settings: Any


def pretrain_encoder(run: RunDir, adata, tokens, token_method: str, settings) -> Pretrained:
    """Pre-train the cluster-token transformer on the pool's training samples of ``adata`` (validated on its
    validation samples), fed as ``uns["scaling"]`` says, in ``models/rna/pretrain-<digest>`` (resumed when
    there), and write :class:`RnaEncoderRecord` to ``models/rna/encoder.json``."""
    from .train import TokenData, load_model, pretrain

    values = encoder_values(adata)
    train_ids, val_ids = pool_split_ids(adata)
    data = TokenData.from_frame(values, tokens.tokens)
    rows = {s: i for i, s in enumerate(values.index)}
    train = data.subset([rows[s] for s in train_ids])
    val = data.subset([rows[s] for s in val_ids])
    checkpoints = settings_folder(run.rna_models, "pretrain", settings.to_dict(), tokens.sizes)
    history = pretrain(settings, train, val, checkpoint_dir=checkpoints, progress=False)
    pool = adata.obs_names[adata.obs["role"].astype(str) == "pool"]
    record = RnaEncoderRecord(checkpoint=run.relative(checkpoints / "last.pt"), token_method=token_method,
                              standardise=bool(adata.uns["scaling"]["fed_to_encoder"]), fit_on=list(train_ids),
                              pool=list(pool), settings=settings.to_dict(), validation=list(val_ids),
                              gene_tokens=run.relative(run.gene_tokens), expression=run.relative(run.expression))
    record.write(run)
    return Pretrained(record, load_model(checkpoints / "last.pt"), history, data, train, val, settings)


def embed_samples(run: RunDir, adata, pretrained: Pretrained, device: str = "cpu",
                  n_pcs: int = 20) -> tuple[pd.DataFrame, np.ndarray]:
    """The encoder's CLS embedding of every sample, stored in ``adata.obsm["X_rna_encoder"]`` (rows = obs_names),
    and the baseline it is compared with, the first ``n_pcs`` principal components of the standardised log
    expression (``obsm["X_pca_raw"]``); the AnnData is written back to ``data/rna_expression.h5ad``.

    Returns the embedding as a table indexed by sample id, and the raw PCs (same rows).
    """
    from .evaluate import principal_components
    from .train import embed

    embedding = embed(pretrained.model, pretrained.data, device=device)
    values = pd.DataFrame(np.asarray(adata.X, dtype=np.float64), index=adata.obs_names, columns=adata.var_names)
    raw_pcs = principal_components(values, n_pcs)
    adata.obsm[EMBEDDING_KEY] = embedding
    adata.obsm[RAW_PCS_KEY] = raw_pcs
    adata.uns["raw_pcs"] = {"method": "PCA of per-gene standardised X (sklearn)", "n_components": int(raw_pcs.shape[1])}
    write_expression(run, adata)
    return pd.DataFrame(embedding, index=adata.obs_names), raw_pcs


def token_outputs(pretrained: Pretrained, device: str = "cpu") -> pd.DataFrame:
    """The encoder's K gene-token outputs of every sample, concatenated in token order (samples × K · dim; rows =
    the AnnData's obs_names): what the decoders reconstruct the genes from, probed beside the CLS embedding."""
    from .train import embed

    values = embed(pretrained.model, pretrained.data, device=device, output="tokens")
    return pd.DataFrame(values, index=pd.Index(pretrained.data.samples))


def read_embedding(run: str | Path | RunDir) -> pd.DataFrame:
    """Chapter 2's sample embedding (samples × 128) indexed by sample id, from the expression AnnData."""
    adata = read_expression(run)
    if EMBEDDING_KEY not in adata.obsm:
        raise KeyError(f"{RunDir.of(run).expression} has no obsm[{EMBEDDING_KEY!r}]: rerun chapter 2 with "
                       f"`gbhet run --run-dir {RunDir.of(run).root} --only {CHAPTER} --force`")
    return pd.DataFrame(np.asarray(adata.obsm[EMBEDDING_KEY]), index=adata.obs_names)


def clinical_table(cohort: Cohort | None, clinical_path: str | Path | None = None,
                   samples: Sequence[str] = (), *, clinical_id_column: str | None = None,
                   survival_time_column: str | None = None, survival_event_column: str | None = None,
                   survival_time_unit: str = "days") -> pd.DataFrame | None:
    """One clinical row per RNA profile: the reference cohort's patients and pool, or your table matched to the
    expression's ``samples`` (:func:`~gbhet_lib.data.user_tables.read_clinical_table`: the id column, survival
    columns and unit as the chapter's parameters say; ``os_days`` and ``os_event`` when survival is found); else
    None."""
    if cohort is not None and cohort.kind == "semisynthetic":
        return pd.concat([cohort.patients, cohort.pool_clinical])
    if clinical_path is None:
        return None
    from ..data.user_tables import read_clinical_table

    return read_clinical_table(clinical_path, list(samples), clinical_id_column=clinical_id_column,
                               survival_time_column=survival_time_column,
                               survival_event_column=survival_event_column, survival_time_unit=survival_time_unit,
                               chapter=CHAPTER_NAME)


def reading_report(rna: RnaExpression, clinical: pd.DataFrame | None) -> pd.DataFrame | None:
    """What the reader decided about your own files (expression, clinical): one row per step, or None when the
    chapter read none (chapter 1's cohort)."""
    from ..data.user_tables import report_table

    reports = [rna.reading, None if clinical is None else clinical.attrs.get("report")]
    if all(r is None for r in reports):
        return None
    return report_table(*reports).set_index(["table", "step"])


# ------------------------------------------------------------------------------------------------ claims
def chapter_claims(metrics: Mapping[str, Any]) -> list[Any]:
    """Chapter 2's checked statements (:mod:`gbhet_lib.claims`) from its metrics; only those measured are made.

    * ``rna.louvain_ari``, ``rna.folded_ari`` (``louvain_ari``, ``folded_ari``; demo with PPI tokens): Louvain finds
      the planted modules, and folding to ``n_tokens`` keeps each as its own token (ARI ≥ ``LOUVAIN_ARI_MIN``,
      ``FOLDED_ARI_MIN``; null 0, the ARI of random token labels).
    * ``rna.probe_embedding`` (``probe_r2``): a linear probe reads every planted program from the CLS embedding
      (worst program's R² ≥ ``PROBE_R2_MIN``; null 0, a probe predicting the mean).
    * ``rna.probe_vs_raw`` (``probe_r2``, ``probe_r2_raw``): the embedding's mean R² minus that of 20 raw-expression
      PCs is at least ``-PROBE_GAP_MAX``; null: minus the raw PCs' mean R² (an embedding that carries nothing).
    * ``rna.probe_tokens_vs_raw`` (``probe_r2_tokens`` too): the same for the concatenated gene-token outputs,
      within ``TOKENS_GAP_MAX``.
    """
    from ..claims import check

    claims = []
    if "louvain_ari" in metrics:
        claims.append(check(
            "rna.louvain_ari", "Louvain on the PPI graph finds the planted modules as communities (before folding)",
            metrics["louvain_ari"], at_least=LOUVAIN_ARI_MIN, null=0.0, null_name="random token labels",
            units="module genes"))
    if "folded_ari" in metrics:
        k = int(metrics["n_tokens"])
        claims.append(check(
            "rna.folded_ari", f"Folding to K = {k} tokens (the {k - 1} largest communities plus a rest token, as the "
            "paper does) keeps each planted module as its own token",
            metrics["folded_ari"], at_least=FOLDED_ARI_MIN, null=0.0, null_name="random token labels",
            units="module genes"))
    embedding = pd.Series(metrics.get("probe_r2", {}), dtype=float)
    raw = pd.Series(metrics.get("probe_r2_raw", {}), dtype=float)
    if len(embedding):
        claims.append(check(
            "rna.probe_embedding", "A linear probe reads every planted program from the encoder's embedding "
            f"(cross-validated R² of the worst program ≥ {PROBE_R2_MIN:g})", embedding.min(), at_least=PROBE_R2_MIN,
            null=0.0, null_name="probe predicting the mean", units=f"{len(embedding)} programs"))
    if len(embedding) and len(raw):
        claims.append(check(
            "rna.probe_vs_raw", "The encoder's embedding predicts the planted programs nearly as well as 20 principal "
            f"components of the raw expression (mean R² within {PROBE_GAP_MAX:g} of theirs)",
            embedding.mean() - raw.mean(), at_least=-PROBE_GAP_MAX, null=-raw.mean(),
            null_name="embedding without information (R² 0)", units=f"mean over {len(embedding)} programs"))
    tokens = pd.Series(metrics.get("probe_r2_tokens", {}), dtype=float)
    if len(tokens) and len(raw):
        claims.append(check(
            "rna.probe_tokens_vs_raw", "The encoder's gene-token outputs carry the planted programs almost as "
            f"linearly as 20 raw-expression PCs (mean R² within {TOKENS_GAP_MAX:g} of theirs)",
            tokens.mean() - raw.mean(), at_least=-TOKENS_GAP_MAX, null=-raw.mean(),
            null_name="features without information (R² 0)", units=f"mean over {len(tokens)} programs"))
    return claims
