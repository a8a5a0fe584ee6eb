"""Tissue detection on thumbnails: Otsu threshold on saturation (the usual CLAM-style default); the paper's HLS
stain-hue rule for tumour / neutral patches; tissue outlines as GeoJSON."""
from __future__ import annotations

from typing import Any

import contourpy
import numpy as np
from scipy import ndimage


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of a 1-D sample: the cut that maximises the between-class variance."""
    values = np.asarray(values, dtype=float).ravel()
    if values.size == 0 or np.ptp(values) == 0:
        raise ValueError("Otsu threshold needs at least two distinct values (is the image blank?)")
    hist, edges = np.histogram(values, bins=bins)
    centers = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(hist)
    weight_high = weight_low[-1] - weight_low
    mean_low = np.cumsum(hist * centers) / np.maximum(weight_low, 1)
    mean_high = (np.sum(hist * centers) - np.cumsum(hist * centers)) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(centers[int(np.argmax(between[:-1]))])


def saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation in [0, 1] of an RGB uint8 image (H×W×3)."""
    rgb = rgb.astype(np.float32)
    high, low = rgb.max(axis=-1), rgb.min(axis=-1)
    return np.where(high > 0, (high - low) / np.maximum(high, 1e-6), 0.0)


def tissue_mask(rgb: np.ndarray, min_area_fraction: float = 0.001, median_size: int = 5) -> np.ndarray:
    """Boolean tissue mask of a thumbnail (H×W): median-filtered saturation above its Otsu threshold,
    holes filled, components smaller than ``min_area_fraction`` of the image removed."""
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"expected an RGB image H×W×3, got shape {rgb.shape}")
    sat = ndimage.median_filter(saturation(rgb), size=median_size)
    mask = ndimage.binary_fill_holes(sat > otsu_threshold(sat))
    labels, n = ndimage.label(mask)
    if n:
        sizes = ndimage.sum(mask, labels, index=np.arange(1, n + 1))
        keep = np.flatnonzero(sizes >= min_area_fraction * mask.size) + 1
        mask = np.isin(labels, keep)
    return mask


# The authors' HLS colour rule (reference §2.6): hue windows in degrees, lightness and saturation in [0, 1],
# and the fraction of a patch's pixels that must match.
TUMOR_HUE = (35.0, 15.0)  # brown DAB: centre ± half-width, degrees
NEUTRAL_HUE = (215.0, 15.0)  # blue haematoxylin
LIGHTNESS_RANGE = (0.05, 0.8)
SATURATION_RANGE = (0.0, 1.0)
TUMOR_MIN_FRACTION = 0.20  # 13107.2 of 256² pixels
NEUTRAL_MIN_FRACTION = 0.65  # 42598.4 of 256² pixels


def rgb_to_hls(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue (degrees, [0, 360)), lightness and saturation ([0, 1]) of an RGB uint8 image, as :mod:`colorsys`."""
    rgb = np.asarray(rgb, dtype=np.float32) / 255.0
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    high, low = rgb.max(axis=-1), rgb.min(axis=-1)
    span = high - low
    lightness = (high + low) / 2
    chromatic = span > 0
    safe_span = np.where(chromatic, span, 1.0)
    denominator = np.where(lightness <= 0.5, high + low, 2.0 - high - low)
    sat = np.where(chromatic, span / np.where(chromatic, denominator, 1.0), 0.0)
    hue = np.select([high == red, high == green],
                    [(green - blue) / safe_span, 2.0 + (blue - red) / safe_span],
                    4.0 + (red - green) / safe_span)
    hue = np.where(chromatic, (hue * 60.0) % 360.0, 0.0)
    return hue, lightness, sat


def stain_hue_labels(rgb_patch: np.ndarray) -> str | None:
    """The paper's stain-hue label of one patch (H×W×3 uint8): ``"tumor"``, ``"neutral"`` or ``None``.

    A pixel matches a class when its HLS hue lies within the class's window (tumour 35 ± 15°, neutral 215 ± 15°),
    its lightness in [0.05, 0.8] and its saturation in [0, 1]. The patch is tumour when ≥ 20 % of its pixels match
    the tumour window, else neutral when ≥ 65 % match the neutral window (20 % and 65 % of 256² as in the paper).
    """
    if rgb_patch.ndim != 3 or rgb_patch.shape[-1] != 3:
        raise ValueError(f"expected an RGB patch H×W×3, got shape {rgb_patch.shape}")
    hue, lightness, sat = rgb_to_hls(rgb_patch)
    valid = ((lightness >= LIGHTNESS_RANGE[0]) & (lightness <= LIGHTNESS_RANGE[1])
             & (sat >= SATURATION_RANGE[0]) & (sat <= SATURATION_RANGE[1]))

    def fraction(window: tuple[float, float]) -> float:
        centre, half_width = window
        distance = np.abs((hue - centre + 180.0) % 360.0 - 180.0)  # circular: 355° is 5° from 0°
        return float(np.mean(valid & (distance <= half_width)))

    if fraction(TUMOR_HUE) >= TUMOR_MIN_FRACTION:
        return "tumor"
    if fraction(NEUTRAL_HUE) >= NEUTRAL_MIN_FRACTION:
        return "neutral"
    return None


def tissue_mask_geojson(mask: np.ndarray, downsample: float | tuple[float, float]) -> dict[str, Any]:
    """Tissue outlines of a boolean mask as a GeoJSON FeatureCollection in level-0 pixel coordinates.

    One Polygon feature per connected region (outer ring first, then its holes; rings closed); ``downsample`` is
    level-0 pixels per mask pixel, one number or (x, y). Ring vertices lie on mask pixel edges (marching squares
    through contourpy, matplotlib's contour generator). The properties make QuPath import them as "Tissue".
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {mask.shape}")
    ds_x, ds_y = (downsample, downsample) if np.isscalar(downsample) else downsample
    padded = np.pad(mask, 1).astype(np.float32)  # a zero border closes every contour
    # padded index p is the centre of mask pixel p - 1, i.e. edge coordinate p - 0.5
    x = (np.arange(padded.shape[1]) - 0.5) * ds_x
    y = (np.arange(padded.shape[0]) - 0.5) * ds_y
    generator = contourpy.contour_generator(x, y, padded, fill_type="OuterOffset", corner_mask=True)
    points, offsets = generator.filled(0.5, 1.5)
    features = []
    for polygon_points, ring_starts in zip(points, offsets):
        rings = [np.round(polygon_points[a:b], 2).tolist() for a, b in zip(ring_starts[:-1], ring_starts[1:])]
        features.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": rings},
                         "properties": {"objectType": "annotation", "classification": {"name": "Tissue"}}})
    return {"type": "FeatureCollection", "features": features}
