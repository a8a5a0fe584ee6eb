"""VASARI-style imaging traits computed from a tumour segmentation (BraTS labels, see :mod:`.volumes`).

Continuous features (:func:`vasari_features`) approximate these VASARI features (Rios Velazquez et al. 2015;
the feature numbers are those of the VASARI feature set):

* f5 ``proportion_enhancing``: enhancing tumour / tumour core (core = labels 1 + 3 + 4);
* f6 ``proportion_ncet``: non-enhancing tumour / core;
* f7 ``proportion_necrosis``: necrosis / core (with BraTS ≥ 2017 labels, label 1 is NCR/NET and counts here);
* f9 ``n_lesions``: number of separate core lesions of at least 0.5 ml (1 = focal, more = multifocal);
* f10 ``t1_flair_ratio``: core volume / whole FLAIR-abnormal volume (labels 1–4): near 1 is expansive, small is
  infiltrative (FLAIR abnormality far beyond the T1 lesion);
* f14 ``proportion_edema``: oedema / whole abnormality. Because whole = core + oedema, it equals
  ``1 - t1_flair_ratio``; both are kept so each trait reads its own VASARI feature;
* ``margin_irregularity`` (no VASARI number; cf. f13 definition of the enhancing margin): surface / volume of the
  whole abnormality relative to a sphere of the same volume, 1 for a sphere, larger for lobulated or
  finger-like margins.

:func:`binarise_vasari` turns them into the 0/1 traits used by Smedley et al. (2018), one column per trait.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy import ndimage
from skimage import measure

from .volumes import ENHANCING, LABELS, NECROSIS, NON_ENHANCING, check_labels

MIN_LESION_ML = 0.5  # f9: core components smaller than this (ml) are not counted as lesions
PROPORTION_THRESHOLD = 1.0 / 3.0  # f5, f6, f7, f14: a sub-region is "present" when it is >= 1/3 of its reference
# f10: a lesion is infiltrative when the core is less than half of the FLAIR-abnormal volume, i.e. the FLAIR
# abnormality is more than twice the T1 lesion (its radius more than 1.26× the core's): well beyond the T1 lesion.
INFILTRATIVE_T1_FLAIR_RATIO = 0.5
TRAITS: tuple[str, ...] = ("enhancing", "ncet", "necrosis", "focal", "infiltrative", "edema")
FEATURES: tuple[str, ...] = ("proportion_enhancing", "proportion_ncet", "proportion_necrosis", "proportion_edema",
                             "n_lesions", "t1_flair_ratio", "margin_irregularity")
_CORE = (NECROSIS, NON_ENHANCING, ENHANCING)


def _voxel_ml(voxel_mm: Sequence[float]) -> float:
    voxel = tuple(float(v) for v in voxel_mm)
    if len(voxel) != 3 or not all(v > 0 for v in voxel):
        raise ValueError(f"voxel_mm={voxel_mm} must be three positive voxel sizes in mm")
    return voxel[0] * voxel[1] * voxel[2] / 1000.0


def subregion_volumes_ml(segmentation: np.ndarray, voxel_mm: Sequence[float]) -> dict[str, float]:
    """Sub-region volumes in ml (cm³) of a (X, Y, Z) label map with voxel size ``voxel_mm`` (mm).

    Keys: ``necrosis``, ``oedema``, ``non_enhancing``, ``enhancing`` (one label each), ``core`` (1 + 3 + 4) and
    ``whole`` (1 + 2 + 3 + 4).
    """
    seg = np.asarray(segmentation)
    if seg.ndim != 3:
        raise ValueError(f"segmentation has shape {seg.shape}; expected a 3-D label map (X, Y, Z)")
    check_labels(seg)
    ml = _voxel_ml(voxel_mm)
    counts = np.bincount(seg.astype(np.int64).ravel(), minlength=5)
    out = {name: float(counts[label] * ml) for label, name in LABELS.items()}
    out["core"] = float(counts[list(_CORE)].sum() * ml)
    out["whole"] = float(counts[1:].sum() * ml)
    return out


def vasari_features(segmentation: np.ndarray, voxel_mm: Sequence[float], subject_id: str | None = None,
                    min_lesion_ml: float = MIN_LESION_ML) -> dict[str, float]:
    """Continuous VASARI-style features of one segmentation (see the module docstring for each).

    ``n_lesions`` counts 26-connected components of the core (labels 1, 3, 4) of at least ``min_lesion_ml`` ml
    (specks below it are segmentation noise, not lesions); the largest component always counts, so it is ≥ 1.
    ``margin_irregularity`` uses a marching-cubes surface of the whole abnormality (in mm, so anisotropic voxels
    are handled).

    Raises:
        ValueError: no tumour core (labels 1, 3 or 4) — the proportions are undefined; names ``subject_id``.
    """
    seg = np.asarray(segmentation)
    volumes = subregion_volumes_ml(seg, voxel_mm)
    if volumes["core"] <= 0:
        who = f"subject {subject_id}: " if subject_id is not None else ""
        raise ValueError(f"{who}segmentation has no tumour core (labels 1, 3 or 4; whole abnormality "
                         f"{volumes['whole']:.2f} ml), so the VASARI proportions are undefined. Leave this subject "
                         "out of the trait table or fix its segmentation")
    core, whole = volumes["core"], volumes["whole"]
    core_mask = np.isin(seg, _CORE)
    components, n = ndimage.label(core_mask, structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(components.ravel(), minlength=n + 1)[1:] * _voxel_ml(voxel_mm)
    return {
        "proportion_enhancing": volumes["enhancing"] / core,
        "proportion_ncet": volumes["non_enhancing"] / core,
        "proportion_necrosis": volumes["necrosis"] / core,
        "proportion_edema": volumes["oedema"] / whole,
        "n_lesions": float(max(1, np.sum(sizes >= min_lesion_ml))),
        "t1_flair_ratio": core / whole,
        "margin_irregularity": margin_irregularity(seg > 0, voxel_mm),
    }


def margin_irregularity(mask: np.ndarray, voxel_mm: Sequence[float]) -> float:
    """Surface area / area of a sphere of the same volume, for a boolean (X, Y, Z) mask (1 for a sphere).

    The mask is smoothed (Gaussian, σ = 0.7 voxel) to remove the voxel staircase, then meshed by marching cubes at
    the 0.5 level in mm (anisotropic voxels are handled); area and enclosed volume both come from that mesh. It is
    the reciprocal of sphericity: a voxelised sphere of radius ≥ 3 voxels scores within 3 % of 1, a 10:4:4
    ellipsoid about 1.15 (exact 1.13), lobulated or finger-like margins more.
    """
    mask = np.asarray(mask, bool)
    if not mask.any():
        raise ValueError("margin_irregularity: the mask is empty")
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(mask))
    smooth = ndimage.gaussian_filter(np.pad(mask[box], 3).astype(np.float32), 0.7)
    if smooth.max() <= 0.5:  # a lone voxel or a thread: nothing survives smoothing at the 0.5 level
        smooth = np.pad(mask[box], 3).astype(np.float32)
    spacing = tuple(float(v) for v in voxel_mm)
    verts, faces, _, _ = measure.marching_cubes(smooth, level=0.5, spacing=spacing)
    area = measure.mesh_surface_area(verts, faces)
    tri = verts[faces]
    volume = abs(float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum()) / 6.0)
    sphere_area = np.pi ** (1.0 / 3.0) * (6.0 * volume) ** (2.0 / 3.0)
    return float(area / sphere_area)


def binarise_vasari(features: pd.DataFrame) -> pd.DataFrame:
    """0/1 traits from a table of :func:`vasari_features` (one row per subject), following Smedley et al.

    Each trait reads one column:

    * ``trait_enhancing``: f5 ``proportion_enhancing`` ≥ 1/3;
    * ``trait_ncet``: f6 ``proportion_ncet`` ≥ 1/3;
    * ``trait_necrosis``: f7 ``proportion_necrosis`` ≥ 1/3;
    * ``trait_edema``: f14 ``proportion_edema`` ≥ 1/3;
    * ``trait_focal``: f9 ``n_lesions`` == 1 (focal; 0 = multifocal);
    * ``trait_infiltrative``: f10 ``t1_flair_ratio`` < :data:`INFILTRATIVE_T1_FLAIR_RATIO`.

    Returns int64 columns ``trait_<name>`` for each name in :data:`TRAITS`, with the input's index.

    Raises:
        ValueError: a needed column is missing or holds missing values (the subjects are named).
    """
    rules = {
        "enhancing": ("proportion_enhancing", lambda x: x >= PROPORTION_THRESHOLD),
        "ncet": ("proportion_ncet", lambda x: x >= PROPORTION_THRESHOLD),
        "necrosis": ("proportion_necrosis", lambda x: x >= PROPORTION_THRESHOLD),
        "focal": ("n_lesions", lambda x: x == 1),
        "infiltrative": ("t1_flair_ratio", lambda x: x < INFILTRATIVE_T1_FLAIR_RATIO),
        "edema": ("proportion_edema", lambda x: x >= PROPORTION_THRESHOLD),
    }
    out = {}
    for trait in TRAITS:
        column, rule = rules[trait]
        if column not in features.columns:
            raise ValueError(f"binarise_vasari: column {column!r} (needed for trait_{trait}) is missing; the table has "
                             f"{list(features.columns)}. Compute it with gbhet_lib.mri.traits.vasari_features")
        values = pd.to_numeric(features[column], errors="coerce")
        if values.isna().any():
            bad = list(features.index[values.isna()][:5])
            raise ValueError(f"binarise_vasari: column {column!r} is missing or non-numeric for {bad}"
                             f"{' …' if values.isna().sum() > 5 else ''}; drop those subjects first")
        out[f"trait_{trait}"] = rule(values.to_numpy(dtype=np.float64)).astype(np.int64)
    return pd.DataFrame(out, index=features.index)
