"""Chapter 7 (expression from images) on a run directory: what it reads, what it writes, and each step it runs.

Reads (relative to the run directory)::

    data/cohort/                       the pool samples with RNA, an MRI (mri.tsv, mri/) and a diagnostic slide
                                       (diagnostic_slides.tsv): the radiogenomic cohort; truth.json (demo)
    data/rna_expression.h5ad           chapter 2's expression (DESeq2-normalised log2, gene symbols): the targets
    models/wsi/encoder.json            chapter 3's trained patch encoder (and its tiling, from its coords files)

Writes::

    features/coords|patches/<sample>-DX1.h5, features/<sample>-DX1.h5   the diagnostic slides tiled as chapter 3
                                       tiles, stored and encoded by chapter 3's encoder
    data/expression_from_images/inputs.h5   targets, folds, slide bags and MRI crops (all a trainer needs: torch,
                                       h5py and numpy only, so the training can run on a GPU machine)
    models/expression/<model>-<digest>/fold<k>/   each deep model's checkpoints per fold (resumable)
    models/expression/<model>-<digest>/oof.npy    out-of-fold predictions of every model
    metrics/expression.json, figures/07_*.png

**Protocol** (both papers', on the same patients and folds): 5-fold patient-level cross-validation; in each
training fold 10 % of the patients are an inner validation split for early stopping (HE2RNA's criterion: the mean
per-gene Pearson r); every patient is predicted once, by the model of the fold that held it out. Per gene, Pearson r
across the held-out predictions, its two-sided p, Holm–Šidák over the genes tested, and the count of genes with
adjusted p < 0.05 and r > 0 (:mod:`gbhet_lib.evaluate.expression`). Models: HE2RNA on the slide's tile features
(:mod:`gbhet_lib.wsi.he2rna`), Farooq et al.'s CNN + transformer on the tumour-centred MRI (:mod:`gbhet_lib.mri.model`),
and a ridge on PCA of each modality's image features (HEST-Benchmark's linear probe).

**Against the truth** (demo): a gene of a program the modality shows may be predicted; a gene of a program it cannot
show (immune and neural for both, mesenchymal for the slides, proliferation for the MRI) is a false positive unless
the programs correlate. The chance level of every count is a null that ignores the signal: the same statistics on
the held-out predictions shuffled across patients.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..io import atomic_path
from ..rundir import RunDir

CHAPTER = "07_expression_from_images"
#: model → the modality whose images it reads
MODELS: dict[str, str] = {"he2rna_wsi": "wsi", "farooq_mri": "mri", "ridge_wsi": "wsi", "ridge_mri": "mri"}
DEEP_MODELS = ("he2rna_wsi", "farooq_mri")
BASELINE_OF = {"he2rna_wsi": "ridge_wsi", "farooq_mri": "ridge_mri"}
MODALITY_NAMES = {"wsi": "slides", "mri": "MRI"}
INPUTS_VERSION = "1"


@dataclass(frozen=True)
class ExpressionSettings:
    """Chapter 7's settings (demo defaults; the papers' in brackets).

    Attributes:
        n_folds, val_fraction: patient-level K-fold and the inner validation share (5 and 0.1, as HE2RNA).
        epochs, patience, batch_size, lr: Adam at a constant rate with early stopping on the validation r
            (HE2RNA: 200 epochs, patience 50, batch 16, 3e-4; the demo trains on ~86 patients a fold, six steps an
            epoch, so it takes 3e-3 and at most 40 epochs to fit two CPU cores: on an inner split of fold 0's
            training patients, 3e-3 reached in 40 epochs what 1e-3 reached in 80).
        min_epochs: no early stop before this many epochs (20; HE2RNA: 0): both models' validation r stays near
            zero for their first epochs, and a noisy early peak on ~10 validation patients ended two of five folds
            at epoch 0 without it.
        he2rna_hidden: the per-tile MLP's hidden sizes ((1024, 1024)); he2rna_ks: the top-k set.
        mri_crop_mm: edge of the tumour-centred cube cut from the MRI (mm; 128 holds the largest demo tumour with its
            oedema); mri_input_size: voxels per edge the model reads (the crop is average-pooled to it: 16 → 8 mm
            voxels on the demo's 4 mm grid; 128 at 1 mm for the published model).
        farooq: overrides of :class:`~gbhet_lib.mri.model.FarooqConfig` (its defaults: the demo's small 3-D model;
            ``FarooqConfig.paper()`` for the published size).
        standardise_targets: the deep models learn each gene z-scored over the patients (their predictions are
            mapped back), so that every gene weighs the same in the MSE; HE2RNA learns the raw log values (False).
            Pearson r is unchanged by a per-gene affine map, and the map's two numbers per gene cannot carry a
            held-out patient's place among the others.
        ridge_components: PCA components of the ridge baselines (HEST-Benchmark: 256).
        mri_ridge_grid: the MRI crop is average-pooled to this many voxels per edge before PCA (the ridge's image
            features: 4 sequences × grid³ intensities).
    """

    n_folds: int = 5
    val_fraction: float = 0.1
    epochs: int = 40
    patience: int = 8
    min_epochs: int = 20
    batch_size: int = 16
    lr: float = 3e-3
    he2rna_hidden: tuple[int, ...] = (128, 128)
    he2rna_ks: tuple[int, ...] = (1, 2, 5, 10, 20, 50, 100)
    mri_crop_mm: float = 128.0
    mri_input_size: int = 16
    farooq: Mapping[str, Any] = field(default_factory=dict)
    standardise_targets: bool = True
    ridge_components: int = 256
    mri_ridge_grid: int = 8

    def __post_init__(self) -> None:
        problems = []
        if self.n_folds < 2:
            problems.append(f"n_folds={self.n_folds} must be at least 2")
        if not 0 < self.val_fraction < 0.5:
            problems.append(f"val_fraction={self.val_fraction} must be in (0, 0.5)")
        if self.epochs < 1 or self.patience < 1 or self.batch_size < 1 or not self.lr > 0:
            problems.append("epochs, patience, batch_size must be >= 1 and lr > 0")
        if self.min_epochs < 0:
            problems.append(f"min_epochs={self.min_epochs} must be >= 0 (min_epochs >= epochs: no early stop)")
        if self.mri_input_size % self.mri_ridge_grid:
            problems.append(f"mri_input_size={self.mri_input_size} must be a multiple of "
                            f"mri_ridge_grid={self.mri_ridge_grid}")
        if problems:
            from ..config import ConfigError

            raise ConfigError("chapter 7 settings: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["farooq"] = dict(self.farooq)
        return out


# ------------------------------------------------------------------------------------------------ inputs
@dataclass(frozen=True)
class ExpressionInputs:
    """What every model of the chapter reads, for the n patients of the radiogenomic cohort.

    Attributes:
        samples: (n,) patient (pool sample) ids; genes: (G,) gene symbols kept by the gene filter.
        targets: (n, G) float32, chapter 2's log2 normalised expression.
        folds: (n,) int, the held-out fold of each patient.
        bags: n arrays (tiles_i, D) float32: the diagnostic slide's tile features (chapter 3's encoder).
        mri: (n, 4, S, S, S) float32 tumour-centred crops (T1, T1-Gd, T2, FLAIR), z-scored over the brain.
        gene_filter: how the genes were chosen, in words.
        digest: 16 hex digits identifying the inputs (a model trained on other inputs is not reused).
    """

    samples: list[str]
    genes: list[str]
    targets: np.ndarray
    folds: np.ndarray
    bags: list[np.ndarray]
    mri: np.ndarray
    gene_filter: str
    digest: str

    @property
    def n_patients(self) -> int:
        return len(self.samples)

    def observed(self) -> pd.DataFrame:
        """The targets as a patients × genes table."""
        return pd.DataFrame(self.targets, index=pd.Index(self.samples, name="sample_id"), columns=self.genes)


def radiogenomic_samples(cohort: Any, n_folds: int) -> list[str]:
    """The pool samples with RNA, an MRI and a diagnostic slide; a clear error when there are too few to fold."""
    samples = cohort.imaging_samples()
    if len(samples) < 2 * n_folds:
        raise ValueError(f"the cohort at {cohort.root} has {len(samples)} pool samples with an MRI and a diagnostic "
                         f"slide; {n_folds}-fold cross-validation needs at least {2 * n_folds}. Make the cohort with "
                         "more (chapter 1's n_diagnostic) or lower n_folds.")
    return samples


def expressed_genes(cohort: Any, samples: Sequence[str]) -> tuple[list[str], str]:
    """HE2RNA's gene filter: genes whose median expression over the modelled samples is non-zero.

    On raw counts (demo) the median count over ``samples``; a cohort of centred log values (reference) keeps every
    gene (a median of centred values says nothing about expression). Returns gene symbols and the rule in words.
    """
    symbols = cohort.genes["symbol"]
    if cohort.expression_unit != "raw_counts":
        return list(symbols), "every gene (the expression is centred log values: no non-zero-median filter)"
    counts = cohort.expression_pool[list(samples)]
    counts.index = counts.index.str.split(".").str[0]
    median = counts.median(axis=1)
    kept = median[median > 0].index
    kept_symbols = symbols.reindex(kept).dropna().tolist()
    return kept_symbols, (f"genes with a non-zero median count over the {len(samples)} patients (HE2RNA's filter): "
                          f"{len(kept_symbols)} of {len(symbols)}")


def chapter3_tiling(run: RunDir) -> Any:
    """The :class:`~gbhet_lib.wsi.tiling.TilingConfig` chapter 3 tiled its slides with (read from a coords file)."""
    from ..wsi.stage import WsiEncoderRecord
    from ..wsi.tiling import TilingConfig, read_coords

    record = WsiEncoderRecord.read(run)
    for slide in record.slide_lineage:
        if run.coords_file(slide).exists():
            _, attrs = read_coords(run.coords_file(slide))
            return TilingConfig(**json.loads(attrs["config"]))
    raise FileNotFoundError(f"no tiling file of chapter 3 under {run.coords}: rerun chapter 3 "
                            f"(gbhet run --run-dir {run.root} --only 03_wsi_encoding --force)")


def encode_diagnostic_slides(run: RunDir, cohort: Any, samples: Sequence[str], device: str = "cpu",
                             n_jobs: int = 2) -> dict[str, np.ndarray]:
    """Tile (as chapter 3 did), store and encode (chapter 3's trained encoder) each sample's diagnostic slide.

    Files already made with the current encoder are kept (resumable). Returns sample → (tiles, D) features; a
    slide without a tissue patch is an error naming it.
    """
    from ..wsi.encoder import load_encoder
    from ..wsi.features import extract_slide_features, read_features_h5
    from ..wsi.patch_store import build_patch_store
    from ..wsi.stage import WsiEncoderRecord
    from ..wsi.tiling import tile_slides

    record = WsiEncoderRecord.read(run)
    checkpoint = run.root / record.checkpoint
    table = cohort.diagnostic_slides
    slide_of = {str(s): str(sid) for sid, s in table["sample_id"].items()}
    paths = {s: cohort.diagnostic_slide_path(slide_of[s]) for s in samples}
    report = tile_slides(list(paths.values()), run.coords, chapter3_tiling(run), n_jobs=n_jobs, progress=False)
    failed = report[report["status"] == "failed"]
    if len(failed):
        shown = failed[["slide", "error"]].head(3).to_dict("records")
        raise ValueError(f"diagnostic slides could not be tiled: {shown}")
    encoder = None
    out: dict[str, np.ndarray] = {}
    for sample, path in paths.items():
        name = path.stem
        target = run.features_file(name)
        if not target.exists() or target.stat().st_mtime < checkpoint.stat().st_mtime:
            store = build_patch_store(path, run.coords_file(name), run.patch_store(name))
            encoder = encoder or load_encoder(checkpoint, device)
            extract_slide_features(store, target, encoder, batch_size=256, device=device)
        features, _, _ = read_features_h5(target)
        if len(features) == 0:
            raise ValueError(f"diagnostic slide {path} has no tissue patch at chapter 3's tiling: it cannot be "
                             "encoded; drop the sample from diagnostic_slides.tsv or lower min_tissue_fraction")
        out[sample] = features.astype(np.float32)
    return out


def mri_crops(cohort: Any, samples: Sequence[str], size: int, crop_mm: float = 128.0) -> np.ndarray:
    """(n, 4, size, size, size) float32: each sample's MRI cut to a ``crop_mm`` cube centred on its tumour, z-scored
    over the brain, then average-pooled to ``size`` voxels per edge (the crop's voxel count must be a multiple)."""
    from ..mri.preprocess import tumour_centred_crop

    crops = []
    for sample in samples:
        volume = cohort.read_mri(sample)
        voxels = int(round(crop_mm / float(volume.voxel_mm[0])))
        if voxels % size:
            raise ValueError(f"{sample}: a {crop_mm:g} mm crop is {voxels} voxels of {volume.voxel_mm[0]:g} mm, not a "
                             f"multiple of mri_input_size={size}; choose mri_crop_mm or mri_input_size to match")
        crop = tumour_centred_crop(volume.image, volume.segmentation, voxels)
        f = voxels // size
        crops.append(crop.reshape(crop.shape[0], size, f, size, f, size, f).mean(axis=(2, 4, 6)))
    return np.stack(crops).astype(np.float32)


def cohort_folds(samples: Sequence[str], n_folds: int, seed: int) -> np.ndarray:
    """(n,) the held-out fold of each patient: :func:`~gbhet_lib.evaluate.splits.patient_folds` (one sample a
    patient in this cohort)."""
    from ..evaluate.splits import patient_folds

    folds = np.full(len(samples), -1, dtype=np.int64)
    for k, (_, held) in enumerate(patient_folds(np.asarray(samples), n_folds, seed)):
        folds[held] = k
    return folds


def prepare_inputs(run: str | Path | RunDir, cohort: Any, settings: ExpressionSettings = ExpressionSettings(),
                   seed: int = 0, device: str = "cpu", n_jobs: int = 2) -> ExpressionInputs:
    """Gather the chapter's inputs and write them to ``data/expression_from_images/inputs.h5`` (atomic).

    An existing file made from the same samples, genes, folds, encoder and crop size is read back instead.
    """
    from ..rna.stage import read_expression

    run = RunDir.of(run)
    samples = radiogenomic_samples(cohort, settings.n_folds)
    genes, gene_filter = expressed_genes(cohort, samples)
    folds = cohort_folds(samples, settings.n_folds, seed)
    from ..wsi.stage import WsiEncoderRecord

    key = {"version": INPUTS_VERSION, "samples": samples, "genes": genes, "folds": folds.tolist(),
           "encoder": WsiEncoderRecord.read(run).checkpoint, "mri_input_size": settings.mri_input_size,
           "mri_crop_mm": settings.mri_crop_mm}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    if run.expression_inputs.exists():
        inputs = read_inputs(run.expression_inputs)
        if inputs.digest == digest:
            return inputs
    adata = read_expression(run)
    missing = sorted(set(samples) - set(adata.obs_names))[:3] + sorted(set(genes) - set(adata.var_names))[:3]
    if missing:
        raise ValueError(f"{run.expression} lacks {missing}: rerun chapter 2 on this cohort "
                         f"(gbhet run --run-dir {run.root} --only 02_rna_encoding --force)")
    targets = np.asarray(adata[samples, genes].X, dtype=np.float32)
    features = encode_diagnostic_slides(run, cohort, samples, device, n_jobs)
    inputs = ExpressionInputs(samples=list(samples), genes=list(genes), targets=targets, folds=folds,
                              bags=[features[s] for s in samples],
                              mri=mri_crops(cohort, samples, settings.mri_input_size, settings.mri_crop_mm),
                              gene_filter=gene_filter, digest=digest)
    write_inputs(run.expression_inputs, inputs)
    return inputs


def write_inputs(path: str | Path, inputs: ExpressionInputs) -> Path:
    """The inputs as one HDF5 (bags concatenated with offsets), written atomically."""
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in inputs.bags])]).astype(np.int64)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        h5["samples"] = np.array(inputs.samples, dtype=h5py.string_dtype())
        h5["genes"] = np.array(inputs.genes, dtype=h5py.string_dtype())
        h5["targets"], h5["folds"] = inputs.targets, inputs.folds
        h5["bag_features"], h5["bag_offsets"] = np.concatenate(inputs.bags), offsets
        h5.create_dataset("mri", data=inputs.mri, compression="gzip", compression_opts=1)
        h5.attrs["gene_filter"], h5.attrs["digest"] = inputs.gene_filter, inputs.digest
    return path


def read_inputs(path: str | Path) -> ExpressionInputs:
    """Read :func:`write_inputs`' file (a clear error when it is not there)."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run chapter 7's input step first (prepare_inputs, or "
                                "gbhet run --only 07_expression_from_images)")
    with h5py.File(path, "r") as h5:
        offsets = h5["bag_offsets"][()]
        features = h5["bag_features"][()]
        return ExpressionInputs(
            samples=[s.decode() if isinstance(s, bytes) else str(s) for s in h5["samples"][()]],
            genes=[g.decode() if isinstance(g, bytes) else str(g) for g in h5["genes"][()]],
            targets=h5["targets"][()], folds=h5["folds"][()],
            bags=[features[a:b] for a, b in zip(offsets[:-1], offsets[1:])], mri=h5["mri"][()],
            gene_filter=str(h5.attrs["gene_filter"]), digest=str(h5.attrs["digest"]))


# ------------------------------------------------------------------------------------------------ models
def model_folder(run: RunDir, model: str, inputs: ExpressionInputs, settings: ExpressionSettings,
                 seed: int) -> Path:
    """``models/expression/<model>-<digest>``: the digest covers the inputs, the settings and the seed."""
    blob = json.dumps({"inputs": inputs.digest, "settings": settings.to_dict(), "seed": seed, "model": model},
                      sort_keys=True, default=str)
    return run.expression_models / f"{model}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def ridge_features(inputs: ExpressionInputs, modality: str, grid: int) -> np.ndarray:
    """The ridge baselines' image features: per patient the mean and the max of its tile features (slides), or
    the MRI crop average-pooled to ``grid``³ voxels per sequence (MRI), flattened."""
    if modality == "wsi":
        return np.stack([np.concatenate([b.mean(axis=0), b.max(axis=0)]) for b in inputs.bags]).astype(np.float32)
    n, c, s = inputs.mri.shape[:3]
    f = s // grid
    pooled = inputs.mri.reshape(n, c, grid, f, grid, f, grid, f).mean(axis=(3, 5, 7))
    return pooled.reshape(n, -1).astype(np.float32)


def _train_config(settings: ExpressionSettings, seed: int, device: str) -> Any:
    from ..training.expression import ExpressionTrainConfig

    return ExpressionTrainConfig(epochs=settings.epochs, patience=settings.patience, min_epochs=settings.min_epochs,
                                 batch_size=settings.batch_size,
                                 lr=settings.lr, seed=seed, device=device)


def model_targets(inputs: ExpressionInputs, settings: ExpressionSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the targets the deep models learn, per-gene mean, per-gene sd): z-scored over the patients when
    ``settings.standardise_targets`` (genes constant over the patients keep sd 1), else the raw targets (mean 0,
    sd 1); a prediction p maps back to ``p * sd + mean``."""
    y = inputs.targets.astype(np.float32)
    if not settings.standardise_targets:
        return y, np.zeros(y.shape[1], np.float32), np.ones(y.shape[1], np.float32)
    mean, sd = y.mean(axis=0), y.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0).astype(np.float32)
    return ((y - mean) / sd).astype(np.float32), mean.astype(np.float32), sd


def deep_model_parts(model: str, inputs: ExpressionInputs,
                     settings: ExpressionSettings) -> tuple[Any, Any, Any]:
    """(make_model(train_rows) → nn.Module, inputs(rows) → model arguments, the training steps' augmentation or
    None) of a deep model: the MRI crops are flipped at random along each axis
    (:func:`~gbhet_lib.mri.preprocess.augment`);
    the slide's tile features are not augmented (HE2RNA's k drawn per batch is its regulariser)."""
    import torch

    targets = model_targets(inputs, settings)[0]
    nonnegative = bool(targets.min() >= 0)
    if model == "he2rna_wsi":
        from ..wsi.he2rna import HE2RNA, pad_bags

        x, mask = pad_bags(inputs.bags)

        def make(train_rows: np.ndarray) -> Any:
            return HE2RNA(x.shape[1], targets.shape[1], hidden=tuple(settings.he2rna_hidden),
                          ks=tuple(settings.he2rna_ks), nonnegative=nonnegative,
                          gene_means=torch.from_numpy(targets[train_rows].mean(axis=0)))

        return make, lambda rows: (x[rows], mask[rows]), None
    if model == "farooq_mri":
        from ..mri.model import FarooqConfig, FarooqNet
        from ..mri.preprocess import augment

        config = FarooqConfig(**{**dict(settings.farooq), "input_size": settings.mri_input_size})
        crops = torch.from_numpy(inputs.mri)

        def make(train_rows: np.ndarray) -> Any:
            return FarooqNet(config, targets.shape[1], gene_means=torch.from_numpy(targets[train_rows].mean(axis=0)))

        return make, lambda rows: (crops[rows],), lambda args: (augment(args[0]),)
    raise ValueError(f"model {model!r} is not one of the deep models {DEEP_MODELS}")


def train_models(run: str | Path | RunDir, inputs: ExpressionInputs,
                 settings: ExpressionSettings = ExpressionSettings(),
                 seed: int = 0, device: str = "cpu", models: Sequence[str] = tuple(MODELS),
                 progress: bool = True) -> dict[str, dict[str, Any]]:
    """Out-of-fold predictions of each model: model → {"predictions" (n, G), "history" (deep models: per fold and
    epoch), "folder", "seconds", "parameters"}. Finished folds and models are read back (resumable)."""
    import time

    from ..training.expression import cross_validated_predictions
    from ..training.ridge_baseline import ridge_cv_predictions

    run = RunDir.of(run)
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        raise ValueError(f"models {unknown} are not chapter 7's ({sorted(MODELS)})")
    out: dict[str, dict[str, Any]] = {}
    for model in models:
        folder = model_folder(run, model, inputs, settings, seed)
        folder.mkdir(parents=True, exist_ok=True)
        began = time.perf_counter()
        history, parameters = pd.DataFrame(), None
        if model in DEEP_MODELS:
            from ..mri.model import count_parameters

            make, args, transform = deep_model_parts(model, inputs, settings)
            parameters = count_parameters(make(np.arange(inputs.n_patients)))
        oof = folder / "oof.npy"
        if oof.exists():
            predictions = np.load(oof)
            if (folder / "history.tsv").exists():
                history = pd.read_csv(folder / "history.tsv", sep="\t")
        elif model in DEEP_MODELS:
            targets, mean, sd = model_targets(inputs, settings)
            predictions, history = cross_validated_predictions(
                make, args, targets, inputs.folds, val_fraction=settings.val_fraction,
                config=_train_config(settings, seed, device), checkpoint_root=folder, progress=progress,
                train_transform=transform)
            predictions = predictions * sd + mean
            history.to_csv(folder / "history.tsv", sep="\t", index=False)
        else:
            features = ridge_features(inputs, MODELS[model], settings.mri_ridge_grid)
            predictions = ridge_cv_predictions(features, inputs.targets, inputs.folds,
                                               n_components=settings.ridge_components)
        if not oof.exists():
            with atomic_path(oof, suffix=".npy") as tmp:
                np.save(tmp, predictions)
        out[model] = {"predictions": np.asarray(predictions, dtype=np.float32), "history": history,
                      "folder": run.relative(folder), "seconds": time.perf_counter() - began,
                      "parameters": parameters}
    return out


# ------------------------------------------------------------------------------------------------ evaluation
def gene_programs(cohort: Any, genes: Sequence[str]) -> dict[str, str]:
    """Gene symbol → the planted program whose module holds it (genes of no module are left out)."""
    wanted = set(genes)
    return {g: program for program, members in cohort.truth.modules.items() for g in members if g in wanted}


def oracle_power(inputs: ExpressionInputs, cohort: Any, alpha: float = 0.05) -> dict[str, Any]:
    """Could these data show the effect? Per modality, how many module genes an oracle that knew the programs the
    modality shows (its true activities, read from the truth) would declare significant at this n: the per-gene r of
    the best linear read-out of those activities (least squares on all patients: an upper bound), with the
    chapter's Holm–Šidák over all tested genes. Empty when the cohort has no planted activity for the samples."""
    from ..evaluate.expression import expression_summary, per_gene_correlation

    activity = cohort.truth.activity
    if activity.empty or not set(inputs.samples) <= set(activity.index):
        return {}
    observed = inputs.observed()
    out = {}
    for modality in ("wsi", "mri"):
        programs = cohort.truth.seen_by(modality)
        if not programs:
            continue
        a = np.column_stack([np.ones(inputs.n_patients), activity.loc[inputs.samples, programs].to_numpy()])
        fitted = a @ np.linalg.lstsq(a, observed.to_numpy(), rcond=None)[0]
        table = per_gene_correlation(pd.DataFrame(fitted, index=observed.index, columns=observed.columns), observed,
                                     alpha=alpha)
        out[modality] = {"programs": programs,
                         "n_significant": int(expression_summary(table, inputs.n_patients)["n_significant"])}
    return out


def evaluate_model(predictions: np.ndarray, inputs: ExpressionInputs, cohort: Any, modality: str,
                   permutations: int, n_boot: int, seed: int, alpha: float = 0.05) -> dict[str, Any]:
    """The papers' statistics and the truth scoring of one model's out-of-fold predictions.

    Returns {"table": per-gene r/p/adjusted p/significant, "summary": the metrics row (see
    :func:`expression_metrics`), "programs": per-program counts}."""
    from ..evaluate import expression as ev

    observed = inputs.observed()
    predicted = pd.DataFrame(predictions, index=observed.index, columns=observed.columns)
    table = ev.per_gene_correlation(predicted, observed, alpha=alpha)
    summary = dict(ev.expression_summary(table, inputs.n_patients))
    rng = np.random.default_rng(seed)
    null = ev.permutation_null_counts(predicted, observed, permutations, rng)
    summary.update({"null_n_significant_mean": float(np.mean(null)),
                    "null_n_significant_q95": float(np.quantile(null, 0.95, method="higher")),
                    "null_permutations": int(permutations),
                    "median_r_ci": list(ev.bootstrap_median_r(predicted, observed, n_boot, rng)),
                    "fold_mean_r": float(np.nanmean(ev.per_fold_mean_r(
                        predicted, observed, pd.Series(inputs.folds, index=observed.index))))})
    gene_program = gene_programs(cohort, inputs.genes)
    seen = cohort.truth.seen_by(modality)
    programs = pd.DataFrame()
    if gene_program:
        programs = ev.program_counts(table, gene_program, seen)
        summary.update(ev.truth_summary(table, gene_program, seen))
    return {"table": table, "summary": summary, "programs": programs}


def evaluate_models(trained: Mapping[str, Mapping[str, Any]], inputs: ExpressionInputs, cohort: Any,
                    permutations: int = 200, n_boot: int = 200, seed: int = 0) -> dict[str, dict[str, Any]]:
    """:func:`evaluate_model` for every trained model (the same permutations and resamples for each)."""
    return {model: evaluate_model(t["predictions"], inputs, cohort, MODELS[model], permutations, n_boot, seed)
            for model, t in trained.items()}


def program_table(results: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Significant genes per program (rows) and model (columns), with whether each modality shows the program."""
    columns = {m: r["programs"]["n_significant"] for m, r in results.items() if len(r["programs"])}
    if not columns:
        return pd.DataFrame()
    table = pd.DataFrame(columns)
    sizes = next(r["programs"]["n_genes"] for r in results.values() if len(r["programs"]))
    return table.assign(n_genes=sizes)


def program_figure(programs: pd.DataFrame, seen: pd.DataFrame) -> Any:
    """Bars of significant genes per program (x) and model (colour); a hatched bar is a program the model's
    modality cannot show (a negative control). ``programs``: :func:`program_table`; ``seen``: programs × models."""
    from matplotlib.figure import Figure

    models = [m for m in programs.columns if m != "n_genes"]
    fig = Figure(figsize=(8, 3.6), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(len(models), 1)
    x = np.arange(len(programs))
    for k, model in enumerate(models):
        bars = ax.bar(x + (k - (len(models) - 1) / 2) * width, programs[model], width, label=model)
        for bar, shown in zip(bars, seen[model].reindex(programs.index).fillna(False)):
            if not shown:
                bar.set_hatch("//")
                bar.set_alpha(0.6)
    ax.set_xticks(x, [f"{p}\n({int(n)} genes)" for p, n in programs["n_genes"].items()])
    ax.set_ylabel("significant genes (Holm–Šidák)")
    ax.set_title("What each model predicts, by planted program (hatched: the modality cannot show it)")
    ax.legend(frameon=False, fontsize=8)
    return fig


def comparison_table(results: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per model: the papers' count, the field's other conventions, the null and the truth scoring."""
    keys = ["n_patients", "n_genes_tested", "n_significant", "null_n_significant_q95", "n_significant_visible",
            "n_significant_invisible", "median_r", "median_r_ci", "mean_r_top50", "median_r_top1000", "n_r_above_0_4",
            "min_significant_r", "fold_mean_r"]
    rows = {m: {k: r["summary"].get(k) for k in keys} for m, r in results.items()}
    table = pd.DataFrame(rows).T
    table.insert(0, "modality", [MODALITY_NAMES[MODELS[m]] for m in table.index])
    return table


def published_table(results: Mapping[str, Mapping[str, Any]], cohort_name: str) -> pd.DataFrame:
    """Our counts beside the published ones (:func:`~gbhet_lib.evaluate.expression.published_comparison`)."""
    from ..evaluate.expression import published_comparison

    ours = {m: {"modality": MODALITY_NAMES[MODELS[m]], "cohort": cohort_name, **{
        k: r["summary"][k] for k in ("n_patients", "n_genes_tested", "n_significant")}}
        for m, r in results.items() if m in DEEP_MODELS}
    return published_comparison(ours)


# ------------------------------------------------------------------------------------------------ claims and metrics
def expression_claims(results: Mapping[str, Mapping[str, Any]], cohort: Any) -> list[Any]:
    """Chapter 7's checked statements, each worded by what was measured (as chapters 5 and 6): per model whether it
    predicts more genes than the shuffled null allows, whether its significant genes come from the programs its
    modality shows rather than the others, and whether the invisible programs stay at the null; per deep model its
    rank against its ridge baseline; per modality-specific program (seen by one modality only) whether the modality
    that shows it finds it and the other does not."""
    from ..claims import check

    claims = []
    for model, r in results.items():
        s = r["summary"]
        n, q95 = s["n_significant"], s["null_n_significant_q95"]
        told = f"{n} significant genes; shuffled predictions give {s['null_n_significant_mean']:.2f} (95 % ≤ {q95:g})"
        claims.append(check(f"expression.{model}.above_null", f"{model} predicts genes significantly ({told})", n,
                            at_least=q95 + 1, null=q95, null_name="shuffled 95th percentile", units="genes")
                      if n > q95 else
                      check(f"expression.{model}.not_above_null", f"{model} predicts no more genes than shuffled "
                            f"predictions do ({told})", n, at_most=q95, null=q95,
                            null_name="shuffled 95th percentile", units="genes"))
        if "n_significant_visible" not in s:
            continue
        vis, inv = s["n_significant_visible"], s["n_significant_invisible"]
        told = f"{vis} from the programs the {MODALITY_NAMES[MODELS[model]]} show, {inv} from the others"
        claims.append(check(f"expression.{model}.visible_over_invisible", f"{model}'s significant genes come more "
                            f"from what its images show than from what they cannot ({told})", vis - inv,
                            at_least=1, null=0.0, null_name="no difference", units="genes") if vis > inv else
                      check(f"expression.{model}.visible_not_over_invisible", f"{model}'s significant genes do not "
                            f"come more from what its images show ({told})", vis - inv, at_most=0, null=0.0,
                            null_name="no difference", units="genes"))
        told = (f"{inv} invisible-program genes significant; shuffled predictions give ≤ {q95:g} genes in all 95 % "
                "of the time")
        claims.append(check(f"expression.{model}.invisible_at_null", f"The programs {model}'s images cannot show stay "
                            f"at the null ({told})", inv, at_most=q95, null=q95,
                            null_name="shuffled 95th percentile", units="genes") if inv <= q95 else
                      check(f"expression.{model}.invisible_above_null", f"{model} predicts genes of programs its "
                            f"images cannot show beyond the null ({told}): through correlated programs or leakage",
                            inv, at_least=q95 + 1e-9, null=q95, null_name="shuffled 95th percentile", units="genes"))
    for deep, ridge in BASELINE_OF.items():
        if deep in results and ridge in results:
            a, b = results[deep]["summary"]["n_significant"], results[ridge]["summary"]["n_significant"]
            told = f"{a} vs {b} significant genes"
            claims.append(check(f"expression.{deep}.vs_ridge", f"{deep} finds more genes than its ridge baseline "
                                f"({told})", a - b, at_least=1, null=0.0, null_name="equal", units="genes")
                          if a > b else
                          check(f"expression.{deep}.not_above_ridge", f"{deep} finds no more genes than its ridge "
                                f"baseline ({told})", a - b, at_most=0, null=0.0, null_name="equal", units="genes"))
    claims.extend(_specific_program_claims(results, cohort))
    return claims


def _specific_program_claims(results: Mapping[str, Mapping[str, Any]], cohort: Any) -> list[Any]:
    from ..claims import check

    claims = []
    wsi, mri = set(cohort.truth.seen_by("wsi")), set(cohort.truth.seen_by("mri"))
    for model in DEEP_MODELS:
        r = results.get(model)
        if r is None or not len(r["programs"]):
            continue
        mine = wsi if MODELS[model] == "wsi" else mri
        other = mri if MODELS[model] == "wsi" else wsi
        q95 = r["summary"]["null_n_significant_q95"]
        for program in sorted((mine - other) | (other - mine)):
            if program not in r["programs"].index:
                continue
            n = int(r["programs"].loc[program, "n_significant"])
            shows = program in mine
            where = "shows" if shows else "cannot show"
            told = f"{n} of its genes significant; shuffled ≤ {q95:g}"
            if shows:
                claims.append(check(f"expression.{model}.finds.{program}", f"{model} finds {program}, which its "
                                    f"images show and the other modality's do not ({told})", n, at_least=q95 + 1,
                                    null=q95, null_name="shuffled 95th percentile", units="genes") if n > q95 else
                              check(f"expression.{model}.misses.{program}", f"{model} does not find {program}, "
                                    f"although its images show it ({told})", n, at_most=q95, null=q95,
                                    null_name="shuffled 95th percentile", units="genes"))
            else:
                claims.append(check(f"expression.{model}.blind_to.{program}", f"{model} does not predict {program}, "
                                    f"which its images {where} ({told})", n, at_most=q95, null=q95,
                                    null_name="shuffled 95th percentile", units="genes") if n <= q95 else
                              check(f"expression.{model}.leaks.{program}", f"{model} predicts {program} although "
                                    f"its images {where} ({told})", n, at_least=q95 + 1e-9, null=q95,
                                    null_name="shuffled 95th percentile", units="genes"))
    return claims


METRIC_KEYS = ("n_genes_tested", "n_significant", "n_significant_visible", "n_significant_invisible", "median_r",
               "mean_r_top50", "min_significant_r", "n_patients")


def expression_metrics(results: Mapping[str, Mapping[str, Any]], trained: Mapping[str, Mapping[str, Any]],
                       inputs: ExpressionInputs, settings: ExpressionSettings, power: Mapping[str, Any],
                       profile: str, device: str, claims: Sequence[Any]) -> dict[str, Any]:
    """``metrics/expression.json``: per model the issue's keys (:data:`METRIC_KEYS`) and everything else measured,
    beside the cohort, the power, the settings and the claims."""
    from ..claims import as_metrics
    from ..evaluate.expression import min_significant_r

    out: dict[str, Any] = {}
    for model, r in results.items():
        s = r["summary"]
        entry = {k: s.get(k) for k in METRIC_KEYS}
        entry.update({k: v for k, v in s.items() if k not in entry})
        if len(r["programs"]):
            entry["programs"] = r["programs"]["n_significant"].astype(int).to_dict()
        t = trained.get(model, {})
        entry.update({"seconds": round(float(t.get("seconds", float("nan"))), 1),  # this call: ~0 when read back
                      "parameters": t.get("parameters"),
                      "folder": t.get("folder")})
        history = t.get("history")
        if isinstance(history, pd.DataFrame) and "best_epoch" in history:
            entry["best_epochs"] = history.groupby("fold")["best_epoch"].max().astype(int).tolist()
            entry["epochs_run"] = history.groupby("fold").size().astype(int).tolist()
            entry["train_seconds"] = round(float(history["train_seconds"].sum()), 1)  # also when read back
        out[model] = entry
    out.update({"profile": profile, "device": device, "n_patients": inputs.n_patients, "n_genes": len(inputs.genes),
                "gene_filter": inputs.gene_filter,
                "min_significant_r": min_significant_r(inputs.n_patients, len(inputs.genes)),
                "oracle_power": dict(power), "settings": settings.to_dict(), "claims": as_metrics(claims)})
    return out


def verdict(results: Mapping[str, Mapping[str, Any]], power: Mapping[str, Any]) -> str:
    """The chapter's closing paragraph, written from the numbers."""
    parts = []
    for model in DEEP_MODELS:
        if model not in results:
            continue
        s = results[model]["summary"]
        ridge = results.get(BASELINE_OF[model], {}).get("summary", {})
        line = (f"**{model}** predicts {s['n_significant']} of {s['n_genes_tested']} genes significantly "
                f"(shuffled null ≤ {s['null_n_significant_q95']:g}), median r {s['median_r']:.2f}")
        if ridge:
            rank = "more than" if s["n_significant"] > ridge["n_significant"] else (
                "as many as" if s["n_significant"] == ridge["n_significant"] else "fewer than")
            line += f"; {rank} its ridge baseline ({ridge['n_significant']})"
        if "n_significant_visible" in s:
            line += (f"; {s['n_significant_visible']} from programs its images show, "
                     f"{s['n_significant_invisible']} from the others")
        modality = MODELS[model]
        if modality in power:
            line += f" (an oracle of those programs would reach {power[modality]['n_significant']})"
        parts.append(line + ".")
    return " ".join(parts)
