"""Pairing data: every tumour patch with its lineage's RNA profile (reference spec §5.4).

The authors' ``RNATumorDataset`` re-reads the lineage's RNA TSV with pandas and decodes a PNG for every item, and
when a lineage has no RNA it silently draws another random patch instead (so some pairs are not what they claim).
Here the patches are read once from the patch stores into one uint8 array at the model's input size, the RNA
profiles are one float32 matrix with one row per lineage, and a batch is two fancy-indexing operations. A patch
whose lineage has no RNA profile is **excluded and counted** (:attr:`PairedPatches.excluded`), never replaced.

Beyond a memory budget (:func:`read_patch_stores`; at STEMRI or TCGA scale a 256-px patch is ≈ 200 kB, so the
pairs need tens of GB) the patches stay in the stores: :class:`PatchStoreImages` reads the rows of each batch on
demand and resizes them exactly as the in-memory path does, so every batch is byte-identical to it.

Imports only numpy, torch and h5py: it runs on the GPU machine.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence, Union

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from ..rna.train import TokenData

if TYPE_CHECKING:
    from ..wsi.train import PatchArrays


class _StoreFiles:
    """Read-only HDF5 handles of patch stores, opened on first use in each process.

    A handle opened before a fork (DataLoader workers) or in another process is never reused: the owning process
    id is checked on every access, and pickling carries the paths only (DDP ranks, spawned workers).
    """

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = tuple(Path(p) for p in paths)
        self._pid, self._handles = os.getpid(), {}

    def patches(self, k: int) -> h5py.Dataset:
        """The ``patches`` dataset (N_k, H, W, 3) of store ``k``."""
        if self._pid != os.getpid():
            self._pid, self._handles = os.getpid(), {}
        if k not in self._handles:
            self._handles[k] = h5py.File(self.paths[k], "r")
        return self._handles[k]["patches"]

    def __getstate__(self) -> dict[str, Any]:
        return {"paths": self.paths}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["paths"])


def _read_rows(patches: h5py.Dataset, rows: np.ndarray) -> np.ndarray:
    """The increasing, distinct ``rows`` of an HDF5 dataset, each run of consecutive rows read as one slice (h5py's
    point selection, ``patches[rows]``, is about 60× slower on chunked, compressed stores)."""
    out = np.empty((len(rows), *patches.shape[1:]), dtype=patches.dtype)
    starts = np.flatnonzero(np.diff(rows, prepend=-2) != 1)
    for a, b in zip(starts, [*starts[1:], len(rows)]):
        patches.read_direct(out, np.s_[rows[a]:rows[a] + b - a], np.s_[a:b])
    return out


class PatchStoreImages:
    """Patches read from the patch stores on demand: an array-like uint8 (N, S, S, 3) at the model's input size.

    ``images[rows]`` (an int, a slice, or integer / boolean row indices) reads those patches (each store's rows in
    increasing order, runs of consecutive rows as one slice) and resizes them as :func:`read_patch_stores` does,
    byte for byte. :meth:`select` gives a view of some rows without reading; ``len``, ``shape``, ``ndim`` and
    ``dtype`` are those of the array the rows would make. HDF5 files stay open per process (:class:`_StoreFiles`).

    Args:
        files: the stores (shared between views).
        store_of: (N,) int64 index into ``files.paths`` of each patch; ``row``: (N,) its row in that store.
        size: the side S in pixels (patches are resized to it), or None to keep the stored size.
        stored_side: the side of the stored patches (pixels), the same in every store when ``size`` is None.
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, files: _StoreFiles, store_of: np.ndarray, row: np.ndarray, size: int | None,
                 stored_side: int) -> None:
        self.files, self.size, self.stored_side = files, size, stored_side
        self.store_of, self.row = np.asarray(store_of, dtype=np.int64), np.asarray(row, dtype=np.int64)
        side = size or stored_side
        self.shape = (len(self.row), side, side, 3)

    def __len__(self) -> int:
        return len(self.row)

    def _rows(self, rows: Any) -> np.ndarray:
        if isinstance(rows, slice):
            return np.arange(len(self))[rows]
        rows = np.asarray(rows)
        if rows.dtype == bool:
            if rows.shape != (len(self),):
                raise IndexError(f"a boolean index of shape {rows.shape} for {len(self)} patches")
            return np.flatnonzero(rows)
        if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
            raise IndexError(f"patch rows must be a 1-D integer or boolean index, got {rows.dtype} {rows.shape}")
        return rows.astype(np.int64)

    def select(self, rows: Any) -> PatchStoreImages:
        """The patches of ``rows`` as another view (nothing is read)."""
        rows = self._rows(rows)
        return PatchStoreImages(self.files, self.store_of[rows], self.row[rows], self.size, self.stored_side)

    def read(self, rows: Any, out: np.ndarray | None = None) -> np.ndarray:
        """uint8 (B, S, S, 3): the patches of ``rows`` (into ``out`` when given, e.g. a pinned staging buffer)."""
        rows = self._rows(rows)
        out = np.empty((len(rows), *self.shape[1:]), dtype=np.uint8) if out is None else out
        stores, inner = self.store_of[rows], self.row[rows]
        for k in np.unique(stores):
            where = np.flatnonzero(stores == k)
            wanted, back = np.unique(inner[where], return_inverse=True)
            patches = _read_rows(self.files.patches(int(k)), wanted)
            out[where] = (resize_patches(patches, self.size) if self.size else patches)[back]
        return out

    def __getitem__(self, rows: Any) -> np.ndarray:
        if isinstance(rows, (int, np.integer)):
            return self.read([rows])[0]
        return self.read(rows)

    def dataset(self, labels: np.ndarray) -> StreamedPatches:
        """A torch Dataset over these patches with one integer label each (e.g. for the triplet trainer)."""
        return StreamedPatches(self, labels)


class StreamedPatches(Dataset):
    """Patches streamed from the stores with labels: item i → (uint8 (S, S, 3), int label), the item contract of
    :func:`gbhet_lib.wsi.train.train_triplet`. ``images`` (:class:`PatchStoreImages`) and ``labels`` (int64 (N,))
    are public, so a trainer can read a whole batch at once (``images[rows]``)."""

    def __init__(self, images: PatchStoreImages, labels: np.ndarray) -> None:
        labels = np.asarray(labels).reshape(-1)
        if len(labels) != len(images) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be {len(images)} integers, got {labels.dtype} {labels.shape}")
        self.images, self.labels = images, labels.astype(np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return self.images[int(i)], int(self.labels[i])


Images = Union[np.ndarray, PatchStoreImages]


def take_images(images: Images, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 (B, S, S, 3) patches of ``rows``, from memory or from the stores (into ``out`` when given)."""
    if isinstance(images, PatchStoreImages):
        return images.read(rows, out)
    return np.take(images, rows, axis=0, out=out)


def _select(images: Images, rows: np.ndarray) -> Images:
    """The patches of ``rows``: a copy in memory, a view of the stores when streamed."""
    return images.select(rows) if isinstance(images, PatchStoreImages) else np.ascontiguousarray(images[rows])


@dataclass(frozen=True, eq=False)
class PairedPatches:
    """N (patch, lineage RNA) pairs.

    Attributes:
        images: uint8 (N, S, S, 3), the patches at the image encoder's input size: an array in memory, or a
            :class:`PatchStoreImages` that reads them from the stores (beyond the memory budget of
            :func:`read_patch_stores`).
        patch_lineage: int64 (N,), each patch's row of ``rna``.
        patch_slide: (N,) slide name of each patch; ``patch_key``: (N,) ``"<slide>:<row in its store>"``.
        rna: the RNA profiles of the L lineages (``rna.samples`` are the lineage ids) and their gene tokens.
        lineage_patient: (L,) the patient of each lineage.
        excluded: what was left out and why: ``patches_without_rna`` (count), ``lineages_without_rna`` and
            ``slides_without_lineage`` (names).
    """

    images: Images
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
        """The pairs of ``rows``; the RNA table (every lineage) is kept whole; streamed images stay streamed."""
        rows = np.asarray(rows, dtype=np.int64)
        return PairedPatches(_select(self.images, rows), self.patch_lineage[rows], self.patch_slide[rows],
                             self.patch_key[rows], self.rna, self.lineage_patient, dict(self.excluded))

    def per_slide(self, n: int, seed: int = 0) -> PairedPatches:
        """At most ``n`` pairs of each slide: a random sample per slide (the generator of a slide is seeded by
        ``seed`` and the slide's name, so a slide's sample does not depend on the other slides); the rows left out
        are counted in ``excluded["patches_not_sampled"]``."""
        import zlib

        if n < 1:
            raise ValueError(f"patches_per_slide={n} must be at least 1 (or None for every patch)")
        keep = []
        for slide in np.unique(self.patch_slide):
            rows = np.flatnonzero(self.patch_slide == slide)
            rng = np.random.default_rng([seed, zlib.crc32(str(slide).encode())])
            keep.append(rows if len(rows) <= n else np.sort(rng.choice(rows, n, replace=False)))
        rows = np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)
        out = self.subset(rows)
        out.excluded["patches_not_sampled"] = len(self) - len(rows)
        return out

    def triplet_data(self, rows: Sequence[int] | np.ndarray) -> PatchArrays | StreamedPatches:
        """The patches of ``rows`` labelled by lineage, for :func:`gbhet_lib.wsi.train.train_triplet`: in memory
        (:class:`~gbhet_lib.wsi.train.PatchArrays`) when the images are, else streamed from the stores."""
        from ..wsi.train import PatchArrays

        rows = np.asarray(rows, dtype=np.int64)
        images = _select(self.images, rows)
        if isinstance(images, PatchStoreImages):
            return images.dataset(self.patch_lineage[rows])
        return PatchArrays(images, self.patch_lineage[rows])

    def counts(self) -> dict[str, int]:
        """Pairs, slides, lineages and patients present."""
        lineages = np.unique(self.patch_lineage)
        return {"pairs": len(self), "slides": len(np.unique(self.patch_slide)), "lineages": len(lineages),
                "patients": len(np.unique(self.lineage_patient[lineages]))}


def shuffled_pairing(data: PairedPatches, seed: int = 0) -> PairedPatches:
    """The same pairs with the lineage RNA profiles permuted across patients: every lineage gets the profile of
    a lineage of another patient (a derangement at patient level, drawn from ``seed``), so the images carry no
    information about their new profile. Patches, slides, lineages, patients and splits are unchanged. When one
    patient holds more than half of the lineages (tiny cohorts) no such permutation exists and every lineage gets
    another lineage's profile instead (``excluded["shuffled_within_patient"]`` is then True). This is chapter 6's
    shuffled-pair null: whatever a model trained on these pairs "explains" comes from the method, not the images."""
    patients = np.asarray(data.lineage_patient)
    rng = np.random.default_rng(seed)
    feasible = np.unique(patients, return_counts=True)[1].max() * 2 <= len(patients)
    for _ in range(10_000):  # rejection sampling: a random derangement turns up in a few draws
        order = rng.permutation(len(patients))
        clash = patients[order] == patients if feasible else order == np.arange(len(patients))
        if not clash.any():
            break
    else:
        raise ValueError(f"could not permute the {len(patients)} lineage profiles; the shuffled-pair null needs at "
                         "least two lineages")
    rna = data.rna
    permuted = TokenData(rna.values[order], rna.token_index, rna.token_names, rna.samples, rna.genes)
    return PairedPatches(data.images, data.patch_lineage, data.patch_slide, data.patch_key, permuted,
                         data.lineage_patient, dict(data.excluded, shuffled_pairing_seed=int(seed),
                                                      shuffled_within_patient=not feasible))


def pair_patches(images: Images, patch_slide: Sequence[str], patch_key: Sequence[str],
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
    return PairedPatches(_select(images, np.flatnonzero(keep)), rows[keep], slides[keep],
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


def read_patch_stores(stores: Sequence[str | Path], size: int | None = None,
                      memory_budget_bytes: int | None = None) -> tuple[Images, np.ndarray, np.ndarray]:
    """Every patch of the patch stores (:mod:`gbhet_lib.wsi.patch_store`), resized to ``size``.

    Args:
        stores: the store files, in order (the patches are numbered store after store).
        size: the side S of the returned patches in pixels (bilinear with antialiasing, :func:`resize_patches`);
            None keeps the stored side (then every store must have the same).
        memory_budget_bytes: the most the images may take in memory; when N·S·S·3 bytes exceed it they stay in
            the stores and are read per batch (:class:`PatchStoreImages`, byte-identical batches). None: always
            in memory.

    Returns:
        images uint8 (N, S, S, 3) (an array, or a :class:`PatchStoreImages` beyond the budget), the slide name of
        each patch (N,), and its key ``"<slide>:<row>"`` (N,).
    """
    if not stores:
        raise ValueError("no patch stores given; build them first (chapter 3, gbhet_lib.wsi.patch_store)")
    names, counts, sides = [], [], []
    for path in stores:
        with h5py.File(path, "r") as store:
            if store["patches"].dtype != np.uint8:
                raise ValueError(f"patch store {path}: patches are {store['patches'].dtype}, not uint8")
            names.append(str(store.attrs["slide_name"]))
            counts.append(store["patches"].shape[0])
            sides.append(store["patches"].shape[1])
    if size is None and len(set(sides)) > 1:
        raise ValueError(f"patch stores of different sides {sorted(set(sides))} px: give the size to resize to")
    slides = np.repeat(np.array(names, dtype=object), counts)
    keys = np.array([f"{name}:{i}" for name, n in zip(names, counts) for i in range(n)], dtype=object)
    side = size or sides[0]
    if memory_budget_bytes is not None and len(keys) * side * side * 3 > memory_budget_bytes:
        store_of = np.repeat(np.arange(len(stores)), counts)
        row = np.concatenate([np.arange(n) for n in counts])
        return PatchStoreImages(_StoreFiles(stores), store_of, row, size, sides[0]), slides, keys
    images = []
    for path in stores:
        with h5py.File(path, "r") as store:
            patches = store["patches"][:]
        images.append(resize_patches(patches, size) if size else patches)
    return np.concatenate(images), slides, keys


class PairBatches:
    """Batches of pairs on a device: the RNA token tensors live there once; images move per batch as uint8.

    ``batch(rows)`` (rows: a 1-D int64 CPU tensor or array) → (uint8 images (B, S, S, 3) on the device, K RNA
    tensors (B, n_k), lineage codes (B,)); streamed images (:class:`PatchStoreImages`) are read from the stores
    here, the same bytes as in memory. On CUDA the images are gathered with numpy into one of two pinned
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
            return torch.from_numpy(take_images(self.data.images, rows))
        if not self._staging or len(rows) > len(self._staging[0][0]):
            shape = (len(rows), *self.data.images.shape[1:])
            self._staging = [(torch.empty(shape, dtype=torch.uint8).pin_memory(), None) for _ in range(2)]
        buffer, copied = self._staging[self._turn]
        if copied is not None:
            copied.synchronize()  # the copy that last read this buffer has run
        take_images(self.data.images, rows, out=buffer.numpy()[:len(rows)])
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
