"""Fusion training (reference spec §5.3–5.4): ITC + ITM + reconstruction, three variants, one process or DDP.

:func:`train_fusion` runs in the package's checkpointed loop (:func:`gbhet_lib.training.fit`): AdamW lr 1e-4 /
wd 0.02 (none on biases and 1-D parameters; fused on CUDA), the ALBEF-style schedule (warm-up 1e-5 → 1e-4 inside
epoch 0, cosine to 1e-5 over 10 epochs), seeded, bf16 autocast on CUDA when asked, ``last.pt`` after every epoch
and an exact resume. Launched by ``torchrun`` with more than one process it wraps the model in
``DistributedDataParallel`` (gradients all-reduced; ``batch_size`` is per process, as the authors') and, with
``gather_negatives``, computes ITC against the embeddings of the whole global batch.

The three released runs (:data:`VARIANTS`, spec §5.4):

============  ==========  =========================  =================  =====  =====  =====
variant       tokens      RNA encoder                frozen encoders    c_itc  c_itm  c_rec
============  ==========  =========================  =================  =====  =====  =====
best          PPI         pre-trained on PPI tokens  no                 1      1      0
frozen        PPI         pre-trained on PPI tokens  both               1      1      1
chromosome    chromosome  pre-trained on chromosome  no                 1      1      1
============  ==========  =========================  =================  =====  =====  =====

Departures from the authors, each behind an option whose default is stated: the frozen encoders stay in
evaluation mode (``frozen_mode="eval"``; the paper's ``"train"`` left BatchNorm and dropout live); the chromosome
variant starts from an RNA encoder pre-trained on chromosome tokens (the authors loaded the PPI one, which
cannot fit); the seed is used in one process too (theirs needed DDP). Loss fixes are off by default:
``symmetric``, ``multi_positive``, ``itm_negatives="similarity"``, ``learnable_temperature`` (learned at its own
rate, ``temperature_lr``).

Imports only torch, timm, numpy, pandas, h5py and tqdm: it runs on the GPU machine.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch
from torch import Tensor, nn

from ..rna.losses import Reduction, Temperature, reconstruction_loss
from ..rna.model import ClusterTokenTransformer
from ..training import Run, TrainConfig, albef_lr, bf16_autocast, distributed, fit, load_weights, \
    read_checkpoint, require, resolve_device, seed_everything
from ..wsi.encoder import PatchEncoder
from .data import PairBatches, PairedPatches, lineage_balanced_order
from .distributed import gather, gather_with_grad
from .losses import itc_chance, itc_loss, itm_accuracy, itm_loss, n_rows, other_lineage_negatives, \
    rolled_negatives, similarity_negatives
from .model import FusionModel

CHECKPOINT_FORMAT = "gbhet.fusion_checkpoint/1"
KIND = "fusion"
VARIANT_NAMES = ("best", "frozen", "chromosome")
_NEGATIVE_SEED_OFFSET = 1  # similarity-drawn ITM negatives: seed + 1 + rank (shuffling uses seed)


@dataclass(frozen=True)
class FusionConfig(TrainConfig):
    """Fusion settings; defaults are the authors' ``best`` run (``train_multimodal_best.py``, spec §5.4).

    Attributes:
        epochs, batch_size, lr, weight_decay, warmup_lr, min_lr, warmup_epochs: 10, 64 (per process), 1e-4, 0.02,
            1e-5, 1e-5, 6.
        seed: 42 (the authors': 42 + rank; here every rank seeds its own draws with seed + rank).
        c_itc, c_itm, c_rec: loss weights (1, 1, 0).
        temperature: ITC τ (0.005); the starting value when ``learnable_temperature``.
        temperature_lr: the peak learning rate of a learnable τ (1e-2; ignored when τ is fixed). τ is learned as
            log τ, and Adam moves log τ by about its learning rate per step whatever the gradient's size, so at the
            model's 1e-4 τ could move by ~2 % in 180 steps (it did: 0.0700 → 0.0698); CLIP learns its logit scale
            over far more steps. τ's parameter group follows the same warm-up and cosine shape as the model's,
            scaled by ``temperature_lr / lr`` (:attr:`~gbhet_lib.training.Run.lr_scale`), without weight decay.
        coattention_dim, heads, proj_dim: 768, 8, 128.
        freeze_encoders, frozen_mode: see :class:`~gbhet_lib.fusion.model.FusionModel` (False, ``eval``).
        symmetric: ITC in both directions (paper: image→RNA only).
        multi_positive: patches of the same lineage are positives of each other in ITC (paper: negatives).
        itm_negatives: ``roll`` (paper: the batch rolled by one) or ``similarity`` (drawn by ITC similarity among
            other lineages).
        learnable_temperature: learn τ (paper: fixed).
        reconstruction: ``sum_genes`` (paper) or ``mean``, as in RNA pre-training.
        lineage_balanced: each epoch draws N patches with replacement, every lineage equally likely (paper: every
            patch once).
        gather_negatives: under DDP, ITC negatives from every rank (paper: per-GPU batch only).
        compile: ``torch.compile`` the model's forward (CUDA runs; the loss is unchanged).
    """

    epochs: int = 10
    batch_size: int = 64
    seed: int = 42
    c_itc: float = 1.0
    c_itm: float = 1.0
    c_rec: float = 0.0
    temperature: float = 0.005
    temperature_lr: float = 1e-2
    coattention_dim: int = 768
    heads: int = 8
    proj_dim: int = 128
    freeze_encoders: bool = False
    frozen_mode: Literal["eval", "train"] = "eval"
    symmetric: bool = False
    multi_positive: bool = False
    itm_negatives: Literal["roll", "similarity"] = "roll"
    learnable_temperature: bool = False
    reconstruction: Reduction = "sum_genes"
    lineage_balanced: bool = False
    gather_negatives: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        require(min(self.c_itc, self.c_itm, self.c_rec) >= 0 and self.c_itc + self.c_itm + self.c_rec > 0,
                "loss weights c_itc, c_itm, c_rec must be non-negative and not all zero")
        require(self.temperature > 0, f"temperature={self.temperature} must be positive")
        require(self.temperature_lr > 0, f"temperature_lr={self.temperature_lr} must be positive")
        require(self.frozen_mode in ("eval", "train"), f"frozen_mode={self.frozen_mode!r} must be 'eval' or 'train'")
        require(self.itm_negatives in ("roll", "similarity"),
                f"itm_negatives={self.itm_negatives!r} must be 'roll' or 'similarity'")
        require(self.reconstruction in ("sum_genes", "mean"),
                f"reconstruction={self.reconstruction!r} must be 'sum_genes' or 'mean'")
        require(self.batch_size >= 2, f"batch_size={self.batch_size} must be at least 2 (in-batch negatives)")


VARIANTS: dict[str, dict[str, Any]] = {
    "best": {"tokens": "ppi", "settings": {"c_rec": 0.0, "freeze_encoders": False}},
    "frozen": {"tokens": "ppi", "settings": {"c_rec": 1.0, "freeze_encoders": True}},
    "chromosome": {"tokens": "chromosome", "settings": {"c_rec": 1.0, "freeze_encoders": False}},
}


def variant_config(variant: str, **overrides: Any) -> FusionConfig:
    """The :class:`FusionConfig` of a published variant (``best``, ``frozen``, ``chromosome``) with overrides."""
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r} must be one of {VARIANT_NAMES}")
    return FusionConfig(**{**VARIANTS[variant]["settings"], **overrides})


def variant_tokens(variant: str) -> str:
    """The gene-token set a variant uses: ``ppi`` or ``chromosome``."""
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r} must be one of {VARIANT_NAMES}")
    return VARIANTS[variant]["tokens"]


# ---------------------------------------------------------------------------------------------------- model
def build_model(config: FusionConfig, image_encoder: PatchEncoder, rna_encoder: ClusterTokenTransformer) -> FusionModel:
    """A :class:`FusionModel` over copies of the two encoders (the arguments are not modified).

    Without the reconstruction loss (``c_rec`` = 0) the RNA decoders get no gradient, so they are marked as not
    trainable: parameter counts say so and DDP needs no unused-parameter search."""
    model = FusionModel(copy.deepcopy(image_encoder), copy.deepcopy(rna_encoder), config.coattention_dim,
                        config.heads, config.proj_dim, config.freeze_encoders, config.frozen_mode)
    if config.c_rec == 0:
        model.rna_encoder.decoder.requires_grad_(False)
    return model


def model_spec(model: FusionModel) -> dict[str, Any]:
    """What rebuilds the architecture: the two encoders' ``hparams`` and the fusion widths (JSON-compatible)."""
    return {"image_encoder": dict(model.image_encoder.hparams), "rna_encoder": model.rna_encoder.hparams,
            "coattention_dim": model.coattention.dim, "heads": model.coattention.heads,
            "proj_dim": model.image_itc.out_features}


def trainable_parameters(model: FusionModel) -> dict[str, int]:
    """Trainable parameter counts per part (image encoder, RNA encoder, co-attention, ITC heads, ITM head)."""
    parts = {"image_encoder": model.image_encoder, "rna_encoder": model.rna_encoder,
             "coattention": model.coattention, "itc_projections": nn.ModuleList([model.image_itc, model.rna_itc]),
             "itm_head": model.itm_head}
    return {name: sum(p.numel() for p in part.parameters() if p.requires_grad) for name, part in parts.items()}


def load_fusion_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[FusionModel, dict[str, Any]]:
    """Rebuild a trained fusion model from ``last.pt`` (evaluation mode) and the checkpoint's ``extra`` record
    (variant, split policy, split digest, inputs)."""
    state = read_checkpoint(path, CHECKPOINT_FORMAT, "fusion")
    spec, config = state["model_spec"], state["config"]
    image_encoder = PatchEncoder(**spec["image_encoder"])
    rna_encoder = ClusterTokenTransformer(**spec["rna_encoder"])
    model = FusionModel(image_encoder, rna_encoder, spec["coattention_dim"], spec["heads"], spec["proj_dim"],
                        config["freeze_encoders"], config["frozen_mode"])
    load_weights(model, state["modules"]["model"], str(path))
    return model.to(device).eval(), dict(spec.get("extra", {}))


# ----------------------------------------------------------------------------------------------------- losses
class FusionTrainable(nn.Module):
    """The fusion model and its ITC temperature as one module: what DDP wraps, so that the gradient of a learnable
    τ is all-reduced too. ``forward`` returns (:class:`~gbhet_lib.fusion.model.FusionOutput`, τ)."""

    def __init__(self, fusion: FusionModel, temperature: Temperature) -> None:
        super().__init__()
        self.fusion, self.temperature = fusion, temperature

    def forward(self, *args: Any, **kwargs: Any):
        return self.fusion(*args, **kwargs), self.temperature()


def fusion_losses(trainable: nn.Module, parts: FusionTrainable, images: Tensor, rna: list[Tensor], lineage: Tensor,
                  config: FusionConfig, device: torch.device,
                  generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Every loss of one batch: uint8 images (B, S, S, 3), K RNA tensors (B, n_k), lineage codes (B,).

    ``trainable`` is what is called: ``parts`` itself or its DDP wrapper, so the whole forward (negatives
    included) runs inside it. Returns ``loss`` (the weighted total), ``itc``, ``itm``, ``itm_accuracy``,
    ``reconstruction`` (when ``c_rec`` > 0) and ``temperature``.
    """
    pixels = parts.fusion.image_encoder.preprocess(images)
    if config.itm_negatives == "roll":
        negatives = rolled_negatives(len(images), device)
    else:
        sampling_tau = parts.temperature().detach()

        def negatives(image: Tensor, rna_embedding: Tensor):
            return similarity_negatives(image, rna_embedding, lineage, sampling_tau, generator)
    with bf16_autocast(config.amp_bf16, device):
        out, tau = trainable(pixels, rna, negatives=negatives, reconstruct=config.c_rec > 0)
    groups = lineage if config.multi_positive else None
    image_keys, rna_keys, key_groups, offset = out.image_embedding, out.rna_embedding, groups, 0
    if config.gather_negatives:
        image_keys, offset = gather_with_grad(out.image_embedding)
        rna_keys, _ = gather_with_grad(out.rna_embedding)
        key_groups = gather(lineage) if groups is not None else None
    itc = itc_loss(out.image_embedding, out.rna_embedding, tau.float(), config.symmetric, groups,
                   image_keys=image_keys, rna_keys=rna_keys, key_groups=key_groups, offset=offset)
    itm = itm_loss(out.itm_logits, len(images))
    losses = {"itc": itc, "itm": itm, "itm_accuracy": itm_accuracy(out.itm_logits, len(images)),
              "itm_negatives": torch.tensor(float(n_rows(out.negatives)), device=device)}
    total = config.c_itc * itc + config.c_itm * itm
    if config.c_rec > 0:
        rec = reconstruction_loss([r.float() for r in out.reconstruction], rna, config.reconstruction)
        losses["reconstruction"] = rec
        total = total + config.c_rec * rec
    return {"loss": total, **losses, "temperature": tau.detach()}


@torch.no_grad()
def evaluate_fusion(parts: FusionTrainable, data: PairedPatches, config: FusionConfig,
                    batch_size: int | None = None) -> dict[str, float]:
    """Held-out losses in evaluation mode (the model's device), the same numbers at every call, and chance levels.

    Pairs go in batches of ``batch_size`` (default ``config.batch_size``, the last batch may be smaller; a last
    single pair is left out) in a fixed random order (seed + 2). ITM is scored with negatives that are never true
    matches (:func:`~gbhet_lib.fusion.losses.other_lineage_negatives`: for each pair, the nearest preceding pair of
    another lineage in that order, in both directions), whatever negatives the run trains with: the paper's
    rolled negatives are true matches whenever neighbours share a lineage, so they mis-score ITM.

    Returns:
        ``loss``: c_itc·itc + c_itm·itm + c_rec·reconstruction of the values below.
        ``itc``: the run's ITC (its ``symmetric`` and ``multi_positive`` settings) at its current τ, mean over
        pairs. ``itc_paper``: the paper's ITC (image→RNA, one-hot diagonal targets) at the same τ, for every run,
        so runs with and without the fixes share one axis. ``itc_chance``: log(batch size), mean over pairs, the
        ITC of uninformative embeddings in both definitions (:func:`~gbhet_lib.fusion.losses.itc_chance`).
        ``itm``, ``itm_accuracy``: the ITM cross-entropy and accuracy over every positive and negative pair.
        ``itm_chance``: log 2, the ITM loss of a head that cannot tell. ``itm_accuracy_chance``: the accuracy of
        always answering "no match", negatives / (positives + negatives) (2/3 when every pair has its two).
        ``itm_negatives_per_pair``: negatives per positive pair (2, less when some batches hold one lineage).
        ``itm_pairs_without_negatives``: positive pairs in batches of a single lineage (no negative exists).
        ``itm_rolled_true_match_fraction``: the fraction of the paper's rolled negatives of these batches that
        would have been true matches (same lineage).
        ``reconstruction`` (when ``c_rec`` > 0): mean over pairs.
    """
    device = next(parts.parameters()).device
    was_training = parts.training
    parts.eval()
    batches = PairBatches(data, device)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(config.seed + 2))
    size = batch_size or config.batch_size
    sums = dict.fromkeys(("itc", "itc_paper", "itc_chance") + (("reconstruction",) if config.c_rec > 0 else ()),
                         0.0)
    itm_loss_sum = itm_correct = 0.0
    n = n_negative = n_without = n_rolled_true = 0
    for start in range(0, len(data), size):
        rows = order[start:start + size]
        if len(rows) < 2:
            continue
        images, rna, lineage = batches.batch(rows)
        negatives = other_lineage_negatives(lineage)
        with bf16_autocast(config.amp_bf16, device):
            out, tau = parts(parts.fusion.image_encoder.preprocess(images), rna, negatives=negatives,
                             reconstruct=config.c_rec > 0)
        tau, b, negatives_here = tau.float(), len(rows), n_rows(negatives)
        groups = lineage if config.multi_positive else None
        sums["itc"] += b * float(itc_loss(out.image_embedding, out.rna_embedding, tau, config.symmetric, groups))
        sums["itc_paper"] += b * float(itc_loss(out.image_embedding, out.rna_embedding, tau))
        sums["itc_chance"] += b * itc_chance(None, b)
        if config.c_rec > 0:
            sums["reconstruction"] += b * float(reconstruction_loss([r.float() for r in out.reconstruction], rna,
                                                                    config.reconstruction))
        itm_loss_sum += len(out.itm_logits) * float(itm_loss(out.itm_logits, b))
        itm_correct += len(out.itm_logits) * float(itm_accuracy(out.itm_logits, b))
        n, n_negative = n + b, n_negative + negatives_here
        n_without += 0 if negatives_here else b
        n_rolled_true += int((lineage == torch.roll(lineage, 1)).sum())  # per rolled set (both hold the same)
    parts.train(was_training)
    if n == 0:
        raise ValueError(f"{len(data)} held-out pair(s): evaluation needs at least 2")
    means = {k: v / n for k, v in sums.items()}
    n_itm = n + n_negative
    return {"loss": config.c_itc * means["itc"] + config.c_itm * itm_loss_sum / n_itm
            + config.c_rec * means.get("reconstruction", 0.0),
            **means, "itm": itm_loss_sum / n_itm, "itm_accuracy": itm_correct / n_itm,
            "itm_chance": math.log(2), "itm_accuracy_chance": n_negative / n_itm,
            "itm_negatives_per_pair": n_negative / n, "itm_pairs_without_negatives": float(n_without),
            "itm_rolled_true_match_fraction": n_rolled_true / n}


def init_fusion(config: FusionConfig, image_encoder: PatchEncoder,
                rna_encoder: ClusterTokenTransformer) -> FusionTrainable:
    """The untrained fusion model and its temperature, as :func:`train_fusion` starts them (on the CPU).

    Seeds every random source with ``config.seed`` (:func:`~gbhet_lib.training.seed_everything`; the same
    initial weights on every rank), then builds the model over copies of the encoders (:func:`build_model`) and
    τ (:class:`~gbhet_lib.rna.losses.Temperature`). A stage passes ``seed=derive_seed(study_seed, "fusion",
    name, policy)`` (:func:`~gbhet_lib.training.derive_seed`), so the study seed decides how the model starts.
    """
    seed_everything(config.seed)
    fusion = build_model(config, image_encoder, rna_encoder)
    return FusionTrainable(fusion, Temperature(config.temperature, config.learnable_temperature))


def train_fusion(config: FusionConfig, data: PairedPatches, image_encoder: PatchEncoder,
                 rna_encoder: ClusterTokenTransformer, checkpoint_dir: str | Path, val: PairedPatches | None = None,
                 extra: dict[str, Any] | None = None, progress: bool = True) -> pd.DataFrame:
    """Train the fusion model on the pairs of ``data``; the encoders are copied (the arguments are not modified).

    Args:
        config: see :class:`FusionConfig` (:func:`variant_config` gives the published variants).
        data: the training pairs (:func:`gbhet_lib.fusion.data.pair_patches`); the RNA tokens must be those the
            RNA encoder was pre-trained on.
        image_encoder, rna_encoder: the pre-trained encoders (on resume their weights are replaced by the
            checkpoint's).
        checkpoint_dir: ``last.pt`` and ``history.tsv`` after every epoch; resumed when present.
        val: held-out pairs scored after every epoch (:func:`evaluate_fusion`), on rank 0.
        extra: JSON-compatible facts stored in the checkpoint's model spec (variant, split policy and digest,
            inputs) and returned by :func:`load_fusion_model`; a resume must match them.

    Returns:
        The history, one row per epoch: ``epoch``, ``lr``, ``train_loss``, ``train_itc``, ``train_itm``,
        ``train_itm_accuracy``, ``train_itm_negatives`` (per batch), ``train_reconstruction`` (when ``c_rec`` > 0),
        ``train_temperature`` (τ's mean over the epoch's batches), ``temperature_end`` (τ after the epoch's last
        step: the learned trajectory), ``train_samples``, ``skipped_batches``, ``train_seconds``, ``pairs_per_s``
        and with ``val`` the metrics of :func:`evaluate_fusion` prefixed ``val_``. ``history.attrs["trainable_parameters"]``: the counts of
        :func:`trainable_parameters`.
    """
    device = resolve_device(config.device)
    if list(rna_encoder.token_sizes) != data.rna.token_sizes:
        raise ValueError(f"the RNA encoder takes tokens of sizes {list(rna_encoder.token_sizes)}, the pairs have "
                         f"{data.rna.token_sizes}: pair with the tokens the encoder was pre-trained on")
    if len(data) < 2:
        raise ValueError(f"{len(data)} training pair(s): fusion training needs at least 2")
    rank, world = distributed()
    parts = init_fusion(config, image_encoder, rna_encoder).to(device)  # the same initial weights on every rank
    fusion = parts.fusion
    torch.manual_seed(config.seed + rank)  # per-rank dropout
    trainable: nn.Module = parts
    if world > 1:
        trainable = nn.parallel.DistributedDataParallel(
            parts, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        trainable = torch.compile(trainable)
    batches = PairBatches(data, device)
    generator = torch.Generator(device).manual_seed(config.seed + _NEGATIVE_SEED_OFFSET + rank)

    def step(rows: Tensor) -> dict[str, Tensor] | None:
        if len(rows) < 2:  # no in-batch negative exists
            return None
        images, rna, lineage = batches.batch(rows)
        return fusion_losses(trainable, parts, images, rna, lineage, config, device, generator)

    def evaluate() -> dict[str, float]:
        return evaluate_fusion(parts, val, config)

    spec = {**model_spec(fusion), "extra": extra or {}}
    lr_scale = {"temperature": config.temperature_lr / config.lr} if config.learnable_temperature else {}
    run = Run(CHECKPOINT_FORMAT, "fusion", KIND, config, spec, {"model": fusion, "temperature": parts.temperature},
              {"negatives": generator}, lr_scale)
    order = lineage_balanced_order(data.patch_lineage) if config.lineage_balanced else None
    history = fit(run, len(data), step, evaluate if val is not None else None, checkpoint_dir, progress, albef_lr,
                  epoch_order=order, epoch_end=lambda: {"temperature_end": float(parts.temperature().detach())})
    history["pairs_per_s"] = history["train_samples"] / history["train_seconds"]
    history.attrs["trainable_parameters"] = trainable_parameters(fusion)
    return history
