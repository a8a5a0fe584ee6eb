"""Model inputs from MRI volumes: a tumour-centred cubic crop, z-scored per sequence (:func:`tumour_centred_crop`),
and random flips for training (:func:`augment`).

The crop is centred on the tumour's centre of mass (segmentation > 0: labels 1 necrosis, 2 oedema,
3 non-enhancing, 4 enhancing, :mod:`gbhet_lib.mri.volumes`), cut with MONAI's ``SpatialCrop`` and padded with 0
where it leaves the volume (``BorderPad`` on the side that was cut, so the tumour stays at the centre). Intensities
are z-scored per sequence over the brain (the nonzero voxels; skull-stripped BraTS volumes are 0 outside the
brain) with MONAI's ``NormalizeIntensity(nonzero=True, channel_wise=True)``; zeros (outside the brain, pads)
stay 0.

Imports numpy and torch; MONAI when :func:`tumour_centred_crop` runs.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor


def tumour_centre(segmentation: np.ndarray) -> tuple[int, int, int]:
    """The tumour's centre of mass (segmentation > 0), rounded to a voxel (x, y, z). Empty: ValueError."""
    seg = np.asarray(segmentation)
    if seg.ndim != 3:
        raise ValueError(f"segmentation must be a 3-D (X, Y, Z) label volume, got shape {seg.shape}")
    voxels = np.argwhere(seg > 0)
    if len(voxels) == 0:
        raise ValueError("the segmentation is empty (no voxel > 0), so there is no tumour to centre the crop on; "
                         "drop this subject or check that the right segmentation file was read")
    return tuple(int(v) for v in np.floor(voxels.mean(0) + 0.5))  # type: ignore[return-value]


def tumour_centred_crop(image: np.ndarray, segmentation: np.ndarray, size: int,
                        normalise: Literal["brain", "crop"] = "brain") -> np.ndarray:
    """A cubic crop of ``image`` centred on the tumour, z-scored per channel.

    Args:
        image: (C, X, Y, Z) co-registered sequences (e.g. T1, T1-Gd, T2, FLAIR), 0 outside the brain.
        segmentation: (X, Y, Z) tumour labels on the same grid (0 background; any label > 0 is tumour).
        size: voxels per side of the crop (e.g. 32 for the demo model, 128 for the paper-sized one).
        normalise: z-score each channel over the nonzero voxels of the whole volume (``brain``, the usual
            BraTS practice: the tumour keeps its intensity relative to the patient's brain) or over the nonzero
            voxels of the crop (``crop``).

    Returns:
        (C, size, size, size) float32; the voxel at index size // 2 on each axis is the tumour's centre of mass;
        parts of the crop outside the volume are 0.
    """
    from monai.transforms import BorderPad, NormalizeIntensity, SpatialCrop

    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 4:
        raise ValueError(f"image must be (channels, X, Y, Z), got shape {img.shape}; stack the sequences first")
    if np.asarray(segmentation).shape != img.shape[1:]:
        raise ValueError(f"segmentation shape {np.asarray(segmentation).shape} differs from the image's spatial "
                         f"shape {img.shape[1:]}; both must be on one grid (resample the segmentation)")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size={size!r} must be a positive number of voxels")
    if normalise not in ("brain", "crop"):
        raise ValueError(f"normalise={normalise!r} must be 'brain' or 'crop'")
    if not np.isfinite(img).all():
        raise ValueError("image holds NaN or infinite values; fix the volume (e.g. np.nan_to_num) first")
    centre = tumour_centre(segmentation)
    if normalise == "brain":  # the brain's statistics (numpy: MONAI takes seconds on a whole volume), applied below
        mean, sd = brain_statistics(img)
        z_score = NormalizeIntensity(subtrahend=mean, divisor=sd, nonzero=True, channel_wise=True)
    else:
        z_score = NormalizeIntensity(nonzero=True, channel_wise=True)
    start = [c - size // 2 for c in centre]
    end = [s + size for s in start]
    inside_start = [max(0, s) for s in start]
    inside_end = [min(d, e) for d, e in zip(img.shape[1:], end)]
    if any(a >= b for a, b in zip(inside_start, inside_end)):  # cannot happen: the centre is inside
        raise AssertionError("the crop misses the volume")
    crop = SpatialCrop(roi_start=inside_start, roi_end=inside_end)(img)
    border = [n for a, b, s, e in zip(inside_start, inside_end, start, end) for n in (a - s, e - b)]
    if any(border):
        crop = BorderPad(spatial_border=border, mode="constant", value=0)(crop)
    out = z_score(np.asarray(crop.numpy() if hasattr(crop, "numpy") else crop, dtype=np.float32))
    return np.ascontiguousarray(np.asarray(out.numpy() if hasattr(out, "numpy") else out, dtype=np.float32))


def brain_statistics(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per channel, the mean and standard deviation (ddof 0) of the nonzero voxels of (C, X, Y, Z) ``image``;
    a channel without nonzero voxels, or a constant one, gets sd 1 (it is left unscaled)."""
    img = np.asarray(image)
    mean, sd = np.zeros(img.shape[0]), np.ones(img.shape[0])
    for c in range(img.shape[0]):
        values = img[c][img[c] != 0].astype(np.float64)
        if values.size:
            mean[c] = values.mean()
            sd[c] = values.std() or 1.0
    return mean, sd


def augment(batch: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Random flips of (B, C, X, Y, Z) crops: each sample is flipped along each spatial axis with probability ½.

    Left-right flips are safe here only because the target (the tumour's expression profile) does not depend on
    the side of the brain the tumour is in; a target that did (e.g. language deficits) would need the side kept.
    ``generator``: a CPU generator (None: torch's global one). Returns a new tensor on ``batch``'s device.
    """
    if batch.ndim != 5:
        raise ValueError(f"batch must be (batch, channels, X, Y, Z), got shape {tuple(batch.shape)}")
    flips = torch.rand(batch.shape[0], 3, generator=generator) < 0.5
    out = batch
    for axis in range(3):
        chosen = flips[:, axis].to(batch.device)[:, None, None, None, None]
        out = torch.where(chosen, out.flip(2 + axis), out)
    return out
