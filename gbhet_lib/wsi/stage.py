"""Chapter 3 (WSI encoding) on a run directory: what it reads, what it writes, and each step the chapter runs.

Reads (relative to the run directory; :class:`~gbhet_lib.rundir.RunDir` names every path)::

    data/cohort/                     chapter 1's cohort: slides.tsv (slide_id, lineage_id, slide_file),
                                     lineages.tsv (patient_id), slides/

Writes::

    features/coords/<slide>.h5       tiling: level-0 coords N×2 + attributes (patch size, magnification, µm/px)
    features/patches/<slide>.h5      patch store: every patch once, uint8 (N, S, S, 3), lzf
    models/splits/wsi-<policy>.json  the held-out patches of the triplet training (gbhet_lib.evaluate.splits
                                     format; keys "<slide>:<row in its patch store>", as the fusion pairs)
    models/wsi/simclr-<digest>/      last.pt + history.tsv of the SimCLR pre-training on the training patches
    models/wsi/triplet-<digest>/     last.pt + history.tsv of the triplet training (one folder per settings)
    models/wsi/encoder.json          :class:`WsiEncoderRecord`: what the fusion chapter builds on
    features/<slide>.h5              features N×D + coords N×2 of the trained encoder
    features/real_coords/<slide>.h5  (reference profile) tiling of the manifest's real slides
    metrics/wsi.json, figures/03_*.png

Importing this module needs only numpy and the standard library (plus :mod:`gbhet_lib.rundir`): torch, timm,
h5py, openslide and pandas are imported by the functions that use them, so :class:`WsiEncoderRecord` and
:func:`encoder_factory` load on the GPU machine.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..rundir import RunDir, StageRecord, settings_folder

CHAPTER = "03_wsi_encoding"
#: the split policies chapter 3 may hold validation patches out by (gbhet_lib.evaluate.splits)
SPLIT_POLICIES = ("patch", "slide", "lineage", "patient")


@dataclass(frozen=True)
class WsiEncoderRecord(StageRecord):
    """``models/wsi/encoder.json``: chapter 3's trained patch encoder and the patches it was trained on.

    Attributes:
        checkpoint: the triplet-trained encoder (``last.pt``), relative to the run directory.
        settings: the :class:`~gbhet_lib.wsi.train.TripletConfig` as a dict.
        encoder: ``{"arch", "img_size", "weights_path"}`` (arch ``"demo"`` = the small demo ViT).
        patch_stores: the patch stores (relative paths), one per slide.
        slide_lineage, slide_patient: slide name (the store's ``slide_name``) → lineage id, → patient id.
        split: the split file of the training (relative path), ``split_policy`` and ``val_fraction`` its draw.
        init_source: the starting weights of the triplet training (``random``, ``file:<path>``, ``hub:<arch>``,
            ``checkpoint:<path>`` for the SimCLR pre-trained encoder).
        pretrain: ``{"checkpoint", "settings"}`` of the SimCLR pre-training (:mod:`gbhet_lib.wsi.pretrain`) the
            triplet training started from, or None (none: the paper's start from ``weights_path`` or random).
    """

    STAGE = "wsi"
    CHAPTER = CHAPTER

    checkpoint: str
    settings: dict[str, Any]
    encoder: dict[str, Any]
    patch_stores: list[str]
    slide_lineage: dict[str, str]
    slide_patient: dict[str, str]
    split: str | None = None
    split_policy: str | None = None
    val_fraction: float | None = None
    init_source: str | None = None
    pretrain: dict[str, Any] | None = None

    def problem(self) -> str | None:
        missing = [k for k in ("arch", "img_size", "weights_path") if k not in self.encoder]
        if missing:
            return f"field 'encoder' lacks {missing}"
        unmatched = sorted(set(self.slide_lineage) ^ set(self.slide_patient))
        if unmatched:
            return f"slides {unmatched[:3]} are in only one of 'slide_lineage' and 'slide_patient'"
        return None

    def store_paths(self, run: str | Path | RunDir) -> list[Path]:
        root = RunDir.of(run).root
        return [root / p for p in self.patch_stores]


def encoder_factory(encoder: Mapping[str, Any], start: str | Path | None = None) -> Callable[[], Any]:
    """A function making a fresh patch encoder from a record's ``encoder`` dict (``arch`` ``"demo"``: the small
    demo ViT; else a timm name, with ``weights_path`` when given), or, given ``start``, the encoder of that WSI
    checkpoint (e.g. the SimCLR pre-training's ``last.pt``)."""
    from .encoder import PatchEncoder, demo_encoder, load_encoder

    if start is not None:
        return lambda: load_encoder(start)
    if encoder["arch"] == "demo":
        return lambda: demo_encoder(img_size=encoder["img_size"])
    return lambda: PatchEncoder(encoder["arch"], img_size=encoder["img_size"],
                                weights_path=encoder.get("weights_path"))


# ------------------------------------------------------------------------------------------------ tiling
def slide_paths(cohort: Any) -> dict[str, Path]:
    """Slide name (file stem) → slide file of every slide of the cohort, in the cohort's slide order."""
    paths = [cohort.slide_path(sid) for sid in cohort.slides.index]
    return {Path(p).stem: Path(p) for p in paths}


def slide_units(cohort: Any) -> tuple[dict[str, str], dict[str, str]]:
    """(slide → lineage id, slide → patient id) from the cohort's slide and lineage tables."""
    lineage = {Path(cohort.slide_path(sid)).stem: str(cohort.slides.loc[sid, "lineage_id"])
               for sid in cohort.slides.index}
    patient = {slide: str(cohort.lineages.loc[lid, "patient_id"]) for slide, lid in lineage.items()}
    return lineage, patient


def tile_cohort(run: RunDir, cohort: Any, target_magnification: float, patch_size: int,
                min_tissue_fraction: float, n_jobs: int = 2) -> tuple[Any, dict[str, int]]:
    """Tile every slide of the cohort into ``features/coords/<slide>.h5`` (finished slides are skipped).

    Returns the per-slide report (slide id, patches, status, seconds) and ``{"n_slides", "n_patches"}``.
    """
    from .tiling import TilingConfig, tile_slides

    tiling = TilingConfig(target_magnification=target_magnification, patch_size=patch_size,
                          min_tissue_fraction=min_tissue_fraction)
    paths = slide_paths(cohort)
    report = tile_slides(list(paths.values()), run.coords, tiling, n_jobs=n_jobs, progress=False)
    slide_of = {str(path): slide for slide, path in paths.items()}  # the report names slides, not local paths
    report["slide"] = report["slide"].map(lambda path: slide_of.get(str(path), Path(path).stem))
    return report, {"n_slides": int((report["status"] != "failed").sum()),
                    "n_patches": int(report["patches"].sum())}


# ------------------------------------------------------------------------------------------------ patches
@dataclass(frozen=True, eq=False)
class CohortPatches:
    """Every patch of the cohort's patch stores, with the slide, lineage and patient of each (one per patch).

    ``index`` is the :class:`~gbhet_lib.wsi.patch_store.StoreIndex` (labels: the lineage code, lineages numbered
    in the cohort's order); ``keys`` are ``"<slide>:<row in its store>"``.
    """

    index: Any
    slide: np.ndarray
    lineage: np.ndarray
    patient: np.ndarray
    keys: np.ndarray
    slide_lineage: dict[str, str] = field(default_factory=dict)
    slide_patient: dict[str, str] = field(default_factory=dict)

    @property
    def units(self) -> dict[str, np.ndarray]:
        """The ids a split policy holds out by (see :func:`gbhet_lib.evaluate.splits.draw_split`)."""
        return {"slide": self.slide, "lineage": self.lineage, "patient": self.patient}

    def dataset(self, rows: np.ndarray | None = None) -> Any:
        from .patch_store import PatchStoreDataset

        return PatchStoreDataset(self.index, rows)


def build_patch_stores(run: RunDir, cohort: Any) -> CohortPatches:
    """Read every tiled patch once into ``features/patches/<slide>.h5`` (kept when up to date) and index them,
    labelled by the lineage of their slide."""
    import h5py

    from .patch_store import build_patch_store, index_stores

    paths = slide_paths(cohort)
    stores = [build_patch_store(path, run.coords_file(slide), run.patch_store(slide)) for slide, path in paths.items()]
    slide_lineage, slide_patient = slide_units(cohort)
    lineage_code = {str(lid): k for k, lid in enumerate(cohort.lineages.index)}
    index = index_stores(stores, {slide: lineage_code[lid] for slide, lid in slide_lineage.items()})
    names = []
    for store in index.stores:
        with h5py.File(store, "r") as h5:
            names.append(str(h5.attrs["slide_name"]))
    slide = np.array([names[k] for k in index.store_of], dtype=object)
    keys = np.array([f"{s}:{int(r)}" for s, r in zip(slide, index.row)], dtype=object)
    return CohortPatches(index, slide, np.array([slide_lineage[s] for s in slide], dtype=object),
                         np.array([slide_patient[s] for s in slide], dtype=object), keys, slide_lineage, slide_patient)


def split_name(policy: str) -> str:
    """The name of chapter 3's split file under ``models/splits`` (``wsi-<policy>``)."""
    return f"wsi-{policy}"


def draw_validation_split(run: RunDir, patches: CohortPatches, policy: str, val_fraction: float,
                          seed: int) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Hold out a ``val_fraction`` of the patches (``patch``) or of the slides, lineages or patients (whole) and
    write the split to ``models/splits/wsi-<policy>.json``.

    The file is kept when it holds the same draw; one drawn with another fraction or on other patches (new
    tiling) is replaced: only this chapter's triplet training uses it, and its checkpoint folder is keyed by the
    split's digest, so no checkpoint of the old split is resumed.

    Returns the split record and the sorted (train_rows, val_rows) of ``patches``.
    """
    from ..evaluate.splits import make_split, read_split, split_rows, write_split

    if policy not in SPLIT_POLICIES:
        raise ValueError(f"split_policy={policy!r} must be one of {SPLIT_POLICIES}")
    split = make_split(split_name(policy), patches.keys, patches.units, policy, val_fraction, seed)
    path = run.split_path(split_name(policy))
    if path.exists() and read_split(path)["digest"] != split["digest"]:
        path.unlink()
    split = write_split(path, split)
    train_rows, val_rows = split_rows(patches.keys, split)
    return split, train_rows, val_rows


def split_summary(patches: CohortPatches, train_rows: np.ndarray, val_rows: np.ndarray) -> dict[str, int]:
    """How many patches, slides, lineages and patients are on each side."""
    count = lambda ids, rows: len(set(ids[rows]))  # noqa: E731
    return {"training patches": len(train_rows), "validation patches": len(val_rows),
            "validation slides": count(patches.slide, val_rows),
            "validation lineages": count(patches.lineage, val_rows),
            "validation patients": count(patches.patient, val_rows)}


# ------------------------------------------------------------------------------------------------ training
def pretrain_encoder(folder_root: Path, data: Any, settings: Any, encoder: Mapping[str, Any],
                     split_digest: str) -> tuple[Any, Path]:
    """SimCLR pre-training (:func:`gbhet_lib.wsi.pretrain.pretrain_simclr`) of a fresh encoder (``encoder``: arch,
    img_size, weights_path) on ``data`` (the training patches of the split ``split_digest``), in
    ``<folder_root>/simclr-<digest of the settings and the split>`` (resumed; a finished one is reused).

    Returns the history (one row per epoch) and the checkpoint path.
    """
    import pandas as pd

    from ..training import HISTORY, finished
    from .pretrain import pretrain_simclr

    encoder = {k: encoder.get(k) for k in ("arch", "img_size", "weights_path")}
    folder = settings_folder(folder_root, "simclr", settings.without_device(), encoder, split_digest)
    if finished(folder, settings.epochs):  # reused as it is (also by every rank of a torchrun job)
        return pd.read_csv(folder / HISTORY, sep="\t"), folder / "last.pt"
    history = pretrain_simclr(encoder_factory(encoder), data, settings, folder, progress=False)
    return history, folder / "last.pt"


def train_encoder(run: RunDir, patches: CohortPatches, train_rows: np.ndarray, val_rows: np.ndarray,
                  settings: Any, encoder: Mapping[str, Any], split: Mapping[str, Any],
                  val_fraction: float, pretrain: Any = None) -> tuple[Any, WsiEncoderRecord]:
    """Triplet-train an encoder (``encoder``: arch, img_size, weights_path) on the training patches, validated on
    the held-out ones, in ``models/wsi/triplet-<digest of the settings, the split and the start>`` (resumed when
    there), and write :class:`WsiEncoderRecord` to ``models/wsi/encoder.json``.

    ``pretrain`` (a :class:`~gbhet_lib.wsi.pretrain.SimCLRConfig`, or None): first pre-train the encoder by SimCLR
    on the same training patches (:func:`pretrain_encoder`) and start the triplet training from it.

    Returns the training history (one row per epoch; with ``pretrain`` its ``attrs["pretrain"]`` holds the
    pre-training's) and the record.
    """
    from .train import train_triplet

    encoder = {"arch": encoder["arch"], "img_size": encoder["img_size"], "weights_path": encoder.get("weights_path")}
    start, pretrain_history = None, None
    if pretrain is not None:
        pretrain_history, start = pretrain_encoder(run.wsi_models, patches.dataset(train_rows), pretrain, encoder,
                                                   split["digest"])
    folder = settings_folder(run.wsi_models, "triplet", settings.to_dict(), encoder["arch"], encoder["img_size"],
                             encoder["weights_path"], split["policy"], val_fraction, split["digest"],
                             *([] if start is None else [run.relative(start)]))
    make = encoder_factory(encoder, start)
    history = train_triplet(make, patches.dataset(train_rows), patches.dataset(val_rows), settings,
                            checkpoint_dir=folder, progress=False)
    history.attrs["pretrain"] = pretrain_history
    record = WsiEncoderRecord(
        checkpoint=run.relative(folder / "last.pt"), settings=settings.to_dict(), encoder=encoder,
        patch_stores=[run.relative(p) for p in patches.index.stores],
        slide_lineage=dict(patches.slide_lineage), slide_patient=dict(patches.slide_patient),
        split=run.relative(run.split_path(split["name"])), split_policy=split["policy"], val_fraction=val_fraction,
        init_source=make().init_source if start is None else f"checkpoint:{run.relative(start)}",
        pretrain=None if start is None else {"checkpoint": run.relative(start), "settings": pretrain.to_dict()})
    record.write(run)
    return history, record


# ------------------------------------------------------------------------------------------------ features
def encode_patches(run: RunDir, record: WsiEncoderRecord, patches: CohortPatches, device: str = "cpu",
                   readout: str = "projection") -> dict[str, np.ndarray]:
    """Every patch encoded by the trained encoder, the SimCLR pre-trained encoder the training started from (when
    there was one) and a randomly initialised encoder of the same kind (the baseline; its weights drawn from the
    training's seed, so every run and rerun compares with the same ones), read out as ``readout``
    (:func:`gbhet_lib.wsi.features.extract_features`: the projection head's output or the backbone's CLS token).

    Returns ``{"trained encoder", "pre-trained encoder" (with pre-training), "random encoder"}`` → (N, D) float32
    features in the order of ``patches``.
    """
    import torch

    from .encoder import load_encoder
    from .features import extract_features

    dataset = patches.dataset()
    encode = lambda encoder: extract_features(encoder, dataset, batch_size=128, device=device,  # noqa: E731
                                              readout=readout)
    encodings = {"trained encoder": encode(load_encoder(run.root / record.checkpoint))}
    if record.pretrain is not None:
        encodings["pre-trained encoder"] = encode(load_encoder(run.root / record.pretrain["checkpoint"]))
    with torch.random.fork_rng():  # the same random weights in every run, however much RNG training consumed
        torch.manual_seed(int(record.settings.get("seed", 0)))
        random_encoder = encoder_factory(record.encoder)()
    encodings["random encoder"] = encode(random_encoder)
    return encodings


def write_features(run: RunDir, record: WsiEncoderRecord, patches: CohortPatches,
                   device: str = "cpu") -> dict[str, np.ndarray]:
    """Write the trained encoder's projection-head features of every patch to ``features/<slide>.h5`` (features +
    coords) and return :func:`encode_patches`'s projection-head encodings."""
    from .features import write_features_h5
    from .tiling import read_coords

    encodings = encode_patches(run, record, patches, device)
    trained = encodings["trained encoder"]
    for k, store in enumerate(patches.index.stores):
        rows = patches.index.store_of == k
        slide = Path(store).stem
        coords, attrs = read_coords(run.coords_file(slide))
        write_features_h5(run.features_file(slide), trained[rows], coords, attrs)
    return encodings


#: what the program probes read of each patch: the backbone's CLS token (see :func:`probe_encodings`)
PROBE_READOUT = "cls"


def probe_encodings(run: RunDir, record: WsiEncoderRecord, patches: CohortPatches,
                    projections: Mapping[str, np.ndarray], device: str = "cpu") -> dict[str, np.ndarray]:
    """The encodings the program probes compare: the three encoders' backbone CLS tokens (:data:`PROBE_READOUT`;
    what chapter 4's fusion model reads, and what SimCLR found to keep what the projection head's objective
    discards), the trained encoder's projection-head output as ``projection head`` (the triplet loss's own space),
    and ``hand-crafted`` from ``projections`` when present (:func:`handcrafted_encoding`).

    Args:
        projections: :func:`write_features`'s projection-head encodings (``trained encoder`` is required).

    Returns:
        name → (N, D) float32 features in the order of ``patches``.
    """
    readouts = encode_patches(run, record, patches, device, readout=PROBE_READOUT)
    readouts["projection head"] = projections["trained encoder"]
    if "hand-crafted" in projections:
        readouts["hand-crafted"] = projections["hand-crafted"]
    return readouts


def lineage_knn(encodings: Mapping[str, np.ndarray], patches: CohortPatches,
                val_rows: np.ndarray) -> dict[str, float]:
    """Leave-one-out 1-NN lineage accuracy among the validation patches for each encoding of
    :func:`write_features` (``lineage_knn_acc`` for the trained encoder, ``lineage_knn_acc_<pre-trained|random>_
    encoder`` for the others) and its chance level."""
    from .train import knn_accuracy

    labels = patches.index.labels[val_rows]
    out: dict[str, float] = {}
    for name, features in encodings.items():
        accuracy, chance = knn_accuracy(features[val_rows], labels)
        key = "lineage_knn_acc" if name == "trained encoder" else f"lineage_knn_acc_{_key(name)}"
        out |= {key: accuracy, "lineage_chance": chance}
    return out


def _key(name: str) -> str:
    """A metrics key from an encoding's name: ``pre-trained encoder`` → ``pretrained_encoder``."""
    return name.replace(" ", "_").replace("-", "")


def slide_targets(patches: CohortPatches, truth: Any) -> Any:
    """slides × programs: each slide's lineage's planted program activities (index: the slide names)."""
    import pandas as pd

    slides = list(dict.fromkeys(patches.slide))
    return truth.activity.loc[[patches.slide_lineage[s] for s in slides]].set_axis(pd.Index(slides, name="slide"))


def program_probe(encodings: Mapping[str, np.ndarray], patches: CohortPatches, truth: Any, folds: int = 4,
                  seed: int = 0, reference: str = "trained encoder") -> tuple[Any, dict[str, Any]]:
    """Slide-level probe of every program from each encoding's patch features (name → (N, D) features, e.g. the
    trained encoder, the random one and the hand-crafted baseline): :func:`gbhet_lib.evaluate.probes.slide_probe`
    fitted on slide-mean features, folds grouped by patient (a held-out slide's patient was never probed on), R²
    over slides. The ``reference`` encoding and the ``pre-trained encoder`` also get a patient-bootstrap interval.

    Returns the table (programs × encodings, plus ``<reference> low``/``high``, ``chance`` (the grouped folds'
    null R²) and ``visible in slides``) and the chapter's metrics (``probe_r2_slide`` {program: R²} for the
    reference, ``probe_r2_slide_<encoding>`` for the others).
    """
    import pandas as pd

    from ..evaluate.probes import slide_probe

    targets = slide_targets(patches, truth)
    table, metrics = {}, {}
    for name, features in encodings.items():
        probe = slide_probe(features, targets, patches.slide, patches.patient, folds=folds, seed=seed,
                            train_on="slides", alpha_cv="auto")
        metrics["probe_alpha_cv"] = probe.alpha_cv
        table[name] = probe.slide_r2
        if name in (reference, "pre-trained encoder"):
            ci = probe.intervals(seed=seed)
            table[f"{name} low"], table[f"{name} high"] = ci["low"], ci["high"]
        if name == reference:
            table["chance"] = probe.null_r2
            metrics["probe_r2_slide"] = probe.slide_r2.round(4).to_dict()
        else:
            metrics[f"probe_r2_slide_{_key(name)}"] = probe.slide_r2.round(4).to_dict()
    frame = pd.DataFrame(table)
    frame["visible in slides"] = [p in truth.visible_programs for p in frame.index]
    return frame, metrics


def handcrafted_encoding(patches: CohortPatches) -> np.ndarray:
    """The hand-crafted colour and texture features (:mod:`gbhet_lib.wsi.handcrafted`) of every patch, (N, F)."""
    import h5py

    from .handcrafted import handcrafted_features

    out = None
    for k, store in enumerate(patches.index.stores):
        mine = np.flatnonzero(patches.index.store_of == k)
        with h5py.File(store, "r") as h5:
            values = handcrafted_features(h5["patches"])[0]
        out = np.zeros((len(patches.slide), values.shape[1]), np.float32) if out is None else out
        out[mine] = values[patches.index.row[mine]]
    return out


def encoder_quality(encodings: Mapping[str, np.ndarray], patches: CohortPatches, train_rows: np.ndarray,
                    val_rows: np.ndarray, history: Any, margin: float, seed: int = 0) -> dict[str, Any]:
    """Lineage identification of held-out slides of trained lineages for each encoding of :func:`write_features`
    (keyed ``trained``, ``pre-trained``, ``random``), the collapse report of the trained encoder and the spread of
    the others (:mod:`gbhet_lib.wsi.evaluate`)."""
    from .evaluate import collapse_report, embedding_spread, heldout_slide_lineages

    short = {name: name.removesuffix(" encoder") for name in encodings}
    ids = {short[name]: heldout_slide_lineages(f, patches.slide, patches.lineage, patches.patient, train_rows,
                                               val_rows, seed=seed) for name, f in encodings.items()}
    spreads = {f"{_key(name)}_spread": embedding_spread(f) for name, f in encodings.items() if name != "trained encoder"}
    return {"lineage_id_heldout_slides": ids, "collapse": collapse_report(history, encodings["trained encoder"], margin),
            **spreads}


# ------------------------------------------------------------------------------------------------ real slides
#: the reference profile's real slides and their µm/px (None: the file's own; the ROI file has no tags)
REAL_SLIDES = {"cmu1_small_region_svs": None, "tcga_06_0174_roi_pyramidal_tiff": 0.5}


def tile_real_slides(run: RunDir, config: Any, target_magnification: float, patch_size: int,
                     min_tissue_fraction: float) -> tuple[Any, list[Path]]:
    """Tile the manifest's real slides (:data:`REAL_SLIDES`, fetched with ``config``'s data mirror and cache)
    into ``features/real_coords``.

    Returns the report (one row per slide) and the slide files.
    """
    import pandas as pd

    from ..data.fetch import fetch
    from .tiling import TilingConfig, tile_slides

    paths = [fetch(name, config.data_mirror, config.cache_dir) for name in REAL_SLIDES]
    reports = [tile_slides([path], run.real_coords,
                           TilingConfig(target_magnification=target_magnification, patch_size=patch_size,
                                        min_tissue_fraction=min_tissue_fraction, mpp_override=mpp),
                           n_jobs=1, progress=False)
               for path, mpp in zip(paths, REAL_SLIDES.values())]
    return pd.concat(reports), paths


def patches_per_file(report: Any) -> dict[str, int]:
    """File name → patches kept, from a tiling report."""
    return {Path(slide).name: int(n) for slide, n in zip(report["slide"], report["patches"])}

# ------------------------------------------------------------------------------------------------ chapter 1's view
@dataclass(frozen=True)
class SlideOverview:
    """The cohort's slides: a table (vendor, size, µm/px, tissue fractions), and each slide's thumbnail and
    tissue mask (Otsu on saturation)."""

    table: Any
    thumbnails: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]

    @property
    def tissue_error(self) -> float:
        """Mean absolute difference between the detected and the drawn tissue fraction."""
        return float((self.table["tissue_otsu"] - self.table["tissue_drawn"]).abs().mean())

    def panels(self, n: int = 8) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """(name, thumbnail, mask) of the first ``n`` slides."""
        return [(name, self.thumbnails[name], self.masks[name]) for name in list(self.table.index)[:n]]

    def shown(self) -> Any:
        columns = ["vendor", "width_px", "height_px", "downsamples", "mpp", "size_mb", "tissue_otsu", "tissue_drawn"]
        return self.table[columns].round(3)


def slide_overview(cohort: Any, thumbnail_size: int = 384) -> SlideOverview:
    """Read every slide of the cohort (openslide), detect its tissue on a thumbnail, and compare the detected
    tissue fraction with the one the renderer drew (``truth.slide_stats``)."""
    import pandas as pd

    from .slide_io import list_slides, read_thumbnail
    from .tissue import tissue_mask

    slides = list_slides(cohort.root / "slides").set_index("path")
    slides.index = [Path(p).stem for p in slides.index]
    files = {Path(cohort.slide_path(sid)).stem: cohort.slide_path(sid) for sid in cohort.slides.index}
    thumbs = {name: read_thumbnail(files[name], thumbnail_size)[0] for name in slides.index}
    masks = {name: tissue_mask(rgb) for name, rgb in thumbs.items()}
    drawn = {Path(f).stem: s["tissue_fraction"] for f, s in cohort.truth.slide_stats.items()}
    slides["tissue_otsu"] = [masks[name].mean() for name in slides.index]
    slides["tissue_drawn"] = pd.Series(drawn)
    return SlideOverview(slides, thumbs, masks)


def real_slide_panels(config: Any, thumbnail_size: int = 384) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, thumbnail, tissue mask) of the manifest's real slides (:data:`REAL_SLIDES`)."""
    from ..data.fetch import fetch
    from .slide_io import read_thumbnail
    from .tissue import tissue_mask

    panels = []
    for name in REAL_SLIDES:
        rgb = read_thumbnail(fetch(name, config.data_mirror, config.cache_dir), thumbnail_size)[0]
        panels.append((name, rgb, tissue_mask(rgb)))
    return panels
