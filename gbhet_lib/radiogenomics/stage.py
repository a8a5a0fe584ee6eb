"""Chapter 8 (imaging traits from expression, Smedley et al. 2020) on a run directory: what it reads, what it
writes, and each step it runs.

Reads (relative to the run directory)::

    data/cohort/                  pool_clinical.tsv (the VASARI-style traits computed from each pool sample's MRI,
                                  survival, age), truth.json (demo: which program drives which trait)
    data/rna_expression.h5ad      chapter 2's expression (DESeq2-normalised log2, gene symbols)

or your own files (:class:`OwnData`): a traits table (``traits_path``: patients × binary traits) and an expression
table (``expression_path``, read and normalised as chapter 2 does; else chapter 2's expression). The samples with
every trait form the radiogenomic cohort, those without traits the autoencoder cohort (as the paper's patients
without VASARI reads); the masking and enrichment sets are MSigDB Hallmark or your GMT (``gene_sets_path``); with
no planted truth, the claims are those that need none.

Writes::

    models/radiogenomics/<digest>/autoencoder.pt, autoencoder_history.tsv   the autoencoder (pre-trained on the
                                  pool samples outside the radiogenomic cohort)
    models/radiogenomics/<digest>/<trait>.npz, <trait>.json   per trait: out-of-fold scores of every model,
                                  per-fold AUCs (honest and paper-style selection); a finished trait is read back
    metrics/radiogenomics.json, figures/08_*.png

**Protocol.** The pool is split once (seeded) into the radiogenomic cohort (``n_radiogenomic`` patients: expression
and MRI traits) and the autoencoder cohort (the rest: expression only, as the paper's patients without VASARI
annotation). The scaler is fitted on the autoencoder cohort and re-used for the networks, as the paper did; the
comparators scale inside their pipelines. Per trait: stratified K-fold (seed 425, the paper's); the network's
epoch is chosen on an inner validation split of each training fold, the comparators' grids by an inner CV of each
training fold, so no held-out patient takes part in any choice. The paper's selection (the best held-out AUC over
epochs) runs beside it, and the difference is reported as its optimism.

**Interpretation** (per trait, on a network retrained on the whole radiogenomic cohort, as the paper did; its
early stopping on an inner split): gene-set masking with the planted programs' modules and two random sets, and
single-gene masking (top genes by AP); gene saliency with per-patient preranked enrichment of the programs;
radiogenomic traits (trait × enriched program per patient) and their survival (log-rank and age-adjusted Cox,
Benjamini–Hochberg across features).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..io import atomic_path, read_json, write_json_atomic, write_table_atomic
from ..mri.traits import TRAITS
from ..rundir import RunDir

CHAPTER = "08_radiogenomic_traits"
#: how errors about your own files name this chapter
CHAPTER_NAME = "chapter 8"
#: fewest expression samples without traits that the autoencoder is pre-trained on (your own data)
MIN_AUTOENCODER_SAMPLES = 20
#: fewest of a masking set's genes among the modelled genes for the set to be kept (your own gene sets)
MIN_SET_GENES = 5
NETWORK = "network"
RESULTS_VERSION = "3"


@dataclass(frozen=True)
class RadiogenomicSettings:
    """Chapter 8's settings (demo defaults; the paper's in brackets).

    Attributes:
        n_radiogenomic: pool samples in the radiogenomic cohort (the paper's 156–167 per trait); the rest of the
            pool pre-trains the autoencoder (≈ 360 in the paper).
        n_folds: stratified folds (10, the paper's); fold_seed: their seed (425, the paper's).
        traits: the VASARI-style traits modelled (the six of :data:`~gbhet_lib.mri.traits.TRAITS`).
        autoencoder: overrides of :class:`~gbhet_lib.radiogenomics.networks.AutoencoderConfig` (demo: 256-128-64;
            ``AutoencoderConfig.paper()``: 4000-2000-1000, 500 epochs).
        network: overrides of :class:`~gbhet_lib.radiogenomics.networks.ClassifierConfig` for every trait.
        paper_trait_settings: each trait's published dropout and frozen layers
            (:data:`~gbhet_lib.radiogenomics.networks.PAPER_TRAIT_SETTINGS`).
        val_fraction: share of each training fold the honest network early-stops on (0.2).
        paper_selection: also score the paper's selection (best held-out AUC over epochs) and its optimism.
        comparators: the comparator models (:data:`~gbhet_lib.radiogenomics.comparators.COMPARATORS`).
        grid: ``demo`` (small grids) or ``paper`` (the published grids: hours on a CPU).
        inner_folds: folds of the comparators' inner grid search (3).
        n_boot: patient resamples of each AUC interval (1,000).
        permutations: permutations of the per-patient enrichment (paper: 10,000).
        top_genes: single-gene masking genes reported per trait (50).
        min_patients: a radiogenomic trait is kept when its set is enriched in at least this many patients (5).
        n_jobs: processes that fit the outer folds of the network and of each comparator at once (2; the results
            do not depend on it).
    """

    n_radiogenomic: int = 160
    n_folds: int = 10
    fold_seed: int = 425
    traits: tuple[str, ...] = TRAITS
    autoencoder: Mapping[str, Any] = field(default_factory=dict)
    network: Mapping[str, Any] = field(default_factory=dict)
    paper_trait_settings: bool = True
    val_fraction: float = 0.2
    paper_selection: bool = True
    comparators: tuple[str, ...] = ("logit_l1", "logit_l2", "rf", "gb", "svm")
    grid: str = "demo"
    inner_folds: int = 3
    n_boot: int = 1000
    permutations: int = 200
    top_genes: int = 50
    min_patients: int = 5
    n_jobs: int = 2

    def __post_init__(self) -> None:
        from ..config import ConfigError
        from .comparators import COMPARATORS

        problems = []
        if self.n_folds < 2:
            problems.append(f"n_folds={self.n_folds} must be at least 2")
        unknown = sorted(set(self.traits) - set(TRAITS))
        if unknown or not self.traits:
            problems.append(f"traits={list(self.traits)} must be a non-empty subset of {list(TRAITS)}")
        unknown = sorted(set(self.comparators) - set(COMPARATORS))
        if unknown:
            problems.append(f"comparators {unknown} are not among {list(COMPARATORS)}")
        if self.grid not in ("demo", "paper"):
            problems.append(f"grid={self.grid!r} must be 'demo' or 'paper'")
        if not 0 < self.val_fraction < 0.5:
            problems.append(f"val_fraction={self.val_fraction} must be in (0, 0.5)")
        if self.n_boot < 100 or self.permutations < 10 or self.top_genes < 1 or self.min_patients < 1:
            problems.append("n_boot must be >= 100, permutations >= 10, top_genes and min_patients >= 1")
        if problems:
            raise ConfigError("chapter 8 settings: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(autoencoder=dict(self.autoencoder), network=dict(self.network), traits=list(self.traits),
                   comparators=list(self.comparators))
        return out


# ------------------------------------------------------------------------------------------------ inputs
@dataclass(frozen=True)
class RadiogenomicInputs:
    """The chapter's data.

    Attributes:
        samples: (n,) the radiogenomic cohort's pool sample ids; ae_samples: the autoencoder cohort's.
        genes: (G,) gene symbols (HE2RNA's non-zero-median filter over the pool, as chapter 7).
        x, x_ae: (n, G) and (n_ae, G) float32 log2 expression (unscaled).
        labels: samples × traits int (0/1), computed from the MRI.
        clinical: samples × (os_days, os_event, age_years); no columns with your own data.
        digest: 12 hex digits identifying the inputs.
        reading: with your own files, what the reader decided (table, step, decision); else None.
    """

    samples: list[str]
    ae_samples: list[str]
    genes: list[str]
    x: np.ndarray
    x_ae: np.ndarray
    labels: pd.DataFrame
    clinical: pd.DataFrame
    digest: str
    reading: pd.DataFrame | None = None


def split_pool(samples: Sequence[str], n_radiogenomic: int, seed: int) -> tuple[list[str], list[str]]:
    """(radiogenomic cohort, autoencoder cohort): a seeded draw of ``n_radiogenomic`` samples and the rest, each
    sorted; a clear error when the pool is too small to leave an autoencoder cohort."""
    samples = sorted(samples)
    if not 20 <= n_radiogenomic <= len(samples) - 20:
        raise ValueError(f"n_radiogenomic={n_radiogenomic} must leave at least 20 of the {len(samples)} pool samples "
                         "with traits on each side (the trait models and the autoencoder); lower n_radiogenomic or "
                         "make the cohort with a larger pool (chapter 1's n_pool)")
    chosen = set(np.random.default_rng(seed).choice(len(samples), size=n_radiogenomic, replace=False).tolist())
    return ([s for i, s in enumerate(samples) if i in chosen], [s for i, s in enumerate(samples) if i not in chosen])


def prepare_inputs(run: str | Path | RunDir, cohort: Any, settings: RadiogenomicSettings = RadiogenomicSettings(),
                   seed: int = 0) -> RadiogenomicInputs:
    """The radiogenomic and autoencoder cohorts' expression, the traits and survival (a clear error naming the
    missing trait column or sample and the fix)."""
    from ..expression_from_images.stage import expressed_genes
    from ..rna.stage import read_expression

    run = RunDir.of(run)
    clinical = cohort.pool_clinical
    columns = [f"trait_{t}" for t in settings.traits]
    absent = [c for c in columns if c not in clinical.columns]
    if absent:
        raise ValueError(f"{cohort.root}/pool_clinical.tsv lacks {absent}: the traits come from the MRI (chapter 1 "
                         "with an MRI for every pool sample); remake the cohort or choose traits among "
                         f"{[c[6:] for c in clinical.columns if c.startswith('trait_')]}")
    known = clinical.index[clinical[columns].notna().all(axis=1).to_numpy()]
    samples, ae_samples = split_pool(list(known), settings.n_radiogenomic, seed)
    genes, _ = expressed_genes(cohort, list(known))
    adata = read_expression(run)
    missing = sorted(set(known) - set(adata.obs_names))[:3]
    if missing:
        raise ValueError(f"{run.expression} lacks pool samples {missing}: rerun chapter 2 on this cohort "
                         f"(gbhet run --run-dir {run.root} --only 02_rna_encoding --force)")
    genes = [g for g in genes if g in set(adata.var_names)]
    x = np.asarray(adata[samples, genes].X, dtype=np.float32)
    x_ae = np.asarray(adata[ae_samples, genes].X, dtype=np.float32)
    labels = clinical.loc[samples, columns].astype(int)
    labels.columns = list(settings.traits)
    survival = clinical.loc[samples, [c for c in ("os_days", "os_event", "age_years") if c in clinical.columns]]
    return _inputs(samples, ae_samples, genes, x, x_ae, labels, survival)


def _inputs(samples: list[str], ae_samples: list[str], genes: list[str], x: np.ndarray, x_ae: np.ndarray,
            labels: pd.DataFrame, clinical: pd.DataFrame, reading: pd.DataFrame | None = None) -> RadiogenomicInputs:
    """The inputs with their digest (samples, genes, labels and both matrices)."""
    key = json.dumps({"samples": samples, "ae": ae_samples, "genes": genes,
                      "labels": labels.to_numpy().tolist()}, sort_keys=True)
    digest = hashlib.sha256(key.encode() + x.tobytes() + x_ae.tobytes()).hexdigest()[:12]
    return RadiogenomicInputs(samples, ae_samples, genes, x, x_ae, labels, clinical, digest, reading)


# ------------------------------------------------------------------------------------------------ your own data
@dataclass(frozen=True)
class OwnData:
    """Chapter 8's bring-your-own parameters (the notebook's names; None: the cohort of chapters 1–2).

    Attributes:
        traits_path: patients × binary traits (:func:`~gbhet_lib.data.user_tables.read_trait_table`; a column per
            trait of ``traits``, named as the trait or ``trait_<name>``); ``traits_id_column``: its id column.
        expression_path: your expression, read and normalised as chapter 2 does (``expression_values``,
            ``orientation``, ``expression_columns``, ``sample_column``, ``aggregate_samples``); None: chapter 2's.
        gene_sets_path: a GMT of the masking and enrichment sets; None: MSigDB Hallmark.
    """

    traits_path: str | None = None
    expression_path: str | None = None
    expression_values: str = "counts"
    orientation: str = "auto"
    expression_columns: str | None = None
    sample_column: str | None = None
    aggregate_samples: str = "mean"
    traits_id_column: str | None = None
    gene_sets_path: str | None = None

    def __post_init__(self) -> None:
        from ..config import ConfigError

        if self.expression_path is not None and self.traits_path is None:
            raise ConfigError(f"chapter 8: expression_path={self.expression_path!r} is set but traits_path is not; "
                              "set `traits_path=` in chapter 8's parameters to your traits table (patients × 0/1 "
                              "traits), or leave expression_path out to model the cohort's traits")

    @property
    def given(self) -> bool:
        """Whether your own traits are modelled (else the cohort's, computed from its MRI)."""
        return self.traits_path is not None


def load_inputs(run: str | Path | RunDir, config: Any, cohort: Any, settings: RadiogenomicSettings,
                own: OwnData = OwnData(), seed: int = 0) -> RadiogenomicInputs:
    """The chapter's inputs: the cohort's (:func:`prepare_inputs`) or, with ``own.traits_path``, yours
    (:func:`own_inputs`)."""
    if own.given:
        return own_inputs(run, config, settings, own)
    return prepare_inputs(run, cohort, settings, seed)


def own_inputs(run: str | Path | RunDir, config: Any, settings: RadiogenomicSettings,
               own: OwnData) -> RadiogenomicInputs:
    """Your traits on your expression (or chapter 2's): the samples with every trait of ``settings.traits``
    are the radiogenomic cohort, those without any trait the autoencoder cohort; genes with a non-zero median
    count (counts) or every gene (normalised values). ``reading`` holds what the reader decided."""
    from ..data.user_tables import read_trait_table, report_table

    values, counts, expression_report = _own_expression(run, config, own)
    traits = read_trait_table(own.traits_path, list(values.index), list(settings.traits),
                              traits_id_column=own.traits_id_column, chapter=CHAPTER_NAME)
    samples = sorted(traits.index[traits.notna().all(axis=1).to_numpy()])
    ae_samples = sorted(set(values.index) - set(traits.dropna(how="all").index))
    _check_own_cohorts(samples, ae_samples, traits, settings, own.traits_path)
    modelled = values.loc[samples + ae_samples]
    genes = list(modelled.columns[(modelled.median() > 0).to_numpy()]) if counts else list(modelled.columns)
    labels = traits.loc[samples].astype(int)
    x = values.loc[samples, genes].to_numpy(dtype=np.float32)
    x_ae = values.loc[ae_samples, genes].to_numpy(dtype=np.float32)
    reading = report_table(expression_report, traits.attrs["report"]).set_index(["table", "step"])
    return _inputs(samples, ae_samples, genes, x, x_ae, labels, pd.DataFrame(index=samples), reading)


def _own_expression(run: str | Path | RunDir, config: Any, own: OwnData) -> tuple[pd.DataFrame, bool, Any]:
    """(samples × genes log2 expression, whether it came from counts, the reader's report or None)."""
    from ..rna.stage import load_expression, read_expression

    if own.expression_path is None:
        adata = read_expression(run)
        values = pd.DataFrame(np.asarray(adata.X, dtype=np.float64), index=adata.obs_names, columns=adata.var_names)
        return values, bool(np.isfinite(adata.obs["size_factor"]).any()), None
    rna, _, _ = load_expression(RunDir.of(run), config, own.expression_path, own.expression_values,
                                orientation=own.orientation, expression_columns=own.expression_columns,
                                sample_column=own.sample_column, aggregate_samples=own.aggregate_samples,
                                chapter=CHAPTER_NAME)
    return rna.values, own.expression_values == "counts", rna.reading


def _check_own_cohorts(samples: list[str], ae_samples: list[str], traits: pd.DataFrame,
                       settings: RadiogenomicSettings, path: str | Path) -> None:
    """Enough samples without traits for the autoencoder, and of each class of each trait for the folds."""
    from ..data.user_tables import UserTableError

    if len(ae_samples) < MIN_AUTOENCODER_SAMPLES:
        raise UserTableError(
            f"{path}: {len(ae_samples)} of the expression's samples have no traits; the autoencoder is pre-trained "
            f"on samples without traits (the paper's patients without VASARI reads) and needs at least "
            f"{MIN_AUTOENCODER_SAMPLES}. Fix: add expression samples without trait reads to `expression_path`, or "
            "leave some samples' traits empty in the file.")
    for trait in settings.traits:
        classes = traits.loc[samples, trait].value_counts()
        if len(classes) < 2 or classes.min() < settings.n_folds:
            told = ", ".join(f"{int(k)}: {n}" for k, n in classes.items())
            raise UserTableError(
                f"{path}: trait {trait!r} has too few samples of a class among the {len(samples)} with every trait "
                f"(class: samples {told or 'none'}); stratified folds need at least trait_folds={settings.n_folds} "
                "of each class. Fix: set "
                f"`trait_folds=` lower or drop {trait!r} from `traits=` in chapter 8's parameters.")


def masking_sets(cohort: Any, genes: Sequence[str], config: Any = None,
                 gene_sets_path: str | Path | None = None) -> dict[str, list[str]]:
    """The masking and enrichment sets: the planted programs' modules (:func:`program_sets`) or, without a
    cohort (your own traits), MSigDB Hallmark or your GMT restricted to ``genes`` (sets with at least
    ``MIN_SET_GENES`` of them), each with the two random control sets."""
    if cohort is not None:
        return program_sets(cohort, genes)
    from ..rna.stage import gene_sets_for

    present = set(genes)
    sets = {name: [g for g in members if g in present]
            for name, members in gene_sets_for(None, gene_sets_path, config).items()}
    return program_sets(None, genes, modules={k: v for k, v in sets.items() if len(v) >= MIN_SET_GENES})


def cohort_name(cohort: Any, profile: str) -> str:
    """How the published comparison names the data: the cohort's pool, or your data."""
    return "your expression and traits" if cohort is None else f"{cohort.kind} pool ({profile})"


def trait_prevalence(inputs: RadiogenomicInputs) -> pd.DataFrame:
    """Per trait: patients with the trait, without, and the share (the AUC's chance level is 0.5 whatever it is)."""
    y = inputs.labels
    return pd.DataFrame({"positive": y.sum(), "negative": (1 - y).sum(), "share": y.mean().round(3)})


# ------------------------------------------------------------------------------------------------ models
def model_folder(run: RunDir, inputs: RadiogenomicInputs, settings: RadiogenomicSettings, seed: int) -> Path:
    """``models/radiogenomics/<digest>/``: one folder per inputs, settings and seed (a change trains afresh)."""
    chosen = {k: v for k, v in settings.to_dict().items() if k != "n_jobs"}  # n_jobs changes no result
    blob = json.dumps({"inputs": inputs.digest, "settings": chosen, "seed": seed,
                       "version": RESULTS_VERSION}, sort_keys=True, default=str)
    return run.models / "radiogenomics" / hashlib.sha256(blob.encode()).hexdigest()[:10]


def ae_scaler(inputs: RadiogenomicInputs) -> Any:
    """The paper's scaler: a StandardScaler fitted on the autoencoder cohort (no radiogenomic patient)."""
    from sklearn.preprocessing import StandardScaler

    return StandardScaler().fit(inputs.x_ae.astype(np.float64))


def train_autoencoder(folder: Path, inputs: RadiogenomicInputs, settings: RadiogenomicSettings,
                      seed: int) -> tuple[Any, pd.DataFrame]:
    """The autoencoder pre-trained on the autoencoder cohort (scaled by :func:`ae_scaler`); read back when
    ``folder`` holds it."""
    import torch

    from .networks import AutoencoderConfig, GeneAutoencoder
    from .training import fit_autoencoder

    config = AutoencoderConfig(**{"seed": seed, **dict(settings.autoencoder)})
    weights, history_path = folder / "autoencoder.pt", folder / "autoencoder_history.tsv"
    if weights.exists() and history_path.exists():
        model = GeneAutoencoder.from_config(len(inputs.genes), config)
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        return model.eval(), pd.read_csv(history_path, sep="\t")
    x = ae_scaler(inputs).transform(inputs.x_ae.astype(np.float64)).astype(np.float32)
    model, history = fit_autoencoder(x, config)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(weights) as tmp:
        torch.save(model.state_dict(), tmp)
    write_table_atomic(history_path, history, index=False)
    return model, history


def classifier_config(trait: str, settings: RadiogenomicSettings, seed: int) -> Any:
    """The network of ``trait``: the demo sizes, its published dropout and frozen layers (when
    ``paper_trait_settings``), then ``settings.network``'s overrides."""
    from .networks import PAPER_TRAIT_SETTINGS, ClassifierConfig

    values: dict[str, Any] = {"seed": seed}
    if settings.paper_trait_settings:
        dropout, frozen = PAPER_TRAIT_SETTINGS[trait]
        values.update(dropout=dropout, frozen_layers=frozen)
    values.update(settings.network)
    if "hidden" in settings.autoencoder and "hidden" not in settings.network:
        values["hidden"] = tuple(settings.autoencoder["hidden"])
    return ClassifierConfig(**values)


def evaluate_trait(folder: Path, trait: str, inputs: RadiogenomicInputs, ae: Any, scaler: Any,
                   settings: RadiogenomicSettings, seed: int) -> dict[str, Any]:
    """Out-of-fold scores of the network and every comparator for one trait, with per-fold AUCs; read back from
    ``folder/<trait>.npz`` when finished (resumable per trait)."""
    from .crossval import cross_validated_comparator, cross_validated_network, fold_aucs, stratified_folds

    path, meta_path = folder / f"{trait}.npz", folder / f"{trait}.json"
    if path.exists() and meta_path.exists():
        with np.load(path) as stored:
            scores = {k[len("oof_"):]: stored[k] for k in stored.files if k.startswith("oof_")}
            folds = stored["folds"]
        return {"scores": scores, "folds": folds, **read_json(meta_path)}
    y = inputs.labels[trait].to_numpy()
    folds = stratified_folds(y, settings.n_folds, settings.fold_seed, name=f"trait {trait!r}")
    net = cross_validated_network(inputs.x, y, folds, ae, classifier_config(trait, settings, seed),
                                  settings.val_fraction, seed, settings.paper_selection, scaler, settings.n_jobs)
    scores = {NETWORK: net["oof_logits"].astype(np.float64)}
    for name in settings.comparators:
        scores[name] = cross_validated_comparator(name, inputs.x, y, folds, settings.grid, seed,
                                                  settings.inner_folds, settings.n_jobs)
    meta = {"fold_auc": {m: fold_aucs(y, s, folds).tolist() for m, s in scores.items()},
            "fold_auc_paper": np.asarray(net["fold_auc_paper"]).tolist(),
            "honest_auc_fold_mean": net["honest_auc"], "paper_auc_fold_mean": net["paper_auc"],
            "optimism": net["optimism"], "best_epoch_honest": np.asarray(net["best_epoch_honest"]).tolist(),
            "best_epoch_paper": np.asarray(net["best_epoch_paper"]).tolist()}
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(meta_path, meta)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, folds=folds, **{f"oof_{m}": s for m, s in scores.items()})
    return {"scores": scores, "folds": folds, **meta}


def auc_table(results: Mapping[str, Mapping[str, Any]], inputs: RadiogenomicInputs, n_boot: int,
              seed: int) -> pd.DataFrame:
    """One row per trait and model: ``auc`` (pooled out-of-fold), ``auc_low``/``auc_high`` (patient bootstrap),
    ``auc_fold_mean`` (the paper's summary: the mean over folds), and for the network ``auc_paper_selection``
    (the paper's fold mean of the best held-out AUC over epochs) and ``optimism``; for each comparator the
    network's lead over it (``network_minus``, paired bootstrap interval)."""
    from .crossval import auc_difference_ci, auc_with_ci

    rows = []
    for trait, r in results.items():
        y = inputs.labels[trait].to_numpy()
        for model, scores in r["scores"].items():
            auc, (low, high) = auc_with_ci(y, scores, n_boot, seed)
            row = {"trait": trait, "model": model, "auc": auc, "auc_low": low, "auc_high": high,
                   "auc_fold_mean": float(np.nanmean(r["fold_auc"][model]))}
            if model == NETWORK:
                row.update(auc_paper_selection=r["paper_auc_fold_mean"], optimism=r["optimism"])
            else:
                diff, (d_low, d_high) = auc_difference_ci(y, r["scores"][NETWORK], scores, n_boot, seed)
                row.update(network_minus=diff, network_minus_low=d_low, network_minus_high=d_high)
            rows.append(row)
    return pd.DataFrame(rows).set_index(["trait", "model"])


# ------------------------------------------------------------------------------------------------ interpretation
def program_sets(cohort: Any, genes: Sequence[str], seed: int = 504,
                 modules: Mapping[str, Sequence[str]] | None = None) -> dict[str, list[str]]:
    """The masking and enrichment sets: each planted program's module (demo truth), or ``modules`` when given,
    and two random sets of 100 and 200 genes outside every module (the paper's controls; smaller when fewer genes
    are left)."""
    from ..interpret.radiogenomics import random_gene_sets

    source = cohort.truth.modules if modules is None else modules
    modules = {p: [g for g in m if g in set(genes)] for p, m in source.items()}
    in_modules = {g for m in modules.values() for g in m}
    left = sum(g not in in_modules for g in dict.fromkeys(genes))
    sizes = sorted({min(size, left) for size in (100, 200)} - {0})
    return {**modules, **random_gene_sets(genes, sizes, exclude=sorted(in_modules), seed=seed)}


def driving_program(cohort: Any, trait: str) -> str | None:
    """The program that drives ``trait`` in the demo's truth (None: a negative control, e.g. ``focal``, or no
    truth at all: ``cohort`` None, your own traits)."""
    if cohort is None:
        return None
    info = cohort.truth.imaging_traits.get(trait, {})
    program = info.get("program")
    return None if not program else str(program).split()[0]


def interpret_trait(trait: str, inputs: RadiogenomicInputs, ae: Any, scaler: Any, sets: Mapping[str, list[str]],
                    settings: RadiogenomicSettings, seed: int) -> dict[str, Any]:
    """Retrain the network on the whole radiogenomic cohort (early stopping on a stratified inner split), then
    gene-set masking, single-gene masking and saliency with per-patient enrichment of ``sets``."""
    from sklearn.model_selection import train_test_split

    from ..interpret.radiogenomics import (enrichment_matrix, gene_saliency, mask_gene_sets, mask_single_genes,
                                           model_score_fn, per_patient_enrichment)
    from .training import fit_classifier

    y = inputs.labels[trait].to_numpy()
    x = scaler.transform(inputs.x.astype(np.float64)).astype(np.float32)
    train, val = train_test_split(np.arange(len(y)), test_size=settings.val_fraction, stratify=y,
                                  random_state=seed)
    model, _ = fit_classifier(x[train], y[train], x[val], y[val], classifier_config(trait, settings, seed), ae)
    score = model_score_fn(model)
    masking = mask_gene_sets(score, x, y, inputs.genes, sets)
    single = mask_single_genes(score, x, y, inputs.genes)
    saliency = gene_saliency(model, x)
    enrichment = per_patient_enrichment(saliency, inputs.genes, sets, settings.permutations, seed=seed,
                                        patients=inputs.samples)
    enriched = enrichment_matrix(enrichment)
    return {"masking": masking, "single": single, "saliency": saliency, "enrichment": enrichment,
            "enriched": enriched}


def interpretation_table(interpreted: Mapping[str, Mapping[str, Any]], cohort: Any, sets: Mapping[str, list[str]],
                         top: int) -> pd.DataFrame:
    """Per trait: its driving program (truth), the top masking set and its AUC, the driving program's rank among
    the sets, the share of the top single-masking genes in the driving program's module (and its base rate), and
    the sets enriched in the most patients' saliency."""
    from ..interpret.radiogenomics import share_in_set

    rows = []
    for trait, r in interpreted.items():
        program = driving_program(cohort, trait)
        masking = r["masking"].reset_index(drop=True)
        ranked = list(masking["set"])
        enriched_share = r["enriched"].mean().sort_values(ascending=False)
        control = "none (negative control)" if cohort is not None else "unknown (your traits: no planted truth)"
        row = {"trait": trait, "driving_program": program or control,
               "masking_top_set": ranked[0], "masking_top_auc": float(masking["auc"].iloc[0]),
               "driving_rank": ranked.index(program) + 1 if program in ranked else None,
               "saliency_top_sets": list(enriched_share.index[:3]),
               "saliency_top_share": float(enriched_share.iloc[0]) if len(enriched_share) else float("nan")}
        if program:
            share = share_in_set(list(r["single"]["gene"]), sets[program], top=(top,))
            row.update(single_top_share=share[f"top_{top}"], single_base_rate=share["base_rate"])
        rows.append(row)
    return pd.DataFrame(rows).set_index("trait")


def radiogenomic_survival(interpreted: Mapping[str, Mapping[str, Any]], inputs: RadiogenomicInputs,
                          settings: RadiogenomicSettings) -> pd.DataFrame:
    """Radiogenomic traits (trait × set enriched in ≥ ``min_patients`` patients) and their overall survival:
    log-rank and age-adjusted Cox per feature, BH across features (the honest path; the paper's stepwise
    selection is :func:`~gbhet_lib.interpret.radiogenomic_survival.stepwise_cox`)."""
    from ..interpret.radiogenomic_survival import trait_survival
    from ..interpret.radiogenomics import radiogenomic_traits

    features = radiogenomic_traits({t: r["enriched"] for t, r in interpreted.items()}, settings.min_patients)
    clinical = inputs.clinical.loc[features.index]
    if features.empty or "os_days" not in clinical:
        return pd.DataFrame()
    covariates = clinical[["age_years"]] if "age_years" in clinical else None
    return trait_survival(clinical["os_days"], clinical["os_event"], features.astype(int), covariates)


def stepwise_survival(interpreted: Mapping[str, Mapping[str, Any]], inputs: RadiogenomicInputs,
                      settings: RadiogenomicSettings) -> tuple[list[str], Any]:
    """The paper's stepwise AIC Cox selection (an option, shown with its caveat): base covariate age, candidates
    the imaging traits and every radiogenomic trait; returns (selected candidates, the final CoxResult or None).
    Its p-values are not valid after the selection (see
    :func:`~gbhet_lib.interpret.radiogenomic_survival.stepwise_cox`)."""
    from ..interpret.radiogenomic_survival import stepwise_cox
    from ..interpret.radiogenomics import radiogenomic_traits

    clinical = inputs.clinical
    if "os_days" not in clinical:
        return [], None
    features = radiogenomic_traits({t: r["enriched"] for t, r in interpreted.items()}, settings.min_patients)
    candidates = pd.concat([inputs.labels.add_prefix("trait_"), features.astype(float)], axis=1).astype(float)
    base = clinical[["age_years"]] if "age_years" in clinical else None
    return stepwise_cox(clinical["os_days"], clinical["os_event"], base, candidates)


# ------------------------------------------------------------------------------------------------ real data
def wants_real_data(option: bool | str, profile: str, mirror: Any) -> tuple[bool, str]:
    """Whether the chapter runs the paper's subtype validation on real TCGA data, and why.

    ``option``: ``"auto"`` (run when a data mirror is set, or on the reference, full and stemri profiles, which
    fetch real data anyway), ``True`` (run, downloading about 2 MB when there is no mirror) or ``False``."""
    if option not in ("auto", True, False):
        raise ValueError(f"real_data={option!r} must be 'auto', True or False")
    if option is True:
        return True, "real_data=True"
    if option is False:
        return False, "real_data=False: the subtype validation on real TCGA data is skipped"
    if profile != "demo" or mirror is not None:
        return True, f"real_data='auto' with {'a data mirror' if mirror is not None else f'profile {profile!r}'}"
    return False, ("real_data='auto' on the demo profile without a data mirror: the subtype validation on real "
                   "TCGA data is skipped (set real_data=True to download its ~2 MB, or point $GBHET_DATA_MIRROR "
                   "at a data mirror)")


def real_data_validation(config: Any, settings: Any, seed: int, n_jobs: int = 1) -> dict[str, Any]:
    """The paper's validation on real data (:mod:`~gbhet_lib.radiogenomics.subtypes`): both expression sets, the
    subtype networks' cross-validated accuracy and probes, the VASARI rows with expression, and the claims."""
    from . import subtypes

    datasets, drg = subtypes.subtype_datasets(config.data_mirror, config.cache_dir)
    results = subtypes.validate_subtypes(datasets, settings, seed, n_jobs)
    vasari = subtypes.vasari_illustration(drg)
    loo = subtypes.loo_prevalence_auc(vasari.drop(columns="subtype"))
    return {"datasets": datasets, "results": results, "vasari": vasari, "loo": loo,
            "claims": subtypes.subtype_claims(results, datasets),
            "metrics": {**subtypes.subtype_metrics(results, datasets, settings, vasari, loo),
                        "n_vasari_rows_total": int(len(drg.vasari_binary))}}


# ------------------------------------------------------------------------------------------------ figures
def auc_figure(aucs: pd.DataFrame) -> Any:
    """Pooled out-of-fold AUC with its patient-bootstrap 95 % interval, per trait (x) and model (colour); the
    dashed line is chance (0.5); a cross marks the network's AUC under the paper's epoch selection."""
    from matplotlib.figure import Figure

    traits = list(dict.fromkeys(aucs.index.get_level_values("trait")))
    models = list(dict.fromkeys(aucs.index.get_level_values("model")))
    fig = Figure(figsize=(9, 3.8), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(models)
    for k, model in enumerate(models):
        rows = aucs.xs(model, level="model").reindex(traits)
        x = np.arange(len(traits)) + (k - (len(models) - 1) / 2) * width
        ax.errorbar(x, rows["auc"], yerr=[rows["auc"] - rows["auc_low"], rows["auc_high"] - rows["auc"]], fmt="o",
                    ms=4, capsize=2, label=model)
        if model == NETWORK and "auc_paper_selection" in rows:
            ax.plot(x, rows["auc_paper_selection"], "x", color="k", ms=6,
                    label="network, the paper's selection (fold mean)")
    ax.axhline(0.5, ls="--", color="grey", lw=1)
    ax.set_xticks(np.arange(len(traits)), traits)
    ax.set_ylabel("ROC AUC (out of fold, 95 % CI over patients)")
    ax.set_ylim(0.2, 1.0)
    ax.legend(frameon=False, fontsize=7, ncol=4, loc="lower left")
    return fig


def masking_figure(interpreted: Mapping[str, Mapping[str, Any]], max_sets: int = 20) -> Any:
    """Heat map of gene-set masking AUC: traits (rows) × sets (columns), the model fed one set's genes only; of
    many sets (Hallmark on your data), the ``max_sets`` with the highest AUC on any trait, the random controls
    always."""
    from matplotlib.figure import Figure

    table = pd.DataFrame({t: r["masking"].set_index("set")["auc"] for t, r in interpreted.items()}).T
    if table.shape[1] > max_sets:
        controls = [c for c in table.columns if str(c).startswith("random_")]
        best = table.drop(columns=controls).max().nlargest(max_sets - len(controls)).index
        table = table[[c for c in table.columns if c in set(best) or c in controls]]
    fig = Figure(figsize=(1.1 * table.shape[1] + 2, 0.5 * table.shape[0] + 1.5), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(table.to_numpy(float), cmap="RdBu_r", vmin=0.2, vmax=0.8, aspect="auto")
    ax.set_xticks(range(table.shape[1]), table.columns, rotation=45, ha="right")
    ax.set_yticks(range(table.shape[0]), table.index)
    for (i, j), v in np.ndenumerate(table.to_numpy(float)):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7)
    fig.colorbar(image, ax=ax, label="AUC keeping only this set's genes")
    return fig


# ------------------------------------------------------------------------------------------------ claims and metrics
def radiogenomic_claims(aucs: pd.DataFrame, interpretation: pd.DataFrame, interpreted: Mapping[str, Any],
                        cohort: Any) -> list[Any]:
    """The chapter's checked statements, each worded by what was measured: per trait whether the network predicts
    it above chance (the interval over patients) or, for the negative control, at chance; its lead over the best
    comparator; whether masking names the driving program; the single-gene masking share in the driving module
    against its base rate; the share of patients whose saliency is enriched for it against the 5 % FDR; and the
    paper's selection's optimism."""
    from ..claims import check

    claims = []
    traits = list(dict.fromkeys(aucs.index.get_level_values("trait")))
    for trait in traits:
        net = aucs.loc[(trait, NETWORK)]
        program = driving_program(cohort, trait)
        told = f"AUC {net['auc']:.2f} [{net['auc_low']:.2f}, {net['auc_high']:.2f}] over patients; chance 0.5"
        above = net["auc_low"] > 0.5
        if program or cohort is None:  # a driven trait, or yours (no truth says it is a control)
            claims.append(check(f"radiogenomics.{trait}.network_above_chance", f"The network predicts {trait} from "
                                f"expression ({told})", net["auc"], interval=(net["auc_low"], net["auc_high"]),
                                interval_at_least=0.5, null=0.5, null_name="chance") if above else
                          check(f"radiogenomics.{trait}.network_not_above_chance", f"The network does not predict "
                                f"{trait} better than chance ({told})", net["auc_low"], at_most=0.5, null=0.5,
                                null_name="chance"))
        else:
            claims.append(check(f"radiogenomics.{trait}.control_at_chance", f"{trait}, which no program drives (a "
                                f"negative control), is predicted at chance ({told})", net["auc_low"], at_most=0.5,
                                null=0.5, null_name="chance") if not above else
                          check(f"radiogenomics.{trait}.control_above_chance", f"{trait}, which no program drives, "
                                f"is predicted above chance ({told}): a leak or a correlated program",
                                net["auc"], interval=(net["auc_low"], net["auc_high"]), interval_at_least=0.5,
                                null=0.5, null_name="chance"))
        others = aucs.loc[trait].drop(index=NETWORK)
        if len(others):
            best = str(others["auc"].idxmax())
            row = others.loc[best]
            lead, low, high = row["network_minus"], row["network_minus_low"], row["network_minus_high"]
            told = f"{lead:+.3f} [{low:+.3f}, {high:+.3f}] AUC over patients; the paper reports > +0.10"
            ident = f"radiogenomics.{trait}.network_vs_{best}"
            if low > 0:
                claims.append(check(ident + ".ahead", f"The network beats the best comparator ({best}) on {trait} "
                                    f"({told})", lead, interval=(low, high), interval_at_least=0.0, null=0.0,
                                    null_name="no difference"))
            elif high < 0:
                claims.append(check(ident + ".behind", f"The network trails the best comparator ({best}) on {trait} "
                                    f"({told})", high, at_most=0.0, null=0.0, null_name="no difference"))
            else:
                claims.append(check(ident + ".no_difference", f"The network and the best comparator ({best}) are not "
                                    f"told apart on {trait} ({told})", low, at_most=0.0, null=0.0,
                                    null_name="no difference"))
        if not program or trait not in interpretation.index:
            continue
        info = interpretation.loc[trait]
        rank = int(info["driving_rank"]) if pd.notna(info["driving_rank"]) else 99
        n_sets = len(interpreted[trait]["masking"])
        told = f"top set {info['masking_top_set']} (AUC {info['masking_top_auc']:.2f}); {program} ranks {rank} of {n_sets}"
        claims.append(check(f"radiogenomics.{trait}.masking_names.{program}", f"Gene-set masking names {program} as "
                            f"what drives the network's {trait} ({told})", rank, at_most=1, null=(n_sets + 1) / 2,
                            null_name="mean rank of a random set") if rank == 1 else
                      check(f"radiogenomics.{trait}.masking_misses.{program}", f"Gene-set masking does not name "
                            f"{program} first for {trait} ({told})", rank, at_least=2, null=(n_sets + 1) / 2,
                            null_name="mean rank of a random set"))
        share, base = info["single_top_share"], info["single_base_rate"]
        told = f"{share:.2f} of the top single-masking genes are {program} genes; base rate {base:.3f}"
        claims.append(check(f"radiogenomics.{trait}.single_genes_in.{program}", f"Single-gene masking ranks "
                            f"{program}'s genes first for {trait} ({told})", share, at_least=base + 1e-9, null=base,
                            null_name="base rate") if share > base else
                      check(f"radiogenomics.{trait}.single_genes_not_in.{program}", f"Single-gene masking does not "
                            f"favour {program}'s genes for {trait} ({told})", share, at_most=base, null=base,
                            null_name="base rate"))
        enriched = interpreted[trait]["enriched"]
        share = float(enriched[program].mean()) if program in enriched else 0.0
        told = f"{program} enriched in {share:.1%} of patients' saliency; 5 % is the false-discovery level"
        claims.append(check(f"radiogenomics.{trait}.saliency_enriches.{program}", f"Saliency is enriched for {program} "
                            f"in more patients than false discoveries explain for {trait} ({told})", share,
                            at_least=0.05 + 1e-9, null=0.05, null_name="FDR level") if share > 0.05 else
                      check(f"radiogenomics.{trait}.saliency_rarely_enriches.{program}", f"Saliency is rarely "
                            f"enriched for {program} for {trait} ({told})", share, at_most=0.05, null=0.05,
                            null_name="FDR level"))
    if NETWORK in aucs.index.get_level_values("model") and "optimism" in aucs:
        optimism = float(aucs.xs(NETWORK, level="model")["optimism"].mean())
        if np.isfinite(optimism):
            told = f"{optimism:+.3f} AUC on average over {len(traits)} traits"
            claims.append(check("radiogenomics.paper_selection_optimism", "Choosing the epoch on the scored fold, as "
                                f"the paper did, inflates the network's AUC ({told})", optimism, at_least=0.0,
                                null=0.0, null_name="no inflation") if optimism > 0 else
                          check("radiogenomics.paper_selection_no_optimism", "Choosing the epoch on the scored fold "
                                f"does not inflate the AUC here ({told})", optimism, at_most=0.0, null=0.0,
                                null_name="no inflation"))
    return claims


def radiogenomic_metrics(aucs: pd.DataFrame, interpretation: pd.DataFrame, survival: pd.DataFrame,
                         inputs: RadiogenomicInputs, settings: RadiogenomicSettings, ae_history: pd.DataFrame,
                         profile: str, claims: Sequence[Any], real_data: Mapping[str, Any] | None = None,
                         stepwise: Sequence[str] = ()) -> dict[str, Any]:
    """``metrics/radiogenomics.json``: per trait and model ``auc``, ``auc_ci``, ``auc_fold_mean``; the network's
    ``auc_paper_selection`` and ``optimism``; each comparator's ``network_minus`` with its interval; per trait
    ``masking_top_set``, ``saliency_top_sets`` and the rest of the interpretation; the survival of the
    radiogenomic traits and the paper's stepwise selection; with ``real_data`` (:func:`real_data_validation`)
    the ``subtypes`` block and its headline keys ``subtype_masking_recovery``, ``verhaak_share_top20``,
    ``verhaak_share_top50``, ``verhaak_base_rate`` at the top level; the cohort, settings and claims."""
    from ..claims import as_metrics

    traits: dict[str, Any] = {}
    for (trait, model), row in aucs.iterrows():
        entry = {"auc": row["auc"], "auc_ci": [row["auc_low"], row["auc_high"]], "auc_fold_mean": row["auc_fold_mean"]}
        if model == NETWORK:
            entry.update(auc_paper_selection=row.get("auc_paper_selection"), optimism=row.get("optimism"))
        else:
            entry.update(network_minus=row["network_minus"],
                         network_minus_ci=[row["network_minus_low"], row["network_minus_high"]])
        traits.setdefault(trait, {})[model] = entry
    for trait, row in interpretation.iterrows():
        traits[trait].update({k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                              for k, v in row.to_dict().items()})
    prevalence = trait_prevalence(inputs)
    best_ae = ae_history.loc[ae_history["epoch"] == ae_history["best_epoch"].iloc[0]] if len(ae_history) else None
    out = {"profile": profile, "n_patients": len(inputs.samples), "n_autoencoder": len(inputs.ae_samples),
           "n_genes": len(inputs.genes), "traits": traits, "prevalence": prevalence.to_dict(orient="index"),
           "autoencoder_val_r2": None if best_ae is None or best_ae.empty else float(best_ae["val_r2"].iloc[0]),
           "survival": survival.head(20).to_dict(orient="records") if len(survival) else [],
           "n_radiogenomic_features": int(len(survival)), "stepwise_selected": list(stepwise),
           "settings": settings.to_dict()}
    if real_data is not None:
        block = real_data["metrics"]
        out["subtypes"] = block
        out.update({k: block.get(k) for k in ("subtype_masking_recovery", "verhaak_share_top20",
                                              "verhaak_share_top50", "verhaak_base_rate")})
    out["claims"] = as_metrics(list(claims) + (list(real_data["claims"]) if real_data is not None else []))
    return out


#: Smedley et al.'s cross-validated AUCs (reference spec §3.6; the network's is the fold mean of the best held-out
#: AUC over epochs, the comparators' the best grid point's mean test AUC)
PUBLISHED_AUC: dict[str, dict[str, float]] = {
    "enhancing": {"network": 0.722, "gb": 0.511, "rf": 0.542, "svm": 0.571, "logit": 0.538},
    "ncet": {"network": 0.826, "gb": 0.722, "rf": 0.721, "svm": 0.667, "logit": 0.617},
    "necrosis": {"network": 0.751, "gb": 0.638, "rf": 0.627, "svm": 0.607, "logit": 0.553},
    "edema": {"network": 0.784, "gb": 0.673, "rf": 0.647, "svm": 0.613, "logit": 0.517},
    "infiltrative": {"network": 0.780, "gb": 0.492, "rf": 0.545, "svm": 0.617, "logit": 0.573},
    "focal": {"network": 0.849, "gb": 0.728, "rf": 0.697, "svm": 0.694, "logit": 0.650},
}


def published_table(aucs: pd.DataFrame, cohort_name: str, own_data: bool = False) -> pd.DataFrame:
    """Per trait: the paper's network and best comparator AUC and margin beside ours (honest network, the network
    under the paper's selection, best comparator), and why they are not comparable (``own_data``: your traits
    and expression, not the synthetic ones)."""
    ours_are = ("other patients, genes and trait reads" if own_data else "synthetic traits computed from rendered "
                "MRI, 2,500 genes of RNA-seq counts")
    rows = []
    for trait in dict.fromkeys(aucs.index.get_level_values("trait")):
        ours = aucs.loc[trait]
        paper = PUBLISHED_AUC.get(trait, {})
        others = ours.drop(index=NETWORK)
        best = str(others["auc"].idxmax()) if len(others) else None
        paper_best = max((v for k, v in paper.items() if k != NETWORK), default=float("nan"))
        rows.append({"trait": trait, "paper network": paper.get(NETWORK), "paper best comparator": paper_best,
                     "paper margin": round(paper.get(NETWORK, float("nan")) - paper_best, 3),
                     "our network": round(float(ours.loc[NETWORK, "auc"]), 3),
                     "our network, paper's selection": round(float(ours.loc[NETWORK, "auc_paper_selection"]), 3),
                     "our best comparator": f"{best} {others.loc[best, 'auc']:.3f}" if best else None,
                     "our margin": round(float(ours.loc[NETWORK, "auc"] - others["auc"].max()), 3) if best else None,
                     "why not comparable": f"{cohort_name}: {ours_are} (paper: ~160 TCGA patients, 12,042 "
                                           "microarray genes, a neuroradiologist's VASARI reads)"})
    return pd.DataFrame(rows).set_index("trait")


def verdict(aucs: pd.DataFrame, interpretation: pd.DataFrame, cohort: Any) -> str:
    """The chapter's closing paragraph, written from the numbers."""
    parts = []
    for trait in dict.fromkeys(aucs.index.get_level_values("trait")):
        net = aucs.loc[(trait, NETWORK)]
        others = aucs.loc[trait].drop(index=NETWORK)
        program = driving_program(cohort, trait)
        driver = ("your trait" if cohort is None else
                  "driven by " + program if program else "no driving program: a negative control")
        line = f"**{trait}** ({driver}): network AUC {net['auc']:.2f} [{net['auc_low']:.2f}, {net['auc_high']:.2f}]"
        if len(others):
            best = str(others["auc"].idxmax())
            row = others.loc[best]
            line += (f", best comparator {best} {row['auc']:.2f} (network − {best} {row['network_minus']:+.2f} "
                     f"[{row['network_minus_low']:+.2f}, {row['network_minus_high']:+.2f}])")
        if np.isfinite(net.get("auc_paper_selection", float("nan"))):
            line += f"; the paper's selection would report {net['auc_paper_selection']:.2f}"
        if trait in interpretation.index:
            line += f"; masking's top set: {interpretation.loc[trait, 'masking_top_set']}"
        parts.append(line + ".")
    return " ".join(parts)
