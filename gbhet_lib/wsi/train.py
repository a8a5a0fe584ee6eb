"""Triplet training of the patch encoder with lineage positives (reference spec §4.2–4.3).

Paper-faithful defaults (:class:`TripletConfig`): 25 epochs, batches of 64, AdamW lr 1e-4 / wd 0.02 (none on
biases and 1-D parameters), the ALBEF-style schedule (warm-up 1e-5 → 1e-4 in 6 steps inside epoch 0, then cosine
to 1e-5), margin 1e-4, no augmentation, random 90/10 patch split (:func:`split_patches`, ``policy="patch"``).
Fixes behind options: a useful margin (:data:`~gbhet_lib.wsi.triplet.IMPROVED_MARGIN`), dihedral augmentation
(flips + 90° rotations), slide- or lineage-held-out validation. The configured seed is used (the authors' is
always 0), resume is exact, weights load strictly.

Training runs in the package's checkpointed loop (:func:`gbhet_lib.training.fit`): ``last.pt`` after every epoch,
resumed when present. :func:`~gbhet_lib.wsi.encoder.load_encoder` rebuilds the trained encoder.

Data: a :class:`PatchArrays` (uint8 images in memory + labels) or any ``torch.utils.data.Dataset`` whose item ``i``
is ``(image uint8 (H, W, 3), label int)``.

Imports only torch, timm, h5py, numpy, pandas and tqdm: it runs on the GPU machine.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, Union

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..evaluate.splits import SPLIT_POLICIES, SplitPolicy  # noqa: F401  (one list of policies, re-exported)
from ..training import Run, TrainConfig, albef_lr, bf16_autocast, fit, require, resolve_device, seed_everything
from .encoder import CHECKPOINT_FORMAT, PatchEncoder
from .augment import dihedral, hed_jitter
from .features import extract_features
from .triplet import PAPER_MARGIN, hardest_negative_triplet_loss

KIND = "wsi_triplet"
_AUGMENT_SEED_OFFSET = 1  # the augmentation generator: seed + 1 (shuffling uses seed)
_VAL_SEED_OFFSET = 2  # the fixed order of validation batches: seed + 2


@dataclass(frozen=True)
class TripletConfig(TrainConfig):
    """Triplet-training settings; defaults are the authors' (``scripts/pretrain_wsi.py``, spec §4.3).

    Attributes:
        epochs, batch_size, lr, weight_decay, warmup_lr, min_lr, warmup_epochs: 25, 64, 1e-4, 0.02, 1e-5, 1e-5, 6.
        seed: 88 (the authors' config value; their code used 0).
        margin: 1e-4 (paper; negligible for distances in [0, 4]); :data:`~gbhet_lib.wsi.triplet.IMPROVED_MARGIN`
            (0.2) is the usual choice for unit-norm features.
        mining: ``hardest`` (paper) or ``semihard`` negatives (see :mod:`gbhet_lib.wsi.triplet`).
        augment: random flips and 90° rotations of each training patch (the paper has no augmentation).
        stain_jitter: σ of the HED stain jitter of each training patch (:func:`~gbhet_lib.wsi.augment.hed_jitter`;
            0 = none, the paper). Sections of one lineage are stained apart, so without it lineages can be told
            apart by their slides' colour instead of their morphology.
        device, amp_bf16: as :class:`~gbhet_lib.training.TrainConfig` (bf16 autocast on CUDA only).
    """

    epochs: int = 25
    batch_size: int = 64
    seed: int = 88
    margin: float = PAPER_MARGIN
    mining: str = "hardest"
    augment: bool = False
    stain_jitter: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.stain_jitter >= 0, f"stain_jitter={self.stain_jitter} must be non-negative (0 = none)")
        require(self.margin >= 0, f"margin={self.margin} must be non-negative")
        require(self.mining in ("hardest", "semihard"), f"mining={self.mining!r} must be 'hardest' or 'semihard'")
        require(self.batch_size >= 2, f"batch_size={self.batch_size} must be at least 2 to form pairs")


@dataclass(frozen=True, eq=False)
class PatchArrays:
    """Patches in memory: ``images`` uint8 (N, H, W, 3), ``labels`` int64 (N,) (e.g. 26 · patient + lineage)."""

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        images, labels = np.asarray(self.images), np.asarray(self.labels).reshape(-1)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
        if len(labels) != len(images) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be {len(images)} integers, got {labels.dtype} {labels.shape}")
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "labels", labels.astype(np.int64))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return self.images[i], int(self.labels[i])

    def subset(self, rows: Sequence[int] | np.ndarray) -> PatchArrays:
        """The patches of ``rows`` (e.g. an index array of :func:`split_patches`)."""
        return PatchArrays(self.images[rows], self.labels[rows])


PatchData = Union[PatchArrays, Dataset]


def gather(data: PatchData, rows: np.ndarray) -> tuple[Tensor, Tensor]:
    """Images uint8 (B, H, W, 3) and labels int64 (B,) of ``rows``, as CPU tensors."""
    if isinstance(data, PatchArrays):
        return torch.from_numpy(data.images[rows]), torch.from_numpy(data.labels[rows])
    items = [data[int(i)] for i in rows]
    return (torch.stack([torch.as_tensor(image) for image, _ in items]),
            torch.tensor([int(label) for _, label in items], dtype=torch.int64))


def _labels(data: PatchData) -> np.ndarray:
    return data.labels if isinstance(data, PatchArrays) else np.array([int(data[i][1]) for i in range(len(data))])


# ------------------------------------------------------------------------------------------------------ split
def split_patches(slide_ids: Sequence[Any] | np.ndarray, lineage_ids: Sequence[Any] | np.ndarray,
                  policy: SplitPolicy = "patch", val_fraction: float = 0.1, seed: int = 0,
                  patient_ids: Sequence[Any] | np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation row indices (sorted int64 arrays) of N patches (kept for existing callers):
    :func:`gbhet_lib.evaluate.splits.draw_split` of the slide, lineage and patient ids (``patient`` needs
    ``patient_ids``) with ``held_out_fraction=val_fraction``."""
    from ..evaluate.splits import draw_split

    return draw_split({"slide": slide_ids, "lineage": lineage_ids, "patient": patient_ids}, policy, val_fraction, seed)


# ------------------------------------------------------------------------------------------------ evaluation
def knn_accuracy(features: np.ndarray, labels: np.ndarray, chunk: int = 4096) -> tuple[float, float]:
    """Leave-one-out 1-NN label accuracy and its chance level: :func:`gbhet_lib.evaluate.metrics.knn_accuracy`."""
    from ..evaluate.metrics import knn_accuracy as knn

    return knn(features, labels, chunk)


@torch.no_grad()
def evaluate_triplet(encoder: PatchEncoder, data: PatchData,
                     config: TripletConfig = TripletConfig()) -> dict[str, float]:
    """Validation metrics in evaluation mode on the encoder's device; the same numbers at every call.

    ``loss``: the triplet loss over batches of ``config.batch_size`` in a fixed random order (seed + 2), averaged
    over patches; ``knn_accuracy``/``knn_chance``: see :func:`knn_accuracy`.
    """
    device = next(encoder.parameters()).device
    features = torch.from_numpy(extract_features(encoder, data, config.batch_size, device, config.amp_bf16))
    labels = torch.from_numpy(_labels(data))
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(config.seed + _VAL_SEED_OFFSET))
    total = 0.0
    for start in range(0, len(order), config.batch_size):
        rows = order[start:start + config.batch_size]
        total += float(hardest_negative_triplet_loss(features[rows], labels[rows], config.margin,
                                                       config.mining)[0]) * len(rows)
    accuracy, chance = knn_accuracy(features.numpy(), labels.numpy())
    return {"loss": total / len(labels), "knn_accuracy": accuracy, "knn_chance": chance}


# -------------------------------------------------------------------------------------------------- training
def train_triplet(encoder: PatchEncoder | Callable[[], PatchEncoder], train: PatchData, val: PatchData | None,
                  config: TripletConfig, checkpoint_dir: str | Path, progress: bool = True) -> pd.DataFrame:
    """Fine-tune a patch encoder with the hardest-negative triplet loss (spec §4.2) on lineage labels.

    Args:
        encoder: a :class:`PatchEncoder` (copied; the argument is not modified) or a zero-argument factory, called
            after seeding so random initialisation follows ``config.seed``. On resume its weights are replaced by
            the checkpoint's; its architecture (``hparams``) must match.
        train, val: patches and labels (see the module docstring); ``val`` may be None.
        checkpoint_dir: ``last.pt`` and ``history.tsv`` are written here after every epoch and resumed from.

    Returns:
        The history, one row per epoch: ``epoch``, ``lr``, ``train_loss``, ``train_triplets`` (triplets per batch,
        a mean weighted by batch size), ``skipped_batches`` (always 0), ``train_seconds``, and with ``val``
        ``val_loss``, ``val_knn_accuracy``, ``val_knn_chance`` (:func:`evaluate_triplet`).
    """
    device = resolve_device(config.device)
    seed_everything(config.seed)
    model = copy.deepcopy(encoder) if isinstance(encoder, PatchEncoder) else encoder()
    model.to(device)
    augment_generator = torch.Generator().manual_seed(config.seed + _AUGMENT_SEED_OFFSET)

    def step(rows: Tensor) -> dict[str, Tensor]:
        images, labels = gather(train, rows.cpu().numpy())
        images = images.to(device, non_blocking=True)
        if config.stain_jitter > 0:
            images = hed_jitter(images.permute(0, 3, 1, 2).float().div_(255), config.stain_jitter, augment_generator)
        pixels = model.preprocess(images)
        if config.augment:
            pixels = dihedral(pixels, augment_generator)
        with bf16_autocast(config.amp_bf16, device):
            _, features = model(pixels)
        loss, n_triplets = hardest_negative_triplet_loss(features, labels.to(device), config.margin, config.mining)
        return {"loss": loss, "triplets": torch.tensor(float(n_triplets))}

    def evaluate() -> dict[str, float]:
        return evaluate_triplet(model, val, config)

    run = Run(CHECKPOINT_FORMAT, "WSI", KIND, config, model.hparams, {"model": model},
              {"augment": augment_generator})
    return fit(run, len(train), step, evaluate if val is not None else None, checkpoint_dir, progress, albef_lr)
