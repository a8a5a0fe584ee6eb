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
``symmetric``, ``multi_positive``, ``itm_negatives="similarity"``, ``learnable_temperature``.

Imports only torch, timm, numpy, pandas, h5py and tqdm: it runs on the GPU machine.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch
from torch import Tensor, nn

from ..rna.losses import Reduction, Temperature, reconstruction_loss
from ..rna.model import ClusterTokenTransformer
from ..rna.schedule import albef_lr
from ..training import Run, TrainConfig, bf16_autocast, distributed, fit, load_weights, read_checkpoint, \
    require, resolve_device, seed_everything
from ..wsi.encoder import PatchEncoder
from .data import PairBatches, PairedPatches, lineage_balanced_order
from .distributed import gather, gather_with_grad
from .losses import itc_chance, itc_loss, itm_accuracy, itm_loss, n_rows, rolled_negatives, similarity_negatives
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

    Pairs go in batches of ``batch_size`` (default ``config.batch_size``) in a fixed random order (seed + 2) with
    the paper's rolled ITM negatives. Returned (means over pairs): ``loss``, ``itc``, ``itm``, ``itm_accuracy``,
    ``reconstruction`` (when ``c_rec`` > 0), ``itc_chance`` (the ITC of uninformative embeddings, see
    :func:`~gbhet_lib.fusion.losses.itc_chance`), ``itm_chance`` (log 2: the ITM loss of a head that cannot tell;
    an accuracy of 2/3 comes from always answering "no match").
    """
    device = next(parts.parameters()).device
    was_training = parts.training
    parts.eval()
    eval_config = dataclasses.replace(config, itm_negatives="roll", gather_negatives=False)
    batches = PairBatches(data, device)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(config.seed + 2))
    size = batch_size or config.batch_size
    sums: dict[str, float] = {}
    n = 0
    for start in range(0, len(data), size):
        rows = order[start:start + size]
        if len(rows) < 2:
            continue
        n += len(rows)
        images, rna, lineage = batches.batch(rows)
        losses = {k: float(v) for k, v in fusion_losses(parts, parts, images, rna, lineage, eval_config,
                                                         device).items() if k != "temperature"}
        losses["itc_chance"] = itc_chance(lineage if config.multi_positive else None, len(rows))
        losses["itm_chance"] = math.log(2)
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + v * len(rows)
    parts.train(was_training)
    return {k: v / n for k, v in sums.items()}


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
        ``train_temperature``,
        ``train_samples``, ``skipped_batches``, ``train_seconds``, ``pairs_per_s`` and with ``val`` the metrics of
        :func:`evaluate_fusion` prefixed ``val_``. ``history.attrs["trainable_parameters"]``: the counts of
        :func:`trainable_parameters`.
    """
    device = resolve_device(config.device)
    if list(rna_encoder.token_sizes) != data.rna.token_sizes:
        raise ValueError(f"the RNA encoder takes tokens of sizes {list(rna_encoder.token_sizes)}, the pairs have "
                         f"{data.rna.token_sizes}: pair with the tokens the encoder was pre-trained on")
    if len(data) < 2:
        raise ValueError(f"{len(data)} training pair(s): fusion training needs at least 2")
    rank, world = distributed()
    seed_everything(config.seed)  # the same initial weights on every rank
    fusion = build_model(config, image_encoder, rna_encoder)
    parts = FusionTrainable(fusion, Temperature(config.temperature, config.learnable_temperature)).to(device)
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
    run = Run(CHECKPOINT_FORMAT, "fusion", KIND, config, spec, {"model": fusion, "temperature": parts.temperature},
              {"negatives": generator})
    order = lineage_balanced_order(data.patch_lineage) if config.lineage_balanced else None
    history = fit(run, len(data), step, evaluate if val is not None else None, checkpoint_dir, progress, albef_lr,
                  epoch_order=order)
    history["pairs_per_s"] = history["train_samples"] / history["train_seconds"]
    history.attrs["trainable_parameters"] = trainable_parameters(fusion)
    return history
