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


#: how the error of a slide without µm/px tells a Python caller to fix it (the command line passes its flag)
MPP_FIX = "pass its level-0 µm/px as mpp_override (e.g. TilingConfig(mpp_override=0.25) for a 40x scan)"
#: how the error of a folder without slides tells a Python caller to widen the search (the command line passes
#: its flags)
LISTING_FIX = "pass patterns= for other extensions, or recursive=True for sub-folders"


def slide_mpp(slide: openslide.OpenSlide, path: str | Path = "", mpp_override: float | None = None,
              fix: str = MPP_FIX) -> float:
    """Level-0 microns per pixel (mean of x and y); ``mpp_override`` (µm/px) wins over the file's tags.

    A slide without resolution tags and no override is an error naming the file and the fix; ``fix`` says how
    the caller sets the override, in its own terms (default :data:`MPP_FIX`).
    """
    if mpp_override is not None:
        if not mpp_override > 0:
            raise ValueError(f"mpp_override={mpp_override} must be > 0 (level-0 µm/px, e.g. 0.25 for 40x)")
        return float(mpp_override)
    try:
        return (float(slide.properties[openslide.PROPERTY_NAME_MPP_X])
                + float(slide.properties[openslide.PROPERTY_NAME_MPP_Y])) / 2.0
    except KeyError:
        raise ValueError(f"slide {path or '(unnamed)'} has no µm/px (openslide.mpp-x/y tags): {fix}, or "
                         "re-export the slide with resolution tags.") from None


_MAG_TOLERANCE = 1e-3  # relative: openslide downsamples of odd-sized levels are slightly off integers


def magnification(mpp: float) -> float:
    """Nominal objective magnification of µm/px: 10 / mpp (0.25 → 40×, 0.5 → 20×, 1.0 → 10×)."""
    if not mpp > 0:
        raise ValueError(f"mpp={mpp} must be > 0 (µm per pixel)")
    return 10.0 / mpp


def level_for_magnification(slide: openslide.OpenSlide, target_mag: float, mpp: float | None = None,
                            path: str | Path = "") -> tuple[int, float]:
    """The pyramid level to read for ``target_mag`` and the residual downsample still to apply.

    The level is the coarsest one whose magnification is still ≥ ``target_mag`` (never upsample);
    the residual is (target downsample from level 0) / (that level's downsample), ≥ 1.

    Args:
        slide: an open slide.
        target_mag: wanted magnification (×), e.g. 10.
        mpp: level-0 µm/px overriding the file's tags (``mpp_override``); needed when the file has none.
        path: the slide's file, only to name it in errors.

    Raises:
        ValueError: no µm/px (pass ``mpp_override``), or ``target_mag`` above the level-0 magnification.
    """
    if not target_mag > 0:
        raise ValueError(f"target magnification {target_mag} must be > 0 (e.g. 10 for 10x)")
    level0_mag = magnification(slide_mpp(slide, path, mpp_override=mpp))
    target_downsample = level0_mag / target_mag
    if target_downsample < 1 - _MAG_TOLERANCE:
        raise ValueError(f"slide {path or '(unnamed)'} is scanned at {level0_mag:g}x (level 0); it cannot be "
                         f"tiled at {target_mag:g}x without upsampling. Choose a magnification <= {level0_mag:g}.")
    level = max(i for i, ds in enumerate(slide.level_downsamples)
                if i == 0 or ds <= target_downsample * (1 + _MAG_TOLERANCE))
    residual = target_downsample / slide.level_downsamples[level]
    return level, (1.0 if abs(residual - 1) < _MAG_TOLERANCE else residual)


def slide_thumbnail(slide: openslide.OpenSlide, max_size: int = 512) -> tuple[np.ndarray, tuple[float, float]]:
    """RGB thumbnail of an open slide (H×W×3 uint8, longest side ≤ ``max_size``) and its (x, y) downsamples
    from level 0 (level-0 pixels per thumbnail pixel)."""
    thumb = np.asarray(slide.get_thumbnail((max_size, max_size)).convert("RGB"))
    return thumb, (slide.dimensions[0] / thumb.shape[1], slide.dimensions[1] / thumb.shape[0])


def read_thumbnail(path: str | Path, max_size: int = 512) -> tuple[np.ndarray, float]:
    """RGB thumbnail (H×W×3 uint8, longest side ≤ ``max_size``) and its downsample from level 0."""
    with open_slide(path) as slide:
        thumb, (downsample, _) = slide_thumbnail(slide, max_size)
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


def list_slides(folder: str | Path, patterns: Sequence[str] = SLIDE_PATTERNS, recursive: bool = False,
                fix: str = LISTING_FIX) -> pd.DataFrame:
    """Every slide in ``folder`` whose name matches ``patterns`` (case-insensitive), sorted by path.

    Columns: ``path``, ``vendor``, ``width_px``/``height_px`` (level 0), ``levels``, ``downsamples``, ``mpp``
    (level-0 µm/px; NaN when the file has no resolution tags), ``size_mb``, ``readable`` and ``error``
    (openslide's message for a file it cannot open). A missing folder or one with no matching file is an error;
    ``fix`` says how the caller widens the search, in its own terms (default :data:`LISTING_FIX`).
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
                         f"{fix}.")
    table = pd.DataFrame([describe_slide(f) for f in files], columns=SLIDE_COLUMNS)
    return table.astype({"width_px": "Int64", "height_px": "Int64", "levels": "Int64", "readable": bool})
