"""Tissue detection on thumbnails: Otsu threshold on saturation (the usual CLAM-style default)."""
from __future__ import annotations

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
