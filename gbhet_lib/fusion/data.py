"""Pairing data: every tumour patch with its lineage's RNA profile, all in memory (reference spec §5.4).

The authors' ``RNATumorDataset`` re-reads the lineage's RNA TSV with pandas and decodes a PNG for every item, and
when a lineage has no RNA it silently draws another random patch instead (so some pairs are not what they claim).
Here the patches are read once from the patch stores into one uint8 array at the model's input size, the RNA
profiles are one float32 matrix with one row per lineage, and a batch is two fancy-indexing operations. A patch
whose lineage has no RNA profile is **excluded and counted** (:attr:`PairedPatches.excluded`), never replaced.

Imports only numpy, torch and h5py: it runs on the GPU machine.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..rna.train import TokenData


@dataclass(frozen=True, eq=False)
class PairedPatches:
    """N (patch, lineage RNA) pairs in memory.

    Attributes:
        images: uint8 (N, S, S, 3), the patches at the image encoder's input size.
        patch_lineage: int64 (N,), each patch's row of ``rna``.
        patch_slide: (N,) slide name of each patch; ``patch_key``: (N,) ``"<slide>:<row in its store>"``.
        rna: the RNA profiles of the L lineages (``rna.samples`` are the lineage ids) and their gene tokens.
        lineage_patient: (L,) the patient of each lineage.
        excluded: what was left out and why: ``patches_without_rna`` (count), ``lineages_without_rna`` and
            ``slides_without_lineage`` (names).
    """

    images: np.ndarray
    patch_lineage: np.ndarray
    patch_slide: np.ndarray
    patch_key: np.ndarray
    rna: TokenData
    lineage_patient: np.ndarray
    excluded: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, S, S, 3), got {self.images.dtype} {self.images.shape}")
        for name in ("patch_lineage", "patch_slide", "patch_key"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries for {n} patches")
        if len(self.lineage_patient) != len(self.rna):
            raise ValueError(f"{len(self.lineage_patient)} patients for {len(self.rna)} lineage RNA profiles")
        if n and (self.patch_lineage.min() < 0 or self.patch_lineage.max() >= len(self.rna)):
            raise ValueError("patch_lineage must index the rows of rna")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def lineage_ids(self) -> tuple[str, ...]:
        return tuple(self.rna.samples)

    @property
    def patch_lineage_id(self) -> np.ndarray:
        """(N,) lineage id of each patch."""
        return np.asarray(self.rna.samples, dtype=object)[self.patch_lineage]

    @property
    def patch_patient(self) -> np.ndarray:
        """(N,) patient id of each patch."""
        return self.lineage_patient[self.patch_lineage]

    def subset(self, rows: Sequence[int] | np.ndarray) -> PairedPatches:
        """The pairs of ``rows``; the RNA table (every lineage) is kept whole."""
        rows = np.asarray(rows, dtype=np.int64)
        return PairedPatches(self.images[rows], self.patch_lineage[rows], self.patch_slide[rows],
                             self.patch_key[rows], self.rna, self.lineage_patient, dict(self.excluded))

    def counts(self) -> dict[str, int]:
        """Pairs, slides, lineages and patients present."""
        lineages = np.unique(self.patch_lineage)
        return {"pairs": len(self), "slides": len(np.unique(self.patch_slide)), "lineages": len(lineages),
                "patients": len(np.unique(self.lineage_patient[lineages]))}


def pair_patches(images: np.ndarray, patch_slide: Sequence[str], patch_key: Sequence[str],
                 slide_lineage: Mapping[str, str], lineage_patient: Mapping[str, str],
                 rna: TokenData) -> PairedPatches:
    """Pair each patch with its slide's lineage's RNA profile (``rna.samples`` are lineage ids).

    Patches of a slide with no lineage, or of a lineage without an RNA profile, are excluded and counted. A
    lineage with RNA but no patient is an error naming it.
    """
    slides = np.asarray(patch_slide, dtype=object)
    row_of = {lineage: i for i, lineage in enumerate(rna.samples)}
    unknown_patient = [lineage for lineage in rna.samples if lineage not in lineage_patient]
    if unknown_patient:
        raise KeyError(f"lineage(s) {unknown_patient[:5]} have RNA but no patient; give every lineage a patient id")
    lineage = np.array([slide_lineage.get(s) for s in slides], dtype=object)
    rows = np.array([row_of.get(x, -1) if x is not None else -1 for x in lineage], dtype=np.int64)
    keep = rows >= 0
    excluded = {"patches_without_rna": int((~keep).sum()),
                "lineages_without_rna": sorted({str(x) for x in lineage[~keep] if x is not None}),
                "slides_without_lineage": sorted({str(s) for s in slides[lineage == None]})}  # noqa: E711
    return PairedPatches(np.ascontiguousarray(images[keep]), rows[keep], slides[keep],
                         np.asarray(patch_key, dtype=object)[keep], rna,
                         np.array([lineage_patient[x] for x in rna.samples], dtype=object), excluded)


def resize_patches(images: np.ndarray, size: int, batch: int = 256) -> np.ndarray:
    """uint8 (N, H, W, 3) → uint8 (N, size, size, 3), bilinear with antialiasing (as the encoder's
    :func:`~gbhet_lib.wsi.encoder.preprocess` would resize them at every step); unchanged when already that size."""
    if images.shape[1:3] == (size, size):
        return images
    out = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for start in range(0, len(images), batch):
        x = torch.from_numpy(images[start:start + batch]).permute(0, 3, 1, 2).float()
        y = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out[start:start + batch] = y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


def read_patch_stores(stores: Sequence[str | Path], size: int | None = None) -> tuple[np.ndarray, np.ndarray,
                                                                                         np.ndarray]:
    """Every patch of the patch stores (:mod:`gbhet_lib.wsi.patch_store`) in memory, resized to ``size``.

    Returns:
        images uint8 (N, S, S, 3), the slide name of each patch (N,), and its key ``"<slide>:<row>"`` (N,).
    """
    images, slides, keys = [], [], []
    for path in stores:
        with h5py.File(path, "r") as store:
            name, patches = str(store.attrs["slide_name"]), store["patches"][:]
        images.append(resize_patches(patches, size) if size else patches)
        slides.extend([name] * len(patches))
        keys.extend(f"{name}:{i}" for i in range(len(patches)))
    if not images:
        raise ValueError("no patch stores given; build them first (chapter 3, gbhet_lib.wsi.patch_store)")
    return np.concatenate(images), np.array(slides, dtype=object), np.array(keys, dtype=object)


class PairBatches:
    """Batches of pairs on a device: the RNA token tensors live there once; images move per batch as uint8.

    ``batch(rows)`` (rows: a 1-D int64 CPU tensor or array) → (uint8 images (B, S, S, 3) on the device, K RNA
    tensors (B, n_k), lineage codes (B,)). On CUDA the images are gathered with numpy into one of two pinned
    staging buffers and copied asynchronously; an event guards each buffer so it is never refilled before its
    copy ran. The host never waits for the GPU here.
    """

    def __init__(self, data: PairedPatches, device: torch.device) -> None:
        self.data, self.device = data, device
        self.tokens = data.rna.tensors(device)
        self.patch_lineage = torch.from_numpy(data.patch_lineage).to(device)
        self._staging: list[tuple[Tensor, torch.cuda.Event | None]] = []
        self._turn = 0

    def _stage(self, rows: np.ndarray) -> Tensor:
        if self.device.type != "cuda":
            return torch.from_numpy(np.take(self.data.images, rows, axis=0))
        if not self._staging or len(rows) > len(self._staging[0][0]):
            shape = (len(rows), *self.data.images.shape[1:])
            self._staging = [(torch.empty(shape, dtype=torch.uint8).pin_memory(), None) for _ in range(2)]
        buffer, copied = self._staging[self._turn]
        if copied is not None:
            copied.synchronize()  # the copy that last read this buffer has run
        np.take(self.data.images, rows, axis=0, out=buffer.numpy()[:len(rows)])
        images = buffer[:len(rows)].to(self.device, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self._staging[self._turn] = (buffer, event)
        self._turn = 1 - self._turn
        return images

    def batch(self, rows: Tensor | np.ndarray) -> tuple[Tensor, list[Tensor], Tensor]:
        rows_cpu = rows.cpu().numpy() if isinstance(rows, Tensor) else np.asarray(rows)
        index = torch.from_numpy(rows_cpu).to(self.device, non_blocking=True)
        lineage = self.patch_lineage[index]
        return self._stage(rows_cpu), [t[lineage] for t in self.tokens], lineage


def lineage_balanced_order(patch_lineage: np.ndarray, n: int | None = None):
    """An epoch-order function for :func:`gbhet_lib.training.fit`: ``n`` (default N) patches drawn with
    replacement so that every lineage is equally likely (each patch with probability 1 / (L · n_lineage))."""
    lineage = torch.from_numpy(np.asarray(patch_lineage))
    counts = torch.bincount(lineage).double()
    weights = 1.0 / counts[lineage]
    size = len(lineage) if n is None else n

    def order(generator: torch.Generator) -> Tensor:
        return torch.multinomial(weights, size, replacement=True, generator=generator)

    return order
