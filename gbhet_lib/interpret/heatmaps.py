"""Slide heat maps of the published method: where on a held-out slide the model finds its match.

Per slide, each patch's match score is min–max normalised within the slide and painted in its rectangle on
the slide thumbnail with the ``plasma`` colormap at 50/50 alpha; a green box marks the highest-scoring patch.
For that patch, the pixel saliency (|gradient of the score w.r.t. the input pixels|, averaged over RGB,
min–max normalised, values below 0.1 zeroed) is shown in ``plasma`` at 75 % blended with the patch at 25 %.

On synthetic slides the renderer's planted structures (:meth:`gbhet_lib.data.cohort.Cohort.planted_structures`)
can be drawn beside the heat map at the same extent, so a reader sees whether hot patches fall on necrosis,
vessels or dense nuclei.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from scipy import ndimage

CMAP = "plasma"
BOX_COLOUR = "lime"
NECROSIS_RGB = (0.20, 0.55, 0.95)  # blue: necrosis is not a colour of the heat map
VESSEL_RGB = (0.90, 0.05, 0.05)
BACKGROUND_RGB = (1.0, 1.0, 1.0)


def normalise_scores(scores: np.ndarray) -> np.ndarray:
    """Min–max normalise finite scores to [0, 1] (float64, same shape); all-equal scores become 0.5 and NaN stays
    NaN."""
    scores = np.asarray(scores, dtype=np.float64)
    finite = np.isfinite(scores)
    if not finite.any():
        return np.full(scores.shape, np.nan)
    lo, hi = scores[finite].min(), scores[finite].max()
    if hi - lo <= 0:
        return np.where(finite, 0.5, np.nan)
    return (scores - lo) / (hi - lo)


def _colormap_rgb(values: np.ndarray) -> np.ndarray:
    """``plasma`` colours of values in [0, 1]: float64 (..., 3) in [0, 255]."""
    return colormaps[CMAP](np.clip(values, 0.0, 1.0))[..., :3] * 255.0


def _patch_boxes(coords: np.ndarray, patch_size_level0: int, downsample: float,
                 shape: tuple[int, int]) -> np.ndarray:
    """Thumbnail pixel boxes (n, 4) int [x0, y0, x1, y1) (half-open, clipped) covering each level-0 patch."""
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    x0 = np.floor(coords[:, 0] / downsample)
    y0 = np.floor(coords[:, 1] / downsample)
    x1 = np.ceil((coords[:, 0] + patch_size_level0) / downsample)
    y1 = np.ceil((coords[:, 1] + patch_size_level0) / downsample)
    h, w = shape
    boxes = np.stack([np.clip(x0, 0, w), np.clip(y0, 0, h), np.clip(x1, 0, w), np.clip(y1, 0, h)], axis=1)
    return boxes.astype(np.int64)


def score_map(shape: tuple[int, int], downsample: float, coords: np.ndarray, patch_size_level0: int,
              scores: np.ndarray) -> np.ndarray:
    """Normalised patch scores painted on a thumbnail grid: float64 (h, w), NaN outside every patch; where patches
    overlap a pixel keeps the highest score.

    Args:
        shape: thumbnail (height, width) in pixels.
        downsample: level-0 pixels per thumbnail pixel.
        coords: int (n, 2) level-0 (x, y) of each patch's top-left corner.
        patch_size_level0: patch edge in level-0 pixels.
        scores: (n,) match score of each patch (any scale; min–max normalised within the slide).
    """
    coords = np.asarray(coords).reshape(-1, 2)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(coords) != len(scores):
        raise ValueError(f"{len(coords)} patch coordinates but {len(scores)} scores: pass one score per patch")
    if downsample <= 0 or patch_size_level0 <= 0:
        raise ValueError(f"downsample={downsample} and patch_size_level0={patch_size_level0} must be > 0")
    values = np.full(shape, np.nan)
    for (x0, y0, x1, y1), v in zip(_patch_boxes(coords, patch_size_level0, downsample, shape),
                                   normalise_scores(scores)):
        if x1 > x0 and y1 > y0 and np.isfinite(v):
            np.fmax(values[y0:y1, x0:x1], v, out=values[y0:y1, x0:x1])
    return values


def score_overlay(thumbnail: np.ndarray, downsample: float, coords: np.ndarray, patch_size_level0: int,
                  scores: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Paint each patch's within-slide min–max normalised score on the thumbnail (``plasma``, ``alpha`` opacity).

    Args:
        thumbnail: uint8 (h, w, 3) RGB thumbnail of the slide.
        downsample: level-0 pixels per thumbnail pixel (as returned by ``read_thumbnail``).
        coords: int (n, 2) level-0 (x, y) of each patch's top-left corner.
        patch_size_level0: patch edge in level-0 pixels.
        scores: (n,) match score of each patch; all-equal scores are painted at 0.5.
        alpha: opacity of the colour (0.5: the method's 50/50 blend).

    Returns:
        uint8 (h, w, 3): ``(1 - alpha)·thumbnail + alpha·plasma(score)`` inside patches (the highest score where
        patches overlap); pixels outside every patch are unchanged.
    """
    thumbnail = np.asarray(thumbnail)
    if thumbnail.ndim != 3 or thumbnail.shape[2] != 3:
        raise ValueError(f"thumbnail has shape {thumbnail.shape}; expected (h, w, 3) RGB")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha} must lie in [0, 1]")
    values = score_map(thumbnail.shape[:2], downsample, coords, patch_size_level0, scores)
    painted = np.isfinite(values)
    out = thumbnail.astype(np.uint8, copy=True)
    blend = (1.0 - alpha) * thumbnail[painted].astype(np.float64) + alpha * _colormap_rgb(values[painted])
    out[painted] = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
    return out


def best_patch(scores: np.ndarray) -> int:
    """Index of the highest-scoring patch (NaN scores ignored; the first one on ties)."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(scores) == 0 or not np.isfinite(scores).any():
        raise ValueError("no finite patch score: cannot pick a best patch")
    return int(np.nanargmax(np.where(np.isfinite(scores), scores, np.nan)))


def saliency_map(gradient: np.ndarray, floor: float = 0.1) -> np.ndarray:
    """Pixel saliency: |gradient| averaged over RGB, min–max normalised to [0, 1], values below ``floor`` set to 0.

    Args:
        gradient: float (3, S, S) (channels first, as from a torch model) or (S, S, 3): the gradient of the match
            score with respect to the input pixels.
        floor: normalised values below this are zeroed (0.1 in the method).

    Returns:
        float64 (S, S); all zeros when the gradient is constant.
    """
    g = np.abs(np.asarray(gradient, dtype=np.float64))
    if g.ndim != 3 or 3 not in (g.shape[0], g.shape[-1]):
        raise ValueError(f"gradient has shape {g.shape}; expected (3, S, S) or (S, S, 3)")
    sal = g.mean(axis=-1) if g.shape[-1] == 3 and g.shape[0] != 3 else g.mean(axis=0)
    lo, hi = sal.min(), sal.max()
    sal = (sal - lo) / (hi - lo) if hi > lo else np.zeros_like(sal)
    sal[sal < floor] = 0.0
    return sal


def saliency_overlay(patch: np.ndarray, gradient: np.ndarray, floor: float = 0.1) -> np.ndarray:
    """The method's saliency picture of one patch: ``0.75·plasma(saliency) + 0.25·patch``.

    Args:
        patch: uint8 (S, S, 3) RGB patch the model saw.
        gradient: float (3, S, S) or (S, S, 3), gradient of the score w.r.t. the patch pixels
            (see :func:`saliency_map`).
        floor: normalised saliency below this is zeroed (drawn as ``plasma(0)``).

    Returns:
        uint8 (S, S, 3).
    """
    patch = np.asarray(patch)
    sal = saliency_map(gradient, floor)
    if patch.shape != sal.shape + (3,):
        raise ValueError(f"patch has shape {patch.shape} but the gradient's saliency is {sal.shape}: expected the "
                         f"patch as {sal.shape + (3,)} uint8 RGB")
    blend = 0.75 * _colormap_rgb(sal) + 0.25 * patch.astype(np.float64)
    return np.clip(np.rint(blend), 0, 255).astype(np.uint8)


def structures_rgb(structures: Mapping[str, np.ndarray], smooth_cells: float = 2.0) -> np.ndarray:
    """An RGB picture of planted structures for display (uint8 (h, w, 3), the maps' coarse grid).

    Background (``tissue`` 0) is white; tissue is grey, darker where ``cellularity`` (nuclei per cell, averaged
    over tissue with a Gaussian of ``smooth_cells`` cells so single counts read as a density, then scaled by its
    99th percentile over tissue) is higher; ``necrosis`` blends towards blue and ``vessels`` towards red by their
    share of the cell. Missing maps are skipped; non-array entries (``coarse_step``, ``mpp``) are ignored.
    """
    maps = {k: np.asarray(v, dtype=np.float64) for k, v in structures.items()
            if isinstance(v, np.ndarray) and v.ndim == 2}
    if not maps:
        raise ValueError(f"no 2-d structure maps in {sorted(structures)}; expected necrosis, vessels, cellularity, "
                         "tissue")
    shape = next(iter(maps.values())).shape
    if any(m.shape != shape for m in maps.values()):
        raise ValueError(f"structure maps differ in shape: { {k: m.shape for k, m in maps.items()} }")
    tissue = maps.get("tissue", np.ones(shape)) > 0.5
    cell = maps.get("cellularity", np.zeros(shape)) * tissue
    if smooth_cells > 0:
        weight = ndimage.gaussian_filter(tissue.astype(np.float64), smooth_cells)
        cell = np.where(tissue, ndimage.gaussian_filter(cell, smooth_cells) / np.maximum(weight, 1e-9), 0.0)
    top = np.percentile(cell[tissue], 99) if tissue.any() else 0.0
    density = np.clip(cell / top, 0.0, 1.0) if top > 0 else np.zeros(shape)
    grey = 0.85 - 0.6 * density
    rgb = np.where(tissue[..., None], grey[..., None], np.asarray(BACKGROUND_RGB))
    for name, colour in (("necrosis", NECROSIS_RGB), ("vessels", VESSEL_RGB)):
        if name in maps:
            share = np.clip(maps[name], 0.0, 1.0)[..., None]
            rgb = (1.0 - share) * rgb + share * np.asarray(colour)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def slide_heatmap_figure(slide_id: str, thumbnail: np.ndarray, downsample: float, coords: np.ndarray,
                         patch_size_level0: int, scores: np.ndarray, patch: np.ndarray, gradient: np.ndarray,
                         structures: Mapping[str, np.ndarray] | None = None, title_extra: str = "") -> Figure:
    """One slide's heat-map figure: the thumbnail with painted scores (:func:`score_overlay`), a colourbar and a
    green box round the best patch; the planted structures at the thumbnail's extent (when ``structures`` is given,
    with the same box and a legend); the best patch; and its saliency (:func:`saliency_overlay`).

    Args:
        slide_id: shown in the title.
        thumbnail: uint8 (h, w, 3); downsample: level-0 pixels per thumbnail pixel.
        coords: int (n, 2) level-0 (x, y) top-left of each patch; patch_size_level0: patch edge (level-0 px).
        scores: (n,) match scores; the best is :func:`best_patch`.
        patch: uint8 (S, S, 3), the best patch as the model saw it; gradient: (3, S, S) or (S, S, 3) for it.
        structures: maps from :meth:`Cohort.planted_structures` (``coarse_step`` level-0 px per cell, default 8).
        title_extra: shown in brackets after the slide id (e.g. the model and fold).
    """
    thumbnail = np.asarray(thumbnail)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    best = best_patch(scores)
    overlay = score_overlay(thumbnail, downsample, coords, patch_size_level0, scores)
    h, w = thumbnail.shape[:2]
    bx, by = np.asarray(coords, dtype=np.float64).reshape(-1, 2)[best] / downsample
    box_px = patch_size_level0 / downsample

    n_panels = 4 if structures is not None else 3
    widths = [w / h] * (n_panels - 2) + [1.0, 1.0]
    fig, axes = plt.subplots(1, n_panels, figsize=(3.4 * sum(widths) + 1.0, 3.6),
                             gridspec_kw={"width_ratios": widths})

    def box(ax) -> None:
        ax.add_patch(Rectangle((bx - 0.5, by - 0.5), box_px, box_px, fill=False, edgecolor=BOX_COLOUR, linewidth=1.8))

    ax = axes[0]
    ax.imshow(overlay)
    box(ax)
    ax.set_title("match score (min–max within slide)", fontsize=9)
    fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), CMAP), ax=ax, fraction=0.046, pad=0.02, label="score")

    if structures is not None:
        ax = axes[1]
        picture = structures_rgb(structures)
        coarse_step = structures.get("coarse_step", 8)
        step = float(coarse_step) if np.isscalar(coarse_step) else 8.0  # level-0 px per map cell
        ext_w, ext_h = picture.shape[1] * step / downsample, picture.shape[0] * step / downsample
        ax.imshow(picture, extent=(-0.5, ext_w - 0.5, ext_h - 0.5, -0.5), interpolation="nearest")
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        box(ax)
        ax.set_title("planted structures", fontsize=9)
        ax.legend(handles=[Patch(color=NECROSIS_RGB, label="necrosis"), Patch(color=VESSEL_RGB, label="vessels"),
                           Patch(color=(0.25, 0.25, 0.25), label="dense nuclei"),
                           Patch(facecolor=(0.85, 0.85, 0.85), edgecolor="0.5", label="sparse nuclei")],
                  loc="lower right", fontsize=7, framealpha=0.85)

    axes[-2].imshow(np.asarray(patch))
    axes[-2].set_title(f"best patch (score {scores[best]:.3g})", fontsize=9)
    axes[-1].imshow(saliency_overlay(patch, gradient))
    axes[-1].set_title("saliency |∇| (≥ 0.1)", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{slide_id} ({title_extra})" if title_extra else slide_id, fontsize=11)
    fig.tight_layout()
    return fig


def heatmap_grid(figure_paths: Sequence[Path], ncols: int = 2) -> Figure:
    """Saved figures (PNG files, e.g. from :func:`slide_heatmap_figure` via ``save_figure``) in a grid of ``ncols``
    columns, each titled with its file stem (for the chapter)."""
    paths = [Path(p) for p in figure_paths]
    if not paths:
        raise ValueError("no figure files to show: pass the PNG paths of the saved heat maps")
    if ncols < 1:
        raise ValueError(f"ncols={ncols} must be >= 1")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"heat-map figures not found: {missing[:3]}")
    images = [plt.imread(p) for p in paths]
    ncols = min(ncols, len(images))
    nrows = math.ceil(len(images) / ncols)
    aspect = max(img.shape[1] / img.shape[0] for img in images)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.0 * ncols, 6.0 * nrows / aspect + 0.3 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, path in zip(axes.flat, images, paths):
        ax.imshow(img)
        ax.set_title(path.stem, fontsize=9)
    fig.tight_layout()
    return fig
