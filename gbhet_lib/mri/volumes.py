"""Pre-operative brain MRI of one subject: four co-registered sequences and a tumour segmentation, as NIfTI.

Files follow the BraTS naming, one folder per subject: ``<folder>/<subject_id>_<suffix>.nii.gz`` with suffixes
``t1`` (T1-weighted), ``t1ce`` (T1 after gadolinium), ``t2`` (T2-weighted), ``flair`` (T2-FLAIR) and ``seg``
(segmentation).

Segmentation labels are those of BraTS 2012–2016: 0 background / normal brain, 1 necrotic core
(:data:`NECROSIS`), 2 peritumoural oedema (:data:`OEDEMA`), 3 non-enhancing tumour (:data:`NON_ENHANCING`),
4 enhancing tumour (:data:`ENHANCING`). BraTS 2017 and later merge labels 1 and 3 into label 1 (NCR/NET:
necrotic and non-enhancing tumour core) and never use 3; :func:`read_mri` accepts those files too (any labels
among 0–4), and downstream traits then count NCR/NET as necrosis.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from ..io import atomic_path

SEQUENCES: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")  # BraTS file suffixes: T1, T1-Gd, T2, FLAIR
SEGMENTATION = "seg"
NECROSIS = 1  # necrotic core (BraTS >= 2017: NCR/NET, necrotic and non-enhancing core)
OEDEMA = 2  # peritumoural oedema (FLAIR hyperintensity outside the core)
NON_ENHANCING = 3  # non-enhancing tumour (BraTS 2012-2016 only)
ENHANCING = 4  # gadolinium-enhancing tumour
LABELS: dict[int, str] = {NECROSIS: "necrosis", OEDEMA: "oedema", NON_ENHANCING: "non_enhancing",
                          ENHANCING: "enhancing"}
SUFFIX = ".nii.gz"
_INT16_MAX = 32767


@dataclass(frozen=True, eq=False)
class MriVolume:
    """One subject's co-registered MRI.

    Attributes:
        subject_id: subject identifier (the file-name prefix).
        image: float32, shape (4, X, Y, Z): one channel per sequence in :data:`SEQUENCES` order; arbitrary
            intensity units, 0 outside the (skull-stripped) brain.
        segmentation: uint8, shape (X, Y, Z), labels among 0 and :data:`LABELS`.
        voxel_mm: voxel size (mm) along X, Y, Z.
        affine: 4×4 voxel → RAS world (mm) matrix; default ``diag(*voxel_mm, 1)``.
    """

    subject_id: str
    image: np.ndarray
    segmentation: np.ndarray
    voxel_mm: tuple[float, float, float]
    affine: np.ndarray | None = None

    def __post_init__(self) -> None:
        image = np.asarray(self.image, dtype=np.float32)
        seg = np.asarray(self.segmentation)
        if image.ndim != 4 or image.shape[0] != len(SEQUENCES):
            raise ValueError(f"{self.subject_id}: image has shape {image.shape}; expected ({len(SEQUENCES)}, X, Y, Z) "
                             f"with channels {SEQUENCES}")
        if seg.shape != image.shape[1:]:
            raise ValueError(f"{self.subject_id}: segmentation has shape {seg.shape} but the image is "
                             f"{image.shape[1:]}; both must be on the same voxel grid")
        check_labels(seg, self.subject_id)
        voxel = tuple(float(v) for v in self.voxel_mm)
        if len(voxel) != 3 or not all(np.isfinite(v) and v > 0 for v in voxel):
            raise ValueError(f"{self.subject_id}: voxel_mm={self.voxel_mm} must be three positive sizes in mm")
        affine = np.diag([*voxel, 1.0]) if self.affine is None else np.asarray(self.affine, dtype=np.float64)
        if affine.shape != (4, 4):
            raise ValueError(f"{self.subject_id}: affine has shape {affine.shape}; expected 4×4")
        if not np.allclose(np.linalg.norm(affine[:3, :3], axis=0), voxel, rtol=1e-3):
            raise ValueError(f"{self.subject_id}: affine column lengths {np.linalg.norm(affine[:3, :3], axis=0)} "
                             f"differ from voxel_mm={voxel}; pass matching values (or affine=None)")
        object.__setattr__(self, "image", image)
        object.__setattr__(self, "segmentation", seg.astype(np.uint8, copy=False))
        object.__setattr__(self, "voxel_mm", voxel)
        object.__setattr__(self, "affine", affine)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Voxel grid (X, Y, Z)."""
        return tuple(self.segmentation.shape)  # type: ignore[return-value]

    @property
    def brain_mask(self) -> np.ndarray:
        """bool (X, Y, Z): voxels where any sequence is > 0 (the skull-stripped brain)."""
        return (self.image > 0).any(axis=0)


def check_labels(segmentation: np.ndarray, where: str = "segmentation") -> None:
    """Raise ValueError unless every voxel is an integer label in {0, 1, 2, 3, 4}; ``where`` names the source."""
    seg = np.asarray(segmentation)
    if seg.dtype.kind == "f":
        if not np.all(np.isfinite(seg)) or not np.array_equal(seg, np.round(seg)):
            raise ValueError(f"{where}: segmentation holds non-integer values; expected integer labels 0-4")
    elif seg.dtype.kind not in "iub":
        raise ValueError(f"{where}: segmentation has dtype {seg.dtype}; expected integer labels 0-4")
    present = np.unique(seg)
    bad = [v for v in present.tolist() if v not in (0, *LABELS)]
    if bad:
        raise ValueError(f"{where}: segmentation labels {sorted(bad)} are not BraTS labels; allowed are 0 "
                         f"(background) and {LABELS}. Map other label schemes (e.g. BraTS 2023's 3 = enhancing) "
                         "onto these first")


def mri_files(folder: str | Path, subject_id: str) -> dict[str, Path]:
    """Paths ``<folder>/<subject_id>_<suffix>.nii.gz`` for each sequence in :data:`SEQUENCES` and ``seg``."""
    folder = Path(folder)
    return {name: folder / f"{subject_id}_{name}{SUFFIX}" for name in (*SEQUENCES, SEGMENTATION)}


def write_mri(folder: str | Path, volume: MriVolume) -> dict[str, Path]:
    """Write ``volume`` as five NIfTI-1 files (see :func:`mri_files`), each atomically; returns their paths.

    Sequences are stored as int16 with ``scl_slope = max|intensity| / 32767`` and ``scl_inter = 0`` (so zero
    background stays exactly 0 and the read-back error is at most slope / 2); the segmentation as uint8. The
    header holds the affine (sform and qform), the voxel size in mm (``pixdim``) and ``xyzt_units`` = mm.
    """
    paths = mri_files(folder, volume.subject_id)
    Path(folder).mkdir(parents=True, exist_ok=True)
    for c, name in enumerate(SEQUENCES):
        data = volume.image[c]
        peak = float(np.abs(data).max())
        slope = peak / _INT16_MAX if peak > 0 else 1.0
        raw = np.round(data / slope).astype(np.int16)
        _save(paths[name], raw, volume, slope)
    _save(paths[SEGMENTATION], volume.segmentation.astype(np.uint8), volume, None)
    return paths


def _save(path: Path, data: np.ndarray, volume: MriVolume, slope: float | None) -> None:
    img = nib.Nifti1Image(data, volume.affine)
    header = img.header
    header.set_data_dtype(data.dtype)
    header.set_zooms(volume.voxel_mm)
    header.set_xyzt_units("mm", "sec")
    header.set_sform(volume.affine, code=1)  # scanner-anatomical
    header.set_qform(volume.affine, code=1)
    if slope is not None:
        header.set_slope_inter(slope, 0.0)
    header["descrip"] = f"gbhet {volume.subject_id}"[:79].encode("ascii", "replace")
    with atomic_path(path, suffix=SUFFIX) as tmp:
        nib.save(img, tmp)


def read_mri(folder: str | Path, subject_id: str) -> MriVolume:
    """Read one subject's four sequences and segmentation written with BraTS naming (see :func:`mri_files`).

    Raises:
        FileNotFoundError: a file is missing (it is named, with the naming expected).
        ValueError: an image is not 3-D, shapes or voxel sizes differ between files, or the segmentation holds
            labels outside {0, 1, 2, 3, 4}.
    """
    paths = mri_files(folder, subject_id)
    missing = [p for p in paths.values() if not p.is_file()]
    if missing:
        expected = ", ".join(f"{subject_id}_{s}{SUFFIX}" for s in (*SEQUENCES, SEGMENTATION))
        raise FileNotFoundError(
            f"{missing[0]}: no such file ({len(missing)} of {len(paths)} missing: "
            f"{', '.join(p.name for p in missing)}). read_mri expects BraTS naming in {Path(folder)}: {expected} "
            f"(sequences T1, T1-Gd, T2, FLAIR and the segmentation)")
    channels, shape, zooms, affine = [], None, None, None
    for name, path in paths.items():
        img = nib.load(path)
        if len(img.shape) != 3:
            raise ValueError(f"{path}: image has shape {img.shape}; expected a 3-D volume (X, Y, Z). Drop a trailing "
                             "time or channel axis (e.g. with nibabel's squeeze_image) before reading")
        file_zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
        if shape is None:
            shape, zooms, affine, first = img.shape, file_zooms, img.affine, path
        elif img.shape != shape:
            raise ValueError(f"{path}: shape {img.shape} differs from {first.name}'s {shape}; all sequences and the "
                             "segmentation must be co-registered on one voxel grid (resample them first)")
        elif not np.allclose(file_zooms, zooms, rtol=1e-4):
            raise ValueError(f"{path}: voxel size {file_zooms} mm differs from {first.name}'s {zooms} mm; resample all "
                             "files onto one grid first")
        if name == SEGMENTATION:
            seg = np.asanyarray(img.dataobj)
            check_labels(seg, str(path))
            segmentation = np.round(seg).astype(np.uint8) if seg.dtype.kind == "f" else seg.astype(np.uint8)
        else:
            channels.append(img.get_fdata(dtype=np.float32))
    return MriVolume(subject_id=subject_id, image=np.stack(channels), segmentation=segmentation,
                     voxel_mm=zooms, affine=affine)  # type: ignore[arg-type]
