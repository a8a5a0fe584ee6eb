"""Grid tiling of whole-slide images at a target magnification: one coordinates HDF5 per slide (CLAM/TRIDENT style).

Coordinates, not pixels, are stored: ``<stem>.h5`` holds ``coords`` (N×2 int64, level-0 x, y of each patch's
top-left corner) and the attributes needed to read the patches back with :func:`read_patch`, the one function
that turns a coordinate into pixels. Sizes are level-0 pixels unless named otherwise; resolutions are µm/px.
"""
from __future__ import annotations

import concurrent.futures as futures
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import h5py
import numpy as np
import openslide
import pandas as pd
from PIL import Image
from tqdm import tqdm

from ..io import atomic_path
from .slide_io import MPP_FIX, level_for_magnification, magnification, open_slide, slide_mpp, slide_thumbnail
from .tissue import stain_hue_labels, tissue_mask

REPORT_COLUMNS = ["slide", "patches", "status", "error", "seconds"]


@dataclass(frozen=True)
class TilingConfig:
    """How slides are cut into patches.

    Attributes:
        target_magnification: magnification of the patches (×; 10 / µm/px), e.g. 10 (the paper's, reference §2.6).
        patch_size: patch edge in pixels at the target magnification.
        overlap: pixels (at the target magnification) shared by neighbouring patches; stride = patch_size − overlap.
        min_tissue_fraction: keep a patch when at least this fraction of its area is tissue in the mask.
        thumbnail_size: longest side (px) of the thumbnail the tissue mask is computed on.
        mpp_override: level-0 µm/px to use instead of the file's tags (needed when a slide has none).
        stain_rule: also label each kept patch "tumor"/"neutral"/"" with the paper's HLS stain-hue rule
            (reads every kept patch: slower).
    """

    target_magnification: float = 10.0
    patch_size: int = 256
    overlap: int = 0
    min_tissue_fraction: float = 0.5
    thumbnail_size: int = 1024
    mpp_override: float | None = None
    stain_rule: bool = False

    def __post_init__(self) -> None:
        if not self.target_magnification > 0:
            raise ValueError(f"target_magnification={self.target_magnification} must be > 0 (e.g. 10 for 10x)")
        if self.patch_size < 1:
            raise ValueError(f"patch_size={self.patch_size} must be a positive number of pixels")
        if not 0 <= self.overlap < self.patch_size:
            raise ValueError(f"overlap={self.overlap} must be in [0, patch_size={self.patch_size})")
        if not 0 <= self.min_tissue_fraction <= 1:
            raise ValueError(f"min_tissue_fraction={self.min_tissue_fraction} must be in [0, 1]")
        if self.thumbnail_size < 16:
            raise ValueError(f"thumbnail_size={self.thumbnail_size} must be >= 16 px")
        if self.mpp_override is not None and not self.mpp_override > 0:
            raise ValueError(f"mpp_override={self.mpp_override} must be > 0 (level-0 µm/px)")

    def to_json(self) -> str:
        """Canonical JSON of the configuration (stored in each HDF5 to decide whether a rerun may skip it)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def grid_coords(width: int, height: int, patch_size_level0: int, stride_level0: int) -> np.ndarray:
    """Top-left corners (N×2 int64, level-0 x, y) of every patch lying wholly inside a width × height slide,
    row by row."""
    xs = np.arange(0, width - patch_size_level0 + 1, stride_level0, dtype=np.int64)
    ys = np.arange(0, height - patch_size_level0 + 1, stride_level0, dtype=np.int64)
    grid_y, grid_x = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([grid_x.ravel(), grid_y.ravel()], axis=1)


def tissue_fractions(mask: np.ndarray, downsample: tuple[float, float], coords: np.ndarray,
                     patch_size_level0: int) -> np.ndarray:
    """Fraction of tissue (float64, N) under each patch, from a mask whose pixels span ``downsample`` (x, y)
    level-0 pixels; the patch box is rounded to whole mask pixels (at least one)."""
    integral = np.pad(np.cumsum(np.cumsum(mask.astype(np.int64), axis=0), axis=1), ((1, 0), (1, 0)))
    height, width = mask.shape

    def box(start: np.ndarray, scale: float, limit: int) -> tuple[np.ndarray, np.ndarray]:
        low = np.clip(np.round(start / scale).astype(np.int64), 0, limit - 1)
        high = np.clip(np.round((start + patch_size_level0) / scale).astype(np.int64), low + 1, limit)
        return low, high

    x0, x1 = box(coords[:, 0], downsample[0], width)
    y0, y1 = box(coords[:, 1], downsample[1], height)
    inside = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    return inside / ((x1 - x0) * (y1 - y0))


def read_patch(slide: openslide.OpenSlide, coords: Sequence[int], h5attrs: Mapping[str, Any]) -> np.ndarray:
    """Pixels of one patch: (patch_size, patch_size, 3) uint8 RGB at the target magnification.

    ``coords`` is the level-0 (x, y) of the top-left corner; ``h5attrs`` the attributes of the slide's coords HDF5
    (``read_level``, ``patch_size``, ``patch_size_level0``). The region is read at ``read_level`` and resized
    (PIL box filter, area averaging) by the residual downsample.
    """
    level = int(h5attrs["read_level"])
    size = int(h5attrs["patch_size"])
    read_size = max(1, round(int(h5attrs["patch_size_level0"]) / slide.level_downsamples[level]))
    region = slide.read_region((int(coords[0]), int(coords[1])), level, (read_size, read_size)).convert("RGB")
    if read_size != size:
        region = region.resize((size, size), Image.Resampling.BOX)
    return np.asarray(region)


def read_coords(h5_path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """The ``coords`` (N×2 int64, level 0) and attributes of a coords HDF5 written by :func:`tile_slide`."""
    with h5py.File(h5_path, "r") as h5:
        return h5["coords"][:], dict(h5.attrs)


def tile_slide(slide_path: str | Path, out_dir: str | Path, config: TilingConfig = TilingConfig(),
               mpp_fix: str = MPP_FIX) -> Path:
    """Tile one slide and write ``out_dir/<stem>.h5`` atomically; returns its path.

    Steps: tissue mask (:func:`~gbhet_lib.wsi.tissue.tissue_mask`) on a thumbnail of ``config.thumbnail_size`` px;
    a grid of patches of ``patch_size × target downsample`` level-0 pixels (wholly inside the slide); keep those
    whose tissue fraction ≥ ``min_tissue_fraction``. Datasets: ``coords`` (N×2 int64, level-0 x, y of the
    top-left corner), ``tissue_fraction`` (N,), and ``labels`` (N, "tumor"/"neutral"/"") when
    ``config.stain_rule``. Attributes: ``patch_size``, ``patch_size_level0``, ``level0_magnification``,
    ``target_magnification``, ``mpp`` (level-0 µm/px), ``overlap``, ``read_level``, ``read_downsample``
    (residual factor after reading ``read_level``), ``slide_path``, ``slide_name`` (file stem), ``min_tissue_fraction``,
    ``config`` (JSON).

    Raises:
        FileNotFoundError, ValueError: missing or unreadable slide, no µm/px (set ``mpp_override``; the message
            says how in ``mpp_fix``'s words, default :data:`~gbhet_lib.wsi.slide_io.MPP_FIX`), or a target
            magnification above the slide's.
    """
    slide_path = Path(slide_path)
    with open_slide(slide_path) as slide:
        mpp = slide_mpp(slide, slide_path, mpp_override=config.mpp_override, fix=mpp_fix)
        level, residual = level_for_magnification(slide, config.target_magnification, mpp=mpp, path=slide_path)
        level0_mag = magnification(mpp)
        target_downsample = level0_mag / config.target_magnification
        patch_level0 = round(config.patch_size * target_downsample)
        stride_level0 = round((config.patch_size - config.overlap) * target_downsample)
        thumb, thumb_downsample = slide_thumbnail(slide, config.thumbnail_size)
        mask = tissue_mask(thumb)
        coords = grid_coords(*slide.dimensions, patch_level0, stride_level0)
        fractions = tissue_fractions(mask, thumb_downsample, coords, patch_level0)
        keep = fractions >= config.min_tissue_fraction
        coords, fractions = coords[keep], fractions[keep]
        attrs = {"patch_size": config.patch_size, "patch_size_level0": patch_level0,
                 "level0_magnification": level0_mag, "target_magnification": config.target_magnification,
                 "mpp": mpp, "overlap": config.overlap, "read_level": level, "read_downsample": residual,
                 "slide_path": str(slide_path.resolve()), "slide_name": slide_path.stem,
                 "min_tissue_fraction": config.min_tissue_fraction, "config": config.to_json()}
        labels = ([stain_hue_labels(read_patch(slide, xy, attrs)) or "" for xy in coords]
                  if config.stain_rule else None)
    return _write_coords(Path(out_dir) / f"{slide_path.stem}.h5", coords, fractions, labels, attrs)


def _write_coords(target: Path, coords: np.ndarray, fractions: np.ndarray, labels: list[str] | None,
                  attrs: Mapping[str, Any]) -> Path:
    with atomic_path(target) as tmp, h5py.File(tmp, "w") as h5:
        h5.create_dataset("coords", data=coords.reshape(-1, 2).astype(np.int64))
        h5.create_dataset("tissue_fraction", data=fractions.astype(np.float32))
        if labels is not None:
            h5.create_dataset("labels", data=labels, dtype=h5py.string_dtype())
        h5.attrs.update(attrs)
    return target


def is_tiled(h5_path: Path, config: TilingConfig) -> bool:
    """True when ``h5_path`` is a finished coords file written with ``config`` (so a rerun may skip the slide)."""
    try:
        with h5py.File(h5_path, "r") as h5:
            return "coords" in h5 and h5.attrs.get("config") == config.to_json()
    except OSError:  # absent, or not an HDF5 file: tile again
        return False


def tile_slides(paths: Sequence[str | Path], out_dir: str | Path, config: TilingConfig = TilingConfig(),
                n_jobs: int = 2, progress: bool = True, mpp_fix: str = MPP_FIX) -> pd.DataFrame:
    """Tile many slides into ``out_dir`` (one ``<stem>.h5`` each), in ``n_jobs`` processes, carrying on past
    failures.

    A slide whose ``<stem>.h5`` is already there with the same configuration is ``skipped``; a slide that fails
    (corrupt file, no µm/px, ...) is ``failed`` with the reason, and the others are still tiled. ``mpp_fix``: how
    the reason for a slide without µm/px tells the caller to set it (see :func:`tile_slide`).

    Returns:
        One row a slide, in the order given: ``slide`` (path), ``patches`` (number kept; for skipped slides,
        the number in the existing file), ``status`` (ok / skipped / failed), ``error``, ``seconds``.

    Raises:
        ValueError: two slides with the same file stem (they would write the same HDF5), or ``n_jobs`` < 1.
    """
    paths = [Path(p) for p in paths]
    stems = pd.Series([p.stem for p in paths])
    if stems.duplicated().any():
        shared = sorted(set(stems[stems.duplicated()]))
        raise ValueError(f"slides with the same name stem would share one HDF5: {shared}. Rename them or tile "
                         "them into different folders.")
    if n_jobs < 1:
        raise ValueError(f"n_jobs={n_jobs} must be >= 1")
    out_dir = Path(out_dir)
    rows: dict[int, dict[str, Any]] = {}
    todo = []
    for i, path in enumerate(paths):
        h5_path = out_dir / f"{path.stem}.h5"
        if is_tiled(h5_path, config):
            rows[i] = _row(path, len(read_coords(h5_path)[0]), "skipped", None, 0.0)
        else:
            todo.append(i)
    bar = tqdm(total=len(todo), desc="tiling slides", unit="slide", disable=not progress or not todo)
    if n_jobs == 1 or len(todo) <= 1:
        for i in todo:
            rows[i] = _tile_one(paths[i], out_dir, config, mpp_fix)
            bar.update()
    else:
        with futures.ProcessPoolExecutor(max_workers=min(n_jobs, len(todo))) as pool:
            jobs = {pool.submit(_tile_one, paths[i], out_dir, config, mpp_fix): i for i in todo}
            for job in futures.as_completed(jobs):
                i = jobs[job]
                try:
                    rows[i] = job.result()
                except Exception as err:  # the worker process died (e.g. killed for memory)
                    rows[i] = _row(paths[i], 0, "failed", f"worker process failed: {err!r}", 0.0)
                bar.update()
    bar.close()
    return pd.DataFrame([rows[i] for i in range(len(paths))], columns=REPORT_COLUMNS)


def _tile_one(path: Path, out_dir: Path, config: TilingConfig, mpp_fix: str = MPP_FIX) -> dict[str, Any]:
    """Tile one slide and report it; any error becomes a ``failed`` row naming the file and the reason."""
    start = time.perf_counter()
    try:
        h5_path = tile_slide(path, out_dir, config, mpp_fix)
        n = len(read_coords(h5_path)[0])
    except Exception as err:  # noqa: BLE001 - one bad slide must not stop the batch; the row says why
        return _row(path, 0, "failed", f"{type(err).__name__}: {err}", time.perf_counter() - start)
    return _row(path, n, "ok", None, time.perf_counter() - start)


def _row(path: Path, patches: int, status: str, error: str | None, seconds: float) -> dict[str, Any]:
    return {"slide": str(path), "patches": patches, "status": status, "error": error, "seconds": round(seconds, 3)}
