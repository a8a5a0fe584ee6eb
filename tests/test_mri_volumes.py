"""NIfTI I/O of MRI volumes: round trip, atomic writes, and every bad-input error."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from gbhet_lib.mri import volumes
from gbhet_lib.mri.volumes import SEGMENTATION, SEQUENCES, MriVolume, mri_files, read_mri, write_mri

SHAPE = (20, 22, 18)
VOXEL = (1.5, 1.5, 2.0)


def make_volume(subject_id: str = "GBM-001", seed: int = 0) -> MriVolume:
    """A brain-shaped blob (intensities 0–2000, background 0) with every BraTS label present."""
    rng = np.random.default_rng(seed)
    x, y, z = np.indices(SHAPE)
    r = np.sqrt(((x - 10) / 8.0) ** 2 + ((y - 11) / 9.0) ** 2 + ((z - 9) / 7.0) ** 2)
    brain = r <= 1.0
    image = (rng.uniform(100.0, 2000.0, (4, *SHAPE)) * brain).astype(np.float32)
    seg = np.zeros(SHAPE, np.uint8)
    d = np.sqrt((x - 9) ** 2 + (y - 11) ** 2 + (z - 9) ** 2)
    seg[d <= 5] = 2
    seg[d <= 3.5] = 3
    seg[d <= 2.5] = 4
    seg[d <= 1.5] = 1
    return MriVolume(subject_id, image, seg, VOXEL)


def test_round_trip_keeps_shapes_dtypes_header_and_labels(tmp_path: Path) -> None:
    volume = make_volume()
    paths = write_mri(tmp_path, volume)
    assert paths == mri_files(tmp_path, "GBM-001")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"GBM-001_{s}.nii.gz" for s in (*SEQUENCES, "seg"))

    back = read_mri(tmp_path, "GBM-001")
    assert back.subject_id == "GBM-001"
    assert back.image.shape == (4, *SHAPE) and back.image.dtype == np.float32
    assert back.segmentation.dtype == np.uint8
    np.testing.assert_array_equal(back.segmentation, volume.segmentation)
    assert set(np.unique(back.segmentation)) == {0, 1, 2, 3, 4}
    assert back.voxel_mm == VOXEL
    np.testing.assert_allclose(back.affine, np.diag([*VOXEL, 1.0]))
    # int16 with slope max/32767: error at most half a step; zero background stays exactly zero
    for c in range(4):
        step = np.abs(volume.image[c]).max() / 32767
        assert np.abs(back.image[c] - volume.image[c]).max() <= step / 2 + 1e-4
    np.testing.assert_array_equal(back.brain_mask, volume.brain_mask)
    assert np.all(back.image[:, ~volume.brain_mask] == 0)

    t1 = nib.load(paths["t1"])
    assert t1.get_data_dtype() == np.int16
    assert t1.header.get_zooms() == pytest.approx(VOXEL)
    assert t1.header.get_xyzt_units()[0] == "mm"
    assert t1.dataobj.inter == 0.0
    assert nib.load(paths[SEGMENTATION]).get_data_dtype() == np.uint8


def test_writes_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_mri(tmp_path, make_volume())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left behind"

    calls = {"n": 0}
    real_save = nib.save

    def failing_save(img, filename):  # the third file fails half-way: it is written partly, then raises
        calls["n"] += 1
        if calls["n"] == 3:
            Path(filename).write_bytes(b"partial")
            raise OSError("disk full")
        real_save(img, filename)

    monkeypatch.setattr(volumes.nib, "save", failing_save)
    target = tmp_path / "other"
    with pytest.raises(OSError, match="disk full"):
        write_mri(target, make_volume("GBM-002"))
    names = sorted(p.name for p in target.iterdir())
    assert names == ["GBM-002_t1.nii.gz", "GBM-002_t1ce.nii.gz"], names  # no temp file, no partial t2


def test_missing_file_is_named_with_the_expected_naming(tmp_path: Path) -> None:
    write_mri(tmp_path, make_volume())
    (tmp_path / "GBM-001_t1ce.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"GBM-001_t1ce\.nii\.gz") as err:
        read_mri(tmp_path, "GBM-001")
    assert "GBM-001_flair.nii.gz" in str(err.value)  # lists the naming it expects
    with pytest.raises(FileNotFoundError, match="5 of 5 missing"):
        read_mri(tmp_path, "nobody")


def _rewrite(path: Path, data: np.ndarray, zooms: tuple[float, ...] = VOXEL) -> None:
    img = nib.Nifti1Image(data, np.diag([*zooms[:3], 1.0]))
    img.header.set_zooms(zooms)
    nib.save(img, path)


def test_mismatched_shapes_are_refused(tmp_path: Path) -> None:
    write_mri(tmp_path, make_volume())
    _rewrite(tmp_path / "GBM-001_flair.nii.gz", np.zeros((20, 22, 17), np.int16))
    with pytest.raises(ValueError, match=r"GBM-001_flair\.nii\.gz: shape \(20, 22, 17\) differs"):
        read_mri(tmp_path, "GBM-001")


def test_bad_label_is_refused(tmp_path: Path) -> None:
    volume = make_volume()
    write_mri(tmp_path, volume)
    seg = volume.segmentation.copy()
    seg[0, 0, 0] = 5
    _rewrite(tmp_path / "GBM-001_seg.nii.gz", seg)
    with pytest.raises(ValueError, match=r"GBM-001_seg\.nii\.gz: segmentation labels \[5\]"):
        read_mri(tmp_path, "GBM-001")
    with pytest.raises(ValueError, match=r"labels \[5\]"):
        MriVolume("x", volume.image, seg, VOXEL)
    half = volume.segmentation.astype(np.float32)
    half[1, 1, 1] = 0.5
    _rewrite(tmp_path / "GBM-001_seg.nii.gz", half)
    with pytest.raises(ValueError, match="non-integer"):
        read_mri(tmp_path, "GBM-001")


def test_brats_2017_labels_are_accepted(tmp_path: Path) -> None:
    volume = make_volume()
    seg = volume.segmentation.copy()
    seg[seg == 3] = 1  # BraTS >= 2017: NCR/NET merged into label 1
    write_mri(tmp_path, MriVolume("GBM-001", volume.image, seg, VOXEL))
    assert set(np.unique(read_mri(tmp_path, "GBM-001").segmentation)) == {0, 1, 2, 4}


def test_differing_voxel_sizes_are_refused(tmp_path: Path) -> None:
    volume = make_volume()
    write_mri(tmp_path, volume)
    _rewrite(tmp_path / "GBM-001_t2.nii.gz", np.zeros(SHAPE, np.int16), zooms=(1.5, 1.5, 2.5))
    with pytest.raises(ValueError, match=r"GBM-001_t2\.nii\.gz: voxel size \(1\.5, 1\.5, 2\.5\) mm differs"):
        read_mri(tmp_path, "GBM-001")


def test_non_3d_image_is_refused(tmp_path: Path) -> None:
    write_mri(tmp_path, make_volume())
    _rewrite(tmp_path / "GBM-001_t1.nii.gz", np.zeros((*SHAPE, 2), np.int16), zooms=(*VOXEL, 1.0))
    with pytest.raises(ValueError, match=r"GBM-001_t1\.nii\.gz: image has shape \(20, 22, 18, 2\); expected a 3-D"):
        read_mri(tmp_path, "GBM-001")


def test_volume_validates_its_arrays() -> None:
    volume = make_volume()
    with pytest.raises(ValueError, match=r"expected \(4, X, Y, Z\)"):
        MriVolume("x", volume.image[:3], volume.segmentation, VOXEL)
    with pytest.raises(ValueError, match="same voxel grid"):
        MriVolume("x", volume.image, volume.segmentation[:-1], VOXEL)
    with pytest.raises(ValueError, match="positive"):
        MriVolume("x", volume.image, volume.segmentation, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="affine column lengths"):
        MriVolume("x", volume.image, volume.segmentation, VOXEL, affine=np.eye(4))
