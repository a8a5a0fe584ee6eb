"""Opening slides with openslide, with errors that say which file and what to do."""
from __future__ import annotations

from pathlib import Path

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


def describe_slides(paths: dict[str, Path]) -> pd.DataFrame:
    """One row per slide (keyed like ``paths``): vendor, level-0 size (px), levels, downsamples, µm/px."""
    rows = {}
    for key, path in paths.items():
        with open_slide(path) as slide:
            rows[key] = {
                "vendor": slide.properties.get(openslide.PROPERTY_NAME_VENDOR, "unknown"),
                "width_px": slide.dimensions[0], "height_px": slide.dimensions[1],
                "levels": slide.level_count,
                "downsamples": ", ".join(f"{d:g}" for d in slide.level_downsamples),
                "mpp": slide_mpp(slide, path),
                "size_mb": round(Path(path).stat().st_size / 1e6, 2),
            }
    return pd.DataFrame.from_dict(rows, orient="index")
