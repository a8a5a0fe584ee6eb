"""Synthetic H&E whole-slide images whose textures are driven by the image-visible programs.

The renderer builds haematoxylin (H) and eosin (E) optical-density maps and composes RGB by
Beer–Lambert (RGB = 255·exp(−(H·h + E·e)) with Ruifrok–Johnston stain vectors), so stain variation
between slides behaves like real stain variation. What each visible program does:

* ``hypoxia``: area of eosinophilic, acellular necrotic foci (few nuclei, karyorrhectic debris) ringed by dense
  pseudopalisading nuclei;
* ``proliferation``: nuclear density and hyperchromasia;
* ``angiogenesis``: vessel density, wall thickness and glomeruloid tufts.

Invisible programs are never read. Slides are written as pyramidal, 256×256 JPEG-tiled TIFFs with
µm/px in the resolution tags, which openslide opens as ``generic-tiff``. Beside each slide,
``<slide_id>.structures.npz`` holds maps of what was planted (:attr:`RenderedSlide.structures`, on the coarse
grid), so a reader can check whether a model's hot patches fall on necrosis, vessels or dense nuclei.
"""
from __future__ import annotations

import concurrent.futures as futures
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
import tifffile
from PIL import Image
from scipy import ndimage
from tqdm import tqdm

from ...io import atomic_path

_H_VECTOR = np.array([0.650, 0.704, 0.286], np.float32)  # Ruifrok & Johnston 2001
_E_VECTOR = np.array([0.072, 0.990, 0.105], np.float32)
_BLOOD_VECTOR = np.array([0.08, 1.15, 0.95], np.float32)  # erythrocytes: absorb green and blue, pass red
_COARSE = 8  # coarse grid step (level-0 px) for smooth fields
STRUCTURES_SUFFIX = ".structures.npz"  # planted-structure maps beside each slide: <slide_id>.structures.npz
STRUCTURE_NAMES = ("necrosis", "vessels", "cellularity", "tissue")


@dataclass(frozen=True)
class SlideGeometry:
    """Size and pyramid of a synthetic slide.

    Attributes:
        width, height: level-0 size in pixels (multiples of ``coarse step × largest downsample`` are safest).
        mpp: level-0 microns per pixel (0.5 ≈ 20× objective).
        level_downsamples: downsample of each pyramid level relative to level 0.
        tile: TIFF tile edge in pixels.
        jpeg_quality: JPEG quality of the tiles (1–100).
    """

    width: int = 4096
    height: int = 3072
    mpp: float = 0.5
    level_downsamples: tuple[int, ...] = (1, 4, 16)
    tile: int = 256
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        if self.width < 256 or self.height < 256 or self.width % _COARSE or self.height % _COARSE:
            raise ValueError(f"slide size {self.width}x{self.height} px must be >= 256 and a multiple of {_COARSE}")
        if self.mpp <= 0:
            raise ValueError(f"mpp={self.mpp} must be > 0 (level-0 microns per pixel, e.g. 0.5 for 20x)")
        ds = self.level_downsamples
        if not ds or ds[0] != 1 or any(b <= a or b % a for a, b in zip(ds, ds[1:])):
            raise ValueError(f"level_downsamples={ds} must start at 1 and each must be a larger multiple of the "
                             "previous one, e.g. (1, 4, 16)")


@dataclass(frozen=True)
class ProgramEffects:
    """How strongly each image-visible program changes the pixels, per unit of activity (standard-normal scale).

    Attributes:
        necrosis_max_fraction: hypoxia: the necrotic share of the tissue approaches this at high activity ...
        necrosis_slope, necrosis_midpoint: ... along a logistic curve of this slope, half-way at this activity.
        palisade_um: width of the band of dense nuclei around necrosis (µm); its nuclear density is
            ``palisade_density`` × the tissue's.
        nuclear_density_log: proliferation: natural-log change of nuclear density per unit (exp(0.45) = 1.57×).
        nuclear_density_per_um2: nuclear density of viable tissue at zero proliferation (nuclei per µm²).
        hyperchromasia: proliferation: added haematoxylin optical density of nuclei per unit.
        vessel_density_slope: angiogenesis: vessel density is ``vessels_per_mm2`` × 2σ(slope × activity), from
            0 to twice the base. With slope 0.8 it is nearly linear over ±2 and still changes at ±3.5, the range
            lineage activities reach (patient sd 1, lineage sd 0.7); a log-linear density would make vessel area
            grow exponentially and a steep one would saturate, and no linear read-out of the pixels follows either.
        vessels_per_mm2: vessel density at zero angiogenesis (per mm² of viable tissue).
        glomeruloid_midpoint: angiogenesis at which half of the vessels are glomeruloid tufts (3–5 lumens).
        wall_thickening: relative endothelial wall thickening per unit of positive angiogenesis.
    """

    necrosis_max_fraction: float = 0.5
    necrosis_slope: float = 0.8
    necrosis_midpoint: float = 0.0
    palisade_um: float = 45.0
    palisade_density: float = 2.6
    nuclear_density_log: float = 0.45
    nuclear_density_per_um2: float = 0.0022
    hyperchromasia: float = 0.12
    vessel_density_slope: float = 0.8
    vessels_per_mm2: float = 40.0
    glomeruloid_midpoint: float = 1.0
    wall_thickening: float = 0.25


@dataclass(frozen=True)
class RenderedSlide:
    """Level-0 RGB pixels (H×W×3 uint8) and what was drawn (fractions are of the slide area).

    ``structures``: maps of what was planted, float32 on the coarse grid (one value per ``_COARSE``×``_COARSE``
    block of level-0 pixels, shape (H // 8, W // 8)): ``necrosis`` (necrotic share of the block, 0–1),
    ``vessels`` (share inside a vessel wall or lumen, 0–1), ``cellularity`` (intact nuclei seeded in the block:
    the Poisson count, 0 in necrosis, whose nuclei are debris) and ``tissue`` (1 where at least half of the
    block is tissue, else 0).
    """

    rgb: np.ndarray
    stats: dict[str, float]
    structures: dict[str, np.ndarray] = field(default_factory=dict)


def render_slide(
    activity: Mapping[str, float], rng: np.random.Generator, geometry: SlideGeometry = SlideGeometry(),
    effects: ProgramEffects = ProgramEffects(),
) -> RenderedSlide:
    """Render one slide from program activities (only the visible programs are used).

    ``activity`` maps program name → activity (standard-normal scale); missing visible programs count as 0.
    ``effects`` sets how strongly each program shows (:class:`ProgramEffects`).
    """
    fx = effects
    hyp = float(activity.get("hypoxia", 0.0))
    pro = float(activity.get("proliferation", 0.0))
    ang = float(activity.get("angiogenesis", 0.0))
    h, w, mpp = geometry.height, geometry.width, geometry.mpp
    coarse_shape = (h // _COARSE, w // _COARSE)
    coarse_um = _COARSE * mpp

    # Tissue: a noisy ellipse covering roughly half of the slide.
    yy, xx = np.mgrid[0:coarse_shape[0], 0:coarse_shape[1]].astype(np.float32)
    cy, cx = coarse_shape[0] * rng.uniform(0.45, 0.55), coarse_shape[1] * rng.uniform(0.45, 0.55)
    ry, rx = coarse_shape[0] * rng.uniform(0.36, 0.44), coarse_shape[1] * rng.uniform(0.34, 0.42)
    radius = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
    tissue_score = 1.0 - radius + 0.18 * _smooth_noise(rng, coarse_shape, 60.0 / coarse_um)
    # Necrosis: the top fraction of a smooth field inside tissue; the fraction grows with hypoxia.
    necrosis_fraction = fx.necrosis_max_fraction / (1.0 + np.exp(-fx.necrosis_slope * (hyp - fx.necrosis_midpoint)))
    necrosis_field = _smooth_noise(rng, coarse_shape, 90.0 / coarse_um)
    inside = tissue_score > 0.08
    cut = np.quantile(necrosis_field[inside], 1.0 - necrosis_fraction) if necrosis_fraction > 1e-3 else np.inf
    necrosis_score = necrosis_field - cut

    tissue = _upsample(tissue_score, _COARSE) > 0
    necrosis = tissue & (_upsample(necrosis_score, _COARSE) > 0)
    coarse_necrosis = (tissue_score > 0) & (necrosis_score > 0)
    dist_um = ndimage.distance_transform_edt(~coarse_necrosis) * coarse_um
    palisade = (tissue_score > 0) & ~coarse_necrosis & (dist_um < fx.palisade_um) & coarse_necrosis.any()

    # Stroma: fibrillary eosinophilic background with faint haematoxylin.
    texture = _upsample(_smooth_noise(rng, coarse_shape, 1.5), _COARSE)
    stain_h = np.where(tissue, 0.08 + 0.02 * texture, 0.012).astype(np.float32)
    stain_e = np.where(tissue, 0.34 + 0.07 * texture, 0.018).astype(np.float32)
    # Necrosis: homogeneous, eosinophilic (pinker than viable tissue), no haematoxylin haze.
    stain_e[necrosis] = 0.38 + 0.02 * texture[necrosis]
    stain_h[necrosis] = 0.02

    # Nuclei: Poisson counts per coarse cell from a density map (per µm²).
    density = fx.nuclear_density_per_um2 * np.exp(fx.nuclear_density_log * pro) * (tissue_score > 0)
    density = np.where(coarse_necrosis, 0.3 * density, np.where(palisade, fx.palisade_density * density, density))
    n_per_cell = rng.poisson(density * coarse_um**2)
    cell_y, cell_x = np.nonzero(n_per_cell)
    reps = n_per_cell[cell_y, cell_x]
    ny = (np.repeat(cell_y, reps) + rng.random(reps.sum())) * _COARSE
    nx = (np.repeat(cell_x, reps) + rng.random(reps.sum())) * _COARSE
    in_necrosis = coarse_necrosis[np.repeat(cell_y, reps), np.repeat(cell_x, reps)]
    darkness = (0.55 + fx.hyperchromasia * pro) * rng.uniform(0.75, 1.25, len(ny))
    _stamp_nuclei(stain_h, ny, nx, darkness, ~in_necrosis, mpp, rng)

    blood = np.zeros_like(stain_h)
    vessel_mask = np.zeros((h, w), bool)
    n_vessels = _draw_vessels(stain_h, stain_e, blood, tissue & ~necrosis, ang, mpp, rng, fx, vessel_mask)

    grain = rng.standard_normal((h, w), dtype=np.float32)
    stain_h += 0.015 * grain
    stain_e -= 0.015 * grain
    rgb = _compose_rgb(stain_h, stain_e, blood, rng)
    stats = {
        "tissue_fraction": float(tissue.mean()),
        "necrosis_fraction_of_tissue": float(necrosis.sum() / max(tissue.sum(), 1)),
        "nuclei": int(len(ny)),
        "nuclei_per_mm2_tissue": float(len(ny) / max(tissue.sum() * (mpp * 1e-3) ** 2, 1e-12)),
        "vessels": int(n_vessels),
    }
    structures = {
        "necrosis": _block_fraction(necrosis),
        "vessels": _block_fraction(vessel_mask),
        "cellularity": np.where(coarse_necrosis, 0, n_per_cell).astype(np.float32),
        "tissue": (_block_fraction(tissue) >= 0.5).astype(np.float32),
    }
    return RenderedSlide(rgb=rgb, stats=stats, structures=structures)


def _compose_rgb(stain_h: np.ndarray, stain_e: np.ndarray, blood: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Beer–Lambert composition with per-slide stain-vector jitter (stain variation between slides)."""
    scale = np.float32(rng.uniform(0.9, 1.1))
    h_vec = _H_VECTOR * rng.uniform(0.88, 1.12, 3).astype(np.float32) * scale
    e_vec = _E_VECTOR * rng.uniform(0.88, 1.12, 3).astype(np.float32) * scale
    rgb = np.empty(stain_h.shape + (3,), np.uint8)
    for c in range(3):
        channel = stain_h * -h_vec[c]
        channel -= stain_e * e_vec[c]
        channel -= blood * _BLOOD_VECTOR[c]
        np.minimum(channel, 0.0, out=channel)  # grain may push a stain below zero: OD is never negative
        np.exp(channel, out=channel)
        channel *= 255.0
        rgb[..., c] = channel  # values lie in (0, 255]
    return rgb


def write_pyramidal_tiff(path: str | Path, rgb: np.ndarray, geometry: SlideGeometry, description: str = "") -> Path:
    """Write ``rgb`` (H×W×3 uint8, level 0) as a tiled JPEG pyramidal TIFF with µm/px resolution tags.

    Each level is a full-resolution IFD (``subfiletype`` 1 for reduced levels), the layout openslide's
    generic-tiff driver reads; the resolution tags are pixels per centimetre, so openslide reports
    ``openslide.mpp-x``/``mpp-y``.
    """
    path = Path(path)
    with tifffile.TiffWriter(path, bigtiff=False) as tif:
        previous, previous_ds = rgb, 1
        for i, ds in enumerate(geometry.level_downsamples):
            level = previous if ds == previous_ds else _block_mean(previous, ds // previous_ds)
            px_per_cm = 1e4 / (geometry.mpp * ds)
            tif.write(
                np.ascontiguousarray(level), photometric="rgb", tile=(geometry.tile, geometry.tile),
                compression="jpeg", compressionargs={"level": geometry.jpeg_quality},
                subfiletype=0 if i == 0 else 1, resolution=(px_per_cm, px_per_cm), resolutionunit="CENTIMETER",
                description=description if i == 0 else None, metadata=None, software="gbhet_lib",
            )
            previous, previous_ds = level, ds
    return path


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to unit standard deviation (float32)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma, mode="reflect")
    return (field - field.mean()) / (field.std() + 1e-8)


def _upsample(field: np.ndarray, factor: int) -> np.ndarray:
    """Bilinear upsampling of a coarse field by an integer factor (float32; Pillow is ~10× faster than scipy)."""
    image = Image.fromarray(np.ascontiguousarray(field, dtype=np.float32), mode="F")
    size = (field.shape[1] * factor, field.shape[0] * factor)
    return np.asarray(image.resize(size, Image.Resampling.BILINEAR), dtype=np.float32)


def _block_fraction(mask: np.ndarray, factor: int = _COARSE) -> np.ndarray:
    """Share of each ``factor``×``factor`` block of a level-0 boolean mask that is set (float32, coarse grid)."""
    h, w = mask.shape
    return mask.reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3), dtype=np.float32)


def _block_mean(rgb: np.ndarray, factor: int) -> np.ndarray:
    h, w = (rgb.shape[0] // factor) * factor, (rgb.shape[1] // factor) * factor
    blocks = rgb[:h, :w].reshape(h // factor, factor, w // factor, factor, 3)
    return blocks.mean(axis=(1, 3)).round().astype(np.uint8)


def _nucleus_stamps(mpp: float, rng: np.random.Generator, radii_um: tuple[float, float], n: int) -> list:
    """Elliptical stamps (dy, dx, profile) with random size, elongation and orientation."""
    stamps = []
    for _ in range(n):
        a = rng.uniform(*radii_um) / mpp
        b = a * rng.uniform(0.55, 1.0)
        theta = rng.uniform(0, np.pi)
        r = int(np.ceil(a))
        dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
        u = (dx * np.cos(theta) + dy * np.sin(theta)) / a
        v = (-dx * np.sin(theta) + dy * np.cos(theta)) / b
        rho2 = u**2 + v**2
        inside = rho2 <= 1.0
        stamps.append((dy[inside], dx[inside], (1.0 - 0.35 * rho2[inside]).astype(np.float32)))
    return stamps


def _stamp_nuclei(stain_h: np.ndarray, ny: np.ndarray, nx: np.ndarray, darkness: np.ndarray,
                  intact: np.ndarray, mpp: float, rng: np.random.Generator) -> None:
    """Add nuclei to the H map in place: intact nuclei 3–5.5 µm radius, debris 1–2 µm."""
    h, w = stain_h.shape
    for mask, stamps in ((intact, _nucleus_stamps(mpp, rng, (3.0, 5.5), 16)),
                         (~intact, _nucleus_stamps(mpp, rng, (1.0, 2.0), 6))):
        idx = np.flatnonzero(mask)
        choice = rng.integers(0, len(stamps), len(idx))
        for k, (dy, dx, profile) in enumerate(stamps):
            sel = idx[choice == k]
            if len(sel) == 0:
                continue
            yy = np.clip(ny[sel, None].astype(np.int64) + dy[None], 0, h - 1)
            xx = np.clip(nx[sel, None].astype(np.int64) + dx[None], 0, w - 1)
            value = darkness[sel, None] * profile[None]
            stain_h[yy, xx] = np.maximum(stain_h[yy, xx], value)


def _draw_vessels(stain_h: np.ndarray, stain_e: np.ndarray, blood: np.ndarray, allowed: np.ndarray, ang: float,
                  mpp: float, rng: np.random.Generator, fx: ProgramEffects, mask: np.ndarray | None = None) -> int:
    """Draw vessels (lumen with red cells, endothelial wall) in place; returns how many were drawn.

    ``mask`` (level-0 bool, optional) is set wherever a wall or lumen is drawn; it draws nothing from ``rng``.
    """
    h, w = allowed.shape
    area_mm2 = allowed.sum() * (mpp * 1e-3) ** 2
    relative_density = 2.0 / (1.0 + np.exp(-fx.vessel_density_slope * ang))
    n_sites = rng.poisson(area_mm2 * fx.vessels_per_mm2 * relative_density)
    ys, xs = np.nonzero(allowed[::_COARSE, ::_COARSE])
    if n_sites == 0 or len(ys) == 0:
        return 0
    pick = rng.integers(0, len(ys), n_sites)
    glomeruloid_p = 1.0 / (1.0 + np.exp(-2.0 * (ang - fx.glomeruloid_midpoint)))
    drawn = 0
    for cy, cx in zip(ys[pick] * _COARSE, xs[pick] * _COARSE):
        n_tuft = int(rng.integers(3, 6)) if rng.random() < glomeruloid_p else 1
        for _ in range(n_tuft):
            oy, ox = (rng.normal(0, 12.0 / mpp, 2) if n_tuft > 1 else (0.0, 0.0))
            lumen = rng.uniform(5.0, 16.0) / mpp / (1.6 if n_tuft > 1 else 1.0)
            wall = rng.uniform(2.0, 4.0) * (1.0 + fx.wall_thickening * max(ang, 0.0)) / mpp
            outer = lumen + wall
            y0, x0 = int(cy + oy), int(cx + ox)
            r = int(np.ceil(outer)) + 1
            ya, yb, xa, xb = max(y0 - r, 0), min(y0 + r + 1, h), max(x0 - r, 0), min(x0 + r + 1, w)
            if ya >= yb or xa >= xb:
                continue
            dy, dx = np.ogrid[ya - y0:yb - y0, xa - x0:xb - x0]
            rr = np.sqrt(dy**2 + dx**2 * rng.uniform(0.6, 1.0))
            in_wall = (rr <= outer) & (rr > lumen)
            in_lumen = rr <= lumen
            sub_h, sub_e = stain_h[ya:yb, xa:xb], stain_e[ya:yb, xa:xb]
            sub_h[in_wall] = np.maximum(sub_h[in_wall], 0.45)
            sub_e[in_wall] = 0.42
            filled = rng.random() < 0.75
            sub_h[in_lumen] = 0.02
            sub_e[in_lumen] = 0.05 if filled else 0.03
            if filled:
                blood[ya:yb, xa:xb][in_lumen] = rng.uniform(0.7, 1.0)
            if mask is not None:
                mask[ya:yb, xa:xb] |= in_wall | in_lumen
            drawn += 1
    return drawn


def render_slide_files(folder: Path, activity: pd.DataFrame, geometry: SlideGeometry,
                       seed: np.random.SeedSequence, n_jobs: int | None = None, progress: bool = True,
                       description: str = "gbhet slide",
                       effects: ProgramEffects = ProgramEffects()) -> dict[str, dict[str, float]]:
    """Render one slide per row of ``activity`` (samples × visible programs) to ``folder/<row id>.tiff``.

    Row ``i`` draws from child ``i`` of ``seed``, so the pixels do not depend on ``n_jobs`` (worker
    processes; default up to 2). Every file is written atomically. Returns slide file → render statistics.
    """
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(folder, sid, activity.loc[sid].to_dict(), geometry, s, description, effects)
            for sid, s in zip(activity.index, seed.spawn(len(activity)))]
    n_jobs = n_jobs or min(2, os.cpu_count() or 1)
    stats: dict[str, dict[str, float]] = {}
    with tqdm(total=len(jobs), desc="rendering slides", unit="slide", disable=not progress) as bar:
        if n_jobs == 1:
            results = map(_render_to_file, *zip(*jobs))
            for name, st in results:
                stats[name] = st
                bar.update()
        else:
            with futures.ProcessPoolExecutor(max_workers=n_jobs) as pool:
                for name, st in pool.map(_render_to_file, *zip(*jobs)):
                    stats[name] = st
                    bar.update()
    return dict(sorted(stats.items()))


def render_lineage_slides(folder: Path, activity: pd.DataFrame, slides_per_lineage: int, geometry: SlideGeometry,
                          seed: np.random.SeedSequence, n_jobs: int | None = None, progress: bool = True,
                          description: str = "gbhet slide", effects: ProgramEffects = ProgramEffects(),
                          ) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """Render ``slides_per_lineage`` sections of every lineage (row of ``activity``: lineages × visible programs).

    Sections of one lineage share its program activities and nothing else: each draws its own tissue outline,
    necrosis and vessel fields, nuclei and stain vectors (a separate section or xenograft mouse, stained on its
    own), so slide, lineage and patient are three levels. Slide ``k`` of lineage ``L`` is ``slides/L-S<k>.tiff``.

    Returns the cohort's slide table (:func:`gbhet_lib.data.cohort.slide_table`) and slide file → render statistics.
    """
    from ..cohort import SLIDES, slide_table

    if slides_per_lineage < 1:
        raise ValueError(f"slides_per_lineage={slides_per_lineage} must be at least 1")
    slide_ids = [f"{lid}-S{k + 1}" for lid in activity.index for k in range(slides_per_lineage)]
    per_slide = activity.loc[np.repeat(activity.index.to_numpy(), slides_per_lineage)].set_axis(slide_ids)
    stats = render_slide_files(folder, per_slide, geometry, seed, n_jobs, progress, description, effects)
    files = {str(lid): [f"{SLIDES}/{lid}-S{k + 1}.tiff" for k in range(slides_per_lineage)] for lid in activity.index}
    return slide_table(files), stats


def _render_to_file(folder: Path, sample_id: str, activity: dict[str, float], geometry: SlideGeometry,
                    seed: np.random.SeedSequence, description: str,
                    effects: ProgramEffects) -> tuple[str, dict[str, float]]:
    slide = render_slide(activity, np.random.default_rng(seed), geometry, effects)
    target = folder / f"{sample_id}.tiff"
    with atomic_path(target) as tmp:
        write_pyramidal_tiff(tmp, slide.rgb, geometry, description=f"{description} {sample_id}")
    write_structures(structures_path(target), slide.structures, geometry.mpp)
    return target.name, slide.stats


def structures_path(slide_file: str | Path) -> Path:
    """Where the planted-structure maps of a slide file live: ``<folder>/<stem>.structures.npz``."""
    slide_file = Path(slide_file)
    return slide_file.with_name(slide_file.stem + STRUCTURES_SUFFIX)


def write_structures(path: str | Path, structures: Mapping[str, np.ndarray], mpp: float,
                     coarse_step: int = _COARSE) -> Path:
    """Write planted-structure maps atomically as a compressed npz (maps as float16, plus ``coarse_step``: level-0
    pixels per map cell, and ``mpp``: level-0 µm/px)."""
    arrays = {name: np.asarray(m, dtype=np.float16) for name, m in structures.items()}
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:  # a file handle: numpy would append .npz to a name
        np.savez_compressed(handle, **arrays, coarse_step=np.int64(coarse_step), mpp=np.float64(mpp))
    return Path(path)


def read_structures(path: str | Path) -> dict[str, np.ndarray] | None:
    """Planted-structure maps written by :func:`write_structures` (float32), with ``coarse_step`` (int) and ``mpp``
    (float) when present; None when the file does not exist (a real slide, or a cohort made before the maps)."""
    path = Path(path)
    if not path.is_file():
        return None
    with np.load(path) as saved:
        out: dict = {name: saved[name].astype(np.float32) for name in saved.files if name not in ("coarse_step", "mpp")}
        out["coarse_step"] = int(saved["coarse_step"]) if "coarse_step" in saved.files else _COARSE
        if "mpp" in saved.files:
            out["mpp"] = float(saved["mpp"])
    return out
