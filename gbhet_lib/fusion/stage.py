"""The fusion stage on a run directory: prepare the pairing inputs (CPU, notebook side) and train a variant
under a split policy (anywhere: the GPU machine included, through ``gbhet train-fusion``).

Layout it reads and writes (relative to the run directory)::

    models/rna/encoder.json          chapter 2's record: checkpoint, tokens, scaling, settings
    models/wsi/encoder.json          chapter 3's record: checkpoint, encoder, settings, patch stores
    metrics/01_data.json             chapter 1's claims: the power of the cohort's size (cited, not required)
    data/fusion/pairing.h5           lineage RNA (scaled as in pre-training), the pool, token sets, lineages
    models/splits/<policy>.json              the held-out patches, slides, lineages, patients of a split (gbhet_lib.evaluate)
    models/fusion/simclr-<digest>/           the patch encoder's SimCLR pre-training on a split's training patches
                                             (when chapter 3 pre-trained)
    models/fusion/wsi-<policy>-<digest>/     the patch encoder triplet-trained without that policy's held-out
    models/fusion/rna-chromosome-<digest>/   the RNA encoder pre-trained on chromosome tokens
    models/fusion/<variant>-<policy>-<digest>/last.pt, history.tsv   a trained fusion model
    models/fusion/<variant>-<policy>.json    the record of the last finished training of that pair

Honest hold-out (spec §10.16): for a ``slide``, ``lineage`` or ``patient`` policy the held-out patches are never
seen in any training: the fusion model's, and the patch encoder's SimCLR and triplet pre-training, which are redone
here on the policy's training patches only. The RNA encoder is pre-trained on the RNA-only pool, which holds no lineage
profile. The split is written once and every later step reads it (its digest is stored in each checkpoint), so an
evaluation cannot use another split.

:func:`prepare_pairing` imports anndata and pandas; everything else needs only torch, timm, h5py and numpy.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import h5py
import numpy as np

from ..errors import GbhetError
from ..io import atomic_path, read_json, write_json_atomic
from ..rundir import RunDir, settings_folder

DEFAULT_HELD_OUT_FRACTION = 0.25


class MissingInputs(GbhetError, FileNotFoundError):
    """A file an earlier stage should have written is not in the run directory."""


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise MissingInputs(f"{path} is missing ({what}). Run the earlier chapters first: "
                            "`gbhet run --run-dir <run_dir>` (chapters 2 and 3, then this one).")
    return path


def _strings(values: Sequence[Any]) -> np.ndarray:
    return np.array([str(v) for v in values], dtype=h5py.string_dtype())


def _read_strings(dataset: h5py.Dataset) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in dataset[:]]


def _wsi_record(run_dir: Path) -> dict[str, Any]:
    """Chapter 3's typed record (:class:`~gbhet_lib.wsi.stage.WsiEncoderRecord`), validated, as a dict."""
    from ..wsi.stage import WsiEncoderRecord

    return WsiEncoderRecord.read(run_dir).to_dict()


def _rna_record(run_dir: Path) -> dict[str, Any]:
    """Chapter 2's typed record (:class:`~gbhet_lib.rna.stage.RnaEncoderRecord`), validated, as a dict."""
    from ..rna.stage import RnaEncoderRecord

    return RnaEncoderRecord.read(run_dir).to_dict()


def encoder_record(run_dir: str | Path, stage: str) -> dict[str, Any]:
    """Chapter ``stage``'s encoder record (``models/<stage>/encoder.json``: ``rna`` or ``wsi``)."""
    return read_json(_require(Path(run_dir) / "models" / stage / "encoder.json", f"the {stage} chapter's record"))


# ------------------------------------------------------------------------------------------------ pairing
def prepare_pairing(run_dir: str | Path, lineages: Any, token_sets: Mapping[str, Mapping[str, Sequence[str]]],
                    patches_per_slide: int | None = None, seed: int = 0) -> Path:
    """Write ``data/fusion/pairing.h5`` from chapter 2's expression and record (notebook side).

    Args:
        run_dir: the run directory (chapters 2 and 3 finished).
        lineages: a table indexed by lineage id with ``patient_id`` and ``rna_sample_id`` (the lineage's sample
            in chapter 2's expression; missing = no RNA; without the column the lineage id is the sample id):
            every lineage that has a slide, with or without RNA, e.g. ``cohort.lineages``.
        token_sets: token set name (``ppi``, ``chromosome``) → token name → genes.
        patches_per_slide: pair at most this many patches of each slide (a random sample drawn from ``seed``,
            the same wherever the file is read, :meth:`~gbhet_lib.fusion.data.PairedPatches.per_slide`); None:
            every patch.

    The lineage profiles and the pool are scaled exactly as chapter 2 fed its encoder (per-gene z-scores fitted
    on the pre-training pool when it standardised), so the pre-trained RNA encoders see what they were trained on.
    """
    import anndata
    import pandas as pd

    from ..rna.stage import standardise_genes

    run_dir = Path(run_dir)
    record = _rna_record(run_dir)
    adata = anndata.read_h5ad(_require(run_dir / "data" / "rna_expression.h5ad", "chapter 2's expression"))
    values = pd.DataFrame(np.asarray(adata.X, dtype=np.float64), index=adata.obs_names, columns=adata.var_names)
    fit_on = pd.Index(record["fit_on"])
    if record.get("standardise", False):
        values = standardise_genes(values, fit_on)
    pool = pd.Index(record["pool"])
    sample_of = lineages["rna_sample_id"] if "rna_sample_id" in lineages else pd.Series(lineages.index,
                                                                                         index=lineages.index)
    has_rna = [lid for lid, sample in sample_of.items() if pd.notna(sample) and sample in values.index]
    genes = list(values.columns)
    position = {g: j for j, g in enumerate(genes)}
    out = RunDir.of(run_dir).pairing
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as h5:
        h5["genes"] = _strings(genes)
        h5["rna/values"] = values.loc[sample_of[has_rna]].to_numpy(np.float32)
        h5["rna/lineages"] = _strings(has_rna)
        h5["pool/values"] = values.loc[pool].to_numpy(np.float32)
        h5["pool/samples"] = _strings(pool)
        h5["pool/is_train"] = np.isin(np.asarray(pool), np.asarray(fit_on))
        h5["lineages/ids"] = _strings(lineages.index)
        h5["lineages/patient"] = _strings(lineages["patient_id"])
        h5.attrs["patches_per_slide"] = int(patches_per_slide or 0)
        h5.attrs["patch_sample_seed"] = int(seed)
        for name, tokens in token_sets.items():
            group = h5.create_group(f"tokens/{name}")
            group.attrs["order"] = json.dumps(list(tokens))
            for k, (token, members) in enumerate(tokens.items()):
                missing = [g for g in members if g not in position]
                if missing:
                    raise KeyError(f"token set {name!r}, token {token!r}: gene(s) {missing[:5]} are not in chapter "
                                   "2's expression; build the tokens from its genes")
                group[str(k)] = np.array([position[g] for g in members], dtype=np.int64)
    return out


def prepare_pairs(run_dir: str | Path, cohort: Any, variants: Sequence[str],
                  memory_budget_bytes: int | None = None, patches_per_slide: int | None = None,
                  seed: int = 0) -> dict[str, Any]:
    """Chapter 4's pairing step (notebook side): write ``data/fusion/pairing.h5`` with chapter 2's PPI tokens and
    one token per chromosome (at most ``patches_per_slide`` patches of each slide, drawn from ``seed``), then load
    the pairs of every token set the ``variants`` use.

    Returns token set → :class:`~gbhet_lib.fusion.data.PairedPatches` (streamed from the patch stores when the
    patches need more than ``memory_budget_bytes``, see :func:`load_pairing`).
    """
    import anndata

    from ..rna.tokens import GeneTokens, chromosome_tokens
    from .train import variant_tokens

    run = RunDir.of(run_dir)
    ppi = GeneTokens.load_json(run.gene_tokens)
    genes = list(anndata.read_h5ad(run.expression, backed="r").var_names)
    prepare_pairing(run.root, cohort.lineages,
                    {"ppi": ppi.tokens, "chromosome": chromosome_tokens(genes, cohort.genes).tokens},
                    patches_per_slide, seed)
    img_size = _wsi_record(run.root)["encoder"]["img_size"]
    return {tokens: load_pairing(run.root, tokens, img_size, memory_budget_bytes)
            for tokens in dict.fromkeys(variant_tokens(v) for v in variants)}


def is_streamed(data: Any) -> bool:
    """Whether the pairs' patches are read from the stores on demand (not held in memory)."""
    from .data import PatchStoreImages

    return isinstance(data.images, PatchStoreImages)


def _token_data(h5: h5py.File, where: str, samples: list[str], token_set: str):
    from ..rna.train import TokenData

    if f"tokens/{token_set}" not in h5:
        raise KeyError(f"pairing file has no token set {token_set!r} (it has {list(h5['tokens'])})")
    group = h5[f"tokens/{token_set}"]
    names = json.loads(group.attrs["order"])
    return TokenData(h5[f"{where}/values"][:], [group[str(k)][:] for k in range(len(names))], names, samples,
                     _read_strings(h5["genes"]))


def load_pairing(run_dir: str | Path, token_set: str, img_size: int, memory_budget_bytes: int | None = None):
    """The run's :class:`~gbhet_lib.fusion.data.PairedPatches` with ``token_set`` tokens and patches resized to
    ``img_size`` pixels (the patch stores of chapter 3's record): read once into memory, or, when N·S·S·3 bytes
    exceed ``memory_budget_bytes``, read per batch from the stores (the same batches;
    :func:`~gbhet_lib.fusion.data.read_patch_stores`)."""
    from .data import pair_patches, read_patch_stores

    run_dir = Path(run_dir)
    wsi = _wsi_record(run_dir)
    with h5py.File(_require(RunDir.of(run_dir).pairing, "the fusion chapter's pairing file"), "r") as h5:
        rna = _token_data(h5, "rna", _read_strings(h5["rna/lineages"]), token_set)
        ids, patients = _read_strings(h5["lineages/ids"]), _read_strings(h5["lineages/patient"])
        per_slide, sample_seed = int(h5.attrs.get("patches_per_slide", 0)), int(h5.attrs.get("patch_sample_seed", 0))
    images, slides, keys = read_patch_stores([run_dir / p for p in wsi["patch_stores"]], img_size,
                                             memory_budget_bytes)
    slide_lineage = wsi["slide_lineage"]
    pairs = pair_patches(images, slides, keys, slide_lineage, dict(zip(ids, patients)), rna)
    return pairs.per_slide(per_slide, sample_seed) if per_slide > 0 else pairs


def pool_tokens(run_dir: str | Path, token_set: str):
    """(train, validation) :class:`~gbhet_lib.rna.train.TokenData` of the RNA-only pool, split as in chapter 2."""
    with h5py.File(_require(RunDir.of(run_dir).pairing, "the fusion chapter's pairing file"), "r") as h5:
        data = _token_data(h5, "pool", _read_strings(h5["pool/samples"]), token_set)
        is_train = h5["pool/is_train"][:]
    return data.subset(np.flatnonzero(is_train)), data.subset(np.flatnonzero(~is_train))


# -------------------------------------------------------------------------------------------------- splits
def split_path(run_dir: str | Path, policy: str) -> Path:
    """``models/splits/<policy>.json``: the split file of a policy or CV fold
    (:func:`gbhet_lib.evaluate.splits.run_split_path`)."""
    from ..evaluate.splits import run_split_path

    return run_split_path(run_dir, policy)


def _split_units(data) -> dict[str, np.ndarray]:
    """The ids a split of the pairs is drawn from: each pair's slide, lineage and patient."""
    return {"slide": data.patch_slide, "lineage": data.patch_lineage_id, "patient": data.patch_patient}


def write_split(run_dir: str | Path, data, policy: str, held_out_fraction: float = DEFAULT_HELD_OUT_FRACTION,
                seed: int = 0) -> dict[str, Any]:
    """Draw the ``policy`` split of the pairs (:func:`gbhet_lib.evaluate.splits.draw_split`) and write it
    (atomically) to :func:`split_path`.

    An existing split file is kept and returned as it is (a split is drawn once per run), after checking that it
    was drawn with the same policy, fraction and seed and covers exactly these pairs.
    """
    from ..evaluate import splits

    path = split_path(run_dir, policy)
    keys = [str(k) for k in data.patch_key]
    if path.exists():
        split = read_split(run_dir, policy)
        if (split["policy"], split["held_out_fraction"], split["seed"]) != (policy, held_out_fraction, seed) \
                or sorted(split["train_keys"] + split["held_out_keys"]) != sorted(keys):
            raise ValueError(f"{path} was drawn with other settings or other pairs (policy {split['policy']}, "
                             f"fraction {split['held_out_fraction']}, seed {split['seed']}); delete it to draw it "
                             "again, and retrain every model that used it")
        return split
    split = splits.make_split(policy, keys, _split_units(data), policy, held_out_fraction, seed)
    return splits.write_split(path, split)


def write_cv_splits(run_dir: str | Path, data, n_folds: int, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Patient-level K-fold cross-validation of the pairs (:func:`gbhet_lib.evaluate.splits.patient_folds`): one
    split file per fold, ``patient_cv-<k>of<K>`` (e.g. ``patient_cv-0of5``), every patient held out once.

    Existing fold files are kept when they hold the same split; another split is an error naming the file.
    Returns fold name → split record, in fold order.
    """
    from ..evaluate import splits

    keys, units = [str(k) for k in data.patch_key], _split_units(data)
    out = {}
    for fold, rows in enumerate(splits.patient_folds(data.patch_patient, n_folds, seed)):
        name = splits.cv_split_name(fold, n_folds)
        split = splits.make_split(name, keys, units, splits.CV_POLICY, None, seed, fold=fold, n_folds=n_folds,
                                  rows=rows)
        out[name] = splits.write_split(split_path(run_dir, name), split)
    return out


def read_split(run_dir: str | Path, policy: str) -> dict[str, Any]:
    """The recorded split of ``policy`` or CV fold name (see :func:`write_split`); its format and digest are
    checked (:class:`~gbhet_lib.evaluate.splits.SplitMismatch` when the file was edited)."""
    from ..evaluate.splits import read_split as read

    path = split_path(run_dir, policy)
    if not path.exists():
        raise MissingInputs(f"no {policy!r} split in {path.parent}; the fusion chapter draws it "
                            "(gbhet_lib.fusion.stage.write_split, or write_cv_splits for patient_cv folds)")
    return read(path)


def split_rows(data, split: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``data`` in the split's training and held-out sets; an error when the pairs differ from the split's."""
    from ..evaluate.splits import split_rows as rows

    return rows(data.patch_key, split)


# ------------------------------------------------------------------------------------------------ encoders
def wsi_encoder_for_split(run_dir: str | Path, policy: str, data, device: str = "cpu", progress: bool = False):
    """The patch encoder for ``policy``: chapter 3's training (same settings) redone on the split's training
    patches only, so that no held-out patch is seen, not even by the SimCLR pre-training when chapter 3 had one
    (both in ``models/fusion/``). Trained once, then reused (resumable).

    Returns the encoder (evaluation mode) and its checkpoint path.
    """
    from ..wsi.encoder import load_encoder
    from ..wsi.pretrain import SimCLRConfig
    from ..wsi.stage import encoder_factory, pretrain_encoder
    from ..training import use_bf16
    from ..training import finished
    from ..wsi.train import TripletConfig, train_triplet

    run_dir = Path(run_dir)
    record = _wsi_record(run_dir)
    split = read_split(run_dir, policy)
    train_rows, _ = split_rows(data, split)
    on_device = lambda saved: {**saved, "device": device,  # noqa: E731
                               "amp_bf16": use_bf16(device, saved.get("amp_bf16", False))}
    settings = TripletConfig(**on_device(record["settings"]))
    patches, start = None, None
    if record.get("pretrain"):
        patches = data.triplet_data(train_rows)
        _, start = pretrain_encoder(RunDir.of(run_dir).fusion_models, patches,
                                    SimCLRConfig(**on_device(record["pretrain"]["settings"])), record["encoder"],
                                    split["digest"])
    folder = settings_folder(RunDir.of(run_dir).fusion_models, f"wsi-{policy}", settings.without_device(),
                             record["encoder"], split["digest"], *([] if start is None else [str(start.relative_to(run_dir))]))
    if not finished(folder, settings.epochs):
        patches = patches if patches is not None else data.triplet_data(train_rows)
        train_triplet(encoder_factory(record["encoder"], start), patches, None, settings, folder, progress=progress)
    return load_encoder(folder / "last.pt", device), folder / "last.pt"


def rna_encoder_for(run_dir: str | Path, token_set: str, device: str = "cpu", progress: bool = False):
    """The RNA encoder for ``token_set``: chapter 2's for the tokens it was trained on; for other tokens
    (``chromosome`` when chapter 2 used PPI), one pre-trained here on the same pool with the same settings.

    Returns the encoder (evaluation mode) and its checkpoint path.
    """
    from ..rna.train import PretrainConfig, load_model, pretrain
    from ..training import finished

    run_dir = Path(run_dir)
    record = _rna_record(run_dir)
    if record["token_method"] == token_set:
        path = run_dir / record["checkpoint"]
        return load_model(path, device), path
    train, val = pool_tokens(run_dir, token_set)
    settings = PretrainConfig(**{**record["settings"], "device": device})
    folder = settings_folder(RunDir.of(run_dir).fusion_models, f"rna-{token_set}", settings.without_device(),
                             train.token_sizes)
    if not finished(folder, settings.epochs):
        pretrain(settings, train, val, folder, progress=progress)
    return load_model(folder / "last.pt", device), folder / "last.pt"


# ------------------------------------------------------------------------------------------------ training
def train_variant(run_dir: str | Path, variant: str, policy: str = "patch", device: str = "cpu",
                  progress: bool = True, data=None, name: str | None = None, study_seed: int | None = None,
                  memory_budget_bytes: int | None = None, shuffled_pairing_seed: int | None = None,
                  **overrides: Any) -> dict[str, Any]:
    """Train ``variant`` on the training pairs of the ``policy`` split of a run (what ``gbhet train-fusion``
    runs). Resumes a checkpoint of the same settings; a finished one is not retrained.

    ``data`` (a :class:`~gbhet_lib.fusion.data.PairedPatches` with the variant's tokens) saves re-reading the
    patch stores when called in a loop; ``overrides`` are :class:`~gbhet_lib.fusion.train.FusionConfig` fields;
    ``name`` (default: the variant) names the record and checkpoint folder, e.g. ``best+fixes`` for the variant
    trained with other settings beside the paper's. The model's seed is derived from the study seed
    (``study_seed``, default the run's ``config.json``), the variant and the split, so ``gbhet run --seed 1``
    starts every fusion model differently while ``best`` and ``best+fixes`` start from the same weights (a paired
    comparison). ``memory_budget_bytes``: stream the patches from chapter 3's stores when they exceed it (see
    :func:`load_pairing`). ``shuffled_pairing_seed``: train on the pairs with the lineage profiles permuted across
    patients (:func:`~gbhet_lib.fusion.data.shuffled_pairing`; chapter 6's null), recorded in the record.

    Returns the record written to ``models/fusion/<name>-<policy>.json``: checkpoint, split digest, settings,
    pairs, excluded patches, trainable parameters, device, and the history (one dict per epoch).
    """
    import torch

    from .distributed import process_group, rank_device
    from ..training import derive_seed, single_process, use_bf16
    from .train import train_fusion, variant_config, variant_tokens

    run_dir = Path(run_dir)
    device = rank_device(device)
    name = name or variant
    if not name or any(c in name for c in "/\\ ") or name.startswith("."):
        raise ValueError(f"name={name!r} must be a plain file-name part (no spaces or slashes)")
    with process_group(device) as (rank, world):
        wsi_record = _wsi_record(run_dir)
        token_set = variant_tokens(variant)
        if study_seed is None:
            study_seed = int(read_json(_require(run_dir / "config.json", "the run's configuration"))["seed"])
        # the whole config is checked before any encoder is trained (a bad override fails in seconds)
        config = variant_config(variant, **{"seed": derive_seed(study_seed, "fusion", variant, policy),
                                            "amp_bf16": use_bf16(device), **overrides, "device": device})
        if data is None:
            data = load_pairing(run_dir, token_set, wsi_record["encoder"]["img_size"], memory_budget_bytes)
        if shuffled_pairing_seed is not None:
            from .data import shuffled_pairing

            data = shuffled_pairing(data, shuffled_pairing_seed)
        split = read_split(run_dir, policy)
        train_rows, held_rows = split_rows(data, split)
        if world > 1:  # rank 0 makes the encoders (one training, not one per rank), then every rank reads them
            if rank == 0:
                with single_process():
                    wsi_encoder_for_split(run_dir, policy, data, device)
                    rna_encoder_for(run_dir, token_set, device)
            torch.distributed.barrier()
        image_encoder, wsi_path = wsi_encoder_for_split(run_dir, policy, data, device)
        rna_encoder, rna_path = rna_encoder_for(run_dir, token_set, device)
        extra = {"name": name, "variant": variant, "policy": policy, "split_digest": split["digest"],
                 "token_set": token_set,
                 **({} if shuffled_pairing_seed is None else {"shuffled_pairing_seed": int(shuffled_pairing_seed)}),
                 "wsi_encoder": str(wsi_path.relative_to(run_dir)), "rna_encoder": str(rna_path.relative_to(run_dir))}
        folder = settings_folder(RunDir.of(run_dir).fusion_models, f"{name}-{policy}", config.to_dict(), extra, world)
        history = train_fusion(config, data.subset(train_rows), image_encoder, rna_encoder, folder,
                               val=data.subset(held_rows) if len(held_rows) >= 2 else None, extra=extra,
                               progress=progress and rank == 0)
        record = {**extra, "checkpoint": str((folder / "last.pt").relative_to(run_dir)),
                  "settings": config.to_dict(), "world_size": world,
                  "pairs": {"train": int(len(train_rows)), "held_out": int(len(held_rows))},
                  "excluded": data.excluded,
                  "trainable_parameters": history.attrs["trainable_parameters"],
                  "history": json.loads(history.to_json(orient="records"))}
        if rank == 0:
            write_json_atomic(RunDir.of(run_dir).fusion_models / f"{name}-{policy}.json", record)
        return record


def read_trained(run_dir: str | Path, variant: str, policy: str) -> dict[str, Any]:
    """The record of a trained (variant or name, policy) fusion model (see :func:`train_variant`)."""
    path = RunDir.of(run_dir).fusion_models / f"{variant}-{policy}.json"
    if not path.exists():
        raise MissingInputs(f"no trained {variant!r} model for the {policy!r} split in {path.parent}; train it "
                            f"with `gbhet train-fusion --run-dir {run_dir} --variant {variant} --policy {policy}`")
    return read_json(path)


def train_grid(run_dir: str | Path, variants: Sequence[str], splits: Mapping[str, Mapping[str, Any]],
               pairs: Mapping[str, Any], device: str = "cpu", name: str | None = None,
               **settings: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """Train every variant under every split of ``splits`` (policy → split record), each distinct split once.

    Policies whose splits hold out the same patches (:func:`gbhet_lib.evaluate.splits.identical_splits`; on the
    demo cohort ``slide`` and ``lineage``) are not trained again: their entry is the first policy's record with
    ``same_split_as`` naming it. ``pairs`` maps a token set to its :class:`~gbhet_lib.fusion.data.PairedPatches`;
    ``name`` (default: the variant) as in :func:`train_variant`; ``settings`` are FusionConfig overrides.

    Returns (name or variant, policy) → record.
    """
    from ..evaluate.splits import identical_splits
    from .train import variant_tokens

    first = identical_splits(splits)
    records: dict[tuple[str, str], dict[str, Any]] = {}
    for variant in variants:
        label = name or variant
        for policy in splits:
            if first[policy] != policy:
                records[(label, policy)] = {**records[(label, first[policy])], "policy": policy,
                                            "same_split_as": first[policy]}
                continue
            records[(label, policy)] = train_variant(run_dir, variant, policy, device, progress=False,
                                                     data=pairs[variant_tokens(variant)], name=name, **settings)
    return records


def cv_first_look(run_dir: str | Path, variant: str, pairs: Mapping[str, Any], n_folds: int, device: str = "cpu",
                  seed: int = 0, **settings: Any) -> tuple[Any, dict[str, Any], dict[tuple[str, str], Any]]:
    """Train ``variant`` on every fold of a patient-level ``n_folds``-fold CV (:func:`write_cv_splits`) and rank
    each held-out lineage's own RNA profile (:func:`gbhet_lib.fusion.retrieval.cv_retrieval`).

    Returns (one row per held-out lineage, the summary with intervals, the training records)."""
    from .retrieval import cv_retrieval
    from .train import variant_tokens

    data = pairs[variant_tokens(variant)]
    folds = write_cv_splits(run_dir, data, n_folds, seed)
    records = train_grid(run_dir, [variant], folds, pairs, device, **settings)
    per_lineage, summary = cv_retrieval(run_dir, variant, folds, data, device, seed=seed)
    return per_lineage, summary, records


def chapter_one_power(run_dir: str | Path) -> float | None:
    """The oracle power chapter 1 found for the run's own cohort size (its ``data.power`` claim), if any."""
    path = RunDir.of(run_dir).metrics_path("01_data")
    if not path.exists():
        return None
    for claim in read_json(path).get("claims", []):
        if claim["id"] == "data.power":
            return claim["value"]
    return None
