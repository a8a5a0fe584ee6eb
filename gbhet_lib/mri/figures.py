"""Figures of MRI volumes: the four sequences and the segmentation on the tumour's largest axial slice."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..plots import OKABE_ITO
from .volumes import LABELS, SEQUENCES, MriVolume

SEQUENCE_TITLES: dict[str, str] = {"t1": "T1", "t1ce": "T1-Gd", "t2": "T2", "flair": "FLAIR"}
#: by BraTS label, from the Okabe–Ito palette (told apart under the common colour-vision deficiencies)
LABEL_COLOURS: dict[int, str] = {k: OKABE_ITO[name] for k, name in
                                 {1: "blue", 2: "yellow", 3: "bluish green", 4: "vermillion"}.items()}


def tumour_slice(volume: MriVolume) -> int:
    """Axial (Z) index with the most tumour voxels (any label > 0); the middle slice when there is no tumour."""
    area = (volume.segmentation > 0).sum(axis=(0, 1))
    return int(np.argmax(area)) if area.any() else volume.segmentation.shape[2] // 2


def mri_panels(volumes: Sequence[MriVolume], max_subjects: int = 4) -> Figure:
    """One row per subject (at most ``max_subjects``): T1, T1-Gd, T2, FLAIR and FLAIR with the segmentation.

    Each row shows the axial slice through the tumour's largest cross-section (:func:`tumour_slice`), displayed in
    radiological orientation (anterior up, patient's left on the right of the panel, RAS voxel axes assumed).
    Each sequence is windowed to its 1st–99.5th brain percentile. Returns a matplotlib Figure made without pyplot,
    so it works under any backend (Agg included) and leaves no global figure behind.
    """
    volumes = list(volumes)[:max_subjects]
    if not volumes:
        raise ValueError("mri_panels: no volumes given; pass at least one MriVolume (e.g. from read_mri)")
    n_cols = len(SEQUENCES) + 1
    fig = Figure(figsize=(2.2 * n_cols, 2.3 * len(volumes) + 0.5), layout="constrained")
    axes = fig.subplots(len(volumes), n_cols, squeeze=False)
    colours = ListedColormap(["none", *(LABEL_COLOURS[k] for k in sorted(LABELS))])
    for row, volume in zip(axes, volumes):
        z = tumour_slice(volume)
        brain = volume.brain_mask[:, :, z]
        for ax, (c, name) in zip(row, enumerate(SEQUENCES)):
            ax.imshow(_display(_window(volume.image[c, :, :, z], brain)), cmap="gray", vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_title(f"{volume.subject_id} {SEQUENCE_TITLES[name]}" if c == 0 else SEQUENCE_TITLES[name],
                         fontsize=8)
        overlay = row[-1]
        overlay.imshow(_display(_window(volume.image[SEQUENCES.index("flair"), :, :, z], brain)), cmap="gray",
                       vmin=0, vmax=1, interpolation="nearest")
        seg = _display(volume.segmentation[:, :, z].astype(float))
        overlay.imshow(np.ma.masked_equal(seg, 0), cmap=colours, vmin=0, vmax=len(LABELS), alpha=0.55,
                       interpolation="nearest")
        overlay.set_title(f"FLAIR + segmentation (z={z})", fontsize=8)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    handles = [Patch(color=LABEL_COLOURS[k], label=name.replace("_", "-")) for k, name in sorted(LABELS.items())]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False, fontsize=8)
    return fig


def _window(slice_2d: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] between the 1st and 99.5th percentile of the brain voxels (0 outside the brain)."""
    values = slice_2d[brain]
    if values.size == 0:
        return np.zeros_like(slice_2d, dtype=float)
    lo, hi = np.percentile(values, [1.0, 99.5])
    return np.where(brain, np.clip((slice_2d - lo) / max(hi - lo, 1e-6), 0.0, 1.0), 0.0)


def _display(slice_xy: np.ndarray) -> np.ndarray:
    """(X, Y) RAS slice → image rows = anterior at the top, columns = patient's right on the left (radiological)."""
    return slice_xy.T[::-1, ::-1]
