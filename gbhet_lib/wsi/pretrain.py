"""Self-supervised pre-training of the patch encoder (SimCLR), standing in for the paper's ImageNet initialisation.

The authors fine-tune DeiT-B/16 weights pre-trained on ImageNet with the lineage triplet loss (spec §4.1). Where no
such weights can be had (offline, the demo's small ViT) a randomly initialised encoder is fine-tuned from nothing,
and the lineage labels alone then teach it little (chapter 3 measures it). This module pre-trains the encoder on the
same patches **without labels**, by SimCLR (Chen et al. 2020, "A simple framework for contrastive learning of visual
representations"): two random views of each patch (a crop of 75–100 % of its side resampled to the input size,
a flip and a 90° rotation, HED stain jitter) must find each other among the batch's 2B views under the NT-Xent loss
with temperature τ. Stain, orientation and framing are then nuisances, and what stays is the tissue: cellularity,
necrosis, vessels. The triplet fine-tuning (:mod:`gbhet_lib.wsi.train`) starts from the result, as the paper's starts
from DeiT.

Only the patches of the training split may be used (the held-out ones are never seen, not even without labels).

The NT-Xent loss is six lines over :func:`torch.nn.functional.cross_entropy`; a metric-learning package for it would
be a dependency for those six lines. The views are drawn in one batched ``affine_grid``/``grid_sample`` call (crop,
zoom, flip and rotation in one affine map) rather than an image-by-image loop.

Checkpoints use the WSI checkpoint format, so :func:`gbhet_lib.wsi.encoder.load_encoder` rebuilds the pre-trained
encoder. Imports only torch, timm, numpy and pandas: it runs on the GPU machine.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from ..training import Run, TrainConfig, albef_lr, bf16_autocast, fit, require, resolve_device, seed_everything
from .augment import hed_jitter
from .encoder import CHECKPOINT_FORMAT, PatchEncoder
from .train import PatchData, gather

KIND = "wsi_simclr"
_VIEW_SEED_OFFSET = 3  # the view generator: seed + 3 (shuffling uses seed)


@dataclass(frozen=True)
class SimCLRConfig(TrainConfig):
    """SimCLR pre-training settings.

    Attributes:
        epochs: passes over the training patches (15: what fits chapter 3's CPU budget; SimCLR papers train for
            hundreds on large sets).
        batch_size: patches per step (2 × batch_size views; the negatives of a view are the other 2B − 2).
        lr, warmup_lr, min_lr, warmup_epochs, weight_decay: AdamW under :func:`~gbhet_lib.training.albef_lr`
            (1e-3 peak, as for small ViTs trained from scratch; 0.05 decay).
        temperature: τ of NT-Xent (0.2; SimCLR reports 0.1–0.5 working for unit-norm features).
        min_crop: the smallest crop side, as a fraction of the patch side (0.75: a crop keeps most of the tissue
            so that a view's cellularity is its patch's).
        stain_jitter: σ of the HED stain jitter of each view (:func:`~gbhet_lib.wsi.augment.hed_jitter`).
    """

    epochs: int = 15
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 6
    temperature: float = 0.2
    min_crop: float = 0.75
    stain_jitter: float = 0.2

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.temperature > 0, f"temperature={self.temperature} must be positive")
        require(0 < self.min_crop <= 1, f"min_crop={self.min_crop} must be in (0, 1]")
        require(self.stain_jitter >= 0, f"stain_jitter={self.stain_jitter} must be non-negative (0 = none)")
        require(self.batch_size >= 2, f"batch_size={self.batch_size} must be at least 2 (the negatives)")


def nt_xent_loss(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """NT-Xent (SimCLR) of two views' features z1, z2 (B, D), each row L2-normalised: the mean over the 2B views of
    the cross-entropy of finding its partner among the other 2B − 1 by cosine / τ. Computed in float32.

    Chance level (every similarity equal): log(2B − 1).
    """
    if z1.shape != z2.shape or z1.ndim != 2 or len(z1) < 2:
        raise ValueError(f"z1 and z2 must be matching (B, D) batches with B ≥ 2, got {tuple(z1.shape)} and "
                         f"{tuple(z2.shape)}")
    z = torch.cat([z1, z2]).float()
    logits = (z @ z.T / temperature).fill_diagonal_(float("-inf"))
    n = len(z1)
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, partner)


def random_views(pixels: Tensor, size: int, min_crop: float, generator: torch.Generator) -> Tensor:
    """One random view (B, C, size, size) of each image of (B, C, S, S): a square crop of side U(min_crop, 1) · S
    at a uniform position, resampled to ``size`` (bilinear), flipped or not and rotated by k · 90° (one affine map
    per image). Give S ≈ size / min_crop so that no crop is shrunk by more than 1 / min_crop (no antialiasing)."""
    n = len(pixels)
    scale = min_crop + (1 - min_crop) * torch.rand(n, generator=generator)
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * (1 - scale)[:, None]  # the crop stays inside
    quarter = torch.randint(0, 4, (n,), generator=generator).float() * (torch.pi / 2)
    flip = torch.randint(0, 2, (n,), generator=generator).float() * 2 - 1
    cos, sin = torch.cos(quarter).round(), torch.sin(quarter).round()
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos * scale * flip, -sin * scale
    theta[:, 1, 0], theta[:, 1, 1] = sin * scale * flip, cos * scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta.to(pixels.device, pixels.dtype), [n, pixels.shape[1], size, size], align_corners=False)
    return F.grid_sample(pixels, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def pretrain_simclr(encoder: PatchEncoder | Callable[[], PatchEncoder], train: PatchData, config: SimCLRConfig,
                    checkpoint_dir: str | Path, progress: bool = True) -> pd.DataFrame:
    """Pre-train a patch encoder by SimCLR on ``train``'s images (its labels are not used).

    Args:
        encoder: a :class:`PatchEncoder` (copied) or a zero-argument factory, called after seeding.
        train: patches (:class:`~gbhet_lib.wsi.train.PatchArrays` or a dataset of (image, label)); only the
            training split's.
        checkpoint_dir: ``last.pt`` and ``history.tsv`` after every epoch; resumed when present.

    Returns:
        The history, one row per epoch: ``epoch``, ``lr``, ``train_loss`` (NT-Xent), ``train_chance``
        (log(2B − 1) averaged like the loss), ``train_samples``, ``skipped_batches`` (batches of one patch),
        ``train_seconds``.
    """
    device = resolve_device(config.device)
    seed_everything(config.seed)
    model = copy.deepcopy(encoder) if isinstance(encoder, PatchEncoder) else encoder()
    model.to(device)
    views = torch.Generator().manual_seed(config.seed + _VIEW_SEED_OFFSET)

    source = math.ceil(model.img_size / config.min_crop)  # the side views are cut from: crops zoom by ≤ 1/min_crop

    def view(images: Tensor) -> Tensor:
        rgb = images.permute(0, 3, 1, 2).float().div_(255)
        if rgb.shape[-1] != source:
            rgb = F.interpolate(rgb, size=(source, source), mode="bilinear", align_corners=False, antialias=True)
        rgb = random_views(rgb, model.img_size, config.min_crop, views)
        if config.stain_jitter > 0:
            rgb = hed_jitter(rgb, config.stain_jitter, views)
        return model.preprocess(rgb)

    def step(rows: Tensor) -> dict[str, Tensor] | None:
        if len(rows) < 2:
            return None
        images, _ = gather(train, rows.cpu().numpy())
        images = images.to(device, non_blocking=True)
        with bf16_autocast(config.amp_bf16, device):
            _, z1 = model(view(images))
            _, z2 = model(view(images))
        chance = torch.log(torch.tensor(2.0 * len(rows) - 1))
        return {"loss": nt_xent_loss(z1, z2, config.temperature), "chance": chance}

    run = Run(CHECKPOINT_FORMAT, "WSI", KIND, config, model.hparams, {"model": model}, {"views": views})
    return fit(run, len(train), step, None, checkpoint_dir, progress, albef_lr)
