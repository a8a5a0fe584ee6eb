"""Opening slides with openslide, with errors that say which file and what to do."""
from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Sequence

import numpy as np
import openslide
import pandas as pd


def open_slide(path: str | Path) -> openslide.OpenSlide:
    """Open a slide in any format openslide reads; a missing or unreadable file is a clear error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"slide {path} does not exist. Check the slide folder in the notebook parameters.")
    try:
        return openslide.OpenSlide(str(path))
    except openslide.OpenSlideError as err:
        raise ValueError(f"slide {path} cannot be read by openslide ({err}). Convert it to a pyramidal tiled "
                         "TIFF or a vendor format openslide supports (SVS, NDPI, MRXS, ...).") from err


def slide_mpp(slide: openslide.OpenSlide, path: str | Path = "") -> float:
    """Level-0 microns per pixel (mean of x and y); an error naming the file when the slide does not say."""
    try:
        return (float(slide.properties[openslide.PROPERTY_NAME_MPP_X])
                + float(slide.properties[openslide.PROPERTY_NAME_MPP_Y])) / 2.0
    except KeyError:
        raise ValueError(f"slide {path or '(unnamed)'} has no µm/px (openslide.mpp-x/y). Pass the level-0 "
                         "µm/px in the notebook parameters (mpp_override), or re-export the slide with "
                         "resolution tags.") from None


def read_thumbnail(path: str | Path, max_size: int = 512) -> tuple[np.ndarray, float]:
    """RGB thumbnail (H×W×3 uint8, longest side ≤ ``max_size``) and its downsample from level 0."""
    with open_slide(path) as slide:
        thumb = np.asarray(slide.get_thumbnail((max_size, max_size)).convert("RGB"))
        downsample = slide.dimensions[0] / thumb.shape[1]
    return thumb, downsample


SLIDE_PATTERNS = ("*.svs", "*.tif", "*.tiff", "*.ndpi", "*.mrxs")
SLIDE_COLUMNS = ["path", "vendor", "width_px", "height_px", "levels", "downsamples", "mpp", "size_mb", "readable",
                 "error"]


def describe_slide(path: str | Path) -> dict[str, object]:
    """What openslide sees in one file (a row of :func:`list_slides`); errors are recorded, not raised."""
    path = Path(path)
    row: dict[str, object] = {"path": str(path), "vendor": None, "width_px": np.nan, "height_px": np.nan,
                              "levels": np.nan, "downsamples": None, "mpp": np.nan,
                              "size_mb": round(path.stat().st_size / 1e6, 2) if path.is_file() else np.nan,
                              "readable": False, "error": None}
    try:
        with open_slide(path) as slide:
            row.update(vendor=slide.properties.get(openslide.PROPERTY_NAME_VENDOR, "unknown"),
                       width_px=slide.dimensions[0], height_px=slide.dimensions[1], levels=slide.level_count,
                       downsamples=", ".join(f"{d:g}" for d in slide.level_downsamples), readable=True)
            try:
                row["mpp"] = slide_mpp(slide, path)
            except ValueError:  # no resolution tags: mpp stays NaN; pass mpp_override downstream
                pass
    except (ValueError, FileNotFoundError, openslide.OpenSlideError) as err:
        row["error"] = str(err)
    return row


def list_slides(folder: str | Path, patterns: Sequence[str] = SLIDE_PATTERNS, recursive: bool = False) -> pd.DataFrame:
    """Every slide in ``folder`` whose name matches ``patterns`` (case-insensitive), sorted by path.

    Columns: ``path``, ``vendor``, ``width_px``/``height_px`` (level 0), ``levels``, ``downsamples``, ``mpp``
    (level-0 µm/px; NaN when the file has no resolution tags), ``size_mb``, ``readable`` and ``error``
    (openslide's message for a file it cannot open). A missing folder or one with no matching file is an error.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: slide folder not found (or not a folder). Pass the folder holding the "
                                "slides.")
    candidates = root.rglob("*") if recursive else root.iterdir()
    files = sorted(f for f in candidates if f.is_file()
                   and any(fnmatch.fnmatch(f.name.lower(), pat.lower()) for pat in patterns))
    if not files:
        others = sorted({f.suffix.lower() or f.name for f in root.iterdir() if f.is_file()})
        found = f"it holds only {', '.join(others[:8])} files" if others else "it is empty"
        raise ValueError(f"{root}: no slide files matching {', '.join(patterns)} ({found}). Put the slides there, "
                         "pass patterns= for other extensions, or recursive=True for sub-folders.")
    table = pd.DataFrame([describe_slide(f) for f in files], columns=SLIDE_COLUMNS)
    return table.astype({"width_px": "Int64", "height_px": "Int64", "levels": "Int64", "readable": bool})
