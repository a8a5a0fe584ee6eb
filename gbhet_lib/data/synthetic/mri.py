"""Synthetic pre-operative brain MRI (BraTS-like) whose tumour sub-regions follow the latent programs.

Each subject gets four co-registered sequences (T1, T1-Gd, T2, FLAIR; :data:`gbhet_lib.mri.volumes.SEQUENCES`) of a
skull-stripped brain and a BraTS 2012–2016 segmentation (1 necrosis, 2 oedema, 3 non-enhancing tumour,
4 enhancing tumour). What each program does (:data:`MRI_PROGRAM_EFFECTS`):

* ``hypoxia``: the necrotic share of the tumour core (logistic, up to ``necrosis_max_share``);
* ``angiogenesis``: the enhancing rim: its share of the viable (non-necrotic) core, hence its thickness, rises and
  the non-enhancing share falls; the rim's T1-Gd intensity rises too;
* ``mesenchymal``: the oedema: its share of the whole abnormality (how far the FLAIR abnormality reaches beyond the
  core) and the irregularity of its margin (finger-like, infiltrative);
* nothing: tumour size (core radius), position, and multifocality (a satellite lesion at a fixed probability: the
  negative control for the ``focal`` trait).

``immune``, ``neural`` and ``proliferation`` are never read (negative controls). Every share also gets
subject-level noise on the logit scale (``share_noise_sd``): biology the programs do not explain.

Sub-region sizes are planted exactly: each region is the set of voxels with the smallest values of a
noise-perturbed distance to the tumour centre, taken in the planted number, so the segmentation's VASARI
proportions (:mod:`gbhet_lib.mri.traits`) follow the planted shares up to the brain's edge and the satellite.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
from scipy import ndimage
from tqdm import tqdm

from ...mri.traits import subregion_volumes_ml, vasari_features
from ...mri.volumes import ENHANCING, LABELS, NECROSIS, NON_ENHANCING, OEDEMA, SEQUENCES, MriVolume, write_mri

MRI_VISIBLE_PROGRAMS: tuple[str, ...] = ("hypoxia", "angiogenesis", "mesenchymal")
MRI_PROGRAM_EFFECTS: dict[str, str] = {
    "hypoxia": "necrotic share of the tumour core (VASARI f7 proportion_necrosis; trait necrosis)",
    "angiogenesis": "enhancing share of the viable core and rim thickness, T1-Gd rim intensity; the non-enhancing "
                    "share falls (f5 proportion_enhancing, f6 proportion_ncet; traits enhancing, ncet)",
    "mesenchymal": "oedema share of the whole abnormality (oedema margin beyond the core) and margin irregularity "
                   "(f14 proportion_edema, f10 t1_flair_ratio, margin_irregularity; traits edema, infiltrative)",
    "proliferation": "none (negative control)",
    "immune": "none (negative control)",
    "neural": "none (negative control)",
    "multifocality": "no program: a satellite lesion at a fixed probability (negative control for trait focal)",
    "tumour size": "no program: core radius drawn uniformly (MriEffects.core_radius_mm)",
}
# Adult brain semi-axes (mm) along X (left-right), Y (posterior-anterior), Z (inferior-superior).
_BRAIN_SEMI_AXES_MM = (68.0, 84.0, 58.0)
# Intensity of each tissue per sequence (T1, T1-Gd, T2, FLAIR), arbitrary units before bias, scale and noise.
_TISSUE = {
    "csf": (330.0, 340.0, 1850.0, 170.0),
    "gm": (720.0, 740.0, 1050.0, 950.0),
    "wm": (960.0, 980.0, 760.0, 780.0),
    "necrosis": (300.0, 330.0, 1650.0, 820.0),
    "oedema": (600.0, 625.0, 1450.0, 1500.0),
    "non_enhancing": (560.0, 600.0, 1250.0, 1350.0),
    "enhancing": (620.0, 1300.0, 1150.0, 1150.0),  # T1-Gd value is scaled by the enhancement factor
}
_STATS = ("core_radius_mm", "necrosis_share", "enhancing_share", "oedema_share", "rim_thickness_mm",
          "oedema_margin_mm", "irregularity", "enhancement", "n_lesions", "satellite_radius_mm",
          "centre_x", "centre_y", "centre_z")


@dataclass(frozen=True)
class MriGeometry:
    """Voxel grid of the synthetic MRI.

    Attributes:
        shape: voxels along X (left→right), Y (posterior→anterior), Z (inferior→superior); each ≥ 16.
        voxel_mm: isotropic voxel edge in mm. 4 mm is coarser than BraTS's 1 mm so that a cohort of ~300 subjects
            stays small (≈ 0.3 MB each) and renders in seconds on 2 CPU cores; 1 mm with ``shape=(192, 224, 160)``
            gives BraTS-sized volumes. The brain (≈ 136×168×116 mm) shrinks to fit smaller fields of view.
    """

    shape: tuple[int, int, int] = (48, 56, 40)
    voxel_mm: float = 4.0

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or any(int(s) != s or s < 16 for s in self.shape):
            raise ValueError(f"MriGeometry.shape={self.shape} must be three integer sizes, each >= 16 voxels")
        if not self.voxel_mm > 0:
            raise ValueError(f"MriGeometry.voxel_mm={self.voxel_mm} must be > 0 (mm, e.g. 4.0 or 1.0)")
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))  # a JSON list reads back equal
        object.__setattr__(self, "voxel_mm", float(self.voxel_mm))


@dataclass(frozen=True)
class MriEffects:
    """How strongly each MRI-visible program shapes the tumour, per unit of activity (standard-normal scale).

    Each share is ``lo + (hi - lo) · σ(slope · (activity − midpoint) + ε)``, with ε ~ N(0, ``share_noise_sd``²)
    drawn per subject (σ is the logistic function).

    Attributes:
        necrosis_max_share, necrosis_slope, necrosis_midpoint: hypoxia → necrotic share of the core (lo = 0).
        enhancing_min_share, enhancing_max_share, enhancing_slope, enhancing_midpoint: angiogenesis → share of the
            viable (non-necrotic) core inside the enhancing rim; the rest is non-enhancing tumour. The rim thickness
            (mm) follows from it.
        enhancement_gain: angiogenesis → relative change of the rim's T1-Gd intensity per unit (clipped to
            0.6–1.8× the base).
        oedema_min_share, oedema_max_share, oedema_slope, oedema_midpoint: mesenchymal → oedema share of the whole
            abnormality (0.5 means the FLAIR abnormality has twice the core's volume).
        irregularity_min, irregularity_max, irregularity_slope: mesenchymal → relative amplitude of the smooth
            noise (σ ≈ 5 mm) that perturbs the oedema boundary (midpoint 0).
        share_noise_sd: logit-scale subject noise of every share and of the irregularity.
        core_radius_mm: range of the core's equivalent-sphere radius (uniform, independent of programs).
        core_roughness: relative amplitude of the smooth noise (σ = 8 mm) that perturbs the core's shape.
        satellite_probability: probability of a second, separate lesion (independent of programs).
        satellite_radius_mm: range of the satellite core's radius (≥ 7 mm keeps it above the 0.5 ml f9 cut-off).
    """

    necrosis_max_share: float = 0.6
    necrosis_slope: float = 1.2
    necrosis_midpoint: float = 0.0
    enhancing_min_share: float = 0.1
    enhancing_max_share: float = 0.95
    enhancing_slope: float = 1.3
    enhancing_midpoint: float = 0.0
    enhancement_gain: float = 0.15
    oedema_min_share: float = 0.05
    oedema_max_share: float = 0.8
    oedema_slope: float = 1.3
    oedema_midpoint: float = -0.2
    irregularity_min: float = 0.02
    irregularity_max: float = 0.4
    irregularity_slope: float = 1.5
    share_noise_sd: float = 0.6
    core_radius_mm: tuple[float, float] = (14.0, 26.0)
    core_roughness: float = 0.12
    satellite_probability: float = 0.25
    satellite_radius_mm: tuple[float, float] = (7.5, 10.0)

    def __post_init__(self) -> None:
        shares = {"necrosis_max_share": self.necrosis_max_share, "enhancing_min_share": self.enhancing_min_share,
                  "enhancing_max_share": self.enhancing_max_share, "oedema_min_share": self.oedema_min_share,
                  "oedema_max_share": self.oedema_max_share, "satellite_probability": self.satellite_probability}
        bad = {k: v for k, v in shares.items() if not 0.0 <= v <= 1.0}
        if bad or self.oedema_max_share >= 1.0:
            raise ValueError(f"MriEffects: {bad or {'oedema_max_share': self.oedema_max_share}} must lie in [0, 1] "
                             "(oedema_max_share < 1: the core is always part of the whole abnormality)")
        if self.enhancing_min_share > self.enhancing_max_share or self.oedema_min_share > self.oedema_max_share \
                or self.irregularity_min > self.irregularity_max:
            raise ValueError("MriEffects: each *_min must be <= its *_max")
        for name in ("core_radius_mm", "satellite_radius_mm"):
            lo, hi = getattr(self, name)
            if not 0.0 < lo <= hi:
                raise ValueError(f"MriEffects.{name}={(lo, hi)} must be (low, high) with 0 < low <= high (mm)")
            object.__setattr__(self, name, (float(lo), float(hi)))  # a JSON list reads back equal
        if self.share_noise_sd < 0 or self.core_roughness < 0 or self.irregularity_min < 0:
            raise ValueError("MriEffects: share_noise_sd, core_roughness and irregularity_min must be >= 0")


@dataclass(frozen=True)
class RenderedMri:
    """One rendered subject.

    Attributes:
        image: float32 (4, X, Y, Z), channels in :data:`~gbhet_lib.mri.volumes.SEQUENCES` order, 0 outside the brain.
        segmentation: uint8 (X, Y, Z), BraTS 2012–2016 labels.
        stats: planted values: ``core_radius_mm`` (mm), ``necrosis_share`` (of the core), ``enhancing_share``
            (of the viable core), ``oedema_share`` (of the whole abnormality), ``rim_thickness_mm`` and
            ``oedema_margin_mm`` (differences of equivalent-sphere radii: enhancing-or-necrotic minus necrotic,
            whole minus core, main lesion), ``irregularity`` (relative oedema-boundary
            noise amplitude), ``enhancement`` (T1-Gd rim factor), ``n_lesions``, ``satellite_radius_mm`` (0 without
            one), ``centre_x``/``centre_y``/``centre_z`` (main tumour centre, voxels).
    """

    image: np.ndarray
    segmentation: np.ndarray
    stats: dict[str, float]


def _sigmoid(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-x)))


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise (σ in voxels) rescaled to zero mean, unit standard deviation (float32).

    For σ ≥ 1.2 voxels the noise is drawn and filtered on a grid 2× (4×, …) coarser, where σ stays ≥ 0.6
    coarse voxels, and upsampled linearly: ~8× cheaper per halving and, at that smoothness, hardly different.
    """
    factor = 1
    while sigma / (2 * factor) >= 0.6:
        factor *= 2
    coarse = tuple(-(-n // factor) + 1 for n in shape)
    field = ndimage.gaussian_filter(rng.standard_normal(coarse, dtype=np.float32), max(sigma / factor, 0.3),
                                    truncate=3.0)
    while factor > 1:
        field = _upsample2(field)
        factor //= 2
    field = np.ascontiguousarray(field[tuple(slice(0, n) for n in shape)])
    return (field - field.mean()) / (field.std() + 1e-8)


def _upsample2(field: np.ndarray) -> np.ndarray:
    """Linear 2× upsampling along every axis (n → 2n − 1 samples per axis; grid points kept)."""
    for axis in range(field.ndim):
        a = np.moveaxis(field, axis, 0)
        out = np.empty((2 * a.shape[0] - 1, *a.shape[1:]), np.float32)
        out[0::2] = a
        out[1::2] = 0.5 * (a[:-1] + a[1:])
        field = np.moveaxis(out, 0, axis)
    return field


def _smallest(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` smallest entries of a 1-D array, sorted ascending by value."""
    k = int(min(max(k, 0), values.size))
    if k == 0:
        return np.empty(0, np.int64)
    idx = np.argpartition(values, k - 1)[:k] if k < values.size else np.arange(values.size)
    return idx[np.argsort(values[idx], kind="stable")]


def _plant_lesion(labels: np.ndarray, rho_core: np.ndarray, rho_oedema: np.ndarray, core_allowed: np.ndarray,
                  oedema_allowed: np.ndarray, n_core: int, necrosis: float, enhancing: float,
                  oedema: float) -> tuple[int, int, int, int]:
    """Label one lesion in place by planted voxel counts; returns the voxel counts (necrosis, rim, core, oedema).

    The core is the ``n_core`` allowed voxels of smallest ``rho_core``: the innermost ``necrosis`` share is label 1,
    the next ``enhancing`` share of the rest label 4, the outermost label 3. Oedema (label 2) is the allowed voxels
    of smallest ``rho_oedema`` in the number that makes it the ``oedema`` share of the lesion.
    """
    flat = labels.reshape(-1)
    cand = np.flatnonzero(core_allowed)
    core = cand[_smallest(rho_core.reshape(-1)[cand], n_core)]
    n_nec = int(round(necrosis * len(core)))
    n_enh = int(round(enhancing * (len(core) - n_nec)))
    flat[core[:n_nec]] = NECROSIS
    flat[core[n_nec:n_nec + n_enh]] = ENHANCING
    flat[core[n_nec + n_enh:]] = NON_ENHANCING
    allowed = oedema_allowed.reshape(-1) & (flat == 0)
    cand = np.flatnonzero(allowed)
    n_oed = int(round(len(core) * oedema / max(1.0 - oedema, 1e-6)))
    picked = cand[_smallest(rho_oedema.reshape(-1)[cand], n_oed)]
    flat[picked] = OEDEMA
    return n_nec, n_enh, len(core), len(picked)


def render_mri(activity: Mapping[str, float], rng: np.random.Generator, geometry: MriGeometry = MriGeometry(),
               effects: MriEffects = MriEffects()) -> RenderedMri:
    """Render one subject's MRI from program activities (only :data:`MRI_VISIBLE_PROGRAMS` are read).

    ``activity`` maps program → activity (standard-normal scale); missing programs count as 0. About 25 ms on the
    default 48×56×40 grid (one CPU core); the work is done inside the brain's bounding box.
    """
    fx = effects
    hyp, ang, mes = (float(activity.get(p, 0.0)) for p in MRI_VISIBLE_PROGRAMS)
    shape = tuple(int(s) for s in geometry.shape)
    vox = float(geometry.voxel_mm)
    ml_per_voxel = vox**3 / 1000.0
    extent = np.array(shape, np.float64) * vox
    semi = np.minimum(np.array(_BRAIN_SEMI_AXES_MM), 0.44 * extent)
    scale = float(np.min(semi / np.array(_BRAIN_SEMI_AXES_MM)))  # < 1 when the field of view is too small
    mid = (np.array(shape, np.float64) - 1.0) / 2.0
    gx, gy, gz = (np.arange(n, dtype=np.float32) for n in shape)
    X, Y, Z = gx[:, None, None], gy[None, :, None], gz[None, None, :]

    # Brain: an ellipsoid with a smooth-noise surface; ``depth_mm`` approximates the distance below the surface.
    ux = ((X - mid[0]) * vox / semi[0]) ** 2
    uy = ((Y - mid[1]) * vox / semi[1]) ** 2
    uz = ((Z - mid[2]) * vox / semi[2]) ** 2
    ellipse = np.sqrt(ux + uy + uz)
    surface = 1.0 + 0.035 * _smooth_noise(rng, shape, 16.0 / vox)
    depth_mm = (surface - ellipse) * float(semi.min())
    brain = depth_mm > 0
    # Everything else happens in the brain's bounding box (plus one voxel): ~40 % of the grid, so ~2.5× faster.
    full_shape = shape
    box = tuple(slice(max(int(i[0]) - 1, 0), min(int(i[-1]) + 2, n)) for i, n in zip(
        (np.flatnonzero(brain.any(axis=(1, 2))), np.flatnonzero(brain.any(axis=(0, 2))),
         np.flatnonzero(brain.any(axis=(0, 1)))), shape))
    offset = np.array([b.start for b in box], np.float64)
    brain, depth_mm = brain[box], depth_mm[box]
    X, Y, Z = X[box[0]], Y[:, box[1]], Z[:, :, box[2]]  # full-grid voxel coordinates of the box
    shape = brain.shape
    # Lateral ventricles: two ellipsoids beside the midline, a little anterior and superior of the centre.
    ventricles = np.zeros(shape, bool)
    size = rng.uniform(0.8, 1.3)
    for side in (-1.0, 1.0):
        cx = mid[0] + side * 13.0 * scale / vox
        cy, cz = mid[1] + 6.0 * scale / vox, mid[2] + 8.0 * scale / vox
        a = np.array([6.5, 26.0, 11.0]) * scale * size / vox
        ventricles |= (((X - cx) / a[0]) ** 2 + ((Y - cy) / a[1]) ** 2 + ((Z - cz) / a[2]) ** 2) <= 1.0
    ventricles &= brain
    # Grey/white matter: white-matter fraction rises with depth below the cortex, perturbed by smooth noise.
    texture = _smooth_noise(rng, shape, 6.0 / vox)
    wm = 1.0 / (1.0 + np.exp(-(depth_mm - 7.0 * scale + 3.0 * texture) / 2.0))

    # Tumour: programs set the shares; size, position and satellite are drawn independently of them.
    eps = rng.normal(0.0, fx.share_noise_sd, 4)
    necrosis = fx.necrosis_max_share * _sigmoid(fx.necrosis_slope * (hyp - fx.necrosis_midpoint) + eps[0])
    enhancing = fx.enhancing_min_share + (fx.enhancing_max_share - fx.enhancing_min_share) * _sigmoid(
        fx.enhancing_slope * (ang - fx.enhancing_midpoint) + eps[1])
    oedema = fx.oedema_min_share + (fx.oedema_max_share - fx.oedema_min_share) * _sigmoid(
        fx.oedema_slope * (mes - fx.oedema_midpoint) + eps[2])
    irregularity = fx.irregularity_min + (fx.irregularity_max - fx.irregularity_min) * _sigmoid(
        fx.irregularity_slope * mes + eps[3])
    enhancement = float(np.clip(1.0 + fx.enhancement_gain * ang, 0.6, 1.8))
    radius = float(rng.uniform(*fx.core_radius_mm)) * scale
    side = 1.0 if rng.random() < 0.5 else -1.0
    hemisphere = (X - mid[0]) * side * vox >= 10.0 * scale
    margin = radius * (1.0 + 2.5 * fx.core_roughness) + 4.0
    candidates = np.flatnonzero(brain & hemisphere & (depth_mm >= margin))
    if len(candidates) == 0:  # a small brain: take the deepest voxels of the hemisphere
        inside = np.flatnonzero((brain & hemisphere).reshape(-1))
        candidates = inside[np.argsort(depth_mm.reshape(-1)[inside])[-max(1, len(inside) // 50):]]
    centre = np.array(np.unravel_index(int(rng.choice(candidates)), shape), np.float64) + offset
    centre += rng.uniform(-0.5, 0.5, 3)  # full-grid voxel coordinates

    shape_noise = _smooth_noise(rng, shape, 8.0 / vox)
    margin_noise = _smooth_noise(rng, shape, 5.0 / vox)
    core_denominator = np.maximum(1.0 + fx.core_roughness * shape_noise, 0.3)
    oedema_denominator = np.maximum(core_denominator + irregularity * margin_noise, 0.3)

    def distance_mm(c: np.ndarray) -> np.ndarray:
        return np.sqrt(((X - c[0]) ** 2 + (Y - c[1]) ** 2 + (Z - c[2]) ** 2)) * vox

    labels = np.zeros(shape, np.uint8)
    dist = distance_mm(centre)
    n_core = int(round(4.0 / 3.0 * np.pi * radius**3 / 1000.0 / ml_per_voxel))
    counts = _plant_lesion(
        labels, dist / core_denominator, dist / oedema_denominator, brain, brain & ~ventricles, n_core, necrosis,
        enhancing, oedema)

    satellite_radius = 0.0
    if rng.random() < fx.satellite_probability:
        main_core = np.isin(labels, (NECROSIS, NON_ENHANCING, ENHANCING))
        keep_out = ndimage.maximum_filter(main_core, size=5)  # two 26-neighbour dilations
        r_sat = float(rng.uniform(*fx.satellite_radius_mm)) * scale
        n_sat = int(round(4.0 / 3.0 * np.pi * r_sat**3 / 1000.0 / ml_per_voxel))
        for _ in range(20):
            direction = rng.standard_normal(3)
            direction /= np.linalg.norm(direction)
            reach = radius * (1.0 + 2.0 * fx.core_roughness) + r_sat + rng.uniform(10.0, 24.0) * scale
            c_sat = centre + direction * reach / vox
            idx = np.round(c_sat - offset).astype(int)
            if np.any(idx < 0) or np.any(idx >= shape) or depth_mm[tuple(idx)] < r_sat + 4.0 or keep_out[tuple(idx)]:
                continue
            d_sat = distance_mm(c_sat)
            allowed = brain & ~keep_out & (labels != NECROSIS) & (labels != ENHANCING) & (labels != NON_ENHANCING)
            if np.count_nonzero(allowed & (d_sat <= r_sat)) < 0.8 * n_sat:
                continue
            _plant_lesion(labels, d_sat / core_denominator, d_sat / oedema_denominator, allowed,
                          brain & ~ventricles, n_sat, necrosis, enhancing, oedema)
            satellite_radius = r_sat
            break

    image = np.zeros((len(SEQUENCES), *full_shape), np.float32)
    image[(slice(None), *box)] = _intensities(rng, labels, brain, ventricles, wm, texture, enhancement, shape)
    segmentation = np.zeros(full_shape, np.uint8)
    segmentation[box] = labels
    # Rim thickness and oedema margin as differences of equivalent-sphere radii (mm) of the main lesion's regions.
    n_nec, n_enh, n_core, n_oed = counts
    r_nec, r_enh, r_core, r_whole = (np.cbrt(3.0 * n * vox**3 / (4.0 * np.pi)) for n in (
        n_nec, n_nec + n_enh, n_core, n_core + n_oed))
    stats = {
        "core_radius_mm": radius, "necrosis_share": necrosis, "enhancing_share": enhancing, "oedema_share": oedema,
        "rim_thickness_mm": r_enh - r_nec, "oedema_margin_mm": r_whole - r_core, "irregularity": irregularity,
        "enhancement": enhancement, "n_lesions": 1.0 + (satellite_radius > 0), "satellite_radius_mm": satellite_radius,
        "centre_x": float(centre[0]), "centre_y": float(centre[1]), "centre_z": float(centre[2]),
    }
    return RenderedMri(image=image, segmentation=segmentation, stats={k: float(v) for k, v in stats.items()})


def _intensities(rng: np.random.Generator, labels: np.ndarray, brain: np.ndarray, ventricles: np.ndarray,
                 wm: np.ndarray, texture: np.ndarray, enhancement: float, shape: tuple[int, int, int]) -> np.ndarray:
    """Tissue intensities per sequence, partial-volume blur, bias field, scanner scale and Rician noise."""
    n_seq = len(SEQUENCES)
    table = {name: np.array(values, np.float32) for name, values in _TISSUE.items()}
    table["enhancing"] = table["enhancing"] * np.array([1.0, enhancement, 1.0, 1.0], np.float32)
    lesion = labels > 0
    tumour_texture = 1.0 + 0.05 * texture
    image = np.empty((n_seq, *shape), np.float32)
    for c in range(n_seq):
        lookup = np.array([0.0, *(table[LABELS[k]][c] for k in sorted(LABELS))], np.float32)
        channel = table["gm"][c] + (table["wm"][c] - table["gm"][c]) * wm
        channel[ventricles] = table["csf"][c]
        image[c] = np.where(lesion, lookup[labels] * tumour_texture, channel)
    image *= brain
    _blur3(image, 0.1)  # partial volume: a [0.1, 0.8, 0.1] kernel along X, Y, Z (σ ≈ 0.45 voxel)
    # Smooth multiplicative bias field per sequence: exp of a random quadratic in coordinates normalised to [-1, 1]
    # (the terms factor into per-axis and one X-Y factor, so it costs a few small arrays), and a scanner scale.
    x, y, z = (np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in shape)
    subject_scale = rng.uniform(0.8, 1.25)
    for c in range(n_seq):
        k = rng.normal(0.0, 0.08, 6).astype(np.float32)
        gain = np.float32(subject_scale * rng.uniform(0.95, 1.05))
        bias = (np.exp(k[0] * x + k[5] * (x**2 - 0.33))[:, None] * np.exp(k[1] * y)[None, :]
                * np.exp(k[3] * x[:, None] * y[None, :]) * gain)
        image[c] *= bias[:, :, None] * np.exp(k[2] * z + k[4] * (z**2 - 0.33))[None, None, :]
    # Rician noise: the magnitude of the signal plus complex Gaussian noise; the background stays exactly 0.
    sigma = np.float32(0.025 * _TISSUE["wm"][0] * subject_scale)
    noise = rng.standard_normal((2, *image.shape), dtype=np.float32)
    noise *= sigma
    image += noise[0]
    np.square(image, out=image)
    np.square(noise[1], out=noise[1])
    image += noise[1]
    np.sqrt(image, out=image)
    image *= brain
    return image


def _blur3(image: np.ndarray, w: float) -> None:
    """In place, convolve axes 1.. of ``image`` with the kernel [w, 1 − 2w, w] (edges replicated)."""
    for axis in range(1, image.ndim):
        def at(sl: slice) -> tuple[slice, ...]:
            return (slice(None),) * axis + (sl,)

        copy = image.copy()
        image *= 1.0 - 2.0 * w
        image[at(slice(1, None))] += w * copy[at(slice(None, -1))]
        image[at(slice(None, -1))] += w * copy[at(slice(1, None))]
        image[at(slice(0, 1))] += w * copy[at(slice(0, 1))]
        image[at(slice(-1, None))] += w * copy[at(slice(-1, None))]


def render_mri_files(folder: Path, activity: pd.DataFrame, seed: np.random.SeedSequence,
                     geometry: MriGeometry = MriGeometry(), effects: MriEffects = MriEffects(),
                     progress: bool = True) -> pd.DataFrame:
    """Render one subject per row of ``activity`` (index = subject id, columns = programs) to NIfTI files.

    Subject ``i`` draws from child ``i`` of ``seed.spawn(len(activity))`` (pass a fresh SeedSequence: spawning
    advances it). Files go to ``<folder>/<subject>/<subject>_<suffix>.nii.gz`` (:func:`gbhet_lib.mri.volumes.write_mri`,
    atomic). Single process: ~70 ms per subject with writing and features, ≈ 0.2 MB per subject on disk.

    Returns a table indexed by ``subject_id``: ``mri_folder`` (``"<folder name>/<subject>"``, relative to
    ``folder``'s parent), the planted stats as ``planted_<stat>`` (:class:`RenderedMri`), the VASARI features of the
    written segmentation (:func:`gbhet_lib.mri.traits.vasari_features`) and ``volume_<region>_ml`` (ml).
    """
    folder = Path(folder)
    if not activity.index.is_unique:
        duplicated = list(activity.index[activity.index.duplicated()].unique()[:5])
        raise ValueError(f"render_mri_files: subject ids {duplicated} appear more than once in the activity index; "
                         "each row is one subject and names its folder")
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    children = seed.spawn(len(activity))
    voxel = (float(geometry.voxel_mm),) * 3
    for key, child in tqdm(zip(activity.index, children), total=len(activity), desc="rendering MRI", unit="subject",
                           disable=not progress):
        sid = str(key)
        rendered = render_mri(activity.loc[key].to_dict(), np.random.default_rng(child), geometry, effects)
        volume = MriVolume(subject_id=sid, image=rendered.image, segmentation=rendered.segmentation, voxel_mm=voxel)
        write_mri(folder / sid, volume)
        row: dict[str, object] = {"subject_id": sid, "mri_folder": f"{folder.name}/{sid}"}
        row.update({f"planted_{k}": v for k, v in rendered.stats.items()})
        row.update(vasari_features(volume.segmentation, voxel, subject_id=sid))
        row.update({f"volume_{k}_ml": v for k, v in subregion_volumes_ml(volume.segmentation, voxel).items()})
        rows.append(row)
    columns = ["subject_id", "mri_folder", *(f"planted_{k}" for k in _STATS)]
    table = pd.DataFrame(rows) if rows else pd.DataFrame(columns=columns)
    return table.set_index("subject_id")
