"""Patch stores: every patch of a slide read once into one compact uint8 HDF5, and a PyTorch dataset over them.

A store ``<slide>.h5`` holds ``patches`` (N × H × W × 3 uint8, chunked one patch per chunk, lzf-compressed),
``coords`` (N × 2 int64, level-0 pixels, as in the tiling file) and the tiling attributes, plus ``slide_name``.
Training and feature extraction then read arrays, never slide files or PNGs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import h5py
import numpy as np

from ..io import atomic_path


def build_patch_store(slide_path: str | Path, coords_h5: str | Path, out_path: str | Path,
                      batch: int = 64) -> Path:
    """Read every patch listed in ``coords_h5`` (a tiling file) from the slide into ``out_path`` (atomic).

    A store that already lists the same coordinates is kept as it is (resumable over slides).
    """
    from .slide_io import open_slide
    from .tiling import read_patch

    out = Path(out_path)
    with h5py.File(coords_h5, "r") as tiling:
        coords = tiling["coords"][:]
        attrs = dict(tiling.attrs)
    if out.exists():
        with h5py.File(out, "r") as existing:
            if "coords" in existing and np.array_equal(existing["coords"][:], coords):
                return out
    size = int(attrs["patch_size"])
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as store, open_slide(slide_path) as slide:
        patches = store.create_dataset("patches", shape=(len(coords), size, size, 3), dtype=np.uint8,
                                       chunks=(1, size, size, 3), compression="lzf")
        for start in range(0, len(coords), batch):
            chunk = coords[start:start + batch]
            patches[start:start + len(chunk)] = np.stack([read_patch(slide, xy, attrs) for xy in chunk])
        store.create_dataset("coords", data=coords)
        for key, value in attrs.items():
            store.attrs[key] = value
        store.attrs["slide_name"] = attrs.get("slide_name", Path(slide_path).stem)
    return out


@dataclass(frozen=True)
class StoreIndex:
    """Which patch of which store: one row per patch of the stores, with the slide's label."""

    stores: tuple[Path, ...]
    store_of: np.ndarray  # (N,) index into ``stores``
    row: np.ndarray  # (N,) row inside that store
    labels: np.ndarray  # (N,) integer label of the patch's slide (e.g. lineage)

    def __len__(self) -> int:
        return len(self.row)


def index_stores(stores: Sequence[str | Path], slide_labels: Mapping[str, int]) -> StoreIndex:
    """Index every patch of ``stores``; ``slide_labels`` maps a store's ``slide_name`` to its integer label
    (a slide without a label is a clear error naming it)."""
    paths, store_of, rows, labels = [], [], [], []
    for k, path in enumerate(stores):
        with h5py.File(path, "r") as store:
            name, n = str(store.attrs["slide_name"]), len(store["patches"])
        if name not in slide_labels:
            raise KeyError(f"patch store {path}: slide {name!r} has no label; give every slide a lineage label")
        paths.append(Path(path))
        store_of.append(np.full(n, k))
        rows.append(np.arange(n))
        labels.append(np.full(n, slide_labels[name]))
    cat = lambda parts: np.concatenate(parts) if parts else np.zeros(0, int)  # noqa: E731
    return StoreIndex(tuple(paths), cat(store_of), cat(rows), cat(labels))


class PatchStoreDataset:
    """A map-style PyTorch dataset over patch stores: item i → (patch uint8 H×W×3, label int).

    Each worker process opens its own HDF5 handles on first use (h5py handles are not fork-safe), so it works
    with ``DataLoader(num_workers > 0)``. ``subset`` selects patches (e.g. a train/validation split).
    """

    def __init__(self, index: StoreIndex, subset: Sequence[int] | np.ndarray | None = None) -> None:
        self.index = index
        self.items = np.arange(len(index)) if subset is None else np.asarray(subset)
        self._handles: dict[int, h5py.File] = {}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        j = int(self.items[i])
        k = int(self.index.store_of[j])
        if k not in self._handles:
            self._handles[k] = h5py.File(self.index.stores[k], "r")
        return self._handles[k]["patches"][int(self.index.row[j])], int(self.index.labels[j])

    @property
    def labels(self) -> np.ndarray:
        return self.index.labels[self.items]

    def __getstate__(self) -> dict:
        return {"index": self.index, "items": self.items, "_handles": {}}  # handles never cross processes
